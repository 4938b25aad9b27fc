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
  ['a question cannot be empty', 'error.invalid-question-empty'],
  ['a question is at most', 'error.invalid-question-long'],
]);

/** `rate-limited` messages worth saying precisely (a webinar's questions), by how they start. */
const RATE_LIMITED = /** @type {Array<[string, string]>} */ ([
  ['one question every few seconds', 'error.question-wait'],
  ['you have 5 questions waiting', 'error.questions-waiting'],
]);

/** `forbidden` messages that are no permission reason, worth saying precisely (a webinar's questions). */
const FORBIDDEN = /** @type {Record<string, string>} */ ({
  'written messages are turned off in this meeting, questions too': 'reason.questions-off',
});

/** The server's permission reasons, word for word, and their message ids. */
const REASONS = /** @type {Record<string, string>} */ ({
  'screen sharing is turned off in this meeting': 'reason.share-off',
  'only hosts may share their screen in this meeting': 'reason.share-hosts',
  'only hosts and presenters may share their screen in this meeting': 'reason.share-presenters',
  'cameras are turned off for participants in this meeting': 'reason.cameras-off',
  'a host has muted you; ask a host to unmute you': 'reason.host-muted',
  'chat is turned off for you in this meeting': 'reason.chat-off',
  'only hosts may do that': 'reason.hosts-only',
  'this is a webinar: the audience watches and listens; raise your hand and a host can bring you on stage': 'reason.webinar',
});

/**
 * A server error (`{code, message}`) as words for the person.
 * @param {{code: string, message?: string}} msg
 */
export function serverError(msg) {
  if (lang === 'en' && msg.message) return msg.message;
  if (msg.code === 'forbidden' && msg.message && REASONS[msg.message]) return t(REASONS[msg.message]);
  if (msg.code === 'forbidden' && msg.message && FORBIDDEN[msg.message]) return t(FORBIDDEN[msg.message]);
  if (msg.code === 'invalid' && msg.message) {
    const hit = INVALID.find(([start]) => msg.message?.startsWith(start));
    if (hit) return t(hit[1]);
  }
  if (msg.code === 'rate-limited' && msg.message) {
    const hit = RATE_LIMITED.find(([start]) => msg.message?.startsWith(start));
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
 * Why a level change removed someone (`removed`), in this page's language:
 * from its `about` (protocol.md §5.12); a reason without one shows as sent.
 * @param {{reason?: string, about?: {code: string, level: string}}} msg
 * @param {(id: string) => string} levelName a level's name by its id, in this page's language
 */
export function removalReason(msg, levelName) {
  const a = msg.about;
  if (a?.code === 'level-verified') return t('reason.level-verified', { level: levelName(a.level) });
  if (a?.code === 'level-mfa') return t('reason.level-mfa', { level: levelName(a.level) });
  return msg.reason || '';
}

/**
 * A `notice` to hosts, in this page's language: from its `about`
 * (protocol.md §5.21), the names listed as the language lists them; a notice
 * without one shows its text as sent.
 * @param {{text: string, about?: any}} msg
 * @param {(id: string) => string} levelName a level's name by its id, in this page's language
 */
export function noticeText(msg, levelName) {
  const a = msg.about;
  if (a?.code === 'meeting-full') return t('notice.full', { count: a.waiting });
  if (a?.code === 'level-changed') {
    const level = levelName(a.level);
    const list = (/** @type {string[]} */ names) => new Intl.ListFormat(lang, { type: 'conjunction' }).format(names);
    return [
      a.removed?.length ? t('notice.level-removed', { level, names: list(a.removed) }) : '',
      a.toLobby?.length ? t('notice.level-lobby', { level, names: list(a.toLobby) }) : '',
    ].filter(Boolean).join(' ');
  }
  return msg.text;
}
