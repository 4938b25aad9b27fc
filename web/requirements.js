// What a meeting requires of the people who join it, shown on the join page
// before anyone tries (issue 17, bug 10): a passcode, verified people only, a
// second factor, the lobby. Where this browser falls short, it says what to do:
// sign in, or sign in again with a second factor. The server still decides.
import { t } from './i18n.js';
import { levelName } from './levels.js';
import { e2eeCapable } from './e2ee-support.js';

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
  if (meeting.passcodeRequired) items.push(t('req.passcode'));
  if (s.guestsAllowed === false) items.push(t('req.no-guests'));
  if (s.requireMfa) items.push(t('req.mfa'));
  if (s.lobby) items.push(t('req.lobby'));
  if (s.e2ee) items.push(t('req.e2ee'));
  let blocked = '';
  /** @type {{href: string, label: string} | null} */ let stepUp = null;
  if (s.e2ee && !e2eeCapable()) {
    // Never joined in the clear: the server would refuse it anyway.
    blocked = t('req.blocked-e2ee');
  } else if (s.guestsAllowed === false && !verified) {
    blocked = session.signIn.length
      ? t('req.blocked-guest')
      : t('req.blocked-no-sign-in');
  } else if (s.requireMfa && verified && !me.mfa) {
    blocked = t('req.blocked-mfa');
    const org = session.signIn.find((/** @type {any} */ o) => o.name === me.organisation);
    if (org) {
      stepUp = {
        href: `/auth/login?org=${encodeURIComponent(org.id)}&return=${encodeURIComponent(returnTo)}&mfa=1`,
        label: t('req.step-up', { org: org.name }),
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
  // The level the requirements come from, named in this page's language.
  let level = /** @type {HTMLElement | null} */ (section.querySelector('.requirements-level'));
  if (!level) {
    level = document.createElement('p');
    level.className = 'requirements-level';
    list.before(level);
  }
  level.textContent = meeting.level ? t('invite.level', { level: levelName(meeting.level) }) : '';
  level.hidden = !meeting.level;
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
