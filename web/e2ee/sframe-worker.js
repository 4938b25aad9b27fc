// The SFrame encoded-transform worker (docs/e2ee-design.md §8): the page makes
// one module worker, `new Worker('/e2ee/sframe-worker.js', {type: 'module'})`, and
// gives it every sender and receiver:
//   sender.transform = new RTCRtpScriptTransform(worker, {side: 'send', kind: 'video'})
//   receiver.transform = new RTCRtpScriptTransform(worker, {side: 'recv', kind: 'audio'})
// and each epoch's key: worker.postMessage({type: 'epoch', epoch, secret, ownLeaf, removal,
// members: [[leaf, participantId], ...]}).
// Receivers made with a `mid` option can be bound to the member whose media they carry:
// {type: 'senders', byMid: {mid: participantId}} (the whole map, again on every offer).
// A bound receiver opens only frames sealed under that member's leaf.
// {type: 'reset'} before the first epoch of another group: its epochs count from 0
// again and its leaves are others', so nothing of the old group may be used for it.
// It posts {type: 'ready'} once its code has run: the page attaches no transform
// before that (Firefox loses one that comes to a worker still loading).
// It posts {type: 'stats', encrypted, decrypted, dropped, byTransform} about once a second
// (and at once on {type: 'get-stats'}).
//
// One worker per page: the CTR of a key must never repeat (RFC 9605 §4.4.3), and
// every send transform here gets its own KID context (so its own key) with a
// counter that is never reset. Two workers would each start at context 0.
import { mlsKid, kidParts, deriveKeySalt, encryptFrame, decryptFrame, clearPrefixLength, EPOCH_BITS } from './sframe.js';

const KEEP_OLD_MS = 5000;     // receivers keep the previous epoch's keys this long
const KEEP_OLD_REMOVAL_MS = 2000; // ...or this long when the new epoch removed someone
const KEYFRAME_REQUEST_GAP_MS = 1000;
// A sealed frame opens once (security review F6): each KID keeps which of its last
// REPLAY_WINDOW counters were opened, and anything older is refused. Senders count
// up without gaps, frames come nearly in order, so 1024 (over 30 s of video) is ample.
const REPLAY_WINDOW = 1024n;

/** mid -> participant id: whose media a bound receiver carries (see above). */
let senders = new Map();
const epochs = new Map(); // epoch mod 2^E -> {epoch, secret, expires, keys: Map<kid, Promise<keys>>}
let newest = null;
let ownLeaf = null;
const counters = new Map(); // send context -> next CTR
let nextContext = 0;
const transforms = new Set();
const totals = { encrypted: 0, decrypted: 0, dropped: 0 };

function forget(entry) {
  entry.secret.fill(0);
  entry.keys.clear();
  entry.windows.clear();
  epochs.delete(entry.epoch % (1 << EPOCH_BITS));
}

function addEpoch({ epoch, secret, ownLeaf: leaf, removal, members }) {
  const now = performance.now();
  for (const e of epochs.values()) {
    if (e.epoch === epoch) return; // known already
    e.expires = Math.min(e.expires, now + (removal ? KEEP_OLD_REMOVAL_MS : KEEP_OLD_MS));
  }
  const old = epochs.get(epoch % (1 << EPOCH_BITS));
  if (old) forget(old); // E-bit rollover: 16 epochs later the slot is reused (RFC 9605 §5.2)
  const entry = { epoch, secret: new Uint8Array(secret), expires: Infinity, keys: new Map(), windows: new Map(),
    members: new Map(members ?? []) };
  epochs.set(epoch % (1 << EPOCH_BITS), entry);
  if (!newest || epoch > newest.epoch) { newest = entry; ownLeaf = leaf; }
  for (const t of transforms) {
    // Senders: a keyframe under the new key, so receivers can decode from it at once.
    if (t.side === 'send' && t.kind === 'video') t.transformer.generateKeyFrame?.().catch(() => {});
    // Receivers that dropped frames for want of this key: ask the sender for a keyframe.
    if (t.side === 'recv' && t.kind === 'video' && t.dropsSinceKey > 0) requestKeyFrame(t);
  }
}

function requestKeyFrame(t) {
  const now = performance.now();
  if (now - t.lastRequest < KEYFRAME_REQUEST_GAP_MS) return;
  t.lastRequest = now;
  t.dropsSinceKey = 0;
  try { t.transformer.sendKeyFrameRequest?.()?.catch?.(() => {}); } catch { /* not supported here */ }
}

/** The keys for a KID, or undefined if its epoch is unknown or expired. */
function keysFor(kid) {
  const entry = epochs.get(kidParts(kid).epochBits);
  if (!entry) return undefined;
  if (entry.expires <= performance.now()) { forget(entry); return undefined; }
  let keys = entry.keys.get(kid);
  if (!keys) { keys = deriveKeySalt(entry.secret, kid); entry.keys.set(kid, keys); }
  return keys;
}

/**
 * Whether the frame sealed under (kid, ctr) is opened for the first time; marks it
 * opened. Asked only after it authenticated, so nobody without the key can move a
 * window. The windows go with their epoch's keys (a KID comes back 16 epochs on).
 */
