// Tell the server how big each remote video is on screen (`video-sizes`,
// docs/protocol.md), so it sends a thumbnail a small layer and nothing at all
// for a video nobody can see (scrolled away, hidden, covered, zero size).

/** @typedef {{participantId: string, source: string, width: number, height: number}} VideoSize */

/** Sizes are measured this long after the last layout change. */
const DEBOUNCE_MS = 300;
/** A change smaller than this (each way) is not worth a message. */
const TOLERANCE = 0.1;
/** At most this many entries; the largest are kept. */
const MAX_ENTRIES = 64;
const MAX_PIXELS = 16384;
/** Coverings no observer reports (a panel over a tile): looked for this often. */
const RECHECK_MS = 2000;
/** Never two messages closer than this (scrolling past many tiles). */
const MIN_GAP_MS = 200;
/** A layout that keeps moving is told at least this often. */
const MAX_WAIT_MS = 1000;

export class VideoSizes {
  /**
   * Remote videos are the `.tile`s under `roots` with `data-id` (whose) and
   * `data-source` (which source), other than our own: measured by their
   * `<video>`, or before their media comes, by the tile it will fill (so the
   * server can send it as soon as it arrives).
   * @param {(msg: object) => void} send
   * @param {HTMLElement[]} roots
   * @param {() => string} me our participant id
   */
  constructor(send, roots, me) {
    this.send = send;
    this.roots = roots;
    this.me = me;
    /** @type {VideoSize[] | null} what the server was last told (null: nothing yet on this connection) */
    this.sent = null;
    /** @type {number | undefined} */ this.tick = undefined;
    /** @type {number | undefined} */ this.debounce = undefined;
    /** @type {Set<Element>} */ this.watched = new Set();
    this.lastSent = 0;
    /** @type {{sizes: VideoSize[], since: number} | null} a change waiting for the layout to settle */
    this.pending = null;
    const schedule = () => this.schedule();
    this.resize = new ResizeObserver(schedule);
    this.intersect = new IntersectionObserver(schedule, { threshold: [0, 0.25, 0.5, 0.75, 1] });
    this.mutations = new MutationObserver(() => { this.watch(); this.schedule(); });
    for (const root of roots) {
      this.mutations.observe(root, { childList: true, subtree: true, attributes: true, attributeFilter: ['hidden', 'class', 'style'] });
      this.resize.observe(root);
    }
    window.addEventListener('resize', schedule);
    window.setInterval(schedule, RECHECK_MS);
  }

  /** A new connection (welcome, also after a resume): the server knows nothing yet. */
  reset() {
    this.sent = null;
    this.schedule();
  }

  /** Observe every tile and video in the roots (new ones come with render). */
  watch() {
    const now = new Set(this.roots.flatMap((r) => [...r.querySelectorAll('.tile, .tile video')]));
    for (const v of this.watched) {
      if (!now.has(v)) { this.resize.unobserve(v); this.intersect.unobserve(v); }
    }
    for (const v of now) {
      if (!this.watched.has(v)) { this.resize.observe(v); this.intersect.observe(v); }
    }
    this.watched = now;
  }

  schedule() {
    if (this.tick === undefined) this.tick = window.setTimeout(() => { this.tick = undefined; this.check(); }, 50);
  }

  /**
   * A video that newly appears is told at once (the server sends nothing for
   * an unlisted video once we have listed any); other changes wait until the
   * layout has been still for DEBOUNCE_MS.
   */
  check() {
    const sizes = this.measure();
    const change = compare(this.sent, sizes);
    const now = Date.now();
    if (change === 'none') {
      this.cancel();
      return;
    }
    let wait;
    if (change === 'added') {
      wait = Math.max(0, this.lastSent + MIN_GAP_MS - now);
    } else if (this.pending && same(this.pending.sizes, sizes)) {
      return; // still settling on what is already waiting: leave its timer be
    } else {
      const since = this.pending?.since ?? now;
      wait = Math.max(0, Math.min(DEBOUNCE_MS, since + MAX_WAIT_MS - now));
      this.pending = { sizes, since };
    }
    if (wait === 0) { this.flush(sizes); return; }
    clearTimeout(this.debounce);
    this.debounce = window.setTimeout(() => { this.debounce = undefined; this.flush(this.measure()); }, wait);
  }

  cancel() {
    clearTimeout(this.debounce);
    this.debounce = undefined;
    this.pending = null;
  }

