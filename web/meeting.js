// The meeting page: pre-join screen, then the meeting itself.
import { Signalling } from './signalling.js';
import { Call } from './call.js';
import { badge, describe, loadSession, renderSignIn, orgName } from './identity.js';
import { VideoSizes } from './sizes.js';
import { ConnectionQuality } from './quality.js';
import { levelOptions, unmetWords } from './levels.js';
import { showPasscodeSetting, passcodeChange } from './passcode-setting.js';
import { showRequirements } from './requirements.js';
import { showInvitation } from './invitation.js';
import { t, tNodes, lang, formatTime, translatePage, languagePicker } from './i18n.js';
import { serverError, reasonText, removalReason, noticeText } from './errors.js';
import { Announcer, LARGE_MEETING, handQueue, showReaction, reactionName, wireShortcuts, shortcutTitle, copyInviteLink } from './hands.js';

const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));
translatePage();
languagePicker($('language'));
const meetingId = location.pathname.split('/').pop() || '';

// The host key comes in the link's fragment (never sent to any server). Keep it
// for this tab and take it out of the address bar, so a shared screen shows none.
const hostMatch = location.hash.match(/host=([0-9a-f]+)/);
if (hostMatch) {
  sessionStorage.setItem(`convene-host-${meetingId}`, hostMatch[1]);
  history.replaceState(null, '', location.pathname);
}
const hostKey = sessionStorage.getItem(`convene-host-${meetingId}`) || undefined;

/** Local media: what this browser captures. */
const local = {
  /** @type {MediaStreamTrack | null} */ mic: null,
  /** @type {MediaStreamTrack | null} */ camera: null,
  /** @type {MediaStream | null} */ screen: null,
  micMuted: false,
  cameraOn: true,
};

/** @type {Signalling | null} */ let signalling = null;
/** @type {Call | null} */ let call = null;
let me = '';
/** @type {Map<string, any>} */ const participants = new Map();
const speaking = new Set();
let joinClickedAt = 0;
let firstFrameReported = false;
let unreadChat = 0;
let meetingLocked = false;
/** Joining the meeting needs a passcode (a host may set, change or remove it). */
let meetingPasscode = false;
/** What we may not do now, each with its reason (null when allowed); from the server. */
let permissions = { camera: null, screenShare: null, unmute: null, chat: null, host: false };
/** The meeting's settings, as hosts last set them. */
let settings = null;
/** Whom the remove dialog is about. */
let removing = { id: '', name: '' };
/** The meeting has ended: nothing more to capture or join. */
let meetingOver = false;
/** The server said it is restarting (its socket closes next; we resume once it is back). */
let serverRestarting = false;
/** Set while our own `lower-hand` is on its way, so we do not announce it as a host's. */
let loweringOwnHand = false;
/** Cameras are asked for at 720p: simulcast sends it in three sizes. */
const CAMERA = { width: { ideal: 1280 }, height: { ideal: 720 } };
const sizes = new VideoSizes(send, [$('grid'), $('stage')], () => me);
const quality = new ConnectionQuality($('grid'), $('quality-note'), () => me);
const announcer = new Announcer($('announcer'), () => participants.size);

/** The deployment's levels (for hosts' level control), lowest first. */
/** @type {any[]} */ let levels = [];
let currentLevel = '';
/** What a host last asked that the level may refuse (`policy`): to say why in the page's language. */
/** @type {{level: string, settings?: any, raised: boolean} | null} */ let policyAsk = null;

/** Show the meeting's handling level in the banner that stays at every stage. */
function showLevel(level) {
  if (!level) return;
  currentLevel = level.id;
  const banner = $('level-banner');
  banner.textContent = level.banner.text;
  banner.style.color = level.banner.foreground;
  banner.style.background = level.banner.background;
  banner.hidden = false;
  $('level-select').value = level.id;
  showChatKept();
}

/** Say in the chat panel whether this meeting's level keeps chat (and so shows it to later joiners). */
function showChatKept() {
  const level = levels.find((l) => l.id === currentLevel);
  if (!level) return;
  const days = level.requires?.chatRetentionDays || 0;
  $('chat-kept').textContent = days > 0 ? t('chat.kept', { count: days }) : t('chat.not-kept');
  $('chat-kept').hidden = false;
}

async function loadLevels() {
  const res = await fetch('/api/policy');
  if (!res.ok) return;
  levels = (await res.json()).levels;
  const select = $('level-select');
  select.replaceChildren(...levelOptions(levels, currentLevel));
  showChatKept();
}

function changeLevel() {
  const target = $('level-select').value;
  if (target === currentLevel) return;
  const rank = (id) => levels.findIndex((l) => l.id === id);
  const name = (id) => levels[rank(id)]?.name || id;
  if (rank(target) < rank(currentLevel)) {
    if (!confirm(t('host.lower-confirm', { from: name(currentLevel), to: name(target) }))) {
      $('level-select').value = currentLevel;
      return;
    }
    policyAsk = { level: target, raised: false };
    send({ type: 'set-level', level: target, confirm: true });
  } else {
    // Raising applies the level's requirements to the settings at once.
    policyAsk = { level: target, raised: true };
    send({ type: 'set-level', level: target, raise: true });
  }
}

