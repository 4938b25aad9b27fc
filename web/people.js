// People: everyone in the meeting with their state, hosts' actions on each,
// the raised hands in order, and (for hosts) who waits in the lobby.
import { t, tNodes } from './i18n.js';
import { badge } from './identity.js';
import { $, state, send, amHost, amAttendee, isWebinar, hooks } from './meeting-state.js';
import { nameText, tagText, personButton } from './text.js';
import { handQueue, shortcutTitle } from './hands.js';
import { bringButton, takeOffButton } from './webinar.js';

/** How each media path is shown to hosts in People (message ids). */
const MEDIA_PATH_WORDS = /** @type {Record<string, string>} */ ({
  udp: 'people.path-udp',
  tcp: 'people.path-tcp',
  relay: 'people.path-relay',
});
/** Roles in People's words (message ids). */
const ROLE_WORDS = /** @type {Record<string, string>} */ ({ host: 'people.is-host', 'co-host': 'people.is-co-host' });

/** Whom the remove dialog is about. */
let removing = { id: '', name: '' };

/** The side panel shows when any of its panels does. */
export function fitSide() {
  $('side').hidden = $('people-panel').hidden && $('chat-panel').hidden && $('qa-panel').hidden && $('lobby-panel').hidden;
}

/**
 * Before a list is drawn again: what in it has focus (whose row, which control by its name).
 * @param {HTMLElement} list
 */
function focusIn(list) {
  const el = document.activeElement;
  if (!(el instanceof HTMLElement) || !list.contains(el)) return null;
  return { row: /** @type {HTMLElement | null} */ (el.closest('li'))?.dataset.id || '', name: el.getAttribute('aria-label') || el.textContent || '' };
}

/**
 * After: focus goes to the same control in the same person's row, else that
 * row's first control, else the list's first, else `fallback`, so that a
 * keyboard user keeps their place while the list changes under them (it is
 * drawn again whenever anyone changes).
 * @param {HTMLElement} list @param {{row: string, name: string} | null} was @param {HTMLElement} fallback
 */
function keepFocus(list, was, fallback) {
  if (!was || list.contains(document.activeElement)) return;
  const controls = (/** @type {ParentNode} */ root) => /** @type {HTMLElement[]} */ ([...root.querySelectorAll('button, select')]);
  const row = /** @type {HTMLElement[]} */ ([...list.querySelectorAll('li')]).find((li) => li.dataset.id === was.row);
  const same = row && controls(row).find((c) => (c.getAttribute('aria-label') || c.textContent || '') === was.name);
  (same || (row && controls(row)[0]) || controls(list)[0] || fallback).focus();
}

/** Hosts see who waits, with admit and deny for each. @param {any[]} waiting */
export function renderLobby(waiting) {
  const list = $('lobby-list');
  const was = focusIn(list);
  list.replaceChildren();
  for (const w of waiting) {
    const li = document.createElement('li');
    li.dataset.id = w.id;
    const label = document.createElement('span');
    label.append(nameText(w.name), badge(w.identity));
    li.append(label,
      personButton(t('lobby.admit'), t('lobby.admit-name', { name: w.name }), () => send({ type: 'admit', participantId: w.id })),
      personButton(t('lobby.deny'), t('lobby.deny-name', { name: w.name }), () => send({ type: 'deny', participantId: w.id })));
    list.append(li);
  }
  $('lobby-heading').textContent = t('lobby.heading', { count: waiting.length });
  $('lobby-panel').hidden = waiting.length === 0;
  fitSide();
  keepFocus(list, was, $('people-btn'));
  hooks.setStatus(waiting.length ? t('status.waiting', { count: waiting.length }) : '', waiting.length > 0);
}