function firstOpening(kid, ctr) {
  const entry = epochs.get(kidParts(kid).epochBits);
  if (!entry) return false;
  let w = entry.windows.get(kid);
  if (!w) { w = { max: -1n, opened: new Uint8Array(Number(REPLAY_WINDOW)) }; entry.windows.set(kid, w); }
  const slot = (c) => Number(c % REPLAY_WINDOW);
  if (ctr > w.max) {
    if (ctr - w.max >= REPLAY_WINDOW) w.opened.fill(0);
    else for (let c = w.max + 1n; c < ctr; c++) w.opened[slot(c)] = 0;
    w.max = ctr;
  } else if (w.max - ctr >= REPLAY_WINDOW || w.opened[slot(ctr)]) {
    return false;
  }
  w.opened[slot(ctr)] = 1;
  return true;
}

/**
 * Whether a receiver may show a frame sealed under `kid`: one bound to a member
 * (its mid's video slot) takes only that member's frames, so the server cannot show
 * one member's video as another's (security review F6). Voice slots change speaker
 * without renegotiation, so audio receivers are not bound.
 */
function fromItsSender(t, kid) {
  const want = t.mid === undefined ? undefined : senders.get(t.mid);
  if (want === undefined) return true;
  const { epochBits, leaf } = kidParts(kid);
  return epochs.get(epochBits)?.members.get(leaf) === want;
}

/** The page's map of whose media each receiver carries; a receiver that now carries
 * someone else's asks for a keyframe, to show them at once. */
function bind(byMid) {
  const before = senders;
  senders = new Map(Object.entries(byMid ?? {}));
  for (const t of transforms) {
    if (t.side === 'recv' && t.kind === 'video' && t.mid !== undefined && before.get(t.mid) !== senders.get(t.mid)) requestKeyFrame(t);
  }
}

/** Counts a frame that did not go through, by reason (unknown-kid, auth, malformed, wrong-sender, replay, no-key, error: ...). */
function drop(t, reason) {
  t.dropped++;
  totals.dropped++;
  t.why[reason] = (t.why[reason] ?? 0) + 1;
}

async function send(t, frame, controller) {
  if (!newest || ownLeaf === null) { drop(t, 'no-key'); return; } // never send in clear
  const data = new Uint8Array(frame.data);
  const kid = mlsKid(ownLeaf, newest.epoch, t.context);
  const ctr = counters.get(t.context) ?? 0;
  counters.set(t.context, ctr + 1); // taken before any await: never twice
  frame.data = (await encryptFrame(await keysFor(kid), kid, ctr, data, clearPrefixLength(t.kind, data))).buffer;
  t.encrypted++; totals.encrypted++;
  controller.enqueue(frame);
}

async function receive(t, frame, controller) {
  const data = new Uint8Array(frame.data);
  // An empty frame carries nothing to decrypt or hide: Chromium sends some (seen on
  // audio) without handing them to the sender's transform.
  if (data.length === 0) { t.empty = (t.empty ?? 0) + 1; controller.enqueue(frame); return; }
  const r = await decryptFrame(keysFor, data, clearPrefixLength(t.kind, data));
  if (!r.ok) { drop(t, r.reason); t.dropsSinceKey++; return; } // never to the decoder
  if (!fromItsSender(t, r.kid)) { drop(t, 'wrong-sender'); t.dropsSinceKey++; return; }
  if (!firstOpening(r.kid, r.ctr)) { drop(t, 'replay'); return; }
  frame.data = r.frame.buffer;
  t.decrypted++; totals.decrypted++;
  controller.enqueue(frame);
}

function setup(transformer) {
  const { side, kind, mid } = transformer.options ?? {};
  const t = { transformer, side, kind, mid, encrypted: 0, decrypted: 0, dropped: 0, why: {}, dropsSinceKey: 0, lastRequest: -Infinity,
    context: side === 'send' ? (transformer.options.context ?? nextContext++) : null };
  if (side === 'send' && transformer.options.context !== undefined) nextContext = Math.max(nextContext, t.context + 1);
  transforms.add(t);
  const step = side === 'send' ? send : receive;
  transformer.readable
    .pipeThrough(new TransformStream({ transform: (frame, controller) => step(t, frame, controller).catch((e) => drop(t, `error: ${e?.message ?? e}`)) }))
    .pipeTo(transformer.writable)
    .catch(() => {})
    .finally(() => transforms.delete(t));
}

function postStats() {
  for (const e of [...epochs.values()]) if (e.expires <= performance.now()) forget(e);
  self.postMessage({ type: 'stats', ...totals, epochs: [...epochs.values()].map((e) => e.epoch),
    byTransform: [...transforms].map(({ side, kind, mid, context, encrypted, decrypted, dropped, why, empty }) => ({ side, kind, mid, sender: mid === undefined ? undefined : senders.get(mid), context, encrypted, decrypted, dropped, why, empty })) });
}

self.onrtctransform = (event) => setup(event.transformer);
/** Another group: every key of the old one goes, and our leaf in it. */
function reset() {
  for (const e of [...epochs.values()]) forget(e);
  newest = null;
  ownLeaf = null;
}

self.onmessage = (event) => {
  const msg = event.data;
  if (msg?.type === 'reset') reset();
  else if (msg?.type === 'epoch') addEpoch(msg);
  else if (msg?.type === 'senders') bind(msg.byMid);
  else if (msg?.type === 'get-stats') postStats();
};
/** @type {any} */ (setInterval(postStats, 1000)).unref?.(); // unref: Node tests load this module too
self.postMessage({ type: 'ready' });