// ---------- pre-join ----------

async function loadMeeting() {
  const res = await fetch(`/api/meetings/${meetingId}`);
  if (!res.ok) { location.replace('/'); return; }
  const m = await res.json();
  document.title = `${m.title} · Convene`;
  if (m.ended) {
    // Nothing to join: say so instead of showing the form.
    meetingOver = true;
    endSession(t('left.ended'), '');
    return;
  }
  for (const el of document.querySelectorAll('.meeting-title')) el.textContent = m.title;
  showLevel(m.level);
  const hosted = t('common.hosted-by', { org: orgName(m.hostedBy), server: m.server });
  $('hosted-by').textContent = hosted;
  for (const el of document.querySelectorAll('.lobby-hosted')) el.textContent = hosted;
  const session = await loadSession();
  if (session.signIn.length || session.signedIn) {
    $('identity').hidden = false;
    renderSignIn(session, $('sign-in'), location.pathname);
  }
  if (session.signedIn && session.signedIn.level !== 'guest') {
    $('guest-note').hidden = true;
    $('name').value = session.signedIn.name || '';
    $('name').readOnly = true;
    $('name-hint').hidden = false;
  }
  // What the meeting requires, up front; no join as a guest where guests are not admitted.
  const mayTry = showRequirements($('requirements'), m, session, location.pathname);
  if (m.settings?.guestsAllowed === false) $('guest-note').hidden = true;
  $('join').disabled = !mayTry && !hostKey;
  const needPasscode = m.passcodeRequired && !hostKey;
  $('passcode-row').hidden = !needPasscode;
  $('passcode').required = needPasscode;
  $('host-note').hidden = !hostKey;
}

async function getMedia(cameraId, micId) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: micId ? { deviceId: { exact: micId } } : true,
    video: cameraId ? { ...CAMERA, deviceId: { exact: cameraId } } : CAMERA,
  });
  if (meetingOver) {
    for (const t of stream.getTracks()) t.stop();
    return;
  }
  local.mic?.stop();
  local.camera?.stop();
  local.mic = stream.getAudioTracks()[0] || null;
  local.camera = stream.getVideoTracks()[0] || null;
  showPreview();
  startMeter();
}

function showPreview() {
  const on = !!local.camera && !$('join-camera-off').checked;
  $('preview').srcObject = on ? new MediaStream([/** @type {MediaStreamTrack} */ (local.camera)]) : null;
  $('preview-off').hidden = on;
}

/** @type {AudioContext | null} */ let audioCtx = null;
let meterTimer = 0;
function startMeter() {
  if (!local.mic) return;
  audioCtx ??= new AudioContext();
  const analyser = audioCtx.createAnalyser();
  analyser.fftSize = 512;
  audioCtx.createMediaStreamSource(new MediaStream([local.mic])).connect(analyser);
  const data = new Float32Array(analyser.fftSize);
  clearInterval(meterTimer);
  meterTimer = window.setInterval(() => {
    analyser.getFloatTimeDomainData(data);
    let sum = 0;
    for (const v of data) sum += v * v;
    $('mic-meter').value = Math.min(1, Math.sqrt(sum / data.length) * 4);
  }, 100);
}

async function fillDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  /** @type {Array<[string, string, MediaStreamTrack | null]>} */
  const pickers = [['camera-select', 'videoinput', local.camera], ['mic-select', 'audioinput', local.mic]];
  for (const [selectId, kind, track] of pickers) {
    const select = $(selectId);
    select.replaceChildren();
    devices.filter((d) => d.kind === kind).forEach((d, i) => {
      const opt = new Option(d.label || t(kind === 'videoinput' ? 'prejoin.camera-n' : 'prejoin.microphone-n', { n: i + 1 }), d.deviceId);
      opt.selected = track?.getSettings().deviceId === d.deviceId;
      select.add(opt);
    });
    select.disabled = select.options.length === 0;
  }
}

function setupPrejoin() {
  $('name').value = localStorage.getItem('convene-name') || '';
  // Wire the form first: a quick click must not submit it natively. Joining waits
  // for the devices, so nobody joins without the camera they were shown.
  const mediaReady = (async () => {
    try {
      await getMedia();
      await fillDevices();
    } catch (e) {
      $('device-error').textContent = t('prejoin.device-error', { detail: e instanceof Error ? e.message : String(e) });
      $('device-error').hidden = false;
    }
  })();
  $('camera-select').addEventListener('change', () => getMedia($('camera-select').value, $('mic-select').value).catch(() => {}));
  $('mic-select').addEventListener('change', () => getMedia($('camera-select').value, $('mic-select').value).catch(() => {}));
  $('join-camera-off').addEventListener('change', showPreview);
  $('join-form').addEventListener('submit', async (/** @type {Event} */ e) => {
    e.preventDefault();
    const name = $('name').value.trim();
    if (!name) return;
    localStorage.setItem('convene-name', name);
    joinClickedAt = performance.now();
    $('join-error').hidden = true;
    await mediaReady;
    enterMeeting(name, { passcode: $('passcode').value || undefined, hostKey });
  });
}

