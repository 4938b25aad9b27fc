// Webinars (issue 20, protocol.md §4.18, §5.25): a stage everyone sees and an
// audience only hosts see. Everyone is shown the audience's count; hosts page
// through the attendees on demand and bring one on stage (`set-role`
// presenter) or take a presenter off (`set-role` participant). An attendee's
// page captures nothing until a host brings them on stage, and lets go of its
// camera and microphone when they are taken off.
import { t } from './i18n.js';
import { badge } from './identity.js';
import { $, state, send, amHost, amAttendee, isWebinar, inAudience, hooks } from './meeting-state.js';
import { local, captureStage } from './devices.js';
import { nameText, tagText, personButton } from './text.js';

/** The pages of attendees a host has looked at: where each starts (`after`), and which shows. */
const pages = {
  /** @type {(string | undefined)[]} the `after` of each page seen so far (the first: undefined) */
  starts: [undefined],
  index: 0,
  /** @type {string[]} the ids on the page shown, in order */
  ids: /** @type {string[]} */ ([]),
  /** A page has been asked for: the list shows. */
  open: false,
  /** @type {string | undefined} the `after` of the page after this one (none: the last) */
  next: undefined,
  /** How many attendees there were when the page came (the live count is `state.audience`). */
  total: 0,
};

/** Our stage media: being asked for (so it is asked once), and whether we joined without devices. */
const stageMedia = { asking: false, joinedWithout: false };

/** The attendee joins without devices: only going on stage asks for them. */
export function joinedWithoutDevices() { stageMedia.joinedWithout = true; }

/** Bring an attendee on stage, or take a presenter off it. @param {string} id @param {boolean} on */
export function setStage(id, on) {
  send({ type: 'set-role', participantId: id, role: on ? 'presenter' : 'participant' });
}

/** A "Bring on stage" button for an attendee's row (hosts). @param {string} id @param {string} name */
export function bringButton(id, name) {
  return personButton(t('webinar.bring'), t('webinar.bring-name', { name }), () => setStage(id, true));
}

/** A "Take off stage" button for a presenter's row (hosts). @param {string} id @param {string} name */
export function takeOffButton(id, name) {
  return personButton(t('webinar.take-off'), t('webinar.take-off-name', { name }), () => setStage(id, false));
}

/**
 * Where a participant the server told us of belongs: the stage (and us) in
 * `participants`, a webinar's attendees in `attendees` (hosts hear of those
 * with a raised hand, and of someone taken off the stage). Returns whether
 * they came off the stage just now.
 * @param {any} p
 */
export function place(p) {
  if (p.id !== state.me && inAudience(p)) {
    const wasOnStage = state.participants.delete(p.id);
    state.attendees.set(p.id, p);
    // Back in the audience: on the list a host has open, if it falls on the
    // last page (the server orders by id as a string).
    if (wasOnStage && pages.open && !pages.next && !pages.ids.includes(p.id)) {
      pages.ids = [...pages.ids, p.id].sort();
    }
    return wasOnStage;
  }
  state.attendees.delete(p.id);
  state.participants.set(p.id, p);
  return false;
}

/** The audience's count (`audience`), for everyone in a webinar. @param {number} n */
export function audienceCount(n) {
  state.audience = n;
  renderAudience();
  // A host with an audience is not alone. (Not everything drawn again: the
  // count may change every second, and People would be rebuilt under a
  // screen reader's focus.)
  if (n > 0) $('alone').hidden = true;
  else hooks.render();
}

/** The count, and the hosts' Attendees section, drawn from the state. */
export function renderAudience() {
  const webinar = isWebinar();
  const count = $('audience-count');
  count.hidden = !webinar || state.audience == null;
  const words = t('webinar.attendees-count', { count: state.audience || 0 });
  if (count.textContent !== words) count.textContent = words;
  $('attendees-panel').hidden = !webinar || !amHost();
  $('attendees-heading').textContent = t('webinar.attendees-heading', { count: state.audience || 0 });
  renderAttendees();
}

/** Ask the server for a page of attendees (hosts). @param {number} index which page (0: the first) */
function ask(index) {
  pages.index = index;
  send({ type: 'attendees', ...(pages.starts[index] ? { after: pages.starts[index] } : {}) });
}

/** A page of attendees came (`attendees`). @param {any} msg */
export function attendeesPage(msg) {
  pages.open = true;
  pages.ids = msg.attendees.map((/** @type {any} */ p) => p.id);
  for (const p of msg.attendees) state.attendees.set(p.id, p);
  pages.next = msg.next || undefined;
  pages.total = msg.total;
  pages.starts.length = pages.index + 1;
  if (pages.next) pages.starts.push(pages.next);
  state.audience = msg.total;
  renderAudience();
}

/** A new welcome (a join or a resume): what we knew of the audience is old. */
export function resetAudience() {
  state.attendees.clear();
  state.audience = null;
  pages.ids = [];
  pages.next = undefined;
  pages.starts = [undefined];
  // A host who had the list open sees it again, fresh.
  if (pages.open && isWebinar() && amHost()) ask(0);
}

