// The meeting page: pre-join screen, then the meeting itself. This file joins
// the meeting and turns the server's messages into the page's state; what is
// shown is drawn by the modules of each concern (stage.js: tiles and
// layouts, people.js, chat.js, host.js: levels and host actions, controls.js,
// devices.js: local media, audio-out.js, prejoin.js).
import { Signalling } from './signalling.js';
import { Call } from './call.js';
import { VideoSizes } from './sizes.js';
import { ConnectionQuality } from './quality.js';
import { t, translatePage, languagePicker } from './i18n.js';
import { serverError, removalReason, noticeText } from './errors.js';
import { Announcer, LARGE_MEETING, showReaction, reactionName } from './hands.js';
import { $, state, hooks, send, amHost, amAttendee, inAudience, meetingId } from './meeting-state.js';
import { local, localTrack, localSources, startMeter, stopMeter, stopAll } from './devices.js';
import { playVoices, playScreenAudio, dropGone } from './audio-out.js';
import { renderTiles, noteSpeaking, wireStage } from './stage.js';
import { renderPeople, renderLobby, wireRemoveDialog } from './people.js';
import { resetChat, addChat, chatArrived, wireChat } from './chat.js';
import { showLevel, showCurrentLevel, loadLevels, levelNameOf, policyRefusal, wireHostControls } from './host.js';
import { updateControls, wireControls, stopShare, ownHand } from './controls.js';
import { loadMeeting, setupPrejoin } from './prejoin.js';
import { place, audienceCount, attendeesPage, resetAudience, renderAudience, followStage, wireWebinar } from './webinar.js';
import { questionArrived, questionsPage, questionRemoved, resetQuestions, questionError, renderQuestions, wireQuestions } from './questions.js';
import { e2eeWelcome, e2eeMessage, attachTransforms, wireE2ee, onEncryptedChat } from './e2ee-meeting.js';

translatePage();
languagePicker($('language'));

// The host key comes in the link's fragment (never sent to any server). Keep it
// for this tab and take it out of the address bar, so a shared screen shows none.
// A page whose node was lost comes here with its resume token (and name,
// and whether its camera and microphone were off) in the fragment too: kept
// the same way; the person resumes at a click (prejoin.js).
const fragment = new URLSearchParams(location.hash.slice(1));
const hostMatch = fragment.get('host')?.match(/^[0-9a-f]+$/);
if (hostMatch) sessionStorage.setItem(`convene-host-${meetingId}`, hostMatch[0]);
const resumeHere = fragment.get('resume')?.match(/^[0-9a-f]+$/) ? {
  name: fragment.get('name') || '',
  cameraOff: fragment.get('camera') === 'off',
  micOff: fragment.get('mic') === 'off',
} : null;
if (resumeHere) sessionStorage.setItem(`convene-resume-${meetingId}`, /** @type {string} */ (fragment.get('resume')));
if (hostMatch || resumeHere) history.replaceState(null, '', location.pathname + location.search);
const hostKey = sessionStorage.getItem(`convene-host-${meetingId}`) || undefined;

/** Who waits in the lobby (hosts are told of each new arrival). */
/** @type {Set<string>} */ let waiting = new Set();
/** The server said it is restarting (its socket closes next; we resume once it is back). */
let serverRestarting = false;
const sizes = new VideoSizes(send, [$('grid'), $('stage')], () => state.me);
const quality = new ConnectionQuality($('grid'), $('quality-note'), () => state.me);
const announcer = new Announcer($('announcer'), () => state.participants.size);

hooks.render = render;
hooks.updateControls = updateControls;
hooks.setStatus = setStatus;

