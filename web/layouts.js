// Where each tile goes on the stage: pure geometry, no DOM, so it is easy to
// reason about (and to test in isolation). Tiles are 16:9; the stage is any
// size from a phone held upright to a wall screen.

/** @typedef {{x: number, y: number, w: number, h: number}} Rect */

/** Space between tiles, in CSS pixels. */
export const GAP = 8;
/** At most this many tiles on one page of the grid (7 × 7). */
export const MAX_PER_PAGE = 49;
const RATIO = 16 / 9;

/** Narrowest a tile may be before the grid goes on to another page. @param {number} width of the stage */
export const minTileWidth = (width) => (width >= 600 ? 160 : 110);

/**
 * The columns and rows that make `n` 16:9 tiles as large as they can be in
 * `width` × `height`.
 * @param {number} n @param {number} width @param {number} height
 * @returns {{cols: number, rows: number, w: number, h: number}}
 */
export function bestGrid(n, width, height) {
  let best = { cols: 1, rows: Math.max(1, n), w: 0, h: 0 };
  for (let cols = 1; cols <= Math.max(1, n); cols++) {
    const rows = Math.ceil(n / cols);
    const w = Math.max(0, Math.min((width - (cols - 1) * GAP) / cols, ((height - (rows - 1) * GAP) / rows) * RATIO));
    if (w > best.w) best = { cols, rows, w, h: w / RATIO };
  }
  return best;
}

/** How many tiles one page of the grid holds at this size (1 to MAX_PER_PAGE). @param {number} width @param {number} height */
export function gridCapacity(width, height) {
  for (let n = MAX_PER_PAGE; n > 1; n--) if (bestGrid(n, width, height).w >= minTileWidth(width)) return n;
  return 1;
}

/**
 * `n` tiles in a centred grid filling `area`, the last row centred too.
 * @param {number} n @param {Rect} area
 * @returns {Rect[]}
 */
export function gridRects(n, area) {
  const { cols, rows, w, h } = bestGrid(n, area.w, area.h);
  const top = area.y + (area.h - (rows * h + (rows - 1) * GAP)) / 2;
  const out = [];
  for (let i = 0; i < n; i++) {
    const row = Math.floor(i / cols);
    const inRow = row === rows - 1 ? n - row * cols : cols;
    const left = area.x + (area.w - (inRow * w + (inRow - 1) * GAP)) / 2;
    out.push({ x: left + (i % cols) * (w + GAP), y: top + row * (h + GAP), w, h });
  }
  return out;
}

/** Smallest a strip's tile gets (its height) before the strip goes on to another page. */
const MIN_STRIP_HEIGHT = 60;

/**
 * One large tile and a strip for `n` others: beside it on a wide stage, below
 * it on a narrow one. The strip's tiles shrink (to MIN_STRIP_HEIGHT) so that
 * more fit before any go to another page.
 * @param {Rect} area @param {number} [n]
 * @returns {{main: Rect, strip: Rect, vertical: boolean, tile: {w: number, h: number}, capacity: number}}
 */
export function focusRegions(area, n = 1) {
  const vertical = area.w >= 700;
  const fit = (/** @type {number} */ room, /** @type {number} */ size) => Math.max(1, Math.floor((room + GAP) / (size + GAP)));
  if (vertical) {
    const w = Math.round(Math.min(280, Math.max(140, area.w * 0.22)));
    let h = w / RATIO;
    let capacity = fit(area.h, h);
    if (n > capacity) {
      capacity = Math.min(n, fit(area.h, MIN_STRIP_HEIGHT));
      h = Math.min(h, (area.h - (capacity - 1) * GAP) / capacity);
    }
    return {
      main: { x: area.x, y: area.y, w: Math.max(0, area.w - w - GAP), h: area.h },
      strip: { x: area.x + area.w - w, y: area.y, w, h: area.h },
      vertical,
      tile: { w: h * RATIO, h },
      capacity,
    };
  }
  const h = Math.round(Math.min(160, Math.max(64, area.h * 0.22)));
  let w = h * RATIO;
  let capacity = fit(area.w, w);
  if (n > capacity) {
    capacity = Math.min(n, fit(area.w, MIN_STRIP_HEIGHT * RATIO));
    w = Math.min(w, (area.w - (capacity - 1) * GAP) / capacity);
  }
  return {
    main: { x: area.x, y: area.y, w: area.w, h: Math.max(0, area.h - h - GAP) },
    strip: { x: area.x, y: area.y + area.h - h, w: area.w, h },
    vertical,
    tile: { w, h: w / RATIO },
    capacity,
  };
}

/**
 * The strip's tiles, centred along it.
 * @param {number} n @param {ReturnType<typeof focusRegions>} regions
 * @returns {Rect[]}
 */
export function stripRects(n, regions) {
  const { strip, vertical, tile } = regions;
  const length = n * (vertical ? tile.h : tile.w) + (n - 1) * GAP;
  const start = vertical ? strip.y + (strip.h - length) / 2 : strip.x + (strip.w - length) / 2;
  const out = [];
  for (let i = 0; i < n; i++) {
    const along = start + i * ((vertical ? tile.h : tile.w) + GAP);
    out.push(vertical
      ? { x: strip.x + (strip.w - tile.w) / 2, y: along, w: tile.w, h: tile.h }
      : { x: along, y: strip.y + (strip.h - tile.h) / 2, w: tile.w, h: tile.h });
  }
  return out;
}
