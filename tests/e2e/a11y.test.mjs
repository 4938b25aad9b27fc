// Accessibility, measured (issue 17, "Accessibility: WCAG 2.2 AA, measured"):
// axe-core on every page state a person meets, in English, Dutch and Swedish,
// at a laptop's width and a phone's; the keyboard alone (focus after joining,
// leaving and in dialogs, Escape, a visible focus ring); reduced motion; and
// the identity badges on tiles.
//
// One Chromium for the file; each person is a context of it (its own storage,
// so its own remembered language). One meeting per language, resized between
// widths rather than opened again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join as pathJoin } from 'node:path';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { startServer, startProvider, freePort, launchPerson, until, ROOT } from './harness.mjs';

const WIDTHS = [{ width: 1280, height: 800 }, { width: 390, height: 844 }];
/**
 * Every WCAG 2.0, 2.1 and 2.2 rule at levels A and AA that axe has, and its
 * best practices. No rule is switched off. axe leaves some WCAG rules out even
 * when their tag is asked for (experimental: css-orientation-lock,
 * p-as-heading, table-fake-caption, td-has-header; deprecated:
 * aria-roledescription, audio-caption): axeNow switches each WCAG A/AA rule on
 * by name. Experimental best practices stay off: they are no WCAG requirement.
 */
const TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'];
const WCAG_TAGS = TAGS.filter((t) => t.startsWith('wcag'));
const AXE_SOURCE = readFileSync(pathJoin(ROOT, 'tests', 'e2e', 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');

let server;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  server = await startServer();
  ({ browser } = await launchPerson());
});

after(async () => {
  await browser?.close().catch(() => {});
  server?.stop();
});

/** A person: a context of the shared browser, in `locale`, with its own page. */
async function person(locale = 'en-GB', options = {}) {
  const context = await browser.newContext({ viewport: WIDTHS[0], locale, ...options });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`page error (${locale}):`, e.message));
  return page;
}

