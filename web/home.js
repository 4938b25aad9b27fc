// Home page: create a meeting and show its join link.
import { loadSession, renderSignIn, orgName } from './identity.js';
import { levelOptions, unmetWords, levelBanner } from './levels.js';
import { showInvitation } from './invitation.js';
import { t, lang, translatePage, languagePicker } from './i18n.js';

translatePage();
languagePicker(/** @type {HTMLElement} */ (document.getElementById('language')));

const form = /** @type {HTMLFormElement} */ (document.getElementById('create'));
const title = /** @type {HTMLInputElement} */ (document.getElementById('title'));
const passcode = /** @type {HTMLInputElement} */ (document.getElementById('passcode'));
const hostLink = /** @type {HTMLInputElement} */ (document.getElementById('host-link'));
const copyHost = /** @type {HTMLButtonElement} */ (document.getElementById('copy-host'));
const error = /** @type {HTMLElement} */ (document.getElementById('create-error'));
const created = /** @type {HTMLElement} */ (document.getElementById('created'));
const link = /** @type {HTMLInputElement} */ (document.getElementById('join-link'));
const copy = /** @type {HTMLButtonElement} */ (document.getElementById('copy'));
const open = /** @type {HTMLAnchorElement} */ (document.getElementById('open'));

const field = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));
/** @type {any} */ let session = null;
/** @type {any[]} */ let levels = [];

async function showSession() {
  session = await loadSession();
  field('hosted-by').textContent = t('common.hosted-by', { org: orgName(session.hostedBy), server: session.server });
  renderSignIn(session, field('sign-in'), '/');
  const signInExists = session.signIn.length > 0;
  field('trial-notice').hidden = signInExists;
  field('identity-rules').hidden = !signInExists;
  form.hidden = !session.mayCreateMeetings;
  const policy = await (await fetch('/api/policy')).json();
  levels = policy.levels;
  field('level').replaceChildren(...levelOptions(policy.levels));
  showBanner();
  field('level').addEventListener('change', showBanner);
  const home = session.signIn.find((/** @type {any} */ o) => o.home);
  field('create-needs-sign-in').hidden = session.mayCreateMeetings;
  field('create-needs-sign-in').textContent = session.signedIn
    ? t('home.members-only', { org: orgName(session.hostedBy) })
    : home ? t('home.sign-in-to-create-with', { org: home.name }) : t('home.sign-in-to-create');
}
showSession().catch((e) => {
  error.textContent = t('common.unreachable', { detail: e instanceof Error ? e.message : String(e) });
  error.hidden = false;
});

/** The chosen level's banner, as people in the meeting will see it (in this page's language). */
function showBanner() {
  const level = levels.find((l) => l.id === field('level').value) || levels[0];
  let banner = document.getElementById('level-preview');
  if (!banner) {
    banner = document.createElement('p');
    banner.id = 'level-preview';
    banner.className = 'level-banner';
    field('level').after(banner);
  }
  banner.hidden = !level;
  if (!level) return;
  banner.textContent = levelBanner(level);
  banner.style.color = level.banner.foreground;
  banner.style.background = level.banner.background;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  error.hidden = true;
  try {
    const asked = {
      title: title.value,
      passcode: passcode.value || undefined,
      level: field('level').value || undefined,
      raise: field('raise').checked,
      settings: {
        lobby: field('lobby').checked,
        screenShare: field('screen-share').value,
        unmute: field('unmute').value,
        chat: field('chat').value,
        guestCameras: field('guest-cameras').checked,
        maxParticipants: Number(field('max-participants').value),
        lobbyBypass: field('lobby-bypass').value,
        guestsAllowed: field('guests-allowed').checked,
        requireMfa: field('require-mfa').checked,
        e2ee: field('e2ee').checked,
        webinar: field('webinar').checked,
      },
    };
    const res = await fetch('/api/meetings', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...(session?.csrfToken ? { 'X-CSRF-Token': session.csrfToken } : {}) },
      body: JSON.stringify(asked),
    });
    const body = await res.json();
    if (!res.ok && Array.isArray(body.unmet)) {
      // Say each requirement the settings fall short of: the server's words in
      // English, else the same rules worded here (the server's, should they differ).
      const level = levels.find((l) => l.id === asked.level) || levels[0];
      const ours = lang === 'en' || !level ? [] : unmetWords(level, asked.settings, !!asked.passcode, asked.raise);
      const list = document.createElement('ul');
      for (const u of ours.length ? ours : body.unmet) {
        const li = document.createElement('li');
        li.textContent = u;
        list.append(li);
      }
      error.replaceChildren(t('home.unmet'), list);
      error.hidden = false;
      return;
    }
    if (!res.ok) throw new Error(body.error || t('common.server-said', { status: res.status }));
    // The link is shown as the server knows it; we navigate within this origin.
    link.value = body.joinUrl;
    hostLink.value = body.hostUrl;
    open.href = `/m/${body.id}#host=${body.hostKey}`;
    /** @type {HTMLElement} */ (document.getElementById('passcode-reminder')).hidden = !body.passcodeRequired;
    created.hidden = false;
    showInvitation(body.id).catch(() => {});
    link.focus();
    link.select();
  } catch (e) {
    error.textContent = t('home.create-failed', { detail: e instanceof Error ? e.message : String(e) });
    error.hidden = false;
  }
});

/**
 * A webinar cannot be end-to-end encrypted (the server refuses both): while
 * one is ticked the other is off, and the hint beside both says why.
 */
function oneOrTheOther() {
  const webinar = field('webinar');
  const e2ee = field('e2ee');
  webinar.disabled = e2ee.checked;
  e2ee.disabled = webinar.checked;
  field('webinar-or-e2ee').hidden = !webinar.checked && !e2ee.checked;
}
field('webinar').addEventListener('change', oneOrTheOther);
field('e2ee').addEventListener('change', oneOrTheOther);
oneOrTheOther();

/** @param {HTMLButtonElement} button @param {HTMLInputElement} field */
function copier(button, field) {
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(field.value);
      button.textContent = t('home.copied');
    } catch {
      field.select();
      button.textContent = t('home.press-copy');
    }
  });
}
copier(copy, link);
copier(copyHost, hostLink);