/** @param {string} name @param {{passcode?: string, hostKey?: string}} credentials */
function enterMeeting(name, credentials) {
  local.cameraOn = !!local.camera && !$('join-camera-off').checked;
  if (!local.cameraOn) { local.camera?.stop(); local.camera = null; }
  local.micMuted = $('join-mic-off').checked;
  if (local.mic) local.mic.enabled = !local.micMuted;
  // The pre-join meter is not seen in the meeting (it cost ~25 ms of the main thread a second).
  stopMeter();
  $('prejoin').hidden = true;
  $('left').hidden = true;
  $('meeting').hidden = false;
  updateControls();
  const signalling = new Signalling(meetingId, name, credentials);
  state.signalling = signalling;
  signalling.addEventListener('refused', (e) => {
    // Back to the pre-join screen, saying why.
    const msg = /** @type {CustomEvent} */ (e).detail;
    state.signalling = null;
    $('meeting').hidden = true;
    $('prejoin').hidden = false;
    $('join-error').textContent = serverError(msg);
    $('join-error').hidden = false;
    if (msg.code === 'wrong-passcode') $('passcode').focus();
    startMeter();
  });
  signalling.addEventListener('message', (e) => onMessage(/** @type {CustomEvent} */ (e).detail));
  // Another node hosts the meeting now: this page, loaded again, is sent
  // there (signed in, the address and its fragment kept).
  // Our node is lost: on to another, our resume token (and host key) in the
  // fragment, which no server sees.
  signalling.addEventListener('moved', (e) => {
    const { node, lost, resumeToken } = /** @type {CustomEvent} */ (e).detail;
    if (!lost || !resumeToken) { location.reload(); return; }
    const carry = new URLSearchParams({ resume: resumeToken, name });
    if (hostKey) carry.set('host', hostKey);
    if (!local.cameraOn) carry.set('camera', 'off');
    if (local.micMuted) carry.set('mic', 'off');
    location.assign(`${node}${location.pathname}${location.search}#${carry}`);
  });
  signalling.addEventListener('unavailable', () => {
    if (!serverRestarting) setStatus(t('status.unavailable'), true);
  });
  signalling.addEventListener('lost', (e) => {
    // After `restarting` the socket closes on purpose: say why, not "lost";
    // while the node cannot reach the meeting, say that (not each retry as lost).
    const unavailable = /** @type {CustomEvent} */ (e).detail?.unavailable;
    setStatus(serverRestarting ? t('status.restarting') : t(unavailable ? 'status.unavailable' : 'status.lost'), true);
    state.call?.close();
    state.call = null;
  });
  signalling.connect();
}

