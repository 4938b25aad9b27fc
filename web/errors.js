// What the server refuses or reports, in this page's language. Signalling
// errors carry a code (docs/protocol.md §6): words are chosen by the code. The
// server's own `message` is English and not stable; an English page shows it
// as it is (it may say more, such as how long to wait), the others their
// catalogue's words for the code. A code we do not know shows the server's text.
// Permission reasons (protocol.md §5.18) come as English words with no code;
// the server has a fixed few (convene-meeting access.rs), matched here.
import { t, lang } from './i18n.js';

/** Message ids by error code. */
const ERRORS = /** @type {Record<string, string>} */ ({
  'bad-json': 'error.bad-json',
  'too-large': 'error.too-large',
  'rate-limited': 'error.rate-limited',
  'unknown-type': 'error.unknown-type',
  invalid: 'error.invalid',
  'wrong-state': 'error.wrong-state',
  'unsupported-protocol': 'error.unsupported-protocol',
  'bad-sdp': 'error.bad-sdp',
  'meeting-full': 'error.meeting-full',
  'lobby-full': 'error.lobby-full',
  'lobby-timeout': 'error.lobby-timeout',
  'wrong-passcode': 'error.wrong-passcode',
  locked: 'error.locked',
  barred: 'error.barred',
  'verification-required': 'error.verification-required',
  'mfa-required': 'error.mfa-required',
  policy: 'error.policy',
  ended: 'error.ended',
  busy: 'error.busy',
  forbidden: 'error.forbidden',
  'not-found': 'error.not-found',
  media: 'error.media',
});

/** `invalid` messages worth saying precisely (the rest get the code's words), by how they start. */
const INVALID = /** @type {Array<[string, string]>} */ ([
  ['please give a name', 'error.invalid-name-empty'],
  ['a name is at most', 'error.invalid-name-long'],
  ['a name may not contain', 'error.invalid-name-label'],
  ['a chat message cannot be empty', 'error.invalid-chat-empty'],
  ['a chat message is at most', 'error.invalid-chat-long'],
]);

/** The server's permission reasons, word for word, and their message ids. */
const REASONS = /** @type {Record<string, string>} */ ({
  'screen sharing is turned off in this meeting': 'reason.share-off',
  'only hosts may share their screen in this meeting': 'reason.share-hosts',
  'only hosts and presenters may share their screen in this meeting': 'reason.share-presenters',
  'cameras are turned off for participants in this meeting': 'reason.cameras-off',
  'a host has muted you; ask a host to unmute you': 'reason.host-muted',
  'chat is turned off for you in this meeting': 'reason.chat-off',
  'only hosts may do that': 'reason.hosts-only',
});

/**
 * A server error (`{code, message}`) as words for the person.
 * @param {{code: string, message?: string}} msg
 */
export function serverError(msg) {
  if (lang === 'en' && msg.message) return msg.message;
  if (msg.code === 'forbidden' && msg.message && REASONS[msg.message]) return t(REASONS[msg.message]);
  if (msg.code === 'invalid' && msg.message) {
    const hit = INVALID.find(([start]) => msg.message?.startsWith(start));
    if (hit) return t(hit[1]);
  }
  if (msg.code === 'locked-out') {
    const secs = Number(/(\d+) seconds?/.exec(msg.message || '')?.[1]);
    return Number.isFinite(secs) ? t('error.locked-out', { count: secs }) : t('error.locked-out-wait');
  }
  const id = ERRORS[msg.code];
  return id ? t(id) : msg.message || msg.code;
}

/**
 * A permission reason (null when allowed) in this page's language; a reason
 * the server has newly taken up shows as it sent it.
 * @param {string | null | undefined} reason
 */
export function reasonText(reason) {
  if (!reason) return null;
  const id = REASONS[reason];
  return id ? t(id) : reason;
}

/**
 * Why a level change removed someone (`removed.reason`), in this page's
 * language. The server writes it in English from two fixed forms (policy.rs
 * `admits`); another shows as sent.
 * @param {string} reason
 */
export function removalReason(reason) {
  if (lang === 'en') return reason;
  let m = /^this meeting is (.+): only people verified by their organisation's sign-in may join$/.exec(reason);
  if (m) return t('reason.level-verified', { level: m[1] });
  m = /^this meeting is (.+): sign in with a second factor \(such as a security key or code\) to join$/.exec(reason);
  if (m) return t('reason.level-mfa', { level: m[1] });
  return reason;
}

/**
 * A `notice` to hosts, in this page's language. The server writes it in
 * English from a few fixed forms (room.rs: a full meeting, and what a level
 * change did to people); another shows as sent.
 * @param {string} text
 */
export function noticeText(text) {
  if (lang === 'en') return text;
  const full = /^the meeting is full: (\d+) still wait in the lobby until someone leaves$/.exec(text);
  if (full) return t('notice.full', { count: Number(full[1]) });
  const removed = /^(.+?) does not admit (.+): removed$/;
  const lobby = /^(.+?) requires the lobby: (.+) wait there for a host to admit them again$/;
  const sayRemoved = (/** @type {RegExpExecArray} */ m) => t('notice.level-removed', { level: m[1], names: m[2] });
  const sayLobby = (/** @type {RegExpExecArray} */ m) => t('notice.level-lobby', { level: m[1], names: m[2] });
  // Both at once: the removed first, then ". ", then the lobby. Names may hold ". " too, so each split is tried.
  const pieces = text.split('. ');
  for (let i = 1; i < pieces.length; i++) {
    const a = removed.exec(pieces.slice(0, i).join('. '));
    const b = lobby.exec(pieces.slice(i).join('. '));
    if (a && b) return `${sayRemoved(a)} ${sayLobby(b)}`;
  }
  const a = removed.exec(text);
  if (a) return sayRemoved(a);
  const b = lobby.exec(text);
  if (b) return sayLobby(b);
  return text;
}
