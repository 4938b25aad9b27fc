// A latecomer's browser learns a large meeting, which the server describes in
// pages (welcome, then roster and chat-history): 70 people and 25 chat messages.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchPerson, createMeeting, join, until, peopleNames } from './harness.mjs';

const CROWD = 70;
const NOTES = 25;
let server;
let person;

before(async () => {
  server = await startServer();
});

after(async () => {
  await person?.browser.close().catch(() => {});
  server?.stop();
});

test('a latecomer sees everyone and all the chat of a 70-person meeting', async () => {
  person = await launchPerson();
  const { page } = person;
  const { link } = await createMeeting(page, server.url, 'All-staff briefing');
  const wsUrl = link.replace(/^http/, 'ws').replace('/m/', '/api/meetings/') + '/ws';

  // The crowd: plain signalling sockets from a second tab (no media), the
  // first 25 of them saying something.
  const crowd = await page.context().newPage();
  await crowd.goto(server.url);
  await crowd.evaluate(async ({ wsUrl, count, notes }) => {
    for (let i = 1; i <= count; i++) {
      const ws = new WebSocket(wsUrl);
      await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
      const arrived = (type) => new Promise((ok) => ws.addEventListener('message', (e) => {
        if (JSON.parse(e.data).type === type) ok(undefined);
      }));
      const welcomed = arrived('welcome');
      ws.send(JSON.stringify({ type: 'join', protocol: 1, name: `Guest ${i}` }));
      await welcomed;
      if (i <= notes) {
        // Wait for the echo (the server's confirmation): notes from different
        // sockets have no order of their own until the server has taken one.
        const echoed = arrived('chat');
        ws.send(JSON.stringify({ type: 'chat', text: `note ${i}` }));
        await echoed;
      }
    }
  }, { wsUrl, count: CROWD, notes: NOTES });

  await join(page, link, 'Lena (latecomer)');
  await until('Lena sees all 71 people', async () => (await peopleNames(page)).length === CROWD + 1);
  const names = await peopleNames(page);
  for (const n of [1, 50, 51, CROWD]) {
    assert.ok(names.some((x) => new RegExp(`^Guest ${n}(?!\\d)`).test(x)), `Guest ${n} listed`);
  }
  const notes = await page.$$eval('#chat-log li div', (ds) => ds.map((d) => d.textContent));
  assert.deepEqual(notes, Array.from({ length: NOTES }, (_, i) => `note ${i + 1}`), 'all the chat, oldest first');
  await crowd.close();
});
