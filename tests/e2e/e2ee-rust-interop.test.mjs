// The Rust client's end-to-end encryption (crates/convene-e2ee: openmls and its
// own SFrame) in one group with browser code (web/e2ee/mls.js on ts-mls, and
// web/e2ee/sframe.js) in Node, with no server: a small relay in this file plays
// the Delivery Service as the server does (protocol.md §5.24). The Rust member
// is target/release/examples/mls-peer, built by scripts/test
// (`cargo build --release -p convene-e2ee --example mls-peer`); this test builds nothing.
//
// The second test puts the Rust client (crates/convene-client's example
// e2ee-participant, also built by scripts/test) and Chromium in one encrypted
// meeting on the real server: one code, each decrypts the other's frames, chat
// both ways.
//
// Checks of the first: a browser creates, Rust joins by its Welcome; Rust commits a browser's
// add (a ts-mls joiner takes an openmls Welcome); every epoch gives all members the
// same verification code and SFrame base key; chat both ways; Rust commits a
// removal, the browser applies it, and the one removed reads nothing after;
// Rust refuses a browser's commit that adds someone its roster lacks; SFrame
// frames pass both ways (VP8 keyframe, delta frame, Opus), and a frame under an
// epoch Rust does not hold is refused.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startE2ee, b64 } from '../../web/e2ee/mls.js';
import { mlsKid, deriveKeySalt, encryptFrame, decryptFrame, clearPrefixLength } from '../../web/e2ee/sframe.js';

const PARTICIPANT = fileURLToPath(new URL('../../target/release/examples/e2ee-participant', import.meta.url));
const PEER = fileURLToPath(new URL('../../target/release/examples/mls-peer', import.meta.url));
const GROUP_ID = b64(new TextEncoder().encode('rust-interop-1'));
const hex = (u) => Buffer.from(u).toString('hex');
const unhex = (s) => new Uint8Array(Buffer.from(s, 'hex'));

