// The connectivity check page (/check) in real Chromium against a real
// server: reached from the home and join pages, it finishes within 15 s with
// a verdict, media over UDP passes through the SFU, the camera preview plays,
// the microphone meter is labelled, the report says every result and copies;
// a refused camera is said and the rest goes on; it fits a 390 px screen; a
// WebSocket stopped on the way is told from a server refusal; a real coturn
// relay passes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as pathJoin } from 'node:path';
import { startServer, launchPerson, createMeeting, startCoturn } from './harness.mjs';

let server;
const people = [];
const stops = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const p of people) await p.browser.close().catch(() => {});
  server?.stop();
  for (const stop of stops) stop();
});

/** The words of one result row, without its symbol: "Media over UDP: Passed (…)". */
const row = async (page, key) => (await page.locator(`#result-${key}`).innerText()).replace(/^[^A-Za-z]+/, '');

test('the check passes on loopback: verdict, UDP, signalling, preview, report', async () => {
  const person = await launchPerson();
  people.push(person);
  const { page } = person;
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });

  // Linked from the home page.
  await page.goto(server.url);
  const started = Date.now();
  await page.getByRole('link', { name: 'Check your connection' }).click();
  await page.getByRole('heading', { name: 'Check your connection', level: 1 }).waitFor();

  const verdict = page.locator('#verdict');
  await verdict.waitFor({ state: 'visible', timeout: 15000 });
  const took = Date.now() - started;
  assert.ok(took < 15000, `finished in ${took} ms`);
  assert.equal(await verdict.innerText(), 'You can join meetings');
  assert.match(await page.getByRole('status').innerText(), /^Check finished\. You can join meetings/);

  assert.match(await row(page, 'browser'), /^Browser: Passed/);
  assert.match(await row(page, 'signalling'), /^Connection to the server \(WebSocket\): Passed \(answered; 5 pings, median round trip \d+ ms\)/);
  assert.match(await row(page, 'udp'), /^Media over UDP: Passed \(connected in \d+ ms; udp, direct\)/);
  // Until the server offers ICE over TCP the TCP probe is not failed, only not
  // offered; once it does, it passes on loopback.
  assert.match(await row(page, 'tcp'), /^Media over TCP: (Not offered by this server|Passed)/);
  // Without a TURN server configured (or before the server has the endpoint).
  assert.match(await row(page, 'relay'), /^Media through the relay \(TURN\): Not configured/);
  assert.match(await row(page, 'rtt'), /^Round-trip time: Measured \(\d+ ms to the server; media \d+ ms\)/);
  assert.match(await row(page, 'download'), /^Download speed: Measured \(about [\d.]+ Mbit\/s/);
  assert.match(await row(page, 'upload'), /^Upload speed: Measured \(about [\d.]+ Mbit\/s/);

  // The camera preview plays the fake camera; the meter is an accessible meter.
  await page.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview')).videoWidth > 0);
  assert.match(await row(page, 'camera'), /^Camera: Passed/);
  assert.match(await row(page, 'microphone'), /^Microphone: Passed/);
  assert.equal(await page.getByRole('meter', { name: 'Microphone level' }).count(), 1);
  assert.equal(await page.getByLabel('Your camera preview').count(), 1);

  // The report has every result, and the copy button puts it on the clipboard.
  const report = await page.getByLabel('Report (plain text)').inputValue();
  for (const line of [
    'Convene connectivity check',
    `Server: ${server.url}`,
    'Result: You can join meetings',
    'Connection to the server (WebSocket): Passed',
    'Media over UDP: Passed',
    'Media through the relay (TURN): Not configured',
    'Camera: Passed',
    "The server's media addresses:",
    '  UDP 127.0.0.1:',
  ]) {
    assert.ok(report.includes(line), `the report has "${line}":\n${report}`);
  }
  assert.ok(!report.includes('Not reached'), 'nothing failed');
  await page.getByRole('button', { name: 'Copy report' }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('status').getByText('Report copied.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), report);

  // Keyboard: the buttons and the report are reachable with Tab.
  const focusable = await page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll('a, button, textarea')) {
      if (/** @type {HTMLElement} */ (el).tabIndex >= 0 && !(/** @type {any} */ (el).disabled)) out.push(el.id || el.textContent);
    }
    return out;
  });
  assert.deepEqual(focusable, ['copy-report', 'run-again', 'report', 'Back to the start page']);

  // 390 px wide: nothing scrolls sideways.
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `${overflow} px too wide at 390 px`);

  // Run again: the same verdict, with the server's probe connections gone after.
  await page.getByRole('button', { name: 'Run the check again' }).click();
  await page.getByRole('status').getByText('Check finished. You can join meetings').waitFor({ timeout: 15000 });
});

test('a refused camera and microphone are said, and the rest of the check goes on', async () => {
  const person = await launchPerson();
  people.push(person);
  const { page } = person;
  // As if the person clicked "Block" on the browser's question (in every tab).
  await page.context().addInitScript(() => {
    navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
  });
  // Linked from the join page too.
  const host = await launchPerson();
  people.push(host);
  const { link } = await createMeeting(host.page, server.url, 'Check link');
  await page.goto(link);
  const [check] = await Promise.all([
    page.context().waitForEvent('page'),
    page.getByRole('link', { name: 'Check your connection' }).click(),
  ]);
  await check.locator('#verdict').waitFor({ state: 'visible', timeout: 15000 });
  assert.equal(await check.locator('#verdict').innerText(), 'You can join meetings');
  assert.match(await row(check, 'camera'), /^Camera: Not allowed \(you did not allow it\)/);
  assert.match(await row(check, 'microphone'), /^Microphone: Not allowed/);
  assert.match(await check.locator('#verdict-note').innerText(), /^You did not allow the camera and microphone\. You can still join/);
  assert.match(await row(check, 'udp'), /^Media over UDP: Passed/);
  assert.ok((await check.getByLabel('Report (plain text)').inputValue()).includes('Camera: Not allowed'));
});