export function renderPeople() {
  const { participants, me } = state;
  const list = $('people');
  const was = focusIn(list);
  list.replaceChildren();
  $('host-controls').hidden = !amHost();
  $('host-toggle').hidden = !amHost();
  $('locked-badge').hidden = !state.meetingLocked;
  $('lock-btn').textContent = t(state.meetingLocked ? 'host.unlock' : 'host.lock');
  $('lock-btn').setAttribute('aria-pressed', String(state.meetingLocked));
  const myRole = participants.get(me)?.role;
  for (const [id, p] of participants) {
    const li = document.createElement('li');
    const bits = [];
    if (id === me) bits.push(t('people.you'));
    if (p.hand != null) bits.push(t('people.hand'));
    if (p.role === 'host' || p.role === 'co-host') bits.push(t(ROLE_WORDS[p.role]));
    if (p.muted.includes('microphone') || !p.sources.includes('microphone')) bits.push(t('people.mic-off'));
    if (!p.sources.includes('camera')) bits.push(t('people.camera-off'));
    if (p.sources.includes('screen')) bits.push(t('people.sharing'));
    if (!p.connected) bits.push(t('people.reconnecting'));
    // Hosts only (the server sends it to no one else): which path media takes, for support.
    if (p.mediaPath && MEDIA_PATH_WORDS[p.mediaPath]) bits.push(t(MEDIA_PATH_WORDS[p.mediaPath]));
    const label = document.createElement('span');
    label.append(nameText(p.name), ...(bits.length ? [tagText(` (${bits.join(', ')})`)] : []), badge(p.identity));
    li.append(label);
    li.dataset.id = id;
    // Co-hosts act on everyone but the host; only the host makes hosts.
    if (amHost() && id !== me && (p.role !== 'host' || myRole === 'host')) {
      li.append(roleSelect(id, p, myRole === 'host'));
      // A webinar's presenter goes back to the audience (their media stops).
      if (isWebinar() && p.role === 'presenter') li.append(takeOffButton(id, p.name));
      if (p.sources.includes('microphone') && !p.muted.includes('microphone')) {
        li.append(personButton(t('people.mute'), t('people.mute-name', { name: p.name }), () => send({ type: 'mute-participant', participantId: id })));
      }
      if (p.sources.includes('camera')) {
        li.append(personButton(t('people.stop-camera'), t('people.stop-camera-name', { name: p.name }), () => send({ type: 'stop-source', participantId: id, source: 'camera' })));
      }
      if (p.sources.includes('screen')) {
        li.append(personButton(t('people.stop-sharing'), t('people.stop-sharing-name', { name: p.name }), () => send({ type: 'stop-source', participantId: id, source: 'screen' })));
      }
      li.append(personButton(t('people.remove'), t('people.remove-name', { name: p.name }), () => {
        removing = { id, name: p.name };
        $('remove-heading').replaceChildren(...tNodes('remove.heading', { name: nameText(p.name) }));
        $('remove-bar').checked = false;
        $('remove-dialog').showModal();
      }));
    }
    list.append(li);
  }
  $('people-heading').textContent = t('people.heading', { count: participants.size });
  keepFocus(list, was, $('people-btn'));
  renderHands();
}

/**
 * The raised hands, in order, for hosts (with a button to lower each, and in
 * a webinar one to bring an attendee on stage); the count; the hint when
 * alone; our hand button.
 */
function renderHands() {
  const { participants, me } = state;
  // A webinar's attendees with a hand up reach hosts without asking for the list.
  const queue = handQueue(new Map([...participants, ...state.attendees]));
  const was = focusIn($('hands'));
  $('hands').replaceChildren(...queue.map(([id, p]) => {
    const li = document.createElement('li');
    li.dataset.id = id;
    const label = document.createElement('span');
    label.append(nameText(p.name), ...(id === me ? [tagText(` ${t('tile.you')}`)] : []), badge(p.identity));
    li.append(label, personButton(t('hands.lower'), t('hands.lower-name', { name: p.name }), () => send({ type: 'lower-hand', participantId: id })));
    if (state.attendees.has(id)) li.append(bringButton(id, p.name));
    return li;
  }));
  $('hands-heading').textContent = t('hands.heading', { count: queue.length });
  $('hands-panel').hidden = !amHost() || queue.length === 0;
  keepFocus($('hands'), was, $('people-btn'));
  // In a webinar the count is the stage's (the audience has its own count), and
  // an attendee is never "alone": they wait for the stage.
  const attendee = amAttendee();
  const onStage = attendee ? participants.size - 1 : participants.size;
  $('people-count').textContent = isWebinar() ? t('webinar.on-stage-count', { count: onStage }) : t('meeting.count', { count: participants.size });
  $('alone').hidden = attendee || participants.size !== 1 || (state.audience ?? 0) > 0;
  $('stage-empty').hidden = !attendee || onStage > 0;
  const raised = participants.get(me)?.hand != null;
  const btn = $('hand-btn');
  btn.textContent = t(raised ? 'controls.lower-hand' : 'controls.raise-hand');
  btn.setAttribute('aria-pressed', String(raised));
  btn.title = shortcutTitle('Alt+Shift+H');
}

/** A role picker for one person (hosts only). @param {string} id @param {any} p @param {boolean} canMakeHost */
function roleSelect(id, p, canMakeHost) {
  const select = document.createElement('select');
  select.setAttribute('aria-label', t('people.role-of', { name: p.name }));
  const roles = [['participant', t('role.participant')], ['presenter', t('role.presenter')], ['co-host', t('role.co-host')]];
  if (canMakeHost) roles.push(['host', t('role.host')]);
  for (const [value, label] of roles) select.add(new Option(label, value, false, p.role === value));
  select.addEventListener('change', () => send({ type: 'set-role', participantId: id, role: select.value }));
  return select;
}

/** The remove dialog's buttons. */
export function wireRemoveDialog() {
  $('remove-cancel').addEventListener('click', () => $('remove-dialog').close());
  // Focus goes back to the Remove button that opened the dialog; if People was
  // drawn again meanwhile (that button is gone), to that person's row, else People.
  $('remove-dialog').addEventListener('close', () => {
    if (document.activeElement && document.activeElement !== document.body) return;
    const row = /** @type {HTMLElement[]} */ ([...$('people').querySelectorAll('li')]).find((li) => li.dataset.id === removing.id);
    (/** @type {HTMLElement | null} */ (row?.querySelector('button, select')) || $('people-btn')).focus();
  });
  $('remove-form').addEventListener('submit', () => {
    send({ type: 'remove', participantId: removing.id, bar: $('remove-bar').checked });
  });
}
