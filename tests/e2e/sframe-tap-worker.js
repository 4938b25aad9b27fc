// Test-only (e2ee-blind.test.mjs): served in place of /assets/e2ee/sframe-worker.js.
// The test replaces ROLE when serving it:
//   'member': the real worker (imported below) does all the work; this only
//     keeps the epoch secrets it is given and, while asked to record, the first
//     bytes of the clear frames it hands to the decoders, for the test to read.
//   'spy': the real worker is overridden. The page's own keys never reach this
//     worker, so its receivers see exactly the frames the SFU forwards (what
//     the server operator has); it keeps them, passes them on undecrypted
//     ('raw'), or decrypts them with secrets the test hands it ('decrypt').
//     It sends nothing.
// The test talks to it over a BroadcastChannel: {id, ask, ...} → {id, answer}.
import './sframe-worker.js?real';
import { kidParts, deriveKeySalt, decryptFrame, clearPrefixLength } from './sframe.js';

const ROLE = '__ROLE__';
const channel = new BroadcastChannel('sframe-tap');
const hex = (/** @type {Uint8Array} */ b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

/** 16 bytes just after the clear prefix: a needle to look for in other bytes. */
const needleOf = (kind, data) => {
  const p = clearPrefixLength(kind, data);
  return data.length >= p + 16 ? hex(data.subarray(p, p + 16)) : null;
};

const answers = {};

if (ROLE === 'member') {
  const secrets = []; // every {epoch, secret} the page gave
  const needles = []; // from the clear frames given to the decoders while recording
  let recording = false;
  const realMessage = self.onmessage;
  self.onmessage = (e) => {
    if (e.data?.type === 'epoch') secrets.push({ epoch: e.data.epoch, secret: Array.from(new Uint8Array(e.data.secret)) });
    realMessage.call(self, e);
  };
  const realTransform = self.onrtctransform;
  self.onrtctransform = (event) => {
    const tr = event.transformer;
    if (tr.options?.side !== 'recv') { realTransform.call(self, event); return; }
    // The real worker writes its decrypted frames here; they go on to the decoder.
    const tap = new TransformStream({
      transform(frame, c) {
        const n = recording && needles.length < 300 ? needleOf(tr.options.kind, new Uint8Array(frame.data)) : null;
        if (n) needles.push(n);
        c.enqueue(frame);
      },
    });
    tap.readable.pipeTo(tr.writable).catch(() => {});
    realTransform.call(self, { transformer: {
      options: tr.options, readable: tr.readable, writable: tap.writable,
      generateKeyFrame: (...a) => tr.generateKeyFrame(...a),
      sendKeyFrameRequest: (...a) => tr.sendKeyFrameRequest(...a),
    } });
  };
  answers.secrets = () => secrets;
  answers.needles = () => needles;
  answers.record = (q) => { recording = q.on; return needles.length; };
} else {
  /** @type {{epoch: number, secret: Uint8Array}[]} */ let given = [];
  let mode = 'raw';
  let recording = false;
  /** @type {{kind: string, data: Uint8Array}[]} */ const recorded = [];
  const counts = { video: { raw: 0, ok: 0, failed: 0 }, audio: { raw: 0, ok: 0, failed: 0 } };
  // The given secret whose epoch matches the KID's low bits, as a receiver would pick it.
  const keysFor = (kid) => {
    const s = [...given].reverse().find((g) => g.epoch % 16 === kidParts(kid).epochBits);
    return s && deriveKeySalt(s.secret, kid);
  };
  self.onmessage = () => {}; // the page's own keys: never here
  self.onrtctransform = (event) => {
    const tr = event.transformer;
    const { side, kind } = tr.options ?? {};
    if (side !== 'recv') { tr.readable.pipeTo(new WritableStream()).catch(() => {}); return; }
    tr.readable.pipeThrough(new TransformStream({
      async transform(frame, c) {
        const data = new Uint8Array(frame.data);
        if (data.length === 0) return;
        const n = counts[kind];
        n.raw++;
        if (recording && recorded.length < 400) recorded.push({ kind, data: data.slice() });
        if (mode === 'raw') { c.enqueue(frame); return; }
        const r = await decryptFrame(keysFor, data, clearPrefixLength(kind, data));
        if (!r.ok) { n.failed++; return; }
        n.ok++;
        frame.data = r.frame.buffer;
        c.enqueue(frame);
      },
    })).pipeTo(tr.writable).catch(() => {});
  };
  const toSecrets = (list) => list.map((s) => ({ epoch: s.epoch, secret: new Uint8Array(s.secret) }));
  answers.counts = () => counts;
  answers.record = (q) => { recording = q.on; return recorded.length; };
  answers.decrypt = (q) => { given = toSecrets(q.secrets); mode = 'decrypt'; return true; };
  // Needles found anywhere in the recorded (forwarded) frames.
  answers.find = (q) => {
    const blobs = recorded.map((r) => hex(r.data));
    return { recorded: recorded.length, found: q.needles.filter((n) => blobs.some((b) => b.includes(n))).length };
  };
  // Each recorded frame tried with each secret, whatever epoch its KID names:
  // how many open, and how many needles the opened frames hold.
  answers.try = async (q) => {
    const secrets = toSecrets(q.secrets);
    let opened = 0;
    const plain = [];
    for (const r of recorded) {
      for (const s of secrets) {
        const out = await decryptFrame((kid) => deriveKeySalt(s.secret, kid), r.data, clearPrefixLength(r.kind, r.data));
        if (out.ok) { opened++; plain.push(hex(out.frame)); break; }
      }
    }
    const found = (q.needles ?? []).filter((n) => plain.some((p) => p.includes(n))).length;
    return { tried: recorded.length, opened, found };
  };
}

channel.onmessage = async (e) => {
  const q = e.data;
  const f = answers[q?.ask];
  if (f) channel.postMessage({ id: q.id, answer: await f(q) });
};
