// After creating a meeting the host sees its invitation: a text to copy (by
// keyboard too), a calendar file to download and an email link. All three
// hold the join link and the handling level, and none the passcode, which
// the page tells the host to send another way. axe finds nothing, and the
// block fits a 390 px wide phone. In the meeting, a host opens the same
// invitation from Invite.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startServer, launchPerson, createMeeting, joinAsHost, axe } from './harness.mjs';

const PASSCODE = 'Tulip 4711';
let server;
const people = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const p of people) await p.browser.close().catch(() => {});
  server?.stop();
});

test('the host copies the invitation and downloads its calendar file; neither holds the passcode', async () => {
  const host = await launchPerson();
  people.push(host);
  const page = host.page;
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
  const { link } = await createMeeting(page, server.url, 'Budget; review, part 2', {
    setup: async (p) => { await p.getByLabel('Passcode (optional)').fill(PASSCODE); },
  });
  const text = page.getByLabel('Invitation to send');
  await text.waitFor({ state: 'visible' });
  const level = await (await fetch(`${link.replace('/m/', '/api/meetings/')}`)).json();
  const invitation = await text.inputValue();
  assert.ok(invitation.includes(`Join the meeting: ${link}`), invitation);
  assert.ok(invitation.includes(`Handling level: ${level.level.name}`), invitation);
  assert.ok(invitation.includes('no account and nothing to download'), invitation);
  assert.ok(!invitation.includes('Tulip') && !invitation.includes('4711'), 'no passcode in the text');
  // The page writes the text in its language (web/invitation.js); in English it is the server's, word for word.
  const served = await (await fetch(`${link.replace('/m/', '/api/meetings/')}/invitation`)).json();
  assert.equal(invitation, served.text, 'the English page writes the server\'s invitation');
  await page.getByText('Send the passcode another way').waitFor();

  // Copy by keyboard: Tab to the button, Enter.
  await page.getByLabel('Invitation to send').focus();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'copy-invite');
  await page.keyboard.press('Enter');
  await page.getByText('Invitation copied.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), invitation);

  // The calendar file.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Download calendar file (.ics)' }).click(),
  ]);
  assert.match(download.suggestedFilename(), /^convene-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}\.ics$/);
  const ics = readFileSync(await download.path(), 'utf8');
  assert.ok(ics.startsWith('BEGIN:VCALENDAR\r\n') && ics.endsWith('END:VCALENDAR\r\n'));
  assert.ok(!ics.replace(/\r\n/g, '').includes('\n'), 'CRLF line endings only');
  const unfolded = ics.replace(/\r\n /g, '');
  assert.ok(unfolded.includes(`\r\nURL:${link}\r\n`), unfolded);
  assert.ok(unfolded.includes('SUMMARY:Budget\\; review\\, part 2\r\n'), unfolded);
  assert.ok(unfolded.includes(`Handling level: ${level.level.name}`));
  assert.ok(!ics.includes('Tulip') && !ics.includes('4711'), 'no passcode in the calendar file');

  const mailto = await page.getByRole('link', { name: 'Write an email' }).getAttribute('href');
  assert.ok(mailto.startsWith('mailto:?subject='));
  assert.equal(decodeURIComponent(mailto.split('&body=')[1]).replace(/\r\n/g, '\n'), invitation);

  assert.deepEqual(await axe(page), []);

  // A phone: nothing wider than the screen, every control on it.
  await page.setViewportSize({ width: 390, height: 844 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390), 'no sideways scrolling at 390 px');
  for (const name of ['Copy invitation']) {
    const box = await page.getByRole('button', { name }).boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `${name} fits`);
  }
  for (const name of ['Download calendar file (.ics)', 'Write an email']) {
    const box = await page.getByRole('link', { name }).boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `${name} fits`);
  }
  const area = await text.boundingBox();
  assert.ok(area && area.x >= 0 && area.x + area.width <= 390, 'the invitation fits');
  assert.deepEqual(await axe(page), [], 'axe at 390 px');
});

test('in the meeting, a host opens the invitation from Invite, by keyboard', async () => {
  const host = await launchPerson();
  people.push(host);
  const page = host.page;
  const res = await fetch(`${server.url}/api/meetings`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'Board', passcode: PASSCODE }),
  });
  const { hostUrl, joinUrl } = await res.json();
  await page.setViewportSize({ width: 390, height: 844 });
  await joinAsHost(page, hostUrl, 'Hana');
  // On a phone the host's controls are folded: open them from the keyboard too.
  await page.getByRole('button', { name: 'Host controls' }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('button', { name: 'Invite', exact: true }).focus();
  await page.keyboard.press('Enter');
  const text = page.getByLabel('Invitation to send');
  await text.waitFor({ state: 'visible' });
  const invitation = await text.inputValue();
  assert.ok(invitation.includes(`Join the meeting: ${joinUrl}`), invitation);
  assert.ok(!invitation.includes('Tulip') && !invitation.includes('4711'));
  await page.getByText('Send the passcode another way').waitFor();
  assert.match(await page.getByRole('link', { name: 'Download calendar file (.ics)' }).getAttribute('href'), /\/invitation\.ics\?lang=en$/);
  const box = await page.locator('#invite-dialog').boundingBox();
  assert.ok(box && box.x >= 0 && box.x + box.width <= 390, 'the dialog fits 390 px');
  assert.deepEqual(await axe(page), []);
  await page.keyboard.press('Escape');
  await page.locator('#invite-dialog').waitFor({ state: 'hidden' });
  await page.getByRole('button', { name: 'Invite', exact: true }).click();
  await page.getByRole('button', { name: 'Close' }).click();
  await page.locator('#invite-dialog').waitFor({ state: 'hidden' });
});
