// Who someone is, as the server verified it, in words: shown with every name.
import { t } from './i18n.js';

/**
 * @typedef {{level: 'member'|'partner'|'guest', organisation?: string, mfa?: boolean}} Verification
 */

/**
 * "Member, Home Department", "Partner: Other Agency", "Guest (unverified)";
 * with the MFA flag when the server sent it (only hosts get it).
 * @param {Verification | undefined} v
 */
export function describe(v) {
  if (!v || v.level === 'guest') return t('identity.guest');
  const who = t(v.level === 'member' ? 'identity.member' : 'identity.partner', { org: v.organisation || '' });
  if (v.mfa === undefined) return who;
  return `${who} · ${t(v.mfa ? 'identity.mfa' : 'identity.single-factor')}`;
}

/**
 * A small badge element for a name.
 * @param {Verification | undefined} v
 */
export function badge(v) {
  const span = document.createElement('span');
  span.className = `id-badge ${v?.level || 'guest'}`;
  span.textContent = describe(v);
  return span;
}

/** The name a server without an organisation gives itself (convene-auth lib.rs), in English. */
const TRIAL_NAME = 'this server (trial: no organisation configured)';

/**
 * Who hosts this server, as /api/session and /api/meetings say it: the
 * organisation's name as configured, or, on a server without one, the fixed
 * words for that in this page's language.
 * @param {string} name
 */
export function orgName(name) {
  return name === TRIAL_NAME ? t('common.trial-host') : name;
}

/** What /api/session says about this browser and this server. */
export async function loadSession() {
  const res = await fetch('/api/session', { cache: 'no-store' });
  if (!res.ok) throw new Error(t('common.server-said', { status: res.status }));
  return res.json();
}

/**
 * Fill `container` with sign-in state: who is signed in (with sign out), or a
 * sign-in link per organisation, returning to `returnTo`.
 * @param {any} session @param {HTMLElement} container @param {string} returnTo
 */
export function renderSignIn(session, container, returnTo) {
  container.replaceChildren();
  if (session.signedIn) {
    const me = session.signedIn;
    const p = document.createElement('p');
    p.append(t('signin.signed-in-as', { name: me.name || t('signin.you') }), ' ', badge({ level: me.level, organisation: me.organisation, mfa: me.mfa }));
    const out = document.createElement('button');
    out.type = 'button';
    out.textContent = t('signin.sign-out');
    out.addEventListener('click', async () => {
      await fetch('/auth/logout', { method: 'POST', headers: { 'X-CSRF-Token': session.csrfToken } });
      location.reload();
    });
    container.append(p, out);
    return;
  }
  if (!session.signIn.length) return;
  const list = document.createElement('ul');
  list.className = 'sign-in';
  for (const org of session.signIn) {
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.className = 'button';
    a.href = `/auth/login?org=${encodeURIComponent(org.id)}&return=${encodeURIComponent(returnTo)}`;
    a.textContent = t('signin.with', { org: org.name });
    li.append(a);
    list.append(li);
  }
  container.append(list);
}
