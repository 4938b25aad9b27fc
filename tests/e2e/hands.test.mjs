// Raised hands, reactions, the participant count and the "you are alone"
// hint (issue 17), in real Chromium: a host and two guests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchPerson, createMeeting, join, joinAsHost, until, axe } from './harness.mjs';

let server;
const people = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const p of people) await p.browser.close().catch(() => {});
  server?.stop();
});

async function person() {
  const p = await launchPerson();
  people.push(p);
  return p.page;
}

/** Someone's tile on `page`, by the name on it. */
const tileOf = (page, name) => page.locator('#grid .tile').filter({ has: page.locator('.name', { hasText: name }) });
/** The names in the host's queue of raised hands, in order. */
const queue = (page) => page.$$eval('#hands li .name', (els) => els.map((e) => e.textContent));
const said = (page) => page.locator('#announcer').textContent();

test('a guest raises a hand, the host sees the queue in order and lowers it; reactions show on the sender\'s tile; the count and the alone hint', async () => {
  const host = await person();
  const { link, hostLink } = await createMeeting(host, server.url, 'Hands and reactions');
  await joinAsHost(host, hostLink, 'Hana');

  // Alone: the count says so, and the hint offers the invite link.
  await host.locator('#alone').waitFor({ state: 'visible' });
  assert.equal(await host.locator('#people-count').textContent(), '1 person');
  assert.equal((await host.locator('#alone p').first().textContent())?.trim(), 'You are the only one here.');
  await host.getByRole('button', { name: 'Copy the invite link' }).click();
  await until('the copy is confirmed or the link shown', async () => (await host.locator('#copy-link-status').textContent()) || '');
  const copied = await host.locator('#copy-link-status').textContent();
  assert.ok(copied === 'Link copied. Send it to the people you want to invite.' || copied?.includes(link), copied || '');
  assert.deepEqual(await axe(host), [], 'axe: a host alone');

  const ann = await person();
  const bob = await person();
  await join(ann, link, 'Ann');
  await join(bob, link, 'Bob');
  for (const page of [host, ann, bob]) {
    await until('the count shows 3', async () => (await page.locator('#people-count').textContent()) === '3 people');
    assert.ok(await page.locator('#alone').isHidden(), 'no alone hint with three');
  }

  // Bob first with the button, then Ann with the keyboard shortcut.
  const bobHand = bob.getByRole('button', { name: 'Raise hand' });
  assert.equal(await bobHand.getAttribute('title'), 'Shortcut: Alt+Shift+H');
  await bobHand.click();
  await bob.getByRole('button', { name: 'Lower hand' }).waitFor();
  assert.equal(await bob.locator('#hand-btn').getAttribute('aria-pressed'), 'true');
  await tileOf(host, 'Bob').locator('.hand-icon').waitFor();
  await ann.locator('#mic-btn').focus();
  await ann.keyboard.press('Alt+Shift+KeyH');
  await ann.getByRole('button', { name: 'Lower hand' }).waitFor();

  // The host's queue, first raised first; the hands show on tiles for everyone.
  await host.getByRole('button', { name: 'People' }).click();
  await until('two hands in the host\'s queue', async () => (await queue(host)).length === 2);
  assert.deepEqual(await queue(host), ['Bob', 'Ann']);
  assert.equal(await host.locator('#hands-heading').textContent(), 'Raised hands (2)');
  assert.match(await tileOf(host, 'Bob').getAttribute('aria-label') || '', /hand raised/);
  await tileOf(ann, 'Bob').locator('.hand-icon').waitFor();
  await until('the host hears of the hands', async () => /raised their hand/.test(await said(host) || ''));
  // Guests see the hands, not the queue with its buttons.
  await ann.getByRole('button', { name: 'People' }).click();
  assert.ok(await ann.locator('#hands-panel').isHidden(), 'no queue for guests');
  assert.match((await ann.locator('#people li', { hasText: 'Bob' }).textContent()) || '', /hand raised/);
  assert.deepEqual(await axe(host), [], 'axe: the host with the queue');

  // The host lowers Bob's hand: Bob is told, and Ann is first.
  await host.getByRole('button', { name: 'Lower hand of Bob' }).click();
  await until('Bob\'s hand is down', async () => (await queue(host)).join() === 'Ann');
  await bob.getByRole('button', { name: 'Raise hand' }).waitFor();
  await until('Bob hears that a host lowered it', async () => /A host lowered your hand/.test(await said(bob) || ''));
  await tileOf(ann, 'Bob').locator('.hand-icon').waitFor({ state: 'detached' });

  // Ann lowers her own with the shortcut: no "a host lowered it" for her.
  await ann.keyboard.press('Alt+Shift+KeyH');
  await ann.getByRole('button', { name: 'Raise hand' }).waitFor();
  await until('the queue is empty', async () => (await queue(host)).length === 0);
  assert.ok(await host.locator('#hands-panel').isHidden());
  assert.doesNotMatch(await said(ann) || '', /A host lowered/);

  // The other shortcuts: microphone and camera, shown in the buttons' titles and in People.
  assert.equal(await ann.locator('#mic-btn').getAttribute('title'), 'Shortcut: Alt+Shift+M');
  assert.equal(await ann.locator('#cam-btn').getAttribute('title'), 'Shortcut: Alt+Shift+C');
  assert.match(await ann.locator('#shortcuts').textContent() || '', /Alt\+Shift\+H raises or lowers your hand/);
  await ann.keyboard.press('Alt+Shift+KeyM');
  await ann.getByRole('button', { name: 'Unmute' }).waitFor();
  await ann.keyboard.press('Alt+Shift+KeyM');
  await ann.getByRole('button', { name: 'Mute', exact: true }).waitFor();
  await ann.keyboard.press('Alt+Shift+KeyC');
  await ann.getByRole('button', { name: 'Start camera' }).waitFor();
  await ann.keyboard.press('Alt+Shift+KeyC');
  await ann.getByRole('button', { name: 'Stop camera' }).waitFor();

  // A reaction shows on Ann's tile for the others, for a few seconds, and is said.
  await ann.getByRole('button', { name: 'React' }).click();
  await ann.getByRole('button', { name: 'Applause' }).click();
  for (const page of [host, bob]) {
    const shown = tileOf(page, 'Ann').locator('.reaction');
    await shown.waitFor();
    assert.equal(await shown.textContent(), '👏');
  }
  await until('the host hears Ann\'s reaction', async () => /Ann: Applause\./.test(await said(host) || ''));
  await tileOf(ann, 'Ann').locator('.reaction').waitFor();
  assert.deepEqual(await axe(ann), [], 'axe: a guest with the reactions open');
  await tileOf(bob, 'Ann').locator('.reaction').waitFor({ state: 'detached', timeout: 8000 });

  // Reactions follow the chat setting: with chat for hosts only, Ann's open
  // reactions close and React is off, with the reason; a reaction sent anyway
  // (past the page) shows nowhere.
  if (await ann.locator('#reactions').isHidden()) await ann.getByRole('button', { name: 'React' }).click();
  await ann.getByRole('button', { name: 'Applause' }).waitFor();
  await host.getByRole('button', { name: 'Settings' }).click();
  await host.getByLabel('Who may chat').selectOption('hosts');
  await host.getByRole('button', { name: 'Save settings' }).click();
  const react = ann.getByRole('button', { name: 'React' });
  await until('React is off for Ann', () => react.isDisabled());
  assert.equal(await ann.locator('#reactions').isHidden(), true, 'the open reactions close');
  assert.match(await react.getAttribute('title') || '', /chat is turned off for you/);
  assert.match(await ann.locator('#restrictions').innerText(), /chat is turned off for you/, 'the reason is shown beside the controls');
  await ann.evaluate(() => {
    const ws = /** @type {any} */ (window).__sockets.findLast((s) => s.readyState === WebSocket.OPEN);
    ws.send(JSON.stringify({ type: 'react', reaction: 'party' }));
  });
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await tileOf(bob, 'Ann').locator('.reaction').count(), 0, 'a forged reaction shows nowhere');
  await host.getByRole('button', { name: 'Settings' }).click();
  await host.getByLabel('Who may chat').selectOption('everyone');
  await host.getByRole('button', { name: 'Save settings' }).click();
  await until('React is on again', () => react.isEnabled());

  // At 390 px: every new control on the screen, and axe still clean.
  for (const page of [host, ann]) {
    await page.setViewportSize({ width: 390, height: 844 });
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `page is ${width} px wide at 390 px`);
    for (const id of ['#hand-btn', '#react-btn', '#people-count']) {
      const box = await page.locator(id).boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `${id} on the screen: ${JSON.stringify(box)}`);
    }
    assert.deepEqual(await axe(page), [], 'axe at 390 px');
  }
});