/** axe's violations on the page now, as "rule: targets" lines. @param {import('playwright-core').Page} page */
async function axeNow(page) {
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(AXE_SOURCE);
  return page.evaluate(async ([tags, wcag]) => {
    const axe = /** @type {any} */ (window).axe;
    const every = Object.fromEntries(axe.getRules(wcag).map((/** @type {any} */ r) => [r.ruleId, { enabled: true }]));
    const r = await axe.run(document, { runOnly: { type: 'tag', values: tags }, rules: every });
    return r.violations.map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 4).map((n) => n.target.join(' ')).join(', ')}${v.nodes.length > 4 ? ` and ${v.nodes.length - 4} more` : ''}`);
  }, [TAGS, WCAG_TAGS]);
}

/** Two animation frames: layout and ResizeObservers have run. */
const settle = (page) => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(undefined)))));

/**
 * Run axe on `page` at each width, noting every violation as
 * "lang · state · width: rule". Leaves the page at the first width.
 * @param {string[]} failures @param {string} lang @param {string} state @param {import('playwright-core').Page} page
 */
async function audit(failures, lang, state, page) {
  for (const size of WIDTHS) {
    await page.setViewportSize(size);
    await settle(page);
    for (const v of await axeNow(page)) failures.push(`${lang} · ${state} · ${size.width}px: ${v}`);
  }
  await page.setViewportSize(WIDTHS[0]);
  await settle(page);
}

/** Wait for the camera preview, then click Join (by id: the words are the language's). */
async function joinFromPrejoin(page, name) {
  await page.locator('#name').fill(name);
  await page.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
  await page.locator('#join').click();
}

const isOpen = (page, id) => page.evaluate((i) => /** @type {HTMLDialogElement} */ (document.getElementById(i))?.open === true, id);

for (const [lang, locale] of [['en', 'en-GB'], ['nl', 'nl-NL'], ['sv', 'sv-SE']]) {
  test(`axe finds nothing on any page state in ${lang}, at 1280 and 390 px`, { timeout: 180000 }, async () => {
    /** @type {string[]} */
    const failures = [];
    const host = await person(locale);
    const check = await person(locale);
    const gus = await person(locale);
    const greta = await person(locale);
    try {
      // The check runs for up to 15 s: audited while running now, finished at the end.
      await check.goto(`${server.url}/check`);
      await check.locator('#progress').waitFor();
      await until('the check under way', () => check.evaluate(() => (document.getElementById('progress')?.textContent || '') !== ''));
      assert.equal(await check.evaluate(() => document.documentElement.lang), lang);
      await audit(failures, lang, 'check (running)', check);

      await host.goto(server.url);
      await host.locator('#create').waitFor();
      assert.equal(await host.evaluate(() => document.documentElement.lang), lang, 'the page speaks the browser\'s language');
      await audit(failures, lang, 'home', host);
      await host.locator('#title').fill('Overleg · Samråd · Planning');
      await host.locator('#lobby').check();
      await host.locator('#create details summary').click();
      await audit(failures, lang, 'create (filled, more settings open)', host);
      await host.locator('#create button[type=submit]').click();
      await host.locator('#created').waitFor();
      await until('the links filled in', async () => (await host.locator('#join-link').inputValue()) !== '');
      const link = await host.locator('#join-link').inputValue();
      const hostLink = await host.locator('#host-link').inputValue();
      await audit(failures, lang, 'created', host);

      // Pre-join, as host and as a guest.
      await host.goto(hostLink);
      await host.locator('#host-note').waitFor();
      await host.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
      await audit(failures, lang, 'pre-join (host)', host);
      await gus.goto(link);
      await gus.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
      await audit(failures, lang, 'pre-join (guest)', gus);

      // The host alone.
      await joinFromPrejoin(host, 'Hana');
      await host.locator('#meeting').waitFor({ state: 'visible' });
      await host.locator('#grid .tile video').waitFor();
      await audit(failures, lang, 'meeting, host alone', host);

      // A guest in the lobby, and the host seeing them arrive.
      await joinFromPrejoin(gus, 'Gus');
      await gus.locator('#lobby').waitFor({ state: 'visible' });
      await host.locator('#lobby-list li').waitFor();
      await audit(failures, lang, 'lobby (guest waiting)', gus);
      await audit(failures, lang, 'meeting, host sees a lobby arrival', host);
      await host.locator('#admit-all').click();
      await gus.locator('#meeting').waitFor({ state: 'visible' });
      await greta.goto(link);
      await joinFromPrejoin(greta, 'Greta');
      await host.locator('#lobby-list li').waitFor();
      await host.locator('#admit-all').click();
      await greta.locator('#meeting').waitFor({ state: 'visible' });
      await until('three tiles playing on the host\'s page', () => host.evaluate(() =>
        [...document.querySelectorAll('#grid .tile video')].filter((v) => /** @type {HTMLVideoElement} */ (v).videoWidth > 0).length === 3));
      await audit(failures, lang, 'meeting with 3 (host)', host);
      await audit(failures, lang, 'meeting with 3 (guest)', gus);

      // Panels.
      await host.locator('#people-btn').click();
      await host.locator('#people-panel').waitFor({ state: 'visible' });
      await audit(failures, lang, 'People panel (host)', host);
      await host.locator('#people-btn').click();
      await gus.locator('#people-btn').click();
      await gus.locator('#people-panel').waitFor({ state: 'visible' });
      await audit(failures, lang, 'People panel (guest)', gus);
      await gus.locator('#people-btn').click();
      await gus.locator('#chat-btn').click();
      await gus.locator('#chat-input').fill('Hej! Goedemiddag.');
      await gus.locator('#chat-input').press('Enter');
      await gus.locator('#chat-log li').waitFor();
      await audit(failures, lang, 'Chat panel (guest, a message sent)', gus);
      await host.locator('#chat-badge').waitFor({ state: 'visible' });
      await audit(failures, lang, 'meeting, an unread chat message (host)', host);
      await host.locator('#chat-btn').click();
      await audit(failures, lang, 'Chat panel (host)', host);
      await host.locator('#chat-btn').click();

      // Reactions: the bar open, one sent and shown on a tile.
      await gus.locator('#react-btn').click();
      await gus.locator('#reactions').waitFor({ state: 'visible' });
      await gus.locator('#reactions button').first().click();
      await host.locator('.tile .reaction').first().waitFor();
      await audit(failures, lang, 'reactions bar open, a reaction shown (guest)', gus);
      await audit(failures, lang, 'a reaction shown (host)', host);
      await gus.locator('#react-btn').click();

      // Raised hand: the host's queue.
      await greta.locator('#hand-btn').click();
      await host.locator('#people-btn').click();
      await host.locator('#hands li').waitFor();
      await audit(failures, lang, 'People with a raised hand (host)', host);
      await host.locator('#people-btn').click();

      // Dialogs.
      for (const [button, dialog, what] of [['#settings-btn', 'settings-dialog', 'settings'], ['#invite-btn', 'invite-dialog', 'invitation'], ['#devices-btn', 'devices-dialog', 'devices']]) {
        if (!(await host.locator(button).count())) { failures.push(`${lang} · ${what}: no ${button} to open it`); continue; }
        await host.locator(button).click();
        await until(`the ${what} dialog open`, () => isOpen(host, dialog));
        if (dialog === 'invite-dialog') await until('the invitation filled in', async () => (await host.locator('#invite-dialog #invite-text').inputValue()) !== '');
        await audit(failures, lang, `${what} dialog`, host);
        await host.keyboard.press('Escape');
        await until(`the ${what} dialog closed`, async () => !(await isOpen(host, dialog)));
      }

      // A level change, refused: the next level (OFFICIAL-SENSITIVE in the
      // default policy) needs a passcode this meeting has not got; the host
      // is told why, and the picker goes back to the level the meeting has.
      const next = await host.evaluate(() => {
        const s = /** @type {HTMLSelectElement} */ (document.getElementById('level-select'));
        const opts = [...s.options];
        return opts.slice(s.selectedIndex + 1).find((o) => !o.disabled)?.value || null;
      });
      if (next) {
        await host.locator('#level-select').selectOption(next);
        await host.locator('#level-btn').click();
        await until('the refusal shown', () => host.evaluate(() => {
          const st = document.getElementById('status');
          return !!st && st.classList.contains('warn') && (st.textContent || '').trim() !== '';
        }));
        await audit(failures, lang, 'a refused level change (host)', host);
      } else {
        failures.push(`${lang} · level change: no higher level to raise the meeting to`);
      }

      // Layouts: the speaker view, a person pinned.
      await host.locator('#layout-select').selectOption('speaker');
      await until('the speaker view', () => host.evaluate(() => document.getElementById('tiles')?.dataset.layout === 'speaker'));
      await audit(failures, lang, 'speaker view (host)', host);
      await host.locator('#layout-select').selectOption('auto');
      const pin = host.locator('#grid .tile:not(.self) .tile-tools .pin').first();
      await host.locator('#grid .tile:not(.self)').first().hover();
      await pin.click();
      await until('a pinned tile', () => host.evaluate(() => !!document.querySelector('#grid .tile.featured')));
      await audit(failures, lang, 'a person pinned (host)', host);
      await pin.click();

      // Sharing a screen: the presentation view.
      await gus.locator('#share-btn').click();
      await host.locator('#stage .tile video').waitFor();
      await gus.locator('#stage .tile video').waitFor();
      await until('the presentation view', () => host.evaluate(() => document.getElementById('tiles')?.dataset.layout === 'presentation'));
      await audit(failures, lang, 'a guest sharing, presentation view (host)', host);
      await audit(failures, lang, 'sharing (the sharer)', gus);
      // More tiles than the strip holds: the second page. At 390 px three
      // people fit below a shared screen; at 320 px (WCAG 1.4.10's reflow
      // width) two do, so the third is on a second page.
      await host.setViewportSize({ width: 320, height: 844 });
      await settle(host);
      if (await host.locator('#pager').isVisible()) {
        await host.locator('#page-next').click();
        await settle(host);
        for (const v of await axeNow(host)) failures.push(`${lang} · second page of tiles · 320px: ${v}`);
        await host.locator('#page-prev').click();
      } else {
        failures.push(`${lang} · second page of tiles · 320px: no pager shown (3 people and a screen)`);
      }
      await host.setViewportSize(WIDTHS[0]);

      // Remove: the confirmation, then the removed page.
      await host.locator('#people-btn').click();
      await host.locator('#people li', { hasText: 'Greta' }).locator('button').last().click();
      await until('the remove dialog open', () => isOpen(host, 'remove-dialog'));
      await audit(failures, lang, 'remove confirmation', host);
      await host.locator('#remove-form button[type=submit]').click();
      await greta.locator('#left').waitFor({ state: 'visible' });
      await audit(failures, lang, 'removed page', greta);
      await host.locator('#people-btn').click();

      // Leaving, then the meeting ended.
      await gus.locator('#leave-btn').click();
      await gus.locator('#left').waitFor({ state: 'visible' });
      await audit(failures, lang, 'left page', gus);
      host.once('dialog', (d) => d.accept());
      await host.locator('#end-btn').click();
      await host.locator('#left').waitFor({ state: 'visible' });
      await audit(failures, lang, 'ended page (host)', host);
      await gus.goto(link);
      await gus.locator('#left').waitFor({ state: 'visible' });
      await audit(failures, lang, 'an ended meeting\'s link', gus);

      // A meeting that does not exist.
      await gus.goto(`${server.url}/m/no-such-meeting`);
      await gus.locator('h1').waitFor();
      await audit(failures, lang, 'not found', gus);

      // A webinar (issue 20): the create form with it chosen (end-to-end
      // encryption then off, saying why), an attendee's pre-join page (no
      // devices) and meeting, and the host's attendee list with a raised hand.
      await host.goto(server.url);
      await host.locator('#create').waitFor();
      await host.locator('#title').fill('Webinar');
      await host.locator('#webinar').check();
      await host.locator('#webinar-or-e2ee').waitFor();
      await audit(failures, lang, 'create (webinar chosen)', host);
      await host.locator('#create button[type=submit]').click();
      await host.locator('#created').waitFor();
      await until('the webinar\'s links filled in', async () => (await host.locator('#join-link').inputValue()) !== '');
      const webinarLink = await host.locator('#join-link').inputValue();
      await host.goto(await host.locator('#host-link').inputValue());
      await host.locator('#host-note').waitFor();
      await joinFromPrejoin(host, 'Hana');
      await host.locator('#meeting').waitFor({ state: 'visible' });
      await gus.goto(webinarLink);
      await gus.locator('#attendee-note').waitFor();
      await audit(failures, lang, 'pre-join (webinar attendee)', gus);
      await gus.locator('#name').fill('Gus');
      await gus.locator('#join').click();
      await gus.locator('#meeting').waitFor({ state: 'visible' });
      await gus.locator('#audience-count').waitFor();
      await gus.locator('#grid .tile video').waitFor();
      await audit(failures, lang, 'webinar, an attendee', gus);
      await gus.locator('#hand-btn').click();
      await host.locator('#people-btn').click();
      await host.locator('#attendees-show').click();
      await host.locator('#attendees li').waitFor();
      await host.locator('#hands li').waitFor();
      await audit(failures, lang, 'webinar, the host with the attendee list and a raised hand', host);
      // Q&A: the attendee asks (their question, open), the host sees it with Mark answered and Dismiss.
      await gus.locator('#qa-btn').click();
      await gus.locator('#qa-input').fill('Will the slides be shared?');
      await gus.locator('#qa-ask').click();
      await gus.locator('#qa-list li').waitFor();
      await audit(failures, lang, 'webinar, an attendee\'s Q&A with their question', gus);
      await host.locator('#qa-btn').click();
      await host.locator('#qa-list li button').first().waitFor();
      await audit(failures, lang, 'webinar, the host\'s Q&A with an open question', host);
      await host.locator('#qa-list li button').first().click();
      await gus.locator('#qa-list li.answered').waitFor();
      await audit(failures, lang, 'webinar, an attendee\'s Q&A with their question answered', gus);

      await check.locator('#verdict').waitFor({ state: 'visible', timeout: 20000 });
      await audit(failures, lang, 'check (finished)', check);
    } finally {
      for (const p of [host, check, gus, greta]) await p.context().close().catch(() => {});
    }
    assert.deepEqual(failures, [], `axe violations in ${lang}:\n${failures.join('\n')}`);
  });
}

/** What has focus now: its id, tag, and the landmarks and dialogs it is in. */
const focusedInfo = (page) => page.evaluate(() => {
  const el = /** @type {HTMLElement | null} */ (document.activeElement);
  if (!el || el === document.body) return { id: '', tag: 'BODY', inControls: false, dialog: '', text: '' };
  return {
    id: el.id,
    tag: el.tagName,
    inControls: !!el.closest('.controls'),
    dialog: el.closest('dialog')?.id || '',
    text: (el.getAttribute('aria-label') || el.textContent || '').trim().slice(0, 40),
  };
});

/**
 * Whether the focused element shows that it has focus: an outline of 2 px or
 * more, or a box shadow (WCAG 2.4.7). Describes it when it does not.
 */
const ringMissing = (page) => page.evaluate(() => {
  const el = /** @type {HTMLElement | null} */ (document.activeElement);
  if (!el || el === document.body) return null;
  const cs = getComputedStyle(el);
  const outline = cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2;
  if (outline || cs.boxShadow !== 'none') return null;
  return `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''} "${(el.getAttribute('aria-label') || el.textContent || '').trim().slice(0, 30)}"`;
});

/**
 * Press Tab (Shift+Tab when `back`) until the focused element matches
 * `selector`; each element passed on the way must show its focus (noted in
 * `noRing`). Fails after `max` presses.
 */
async function tabTo(page, selector, { back = false, max = 80, noRing = [] } = {}) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
    const missing = await ringMissing(page);
    if (missing && !noRing.includes(missing)) noRing.push(missing);
    if (await page.evaluate((s) => !!document.activeElement?.matches(s), selector)) return;
  }
  throw new Error(`${selector} not reached with ${max} presses of ${back ? 'Shift+Tab' : 'Tab'}`);
}

/** Create a meeting on the English home page; the links. */
async function createEn(page, title, { lobby = false } = {}) {
  await page.goto(server.url);
  await page.locator('#title').fill(title);
  if (lobby) await page.locator('#lobby').check();
  await page.locator('#create button[type=submit]').click();
  await page.locator('#created').waitFor();
  await until('the links filled in', async () => (await page.locator('#join-link').inputValue()) !== '');
  return { link: await page.locator('#join-link').inputValue(), hostLink: await page.locator('#host-link').inputValue() };
}

test('keyboard alone: focus after joining, into and out of every dialog and panel, Escape closes them, focus after leaving; every stop shows its focus', { timeout: 90000 }, async () => {
  const host = await person();
  const guest = await person();
  /** @type {string[]} */
  const noRing = [];
  /** What went wrong, all of it (one run shows every fault). @type {string[]} */
  const problems = [];
  const expect = (ok, what) => { if (!ok) problems.push(what); };
  try {
    // The home and check pages: every stop shows its focus.
    for (const path of ['/', '/check']) {
      await host.goto(`${server.url}${path}`);
      await host.locator('#language-select').waitFor();
      for (let i = 0; i < 25; i++) {
        await host.keyboard.press('Tab');
        const missing = await ringMissing(host);
        if (missing && !noRing.includes(missing)) noRing.push(`${path}: ${missing}`);
      }
    }
    const { link, hostLink } = await createEn(host, 'Keyboard only');
    await host.goto(hostLink);
    await host.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
    await tabTo(host, '#name', { noRing });
    await host.keyboard.type('Hana');
    await tabTo(host, '#join', { noRing });
    await host.keyboard.press('Enter');
    await host.locator('#meeting').waitFor({ state: 'visible' });
    await until('focus placed after joining', async () => (await focusedInfo(host)).tag !== 'BODY', 5000).catch(() => {});
    const afterJoin = await focusedInfo(host);
    expect(afterJoin.inControls || (afterJoin.tag === 'H1' && !!afterJoin.id), `after joining, focus is on the control bar or the meeting's heading, not ${JSON.stringify(afterJoin)}`);

    await guest.goto(link);
    await joinFromPrejoin(guest, 'Gus');
    await guest.locator('#meeting').waitFor({ state: 'visible' });
    await host.locator('#grid .tile:nth-child(2)').waitFor();

    // Panels: Enter opens, Escape closes, focus back on the button.
    for (const [button, panel] of [['#people-btn', '#people-panel'], ['#chat-btn', '#chat-panel']]) {
      await tabTo(host, button, { noRing });
      await host.keyboard.press('Enter');
      await host.locator(panel).waitFor({ state: 'visible' });
      if (panel === '#chat-panel') expect((await focusedInfo(host)).id === 'chat-input', 'opening Chat puts focus in the message field');
      await host.keyboard.press('Escape');
      await host.waitForTimeout(200);
      expect(await host.locator(panel).isHidden(), `Escape closes ${panel}`);
      expect(`#${(await focusedInfo(host)).id}` === button, `after Escape in ${panel} focus is on ${button}, not ${JSON.stringify(await focusedInfo(host))}`);
      if (await host.locator(panel).isVisible()) await host.locator(button).click();
    }
    // The reactions bar.
    await tabTo(host, '#react-btn', { noRing });
    await host.keyboard.press('Enter');
    await host.locator('#reactions').waitFor({ state: 'visible' });
    expect(await host.evaluate(() => !!document.activeElement?.closest('#reactions')), 'focus goes into the reactions');
    await host.keyboard.press('Escape');
    await host.locator('#reactions').waitFor({ state: 'hidden' });
    expect((await focusedInfo(host)).id === 'react-btn', 'Escape closes the reactions, focus back on React');

    // Dialogs: focus into them, Escape closes, focus back on what opened them.
    for (const [button, dialog] of [['#settings-btn', 'settings-dialog'], ['#invite-btn', 'invite-dialog'], ['#devices-btn', 'devices-dialog']]) {
      await tabTo(host, button, { noRing, back: true });
      await host.keyboard.press('Enter');
      await until(`${dialog} open`, () => isOpen(host, dialog));
      await until(`focus in ${dialog}`, async () => (await focusedInfo(host)).dialog === dialog, 3000).catch(() => problems.push(`focus not in ${dialog} when it opens`));
      // Tab stays in the dialog (it is modal) and every stop shows its focus.
      for (let i = 0; i < 4; i++) {
        await host.keyboard.press('Tab');
        const missing = await ringMissing(host);
        if (missing && !noRing.includes(missing)) noRing.push(missing);
      }
      expect((await focusedInfo(host)).dialog === dialog, `Tab stays in ${dialog}`);
      await host.keyboard.press('Escape');
      await until(`${dialog} closed`, async () => !(await isOpen(host, dialog)));
      expect(`#${(await focusedInfo(host)).id}` === button, `closing ${dialog} returns focus to ${button}, not ${JSON.stringify(await focusedInfo(host))}`);
    }

    // Remove: from a person's row in People; cancelled, focus back in that row.
    await tabTo(host, '#people-btn', { noRing });
    await host.keyboard.press('Enter');
    await tabTo(host, '#people li button:last-child', { noRing });
    await host.keyboard.press('Enter');
    await until('remove dialog open', () => isOpen(host, 'remove-dialog'));
    expect((await focusedInfo(host)).dialog === 'remove-dialog', 'focus in the remove dialog');
    await host.keyboard.press('Escape');
    await until('remove dialog closed', async () => !(await isOpen(host, 'remove-dialog')));
    expect(await host.evaluate(() => !!document.activeElement?.closest('#people li')), `after the remove dialog, focus back in the person's row, not ${JSON.stringify(await focusedInfo(host))}`);
    // People is drawn again whenever anyone changes (here Gus mutes himself,
    // and his Mute button goes): the host's focus stays in Gus's row.
    await tabTo(host, '#people li button', { noRing, back: true });
    const row = await host.evaluate(() => /** @type {HTMLElement} */ (document.activeElement?.closest('li'))?.dataset.id);
    await guest.locator('#mic-btn').click();
    await until('Gus muted in the host\'s People', () => host.evaluate((id) => (document.querySelector(`#people li[data-id="${id}"]`)?.textContent || '').includes('microphone off'), row));
    expect(await host.evaluate((id) => document.activeElement?.closest('li')?.getAttribute('data-id') === id, row), `focus stays in the row when People is drawn again, not ${JSON.stringify(await focusedInfo(host))}`);
    await host.keyboard.press('Escape');

    // The video tiles' tools and the rest of the page: every stop shows its focus.
    await tabTo(host, '#leave-btn', { noRing });
    for (let i = 0; i < 30; i++) {
      await host.keyboard.press('Tab');
      const missing = await ringMissing(host);
      if (missing && !noRing.includes(missing)) noRing.push(missing);
    }

    // Leaving: focus on the heading of the page that says so.
    await tabTo(host, '#leave-btn', { noRing });
    await host.keyboard.press('Enter');
    await host.locator('#left').waitFor({ state: 'visible' });
    const afterLeave = await focusedInfo(host);
    expect(afterLeave.id === 'left-title', `after leaving, focus is on the heading, not ${JSON.stringify(afterLeave)}`);
    for (const el of noRing) problems.push(`took focus without showing it: ${el}`);
    assert.deepEqual(problems, [], 'keyboard and focus');
  } finally {
    for (const p of [host, guest]) await p.context().close().catch(() => {});
  }
});

