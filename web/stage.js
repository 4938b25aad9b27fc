// The stage: a tile for each person (their camera, or their initial), a tile
// for each shared screen, and the layout that places them: an automatic grid
// that fills the stage (up to 49 tiles a page, then pages), a speaker view
// (who speaks large, the others in a strip), a presentation view (the shared
// screen large, people beside it), a pinned person, and full screen. Tiles
// not on screen are hidden, so sizes.js tells the server not to send them.
import { t } from './i18n.js';
import { showTileBadge, describe } from './identity.js';
import { $, state, amAttendee } from './meeting-state.js';
import { local, localTrack } from './devices.js';
import { nameText, tagText } from './text.js';
import { gridCapacity, gridRects, focusRegions, stripRects } from './layouts.js';

/** @typedef {'auto' | 'grid' | 'speaker'} Mode */
const MODES = ['auto', 'grid', 'speaker'];

const view = {
  /** @type {Mode} */ mode: /** @type {Mode} */ (MODES.includes(localStorage.getItem('convene-layout') || '') ? localStorage.getItem('convene-layout') : 'auto'),
  /** The tile pinned large (a tile's key: a participant id, or `id-screen`); empty: none. */
  pinned: '',
  /** Which page of tiles shows (0 first). */
  page: 0,
  /** The last other person who started speaking (the speaker view shows them). */
  speaker: '',
};

let joinClickedAt = 0;
let firstFrameReported = false;

/** Join was clicked now: the first remote frame is timed from here. */
export function joinClicked() { joinClickedAt = performance.now(); }

/**
 * Keep one <video> per stream and only touch it when its track changes.
 * @param {HTMLElement} container @param {MediaStreamTrack | null} track
 */
function setVideo(container, track) {
  let video = /** @type {HTMLVideoElement | null} */ (container.querySelector('video'));
  if (!track) { video?.remove(); return null; }
  if (!video) {
    video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // audio plays from the audio sink
    container.prepend(video);
    video.addEventListener('loadeddata', reportFirstFrame, { once: true });
  }
  if (/** @type {MediaStream | null} */ (video.srcObject)?.getVideoTracks()[0] !== track) video.srcObject = new MediaStream([track]);
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

/** A small tool button on a tile (pin, full screen). @param {string} cls */
function toolButton(cls) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = cls;
  return b;
}

/** @param {HTMLElement} container @param {string} id whose @param {string} key which tile */
function tileFor(container, id, key) {
  let tile = /** @type {HTMLElement | null} */ (container.querySelector(`.tile[data-key="${CSS.escape(key)}"]`));
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
    // The name, and beside it the identity badge: kept apart, since the label
    // is drawn again on every change and a focused badge would lose its focus.
    const caption = document.createElement('div');
    caption.className = 'caption';
    const idHolder = document.createElement('span');
    idHolder.className = 'tile-id';
    caption.append(label, idHolder);
    const tools = document.createElement('div');
    tools.className = 'tile-tools';
    const pin = toolButton('pin');
    const full = toolButton('full');
    const tileKey = key;
    pin.addEventListener('click', () => setPinned(view.pinned === tileKey ? '' : tileKey));
    full.addEventListener('click', () => toggleFullScreen(/** @type {HTMLElement} */ (tile)));
    tools.append(pin, full);
    tile.append(avatar, caption, tools);
    container.append(tile);
  }
  return tile;
}

/** The tile's pin and full-screen buttons, named with whose video they act on. @param {HTMLElement} tile @param {string} whose */
function nameTools(tile, whose) {
  tile.dataset.whose = whose;
  const pinned = view.pinned === tile.dataset.key;
  const pin = /** @type {HTMLButtonElement} */ (tile.querySelector('.tile-tools .pin'));
  pin.textContent = t(pinned ? 'layout.unpin' : 'layout.pin');
  pin.setAttribute('aria-label', t(pinned ? 'layout.unpin-name' : 'layout.pin-name', { name: whose }));
  pin.setAttribute('aria-pressed', String(pinned));
  const full = /** @type {HTMLButtonElement} */ (tile.querySelector('.tile-tools .full'));
  const isFull = document.fullscreenElement === tile;
  full.textContent = t(isFull ? 'layout.exit-full' : 'layout.full');
  full.setAttribute('aria-label', t(isFull ? 'layout.exit-full' : 'layout.full-name', { name: whose }));
  full.hidden = !document.fullscreenEnabled;
}

