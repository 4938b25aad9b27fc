// The client's words in English, Dutch and Swedish. Each language's messages
// are in a catalogue, web/i18n/<lang>.json (served from this server like the
// rest of the client: no CDN, nothing fetched from elsewhere), keyed by message
// id. The language is the one this browser chose with the picker (kept in
// localStorage), else the first of the browser's languages we have, else
// English. tests/e2e/i18n-catalogue.test.mjs fails when a key is missing in a
// language, or unused in the code, or used and missing.
//
// A message is a string with {placeholders}, or, where it counts something,
// an object of plural forms ({"one": …, "other": …}) chosen with
// Intl.PluralRules by the `count` parameter.

/** The languages there are catalogues for, with their own names (shown in the picker). */
export const LANGUAGES = /** @type {const} */ ({ en: 'English', nl: 'Nederlands', sv: 'Svenska' });
/** @typedef {keyof typeof LANGUAGES} Lang */
const STORE = 'convene-language';
/** The picker's choice for the pages and files the server words itself (sign-in problems, the calendar file). */
const COOKIE = 'convene-lang';

/** The language to show: the picker's choice, else the browser's, else English. @returns {Lang} */
export function chooseLanguage(/** @type {readonly string[]} */ wanted = navigator.languages || [navigator.language]) {
  const stored = safeGet();
  if (stored && stored in LANGUAGES) return /** @type {Lang} */ (stored);
  for (const tag of wanted) {
    const base = String(tag).toLowerCase().split('-')[0];
    // By base language only ("nl-BE" is Dutch); no guessing between neighbours.
    if (base in LANGUAGES) return /** @type {Lang} */ (base);
  }
  return 'en';
}

function safeGet() {
  try { return localStorage.getItem(STORE); } catch { return null; }
}

/** @type {Lang} */
export const lang = chooseLanguage();
document.documentElement.lang = lang;
if (safeGet() === lang) rememberForServer(lang);

/** Tell the server the picker's choice (a cookie, a year): it goes by Accept-Language otherwise. @param {string} l */
function rememberForServer(l) {
  document.cookie = `${COOKIE}=${l}; Path=/; Max-Age=31536000; SameSite=Lax${location.protocol === 'https:' ? '; Secure' : ''}`;
}

/** @param {string} l @returns {Promise<Record<string, string | Record<string, string>>>} */
async function load(l) {
  const res = await fetch(`/assets/i18n/${l}.json`);
  if (!res.ok) throw new Error(`catalogue ${l}: ${res.status}`);
  return res.json();
}

/** @type {Record<string, string | Record<string, string>>} */
let catalogue = {};
/** English, for a message a catalogue lacks (the test forbids it; a half-updated server may not). */
/** @type {Record<string, string | Record<string, string>>} */
let english = {};
try {
  catalogue = await load(lang);
  english = lang === 'en' ? catalogue : await load('en').catch(() => ({}));
} catch (e) {
  console.error('i18n:', e);
}
const plurals = new Intl.PluralRules(lang);

/**
 * The message `id` in the chosen language, with `{name}` placeholders filled
 * from `params`; a message with plural forms is chosen by `params.count`.
 * @param {string} id @param {Record<string, string | number>} [params]
 */
export function t(id, params = {}) {
  let msg = catalogue[id] ?? english[id] ?? id;
  if (typeof msg === 'object') {
    const n = Number(params.count ?? 0);
    msg = msg[plurals.select(n)] ?? msg.other ?? id;
  }
  return msg.replace(/\{(\w+)\}/g, (whole, key) => (key in params ? String(params[key]) : whole));
}

/**
 * The message as nodes: its text, with each `{placeholder}` whose parameter is
 * a Node put in as that node (a name in a <bdi>, a link), so that word order
 * is the language's and what a person typed stays apart from our words.
 * @param {string} id @param {Record<string, string | number | Node>} params
 * @returns {Array<string | Node>}
 */
export function tNodes(id, params) {
  /** @type {Record<string, string | number>} */
  const plain = {};
  for (const [k, v] of Object.entries(params)) if (!(v instanceof Node)) plain[k] = v;
  const text = t(id, plain);
  /** @type {Array<string | Node>} */
  const out = [];
  let last = 0;
  for (const m of text.matchAll(/\{(\w+)\}/g)) {
    const v = params[m[1]];
    if (!(v instanceof Node)) continue;
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(v);
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

/** A time of day ("14:05" in Dutch and Swedish, "2:05 PM" in English). @param {Date} date */
export function formatTime(date) {
  return new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit' }).format(date);
}

/**
 * Put the words into a page's static elements: `data-i18n` (the text),
 * `data-i18n-placeholder`, `data-i18n-label` (aria-label), and the document
 * title from <html data-i18n-title>.
 * @param {ParentNode} [root]
 */
export function translatePage(root = document) {
  // A message no catalogue has (none could be loaded) keeps the page's English.
  const known = (/** @type {string | undefined} */ id) => !!id && (id in catalogue || id in english);
  for (const el of /** @type {NodeListOf<HTMLElement>} */ (root.querySelectorAll('[data-i18n]'))) {
    if (known(el.dataset.i18n)) el.textContent = t(el.dataset.i18n || '');
  }
  for (const el of /** @type {NodeListOf<HTMLElement>} */ (root.querySelectorAll('[data-i18n-placeholder]'))) {
    if (known(el.dataset.i18nPlaceholder)) el.setAttribute('placeholder', t(el.dataset.i18nPlaceholder || ''));
  }
  for (const el of /** @type {NodeListOf<HTMLElement>} */ (root.querySelectorAll('[data-i18n-label]'))) {
    if (known(el.dataset.i18nLabel)) el.setAttribute('aria-label', t(el.dataset.i18nLabel || ''));
  }
  const title = document.documentElement.dataset.i18nTitle;
  if (known(title)) document.title = t(title || '');
  // Translated (or left English, no catalogue loading): show the page i18n-early.js hid.
  document.documentElement.classList.remove('i18n-pending');
  document.documentElement.style.visibility = '';
}

/**
 * The language picker: a labelled <select> of the languages, each named in
 * itself. A choice is kept for this browser and the page loads again in it.
 * @param {HTMLElement} container
 */
export function languagePicker(container) {
  const label = document.createElement('label');
  label.htmlFor = 'language-select';
  label.textContent = t('language.label');
  const select = document.createElement('select');
  select.id = 'language-select';
  for (const [code, name] of Object.entries(LANGUAGES)) {
    const option = new Option(name, code, false, code === lang);
    option.lang = code;
    select.add(option);
  }
  select.addEventListener('change', () => {
    try { localStorage.setItem(STORE, select.value); } catch { /* private mode: this page only */ }
    rememberForServer(select.value);
    location.reload();
  });
  container.classList.add('language-picker');
  container.replaceChildren(label, select);
}
