// The control bar: microphone, camera, screen share, hand, reactions, panels,
// devices; each turned off with the reason when the meeting does not allow it.
import { t } from './i18n.js';
import { $, state, send, hooks, amAttendee } from './meeting-state.js';
import { reasonText } from './errors.js';
import { local, openCamera, fillDevices, startMeter, stopMeter, switchCamera, switchMicrophone, switchSpeaker } from './devices.js';
import { wireShortcuts, shortcutTitle, copyInviteLink } from './hands.js';
import { fitSide } from './people.js';
import { renderVideoFile, wireVideoFile } from './videofile.js';

/** Set while our own `lower-hand` is on its way, so we do not announce it as a host's. */
export const ownHand = { lowering: false, changedAt: 0 };
/** The least time between two of our hand changes (the server's limit for an attendee, protocol.md §4.18). */
const HAND_GAP_MS = 1000;

/** Turn a control off (or on) and say why next to it; `title` shows when it is on. */
function restrict(/** @type {HTMLButtonElement | HTMLInputElement} */ el, /** @type {string | null} */ reason, title = '') {
  el.disabled = !!reason;
  el.title = reason || title;
  if (reason) el.setAttribute('aria-describedby', 'restrictions'); else el.removeAttribute('aria-describedby');
}

export function updateControls() {
  const { permissions } = state;
  // A webinar's attendee captures nothing: the microphone is off, with the reason.
  const attendee = amAttendee();
  const micOff = local.micMuted || attendee;
  const mic = $('mic-btn');
  // Muting is always allowed; unmuting may not be, after a host mute.
  restrict(mic, attendee ? reasonText(permissions.unmute) || t('controls.no-mic')
    : !local.mic ? t('controls.no-mic') : local.micMuted ? reasonText(permissions.unmute) : null, shortcutTitle('Alt+Shift+M'));
  mic.textContent = t(micOff ? 'controls.unmute' : 'controls.mute');
  mic.setAttribute('aria-pressed', String(micOff));
  const cam = $('cam-btn');
  restrict(cam, local.cameraOn ? null : reasonText(permissions.camera), shortcutTitle('Alt+Shift+C'));
  cam.textContent = t(local.cameraOn ? 'controls.stop-camera' : 'controls.start-camera');
  cam.setAttribute('aria-pressed', String(!local.cameraOn));
  const share = $('share-btn');
  restrict(share, !navigator.mediaDevices?.getDisplayMedia ? t('controls.no-share')
    : local.screen ? null : reasonText(permissions.screenShare));
  share.textContent = t(local.screen ? 'controls.stop-sharing' : 'controls.share');
  share.setAttribute('aria-pressed', String(!!local.screen));
  const chatWhy = reasonText(permissions.chat);
  restrict($('chat-input'), chatWhy);
  restrict($('chat-send'), chatWhy);
  // Reactions follow the chat setting (protocol.md §4.15).
  restrict($('react-btn'), chatWhy);
  if (chatWhy && !$('reactions').hidden) toggleReactions();
  $('chat-why').textContent = chatWhy ? t('chat.why', { why: chatWhy }) : '';
  $('chat-why').hidden = !chatWhy;
  // An attendee writes to the stage only (protocol.md §4.18).
  $('chat-audience').hidden = !attendee;
  const reasons = [
    [t('restrictions.unmute'), micOff ? reasonText(permissions.unmute) : null],
    [t('restrictions.camera'), local.cameraOn ? null : reasonText(permissions.camera)],
    [t('restrictions.share'), local.screen ? null : reasonText(permissions.screenShare)],
    [t('restrictions.chat'), chatWhy],
  ].filter(([, why]) => why);
  // One line per reason (a webinar's attendee has one for three controls).
  /** @type {Map<string, string[]>} */
  const byWhy = new Map();
  for (const [what, why] of reasons) byWhy.set(why || '', [...(byWhy.get(why || '') || []), what || '']);
  $('restrictions').replaceChildren(...[...byWhy].map(([why, what]) => {
    const li = document.createElement('li');
    li.textContent = t('restrictions.item', { what: what.join(', '), why });
    return li;
  }));
  $('restrictions').hidden = reasons.length === 0;
  renderVideoFile();
  $('chat-badge').hidden = state.unreadChat === 0;
  $('chat-badge').textContent = state.unreadChat ? t('chat.new', { count: state.unreadChat }) : '';
}

function toggleReactions() {
  const bar = $('reactions');
  bar.hidden = !bar.hidden;
  $('react-btn').setAttribute('aria-expanded', String(!bar.hidden));
  if (!bar.hidden) bar.querySelector('button')?.focus();
}

/** @param {string} panelId @param {string} buttonId */
function togglePanel(panelId, buttonId) {
  const panel = $(panelId);
  panel.hidden = !panel.hidden;
  $(buttonId).setAttribute('aria-expanded', String(!panel.hidden));
  fitSide();
  if (panelId === 'chat-panel' && !panel.hidden) {
    state.unreadChat = 0;
    updateControls();
    $('chat-input').focus();
  }
  if (panelId === 'qa-panel' && !panel.hidden && !$('qa-input').disabled) $('qa-input').focus();
}