const SVG = 'http://www.w3.org/2000/svg';
/** A crossed-out microphone: the tile's label says "muted" with it (its words are in the tile's name). */
function micOffIcon() {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'mic-off');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const body = document.createElementNS(SVG, 'path');
  body.setAttribute('d', 'M12 3a3 3 0 0 0-3 3v5a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3zM6 11a6 6 0 0 0 12 0M12 17v4');
  const slash = document.createElementNS(SVG, 'path');
  slash.setAttribute('d', 'M4 4l16 16');
  svg.append(body, slash);
  return svg;
}

/** Draw every tile again from the participants and the tracks we have, then lay them out. */
export function renderTiles() {
  const { participants, me, speaking } = state;
  const remote = state.call?.remoteTracks() || new Map();
  const grid = $('grid');
  const stage = $('stage');
  const seen = new Set();
  const seenStage = new Set();
  // A webinar's attendee sees the stage, not themselves.
  const attendee = amAttendee();
  for (const [id, p] of participants) {
    const isMe = id === me;
    if (isMe && attendee) continue;
    const tile = tileFor(grid, id, id);
    // What the tile shows, or will once its media comes (sizes.js tells the server).
    tile.dataset.source = p.sources.includes('camera') ? 'camera' : '';
    seen.add(id);
    tile.classList.toggle('self', isMe);
    tile.classList.toggle('away', !p.connected);
    tile.classList.toggle('speaking', speaking.has(id));
    const micMuted = p.muted.includes('microphone') || !p.sources.includes('microphone');
    const name = isMe ? `${p.name} ${t('tile.you')}` : p.name;
    const stateWords = [p.hand != null ? t('people.hand') : '', micMuted ? t('people.mic-off') : '', p.connected ? '' : t('people.reconnecting')].filter(Boolean).join(', ');
    tile.classList.toggle('hand-up', p.hand != null);
    tile.classList.toggle('muted', micMuted);
    const hand = document.createElement('span');
    hand.className = 'hand-icon';
    hand.setAttribute('aria-hidden', 'true');
    hand.textContent = '✋';
    const tags = [isMe ? ` ${t('tile.you')}` : '', p.connected ? '' : ` · ${t('people.reconnecting')}`].join('');
    tile.querySelector('.label').replaceChildren(...(p.hand != null ? [hand] : []), nameText(p.name), ...(tags ? [tagText(tags)] : []), ...(micMuted ? [micOffIcon()] : []));
    showTileBadge(/** @type {HTMLElement} */ (tile.querySelector('.tile-id')), p.identity, isMe);
    tile.setAttribute('aria-label', [name, describe(p.identity), stateWords].filter(Boolean).join(', '));
    tile.querySelector('.avatar').textContent = p.name.slice(0, 1).toUpperCase();
    nameTools(tile, name);
    const camTrack = isMe ? (local.cameraOn ? local.camera : null) : (p.sources.includes('camera') ? remote.get(id)?.get('camera') : null);
    /** @type {HTMLElement} */ (tile.querySelector('.avatar')).hidden = !!setVideo(tile, camTrack || null);
    const screenTrack = isMe ? localTrack('screen') : (p.sources.includes('screen') ? remote.get(id)?.get('screen') : null);
    if (screenTrack) {
      const st = tileFor(stage, id, `${id}-screen`);
      st.dataset.source = 'screen';
      st.classList.add('screen');
      seenStage.add(`${id}-screen`);
      const label = isMe ? t('tile.you-sharing') : t('tile.sharing', { name: p.name });
      st.querySelector('.label').textContent = label;
      st.setAttribute('aria-label', label);
      /** @type {HTMLElement} */ (st.querySelector('.avatar')).hidden = true;
      nameTools(st, label);
      setVideo(st, screenTrack);
    }
  }
  for (const el of [...grid.querySelectorAll('.tile')]) if (!seen.has(el.dataset.key)) el.remove();
  for (const el of [...stage.querySelectorAll('.tile')]) if (!seenStage.has(el.dataset.key)) el.remove();
  stage.hidden = seenStage.size === 0;
  if (view.pinned && !seen.has(view.pinned) && !seenStage.has(view.pinned)) view.pinned = '';
  if (!participants.has(view.speaker)) view.speaker = '';
  layout();
}

/**
 * Someone started or stopped speaking: highlight their tile; in the speaker
 * view, the last other person who started is shown large.
 * @param {string} id @param {boolean} on
 */
