// Who someone is, as the server verified it, in words: shown with every name.
import { t } from './i18n.js';

/**
 * @typedef {{level: 'member'|'partner'|'guest', organisation?: string, mfa?: boolean}} Verification
 */

/**
 * Whether anyone can be verified here: false on a server where nobody can
 * sign in (no providers). There everyone is a guest, and saying so of each
 * person tells nothing, so guests get no words and no badge.
 */
let verifiable = true;
/** Whether this browser signed in and is still a guest (an address outside the organisation's domains). */
let signedInGuest = false;

/**
 * "Member, Home Department", "Partner: Other Agency", "Guest (unverified)";
 * with the MFA flag when the server sent it (only hosts get it). Empty for a
 * guest where nobody can be verified.
 * @param {Verification | undefined} v
 */
export function describe(v) {
  if (!v || v.level === 'guest') return verifiable ? t('identity.guest') : '';
  const who = t(v.level === 'member' ? 'identity.member' : 'identity.partner', { org: v.organisation || '' });
  if (v.mfa === undefined) return who;
  return `${who} · ${t(v.mfa ? 'identity.mfa' : 'identity.single-factor')}`;
}

/**
 * A small badge element for a name (nothing where nobody can be verified).
 * @param {Verification | undefined} v
 * @returns {Node}
 */
export function badge(v) {
  if (!describe(v)) return document.createDocumentFragment();
  const span = document.createElement('span');
  span.className = `id-badge ${v?.level || 'guest'}`;
  span.textContent = describe(v);
  return span;
}

/**
 * A video tile's badge, in `holder`: one word ("Member", "Partner", "Guest")
 * that covers little of the video, as a button whose description is the whole
 * of `describe` (screen readers read it with the word); the same words show
 * beside it on hover, on keyboard focus and on a tap, and Escape hides them
 * (WCAG 1.4.13). Drawn again only when what it says changes, so a focused
 * badge keeps its focus while the tile is redrawn. On our own tile, someone
 * who signed in yet is a guest is told why.
 * @param {HTMLElement} holder @param {Verification | undefined} v @param {boolean} [own] our own tile
 */
export function showTileBadge(holder, v, own = false) {
  const guest = !v || v.level === 'guest';
  const words = own && guest && signedInGuest ? t('signin.guest-why') : describe(v);
  const sig = JSON.stringify([v?.level, v?.organisation, v?.mfa, words]);
  if (holder.dataset.sig === sig) return;
  holder.dataset.sig = sig;
  if (!words) { holder.replaceChildren(); return; }
  const level = v?.level || 'guest';
  const button = document.createElement('button');
  button.type = 'button';
  button.className = `id-badge compact ${level}`;
  button.textContent = t(SHORT[level] || 'identity.short-guest');
  const tip = document.createElement('span');
  tip.className = 'id-tip';
  tip.id = `id-tip-${++tipCount}`;
  tip.setAttribute('role', 'tooltip');
  tip.textContent = words;
  button.setAttribute('aria-describedby', tip.id);
  button.setAttribute('aria-expanded', 'false');
  const wrap = document.createElement('span');
  wrap.className = 'id-wrap';
  button.addEventListener('click', () => {
    wrap.classList.remove('dismissed');
    button.setAttribute('aria-expanded', String(button.getAttribute('aria-expanded') !== 'true'));
  });
  wrap.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape' || wrap.classList.contains('dismissed')) return;
    wrap.classList.add('dismissed');
    button.setAttribute('aria-expanded', 'false');
    e.stopPropagation();
  });
  const reset = () => wrap.classList.remove('dismissed');
  wrap.addEventListener('focusout', reset);
  wrap.addEventListener('mouseleave', reset);
  wrap.append(button, tip);
  holder.replaceChildren(wrap);
}
let tipCount = 0;
/** A badge's one word, by level (message ids). */
const SHORT = /** @type {Record<string, string>} */ ({ member: 'identity.short-member', partner: 'identity.short-partner', guest: 'identity.short-guest' });

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

/** What /api/session says about this browser and this server. A 503 (a
 * sign-in that cannot be checked just now, in a cluster) is asked again
 * after its Retry-After, a few times, before giving up. */
export async function loadSession() {
  let res = await fetch('/api/session', { cache: 'no-store' });
  for (let tries = 1; res.status === 503 && tries < 5; tries++) {
    const wait = Math.min(Number(res.headers.get('retry-after')) || 2, 5);
    await new Promise((r) => setTimeout(r, wait * 1000));
    res = await fetch('/api/session', { cache: 'no-store' });
  }
  if (!res.ok) throw new Error(t('common.server-said', { status: res.status }));
  const session = await res.json();
  verifiable = !!session.signedIn || (session.signIn || []).length > 0;
  signedInGuest = session.signedIn?.level === 'guest';
  return session;
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
    container.append(p);
    // Signed in, yet a guest: the provider vouched for an address that is not
    // one of its organisation's domains (or did not confirm it). Say so here,
    // where only they see it, rather than leave them wondering.
    if (me.level === 'guest') {
      const why = document.createElement('p');
      why.className = 'hint';
      why.id = 'guest-why';
      why.textContent = t('signin.guest-why');
      container.append(why);
    }
    const out = document.createElement('button');
    out.type = 'button';
    out.textContent = t('signin.sign-out');
    out.addEventListener('click', async () => {
      await fetch('/auth/logout', { method: 'POST', headers: { 'X-CSRF-Token': session.csrfToken } });
      location.reload();
    });
    container.append(out);
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
