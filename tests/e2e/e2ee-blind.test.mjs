// What the server can see of an end-to-end encrypted meeting, and what a
// person who was removed, or who came late, can decrypt (issue 16).
//
// A "spy" joins the meeting like anyone else, so the SFU forwards it what it
// forwards everyone; but its SFrame worker (sframe-tap-worker.js, served in
// place of the real one) never gets the page's keys. Its receivers therefore
// see the frames exactly as they crossed the server: a receive transform gets
// the depacketized RTP payloads the SFU relayed. It stands in for the server
// operator, and (given a removed member's keys) for a removed participant who
// keeps receiving packets, which the real server would never send them.
//
// Ana publishes camera and microphone; Bo, the spy and Dee join with their
// cameras off. Bo's and Dee's workers are the real worker plus a tap that
// reports their epoch secrets and the first bytes of the clear frames they decode.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startServer, launchPerson, createMeeting, joinAsHost, join, until, ROOT } from './harness.mjs';
import { join as pathJoin } from 'node:path';

const TAP = readFileSync(pathJoin(ROOT, 'tests', 'e2e', 'sframe-tap-worker.js'), 'utf8');

let server;
/** @type {Record<string, any>} */ const people = {};

before(async () => {
  server = await startServer();
  for (const [who, role] of [['ana', null], ['bo', 'member'], ['spy', 'spy'], ['dee', 'member']]) {
    const person = await launchPerson();
    if (role) {
      // The page's own request for its worker gets the tap; the tap's import of
      // the real worker (with ?real) goes to the server.
      await person.page.context().route(
        (url) => url.pathname === '/assets/e2ee/sframe-worker.js' && url.search === '',
        (route) => route.fulfill({ contentType: 'text/javascript', body: TAP.replace("'__ROLE__'", JSON.stringify(role)) }),
      );
    }
    people[who] = person;
  }
});

after(async () => {
  for (const p of Object.values(people)) await p.browser.close().catch(() => {});
  server?.stop();
});

/** Asks a page's tap worker something, over the BroadcastChannel. */
const ask = (page, q) => page.evaluate((q) => new Promise((resolve, reject) => {
  const ch = new BroadcastChannel('sframe-tap');
  const id = Math.random().toString(36).slice(2);
  const timer = setTimeout(() => { ch.close(); reject(new Error(`the tap did not answer ${q.ask}`)); }, 10000);
  ch.onmessage = (e) => {
    if (e.data?.id !== id) return;
    clearTimeout(timer);
    ch.close();
    resolve(e.data.answer);
  };
  ch.postMessage({ ...q, id });
}), q);

/** What a page's MLS group says now: epoch, code, members (set by e2ee-meeting.js). */
const groupOf = (page) => page.evaluate(() => /** @type {any} */ (window).conveneE2ee || null);

