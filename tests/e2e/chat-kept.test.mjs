// Chat is kept only where the meeting's handling level keeps it (the default
// policy: OFFICIAL 30 days, OFFICIAL-SENSITIVE none), and the chat panel
// says which: a latecomer sees the chat of an OFFICIAL meeting, and after the
// host raises it to OFFICIAL-SENSITIVE a later latecomer sees none of what
// was said from then on.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchPerson, joinAsHost, until, axe } from './harness.mjs';

let server;
const people = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const p of people) await p.browser.close().catch(() => {});
  server?.stop();
});

async function person() {
  const p = await launchPerson();
  people.push(p);
  return p;
}

async function openChat(page) {
  if ((await page.locator('#chat-btn').getAttribute('aria-expanded')) !== 'true') await page.locator('#chat-btn').click();
  await page.locator('#chat-panel').waitFor({ state: 'visible' });
}

const chatTexts = (page) => page.$$eval('#chat-log li div', (ds) => ds.map((d) => d.textContent));

test('the chat panel says whether chat is kept, and later joiners see only kept chat', async () => {
  const res = await fetch(`${server.url}/api/meetings`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'Chat kept', passcode: 'blue 4711' }),
  });
  const { hostUrl } = await res.json();
  const host = await person();
  await joinAsHost(host.page, hostUrl, 'Hana');
  await openChat(host.page);
  await until('the kept note', async () => (await host.page.locator('#chat-kept').textContent()) === 'Chat is kept for 30 days, and people who join later see it.');
  await host.page.locator('#chat-input').fill('Agenda: the budget');
  await host.page.locator('#chat-send').click();
  await until('the message', async () => (await chatTexts(host.page)).includes('Agenda: the budget'));
  await axe(host.page);

  const early = await person();
  await joinAsHost(early.page, hostUrl, 'Eli');
  await openChat(early.page);
  await until('the kept chat for a latecomer', async () => (await chatTexts(early.page)).includes('Agenda: the budget'));

  // Raised to OFFICIAL-SENSITIVE: from now on chat is not kept.
  await host.page.locator('#level-select').selectOption('official-sensitive');
  await host.page.getByRole('button', { name: 'Change level' }).click();
  await until('the not-kept note', async () => (await host.page.locator('#chat-kept').textContent()) === 'Chat is not kept: only people here now see it.');
  await host.page.locator('#chat-input').fill('Off the record');
  await host.page.locator('#chat-send').click();
  await until('relayed to those present', async () => (await chatTexts(early.page)).includes('Off the record'));

  const late = await person();
  await joinAsHost(late.page, hostUrl, 'Lou');
  await openChat(late.page);
  await until('the note for the latecomer', async () => (await late.page.locator('#chat-kept').textContent()) === 'Chat is not kept: only people here now see it.');
  await new Promise((r) => setTimeout(r, 1000));
  assert.deepEqual(await chatTexts(late.page), [], 'nothing kept for a later joiner');
});