/** Everything moving on the page: running animations and transitions, and elements with a duration set. */
const moving = (page) => page.evaluate(() => {
  const out = [];
  const secs = (/** @type {string} */ v) => Math.max(...v.split(',').map((x) => parseFloat(x) || 0));
  const name = (/** @type {Element} */ el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${typeof el.className === 'string' && el.className ? `.${el.className.trim().replace(/\s+/g, '.')}` : ''}`;
  for (const a of document.getAnimations()) {
    const target = /** @type {any} */ (a.effect)?.target;
    out.push(`running: ${/** @type {any} */ (a).animationName || /** @type {any} */ (a).transitionProperty || 'animation'} on ${target ? name(target) : '?'}`);
  }
  for (const el of document.querySelectorAll('*')) {
    const cs = getComputedStyle(el);
    if (cs.animationName !== 'none' && secs(cs.animationDuration) > 0) out.push(`animation ${cs.animationName} on ${name(el)}`);
    if (cs.transitionProperty !== 'none' && secs(cs.transitionDuration) > 0) out.push(`transition of ${cs.transitionProperty} on ${name(el)}`);
  }
  return out;
});

test('reduced motion: nothing animates or transitions (reactions, the speaking highlight, panels, dialogs)', { timeout: 60000 }, async () => {
  const host = await person('en-GB', { reducedMotion: 'reduce' });
  try {
    const { hostLink } = await createEn(host, 'Still');
    await host.goto(hostLink);
    await joinFromPrejoin(host, 'Hana');
    await host.locator('#grid .tile video').waitFor();
    await host.locator('#react-btn').click();
    await host.locator('#reactions button').first().click();
    await host.locator('.tile .reaction').waitFor();
    // The speaking highlight, as the page sets it when someone talks.
    await host.evaluate(() => document.querySelector('#grid .tile')?.classList.add('speaking'));
    await host.locator('#people-btn').click();
    await host.locator('#chat-btn').click();
    assert.deepEqual(await moving(host), [], 'under prefers-reduced-motion: reduce');
    await host.locator('#settings-btn').click();
    await until('settings open', () => isOpen(host, 'settings-dialog'));
    assert.deepEqual(await moving(host), [], 'with a dialog open, under prefers-reduced-motion: reduce');
    await host.keyboard.press('Escape');

    // The same measure sees motion where it is allowed: a reaction rises.
    await host.emulateMedia({ reducedMotion: 'no-preference' });
    await host.waitForTimeout(1100); // one reaction a second
    if (await host.locator('#reactions').isHidden()) await host.locator('#react-btn').click();
    await host.locator('#reactions button').nth(1).click();
    await until('the reaction animating without the preference', async () => (await moving(host)).some((m) => m.includes('reaction')), 5000);
  } finally {
    await host.context().close().catch(() => {});
  }
});

test('identity: where nobody can sign in, nobody is labelled a guest', { timeout: 60000 }, async () => {
  const host = await person();
  const guest = await person();
  try {
    const { link, hostLink } = await createEn(host, 'Nobody verified');
    await host.goto(hostLink);
    await joinFromPrejoin(host, 'Hana');
    await guest.goto(link);
    await joinFromPrejoin(guest, 'Gus');
    await host.locator('#grid .tile:nth-child(2)').waitFor();
    await host.locator('#people-btn').click();
    await until('both in People', async () => (await host.locator('#people li').count()) === 2);
    for (const page of [host, guest]) {
      const said = await page.evaluate(() => ({
        badges: document.querySelectorAll('#meeting .id-badge').length,
        labels: [...document.querySelectorAll('#meeting .tile')].map((t) => t.getAttribute('aria-label') || ''),
        text: /** @type {HTMLElement} */ (document.getElementById('meeting')).innerText,
      }));
      assert.equal(said.badges, 0, 'no identity badges');
      for (const label of said.labels) assert.doesNotMatch(label, /guest|unverified|, ,|, $/i, `tile named "${label}"`);
      assert.doesNotMatch(said.text, /Guest \(unverified\)/);
    }
  } finally {
    for (const p of [host, guest]) await p.context().close().catch(() => {});
  }
});

test('identity: a compact badge on tiles with its details on hover and keyboard focus; a signed-in outsider is told why they are a guest', { timeout: 120000 }, async () => {
  const convenePort = await freePort();
  const provider = await startProvider({
    port: await freePort(), keyId: 'home-a11y', org: 'home', convenePort,
    users: [
      { username: 'alice', email: 'alice@home.example', name: 'Alice Archer' },
      { username: 'olga', email: 'olga@elsewhere.example', name: 'Olga Outside' },
    ],
  });
  const config = pathJoin(mkdtempSync(pathJoin(tmpdir(), 'convene-e2e-a11y-')), 'convene.toml');
  writeFileSync(config, `
[home]
name = "Home Department"
domains = ["home.example"]
[home.provider]
issuer = "${provider.issuer}"
client_id = "convene"
client_secret = "${provider.secret}"
`);
  const signin = await startServer(['--config', config], { port: convenePort });
  const alice = await person();
  const olga = await person();
  const login = async (page, username) => {
    await page.getByRole('link', { name: 'Sign in with Home Department' }).click();
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Password').fill('pw');
    await page.getByRole('button', { name: 'Sign in' }).click();
  };
  try {
    // Alice, a member, creates a meeting and joins it.
    await alice.goto(signin.url);
    await login(alice, 'alice');
    await alice.getByText('Signed in as Alice Archer').waitFor();
    assert.equal(await alice.locator('#guest-why').count(), 0, 'a member is not told she is a guest');
    await alice.locator('#title').fill('Badges');
    await alice.locator('#create button[type=submit]').click();
    await alice.locator('#created').waitFor();
    await until('the links filled in', async () => (await alice.locator('#join-link').inputValue()) !== '');
    const link = await alice.locator('#join-link').inputValue();
    await alice.goto(await alice.locator('#host-link').inputValue());
    await alice.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
    await alice.locator('#join').click();
    await alice.locator('#meeting').waitFor({ state: 'visible' });

    // Olga signs in with the home organisation's provider, but her address is not the organisation's.
    await olga.goto(link);
    await login(olga, 'olga');
    await olga.locator('#guest-why').waitFor();
    const why = await olga.locator('#guest-why').innerText();
    assert.match(why, /^You show as a guest: the address you signed in with is not one of the organisation's own/);
    await joinFromPrejoin(olga, 'Olga Outside');
    await olga.locator('#meeting').waitFor({ state: 'visible' });

    // On Olga's screen, Alice's tile: a one-word badge…
    const aliceTile = olga.locator('#grid .tile', { hasText: 'Alice Archer' });
    const badge = aliceTile.locator('.id-badge');
    await badge.waitFor();
    assert.equal((await badge.innerText()).trim(), 'Member');
    const tip = aliceTile.locator('.id-tip');
    assert.equal(await tip.isVisible(), false, 'details hidden until asked for');
    // …that covers little of the video.
    await aliceTile.locator('video').waitFor();
    const box = await aliceTile.boundingBox();
    const b = await badge.boundingBox();
    assert.ok(box && b, 'tile and badge shown');
    assert.ok((b.width * b.height) / (box.width * box.height) < 0.03, `the badge covers ${(100 * b.width * b.height / (box.width * box.height)).toFixed(1)} % of the tile`);
    // Screen readers: the details are the badge's description.
    const described = await badge.evaluate((el) => {
      const ids = (el.getAttribute('aria-describedby') || '').split(/\s+/);
      return ids.map((i) => document.getElementById(i)?.textContent || '').join(' ');
    });
    assert.equal(described, 'Member, Home Department');
    // Keyboard: Tab reaches the badge, the details show, Escape hides them.
    await olga.locator('#mic-btn').focus();
    await tabTo(olga, '#grid .tile .id-badge.member');
    await tip.waitFor({ state: 'visible' });
    assert.equal(await tip.innerText(), 'Member, Home Department');
    await olga.keyboard.press('Escape');
    await tip.waitFor({ state: 'hidden' });
    assert.equal(await olga.locator('#meeting').isVisible(), true, 'Escape on the badge closes nothing else');
    // Hover: the details show, and stay while the pointer moves onto them.
    await olga.locator('#mic-btn').focus();
    await badge.hover();
    await tip.waitFor({ state: 'visible' });
    await tip.hover();
    assert.equal(await tip.isVisible(), true, 'the details stay under the pointer');
    await olga.mouse.move(1, 1);
    await tip.waitFor({ state: 'hidden' });

    // On her own tile, Olga's badge says why she is a guest.
    const own = olga.locator('#grid .tile.self');
    assert.equal((await own.locator('.id-badge').innerText()).trim(), 'Guest');
    assert.match(await own.locator('.id-tip').textContent() || '', /^You show as a guest: the address you signed in with is not one of the organisation's own/);

    // Olga shows as a guest to Alice: a badge here, where people can be verified.
    await alice.locator('#grid .tile', { hasText: 'Olga Outside' }).locator('.id-badge.guest').waitFor();
    // And axe finds nothing with the details shown.
    await badge.focus();
    await tip.waitFor({ state: 'visible' });
    /** @type {string[]} */
    const failures = [];
    await audit(failures, 'en', 'badge details shown', olga);
    assert.deepEqual(failures, []);
  } finally {
    for (const p of [alice, olga]) await p.context().close().catch(() => {});
    signin.stop();
    provider.stop();
  }
});
