// The meeting's handling level (its banner at every stage, and hosts' level
// picker) and what only hosts do: settings, passcode, invitation, lock, mute
// all, end.
import { t, lang } from './i18n.js';
import { $, state, send, meetingId } from './meeting-state.js';
import { levelOptions, unmetWords, levelName, levelBanner } from './levels.js';
import { showPasscodeSetting, passcodeChange } from './passcode-setting.js';
import { showInvitation } from './invitation.js';
import { serverError } from './errors.js';

/** The deployment's levels (for hosts' level control), lowest first. */
/** @type {any[]} */ let levels = [];
let currentLevel = '';
/** What a host last asked that the level may refuse (`policy`): to say why in the page's language. */
/** @type {{level: string, settings?: any, raised: boolean} | null} */ let policyAsk = null;

/** Show the meeting's handling level in the banner that stays at every stage. @param {any} level */
export function showLevel(level) {
  if (!level) return;
  currentLevel = level.id;
  const banner = $('level-banner');
  banner.textContent = levelBanner(level);
  banner.style.color = level.banner.foreground;
  banner.style.background = level.banner.background;
  banner.hidden = false;
  $('level-select').value = level.id;
  showChatKept();
}

/** A level's name by its id, in this page's language (the id when this server has no such level). @param {string} id */
export function levelNameOf(id) {
  const level = levels.find((l) => l.id === id);
  return level ? levelName(level) : id;
}

/** A refused level change: the picker goes back to the level the meeting has. */
export function showCurrentLevel() {
  $('level-select').value = currentLevel;
}

/** Say in the chat panel whether this meeting's level keeps chat (and so shows it to later joiners). */
function showChatKept() {
  const level = levels.find((l) => l.id === currentLevel);
  if (!level) return;
  const days = level.requires?.chatRetentionDays || 0;
  $('chat-kept').textContent = days > 0 ? t('chat.kept', { count: days }) : t('chat.not-kept');
  $('chat-kept').hidden = false;
}

export async function loadLevels() {
  const res = await fetch('/api/policy');
  if (!res.ok) return;
  levels = (await res.json()).levels;
  $('level-select').replaceChildren(...levelOptions(levels, currentLevel));
  showChatKept();
}

function changeLevel() {
  const target = $('level-select').value;
  if (target === currentLevel) return;
  const rank = (/** @type {string} */ id) => levels.findIndex((l) => l.id === id);
  if (rank(target) < rank(currentLevel)) {
    if (!confirm(t('host.lower-confirm', { from: levelNameOf(currentLevel), to: levelNameOf(target) }))) {
      $('level-select').value = currentLevel;
      return;
    }
    policyAsk = { level: target, raised: false };
    send({ type: 'set-level', level: target, confirm: true });
  } else {
    // Raising applies the level's requirements to the settings at once.
    policyAsk = { level: target, raised: true };
    send({ type: 'set-level', level: target, raise: true });
  }
}

/**
 * A `policy` refusal: each unmet requirement in the page's language, as far
 * as the client can tell which; or `passcode-kept`.
 * @param {any} msg
 */
export function policyRefusal(msg) {
  if (msg.code === 'passcode-kept') return t('error.passcode-kept', { level: levelNameOf(currentLevel) });
  if (lang === 'en') return serverError(msg);
  const level = levels.find((l) => l.id === policyAsk?.level);
  if (!level || !policyAsk) return serverError(msg);
  const words = unmetWords(level, policyAsk.settings || state.settings, state.meetingPasscode, policyAsk.raised);
  return words.length ? t('error.policy-unmet', { list: words.join('; ') }) : serverError(msg);
}

function openSettings() {
  const settings = state.settings;
  if (!settings) return;
  $('set-lobby').checked = settings.lobby;
  $('set-screen').value = settings.screenShare;
  $('set-unmute').value = settings.unmute;
  $('set-chat').value = settings.chat;
  $('set-cameras').checked = settings.guestCameras;
  $('set-max').value = String(settings.maxParticipants);
  $('set-bypass').value = settings.lobbyBypass;
  $('set-guests').checked = settings.guestsAllowed;
  $('set-mfa').checked = settings.requireMfa;
  showPasscodeSetting(state.meetingPasscode);
  $('settings-dialog').showModal();
}

export function wireHostControls() {
  $('lock-btn').addEventListener('click', () => send({ type: 'lock', locked: !state.meetingLocked }));
  $('admit-all').addEventListener('click', () => send({ type: 'admit-all' }));
  $('mute-all-btn').addEventListener('click', () => send({ type: 'mute-all' }));
  $('settings-btn').addEventListener('click', openSettings);
  $('invite-btn').addEventListener('click', async () => {
    await showInvitation(meetingId).catch(() => {});
    $('invite-dialog').showModal();
  });
  $('invite-close').addEventListener('click', () => $('invite-dialog').close());
  $('level-btn').addEventListener('click', changeLevel);
  $('settings-cancel').addEventListener('click', () => $('settings-dialog').close());
  $('settings-form').addEventListener('submit', () => {
    const asked = {
      type: 'update-settings',
      settings: {
        lobby: $('set-lobby').checked,
        screenShare: $('set-screen').value,
        unmute: $('set-unmute').value,
        chat: $('set-chat').value,
        guestCameras: $('set-cameras').checked,
        maxParticipants: Number($('set-max').value),
        lobbyBypass: $('set-bypass').value,
        guestsAllowed: $('set-guests').checked,
        requireMfa: $('set-mfa').checked,
        // Fixed at creation: sent back as it is.
        e2ee: !!state.settings?.e2ee,
        webinar: !!state.settings?.webinar,
      },
    };
    policyAsk = { level: currentLevel, settings: asked.settings, raised: false };
    send(asked);
    const passcode = passcodeChange();
    if (passcode) send(passcode);
  });
  $('end-btn').addEventListener('click', () => {
    if (confirm(t('host.end-confirm'))) send({ type: 'end' });
  });
}
