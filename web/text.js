// Small pieces of text and buttons the meeting page puts beside names.

/**
 * A name someone typed, in an element of its own, isolated from the text
 * around it: what Convene says about them (you, their role, their state, their
 * identity badge) goes in separate elements, never in the same text.
 * @param {string} name
 */
export function nameText(name) {
  const el = document.createElement('bdi');
  el.className = 'name';
  el.textContent = name;
  return el;
}

/** What Convene says about someone, beside their name. @param {string} text */
export function tagText(text) {
  const el = document.createElement('span');
  el.className = 'tags';
  el.textContent = text;
  return el;
}

/**
 * A small button in a person's row (People, the lobby, the hands queue).
 * @param {string} label @param {string} accessibleName @param {() => void} onClick
 */
export function personButton(label, accessibleName, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.setAttribute('aria-label', accessibleName);
  b.addEventListener('click', onClick);
  return b;
}
