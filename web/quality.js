// Connection quality (`connection-quality`, docs/protocol.md): a small
// indicator on every person's tile, a note on a tile whose video the person's
// link cannot carry, and a note to a person whose own link is poor.

/** @typedef {'good' | 'fair' | 'poor'} Level */
/** @typedef {{participantId: string, quality: Level, videoPaused: boolean}} QualityEntry */

import { t } from './i18n.js';

/** What each level says, in words (the bars only add to them): message ids. */
const WORDS = /** @type {Record<Level, string>} */ ({
  good: 'quality.good',
  fair: 'quality.fair',
  poor: 'quality.poor',
});
const BARS = /** @type {Record<Level, number>} */ ({ good: 3, fair: 2, poor: 1 });

export class ConnectionQuality {
  /**
   * @param {HTMLElement} grid where the tiles are (`.tile[data-id]`, one per person)
   * @param {HTMLElement} note a polite live region for our own poor connection
   * @param {() => string} me our participant id
   */
  constructor(grid, note, me) {
    this.grid = grid;
    this.note = note;
    this.me = me;
    /** @type {Map<string, QualityEntry>} */
    this.byId = new Map();
  }

  /** A new connection: everyone's state comes again. */
  reset() {
    this.byId.clear();
    this.apply();
  }

  /** @param {QualityEntry[]} entries the participants whose state changed */
  update(entries) {
    for (const e of entries) {
      if (e && typeof e.participantId === 'string' && e.quality in WORDS) this.byId.set(e.participantId, e);
    }
    this.apply();
  }

  /** @param {string} id */
  forget(id) {
    this.byId.delete(id);
  }

  /** Bring every tile, and our own note, up to date (after each render too). */
  apply() {
    for (const tile of /** @type {NodeListOf<HTMLElement>} */ (this.grid.querySelectorAll('.tile[data-id]'))) {
      const entry = this.byId.get(/** @type {string} */ (tile.dataset.id));
      showLevel(tile, entry?.quality);
      showPaused(tile, !!entry?.videoPaused);
    }
    const text = this.byId.get(this.me())?.quality === 'poor' ? t('quality.own-poor') : '';
    // Touched only on a change, so the live region speaks once.
    if (this.note.textContent !== text) this.note.textContent = text;
  }
}

/** Three bars, as many filled as the level is good, with the words as its name.
 * @param {HTMLElement} tile @param {Level | undefined} level */
function showLevel(tile, level) {
  let el = /** @type {HTMLElement | null} */ (tile.querySelector(':scope > .quality'));
  if (!level) { el?.remove(); return; }
  if (!el) {
    el = document.createElement('span');
    el.className = 'quality';
    el.setAttribute('role', 'img');
    for (let i = 1; i <= 3; i++) {
      const bar = document.createElement('span');
      bar.className = `bar bar-${i}`;
      el.append(bar);
    }
    tile.append(el);
  }
  if (el.dataset.level === level) return;
  el.dataset.level = level;
  el.setAttribute('aria-label', t(WORDS[level]));
  el.title = t(WORDS[level]);
  el.querySelectorAll('.bar').forEach((bar, i) => bar.classList.toggle('on', i < BARS[level]));
}

/** @param {HTMLElement} tile @param {boolean} paused */
function showPaused(tile, paused) {
  let el = tile.querySelector(':scope > .paused-note');
  if (!paused) { el?.remove(); return; }
  if (el) return;
  el = document.createElement('p');
  el.className = 'paused-note';
  el.textContent = t('quality.paused');
  tile.append(el);
}
