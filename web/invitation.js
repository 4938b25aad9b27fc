// The invitation a host sends: text to copy or email, and a calendar file.
// Both come from the server (GET /api/meetings/{id}/invitation and
// .../invitation.ics) and never hold the passcode.

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
  const res = await fetch(`/api/meetings/${encodeURIComponent(id)}/invitation`);
  if (!res.ok) return;
  const inv = await res.json();
  text.value = inv.text;
  ics.href = `/api/meetings/${encodeURIComponent(id)}/invitation.ics`;
  ics.download = `convene-${id}.ics`;
  mail.href = inv.mailto;
  /** @type {HTMLElement} */ (document.getElementById('invite-passcode')).hidden = !inv.passcodeRequired;
  copy.onclick = async () => {
    try {
      await navigator.clipboard.writeText(text.value);
      status.textContent = 'Invitation copied.';
    } catch {
      text.focus();
      text.select();
      status.textContent = 'The invitation is selected: press Ctrl+C (or ⌘C) to copy it.';
    }
  };
  block.hidden = false;
}
