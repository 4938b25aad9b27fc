// A webinar's questions (Q&A, issue 20, protocol.md §4.18, §5.25): anyone in
// a webinar asks; the stage (hosts, co-hosts, presenters) sees every question,
// the rest of the audience only the answered ones, without who asked. Hosts
// mark a question answered or dismiss it. A panel of its own beside chat,
// only in webinars; its button counts the open questions for the stage.
import { t, formatTime } from './i18n.js';
import { $, state, send, amHost, amAttendee, isWebinar } from './meeting-state.js';
import { serverError } from './errors.js';
import { nameText, tagText, personButton } from './text.js';

/** @typedef {{id: number, participantId?: string, name?: string, text: string, askedAt: number, answered: boolean}} Question */

/** @type {Map<number, Question>} the questions this page was shown, by id */
const questions = new Map();

/** The `ask` on its way: its text and when it went (an error soon after is about it). */
/** @type {{text: string, at: number} | null} */ let asking = null;

/** How long after an `ask` an error is taken to be about it. */
const ASK_ERROR_MS = 10000;

/** Polite announcements (meeting.js hands in its announcer). */
/** @type {(text: string) => void} */ let announce = () => {};

/** The first words of a question, to name the buttons that act on it. @param {Question} q */
function excerpt(q) {
  const one = q.text.replace(/\s+/g, ' ');
  return one.length > 40 ? `${one.slice(0, 39)}…` : one;
}

/** A question came (`question`): new, or marked answered. @param {Question} q */
export function questionArrived(q) {
  const known = questions.get(q.id);
  questions.set(q.id, q);
  const mine = q.participantId === state.me;
  if (!known && mine) {
    // Ours, taken: the box empties (unless something else was typed since).
    if (asking && $('qa-input').value.trim() === asking.text) $('qa-input').value = '';
    asking = null;
    showError('');
    $('qa-status').textContent = t('qa.sent');
  } else if (!known && !amAttendee()) {
    announce(q.name != null ? t('qa.announce-new', { name: q.name }) : t('qa.announce-new-anonymous'));
  }
  if (mine && q.answered && known && !known.answered) announce(t('qa.announce-answered'));
  renderQuestions();
}

/** A page of questions (`questions`, after a welcome or on going on stage): merged by id. @param {Question[]} list */
export function questionsPage(list) {
  for (const q of list) questions.set(q.id, q);
  renderQuestions();
}

/** A host dismissed a question (`question-removed`). @param {number} id */
export function questionRemoved(id) {
  if (questions.delete(id)) renderQuestions();
}

/** A new welcome: the questions come again after it. */
export function resetQuestions() {
  questions.clear();
  asking = null;
  renderQuestions();
}

/**
 * An error soon after our `ask` is about it: said in the panel (an alert),
 * not in the status line. Returns whether it was.
 * @param {{code: string, message?: string}} msg
 */
export function questionError(msg) {
  // The server's words for a refused question (protocol.md §4.18), else an error of those codes soon after asking.
  const aboutQuestions = /question/.test(msg.message || '');
  if (!aboutQuestions && (!asking || Date.now() - asking.at > ASK_ERROR_MS)) return false;
  if (!['rate-limited', 'invalid', 'forbidden', 'wrong-state'].includes(msg.code)) return false;
  asking = null;
  showError(serverError(msg));
  return true;
}

/** @param {string} text */
function showError(text) {
  $('qa-error').textContent = text;
  $('qa-error').hidden = !text;
}

/** Written messages are off in this meeting (its chat setting `nobody`): no questions either. */
function questionsOff() {
  return state.settings?.chat === 'nobody';
}

/** The open questions, for the stage's count. */
function openCount() {
  let n = 0;
  for (const q of questions.values()) if (!q.answered) n++;
  return n;
}

/** What the list shows, to draw it again only when that changed. */
let drawn = '';

