// An end-to-end encrypted meeting on this page (docs/protocol.md §11): the MLS
// group (e2ee/mls.js), the SFrame worker every sender and receiver goes
// through (e2ee/sframe-worker.js), encrypted chat, and the badge with the
// verification code. Loaded for every meeting; MLS itself only when needed.
import { t } from './i18n.js';
import { $, state, send, hooks } from './meeting-state.js';


/** @type {any} the MLS session (e2ee/mls.js), in an encrypted meeting */
let session = null;
/** @type {Worker | null} one worker encrypts and decrypts every frame, for the page's life */
let worker = null;
/** The group the session belongs to (a server restart starts another). */
let groupId = '';
/** The group whose keys the worker holds. */
let workerGroup = '';
/** Messages that came before the session was ready, in order. */
/** @type {any[]} */ let early = [];
let starting = false;
/** The code before the last change, kept on show a while (design §7). */
let previous = { code: '', shownUntil: 0 };
/** @type {(m: {from: string, text: string}) => void} */
let chatSink = () => {};

/**
 * Whether the meeting's roster has `id`, verified as their credential says
 * ({l: level, o: organisation}; neither for a guest): design §6.
 * @param {string} id @param {any} claims
 */
function rosterHas(id, claims) {
  const p = state.participants.get(id);
  if (!p) return false;
  const level = p.identity?.level ?? 'guest';
  if ((claims?.l ?? 'guest') !== level) return false;
  return level === 'guest' ? !claims?.o : claims?.o === p.identity?.organisation;
}

export function isE2ee() { return !!state.settings?.e2ee; }

/** @param {(m: {from: string, text: string}) => void} sink where decrypted chat goes */
export function onEncryptedChat(sink) { chatSink = sink; }

/**
 * The welcome: start (or keep) the group. A welcome whose group is not ours,
 * or whose epoch is not ours, means we missed commits: start again.
 * @param {any} welcome
 */
export async function e2eeWelcome(welcome) {
  const info = welcome.e2ee;
  $('e2ee-badge').hidden = !info;
  if (!info) { stop(); return; }
  if (session && groupId === info.groupId && session.epoch() === info.epoch) return;
  // Another group (the server restarted): its epochs count from 0 again, so
  // the old keys must go with the old worker. (The same group, rejoined,
  // only moves to later epochs: the worker stays, with its transforms.)
  if (groupId && groupId !== info.groupId) { worker?.terminate(); worker = null; workerGroup = ''; }
  stop();
  groupId = info.groupId;
  starting = true;
  early = [];
  ensureWorker();
  try {
    const { startE2ee } = await import('./e2ee/mls.js');
    const me = state.participants.get(state.me);
    session = await startE2ee({
      groupId: info.groupId,
      participantId: state.me,
      name: me?.name || '',
      identity: me?.identity ?? null,
      send,
      rosterHas,
      onEpoch,
      onChat: (/** @type {{from: string, text: string}} */ m) => chatSink(m),
      onWarning: (/** @type {any} */ w) => console.warn('e2ee:', JSON.stringify(w)),
    });
  } catch (e) {
    console.error('could not start end-to-end encryption', e);
    hooks.setStatus(t('e2ee.failed'), true);
    return;
  } finally {
    starting = false;
  }
  const queued = early;
  early = [];
  for (const m of queued) await session.handle(m);
}

/** An `mls-*` message, or the `mls-stale-epoch` or `rate-limited` error. @param {any} msg */
export async function e2eeMessage(msg) {
  if (starting || !session) { early.push(msg); return; }
  try {
    await session.handle(msg);
  } catch (e) {
    console.warn('e2ee: a message could not be handled', msg.type, e);
  }
}

/** Encrypted chat. @param {string} text */
export function sendEncryptedChat(text) {
  if (!session) { hooks.setStatus(t('e2ee.not-ready'), true); return false; }
  session.sendChat(text);
  return true;
}

/**
 * Every sender and receiver of the media connection goes through the worker,
 * set before any frame flows (on each offer, for transceivers new in it).
 * Each video receiver is bound to the participant the offer says it carries:
 * the worker opens there only frames sealed under that member's leaf, so the
 * server cannot show one person's video as another's.
 * @param {RTCPeerConnection} pc
 * @param {import('./call.js').TrackSlot[]} tracks the offer's
 */
export function attachTransforms(pc, tracks) {
  if (!isE2ee()) return;
  const w = ensureWorker();
  for (const tr of pc.getTransceivers()) {
    const kind = tr.receiver.track.kind;
    if (!tr.sender.transform) tr.sender.transform = new RTCRtpScriptTransform(w, { side: 'send', kind });
    if (!tr.receiver.transform) tr.receiver.transform = new RTCRtpScriptTransform(w, { side: 'recv', kind, mid: tr.mid ?? undefined });
  }
  /** @type {Record<string, string>} */
  const byMid = {};
  for (const slot of tracks) {
    if (slot.kind === 'video' && slot.direction === 'receive' && slot.participantId) byMid[slot.mid] = slot.participantId;
  }
  w.postMessage({ type: 'senders', byMid });
}