// ---------- in the meeting ----------

function enterMeeting(name, credentials) {
  local.cameraOn = !!local.camera && !$('join-camera-off').checked;
  if (!local.cameraOn) { local.camera?.stop(); local.camera = null; }
  local.micMuted = $('join-mic-off').checked;
  if (local.mic) local.mic.enabled = !local.micMuted;
  clearInterval(meterTimer);
  $('prejoin').hidden = true;
  $('left').hidden = true;
  $('meeting').hidden = false;
  updateControls();
  signalling = new Signalling(meetingId, name, credentials);
  signalling.addEventListener('refused', (e) => {
    // Back to the pre-join screen, saying why.
    const msg = /** @type {CustomEvent} */ (e).detail;
    signalling = null;
    $('meeting').hidden = true;
    $('prejoin').hidden = false;
    $('join-error').textContent = serverError(msg);
    $('join-error').hidden = false;
    if (msg.code === 'wrong-passcode') $('passcode').focus();
    startMeter();
  });
  signalling.addEventListener('message', (e) => onMessage(/** @type {CustomEvent} */ (e).detail));
  signalling.addEventListener('lost', () => {
    // After `restarting` the socket closes on purpose: say why, not "lost".
    setStatus(serverRestarting ? t('status.restarting') : t('status.lost'), true);
    call?.close();
    call = null;
  });
  signalling.connect();
}

function localTrack(source) {
  if (source === 'microphone') return local.mic;
  if (source === 'camera') return local.camera;
  if (source === 'screen') return local.screen?.getVideoTracks()[0] || null;
  if (source === 'screen-audio') return local.screen?.getAudioTracks()[0] || null;
  return null;
}

/** Sources we publish now (sent after every welcome, so a resume restores them). */
function localSources() {
  const s = [];
  if (local.mic) s.push('microphone');
  if (local.camera && local.cameraOn) s.push('camera');
  if (local.screen?.getVideoTracks()[0]) s.push('screen');
  if (local.screen?.getAudioTracks()[0]) s.push('screen-audio');
  return s;
}

function send(msg) { signalling?.send(msg); }