/** The Q&A button, its count, and the panel, drawn from what this page knows. */
export function renderQuestions() {
  const webinar = isWebinar();
  const stage = webinar && !amAttendee();
  const host = webinar && amHost();
  $('qa-btn').hidden = !webinar;
  if (!webinar && !$('qa-panel').hidden) {
    $('qa-panel').hidden = true;
    $('qa-btn').setAttribute('aria-expanded', 'false');
  }
  const open = stage ? openCount() : 0;
  $('qa-badge').hidden = open === 0;
  $('qa-badge').textContent = open ? t('qa.open-count', { count: open }) : '';
  $('qa-hint').textContent = t(stage ? 'qa.hint-stage' : 'qa.hint-audience');
  const off = questionsOff();
  $('qa-input').disabled = off;
  $('qa-ask').disabled = off;
  $('qa-off').hidden = !off;

  // Open ones first, oldest first; then the answered ones.
  const shown = [...questions.values()].sort((a, b) => Number(a.answered) - Number(b.answered) || a.id - b.id);
  const now = JSON.stringify([state.me, host, shown]);
  $('qa-empty').hidden = shown.length > 0;
  if (now === drawn) return;
  drawn = now;
  const list = $('qa-list');
  // Keep a keyboard user's place: the same button in the same question, else the next question's.
  const el = document.activeElement;
  const had = el instanceof HTMLElement && list.contains(el)
    ? { id: Number(el.closest('li')?.dataset.id), action: el.dataset.action || '' } : null;
  list.replaceChildren(...shown.map((q) => questionItem(q, host)));
  if (had && !list.contains(document.activeElement)) {
    const row = /** @type {HTMLElement[]} */ ([...list.querySelectorAll('li')]).find((li) => Number(li.dataset.id) >= had.id)
      || /** @type {HTMLElement | null} */ (list.querySelector('li:last-child'));
    const target = row?.querySelector(`button[data-action="${had.action}"]`) || row?.querySelector('button');
    (/** @type {HTMLElement | null} */ (target) || $('qa-input')).focus();
  }
}

/** One question in the list. @param {Question} q @param {boolean} host */
function questionItem(q, host) {
  const li = document.createElement('li');
  li.dataset.id = String(q.id);
  li.classList.toggle('answered', q.answered);
  const who = document.createElement('span');
  who.className = 'who';
  who.append(q.name != null ? nameText(q.name) : tagText(t('qa.an-attendee')),
    ...(q.participantId === state.me ? [tagText(` ${t('tile.you')}`)] : []));
  const time = document.createElement('time');
  const at = new Date(q.askedAt);
  time.dateTime = at.toISOString();
  time.textContent = formatTime(at);
  // Answered or open, in words (not colour alone).
  const status = document.createElement('span');
  status.className = `qa-state ${q.answered ? 'is-answered' : 'is-open'}`;
  status.textContent = t(q.answered ? 'qa.answered' : 'qa.open');
  const text = document.createElement('div');
  text.className = 'qa-text';
  text.textContent = q.text;
  li.append(who, time, status, text);
  if (host) {
    const row = document.createElement('div');
    row.className = 'row wrap';
    const what = excerpt(q);
    if (!q.answered) {
      const mark = personButton(t('qa.mark'), t('qa.mark-name', { question: what }), () => send({ type: 'mark-answered', id: q.id }));
      mark.dataset.action = 'mark';
      row.append(mark);
    }
    const dismiss = personButton(t('qa.dismiss'), t('qa.dismiss-name', { question: what }), () => send({ type: 'dismiss-question', id: q.id }));
    dismiss.dataset.action = 'dismiss';
    row.append(dismiss);
    li.append(row);
  }
  return li;
}

/** The ask form. @param {(text: string) => void} say polite announcements */
export function wireQuestions(say) {
  announce = say;
  $('qa-form').addEventListener('submit', (/** @type {Event} */ e) => {
    e.preventDefault();
    const text = $('qa-input').value.trim();
    if (!text) { showError(t('qa.empty')); return; }
    showError('');
    $('qa-status').textContent = '';
    asking = { text, at: Date.now() };
    send({ type: 'ask', text });
  });
  // Ctrl+Enter (or Cmd+Enter) asks; Enter alone is a new line.
  $('qa-input').addEventListener('keydown', (/** @type {KeyboardEvent} */ e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); $('qa-form').requestSubmit(); }
  });
}
