// What this browser captures and plays: the camera, microphone and shared
// screen we send, the pickers that choose them (before joining and during the
// meeting, without leaving), the microphone level meter, and the speaker
// that plays everyone else.
import { t } from './i18n.js';
import { $, state } from './meeting-state.js';

/** Cameras are asked for at 720p: simulcast sends it in three sizes. */
export const CAMERA = { width: { ideal: 1280 }, height: { ideal: 720 } };

/** Local media: what this browser captures. */
export const local = {
  /** @type {MediaStreamTrack | null} */ mic: null,
  /** @type {MediaStreamTrack | null} */ camera: null,
  /** @type {MediaStream | null} */ screen: null,
  /** What lets go of a shared video file's player when its share stops (videofile.js); null for a screen. */
  /** @type {(() => void) | null} */ screenCleanup: null,
  micMuted: false,
  cameraOn: true,
  /** The camera, microphone and speaker chosen (empty: the browser's default). */
  cameraId: '',
  micId: '',
  speakerId: '',
};

/** Where the choices are remembered in this browser. */
const REMEMBER = { cameraId: 'convene-camera', micId: 'convene-microphone', speakerId: 'convene-speaker' };
for (const [key, item] of Object.entries(REMEMBER)) /** @type {any} */ (local)[key] = localStorage.getItem(item) || '';

/** @param {'cameraId' | 'micId' | 'speakerId'} key @param {string} id */
function remember(key, id) {
  local[key] = id;
  if (id) localStorage.setItem(REMEMBER[key], id); else localStorage.removeItem(REMEMBER[key]);
}

/**
 * A device by id: one chosen just now must be that one (`exact`); one
 * remembered from an earlier meeting may be gone (`ideal`: else the default).
 * @param {string} id @param {boolean} [exact]
 */
const wanted = (id, exact = false) => (id ? { deviceId: exact ? { exact: id } : { ideal: id } } : {});

/** Camera and microphone for the pre-join screen: the remembered ones where they are still there, or (`exact`) the ones just chosen. */
export async function getMedia(exact = false) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: local.micId ? wanted(local.micId, exact) : true,
    video: { ...CAMERA, ...wanted(local.cameraId, exact) },
  });
  if (state.meetingOver) {
    for (const tr of stream.getTracks()) tr.stop();
    return;
  }
  local.mic?.stop();
  local.camera?.stop();
  local.mic = stream.getAudioTracks()[0] || null;
  local.camera = stream.getVideoTracks()[0] || null;
  showPreview();
  startMeter();
}

/**
 * Camera and microphone for going on a webinar's stage (the remembered ones
 * where they are still there); the microphone alone when there is no camera.
 */
export async function captureStage() {
  const audio = local.micId ? wanted(local.micId) : true;
  try {
    return await navigator.mediaDevices.getUserMedia({ audio, video: { ...CAMERA, ...wanted(local.cameraId) } });
  } catch (e) {
    if (e instanceof DOMException && e.name === 'NotAllowedError') throw e;
    return navigator.mediaDevices.getUserMedia({ audio });
  }
}

/** A camera track from the chosen camera (turning the camera on, or switching it: `exact`). */
export async function openCamera(exact = false) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { ...CAMERA, ...wanted(local.cameraId, exact) } });
  return stream.getVideoTracks()[0];
}

export function showPreview() {
  const on = !!local.camera && !$('join-camera-off').checked;
  $('preview').srcObject = on ? new MediaStream([/** @type {MediaStreamTrack} */ (local.camera)]) : null;
  $('preview-off').hidden = on;
}

/** @type {AudioContext | null} */ let audioCtx = null;
let meterTimer = 0;
/** The microphone's level, on every meter shown (pre-join, and the devices dialog). */
export function startMeter() {
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
    const level = Math.min(1, Math.sqrt(sum / data.length) * 4);
    for (const meter of document.querySelectorAll('meter.mic-meter')) /** @type {HTMLMeterElement} */ (meter).value = level;
  }, 100);
}

export function stopMeter() { clearInterval(meterTimer); }

/** Whether this browser can choose where sound plays (Chromium; Firefox behind a permission). */
export const canChooseSpeaker = typeof (/** @type {any} */ (HTMLMediaElement.prototype).setSinkId) === 'function';

/**
 * Fill the device pickers (`[data-devices=videoinput|audioinput|audiooutput]`)
 * with what the browser has, the one in use selected.
 */