/** The Rust member: one command a line in, its events out until {"event":"done"}. */
function rustPeer() {
  const child = spawn(PEER, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  let batch = [];
  lines.on('line', (line) => {
    const ev = JSON.parse(line);
    if (ev.event !== 'done') { batch.push(ev); return; }
    const out = batch;
    batch = [];
    waiting.shift()(out);
  });
  return {
    child,
    /** @returns {Promise<object[]>} the events the command caused */
    command(cmd) {
      return new Promise((resolve) => { waiting.push(resolve); child.stdin.write(JSON.stringify(cmd) + '\n'); });
    },
    stop() { child.stdin.end(); },
  };
}

/** A relay between members, each with handle(msg) → Promise, as the server orders and routes. */
function relay() {
  const people = new Map(); // pid -> {inbox, handle, epochs, chats, warnings}
  const r = { epoch: null, members: [], waiting: [], lastRemove: [], failed: [], sent: [] };
  const deliver = (pid, msg) => people.get(pid)?.inbox.push(msg);
  r.deliver = deliver;
  r.onClient = (pid, msg) => {
    r.sent.push({ pid, msg });
    switch (msg.type) {
      case 'mls-key-package':
        if (r.epoch === null && r.members.length === 0) { r.members = [pid]; deliver(pid, { type: 'mls-create-request', groupId: GROUP_ID }); }
        else r.waiting.push({ participantId: pid, keyPackage: msg.keyPackage });
        break;
      case 'mls-group-created': r.epoch = 0; break;
      case 'mls-commit': {
        if (msg.epoch !== r.epoch) { deliver(pid, { type: 'error', code: 'mls-stale-epoch' }); break; }
        r.epoch += 1;
        const removed = r.lastRemove;
        const added = r.lastAdd.map((a) => a.participantId);
        // As the server (protocol.md §5.24): whom it asked to add, by their KeyPackage's
        // SHA-256, which members check the commit against (so each side checks the
        // other library's encoding of key packages it did not make).
        const adds = r.lastAdd.map((a) => ({ participantId: a.participantId, keyPackageSha256: createHash('sha256').update(Buffer.from(a.keyPackage, 'base64')).digest('base64') }));
        for (const m of r.members) if (!removed.includes(m)) deliver(m, { type: 'mls-commit', epoch: msg.epoch, commit: msg.commit, from: pid, adds });
        r.members = r.members.filter((m) => !removed.includes(m)).concat(added);
        if (msg.welcome) for (const a of added) deliver(a, { type: 'mls-welcome', welcome: msg.welcome, epoch: r.epoch });
        break;
      }
      case 'mls-commit-failed': r.failed.push({ pid, ...msg }); break;
      case 'mls-app': for (const m of r.members) if (m !== pid) deliver(m, { ...msg, from: pid }); break;
    }
  };
  /** Asks `to` to commit everyone waiting, and `remove`. */
  r.request = (to, remove = []) => {
    r.lastAdd = r.waiting.splice(0);
    r.lastRemove = remove;
    deliver(to, { type: 'mls-commit-request', epoch: r.epoch, add: r.lastAdd, remove, deadlineMs: 2000 });
  };
  r.settle = async () => {
    for (let busy = true; busy;) {
      busy = false;
      for (const p of people.values()) {
        while (p.inbox.length) { busy = true; await p.handle(p.inbox.shift()); }
      }
    }
  };
  r.add = (pid, p) => { people.set(pid, { inbox: [], epochs: [], chats: [], warnings: [], ...p }); return people.get(pid); };
  return r;
}

async function browser(r, pid, roster) {
  const p = r.add(pid, {});
  p.e2ee = await startE2ee({
    groupId: GROUP_ID, participantId: pid, name: pid.toUpperCase(), identity: null,
    send: (msg) => r.onClient(pid, msg), rosterHas: (x, claims) => roster.has(x) && !claims?.l,
    onEpoch: (e) => p.epochs.push(e), onChat: (c) => p.chats.push(c), onWarning: (w) => p.warnings.push(w),
  });
  p.handle = (msg) => p.e2ee.handle(msg);
  return p;
}

async function rust(r, pid, roster) {
  const peer = rustPeer();
  const p = r.add(pid, { peer });
  p.take = (events) => {
    for (const ev of events) {
      if (ev.event === 'send') r.onClient(pid, ev.msg);
      else if (ev.event === 'epoch') p.epochs.push(ev);
      else if (ev.event === 'chat') p.chats.push({ from: ev.from, text: ev.text });
      else if (ev.event === 'warning') p.warnings.push(ev);
      else if (ev.event === 'error') throw new Error(`mls-peer: ${ev.message}`);
    }
    return events;
  };
  p.handle = async (msg) => p.take(await peer.command({ cmd: 'server', msg }));
  p.take(await peer.command({ cmd: 'start', participantId: pid, name: 'Rusty', roster: [...roster] }));
  return p;
}

const last = (p) => p.epochs.at(-1);
const codeOf = (p) => `${last(p).code.emoji.join(' ')} / ${last(p).code.digits}`;
const secretOf = (p) => (typeof last(p).sframeSecret === 'string' ? last(p).sframeSecret : hex(last(p).sframeSecret));

test('a Rust member (openmls) and browser members (ts-mls) share one group, its codes, keys, chat and frames', async () => {
  assert.ok(existsSync(PEER), `${PEER} is missing: cargo build --release -p convene-e2ee --example mls-peer (scripts/test does)`);
  const r = relay();
  const roster = new Set(['a', 'b', 'r']);
  const a = await browser(r, 'a', roster);
  await r.settle();
  assert.equal(last(a).epoch, 0);

  // Rust joins by a ts-mls Welcome.
  const rs = await rust(r, 'r', roster);
  r.request('a');
  await r.settle();
  assert.equal(last(rs).epoch, 1, JSON.stringify(rs.warnings));
  assert.equal(codeOf(rs), codeOf(a), 'one verification code');
  assert.equal(secretOf(rs), secretOf(a), 'one SFrame base key');
  assert.deepEqual(last(rs).members.map((m) => [m.leaf, m.participantId]), [[0, 'a'], [1, 'r']]);
  assert.equal(last(rs).members[1].name, 'Rusty');
  assert.deepEqual(a.e2ee.members().map((m) => [m.leaf, m.participantId, m.name]), [[0, 'a', 'A'], [1, 'r', 'Rusty']], 'the browser reads the Rust credential');

  // Rust commits a browser's add: ts-mls applies an openmls commit and joins by an openmls Welcome.
  const b = await browser(r, 'b', roster);
  r.request('r');
  await r.settle();
  for (const p of [a, b, rs]) assert.equal(last(p).epoch, 2, JSON.stringify(p.warnings));
  assert.equal(codeOf(a), codeOf(rs));
  assert.equal(codeOf(b), codeOf(rs));
  assert.equal(secretOf(b), secretOf(rs));
  assert.deepEqual(last(a).added, ['b']);
  assert.deepEqual(last(rs).added, ['b']);
  assert.equal(new Set(rs.epochs.map((e) => e.code.digits)).size, 2, 'the code changes with the epoch');

  // Chat both ways, the sender named by its MLS leaf.
  await a.e2ee.sendChat('hello from the browser');
  await r.settle();
  assert.deepEqual(rs.chats, [{ from: 'a', text: 'hello from the browser' }]);
  rs.take(await rs.peer.command({ cmd: 'chat', text: 'hello from Rust' }));
  await r.settle();
  assert.deepEqual(a.chats, [{ from: 'r', text: 'hello from Rust' }]);
  assert.deepEqual(b.chats.at(-1), { from: 'r', text: 'hello from Rust' });

  // SFrame both ways, with b's keys of epoch 2 (sframe.js) and Rust's.
  const secret = unhex(secretOf(b));
  const key = Uint8Array.from([0x50, 0x2a, 0x01, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, ...Array.from({ length: 200 }, (_, i) => i & 255)]);
  const delta = Uint8Array.from([0x31, 0x02, 0x03, ...Array.from({ length: 120 }, (_, i) => (i * 3) & 255)]);
  const opus = Uint8Array.from({ length: 80 }, (_, i) => (i * 7) & 255);
  let ctr = 0;
  for (const [kind, frame] of [['video', key], ['video', delta], ['audio', opus]]) {
    const kid = mlsKid(last(b).ownLeaf, last(b).epoch, 0);
    const sealed = await encryptFrame(await deriveKeySalt(secret, kid), kid, ctr++, frame, clearPrefixLength(kind, frame));
    const [opened] = await rs.peer.command({ cmd: 'open', kind, data: hex(sealed) });
    assert.equal(opened.event, 'opened', JSON.stringify(opened));
    assert.equal(opened.frame, hex(frame));
    assert.equal(opened.leaf, last(b).ownLeaf);
    const [again] = await rs.peer.command({ cmd: 'open', kind, data: hex(sealed) });
    assert.equal(again.event, 'refused', 'a replayed frame');

    const [ours] = await rs.peer.command({ cmd: 'seal', kind, context: 1, frame: hex(frame) });
    const data = unhex(ours.data);
    assert.equal(hex(data.subarray(0, clearPrefixLength(kind, frame))), hex(frame.subarray(0, clearPrefixLength(kind, frame))), 'the clear prefix');
    const back = await decryptFrame((k) => deriveKeySalt(secret, k), data, clearPrefixLength(kind, data));
    assert.equal(back.ok, true, back.reason);
    assert.equal(hex(back.frame), hex(frame));
    assert.equal(back.kid, mlsKid(last(rs).ownLeaf, last(rs).epoch, 1), 'Rust\'s leaf, epoch and send context');
  }
  // A frame under an epoch Rust has no key for is refused.
  const future = mlsKid(last(b).ownLeaf, last(b).epoch + 1, 0);
  const stray = await encryptFrame(await deriveKeySalt(secret, future), future, 0, opus, 0);
  const [refused] = await rs.peer.command({ cmd: 'open', kind: 'audio', data: hex(stray) });
  assert.equal(refused.event, 'refused');
  assert.match(refused.reason, /no key/);

  // Rust commits a removal; the browser applies it; the one removed reads nothing after.
  r.request('r', ['a']);
  await r.settle();
  assert.equal(last(b).epoch, 3, JSON.stringify(b.warnings));
  assert.equal(last(rs).epoch, 3);
  assert.equal(codeOf(b), codeOf(rs));
  assert.equal(secretOf(b), secretOf(rs));
  assert.deepEqual(last(b).removed, ['a']);
  assert.deepEqual(last(rs).removed, ['a']);
  assert.equal(last(a).epoch, 2, 'a was not sent the commit');
  rs.take(await rs.peer.command({ cmd: 'chat', text: 'after a left' }));
  const leaked = r.sent.filter((s) => s.msg.type === 'mls-app').at(-1).msg;
  r.deliver('a', { ...leaked, from: 'r' }); // a server that forwards it anyway
  await r.settle();
  assert.deepEqual(b.chats.at(-1), { from: 'r', text: 'after a left' });
  assert.ok(!a.chats.some((c) => c.text === 'after a left'));
  assert.equal(a.warnings.at(-1).code, 'undecryptable');

  // A browser commits a browser's add: Rust checks the adds against the server's
  // list by the SHA-256 of ts-mls's key package, and applies it.
  roster.add('c');
  await rs.peer.command({ cmd: 'roster', ids: ['b', 'r', 'c'] });
  const c = await browser(r, 'c', roster);
  r.request('b');
  await r.settle();
  assert.equal(last(rs).epoch, 4, JSON.stringify(rs.warnings));
  assert.deepEqual(last(rs).added, ['c']);
  assert.equal(codeOf(c), codeOf(rs));
  c.e2ee.stop();

  // A browser's commit that adds someone the Rust member's roster lacks is refused.
  // (The server and b show g; the Rust member's roster does not.)
  roster.add('g');
  await browser(r, 'g', roster);
  await rs.peer.command({ cmd: 'roster', ids: ['b', 'r', 'c'] });
  const epoch = r.epoch;
  r.request('b');
  await r.settle();
  assert.deepEqual(last(b).added, ['g'], 'b committed the add');
  assert.equal(last(rs).epoch, epoch, 'Rust kept its state');
  assert.equal(rs.warnings.at(-1).code, 'commit-refused');
  assert.match(rs.warnings.at(-1).detail, /unknown-participant g/);
  assert.ok(r.failed.some((f) => f.pid === 'r' && f.epoch === epoch));

  for (const p of [a, b]) p.e2ee.stop();
  r.sent.length = 0;
  rs.peer.stop();
});

/** The Rust client in a meeting: its latest status line, and a way to chat. */
function rustParticipant(url, meeting, name) {
  const child = spawn(PARTICIPANT, [url, meeting, name, '60'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const p = { child, status: null, chat: (text) => child.stdin.write(`chat ${text}\n`), stop: () => child.stdin.end() };
  createInterface({ input: child.stdout }).on('line', (line) => {
    const v = JSON.parse(line);
    if (v.error) console.error('e2ee-participant:', v.error);
    p.status = v;
  });
  return p;
}

let server;
let person;
let firefox;
after(async () => {
  await Promise.race([firefox?.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  await person?.browser.close().catch(() => {});
  server?.stop();
});

test('the Rust client, Chromium and Firefox in one encrypted meeting: one code, each decrypts the others, chat both ways', async () => {
  assert.ok(existsSync(PARTICIPANT), `${PARTICIPANT} is missing: cargo build --release -p convene-client --example e2ee-participant (scripts/test does)`);
  const { startServer, launchPerson, launchFirefox, createMeeting, joinAsHost, until } = await import('./harness.mjs');
  server = await startServer();
  person = await launchPerson();
  const ana = person.page;
  const { hostLink, link } = await createMeeting(ana, server.url, 'Rust and Chromium', {
    setup: (page) => page.getByLabel(/End-to-end encrypted/).check(),
  });
  await joinAsHost(ana, hostLink, 'Ana');
  await until('Ana has made the group', async () => (await ana.evaluate(() => /** @type {any} */ (window).conveneE2ee))?.epoch === 0);
  const meeting = new URL(link).pathname.split('/').filter(Boolean).at(-1);
  const rusty = rustParticipant(server.url, meeting, 'Rusty');
  try {
    const groupOf = () => ana.evaluate(() => /** @type {any} */ (window).conveneE2ee || null);
    const [g, st] = await until('Ana and Rusty in one group with one code', async () => {
      const gr = await groupOf();
      const s = rusty.status;
      return gr && s && gr.epoch === 1 && s.epoch === 1 && gr.members.length === 2 && gr.code === s.digits && [gr, s];
    }, 20000);
    assert.deepEqual([...g.members].sort(), [...st.members].sort());
    const anaId = st.members.find((m) => m !== st.participantId);

    // Rusty decrypts Ana's camera and microphone (Chromium's SFrame worker sealed them).
    const frames = await until('Rusty decrypts Ana\'s camera and microphone', () => {
      const f = rusty.status?.frames ?? {};
      const cam = f[`${anaId}/camera`], mic = f[`${anaId}/microphone`];
      return cam?.decrypted >= 20 && mic?.decrypted >= 20 && { cam, mic };
    }, 20000);
    // Frames in flight while keys change are refused (unknown KID), as in browsers; no more.
    assert.ok(frames.cam.failed < 15, JSON.stringify(frames));
    // Ana's worker decrypts Rusty's (synthetic VP8, which no browser can decode as
    // a picture, and Opus-sized audio): its receive transforms count them.
    const recv = await until('Ana\'s worker decrypts Rusty\'s frames', async () => {
      const s = await ana.evaluate(() => /** @type {any} */ (window).conveneE2eeStats || null);
      const sum = (kind) => (s?.byTransform ?? []).filter((t) => t.side === 'recv' && t.kind === kind).reduce((n, t) => n + t.decrypted, 0);
      return sum('video') >= 20 && sum('audio') >= 20 && s;
    }, 20000);
    assert.ok(recv.decrypted > 0, JSON.stringify(recv));
    if (process.env.CONVENE_E2E_DEBUG) console.log('Rusty', JSON.stringify(frames), 'Ana', JSON.stringify(recv.byTransform));

    // Encrypted chat both ways.
    await ana.getByRole('button', { name: /^Chat/ }).click();
    await ana.getByLabel('Message').fill('hello, Rusty');
    await ana.getByLabel('Message').press('Enter');
    await until('Rusty reads Ana\'s chat', () => rusty.status?.chat?.some(([from, text]) => from === anaId && text === 'hello, Rusty'));
    assert.equal(rusty.status.clearChat, 0, 'nothing came as clear chat');
    rusty.chat('hello from Rust');
    await until('Ana reads Rusty\'s chat', () => ana.locator('#chat-log').textContent().then((t) => t.includes('hello from Rust')));
    assert.deepEqual(rusty.status.warnings, []);

    // Firefox joins: one group of three (the Rust client applies Firefox's add),
    // one code; Rusty decrypts Firefox's frames and Firefox's worker Rusty's.
    let fx;
    ({ browser: firefox, page: fx } = await launchFirefox());
    await fx.goto(link);
    await fx.waitForSelector('#name');
    await fx.type('#name', 'Fiona');
    await until('Firefox shows its camera', () => fx.$eval('#preview', (v) => v.videoWidth > 0), 20000);
    await fx.click('#join');
    await fx.waitForSelector('#meeting', { visible: true });
    const three = await until('Ana, Fiona and Rusty in one group with one code', async () => {
      const gs = [await groupOf(), await fx.evaluate(() => /** @type {any} */ (window).conveneE2ee || null)];
      const s = rusty.status;
      return gs.every((x) => x && x.epoch === 2 && x.members.length === 3 && x.code === s.digits) && s.epoch === 2 && s;
    }, 20000);
    const fionaId = three.members.find((m) => m !== anaId && m !== three.participantId);
    await until('Rusty decrypts Fiona\'s camera and microphone', () => {
      const f = rusty.status?.frames ?? {};
      return f[`${fionaId}/camera`]?.decrypted >= 20 && f[`${fionaId}/microphone`]?.decrypted >= 20;
    }, 20000);
    // Two cameras reach Fiona (Ana's and Rusty's): both receive transforms decrypt.
    const fxStats = await until('Fiona\'s worker decrypts both cameras', async () => {
      const st = await fx.evaluate(() => /** @type {any} */ (window).conveneE2eeStats || null);
      const videos = (st?.byTransform ?? []).filter((t) => t.side === 'recv' && t.kind === 'video' && t.decrypted >= 20);
      return videos.length >= 2 && st;
    }, 20000);
    if (process.env.CONVENE_E2E_DEBUG) console.log('Fiona', JSON.stringify(fxStats.byTransform), 'Rusty', JSON.stringify(rusty.status.frames));
    const cams = rusty.status.frames[`${fionaId}/camera`];
    assert.ok(cams.failed < 15, JSON.stringify(cams));
    assert.deepEqual(rusty.status.warnings, []);
  } finally {
    rusty.stop();
  }
});
