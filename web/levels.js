// Handling levels in pickers (the home page's and a host's in the meeting).
import { t } from './i18n.js';

/**
 * @typedef {{id: string, name: string, unavailable?: string | null, requires?: any}} LevelChoice
 */

/**
 * One option per level. A level no meeting can ever be held at on this server
 * (the server says why in `unavailable`) is offered disabled, with the reason in
 * its text: a disabled option shows no tooltip.
 * @param {LevelChoice[]} levels @param {string} [current]
 */
export function levelOptions(levels, current) {
  return levels.map((l) => {
    const option = new Option(l.unavailable ? t('level.unavailable', { level: l.name, why: unavailableWhy(l) }) : l.name, l.id, false, l.id === current);
    option.disabled = !!l.unavailable && l.id !== current;
    return option;
  });
}

/**
 * Why a level cannot be held here, in this page's language. The server says it
 * in English words only; there are two reasons (policy.rs `unavailable`), told
 * apart by what the level requires. Another reason shows as the server said it.
 * @param {LevelChoice} l
 */
function unavailableWhy(l) {
  if (l.requires?.e2ee) return t('level.unavailable-e2ee');
  if (l.requires && l.requires.guestsAllowed === false) return t('level.unavailable-sign-in');
  return l.unavailable || '';
}