export async function fillDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const inUse = {
    videoinput: local.camera?.getSettings().deviceId || local.cameraId,
    audioinput: local.mic?.getSettings().deviceId || local.micId,
    audiooutput: local.speakerId,
  };
  const words = { videoinput: 'prejoin.camera-n', audioinput: 'prejoin.microphone-n', audiooutput: 'devices.speaker-n' };
  for (const select of /** @type {NodeListOf<HTMLSelectElement>} */ (document.querySelectorAll('select[data-devices]'))) {
    const kind = /** @type {'videoinput' | 'audioinput' | 'audiooutput'} */ (select.dataset.devices);
    const list = devices.filter((d) => d.kind === kind);
    const options = list.map((d, i) => new Option(d.label || t(words[kind], { n: i + 1 }), d.deviceId, false, d.deviceId === inUse[kind]));
    // The speaker: the system's default when nothing was chosen (it has no entry in every browser).
    if (kind === 'audiooutput' && !list.some((d) => d.deviceId === 'default')) options.unshift(new Option(t('devices.speaker-default'), '', false, !inUse.audiooutput));
    select.replaceChildren(...options);
    select.disabled = list.length === 0 || (kind === 'audiooutput' && !canChooseSpeaker);
  }
}

/** Pre-join: a new camera or microphone chosen; both are captured again for the preview. */
export async function chooseBeforeJoin(/** @type {string} */ cameraId, /** @type {string} */ micId) {
  remember('cameraId', cameraId);
  remember('micId', micId);
  await getMedia(true);
}

/**
 * In the meeting: switch the camera to another device without leaving. The
 * new track replaces the old one on the same sender (no renegotiation).
 * @param {string} deviceId
 */
export async function switchCamera(deviceId) {
  remember('cameraId', deviceId);
  if (!local.cameraOn) return; // used when the camera is next turned on
  let track;
  try {
    track = await openCamera(true);
  } catch (e) {
    // Some cameras cannot be open twice: let the old one go first, then try again.
    if (!(e instanceof DOMException && e.name === 'NotReadableError')) throw e;
    local.camera?.stop();
    track = await openCamera(true);
  }
  const old = local.camera;
  local.camera = track;
  await state.call?.replaceLocal('camera', track);
  old?.stop();
}

/**
 * In the meeting: switch the microphone without leaving; muted stays muted.
 * @param {string} deviceId
 */
export async function switchMicrophone(deviceId) {
  remember('micId', deviceId);
  // None in use (a webinar's attendee, or none could start): used when one is next captured.
  if (!local.mic) return;
  const stream = await navigator.mediaDevices.getUserMedia({ audio: wanted(deviceId, true) });
  const track = stream.getAudioTracks()[0];
  track.enabled = !local.micMuted;
  const old = local.mic;
  local.mic = track;
  await state.call?.replaceLocal('microphone', track);
  old?.stop();
  if (!$('devices-dialog').open) return;
  startMeter();
}

/**
 * Play everyone on another speaker (every audio element of the page, and any
 * made later: audio-out.js asks `speakerId`).
 * @param {string} deviceId empty: the system's default
 */
export async function switchSpeaker(deviceId) {
  if (!canChooseSpeaker) return;
  remember('speakerId', deviceId);
  await Promise.all([...document.querySelectorAll('audio')].map((a) => /** @type {any} */ (a).setSinkId(deviceId)));
}

/** The source's track we send now. @param {string} source */
export function localTrack(source) {
  if (source === 'microphone') return local.mic;
  if (source === 'camera') return local.camera;
  if (source === 'screen') return local.screen?.getVideoTracks()[0] || null;
  if (source === 'screen-audio') return local.screen?.getAudioTracks()[0] || null;
  return null;
}

/** Sources we publish now (sent after every welcome, so a resume restores them). */
export function localSources() {
  const s = [];
  if (local.mic) s.push('microphone');
  if (local.camera && local.cameraOn) s.push('camera');
  if (local.screen?.getVideoTracks()[0]) s.push('screen');
  if (local.screen?.getAudioTracks()[0]) s.push('screen-audio');
  return s;
}

/** Stop capturing everything (leaving, removed, ended). */
export function stopAll() {
  stopMeter();
  local.mic?.stop();
  local.camera?.stop();
}