test('screen readers hear who joins, leaves, is removed, waits in the lobby and writes in the chat', async () => {
  const host = await person();
  const { link, hostLink } = await createMeeting(host, server.url, 'Announcements');
  await joinAsHost(host, hostLink, 'Hana');
  /** Everything the page's announcer said since this was called. */
  const listen = (page) => page.evaluate(() => {
    const w = /** @type {any} */ (window);
    w.__said = [];
    new MutationObserver(() => w.__said.push(document.getElementById('announcer')?.textContent || ''))
      .observe(/** @type {Node} */ (document.getElementById('announcer')), { childList: true, characterData: true, subtree: true });
  });
  const heard = async (page, what) => until(`heard "${what}"`, () => page.evaluate((text) => /** @type {any} */ (window).__said.some((s) => s.includes(text)), what));
  await listen(host);

  const ann = await person();
  await join(ann, link, 'Ann');
  await heard(host, 'Ann joined.');
  await listen(ann);

  await ann.getByRole('button', { name: 'Chat' }).click();
  await ann.getByLabel('Message').fill('Hello all');
  await ann.getByRole('button', { name: 'Send' }).click();
  await heard(host, 'Ann wrote in the chat.');
  assert.equal(await ann.evaluate(() => /** @type {any} */ (window).__said.some((s) => s.includes('wrote in the chat'))), false, 'Ann is not told of her own message');

  await host.getByRole('button', { name: 'Settings' }).click();
  await host.getByLabel('Lobby: people wait until a host lets them in').check();
  await host.getByRole('button', { name: 'Save settings' }).click();
  const bob = await person();
  await bob.goto(link);
  await bob.getByLabel('Your name').fill('Bob');
  await bob.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
  await bob.getByRole('button', { name: 'Join meeting' }).click();
  await heard(host, 'Bob is waiting in the lobby.');
  await host.getByRole('button', { name: 'Admit Bob' }).click();
  await heard(ann, 'Bob joined.');

  await host.getByRole('button', { name: 'People' }).click();
  await host.getByRole('button', { name: 'Remove Bob' }).click();
  await host.getByRole('dialog').getByRole('button', { name: 'Remove' }).click();
  await heard(ann, 'A host removed Bob.');

  await ann.getByRole('button', { name: 'Leave' }).click();
  await heard(host, 'Ann left.');
});
