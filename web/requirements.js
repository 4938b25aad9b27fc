// What a meeting requires of the people who join it, shown on the join page
// before anyone tries (issue 17, bug 10): a passcode, verified people only, a
// second factor, the lobby. Where this browser falls short, it says what to do:
// sign in, or sign in again with a second factor. The server still decides.

/**
 * @param {any} meeting /api/meetings/{id}
 * @param {any} session /api/session
 * @param {string} returnTo where sign-in comes back to
 * @returns {{ items: string[], blocked: string, stepUp: {href: string, label: string} | null }}
 *   what the meeting requires, why this browser cannot join as it is ('' when
 *   it can try), and the link that signs in again with a second factor
 */
export function requirements(meeting, session, returnTo) {
  const s = meeting.settings || {};
  const me = session.signedIn;
  const verified = me && me.level !== 'guest';
  const items = [];
  if (meeting.passcodeRequired) items.push('The meeting passcode, which the organiser sends separately from the link.');
  if (s.guestsAllowed === false) items.push('Only people verified by their organisation’s sign-in may join: no guests.');
  if (s.requireMfa) items.push('Members and partners must sign in with a second factor (such as a security key or a code).');
  if (s.lobby) items.push('A host lets people in from a lobby.');
  let blocked = '';
  /** @type {{href: string, label: string} | null} */ let stepUp = null;
  if (s.guestsAllowed === false && !verified) {
    blocked = session.signIn.length
      ? 'This meeting does not admit guests. Sign in with your organisation to join.'
      : 'This meeting does not admit guests, and this server has no sign-in.';
  } else if (s.requireMfa && verified && !me.mfa) {
    blocked = 'You signed in without a second factor, and this meeting needs one.';
    const org = session.signIn.find((/** @type {any} */ o) => o.name === me.organisation);
    if (org) {
      stepUp = {
        href: `/auth/login?org=${encodeURIComponent(org.id)}&return=${encodeURIComponent(returnTo)}&mfa=1`,
        label: `Sign in again with a second factor (${org.name})`,
      };
    }
  }
  return { items, blocked, stepUp };
}

/**
 * Fill the join page's requirements section and say whether joining is offered.
 * @param {HTMLElement} section @param {any} meeting @param {any} session @param {string} returnTo
 * @returns {boolean} whether this browser may try to join
 */
export function showRequirements(section, meeting, session, returnTo) {
  const { items, blocked, stepUp } = requirements(meeting, session, returnTo);
  const list = /** @type {HTMLElement} */ (section.querySelector('ul'));
  list.replaceChildren(...items.map((text) => {
    const li = document.createElement('li');
    li.textContent = text;
    return li;
  }));
  const why = /** @type {HTMLElement} */ (section.querySelector('.blocked'));
  why.replaceChildren();
  if (blocked) {
    why.append(blocked);
    if (stepUp) {
      const a = document.createElement('a');
      a.className = 'button primary';
      a.href = stepUp.href;
      a.textContent = stepUp.label;
      why.append(' ', a);
    }
  }
  why.hidden = !blocked;
  section.hidden = items.length === 0 && !blocked;
  return !blocked;
}
