// What end-to-end encryption costs the participants (BENCHMARKS.md, "End-to-end
// encryption"):
//  1. SFrame in the browser: web/e2ee/sframe.js encrypting and decrypting ten
//     seconds of 720p video (30 frames/s at 2.5 Mbit/s, a keyframe every 2 s)
//     and of Opus audio, in Chromium and in Firefox, on the page's main thread
//     (the worker runs the same code). Reported as CPU milliseconds per second
//     of media, that is thousandths of one core.
//  2. MLS: web/e2ee/mls.js members in Node (the browser's code, on Node's
//     WebCrypto), joining one by one through mls-relay.mjs up to 50: the time
//     the committer takes to commit the Nth add, a member to apply it, and
//     the Nth person to join from the Welcome; then a removal at 50.
// Not part of the test suite (it measures, it asserts nothing); run it with
// `node tests/e2e/e2ee-cost.bench.mjs` after a release build.
import { startServer, launchPerson, launchFirefox } from './harness.mjs';
import { relay } from './mls-relay.mjs';

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const round = (x) => Math.round(x * 10) / 10;

/** Runs in the page: sframe.js over ten seconds of media. */
async function sframeCost() {
  const s = await import('/assets/e2ee/sframe.js');
  const secret = crypto.getRandomValues(new Uint8Array(16));
  const frames = (n, sizeOf) => Array.from({ length: n }, (_, i) => {
    const f = crypto.getRandomValues(new Uint8Array(Math.min(sizeOf(i), 65536))); // getRandomValues caps at 64 KiB
    if (sizeOf(i) > 65536) return Uint8Array.from({ length: sizeOf(i) }, (_, j) => f[j % f.length]);
    return f;
  });
  const video = frames(300, (i) => (i % 60 === 0 ? 60_000 : 10_400)).map((f, i) => { f[0] = i % 60 === 0 ? 0x10 : 0x11; return f; });
  const audio = frames(500, () => 120);
  const out = {};
  for (const [kind, list] of [['video', video], ['audio', audio]]) {
    const kid = s.mlsKid(3, 7, 0);
    const keys = await s.deriveKeySalt(secret, kid);
    const t0 = performance.now();
    const sealed = [];
    for (const [ctr, f] of list.entries()) sealed.push(await s.encryptFrame(keys, kid, ctr, f, s.clearPrefixLength(kind, f)));
    const t1 = performance.now();
    let ok = 0;
    for (const f of sealed) if ((await s.decryptFrame(() => keys, f, s.clearPrefixLength(kind, f))).ok) ok++;
    const t2 = performance.now();
    if (ok !== list.length) throw new Error(`${kind}: ${ok} of ${list.length} frames opened`);
    out[kind] = { encryptMsPerS: (t1 - t0) / 10, decryptMsPerS: (t2 - t1) / 10, frames: list.length };
  }
  return out;
}

async function browsers(server) {
  const lines = [];
  const chromium = await launchPerson();
  const { browser: firefox, page: fx } = await launchFirefox();
  try {
    for (const [name, page] of [['Chromium', chromium.page], ['Firefox ESR', fx]]) {
      await page.goto(server.url);
      const runs = [];
      for (let i = 0; i < 3; i++) runs.push(await page.evaluate(sframeCost));
      const m = (kind, what) => round(median(runs.map((r) => r[kind][what])));
      lines.push(`${name}: 720p video at 2.5 Mbit/s: encrypt ${m('video', 'encryptMsPerS')} ms/s, decrypt ${m('video', 'decryptMsPerS')} ms/s; ` +
        `Opus: encrypt ${m('audio', 'encryptMsPerS')} ms/s, decrypt ${m('audio', 'decryptMsPerS')} ms/s (median of 3 runs of 10 s of media)`);
    }
  } finally {
    await chromium.browser.close();
    await Promise.race([firefox.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  }
  return lines;
}

async function mls() {
  const r = relay();
  const roster = new Set();
  const pids = Array.from({ length: 50 }, (_, i) => `p${String(i).padStart(2, '0')}`);
  for (const p of pids) roster.add(p);
  const people = [];
  const rows = [];
  for (const [n, pid] of pids.entries()) {
    const t0 = performance.now();
    const p = await r.join(pid, roster);
    const keyPackageMs = performance.now() - t0;
    people.push(p);
    if (n === 0) { await r.settle(); continue; }
    const committer = people[0];
    r.request('p00', r.waitingKps.splice(0));
    const t1 = performance.now();
    await committer.e2ee.handle(committer.inbox.shift());
    const commitMs = performance.now() - t1;
    const applyMs = [];
    for (const m of people.slice(1, -1)) {
      const t = performance.now();
      while (m.inbox.length) await m.e2ee.handle(m.inbox.shift());
      applyMs.push(performance.now() - t);
    }
    const t2 = performance.now();
    while (p.inbox.length) await p.e2ee.handle(p.inbox.shift());
    const welcomeMs = performance.now() - t2;
    await r.settle();
    if (p.epochs.at(-1)?.epoch !== n) throw new Error(`${pid} is at ${p.epochs.at(-1)?.epoch}, not ${n}`);
    if ([10, 25, 50].includes(n + 1)) {
      rows.push(`join number ${n + 1}: key package ${round(keyPackageMs)} ms, commit ${round(commitMs)} ms, ` +
        `each of the ${applyMs.length} others applies it in ${round(median(applyMs))} ms (median), the joiner's Welcome ${round(welcomeMs)} ms`);
    }
  }
  // A removal at 50: the committer's update path, and everyone else applying it.
  r.request('p00', [], ['p49']);
  const t = performance.now();
  await people[0].e2ee.handle(people[0].inbox.shift());
  const commitMs = performance.now() - t;
  const applyMs = [];
  for (const m of people.slice(1, -1)) {
    const t3 = performance.now();
    while (m.inbox.length) await m.e2ee.handle(m.inbox.shift());
    applyMs.push(performance.now() - t3);
  }
  rows.push(`a removal at 50: commit ${round(commitMs)} ms, each member applies it in ${round(median(applyMs))} ms (median)`);
  r.stop();
  return rows;
}

const server = await startServer();
try {
  console.log(`# e2ee cost, ${new Date().toISOString().slice(0, 16)} UTC, Node ${process.version}`);
  for (const line of await browsers(server)) console.log(`SFrame ${line}`);
  for (const line of await mls()) console.log(`MLS ${line}`);
} finally {
  server.stop();
}