/** What the list shows, to draw it again only when that changed. */
let drawn = '';

/** The page of attendees shown to a host, each with a way on stage. */
function renderAttendees() {
  const list = $('attendees');
  if ($('attendees-panel').hidden) { drawn = ''; return; }
  const focused = list.contains(document.activeElement) ? /** @type {HTMLElement} */ (document.activeElement).closest('li')?.dataset.id : null;
  const shown = pages.ids.filter((id) => state.attendees.has(id));
  const now = JSON.stringify(shown.map((id) => state.attendees.get(id)));
  if (now !== drawn) list.replaceChildren(...shown.map((id) => {
    const p = state.attendees.get(id);
    const li = document.createElement('li');
    li.dataset.id = id;
    const bits = [p.hand != null ? t('people.hand') : '', p.connected ? '' : t('people.reconnecting')].filter(Boolean);
    const label = document.createElement('span');
    label.append(nameText(p.name), ...(bits.length ? [tagText(` (${bits.join(', ')})`)] : []), badge(p.identity));
    li.append(label, bringButton(id, p.name));
    return li;
  }));
  drawn = now;
  list.hidden = !pages.open;
  $('attendees-show').textContent = t(pages.open ? 'webinar.refresh' : 'webinar.show');
  // Said when a page comes (a live region): with the total as the page has it,
  // so the count going up and down elsewhere does not repeat it every second.
  const first = pages.index * 50;
  const range = !pages.open ? ''
    : shown.length ? t('webinar.range', { from: first + 1, to: first + shown.length, total: Math.max(pages.total, first + shown.length) })
      : t('webinar.none-here');
  if ($('attendees-range').textContent !== range) $('attendees-range').textContent = range;
  $('attendees-pager').hidden = !pages.open || (pages.index === 0 && !pages.next);
  $('attendees-prev').disabled = pages.index === 0;
  $('attendees-next').disabled = !pages.next;
  // Whose row had focus is gone (on stage, or left): focus stays in the section.
  if (focused && !list.contains(document.activeElement)) {
    (/** @type {HTMLElement | null} */ (list.querySelector(`li[data-id="${CSS.escape(focused)}"] button`)) || $('attendees-show')).focus();
  }
}

/**
 * After a welcome or a change to us: in a webinar, going on stage asks for
 * the camera and microphone and publishes them (the microphone muted: the
 * person unmutes when ready); coming off stops them (the server has already
 * unpublished them). `changed` says our role just moved on or off stage.
 * @param {'on' | 'off' | null} changed
 */
export async function followStage(changed) {
  if (!isWebinar()) return;
  if (amAttendee()) {
    if (changed === 'off' || local.mic || local.camera || local.screen) offStage();
    return;
  }
  if (changed !== 'on' && !(stageMedia.joinedWithout && !local.mic && !local.camera)) return;
  stageMedia.joinedWithout = false;
  if (stageMedia.asking) return;
  stageMedia.asking = true;
  hooks.setStatus(t('webinar.on-stage-asking'));
  try {
    const stream = await captureStage();
    // Taken off again while the browser asked: let the devices go.
    if (amAttendee() || !state.signalling) { for (const tr of stream.getTracks()) tr.stop(); return; }
    local.mic = stream.getAudioTracks()[0] || null;
    local.camera = stream.getVideoTracks()[0] || null;
    local.cameraOn = !!local.camera;
    local.micMuted = true;
    if (local.mic) local.mic.enabled = false;
    if (local.mic) {
      send({ type: 'publish', source: 'microphone' });
      send({ type: 'mute', source: 'microphone', muted: true });
    }
    if (local.camera) send({ type: 'publish', source: 'camera' });
    // The status line is polite: screen readers hear it.
    hooks.setStatus(t('webinar.on-stage'));
  } catch (e) {
    hooks.setStatus(t('webinar.devices-failed', { detail: e instanceof Error ? e.message : String(e) }), true);
  } finally {
    stageMedia.asking = false;
    hooks.updateControls();
    hooks.render();
  }
}

/** Off the stage: every track we captured stops. */
function offStage() {
  local.mic?.stop();
  local.camera?.stop();
  for (const tr of local.screen?.getTracks() || []) tr.stop();
  local.screenCleanup?.();
  local.mic = null;
  local.camera = null;
  local.screen = null;
  local.cameraOn = false;
  local.micMuted = false;
  // A host or co-host made an attendee sees no audience any more.
  state.attendees.clear();
  hooks.setStatus(t('webinar.off-stage'));
  hooks.updateControls();
  hooks.render();
}

/** The hosts' Attendees section: show (or refresh) the list, and its pages. */
export function wireWebinar() {
  $('attendees-show').addEventListener('click', () => ask(pages.open ? pages.index : 0));
  $('attendees-prev').addEventListener('click', () => { if (pages.index > 0) ask(pages.index - 1); });
  $('attendees-next').addEventListener('click', () => { if (pages.next) ask(pages.index + 1); });
}