function onMessage(msg) {
  switch (msg.type) {
    case 'welcome': {
      $('lobby').hidden = true;
      $('meeting').hidden = false;
      me = msg.participantId;
      meetingLocked = msg.meeting.locked;
      meetingPasscode = !!msg.meeting.passcode;
      showLevel(msg.meeting.level);
      permissions = msg.permissions;
      settings = msg.settings;
      participants.clear();
      for (const p of msg.participants) participants.set(p.id, p);
      call?.close();
      call = new Call(send, localTrack, msg.iceServers);
      call.addEventListener('tracks', render);
      call.addEventListener('state', (e) => {
        const state = /** @type {CustomEvent} */ (e).detail;
        if (state === 'failed') signalling?.reconnect();
        // The network may have changed under both: is the socket still there?
        else if (state === 'disconnected') signalling?.check();
      });
      const mine = participants.get(me)?.sources || [];
      const want = localSources();
      for (const s of mine) if (!want.includes(s)) send({ type: 'unpublish', source: s });
      for (const s of want) send({ type: 'publish', source: s });
      if (local.micMuted && want.includes('microphone')) send({ type: 'mute', source: 'microphone', muted: true });
      updateControls();
      $('chat-log').replaceChildren();
      for (const m of msg.chat) addChat(m);
      serverRestarting = false;
      setStatus('');
      render();
      sizes.reset();
      quality.reset();
      break;
    }
    case 'roster':
      for (const p of msg.participants) participants.set(p.id, p);
      render();
      break;
    case 'chat-history':
      for (const m of msg.messages) addChat(m);
      break;
    case 'participant-joined':
    case 'participant-updated':
      noteHand(participants.get(msg.participant.id), msg.participant);
      participants.set(msg.participant.id, msg.participant);
      // A source that is gone cannot be speaking (its last "speaking: false" may not come).
      if (!msg.participant.sources.includes('microphone')) speaking.delete(msg.participant.id);
      render();
      break;
    case 'participant-left':
      participants.delete(msg.participantId);
      speaking.delete(msg.participantId);
      quality.forget(msg.participantId);
      render();
      break;
    case 'offer':
      call?.handleOffer(msg.sdp, msg.tracks);
      break;
    case 'ice-servers':
      call?.setIceServers(msg.iceServers);
      break;
    case 'video-layers':
      call?.setLayers(msg.source, msg.active);
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
      call?.close();
      call = null;
      $('prejoin').hidden = true;
      $('meeting').hidden = true;
      $('lobby').hidden = false;
      $('lobby-message').textContent = msg.hostPresent ? t('lobby.host-present') : t('lobby.no-host');
      break;
    case 'lobby-updated':
      renderLobby(msg.waiting);
      break;
    case 'denied':
      $('lobby').hidden = true;
      endSession(t('left.denied-title'), t('left.denied'));
      break;
    case 'notice':
      setStatus(noticeText(msg.text), true);
      break;
    case 'meeting-updated':
      meetingLocked = msg.meeting.locked;
      meetingPasscode = !!msg.meeting.passcode;
      showLevel(msg.meeting.level);
      renderPeople();
      break;
    case 'permissions':
      permissions = msg.permissions;
      updateControls();
      renderPeople();
      break;
    case 'settings-updated':
      settings = msg.settings;
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
        ? t('left.removed-level', { name: msg.by, reason: removalReason(msg.reason) })
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
      addChat(msg.message);
      if ($('chat-panel').hidden) { unreadChat++; updateControls(); }
      break;
    case 'reaction': {
      const p = participants.get(msg.participantId);
      showReaction($('grid').querySelector(`.tile[data-key="${CSS.escape(msg.participantId)}"]`), msg.reaction);
      // In a large meeting reactions are only seen: read out, they would drown everything else.
      if (p && participants.size < LARGE_MEETING) {
        announcer.say(t('announce.reaction', { name: msg.participantId === me ? t('announce.you') : p.name, reaction: reactionName(msg.reaction) }));
      }
      break;
    }
    case 'speaking':
      if (msg.speaking) speaking.add(msg.participantId); else speaking.delete(msg.participantId);
      for (const tile of document.querySelectorAll(`.tile[data-id="${CSS.escape(msg.participantId)}"]`)) {
        tile.classList.toggle('speaking', msg.speaking);
      }
      break;
    case 'error':
      console.warn('server:', msg.code, msg.message);
      // A refused level change: the picker goes back to the level the meeting has.
      $('level-select').value = currentLevel;
      if (msg.code === 'meeting-full') { signalling?.leave(); showLeft(t('left.title'), t('left.full')); }
      else if (msg.code === 'ended') endSession(t('left.ended'), '');
      else if (msg.code === 'lobby-timeout') { $('lobby').hidden = true; finish(serverError(msg), true); }
      else if (msg.code === 'policy') setStatus(policyRefusal(msg), true);
      else setStatus(serverError(msg), true);
      break;
  }
}

/** A `policy` refusal: each unmet requirement in the page's language, as far as the client can tell which. */
function policyRefusal(msg) {
  if (lang === 'en') return serverError(msg);
  const keep = /^(.+) requires a passcode: it can be changed, not removed$/.exec(msg.message || '');
  if (keep) return t('error.passcode-kept', { level: keep[1] });
  const level = levels.find((l) => l.id === policyAsk?.level);
  if (!level || !policyAsk) return serverError(msg);
  const words = unmetWords(level, policyAsk.settings || settings, meetingPasscode, policyAsk.raised);
  return words.length ? t('error.policy-unmet', { list: words.join('; ') }) : serverError(msg);
}

function setStatus(text, warn = false) {
  $('status').textContent = text;
  $('status').classList.toggle('warn', warn);
}

/** Keep one <video> per stream and only touch it when its track changes. */
function setVideo(container, track, cls) {
  let video = container.querySelector('video');
  if (!track) { video?.remove(); return null; }
  if (!video) {
    video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // audio plays from the audio sink
    if (cls) video.className = cls;
    container.prepend(video);
    video.addEventListener('loadeddata', reportFirstFrame, { once: true });
  }
  if (video.srcObject?.getVideoTracks()[0] !== track) video.srcObject = new MediaStream([track]);
  return video;
}

function reportFirstFrame() {
  if (firstFrameReported || !joinClickedAt) return;
  firstFrameReported = true;
  const ms = Math.round(performance.now() - joinClickedAt);
  // Read by the end-to-end tests for BENCHMARKS.md.
  /** @type {any} */ (window).conveneJoinToFirstFrameMs = ms;
  console.info(`first remote frame ${ms} ms after Join`);
}

function tileFor(container, id, key) {
  let tile = container.querySelector(`.tile[data-key="${CSS.escape(key)}"]`);
  if (!tile) {
    tile = document.createElement('div');
    tile.className = 'tile';
    tile.dataset.key = key;
    tile.dataset.id = id;
    tile.setAttribute('role', 'group');
    const avatar = document.createElement('div');
    avatar.className = 'avatar';
    avatar.setAttribute('aria-hidden', 'true');
    const label = document.createElement('div');
    label.className = 'label';
    tile.append(avatar, label);
    container.append(tile);
  }
  return tile;
}

