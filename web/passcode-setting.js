// The passcode in a host's settings panel: set one during the meeting, change
// it or remove it (`set-passcode`, protocol.md §4.14). The server decides and
// audits; the passcode is sent once and never shown again.

import { t } from './i18n.js';

const field = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));

/** Fill the panel's passcode part for a meeting that has (or has not) a passcode. @param {boolean} has */
export function showPasscodeSetting(has) {
  field('passcode-state').textContent = has
    ? t('passcode.has')
    : t('passcode.none');
  field('set-passcode').value = '';
  field('remove-passcode').checked = false;
  field('remove-passcode-row').hidden = !has;
}

/** The `set-passcode` message the panel asks for when saved, or null for none. */
export function passcodeChange() {
  const passcode = field('set-passcode').value;
  if (passcode) return { type: 'set-passcode', passcode };
  if (field('remove-passcode').checked) return { type: 'set-passcode', passcode: null };
  return null;
}