/** Remote video frames a page has decoded, summed over its receivers. */
const framesDecoded = (page) => page.evaluate(async () => {
  let n = 0;
  for (const pc of /** @type {any} */ (window).__pcs) {
    if (pc.connectionState === 'closed') continue;
    (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') n += s.framesDecoded || 0; });
  }
  return n;
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function joinCameraOff(page, link, name) {
  try {
    await join(page, link, name);
  } catch (e) {
    // What the page said, if it said why.
    const said = await page.evaluate(() => ['join-error', 'device-error', 'status'].map((id) => document.getElementById(id)?.textContent).filter(Boolean).join(' | ')).catch(() => '');
    e.message += `\n${name}'s page says: ${said || '(nothing)'}`;
    throw e;
  }
  await page.getByRole('button', { name: 'Stop camera' }).click();
  await page.getByRole('button', { name: 'Start camera' }).waitFor();
}

test('the server relays frames it cannot read; a removed member, and a late joiner, cannot decrypt what they were not there for', async () => {
  const { ana, bo, spy, dee } = Object.fromEntries(Object.entries(people).map(([k, v]) => [k, v.page]));
  const { link, hostLink } = await createMeeting(ana, server.url, 'Sealed board', {
    setup: (page) => page.getByLabel(/End-to-end encrypted/).check(),
  });
  await joinAsHost(ana, hostLink, 'Ana');
  await joinCameraOff(bo, link, 'Bo');
  await joinCameraOff(spy, link, 'Sam');
  const start = await until('Ana, Bo and Sam in one group', async () => {
    const g = await groupOf(ana);
    return g?.members.length === 3 && (await groupOf(bo))?.epoch === g.epoch && g;
  }, 20000);
  await until('Bo decodes Ana', async () => (await framesDecoded(bo)) > 30, 20000);

  // 1. The frames as the server relayed them: Ana's video and audio arrive at
  // the spy, but none of the bytes Bo decoded after decrypting are in them.
  await until('the spy receives Ana', async () => (await ask(spy, { ask: 'counts' })).video.raw > 30, 20000);
  const decodedBefore = await framesDecoded(spy);
  await Promise.all([ask(spy, { ask: 'record', on: true }), ask(bo, { ask: 'record', on: true })]);
  await sleep(4000);
  await Promise.all([ask(spy, { ask: 'record', on: false }), ask(bo, { ask: 'record', on: false })]);
  const needles = await ask(bo, { ask: 'needles' });
  assert.ok(needles.length >= 100, `Bo kept ${needles.length} clear frames`);
  const seen = await ask(spy, { ask: 'find', needles });
  assert.ok(seen.recorded >= 100, `the spy kept ${seen.recorded} forwarded frames`);
  assert.equal(seen.found, 0, `clear bytes in what the server relayed: ${seen.found} of ${needles.length}`);
  // (A decoder is no judge here: Chromium's VP8 decoder sometimes outputs
  // frames from them, since a keyframe's clear 10-byte prefix is a valid frame
  // header and the rest decodes to noise. The bytes are the proof.)
  const garbled = (await framesDecoded(spy)) - decodedBefore;
  console.log(`# figure: the spy's decoder, fed the relayed frames as they are, output ${garbled} frames in 4 s`);

  // The same relayed frames open with the group's keys (Bo's, here), into the
  // very frames Bo decoded: so the bytes above were the meeting, not noise.
  const boSecrets = await ask(bo, { ask: 'secrets' });
  const opened = await ask(spy, { ask: 'try', secrets: boSecrets, needles });
  assert.equal(opened.opened, opened.tried, `every relayed frame opens with a member's keys: ${JSON.stringify(opened)}`);
  console.log(`# figure: ${opened.opened} relayed frames opened with Bo's keys; ${opened.found} of Bo's ${needles.length} clear frames among them`);
  assert.ok(opened.found >= needles.length / 2, `the opened frames are Bo's clear frames: ${JSON.stringify(opened)}`);

  // 2. A removed member who keeps receiving packets, with every key they had.
  await ask(spy, { ask: 'decrypt', secrets: boSecrets });
  const c0 = await ask(spy, { ask: 'counts' });
  await until('with Bo\'s keys the spy decodes Ana\'s video', async () => {
    const c = await ask(spy, { ask: 'counts' });
    return c.video.ok - c0.video.ok > 30 && c.audio.ok - c0.audio.ok > 30;
  });
  const f0 = await framesDecoded(spy);
  await until('…and its decoder shows it', async () => (await framesDecoded(spy)) - f0 > 10);
  await ana.getByRole('button', { name: 'People' }).click();
  await ana.getByRole('button', { name: 'Remove Bo' }).click();
  await ana.getByRole('dialog').getByRole('button', { name: 'Remove' }).click();
  const removed = await until('a new epoch without Bo', async () => {
    const g = await groupOf(ana);
    return g.epoch === start.epoch + 1 && g.members.length === 2 && g;
  }, 10000);
  assert.notEqual(removed.code, start.code, 'the code changed');
  // Bo's page never got a key of the new epoch (the test holds all Bo had).
  await sleep(1000);
  const boLater = await ask(bo, { ask: 'secrets' });
  assert.ok(boLater.every((k) => k.epoch <= start.epoch), `Bo's epochs after the removal: ${boLater.map((k) => k.epoch)}`);
  await sleep(1500); // frames encoded under the old key before the commit are still on the way
  const [c1, f1] = [await ask(spy, { ask: 'counts' }), await framesDecoded(spy)];
  await sleep(4000);
  const [c2, f2] = [await ask(spy, { ask: 'counts' }), await framesDecoded(spy)];
  const d = (k) => ({ raw: c2[k].raw - c1[k].raw, ok: c2[k].ok - c1[k].ok });
  assert.ok(d('video').raw > 30 && d('audio').raw > 100, `Ana's media still reaches the spy: ${JSON.stringify([d('video'), d('audio')])}`);
  assert.deepEqual([d('video').ok, d('audio').ok], [0, 0], 'nothing opens with the removed member\'s keys');
  assert.equal(f2 - f1, 0, 'no video decoded with the removed member\'s keys');

  // 3. A late joiner: its keys open nothing relayed before it came.
  await joinCameraOff(dee, link, 'Dee');
  const late = await until('Dee in the group', async () => {
    const [g, h] = [await groupOf(ana), await groupOf(dee)];
    return g?.epoch === start.epoch + 2 && h?.epoch === g.epoch && g.members.length === 3 && g;
  }, 20000);
  assert.notEqual(late.code, removed.code);
  await until('Dee decodes Ana', async () => (await framesDecoded(dee)) > 30, 20000);
  const deeSecrets = await ask(dee, { ask: 'secrets' });
  assert.ok(deeSecrets.length >= 1 && deeSecrets.every((s) => s.epoch >= late.epoch), `Dee's epochs: ${deeSecrets.map((s) => s.epoch)}`);
  const tried = await ask(spy, { ask: 'try', secrets: deeSecrets, needles });
  assert.ok(tried.tried >= 100, JSON.stringify(tried));
  assert.equal(tried.opened, 0, `frames from before Dee joined that Dee's keys open: ${JSON.stringify(tried)}`);
});