async function toggleCamera() {
  if (local.cameraOn) {
    local.cameraOn = false;
    local.camera?.stop();
    local.camera = null;
    send({ type: 'unpublish', source: 'camera' });
  } else {
    try {
      local.camera = await openCamera();
      local.cameraOn = true;
      send({ type: 'publish', source: 'camera' });
    } catch (e) {
      hooks.setStatus(t('status.camera-failed', { detail: e instanceof Error ? e.message : String(e) }), true);
    }
  }
  updateControls();
  hooks.render();
}

async function toggleShare() {
  if (local.screen) { stopShare(); return; }
  try {
    local.screen = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: true });
  } catch (e) {
    if (!(e instanceof DOMException && e.name === 'NotAllowedError')) hooks.setStatus(t('status.share-failed', { detail: e instanceof Error ? e.message : String(e) }), true);
    return;
  }
  local.screen.getVideoTracks()[0]?.addEventListener('ended', () => stopShare());
  send({ type: 'publish', source: 'screen' });
  if (local.screen.getAudioTracks()[0]) send({ type: 'publish', source: 'screen-audio' });
  updateControls();
  hooks.render();
}

/** @param {boolean} [tellServer] false when the server stopped it already */
export function stopShare(tellServer = true) {
  if (!local.screen) return;
  const hadAudio = local.screen.getAudioTracks().length > 0;
  for (const tr of local.screen.getTracks()) tr.stop();
  local.screen = null;
  // A video file's player stops with it.
  local.screenCleanup?.();
  if (tellServer) {
    send({ type: 'unpublish', source: 'screen' });
    if (hadAudio) send({ type: 'unpublish', source: 'screen-audio' });
  }
  updateControls();
  hooks.render();
}

/** The devices dialog: switch camera, microphone and speaker without leaving. */
async function openDevices() {
  $('devices-status').textContent = '';
  await fillDevices().catch(() => {});
  // Where a page cannot choose (no setSinkId, or no speakers listed to pages), say where to.
  $('speaker-hint').hidden = !$('meeting-speaker').disabled;
  $('devices-dialog').showModal();
  startMeter();
}

/** @param {() => Promise<void>} change */
async function changeDevice(change) {
  try {
    await change();
    $('devices-status').textContent = t('devices.changed');
    hooks.render();
  } catch (e) {
    $('devices-status').textContent = t('devices.failed', { detail: e instanceof Error ? e.message : String(e) });
  }
}

/** @param {() => void} leave */
export function wireControls(leave) {
  $('mic-btn').addEventListener('click', () => {
    if (!local.mic) return;
    local.micMuted = !local.micMuted;
    local.mic.enabled = !local.micMuted;
    send({ type: 'mute', source: 'microphone', muted: local.micMuted });
    updateControls();
  });
  $('cam-btn').addEventListener('click', toggleCamera);
  $('share-btn').addEventListener('click', toggleShare);
  hooks.stopShare = () => stopShare();
  wireVideoFile();
  $('people-btn').addEventListener('click', () => togglePanel('people-panel', 'people-btn'));
  $('chat-btn').addEventListener('click', () => togglePanel('chat-panel', 'chat-btn'));
  $('qa-btn').addEventListener('click', () => togglePanel('qa-panel', 'qa-btn'));
  // Escape in a panel, or on its button, closes it; focus goes back to the button.
  for (const [panelId, buttonId] of [['people-panel', 'people-btn'], ['chat-panel', 'chat-btn'], ['qa-panel', 'qa-btn']]) {
    const close = (/** @type {KeyboardEvent} */ e) => {
      if (e.key !== 'Escape' || $(panelId).hidden) return;
      togglePanel(panelId, buttonId);
      $(buttonId).focus();
    };
    $(panelId).addEventListener('keydown', close);
    $(buttonId).addEventListener('keydown', close);
  }
  $('host-toggle').addEventListener('click', () => {
    const open = $('host-controls').classList.toggle('open');
    $('host-toggle').setAttribute('aria-expanded', String(open));
  });
  $('leave-btn').addEventListener('click', leave);
  $('hand-btn').addEventListener('click', () => {
    // The server lets an attendee change their hand once a second (a double
    // click would get `rate-limited`): a second press within it does nothing.
    const now = Date.now();
    if (now - ownHand.changedAt < HAND_GAP_MS) return;
    ownHand.changedAt = now;
    const raised = state.participants.get(state.me)?.hand != null;
    ownHand.lowering = raised;
    send({ type: raised ? 'lower-hand' : 'raise-hand' });
  });
  $('react-btn').addEventListener('click', toggleReactions);
  for (const b of $('reactions').querySelectorAll('button')) {
    b.addEventListener('click', () => send({ type: 'react', reaction: b.dataset.reaction }));
  }
  $('reactions').addEventListener('keydown', (/** @type {KeyboardEvent} */ e) => {
    if (e.key === 'Escape') { toggleReactions(); $('react-btn').focus(); }
  });
  $('copy-link').addEventListener('click', () => copyInviteLink($('copy-link-status')));
  wireShortcuts(() => !$('meeting').hidden);
  $('devices-btn').addEventListener('click', openDevices);
  $('devices-dialog').addEventListener('close', () => { stopMeter(); $('devices-btn').focus(); });
  $('meeting-camera').addEventListener('change', () => changeDevice(() => switchCamera($('meeting-camera').value)));
  $('meeting-mic').addEventListener('change', () => changeDevice(() => switchMicrophone($('meeting-mic').value)));
  $('meeting-speaker').addEventListener('change', () => changeDevice(() => switchSpeaker($('meeting-speaker').value)));
}
