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
  /** @type {Map<string, any>} everyone in the meeting, us too, in join order */
  participants: new Map(),
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
};

/** @param {object} msg */
export function send(msg) { state.signalling?.send(msg); }

export function amHost() {
  const role = state.participants.get(state.me)?.role;
  return role === 'host' || role === 'co-host';
}
