// A meeting whose media goes through a real TURN server (coturn on loopback),
// with the credentials each browser finds in its welcome: Chromium is made to
// use relay candidates only (as a browser on a network with no direct path
// would), both people decode each other's video, and the selected pair is the
// relay. Fresh credentials applied to the live peer connection by the client's
// own code (Call.setIceServers, what an `ice-servers` message triggers) leave
// the media flowing. Skipped without `turnserver` (scripts/test installs it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as pathJoin } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startServer, launchPerson, createMeeting, join, until, decodingVideos, startCoturn, keepSecret } from './harness.mjs';

const secret = randomBytes(24).toString('hex');
keepSecret(secret);
let coturn;
let server;
const people = [];

before(async () => {
  coturn = await startCoturn(secret);
  if (!coturn) return;
  const dir = mkdtempSync(pathJoin(tmpdir(), 'convene-turn-'));
  writeFileSync(pathJoin(dir, 'turn.secret'), `${secret}\n`);
  chmodSync(pathJoin(dir, 'turn.secret'), 0o600);
  writeFileSync(pathJoin(dir, 'convene.toml'), `[home]\nname = "TURN test"\n\n[turn]\nurls = ["${coturn.url}"]\nsecret_file = "turn.secret"\n`);
  server = await startServer(['--config', pathJoin(dir, 'convene.toml')]);
});

after(async () => {
  for (const p of people) await p.browser.close().catch(() => {});
  server?.stop();
  coturn?.stop();
});

/** A person whose browser gathers relay candidates only. */
async function relayOnly() {
  const person = await launchPerson();
  people.push(person);
  await person.page.context().addInitScript(() => {
    const Prev = window.RTCPeerConnection;
    window.RTCPeerConnection = class extends Prev {
      constructor(config, ...rest) { super({ ...config, iceTransportPolicy: 'relay' }, ...rest); }
    };
  });
  return person;
}

/** The live peer connection's TURN username and its selected pair's local candidate type. */
function media(page) {
  return page.evaluate(async () => {
    const pc = /** @type {any} */ (window).__pcs.filter((p) => p.connectionState !== 'closed').at(-1);
    if (!pc) return null;
    const stats = await pc.getStats();
    let local = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        local = stats.get(stats.get(s.selectedCandidatePairId).localCandidateId);
      }
    });
    const [server] = pc.getConfiguration().iceServers;
    return { username: server?.username, urls: server?.urls, candidateType: local?.candidateType ?? null };
  });
}

test('a meeting relayed through TURN with the welcome\'s credentials, which fresh ones replace without a break', async (t) => {
  if (!coturn) return t.skip('turnserver (coturn) is not installed');
  const ann = await relayOnly();
  const bob = await relayOnly();
  const { link } = await createMeeting(ann.page, server.url, 'Relayed');
  await join(ann.page, link, 'Ann');
  await join(bob.page, link, 'Bob');
  for (const [who, p] of [['Ann', ann], ['Bob', bob]]) {
    await until(`${who} decoding video through the relay`, async () => (await decodingVideos(p.page)) >= 1, 30000)
      .catch((e) => { throw new Error(`${e.message}\n${coturn.log().slice(-3000)}`); });
  }
  const a = await media(ann.page);
  const b = await media(bob.page);
  for (const m of [a, b]) {
    assert.equal(m.candidateType, 'relay', JSON.stringify(m));
    assert.deepEqual([].concat(m.urls), [coturn.url]);
    assert.match(m.username, /^\d+:[0-9a-f]{16}$/);
  }
  assert.notEqual(a.username, b.username, 'each their own credentials');

  // Fresh credentials, as an ice-servers message brings them, through the
  // client's own code, on the live connection: it takes them, and media goes on.
  const fresh = await ann.page.evaluate(async () => {
    const { Call } = await import('/assets/call.js');
    const pc = /** @type {any} */ (window).__pcs.filter((p) => p.connectionState !== 'closed').at(-1);
    const { iceServers } = await (await fetch('/api/check/ice-servers')).json();
    Call.prototype.setIceServers.call({ pc }, iceServers);
    return iceServers[0].username;
  });
  assert.notEqual(fresh, a.username);
  assert.equal((await media(ann.page)).username, fresh);
  await new Promise((r) => setTimeout(r, 1500));
  assert.ok((await decodingVideos(ann.page)) >= 1, 'Ann still decodes Bob');
  assert.ok((await decodingVideos(bob.page)) >= 1, 'Bob still decodes Ann');
  assert.equal((await media(ann.page)).candidateType, 'relay');
});