/** @param {any} msg */
function onMessage(msg) {
  const { participants } = state;
  switch (msg.type) {
    case 'welcome': {
      $('lobby').hidden = true;
      $('meeting').hidden = false;
      // Just in (from the join page or the lobby; not a resume): focus on the meeting's heading.
      if (!$('meeting').contains(document.activeElement)) $('meeting-heading').focus();
      state.me = msg.participantId;
      state.meetingLocked = msg.meeting.locked;
      state.meetingPasscode = !!msg.meeting.passcode;
      showLevel(msg.meeting.level);
      state.permissions = msg.permissions;
      state.settings = msg.settings;
      participants.clear();
      for (const p of msg.participants) participants.set(p.id, p);
      resetAudience();
      resetQuestions();
      state.call?.close();
      const call = new Call(send, localTrack, msg.iceServers);
      call.onTransceivers = attachTransforms;
      state.call = call;
      e2eeWelcome(msg);
      call.addEventListener('tracks', render);
      call.addEventListener('state', (e) => {
        const connection = /** @type {CustomEvent} */ (e).detail;
        if (connection === 'failed') state.signalling?.reconnect();
        // The network may have changed under both: is the socket still there?
        else if (connection === 'disconnected') state.signalling?.check();
      });
      const mine = participants.get(state.me)?.sources || [];
      // A webinar's attendee publishes nothing (what it had, followStage lets go).
      const want = amAttendee() ? [] : localSources();
      for (const s of mine) if (!want.includes(s)) send({ type: 'unpublish', source: s });
      for (const s of want) send({ type: 'publish', source: s });
      if (local.micMuted && want.includes('microphone')) send({ type: 'mute', source: 'microphone', muted: true });
      updateControls();
      resetChat(msg.chat);
      serverRestarting = false;
      setStatus('');
      render();
      sizes.reset();
      quality.reset();
      followStage(null);
      break;
    }
    case 'roster':
      for (const p of msg.participants) place(p);
      render();
      break;
    case 'chat-history':
      for (const m of msg.messages) addChat(m);
      break;
    case 'participant-joined':
    case 'participant-updated': {
      const p = msg.participant;
      if (msg.type === 'participant-joined' && !participants.has(p.id)) noteArrival('announce.joined', p.name);
      const before = participants.get(p.id) || state.attendees.get(p.id);
      noteHand(before, p);
      // In a webinar, hosts keep attendees apart from the stage; one taken off it is said.
      if (place(p)) noteArrival('announce.off-stage', p.name);
      // A source that is gone cannot be speaking (its last "speaking: false" may not come).
      if (!p.sources.includes('microphone')) state.speaking.delete(p.id);
      render();
      // Our own move on or off a webinar's stage: the devices follow.
      if (p.id === state.me && before && inAudience(before) !== inAudience(p)) followStage(inAudience(p) ? 'off' : 'on');
      break;
    }
    case 'participant-left': {
      // A webinar's attendee (hosts hear of them): not on any tile, not announced.
      // Drawn again all the same: their raised hand, if any, leaves the hosts' queue.
      if (state.attendees.delete(msg.participantId)) { quality.forget(msg.participantId); render(); break; }
      const gone = participants.get(msg.participantId);
      const words = { removed: 'announce.removed', 'off-stage': 'announce.off-stage' }[/** @type {string} */ (msg.reason)] || 'announce.left';
      if (gone && msg.reason !== 'ended') noteArrival(words, gone.name);
      participants.delete(msg.participantId);
      state.speaking.delete(msg.participantId);
      quality.forget(msg.participantId);
      render();
      break;
    }
    case 'audience':
      audienceCount(msg.attendees);
      break;
    case 'attendees':
      attendeesPage(msg);
      break;
    case 'question':
      questionArrived(msg.question);
      break;
    case 'questions':
      questionsPage(msg.questions);
      break;
    case 'question-removed':
      questionRemoved(msg.id);
      break;
    case 'offer':
      state.call?.handleOffer(msg.sdp, msg.tracks);
      break;
    case 'ice-servers':
      state.call?.setIceServers(msg.iceServers);
      break;
    case 'video-layers':
      state.call?.setLayers(msg.source, msg.active);
      break;
    case 'connection-quality':
      quality.update(msg.participants);
      break;
    case 'voice-slot':
      // Who a voice slot carries now. The speaking indicators already show who talks.
      break;
    case 'lobby':
      showLevel(msg.meeting.level);
      // Sent back from the meeting (a level change): its media is gone.
      state.call?.close();
      state.call = null;
      $('prejoin').hidden = true;
      $('meeting').hidden = true;
      $('lobby').hidden = false;
      if (!$('lobby').contains(document.activeElement)) $('lobby-title').focus();
      $('lobby-message').textContent = msg.hostPresent ? t('lobby.host-present') : t('lobby.no-host');
      break;
    case 'lobby-updated':
      for (const w of msg.waiting) if (!waiting.has(w.id)) announcer.say(t('announce.waiting', { name: w.name }));
      waiting = new Set(msg.waiting.map((/** @type {any} */ w) => w.id));
      renderLobby(msg.waiting);
      break;
    case 'denied':
      $('lobby').hidden = true;
      endSession(t('left.denied-title'), t('left.denied'));
      break;
    case 'notice':
      setStatus(noticeText(msg, levelNameOf), true);
      break;
    case 'meeting-updated':
      state.meetingLocked = msg.meeting.locked;
      state.meetingPasscode = !!msg.meeting.passcode;
      showLevel(msg.meeting.level);
      renderPeople();
      break;
    case 'permissions':
      state.permissions = msg.permissions;
      updateControls();
      renderPeople();
      renderAudience();
      break;
    case 'settings-updated':
      state.settings = msg.settings;
      renderQuestions();
      break;
    case 'source-stopped':
      // The server already stopped forwarding it; stop capturing too.
      if (msg.source === 'camera') {
        local.cameraOn = false;
        local.camera?.stop();
        local.camera = null;
        setStatus(t('status.camera-stopped', { name: msg.by }), true);
      } else {
        stopShare(false);
        setStatus(t('status.share-stopped', { name: msg.by }), true);
      }
      updateControls();
      render();
      break;
    case 'muted-by-host':
      local.micMuted = true;
      if (local.mic) local.mic.enabled = false;
      setStatus(t(msg.mayUnmute ? 'status.muted' : 'status.muted-hosts-unmute', { name: msg.by }), true);
      updateControls();
      break;
    case 'removed':
      endSession(t('left.removed-title'), msg.reason
        ? t('left.removed-level', { name: msg.by, reason: removalReason(msg, levelNameOf) })
        : t(msg.barred ? 'left.removed-barred' : 'left.removed', { name: msg.by }));
      break;
    case 'ended':
      endSession(t('left.ended'), t('left.ended-by', { name: msg.by }));
      break;
    case 'restarting':
      serverRestarting = true;
      setStatus(t('status.restarting'), true);
      break;
    case 'chat':
      if (chatArrived(msg.message)) {
        updateControls();
        // With the panel open, its log is a live region of its own.
        if (msg.message.participantId !== state.me) announcer.say(t('announce.chat', { name: msg.message.name }));
      }
      break;
    case 'reaction': {
      const p = participants.get(msg.participantId);
      showReaction($('grid').querySelector(`.tile[data-key="${CSS.escape(msg.participantId)}"]`), msg.reaction);
      // In a large meeting reactions are only seen: read out, they would drown everything else.
      if (p && participants.size < LARGE_MEETING) {
        announcer.say(t('announce.reaction', { name: msg.participantId === state.me ? t('announce.you') : p.name, reaction: reactionName(msg.reaction) }));
      }
      break;
    }
    case 'speaking':
      if (msg.speaking) state.speaking.add(msg.participantId); else state.speaking.delete(msg.participantId);
      noteSpeaking(msg.participantId, msg.speaking);
      break;
    case 'mls-create-request':
    case 'mls-commit-request':
    case 'mls-commit':
    case 'mls-welcome':
    case 'mls-app':
      e2eeMessage(msg);
      break;
    case 'error':
      // Another commit won: the group's state machine follows the winner.
      if (msg.code === 'mls-stale-epoch') { e2eeMessage(msg); break; }
      if (msg.code === 'rate-limited') e2eeMessage(msg); // a key package may go again sooner
      // A hand changed twice within a second (the button waits a second; a shortcut and a click may not): nothing to say.
      if (msg.code === 'rate-limited' && msg.message?.startsWith('your hand was just')) break;
      // A question refused: said in the Q&A panel.
      if (questionError(msg)) break;
      console.warn('server:', msg.code, msg.message);
      showCurrentLevel();
      if (msg.code === 'meeting-full') { state.signalling?.leave(); showLeft(t('left.title'), t('left.full')); }
      else if (msg.code === 'ended') endSession(t('left.ended'), '');
      else if (msg.code === 'lobby-timeout') { $('lobby').hidden = true; finish(serverError(msg), true); }
      else if (msg.code === 'policy' || msg.code === 'passcode-kept') setStatus(policyRefusal(msg), true);
      else setStatus(serverError(msg), true);
      break;
  }
}

