// Handling levels: their names and banners in this page's language, and
// pickers (the home page's and a host's in the meeting).
import { t, lang } from './i18n.js';

/**
 * A level as the server sends it (/api/policy, the meeting's `level`): its
 * name and banner as the policy writes them, and per language where the policy
 * gives them (docs/policy.md `translations`).
 * @typedef {{name: string, banner?: {text: string}, translations?: Record<string, {name?: string, banner?: string}>}} LevelWords
 * @typedef {LevelWords & {id: string, unavailable?: string | null, requires?: any}} LevelChoice
 */

/** The level's name in this page's language, else as the policy writes it. @param {LevelWords} level */
export function levelName(level) {
  return level.translations?.[lang]?.name || level.name;
}

/** The level's banner text in this page's language, else as the policy writes it. @param {LevelWords} level */
export function levelBanner(level) {
  return level.translations?.[lang]?.banner || level.banner?.text || '';
}

/**
 * One option per level. A level no meeting can ever be held at on this server
 * (the server says why in `unavailable`) is offered disabled, with the reason in
 * its text: a disabled option shows no tooltip.
 * @param {LevelChoice[]} levels @param {string} [current]
 */
export function levelOptions(levels, current) {
  return levels.map((l) => {
    const name = levelName(l);
    const option = new Option(l.unavailable ? t('level.unavailable', { level: name, why: unavailableWhy(l) }) : name, l.id, false, l.id === current);
    option.disabled = !!l.unavailable && l.id !== current;
    return option;
  });
}

/**
 * Why a level cannot be held here, in this page's language. The server says it
 * in English words only; there is one reason (policy.rs `unavailable`), told
 * by what the level requires. Another reason shows as the server said it.
 * @param {LevelChoice} l
 */
function unavailableWhy(l) {
  if (l.requires && l.requires.guestsAllowed === false) return t('level.unavailable-sign-in');
  return l.unavailable || '';
}

/** How widely each setting opens a meeting (policy.rs `narrowness`, `bypass_width`). */
const NARROWNESS = /** @type {Record<string, number>} */ ({ everyone: 0, 'hosts-and-presenters': 1, hosts: 2, nobody: 3 });
const BYPASS_WIDTH = /** @type {Record<string, number>} */ ({ nobody: 0, members: 1, 'members-and-partners': 2 });
/** Message ids for who may (policy.rs `who_words`) and who skips the lobby. */
const WHO_WORDS = /** @type {Record<string, string>} */ ({
  everyone: 'level.who-everyone', 'hosts-and-presenters': 'level.who-hosts-and-presenters', hosts: 'level.who-hosts', nobody: 'level.who-nobody',
});
const BYPASS_WORDS = /** @type {Record<string, string>} */ ({
  nobody: 'level.bypass-nobody', members: 'level.bypass-members', 'members-and-partners': 'level.bypass-members-and-partners',
});

/**
 * What `settings` fall short of at `level`, one sentence each, in this page's
 * language: the server's rules (policy.rs `unmet`) over what /api/policy says a
 * level requires. The server decides and says the same in English (`unmet`, or
 * the `policy` error's message); this only words it. `raised`: the settings
 * are raised to the level first (a raise fixes all but the passcode).
 * @param {LevelChoice} level
 * @param {any} settings the meeting's settings (as in `update-settings`)
 * @param {boolean} hasPasscode
 * @param {boolean} [raised]
 * @returns {string[]}
 */
export function unmetWords(level, settings, hasPasscode, raised = false) {
  const r = level.requires || {};
  const out = [];
  const need = (/** @type {boolean} */ cond, /** @type {string} */ id, /** @type {Record<string, string | number>} */ params = {}) => {
    if (cond) out.push(t(id, { level: levelName(level), ...params }));
  };
  need(!!level.unavailable, 'level.unmet-unavailable', { why: unavailableWhy(level) });
  need(!!r.passcode && !hasPasscode, 'level.unmet-passcode');
  if (raised) return out;
  const s = settings || {};
  need(!!r.lobby && !s.lobby, 'level.unmet-lobby');
  need((BYPASS_WIDTH[s.lobbyBypass] ?? 0) > (BYPASS_WIDTH[r.lobbyBypass] ?? 2), 'level.unmet-bypass', { who: t(BYPASS_WORDS[r.lobbyBypass] || 'level.bypass-nobody') });
  need(r.guestsAllowed === false && !!s.guestsAllowed, 'level.unmet-guests');
  need(!!r.mfa && !s.requireMfa, 'level.unmet-mfa');
  need(!!r.e2ee && !s.e2ee, 'level.unmet-e2ee');
  need(r.chatAllowed === false && s.chat !== 'nobody', 'level.unmet-chat');
  need((NARROWNESS[s.screenShare] ?? 0) < (NARROWNESS[r.screenShare] ?? 0), 'level.unmet-share', { who: t(WHO_WORDS[r.screenShare] || 'level.who-nobody') });
  need(typeof r.maxParticipants === 'number' && s.maxParticipants > r.maxParticipants, 'level.unmet-max', { count: r.maxParticipants });
  return out;
}