function render() {
  const remote = call?.remoteTracks() || new Map();
  const grid = $('grid');
  const stage = $('stage');
  const seen = new Set();
  const seenStage = new Set();
  for (const [id, p] of participants) {
    const isMe = id === me;
    const tile = tileFor(grid, id, id);
    // What the tile shows, or will once its media comes (sizes.js tells the server).
    tile.dataset.source = p.sources.includes('camera') ? 'camera' : '';
    seen.add(id);
    tile.classList.toggle('self', isMe);
    tile.classList.toggle('away', !p.connected);
    tile.classList.toggle('speaking', speaking.has(id));
    const micMuted = p.muted.includes('microphone') || !p.sources.includes('microphone');
    const name = isMe ? `${p.name} ${t('tile.you')}` : p.name;
    const state = [p.hand != null ? t('people.hand') : '', micMuted ? t('people.mic-off') : '', p.connected ? '' : t('people.reconnecting')].filter(Boolean).join(', ');
    tile.classList.toggle('hand-up', p.hand != null);
    const verified = describe(p.identity);
    const tags = [isMe ? ` ${t('tile.you')}` : '', state ? ` · ${state}` : ''].join('');
    const hand = document.createElement('span');
    hand.className = 'hand-icon';
    hand.setAttribute('aria-hidden', 'true');
    hand.textContent = '✋';
    tile.querySelector('.label').replaceChildren(...(p.hand != null ? [hand] : []), nameText(p.name), ...(tags ? [tagText(tags)] : []), badge(p.identity));
    tile.setAttribute('aria-label', `${name}, ${verified}${state ? `, ${state}` : ''}`);
    tile.querySelector('.avatar').textContent = p.name.slice(0, 1).toUpperCase();
    const camTrack = isMe ? (local.cameraOn ? local.camera : null) : (p.sources.includes('camera') ? remote.get(id)?.get('camera') : null);
    tile.querySelector('.avatar').hidden = !!setVideo(tile, camTrack || null, '');
    const screenTrack = isMe ? localTrack('screen') : (p.sources.includes('screen') ? remote.get(id)?.get('screen') : null);
    if (screenTrack) {
      const st = tileFor(stage, id, `${id}-screen`);
      st.dataset.source = 'screen';
      seenStage.add(`${id}-screen`);
      const label = isMe ? t('tile.you-sharing') : t('tile.sharing', { name: p.name });
      st.querySelector('.label').textContent = label;
      st.setAttribute('aria-label', label);
      st.querySelector('.avatar').hidden = true;
      setVideo(st, screenTrack, '');
    }
    if (!isMe) playScreenAudio(id, remote.get(id));
  }
  for (const t of [...grid.querySelectorAll('.tile')]) if (!seen.has(t.dataset.key)) t.remove();
  for (const t of [...stage.querySelectorAll('.tile')]) if (!seenStage.has(t.dataset.key)) t.remove();
  playVoices(call?.voiceTracks() || []);
  for (const a of [...$('audio-sink').querySelectorAll('audio:not([data-voice])')]) if (!participants.has(a.dataset.id)) a.remove();
  stage.hidden = seenStage.size === 0;
  quality.apply();
  renderPeople();
}

/**
 * Announce a hand going up (in a large meeting, to hosts only), and our own
 * hand lowered by a host.
 */
function noteHand(before, after) {
  const up = before?.hand == null && after.hand != null;
  const down = before?.hand != null && after.hand == null;
  if (up && after.id !== me && (participants.size < LARGE_MEETING || amHost())) {
    announcer.say(t('announce.hand-up', { name: after.name }));
  }
  if (down && after.id === me && !loweringOwnHand) announcer.say(t('announce.hand-lowered'));
  if (after.id === me && after.hand == null) loweringOwnHand = false;
}

/** Microphones arrive on a few voice slots, whoever is talking; play each slot. */
function playVoices(voices) {
  const sink = $('audio-sink');
  const mids = new Set(voices.map((v) => v.mid));
  for (const a of [...sink.querySelectorAll('audio[data-voice]')]) if (!mids.has(a.dataset.voice)) a.remove();
  for (const { mid, track } of voices) {
    playInSink(`audio[data-voice="${CSS.escape(mid)}"]`, (data) => { data.voice = mid; }, track);
  }
}

/** A shared screen's sound has an m-line of its own (it does not compete for voice slots). */
function playScreenAudio(id, tracks) {
  const key = `${id}-screen-audio`;
  const selector = `audio[data-key="${CSS.escape(key)}"]`;
  const track = tracks?.get('screen-audio');
  if (!track) { $('audio-sink').querySelector(selector)?.remove(); return; }
  playInSink(selector, (data) => { data.key = key; data.id = id; }, track);
}

/** Play `track` on the audio sink's element matching `selector`; a missing one is
 * made, its data attributes set by `label`. */