  /** @param {VideoSize[]} sizes */
  flush(sizes) {
    this.cancel();
    // Until a video is on screen there is nothing to limit (and an old server
    // default, no limit, suits a first video best).
    if (this.sent === null && sizes.length === 0) return;
    if (this.sent && compare(this.sent, sizes) === 'none') return;
    this.sent = sizes;
    this.lastSent = Date.now();
    this.send({ type: 'video-sizes', sizes });
  }

  /** @returns {VideoSize[]} every remote video on screen now, in device pixels */
  measure() {
    const me = this.me();
    const dpr = window.devicePixelRatio || 1;
    /** @type {VideoSize[]} */
    const out = [];
    for (const root of this.roots) {
      for (const tile of /** @type {NodeListOf<HTMLElement>} */ (root.querySelectorAll('.tile[data-source]'))) {
        const participantId = tile.dataset.id;
        const source = tile.dataset.source;
        if (!participantId || !source || participantId === me) continue;
        const video = tile.querySelector('video');
        if (!onScreen(video || tile, tile)) continue;
        // The video fills the tile inside its border.
        const width = video ? video.getBoundingClientRect().width : tile.clientWidth;
        const height = video ? video.getBoundingClientRect().height : tile.clientHeight;
        out.push({
          participantId,
          source,
          width: Math.min(MAX_PIXELS, Math.round(width * dpr)),
          height: Math.min(MAX_PIXELS, Math.round(height * dpr)),
        });
      }
    }
    // Largest first (kept if there are too many), in a stable order.
    out.sort((a, b) => b.width * b.height - a.width * a.height
      || a.participantId.localeCompare(b.participantId) || a.source.localeCompare(b.source));
    return out.slice(0, MAX_ENTRIES);
  }
}

/**
 * Whether any of the video (or its tile) can be seen: laid out, not hidden, of some size,
 * inside the window and its scrolling boxes, and not entirely under
 * something else (a modal dialog's dimmed backdrop still shows it).
 * @param {HTMLElement} video @param {HTMLElement} tile
 */
function onScreen(video, tile) {
  // (Browsers without checkVisibility: elementFromPoint below skips what is hidden.)
  if (video.checkVisibility && !video.checkVisibility({ opacityProperty: true, visibilityProperty: true })) return false;
  const r = video.getBoundingClientRect();
  if (r.width < 1 || r.height < 1) return false;
  const left = Math.max(r.left, 0);
  const top = Math.max(r.top, 0);
  const right = Math.min(r.right, document.documentElement.clientWidth);
  const bottom = Math.min(r.bottom, document.documentElement.clientHeight);
  if (right - left < 1 || bottom - top < 1) return false;
  // Look at a few points of its part in the window: one showing the tile is enough.
  const xs = [left + 1, (left + right) / 2, right - 1];
  const ys = [top + 1, (top + bottom) / 2, bottom - 1];
  for (const x of xs) {
    for (const y of ys) {
      const hit = document.elementFromPoint(x, y);
      if (hit && (tile.contains(hit) || hit.closest('dialog[open]'))) return true;
    }
  }
  return false;
}

/**
 * How `next` differs from what was sent: 'added' when it lists a video not
 * sent before (or nothing was sent), 'changed' when one went away or a size
 * moved by more than TOLERANCE, else 'none'.
 * @param {VideoSize[] | null} sent @param {VideoSize[]} next
 * @returns {'added' | 'changed' | 'none'}
 */
export function compare(sent, next) {
  if (!sent) return 'added';
  const key = (/** @type {VideoSize} */ s) => `${s.participantId}\n${s.source}`;
  const before = new Map(sent.map((s) => [key(s), s]));
  let changed = sent.length !== next.length;
  for (const s of next) {
    const old = before.get(key(s));
    if (!old) return 'added';
    if (far(old.width, s.width) || far(old.height, s.height)) changed = true;
  }
  return changed ? 'changed' : 'none';
}

/** Exactly the same list. @param {VideoSize[]} a @param {VideoSize[]} b */
function same(a, b) {
  return a.length === b.length && a.every((s, i) => s.participantId === b[i].participantId && s.source === b[i].source && s.width === b[i].width && s.height === b[i].height);
}

/** @param {number} a @param {number} b */
function far(a, b) {
  return Math.abs(a - b) > TOLERANCE * Math.max(a, b, 1);
}
