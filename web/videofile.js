// Sharing a video file (issue 20): whoever may share their screen picks an
// MP4 or WebM file; this browser plays it and sends what it plays as its
// shared screen, with the file's sound as the screen's sound (sources `screen`
// and `screen-audio`, the path a screen share takes), so everyone sees it in
// the presentation layout at the file's own quality rather than a capture of
// a screen. The sharer hears it from the page, and may pause, play and stop.
import { t } from './i18n.js';
import { $, state, send, hooks } from './meeting-state.js';
import { local } from './devices.js';
import { reasonText } from './errors.js';

/** The file being shared: the element that plays it, its object URL, and the local monitor (Firefox). */
/** @type {{video: HTMLVideoElement, url: string, monitor: HTMLAudioElement | null, name: string} | null} */
let playing = null;

/** The element's captureStream, where the browser has one (Firefox: mozCaptureStream, which takes the sound from the element). */
function capture(/** @type {HTMLVideoElement} */ video) {
  const v = /** @type {any} */ (video);
  if (typeof v.captureStream === 'function') return { stream: /** @type {MediaStream} */ (v.captureStream()), moz: false };
  if (typeof v.mozCaptureStream === 'function') return { stream: /** @type {MediaStream} */ (v.mozCaptureStream()), moz: true };
  return null;
}

/** This browser can send a playing video: HTMLMediaElement.captureStream. */
export const canShareFile = typeof (/** @type {any} */ (HTMLMediaElement.prototype).captureStream) === 'function'
  || typeof (/** @type {any} */ (HTMLMediaElement.prototype).mozCaptureStream) === 'function';

/**
 * Play the file and share it. The tracks exist once the element plays;
 * sharing starts then.
 * @param {File} file
 */
async function shareFile(file) {
  if (local.screen) return;
  const video = document.createElement('video');
  video.playsInline = true;
  video.className = 'video-file-preview';
  // The stage's own tile shows it: this one is for playing only.
  video.setAttribute('aria-hidden', 'true');
  const url = URL.createObjectURL(file);
  // The file plays from a blob: URL, which the page's Content-Security-Policy
  // must allow (media-src blob:); a server that does not is said so plainly.
  let refused = false;
  const policy = (/** @type {SecurityPolicyViolationEvent} */ e) => { if (e.effectiveDirective === 'media-src' || e.blockedURI.startsWith('blob')) refused = true; };
  document.addEventListener('securitypolicyviolation', policy);
  video.src = url;
  $('video-file-player').replaceChildren(video);
  playing = { video, url, monitor: null, name: file.name };
  try {
    await video.play();
  } catch (e) {
    await new Promise((r) => setTimeout(r, 50));
    cleanUp();
    hooks.setStatus(refused ? t('video-file.blocked') : t('video-file.failed', { detail: e instanceof Error ? e.message : String(e) }), true);
    return;
  } finally {
    document.removeEventListener('securitypolicyviolation', policy);
  }
  const got = capture(video);
  // Tracks come with the first frames (and a file's sound only if it has one).
  const stream = got?.stream;
  if (stream && !stream.getVideoTracks().length) {
    await new Promise((ok) => {
      const done = () => ok(undefined);
      stream.addEventListener('addtrack', done, { once: true });
      setTimeout(done, 2000);
    });
  }
  const videoTrack = stream?.getVideoTracks()[0];
  if (!got || !stream || !videoTrack || playing?.video !== video) {
    if (playing?.video === video) {
      cleanUp();
      hooks.setStatus(t('video-file.failed', { detail: t('video-file.no-video') }), true);
    }
    return;
  }
  // Moving pictures: smooth motion rather than sharp text (a screen's 'detail').
  videoTrack.contentHint = 'motion';
  const audioTrack = stream.getAudioTracks()[0];
  // Firefox's capture takes the sound away from the element: the sharer hears it from a monitor of their own.
  if (got.moz && audioTrack) {
    const monitor = document.createElement('audio');
    monitor.autoplay = true;
    monitor.srcObject = new MediaStream([audioTrack]);
    $('video-file-player').append(monitor);
    playing.monitor = monitor;
  }
  local.screen = new MediaStream(audioTrack ? [videoTrack, audioTrack] : [videoTrack]);
  local.screenCleanup = cleanUp;
  send({ type: 'publish', source: 'screen' });
  if (audioTrack) send({ type: 'publish', source: 'screen-audio' });
  // At the end of the file the share ends, as a screen share does when its window goes.
  video.addEventListener('ended', () => {
    if (playing?.video !== video) return;
    hooks.stopShare();
    hooks.setStatus(t('video-file.ended', { name: file.name }));
  });
  hooks.setStatus(t('video-file.sharing', { name: file.name }));
  const focusWasOn = document.activeElement;
  hooks.updateControls();
  hooks.render();
  // The button that chose the file is gone for now: focus goes to Pause beside it.
  if (!focusWasOn || focusWasOn === document.body || focusWasOn === $('video-file-btn')) $('video-file-play').focus();
}

/** The file's player goes (the share stopped: by its sharer, a host, the file's end or leaving). */
function cleanUp() {
  if (!playing) return;
  playing.video.pause();
  playing.video.removeAttribute('src');
  playing.video.load();
  URL.revokeObjectURL(playing.url);
  playing.monitor?.remove();
  playing = null;
  $('video-file-player').replaceChildren();
  if (local.screenCleanup === cleanUp) local.screenCleanup = null;
  renderVideoFile();
}

/** The "Share a video file" button, and the sharer's play/pause and stop. */
export function renderVideoFile() {
  const btn = $('video-file-btn');
  const why = !canShareFile ? t('video-file.unsupported') : local.screen ? null : reasonText(state.permissions.screenShare);
  btn.disabled = !!why || !!local.screen;
  btn.title = why || '';
  if (why) btn.setAttribute('aria-describedby', 'restrictions'); else btn.removeAttribute('aria-describedby');
  btn.hidden = !!playing;
  $('video-file-bar').hidden = !playing;
  if (playing) {
    $('video-file-name').textContent = t('video-file.now', { name: playing.name });
    const paused = playing.video.paused;
    $('video-file-play').textContent = t(paused ? 'video-file.play' : 'video-file.pause');
  }
}

export function wireVideoFile() {
  $('video-file-btn').addEventListener('click', () => $('video-file-input').click());
  $('video-file-input').addEventListener('change', () => {
    const file = $('video-file-input').files?.[0];
    $('video-file-input').value = '';
    if (file) shareFile(file);
  });
  $('video-file-play').addEventListener('click', () => {
    if (!playing) return;
    if (playing.video.paused) playing.video.play().catch(() => {}); else playing.video.pause();
  });
  $('video-file-stop').addEventListener('click', () => {
    hooks.stopShare();
    $('video-file-btn').focus();
  });
  // The button says what pressing it does next.
  for (const type of ['play', 'pause']) $('video-file-player').addEventListener(type, renderVideoFile, true);
}