function playInSink(selector, label, track) {
  const sink = $('audio-sink');
  let el = sink.querySelector(selector);
  if (!el) {
    el = document.createElement('audio');
    el.autoplay = true;
    label(el.dataset);
    sink.append(el);
  }
  if (el.srcObject?.getAudioTracks()[0] !== track) el.srcObject = new MediaStream([track]);
}

/**
 * A name someone typed, in an element of its own, isolated from the text
 * around it: what Convene says about them (you, their role, their state, their
 * identity badge) goes in separate elements, never in the same text.
 * @param {string} name
 */
function nameText(name) {
  const el = document.createElement('bdi');
  el.className = 'name';
  el.textContent = name;
  return el;
}

/** What Convene says about someone, beside their name. @param {string} text */
function tagText(text) {
  const el = document.createElement('span');
  el.className = 'tags';
  el.textContent = text;
  return el;
}

/** Hosts see who waits, with admit and deny for each. */
function renderLobby(waiting) {
  const list = $('lobby-list');
  list.replaceChildren();
  for (const w of waiting) {
    const li = document.createElement('li');
    const label = document.createElement('span');
    label.append(nameText(w.name), badge(w.identity));
    li.append(label,
      personButton(t('lobby.admit'), t('lobby.admit-name', { name: w.name }), () => send({ type: 'admit', participantId: w.id })),
      personButton(t('lobby.deny'), t('lobby.deny-name', { name: w.name }), () => send({ type: 'deny', participantId: w.id })));
    list.append(li);
  }
  $('lobby-heading').textContent = t('lobby.heading', { count: waiting.length });
  $('lobby-panel').hidden = waiting.length === 0;
  $('side').hidden = $('people-panel').hidden && $('chat-panel').hidden && $('lobby-panel').hidden;
  setStatus(waiting.length ? t('status.waiting', { count: waiting.length }) : '', waiting.length > 0);
}

function amHost() {
  const role = participants.get(me)?.role;
  return role === 'host' || role === 'co-host';
}

/** A small button in a person's row of the participant list. */
function personButton(label, accessibleName, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.setAttribute('aria-label', accessibleName);
  b.addEventListener('click', onClick);
  return b;
}

/** How each media path is shown to hosts in People (message ids). */
const MEDIA_PATH_WORDS = /** @type {Record<string, string>} */ ({
  udp: 'people.path-udp',
  tcp: 'people.path-tcp',
  relay: 'people.path-relay',
});
/** Roles in People's words (message ids). */
const ROLE_WORDS = /** @type {Record<string, string>} */ ({ host: 'people.is-host', 'co-host': 'people.is-co-host' });

