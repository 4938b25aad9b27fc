// Handling levels in pickers (the home page's and a host's in the meeting).

/**
 * @typedef {{id: string, name: string, unavailable?: string | null}} LevelChoice
 */

/**
 * One option per level. A level no meeting can ever be held at on this server
 * (the server says why in `unavailable`) is offered disabled, with the reason in
 * its text: a disabled option shows no tooltip.
 * @param {LevelChoice[]} levels @param {string} [current]
 */
export function levelOptions(levels, current) {
  return levels.map((l) => {
    const option = new Option(l.unavailable ? `${l.name} (not available here: ${l.unavailable})` : l.name, l.id, false, l.id === current);
    option.disabled = !!l.unavailable && l.id !== current;
    return option;
  });
}
