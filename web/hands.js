// Raised hands, reactions, the participant count, the "you are alone" hint,
// announcements for screen readers and the keyboard shortcuts of the meeting
// page (issue 17). The server keeps the hands (a participant's `hand` is its
// place in the queue) and passes reactions on (protocol.md §4.15, §5.6a).
import { t } from './i18n.js';

/** How long a reaction shows on its sender's tile. */
export const REACTION_MS = 4000;
/** From this many people on, announcements come less often, and reactions not at all. */
export const LARGE_MEETING = 25;
/** The reactions, as the server names them, with what a tile shows. */
export const REACTIONS = /** @type {Record<string, string>} */ ({
  'thumbs-up': '👍', clap: '👏', laugh: '😂', heart: '❤️', party: '🎉',
});
/** Their names, for screen readers (message ids). */
const REACTION_WORDS = /** @type {Record<string, string>} */ ({
  'thumbs-up': 'reaction.thumbs-up',
  clap: 'reaction.clap',
  laugh: 'reaction.laugh',
  heart: 'reaction.heart',
  party: 'reaction.party',
});

/** A reaction's name in the page's language. @param {string} reaction */
export function reactionName(reaction) {
  const id = REACTION_WORDS[reaction];
  return id ? t(id) : reaction;
}

/**
 * Polite announcements in one live region, at most one every `gap` ms: those
 * that come faster are said together when the gap is over, the first three in
 * full and the rest as a count, so a busy meeting does not talk over itself.
 */
export class Announcer {
  /** @param {HTMLElement} region @param {() => number} people */
  constructor(region, people) {
    this.region = region;
    this.people = people;
    /** @type {string[]} */
    this.pending = [];
    this.last = 0;
    this.timer = 0;
  }

  /** @param {string} text */
  say(text) {
    this.pending.push(text);
    if (this.timer) return;
    const gap = this.people() >= LARGE_MEETING ? 5000 : 1500;
    const wait = Math.max(0, this.last + gap - Date.now());
    this.timer = window.setTimeout(() => this.flush(), wait);
  }

  flush() {
    this.timer = 0;
    this.last = Date.now();
    const items = this.pending.splice(0);
    const shown = items.slice(0, 3);
    if (items.length > shown.length) shown.push(t('announce.more', { count: items.length - shown.length }));
    this.region.textContent = shown.join(' ');
  }
}

/**
 * The raised hands, first raised first.
 * @template {{hand?: number | null}} P
 * @param {Map<string, P>} participants
 * @returns {[string, P][]}
 */
export function handQueue(participants) {
  return [...participants].filter(([, p]) => p.hand != null)
    .sort(([, a], [, b]) => Number(a.hand) - Number(b.hand));
}

/**
 * Show a reaction on a tile for a few seconds (the newest replaces the last).
 * @param {Element | null} tile @param {string} reaction
 */
export function showReaction(tile, reaction) {
  if (!tile) return;
  tile.querySelector('.reaction')?.remove();
  const el = document.createElement('div');
  el.className = 'reaction';
  el.setAttribute('aria-hidden', 'true'); // said by the announcer
  el.textContent = REACTIONS[reaction] || '';
  tile.append(el);
  setTimeout(() => el.remove(), REACTION_MS);
}

/** The keyboard shortcuts: Alt+Shift and a letter, by key position (e.code). */
export const SHORTCUTS = /** @type {Record<string, string>} */ ({
  KeyH: 'hand-btn',
  KeyM: 'mic-btn',
  KeyC: 'cam-btn',
});

/**
 * Alt+Shift+H, M and C press the hand, microphone and camera buttons while
 * the meeting shows and no dialog is open. They have a modifier, so typing in
 * chat never triggers them (WCAG 2.1.4).
 * @param {() => boolean} active
 */
export function wireShortcuts(active) {
  document.addEventListener('keydown', (e) => {
    if (!e.altKey || !e.shiftKey || e.ctrlKey || e.metaKey || e.repeat) return;
    const id = SHORTCUTS[e.code];
    if (!id || !active() || document.querySelector('dialog[open]')) return;
    const button = /** @type {HTMLButtonElement | null} */ (document.getElementById(id));
    if (!button || button.disabled) return;
    e.preventDefault();
    button.click();
  });
}

/** The shortcut of a button, as its title shows it. @param {string} keys */
export function shortcutTitle(keys) {
  return t('shortcuts.title', { keys });
}

/**
 * The join link without the host key (the part after #), for inviting.
 * @returns {string}
 */
export function inviteLink() {
  return `${location.origin}${location.pathname}`;
}

/**
 * "Copy the invite link": to the clipboard, or shown to copy by hand.
 * @param {HTMLElement} status
 */
export async function copyInviteLink(status) {
  const link = inviteLink();
  try {
    await navigator.clipboard.writeText(link);
    status.textContent = t('alone.copied');
  } catch {
    status.textContent = t('alone.copy-this', { url: link });
  }
}
