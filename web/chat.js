// Chat: the log (kept chat comes with the welcome), sending, and the count of
// messages not yet seen while the panel is closed.
import { t, formatTime } from './i18n.js';
import { badge } from './identity.js';
import { $, state, send } from './meeting-state.js';
import { nameText, tagText } from './text.js';
import { isE2ee, sendEncryptedChat } from './e2ee-meeting.js';

/** @param {any} m a chat message as the server sends it */
export function addChat(m) {
  const li = document.createElement('li');
  const who = document.createElement('span');
  who.className = 'who';
  who.append(nameText(m.name), ...(m.participantId === state.me ? [tagText(` ${t('tile.you')}`)] : []), badge(m.identity));
  const time = document.createElement('time');
  const at = new Date(m.sentAt);
  time.dateTime = at.toISOString();
  time.textContent = formatTime(at);
  const text = document.createElement('div');
  text.textContent = m.text;
  li.append(who, time, text);
  $('chat-log').append(li);
  li.scrollIntoView({ block: 'end' });
}

/** A new connection: the log comes again with the welcome. @param {any[]} messages */
export function resetChat(messages) {
  $('chat-log').replaceChildren();
  for (const m of messages) addChat(m);
}

/** @returns {boolean} whether the message is one not yet seen (the panel is closed) */
export function chatArrived(/** @type {any} */ m) {
  addChat(m);
  if (!$('chat-panel').hidden) return false;
  state.unreadChat++;
  return true;
}

export function wireChat() {
  $('chat-form').addEventListener('submit', (/** @type {Event} */ e) => {
    e.preventDefault();
    const text = $('chat-input').value.trim();
    if (!text) return;
    if (isE2ee()) {
      // The server relays it unread and does not echo it: shown here at once.
      if (!sendEncryptedChat(text)) return;
      const me = state.participants.get(state.me);
      addChat({ participantId: state.me, name: me?.name || '', text, sentAt: Date.now(), identity: me?.identity });
    } else {
      send({ type: 'chat', text });
    }
    $('chat-input').value = '';
  });
}