/**
 * The join page of an encrypted meeting starts the worker (and loads MLS) at
 * once: a module worker whose code has not run when the first transform
 * arrives loses it in Firefox, whose frames then pile up unread.
 */
export function prepareE2ee() {
  ensureWorker();
  import('./e2ee/mls.js').catch(() => {});
}

function ensureWorker() {
  if (!worker) {
    worker = new Worker('/assets/e2ee/sframe-worker.js', { type: 'module' });
    worker.addEventListener('message', (e) => {
      if (e.data?.type === 'stats') /** @type {any} */ (window).conveneE2eeStats = e.data;
    });
  }
  return worker;
}

/**
 * A new epoch: new media keys to the worker, the new code shown, and what
 * changed said (the code changes with every join and leave).
 * @param {any} e
 */
function onEpoch(e) {
  // A new group within the same session (the server started one afresh, and
  // we were added to it): the worker must forget the old group's keys and leaf
  // first, or it would send under keys and a leaf that are no longer ours.
  if (e.groupId !== workerGroup) ensureWorker().postMessage({ type: 'reset' });
  workerGroup = e.groupId;
  ensureWorker().postMessage({ type: 'epoch', epoch: e.epoch, secret: e.sframeSecret, ownLeaf: e.ownLeaf, removal: e.removed.length > 0,
    members: e.members.map((/** @type {any} */ m) => [m.leaf, m.participantId]) });
  const code = e.code.digits;
  const before = $('e2ee-digits').textContent;
  if (before && before !== code) previous = { code: before, shownUntil: Date.now() + 10_000 };
  showCode(e);
  /** @type {any} */ (window).conveneE2ee = { epoch: e.epoch, code, members: e.members.map((/** @type {any} */ m) => m.participantId) };
  warnOfGhosts(e.members);
}

/**
 * Anyone in the encryption group who is not in the meeting, or not verified
 * as the meeting shows them, or in it twice, is a warning worth shouting
 * (design §3: a ghost the server added; §6). Checked at every epoch, and
 * again as the meeting's list changes (someone who left the meeting but was
 * never taken out of the group shows up then).
 * @param {any[]} members
 */
function warnOfGhosts(members) {
  const seen = new Set();
  const ghosts = members.filter((m) => {
    const twice = seen.has(m.participantId);
    seen.add(m.participantId);
    return twice || !rosterHas(m.participantId, { l: m.level, o: m.organisation });
  });
  $('e2ee-warning').hidden = ghosts.length === 0;
  $('e2ee-warning').textContent = ghosts.length ? t('e2ee.ghost', { count: ghosts.length }) : '';
}

// A leave is committed within a second or two: a member still in the group
// 5 s after leaving the meeting's list is a ghost. (The list is checked every
// 5 s; a warning shows only if the same ghost is there on two checks running.)
let suspects = '';
setInterval(() => {
  if (!session) return;
  const members = session.members();
  const roster = new Set(state.participants.keys());
  const now = members.filter((/** @type {any} */ m) => !roster.has(m.participantId)).map((/** @type {any} */ m) => m.participantId).join(',');
  if (now === '' || now === suspects) warnOfGhosts(members);
  suspects = now;
}, 5000);

/** @param {any} e */
async function showCode(e) {
  const { SAS_EMOJI } = await import('./e2ee/sas-emoji.js');
  const lang = document.documentElement.lang || 'en';
  $('e2ee-emoji').replaceChildren(...e.code.emoji.map((/** @type {number} */ i) => {
    const li = document.createElement('li');
    // Rows are [emoji, English, Dutch, Swedish].
    const [emoji, en, nl, sv] = SAS_EMOJI[i];
    const glyph = document.createElement('span');
    glyph.className = 'e2ee-glyph';
    glyph.setAttribute('aria-hidden', 'true');
    glyph.textContent = emoji;
    const word = document.createElement('span');
    word.textContent = ({ en, nl, sv })[lang] || en;
    li.append(glyph, word);
    return li;
  }));
  $('e2ee-digits').textContent = e.code.digits;
  const names = (/** @type {string[]} */ ids) => ids.map((id) => state.participants.get(id)?.name || id).join(', ');
  const why = e.added.length ? t('e2ee.changed-joined', { names: names(e.added) })
    : e.removed.length ? t('e2ee.changed-left', { names: names(e.removed) }) : '';
  $('e2ee-changed').textContent = why;
  $('e2ee-previous').textContent = previous.code && Date.now() < previous.shownUntil ? t('e2ee.previous', { code: previous.code }) : '';
}

export function wireE2ee() {
  $('e2ee-badge').addEventListener('click', () => $('e2ee-dialog').showModal());
  $('e2ee-close').addEventListener('click', () => $('e2ee-dialog').close());
}

function stop() {
  session?.stop();
  session = null;
  groupId = '';
  // The worker stays (transforms are bound to it); the old group's keys
  // expire there once the new group's first epoch arrives.
  $('e2ee-digits').textContent = '';
}