function renderPeople() {
  const list = $('people');
  list.replaceChildren();
  $('host-controls').hidden = !amHost();
  $('locked-badge').hidden = !meetingLocked;
  $('lock-btn').textContent = t(meetingLocked ? 'host.unlock' : 'host.lock');
  $('lock-btn').setAttribute('aria-pressed', String(meetingLocked));
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
    const myRole = participants.get(me)?.role;
    if (amHost() && id !== me && (p.role !== 'host' || myRole === 'host')) {
      li.append(roleSelect(id, p, myRole === 'host'));
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
  renderHands();
}

/** The raised hands, in order, for hosts (with a button to lower each); the count; the hint when alone; our hand button. */
function renderHands() {
  const queue = handQueue(participants);
  const host = amHost();
  $('hands').replaceChildren(...queue.map(([id, p]) => {
    const li = document.createElement('li');
    li.dataset.id = id;
    const label = document.createElement('span');
    label.append(nameText(p.name), ...(id === me ? [tagText(` ${t('tile.you')}`)] : []), badge(p.identity));
    li.append(label, personButton(t('hands.lower'), t('hands.lower-name', { name: p.name }), () => send({ type: 'lower-hand', participantId: id })));
    return li;
  }));
  $('hands-heading').textContent = t('hands.heading', { count: queue.length });
  $('hands-panel').hidden = !host || queue.length === 0;
  $('people-count').textContent = t('meeting.count', { count: participants.size });
  $('alone').hidden = participants.size !== 1;
  const raised = participants.get(me)?.hand != null;
  const btn = $('hand-btn');
  btn.textContent = t(raised ? 'controls.lower-hand' : 'controls.raise-hand');
  btn.setAttribute('aria-pressed', String(raised));
  btn.title = shortcutTitle('Alt+Shift+H');
}

/** A role picker for one person (hosts only). */
function roleSelect(id, p, canMakeHost) {
  const select = document.createElement('select');
  select.setAttribute('aria-label', t('people.role-of', { name: p.name }));
  const roles = [['participant', t('role.participant')], ['presenter', t('role.presenter')], ['co-host', t('role.co-host')]];
  if (canMakeHost) roles.push(['host', t('role.host')]);
  for (const [value, label] of roles) select.add(new Option(label, value, false, p.role === value));
  select.addEventListener('change', () => send({ type: 'set-role', participantId: id, role: select.value }));
  return select;
}

function openSettings() {
  if (!settings) return;
  $('set-lobby').checked = settings.lobby;
  $('set-screen').value = settings.screenShare;
  $('set-unmute').value = settings.unmute;
  $('set-chat').value = settings.chat;
  $('set-cameras').checked = settings.guestCameras;
  $('set-max').value = String(settings.maxParticipants);
  $('set-bypass').value = settings.lobbyBypass;
  $('set-guests').checked = settings.guestsAllowed;
  $('set-mfa').checked = settings.requireMfa;
  showPasscodeSetting(meetingPasscode);
  $('settings-dialog').showModal();
}

function addChat(m) {
  const li = document.createElement('li');
  const who = document.createElement('span');
  who.className = 'who';
  who.append(nameText(m.name), ...(m.participantId === me ? [tagText(` ${t('tile.you')}`)] : []), badge(m.identity));
  const time = document.createElement('time');
  const at = new Date(m.sentAt);
  time.dateTime = at.toISOString();
  time.textContent = formatTime(at);
  const text = document.createElement('div');
  text.textContent = m.text;
  li.append(who, time, text);
  $('chat-log').append(li);
  li.scrollIntoView({ block: 'end' });
}

/** Turn a control off (or on) and say why next to it; `title` shows when it is on. */
function restrict(el, reason, title = '') {
  el.disabled = !!reason;
  el.title = reason || title;
  if (reason) el.setAttribute('aria-describedby', 'restrictions'); else el.removeAttribute('aria-describedby');
}

function updateControls() {
  const mic = $('mic-btn');
  // Muting is always allowed; unmuting may not be, after a host mute.
  restrict(mic, !local.mic ? t('controls.no-mic') : local.micMuted ? reasonText(permissions.unmute) : null, shortcutTitle('Alt+Shift+M'));
  mic.textContent = t(local.micMuted ? 'controls.unmute' : 'controls.mute');
  mic.setAttribute('aria-pressed', String(local.micMuted));
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
  const reasons = [
    [t('restrictions.unmute'), local.micMuted ? reasonText(permissions.unmute) : null],
    [t('restrictions.camera'), local.cameraOn ? null : reasonText(permissions.camera)],
    [t('restrictions.share'), local.screen ? null : reasonText(permissions.screenShare)],
    [t('restrictions.chat'), chatWhy],
  ].filter(([, why]) => why);
  $('restrictions').replaceChildren(...reasons.map(([what, why]) => {
    const li = document.createElement('li');
    li.textContent = t('restrictions.item', { what: what || '', why: why || '' });
    return li;
  }));
  $('restrictions').hidden = reasons.length === 0;
  $('chat-badge').hidden = unreadChat === 0;
  $('chat-badge').textContent = unreadChat ? t('chat.new', { count: unreadChat }) : '';
}

function toggleReactions() {
  const bar = $('reactions');
  bar.hidden = !bar.hidden;
  $('react-btn').setAttribute('aria-expanded', String(!bar.hidden));
  if (!bar.hidden) bar.querySelector('button')?.focus();
}

function togglePanel(panelId, buttonId) {
  const panel = $(panelId);
  panel.hidden = !panel.hidden;
  $(buttonId).setAttribute('aria-expanded', String(!panel.hidden));
  $('side').hidden = $('people-panel').hidden && $('chat-panel').hidden && $('lobby-panel').hidden;
  if (panelId === 'chat-panel' && !panel.hidden) {
    unreadChat = 0;
    updateControls();
    $('chat-input').focus();
  }
}

async function toggleCamera() {
  if (local.cameraOn) {
    local.cameraOn = false;
    local.camera?.stop();
    local.camera = null;
    send({ type: 'unpublish', source: 'camera' });
  } else {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: CAMERA });
      local.camera = stream.getVideoTracks()[0];
      local.cameraOn = true;
      send({ type: 'publish', source: 'camera' });
    } catch (e) {
      setStatus(t('status.camera-failed', { detail: e instanceof Error ? e.message : String(e) }), true);
    }
  }
  updateControls();
  render();
}

async function toggleShare() {
  if (local.screen) { stopShare(); return; }
  try {
    local.screen = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: true });
  } catch (e) {
    if (!(e instanceof DOMException && e.name === 'NotAllowedError')) setStatus(t('status.share-failed', { detail: e instanceof Error ? e.message : String(e) }), true);
    return;
  }
  local.screen.getVideoTracks()[0]?.addEventListener('ended', () => stopShare());
  send({ type: 'publish', source: 'screen' });
  if (local.screen.getAudioTracks()[0]) send({ type: 'publish', source: 'screen-audio' });
  updateControls();
  render();
}

