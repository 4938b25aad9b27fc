// The browser client's message catalogues (web/i18n/<lang>.json, read by
// web/i18n.js), checked without a browser: every language has every message,
// with the same placeholders and the plural forms its language needs; every
// message is used by the client, and every message the client uses exists. The
// English left in the HTML (shown until the catalogue loads) is the catalogue's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './harness.mjs';

const WEB = join(ROOT, 'web');
const LANGS = ['en', 'nl', 'sv'];
const catalogues = Object.fromEntries(LANGS.map((l) => [l, JSON.parse(readFileSync(join(WEB, 'i18n', `${l}.json`), 'utf8'))]));
const en = catalogues.en;
const files = readdirSync(WEB).filter((f) => /\.(js|html)$/.test(f)).map((f) => ({ name: f, text: readFileSync(join(WEB, f), 'utf8') }));
const scripts = files.filter((f) => f.name.endsWith('.js'));
const pages = files.filter((f) => f.name.endsWith('.html'));
/** The server's own few messages (the calendar file, the sign-in problem page) come from the same catalogues: crates/convene-server/src/words.rs. */
const SERVER = join(ROOT, 'crates', 'convene-server', 'src');
const serverIds = readdirSync(SERVER).filter((f) => f.endsWith('.rs'))
  .map((f) => readFileSync(join(SERVER, f), 'utf8').split('#[cfg(test)]')[0].replace(/^\s*\/\/.*$/gm, ''))
  .flatMap((text) => [...text.matchAll(/\.t\(\s*"([^"]+)"/g)].map((m) => m[1]));

/** The placeholders of a message (of each of its plural forms). */
const placeholders = (msg) => [...new Set(Object.values(typeof msg === 'string' ? { other: msg } : msg)
  .flatMap((s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1])))].sort();

/** Message ids a page names: data-i18n, -placeholder, -label, -title. */
const pageIds = (text) => [...text.matchAll(/data-i18n(?:-placeholder|-label|-title)?="([^"]+)"/g)].map((m) => m[1]);
/** Message ids the scripts name: every quoted string that is a message id, or looks like one (a catalogue's prefix, a dot). */
const prefixes = new Set(Object.keys(en).map((k) => k.split('.')[0]));
const scriptIds = (text) => [...text.matchAll(/(['"`])([a-z][a-z0-9-]*(?:\.[a-z0-9-]+)+)\1/g)]
  .map((m) => m[2])
  .filter((id) => prefixes.has(id.split('.')[0]));
/** The ids passed to t() and tNodes() as literals (they must exist even without a known prefix). */
const calledIds = (text) => [...text.matchAll(/\bt(?:Nodes)?\(\s*(['"])([^'"]+)\1/g)].map((m) => m[2]);

test('every language has every message, with the same placeholders and its plural forms', () => {
  for (const lang of LANGS) {
    const cat = catalogues[lang];
    const categories = new Intl.PluralRules(lang).resolvedOptions().pluralCategories;
    assert.deepEqual(Object.keys(cat).filter((k) => !(k in en)), [], `${lang}.json: messages English does not have`);
    assert.deepEqual(Object.keys(en).filter((k) => !(k in cat)), [], `${lang}.json: messages missing`);
    for (const [id, msg] of Object.entries(cat)) {
      assert.equal(typeof msg, typeof en[id], `${lang} ${id}: a plural message in one language is one in all`);
      if (typeof msg === 'object') {
        for (const c of categories) assert.ok(typeof msg[c] === 'string' && msg[c], `${lang} ${id}: plural form "${c}"`);
      } else {
        assert.ok(msg.trim(), `${lang} ${id}: empty`);
      }
      assert.deepEqual(placeholders(msg), placeholders(en[id]), `${lang} ${id}: placeholders`);
    }
  }
});

test('every message is used by the client or the server, and every message they use exists', () => {
  assert.ok(serverIds.includes('invite.join'), 'the server\'s calendar file words come from the catalogue');
  const used = new Set([
    ...serverIds,
    ...pages.flatMap((f) => pageIds(f.text)),
    ...scripts.flatMap((f) => [...scriptIds(f.text), ...calledIds(f.text)]),
  ]);
  assert.deepEqual([...used].filter((id) => !(id in en)).sort(), [], 'used in web/ but in no catalogue');
  assert.deepEqual(Object.keys(en).filter((id) => !used.has(id)), [], 'in the catalogues but used nowhere in web/');
});

test('the English in the pages is the catalogue\'s', () => {
  const decode = (s) => s.replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'");
  for (const f of pages) {
    for (const m of f.text.matchAll(/<(\w+)\b([^>]*)\bdata-i18n="([^"]+)"([^>]*)>([^<]*)<\/\1>/g)) {
      assert.equal(decode(m[5]).trim(), en[m[3]], `${f.name}: <${m[1]} data-i18n="${m[3]}">`);
    }
    for (const m of f.text.matchAll(/<[^>]*>/g)) {
      const tag = m[0];
      for (const [attr, key] of [['placeholder', 'data-i18n-placeholder'], ['aria-label', 'data-i18n-label']]) {
        const id = new RegExp(`${key}="([^"]+)"`).exec(tag)?.[1];
        if (!id) continue;
        const shown = new RegExp(`\\s${attr}="([^"]*)"`).exec(tag)?.[1];
        assert.equal(decode(shown ?? ''), en[id], `${f.name}: ${attr} of ${id}`);
      }
    }
  }
});

test('every element with words in the pages names its message', () => {
  // Text between tags that is neither a message's English nor punctuation: a word someone would read untranslated.
  for (const f of pages) {
    const body = f.text.replace(/<head>[\s\S]*?<\/head>/, '').replace(/<!--[\s\S]*?-->/g, '');
    for (const m of body.matchAll(/<(\w+)\b([^>]*)>([^<]*[A-Za-z][^<]*)</g)) {
      const [, tag, attrs, text] = m;
      if (/data-i18n="/.test(attrs) || text.trim() === 'Convene') continue; // the product's name is no word to translate
      assert.fail(`${f.name}: <${tag}${attrs}> holds "${text.trim()}" without data-i18n`);
    }
  }
});

test('the language is chosen from the picker, else the browser, else English', async () => {
  // i18n.js's choice, run on its own: no DOM, no fetch.
  const source = readFileSync(join(WEB, 'i18n.js'), 'utf8');
  const fn = source.slice(source.indexOf('export function chooseLanguage'), source.indexOf('function safeGet'));
  const LANGUAGES = { en: 'English', nl: 'Nederlands', sv: 'Svenska' };
  let stored = null;
  // eslint-disable-next-line no-new-func
  const choose = new Function('LANGUAGES', 'safeGet', 'navigator', `${fn.replace('export ', '')}; return chooseLanguage;`)(LANGUAGES, () => stored, { languages: ['en-US'] });
  assert.equal(choose(['nl-NL', 'en']), 'nl');
  assert.equal(choose(['de-DE', 'sv-FI', 'nl']), 'sv');
  assert.equal(choose(['de-DE', 'fr']), 'en');
  assert.equal(choose([]), 'en');
  stored = 'sv';
  assert.equal(choose(['nl-NL']), 'sv', 'the picker wins over the browser');
  stored = 'xx';
  assert.equal(choose(['nl-BE']), 'nl', 'an unknown stored choice is ignored');
});

test('the server\'s fixed English that the client matches to translate is still the server\'s', () => {
  // Some server texts a person reads carry no code: the client knows their
  // fixed forms (web/errors.js, levels.js, identity.js, check.js). When the
  // server's wording changes, this fails rather than the page going English.
  const rust = (path) => readFileSync(join(ROOT, 'crates', path), 'utf8');
  const errors = readFileSync(join(WEB, 'errors.js'), 'utf8');
  const reasonsTable = errors.slice(errors.indexOf('const REASONS'), errors.indexOf('});', errors.indexOf('const REASONS')));
  const clientReasons = [...reasonsTable.matchAll(/^\s*'([^']+)': 'reason\./gm)].map((m) => m[1]).sort();
  const access = rust('convene-meeting/src/access.rs');
  const rule = access.slice(access.indexOf('pub fn check('), access.indexOf('pub fn permissions('));
  const serverReasons = [...rule.matchAll(/"([^"\\]+)"/g)].map((m) => m[1]).sort();
  assert.deepEqual(clientReasons, serverReasons, 'permission reasons (access.rs check) and errors.js REASONS');

  const expect = [
    ['convene-meeting/src/policy.rs', [en['level.unavailable-sign-in'],
      "only people verified by their organisation's sign-in may join", 'sign in with a second factor (such as a security key or code) to join']],
    ['convene-meeting/src/room/host_actions.rs', ['still wait in the lobby until someone leaves']],
    ['convene-meeting/src/room/levels.rs', ['{} does not admit {}', '{} requires the lobby: {} wait there for a host to admit them again']],
    ['convene-meeting/src/room/passcode.rs', ['{} requires a passcode: it can be changed, not removed']],
    ['convene-meeting/src/names.rs', ['please give a name', 'a name is at most', 'a name may not contain']],
    ['convene-meeting/src/room/chat.rs', ['a chat message cannot be empty', 'a chat message is at most']],
    ['convene-meeting/src/room/questions.rs', ['a question cannot be empty', 'a question is at most', 'one question every few seconds',
      'you have {MAX_OPEN_PER_ASKER} questions waiting', 'written messages are turned off in this meeting, questions too']],
    ['convene-meeting/src/room/hands.rs', ['your hand was just raised or lowered']],
    ['convene-server/src/check.rs', [en['check.probe.server-bad-sdp'], en['check.probe.server-setup'], en['check.probe.server-closed']]],
    ['convene-server/src/ws.rs', ['try again in {secs} seconds']],
    ['convene-auth/src/lib.rs', [en['common.trial-host']]],
  ];
  for (const [path, texts] of expect) {
    const source = rust(path).replace(/\\\s*\n\s*/g, '').replace(/\\"/g, '"');
    for (const text of texts) assert.ok(source.includes(text), `${path} no longer says "${text}"`);
  }
});
