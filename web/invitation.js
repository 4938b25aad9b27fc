// The invitation a host sends: text to copy or email, and a calendar file.
// The text is written here, in the page's language, from the meeting
// (GET /api/meetings/{id}); in English it is word for word the server's
// (GET /api/meetings/{id}/invitation). The calendar file comes from the server
// (.../invitation.ics?lang=…), in this page's language. Neither ever holds the passcode.
import { t, lang } from './i18n.js';
import { orgName } from './identity.js';
import { levelName } from './levels.js';

/**
 * The invitation's subject and text for a meeting as /api/meetings/{id} gives it.
 * @param {{title: string, joinUrl: string, level: import('./levels.js').LevelWords, hostedBy: string, server: string, passcodeRequired: boolean}} m
 */
export function invitationText(m) {
  const subject = m.title ? t('invite.subject', { title: m.title }) : t('invite.subject-untitled');
  let text = m.title ? `${m.title}\n\n` : '';
  text += `${t('invite.join', { url: m.joinUrl })}\n`;
  text += `${t('invite.level', { level: levelName(m.level) })}\n`;
  if (m.hostedBy) text += `${t('invite.hosted-by', { org: orgName(m.hostedBy) })}\n`;
  text += `\n${t('invite.how')}\n`;
  if (m.passcodeRequired) text += `\n${t('invite.passcode')}\n`;
  text += `\n${t('invite.check', { url: `${m.server}/check` })}\n`;
  return { subject, text };
}

/**
 * Fill the invitation block (`#invitation`) for meeting `id`.
 * @param {string} id
 */
export async function showInvitation(id) {
  const block = /** @type {HTMLElement} */ (document.getElementById('invitation'));
  const text = /** @type {HTMLTextAreaElement} */ (document.getElementById('invite-text'));
  const copy = /** @type {HTMLButtonElement} */ (document.getElementById('copy-invite'));
  const ics = /** @type {HTMLAnchorElement} */ (document.getElementById('invite-ics'));
  const mail = /** @type {HTMLAnchorElement} */ (document.getElementById('invite-mail'));
  const status = /** @type {HTMLElement} */ (document.getElementById('invite-status'));
  const res = await fetch(`/api/meetings/${encodeURIComponent(id)}`);
  if (!res.ok) return;
  const meeting = await res.json();
  const inv = invitationText(meeting);
  text.value = inv.text;
  ics.href = `/api/meetings/${encodeURIComponent(id)}/invitation.ics?lang=${lang}`;
  ics.download = `convene-${id}.ics`;
  mail.href = `mailto:?subject=${encodeURIComponent(inv.subject)}&body=${encodeURIComponent(inv.text.replace(/\n/g, '\r\n'))}`;
  /** @type {HTMLElement} */ (document.getElementById('invite-passcode')).hidden = !meeting.passcodeRequired;
  copy.onclick = async () => {
    try {
      await navigator.clipboard.writeText(text.value);
      status.textContent = t('invite.copied');
    } catch {
      text.focus();
      text.select();
      status.textContent = t('invite.select-to-copy');
    }
  };
  block.hidden = false;
}