/** @param {string} text @param {boolean} [warn] */
function setStatus(text, warn = false) {
  $('status').textContent = text;
  $('status').classList.toggle('warn', warn);
}

/** Tiles, everyone's sound, People and hands: drawn again from the state. */
function render() {
  renderTiles();
  const remote = state.call?.remoteTracks() || new Map();
  for (const id of state.participants.keys()) if (id !== state.me) playScreenAudio(id, remote.get(id));
  playVoices(state.call?.voiceTracks() || []);
  dropGone();
  quality.apply();
  renderPeople();
  renderAudience();
  renderQuestions();
}

/**
 * Announce someone joining or leaving: in a large meeting to hosts only (the
 * announcer also says fewer, less often there).
 * @param {string} id message id @param {string} name
 */
function noteArrival(id, name) {
  if (state.participants.size < LARGE_MEETING || amHost()) announcer.say(t(id, { name }));
}

/**
 * Announce a hand going up (in a large meeting, to hosts only), and our own
 * hand lowered by a host.
 * @param {any} before @param {any} after
 */
function noteHand(before, after) {
  const up = before?.hand == null && after.hand != null;
  const down = before?.hand != null && after.hand == null;
  if (up && after.id !== state.me && (state.participants.size < LARGE_MEETING || amHost())) {
    announcer.say(t('announce.hand-up', { name: after.name }));
  }
  if (down && after.id === state.me && !ownHand.lowering) announcer.say(t('announce.hand-lowered'));
  if (after.id === state.me && after.hand == null) ownHand.lowering = false;
}

/** Stop all media and show the "left" screen, headed `title`. @param {string} reason @param {boolean} canRejoin */
function finish(reason, canRejoin, title = t('left.title')) {
  state.signalling = null;
  state.call?.close();
  state.call = null;
  stopAll();
  stopShare();
  showLeft(title, reason);
  $('rejoin').hidden = !canRejoin;
}

/** The server ended our part in the meeting (removed, denied, or the meeting ended). @param {string} title @param {string} reason */
function endSession(title, reason) {
  finish(reason, false, title);
}

function leave() {
  state.signalling?.leave();
  finish('', true);
}

/** @param {string} title @param {string} reason */
function showLeft(title, reason) {
  $('prejoin').hidden = true;
  $('lobby').hidden = true;
  $('meeting').hidden = true;
  $('left').hidden = false;
  $('left-title').textContent = title;
  $('left-reason').textContent = reason;
  // The page's heading says what happened; Rejoin and Home follow it.
  $('left-title').focus();
}

wireControls(leave);
wireHostControls();
wireRemoveDialog();
wireChat();
wireStage();
wireE2ee();
wireWebinar();
wireQuestions((text) => announcer.say(text));
// Chat in an end-to-end encrypted meeting comes decrypted from the group.
onEncryptedChat(({ from, text }) => {
  const p = state.participants.get(from);
  if (chatArrived({ participantId: from, name: p?.name || '', text, sentAt: Date.now(), identity: p?.identity })) {
    updateControls();
    announcer.say(t('announce.chat', { name: p?.name || '' }));
  }
});
$('lobby-leave').addEventListener('click', () => { $('lobby').hidden = true; leave(); });
$('rejoin').addEventListener('click', () => location.reload());
loadMeeting(hostKey, () => endSession(t('left.ended'), '')).then(loadLevels).catch((e) => {
  // The page cannot say who you are or what the meeting requires: say so
  // rather than offer a Join that would go wrong.
  $('join-error').textContent = t('common.unreachable', { detail: e instanceof Error ? e.message : String(e) });
  $('join-error').hidden = false;
});
setupPrejoin(hostKey, enterMeeting, resumeHere);