export function noteSpeaking(id, on) {
  for (const tile of document.querySelectorAll(`.tile[data-id="${CSS.escape(id)}"]`)) tile.classList.toggle('speaking', on);
  if (on && id !== state.me && view.speaker !== id) {
    view.speaker = id;
    if (view.mode === 'speaker') layout();
  }
}

/** @param {string} key */
function setPinned(key) {
  view.pinned = key;
  view.page = 0;
  renameTools();
  layout();
}

/** Every tile's tools say again what they do (pinned or not, full screen or not). */
function renameTools() {
  for (const tile of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('#tiles .tile'))) nameTools(tile, tile.dataset.whose || '');
}

/** @param {HTMLElement} tile */
async function toggleFullScreen(tile) {
  try {
    if (document.fullscreenElement === tile) await document.exitFullscreen();
    else await tile.requestFullscreen();
  } catch (e) {
    console.warn('full screen refused', e);
  }
}

/** The tile shown large, or null for a grid: the pinned one, else a shared screen, else (speaker view) who speaks. */
function featured(/** @type {HTMLElement[]} */ people, /** @type {HTMLElement[]} */ screens) {
  const byKey = (/** @type {string} */ key) => [...screens, ...people].find((el) => el.dataset.key === key) || null;
  if (view.pinned && byKey(view.pinned)) return byKey(view.pinned);
  if (view.mode === 'grid') return null;
  if (screens.length) return screens[0];
  if (view.mode !== 'speaker' || people.length < 2) return null;
  return byKey(view.speaker) || people.find((el) => el.dataset.id !== state.me) || null;
}

/** @param {HTMLElement} el @param {{x: number, y: number, w: number, h: number} | null} r */
function place(el, r) {
  el.hidden = !r;
  if (!r) return;
  el.style.left = `${Math.round(r.x)}px`;
  el.style.top = `${Math.round(r.y)}px`;
  el.style.width = `${Math.max(0, Math.floor(r.w))}px`;
  el.style.height = `${Math.max(0, Math.floor(r.h))}px`;
}

/** Place every tile for the layout, page and stage size now. */
export function layout() {
  const area = $('tiles');
  const box = { x: 0, y: 0, w: area.clientWidth, h: area.clientHeight };
  const people = /** @type {HTMLElement[]} */ ([...$('grid').querySelectorAll('.tile')]);
  const screens = /** @type {HTMLElement[]} */ ([...$('stage').querySelectorAll('.tile')]);
  const big = featured(people, screens);
  const rest = [...screens, ...people].filter((el) => el !== big);
  for (const el of [...screens, ...people]) el.classList.toggle('featured', el === big);
  area.dataset.layout = big ? (big.classList.contains('screen') ? 'presentation' : 'speaker') : 'grid';
  let perPage;
  let rects;
  if (big) {
    const regions = focusRegions(box, rest.length);
    perPage = regions.capacity;
    place(big, rest.length ? regions.main : box);
    rects = (/** @type {number} */ n) => stripRects(n, regions);
  } else {
    perPage = gridCapacity(box.w, box.h);
    rects = (/** @type {number} */ n) => gridRects(n, box);
  }
  const pages = Math.max(1, Math.ceil(rest.length / perPage));
  view.page = Math.min(view.page, pages - 1);
  const shown = rest.slice(view.page * perPage, (view.page + 1) * perPage);
  const at = rects(shown.length);
  for (const el of rest) place(el, null);
  shown.forEach((el, i) => place(el, at[i]));
  $('pager').hidden = pages < 2;
  $('page-status').textContent = pages < 2 ? '' : t('layout.page', { page: view.page + 1, pages });
  $('page-prev').disabled = view.page === 0;
  $('page-next').disabled = view.page >= pages - 1;
}

/** The layout picker, pager, full-screen labels and re-layout on resize. */
export function wireStage() {
  const select = $('layout-select');
  select.value = view.mode;
  select.addEventListener('change', () => {
    view.mode = /** @type {Mode} */ (select.value);
    localStorage.setItem('convene-layout', view.mode);
    view.page = 0;
    layout();
  });
  $('page-prev').addEventListener('click', () => { view.page = Math.max(0, view.page - 1); layout(); });
  $('page-next').addEventListener('click', () => { view.page++; layout(); });
  document.addEventListener('fullscreenchange', renameTools);
  new ResizeObserver(() => layout()).observe($('tiles'));
}