/** @param {boolean} [tellServer] false when the server stopped it already */
function stopShare(tellServer = true) {
  if (!local.screen) return;
  const hadAudio = local.screen.getAudioTracks().length > 0;
  for (const t of local.screen.getTracks()) t.stop();
  local.screen = null;
  if (tellServer) {
    send({ type: 'unpublish', source: 'screen' });
    if (hadAudio) send({ type: 'unpublish', source: 'screen-audio' });
  }
  updateControls();
  render();
}

/** Stop all media and show the "left" screen, headed `title`. */
function finish(reason, canRejoin, title = t('left.title')) {
  signalling = null;
  call?.close();
  call = null;
  clearInterval(meterTimer);
  local.mic?.stop();
  local.camera?.stop();
  stopShare();
  showLeft(title, reason);
  $('rejoin').hidden = !canRejoin;
}

/** The server ended our part in the meeting (removed, denied, or the meeting ended). */
function endSession(title, reason) {
  finish(reason, false, title);
}

function leave() {
  signalling?.leave();
  finish('', true);
}

function showLeft(title, reason) {
  $('prejoin').hidden = true;
  $('lobby').hidden = true;
  $('meeting').hidden = true;
  $('left').hidden = false;
  $('left-title').textContent = title;
  $('left-reason').textContent = reason;
  $('rejoin').focus();
}

function wireControls() {
  $('mic-btn').addEventListener('click', () => {
    if (!local.mic) return;
    local.micMuted = !local.micMuted;
    local.mic.enabled = !local.micMuted;
    send({ type: 'mute', source: 'microphone', muted: local.micMuted });
    updateControls();
  });
  $('cam-btn').addEventListener('click', toggleCamera);
  $('share-btn').addEventListener('click', toggleShare);
  $('people-btn').addEventListener('click', () => togglePanel('people-panel', 'people-btn'));
  $('chat-btn').addEventListener('click', () => togglePanel('chat-panel', 'chat-btn'));
  $('leave-btn').addEventListener('click', leave);
  $('hand-btn').addEventListener('click', () => {
    const raised = participants.get(me)?.hand != null;
    loweringOwnHand = raised;
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
  $('lock-btn').addEventListener('click', () => send({ type: 'lock', locked: !meetingLocked }));
  $('admit-all').addEventListener('click', () => send({ type: 'admit-all' }));
  $('mute-all-btn').addEventListener('click', () => send({ type: 'mute-all' }));
  $('settings-btn').addEventListener('click', openSettings);
  $('invite-btn').addEventListener('click', async () => {
    await showInvitation(meetingId).catch(() => {});
    $('invite-dialog').showModal();
  });
  $('invite-close').addEventListener('click', () => $('invite-dialog').close());
  $('level-btn').addEventListener('click', changeLevel);
  $('settings-cancel').addEventListener('click', () => $('settings-dialog').close());
  $('settings-form').addEventListener('submit', () => {
    const asked = {
      type: 'update-settings',
      settings: {
        lobby: $('set-lobby').checked,
        screenShare: $('set-screen').value,
        unmute: $('set-unmute').value,
        chat: $('set-chat').value,
        guestCameras: $('set-cameras').checked,
        maxParticipants: Number($('set-max').value),
        lobbyBypass: $('set-bypass').value,
        guestsAllowed: $('set-guests').checked,
        requireMfa: $('set-mfa').checked,
      },
    };
    policyAsk = { level: currentLevel, settings: asked.settings, raised: false };
    send(asked);
    const passcode = passcodeChange();
    if (passcode) send(passcode);
  });
  $('remove-cancel').addEventListener('click', () => $('remove-dialog').close());
  $('remove-form').addEventListener('submit', () => {
    send({ type: 'remove', participantId: removing.id, bar: $('remove-bar').checked });
  });
  $('lobby-leave').addEventListener('click', () => { $('lobby').hidden = true; leave(); });
  $('end-btn').addEventListener('click', () => {
    if (confirm(t('host.end-confirm'))) send({ type: 'end' });
  });
  $('rejoin').addEventListener('click', () => location.reload());
  $('chat-form').addEventListener('submit', (/** @type {Event} */ e) => {
    e.preventDefault();
    const text = $('chat-input').value.trim();
    if (!text) return;
    send({ type: 'chat', text });
    $('chat-input').value = '';
  });
}

/**
 * When the video area scrolls (a phone with a panel open, many tiles), it can
 * be scrolled from the keyboard: it takes focus then, and only then (axe
 * `scrollable-region-focusable`).
 */
function keyboardScrolling() {
  const area = /** @type {HTMLElement} */ (document.querySelector('.stage-area'));
  const fit = () => {
    const scrolls = area.scrollHeight > area.clientHeight + 1 || area.scrollWidth > area.clientWidth + 1;
    if (scrolls) area.tabIndex = 0; else area.removeAttribute('tabindex');
  };
  const watch = new ResizeObserver(fit);
  watch.observe(area);
  watch.observe($('grid'));
  watch.observe($('stage'));
}

wireControls();
keyboardScrolling();
loadMeeting().then(loadLevels);
setupPrejoin();
