// Everyone else's sound: the voice slots and shared screens' sound, each on an
// <audio> element of the page's audio sink, on the speaker chosen.
import { $, state } from './meeting-state.js';
import { local, canChooseSpeaker } from './devices.js';

/** Microphones arrive on a few voice slots, whoever is talking; play each slot. @param {{mid: string, track: MediaStreamTrack}[]} voices */
export function playVoices(voices) {
  const sink = $('audio-sink');
  const mids = new Set(voices.map((v) => v.mid));
  for (const a of [...sink.querySelectorAll('audio[data-voice]')]) if (!mids.has(a.dataset.voice)) a.remove();
  for (const { mid, track } of voices) {
    playInSink(`audio[data-voice="${CSS.escape(mid)}"]`, (data) => { data.voice = mid; }, track);
  }
}

/**
 * A shared screen's sound has an m-line of its own (it does not compete for voice slots).
 * @param {string} id @param {Map<string, MediaStreamTrack> | undefined} tracks
 */
export function playScreenAudio(id, tracks) {
  const key = `${id}-screen-audio`;
  const selector = `audio[data-key="${CSS.escape(key)}"]`;
  const track = tracks?.get('screen-audio');
  if (!track) { $('audio-sink').querySelector(selector)?.remove(); return; }
  playInSink(selector, (data) => { data.key = key; data.id = id; }, track);
}

/** Screen sound of people no longer here. */
export function dropGone() {
  for (const a of [...$('audio-sink').querySelectorAll('audio:not([data-voice])')]) if (!state.participants.has(a.dataset.id)) a.remove();
}

/**
 * Play `track` on the audio sink's element matching `selector`; a missing one is
 * made, its data attributes set by `label`.
 * @param {string} selector @param {(data: DOMStringMap) => void} label @param {MediaStreamTrack} track
 */
function playInSink(selector, label, track) {
  const sink = $('audio-sink');
  let el = sink.querySelector(selector);
  if (!el) {
    el = document.createElement('audio');
    el.autoplay = true;
    label(el.dataset);
    if (canChooseSpeaker && local.speakerId) el.setSinkId(local.speakerId).catch(() => {});
    sink.append(el);
  }
  if (el.srcObject?.getAudioTracks()[0] !== track) el.srcObject = new MediaStream([track]);
}