test('a WebSocket stopped on the way is told apart from a server refusal, and named for IT', async () => {
  const person = await launchPerson();
  people.push(person);
  const { page } = person;
  // As a proxy that does not pass WebSocket upgrades: the socket never opens
  // (here it is sent to a path with no socket), while plain HTTP works.
  await page.context().addInitScript(() => {
    const Orig = window.WebSocket;
    window.WebSocket = class extends Orig {
      constructor(url, protocols) { super(String(url).replace('/api/check/ws', '/api/check/nothing'), protocols); }
    };
  });
  await page.goto(`${server.url}/check`);
  await page.locator('#verdict').waitFor({ state: 'visible', timeout: 15000 });
  assert.equal(await page.locator('#verdict').innerText(), 'Your network blocks the connection to this server: give this report to your IT team');
  assert.match(await row(page, 'signalling'), /^Connection to the server \(WebSocket\): Failed \(the server is reachable, but the WebSocket could not open: a proxy or firewall on the way may block WebSockets\)/);
  assert.match(await row(page, 'udp'), /^Media over UDP: Not checked/);
  const report = await page.getByLabel('Report (plain text)').inputValue();
  assert.ok(report.includes(`Not reached (check firewalls and proxies for these):\n  WebSocket ${server.url.replace('http', 'ws')}/api/check/ws`), report);
});

test('with a TURN server configured, media through the relay passes and says so', async (t) => {
  const secret = 'convene-e2e-turn-secret-0c9d8e7f';
  const coturn = await startCoturn(secret);
  if (!coturn) return t.skip('turnserver (coturn) is not installed');
  stops.push(coturn.stop);
  const dir = mkdtempSync(pathJoin(tmpdir(), 'convene-check-turn-'));
  writeFileSync(pathJoin(dir, 'turn.secret'), secret);
  writeFileSync(pathJoin(dir, 'convene.toml'), `[home]\nname = "Check test"\n\n[turn]\nurls = ["${coturn.url}"]\nsecret_file = "turn.secret"\n`);
  const relayed = await startServer(['--config', pathJoin(dir, 'convene.toml')]);
  stops.push(relayed.stop);

  const person = await launchPerson();
  people.push(person);
  const { page } = person;
  await page.goto(`${relayed.url}/check`);
  await page.locator('#verdict').waitFor({ state: 'visible', timeout: 15000 });
  assert.equal(await page.locator('#verdict').innerText(), 'You can join meetings');
  assert.match(await row(page, 'relay'), /^Media through the relay \(TURN\): Passed \(connected in \d+ ms; relay \(udp to the TURN server\)\)/,
    coturn.log().slice(-2000));
  const report = await page.getByLabel('Report (plain text)').inputValue();
  assert.ok(report.includes(`  TURN ${coturn.url}`), report);
});

test('the page restricts each probe to its transport, and words the verdict from the results', async () => {
  const { onlyTransport, candidatesIn, verdict } = await import('../../web/checks.js');
  const offer = [
    'v=0', 'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'c=IN IP4 0.0.0.0',
    'a=candidate:1 1 udp 2130706431 198.51.100.7 40000 typ host',
    'a=candidate:2 1 tcp 1518280447 198.51.100.7 443 typ host tcptype passive',
    'a=candidate:3 1 udp 2130706431 2001:db8::7 40000 typ host',
    'a=end-of-candidates', 'a=recvonly', '',
  ].join('\r\n');
  assert.deepEqual(candidatesIn(offer).map((c) => `${c.protocol} ${c.address} ${c.port}`),
    ['udp 198.51.100.7 40000', 'tcp 198.51.100.7 443', 'udp 2001:db8::7 40000']);
  const udp = onlyTransport(offer, 'udp');
  assert.ok(!udp.includes(' tcp ') && udp.includes('198.51.100.7 40000') && udp.includes('a=end-of-candidates\r\na=recvonly\r\n'));
  const tcp = onlyTransport(offer, 'tcp');
  assert.deepEqual(candidatesIn(tcp).map((c) => c.protocol), ['tcp']);

  const path = (outcome) => ({ outcome, targets: [] });
  const media = (udp, tcp, relay) => ({ udp: path(udp), tcp: path(tcp), relay: path(relay) });
  const ok = { ok: true };
  assert.equal(verdict({ support: ok, signalling: ok, media: media('pass', 'not-offered', 'not-configured') }), 'ok');
  assert.equal(verdict({ support: ok, signalling: ok, media: media('fail', 'pass', 'pass') }), 'tcp-only');
  assert.equal(verdict({ support: ok, signalling: ok, media: media('fail', 'not-offered', 'pass') }), 'relay-only');
  assert.equal(verdict({ support: ok, signalling: ok, media: media('fail', 'fail', 'not-configured') }), 'blocked');
  assert.equal(verdict({ support: ok, signalling: { ok: false, why: 'blocked' }, media: null }), 'no-server');
  assert.equal(verdict({ support: ok, signalling: { ok: false, why: 'rate-limited' }, media: null }), 'try-later');
  assert.equal(verdict({ support: { ok: false }, signalling: ok, media: null }), 'unsupported');
});
