// What the meeting page's modules share: the meeting as this browser knows it,
// and the way to the server. Only meeting.js changes the connection; the
// others read the state and send through `send`.

/** @typedef {import('./signalling.js').Signalling} Signalling */
/** @typedef {import('./call.js').Call} Call */

export const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));

export const meetingId = location.pathname.split('/').pop() || '';

export const state = {
  /** @type {Signalling | null} */ signalling: null,
  /** @type {Call | null} */ call: null,
  /** Our participant id (empty before the welcome). */
  me: '',
  /** @type {Map<string, any>} everyone in the meeting, us too, in join order (in a webinar: us and the stage) */
  participants: new Map(),
  /** @type {Map<string, any>} a webinar's attendees this page knows of (hosts only: from `attendees` pages, raised hands) */
  attendees: new Map(),
  /** In a webinar: how many attendees there are (`audience`); null elsewhere. */
  /** @type {number | null} */ audience: null,
  /** @type {Set<string>} who is speaking now */
  speaking: new Set(),
  meetingLocked: false,
  /** Joining the meeting needs a passcode (a host may set, change or remove it). */
  meetingPasscode: false,
  /** What we may not do now, each with its reason (null when allowed); from the server. */
  permissions: /** @type {any} */ ({ camera: null, screenShare: null, unmute: null, chat: null, host: false }),
  /** The meeting's settings, as hosts last set them. */
  /** @type {any} */ settings: null,
  /** The meeting has ended: nothing more to capture or join. */
  meetingOver: false,
  unreadChat: 0,
};

/** Calls the page's modules make into each other, set by meeting.js (no import circles). */
export const hooks = {
  /** Draw tiles, people and hands again. */
  render: () => {},
  /** Bring the control bar up to date. */
  updateControls: () => {},
  /** @type {(text: string, warn?: boolean) => void} */
  setStatus: () => {},
  /** Stop sharing the screen or a video file, telling the server. */
  stopShare: () => {},
};

/** @param {object} msg */
export function send(msg) { state.signalling?.send(msg); }

/** The meeting is a webinar: a stage, and an audience that only hosts see (protocol.md §4.18). */
export function isWebinar() { return !!state.settings?.webinar; }

/** In a webinar's audience (a participant: not on stage). @param {{role: string} | undefined} p */
export function inAudience(p) { return isWebinar() && p?.role === 'participant'; }

/** We are a webinar's attendee: we watch, listen, raise a hand, and publish nothing. */
export function amAttendee() { return inAudience(state.participants.get(state.me)); }

export function amHost() {
  const role = state.participants.get(state.me)?.role;
  return role === 'host' || role === 'co-host';
}
