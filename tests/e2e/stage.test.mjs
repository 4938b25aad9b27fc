// The stage as people use it (issue 17): a grid that fills the stage, the
// speaker view, pinning, the presentation view when someone shares, full
// screen, pages when more people are there than fit (and no video sent for
// those not on screen), mute shown by an icon; and switching camera,
// microphone and speaker during the meeting, without leaving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchPerson, createMeeting, join, joinAsHost, joinCrowd, until, decodingVideos, axe } from './harness.mjs';

let server;
/** @type {{browser: any, page: any}} */ let ann;
/** @type {{browser: any, page: any}} */ let bob;
let bobId = '';

/** Where each tile shown is, and whether it is the large one. */
const shownTiles = (page) => page.$$eval('#tiles .tile:not([hidden])', (tiles) => tiles.map((t) => {
  const r = t.getBoundingClientRect();
  return { key: /** @type {HTMLElement} */ (t).dataset.key, featured: t.classList.contains('featured'), x: r.x, y: r.y, w: r.width, h: r.height };
}));
const box = (page, selector) => page.$eval(selector, (el) => {
  const r = el.getBoundingClientRect();
  return { x: r.x, y: r.y, w: r.width, h: r.height };
});
const layoutOf = (page) => page.$eval('#tiles', (el) => /** @type {HTMLElement} */ (el).dataset.layout);
const inside = (r, area) => r.x >= area.x - 1 && r.y >= area.y - 1 && r.x + r.w <= area.x + area.w + 1 && r.y + r.h <= area.y + area.h + 1;
const overlap = (a, b) => a.x < b.x + b.w - 1 && b.x < a.x + a.w - 1 && a.y < b.y + b.h - 1 && b.y < a.y + a.h - 1;

/** The last `video-sizes` Ann sent: participant id → whether their camera is listed. */
const listedCameras = (page) => page.evaluate(() => {
  const all = /** @type {any} */ (window).__sent.filter((m) => m.type === 'video-sizes');
  return all.length ? all.at(-1).sizes.filter((s) => s.source === 'camera').map((s) => s.participantId) : [];
});

before(async () => {
  server = await startServer();
  // Chromium's fake fake_device_1 is a depth camera (Y16) no encoder takes: the test switches to fake_device_2.
  ann = await launchPerson({ cameras: 3 });
  bob = await launchPerson();
  // What Ann's page sends the server (to see which videos it asks for).
  await ann.page.context().addInitScript(() => {
    const w = /** @type {any} */ (window);
    w.__sent = [];
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) {
      try { w.__sent.push(JSON.parse(String(data))); } catch { /* not JSON */ }
      return send.call(this, data);
    };
  });
  const { link, hostLink } = await createMeeting(ann.page, server.url, 'Planning review');
  await joinAsHost(ann.page, hostLink, 'Ann');
  await join(bob.page, link, 'Bob');
  await until('Ann sees Bob\'s video', async () => (await decodingVideos(ann.page)) >= 1, 20000);
  bobId = await ann.page.$eval('#grid .tile:not(.self)', (t) => /** @type {HTMLElement} */ (t).dataset.id);
});

after(async () => {
  await ann?.browser.close().catch(() => {});
  await bob?.browser.close().catch(() => {});
  server?.stop();
});

test('the grid fills the stage, and a muted microphone shows as an icon', async () => {
  const area = await box(ann.page, '#tiles');
  const tiles = await shownTiles(ann.page);
  assert.equal(tiles.length, 2);
  assert.equal(await layoutOf(ann.page), 'grid');
  for (const t of tiles) {
    assert.ok(inside(t, area), `tile ${JSON.stringify(t)} inside the stage ${JSON.stringify(area)}`);
    assert.ok(t.w > area.w * 0.45 || t.h > area.h * 0.45, `two tiles use the stage (${Math.round(t.w)}×${Math.round(t.h)} of ${Math.round(area.w)}×${Math.round(area.h)})`);
  }
  assert.ok(!overlap(tiles[0], tiles[1]), 'tiles do not overlap');

  // The pre-join microphone meter is not seen in the meeting: it stops (it cost the main thread ~25 ms a second).
  const meter = await ann.page.evaluate(async () => {
    const seen = new Set();
    for (let i = 0; i < 12; i++) {
      seen.add(/** @type {HTMLMeterElement} */ (document.getElementById('mic-meter')).value);
      await new Promise((r) => setTimeout(r, 100));
    }
    return seen.size;
  });
  assert.equal(meter, 1, 'the meter does not move in the meeting');

  await bob.page.getByRole('button', { name: 'Mute', exact: true }).click();
  const bobTile = ann.page.locator(`#grid .tile[data-id="${bobId}"]`);
  await until('Ann sees Bob\'s mute icon', () => bobTile.locator('svg.mic-off').count());
  assert.match(await bobTile.getAttribute('aria-label'), /microphone off/, 'the tile says it in words to screen readers');
  assert.doesNotMatch(await bobTile.locator('.label').innerText(), /microphone off/, 'the label shows an icon, not words');
  await bob.page.getByRole('button', { name: 'Unmute' }).click();
  await until('the icon goes', async () => (await bobTile.locator('svg.mic-off').count()) === 0);
});

test('speaker view: the other person large, the rest in a strip beside; a pinned tile is large in any layout', async () => {
  await ann.page.getByLabel('Layout').selectOption('speaker');
  await until('speaker layout', async () => (await layoutOf(ann.page)) === 'speaker');
  const tiles = await shownTiles(ann.page);
  const big = tiles.find((t) => t.featured);
  const small = tiles.find((t) => !t.featured);
  assert.equal(big?.key, bobId, 'Bob (the one who is not Ann) is large');
  assert.ok(big.w > small.w * 3, `large ${Math.round(big.w)} px, strip ${Math.round(small.w)} px`);
  assert.ok(small.x >= big.x + big.w, 'the strip is beside the large tile');

  await ann.page.getByLabel('Layout').selectOption('grid');
  await until('grid again', async () => (await layoutOf(ann.page)) === 'grid');
  const self = ann.page.locator('#grid .tile.self');
  await self.hover();
  await self.getByRole('button', { name: 'Pin Ann (you)' }).click();
  await until('Ann pinned large', async () => (await shownTiles(ann.page)).find((t) => t.featured)?.key !== bobId && (await layoutOf(ann.page)) === 'speaker');
  const unpin = self.getByRole('button', { name: 'Unpin Ann (you)' });
  assert.equal(await unpin.getAttribute('aria-pressed'), 'true');
  await unpin.click();
  await until('back to the grid', async () => (await layoutOf(ann.page)) === 'grid');
  // The choice is remembered in this browser.
  assert.equal(await ann.page.evaluate(() => localStorage.getItem('convene-layout')), 'grid');
  await ann.page.getByLabel('Layout').selectOption('auto');
});

test('presentation view: a shared screen large with people beside it, and full screen', async () => {
  await bob.page.getByRole('button', { name: 'Share screen' }).click();
  await until('Ann sees the presentation', async () => (await layoutOf(ann.page)) === 'presentation');
  await until('the screen decodes', () => ann.page.$eval('#stage .tile video', (v) => /** @type {HTMLVideoElement} */ (v).videoWidth > 0).catch(() => false));
  const area = await box(ann.page, '#tiles');
  const tiles = await shownTiles(ann.page);
  const screen = tiles.find((t) => t.featured);
  assert.equal(screen?.key, `${bobId}-screen`);
  assert.ok(screen.w > area.w * 0.6, `the screen takes most of the stage (${Math.round(screen.w)} of ${Math.round(area.w)})`);
  for (const t of tiles.filter((x) => !x.featured)) {
    assert.ok(t.x >= screen.x + screen.w, 'people beside the screen');
    assert.ok(inside(t, area), 'and on the stage');
  }

  // In the grid layout the screen is one tile among the others.
  await ann.page.getByLabel('Layout').selectOption('grid');
  await until('the screen in the grid', async () => (await layoutOf(ann.page)) === 'grid' && (await shownTiles(ann.page)).length === 3);
  await ann.page.getByLabel('Layout').selectOption('auto');

  const screenTile = ann.page.locator('#stage .tile');
  await screenTile.hover();
  await screenTile.getByRole('button', { name: 'Full screen: Bob is sharing the screen' }).click();
  await until('the screen is full screen', () => ann.page.evaluate(() => /** @type {HTMLElement | null} */ (document.fullscreenElement)?.dataset.key || null));
  assert.equal(await ann.page.evaluate(() => /** @type {HTMLElement} */ (document.fullscreenElement).dataset.key), `${bobId}-screen`);
  await screenTile.getByRole('button', { name: 'Exit full screen' }).click();
  await until('full screen left', () => ann.page.evaluate(() => document.fullscreenElement === null));

  await bob.page.getByRole('button', { name: 'Stop sharing' }).click();
  await until('back to the grid', async () => (await layoutOf(ann.page)) === 'grid');
});

test('more people than fit: pages, and no video asked for those not on screen', async () => {
  await ann.page.setViewportSize({ width: 390, height: 844 });
  // A crowd without media (plain signalling sockets), joined after Bob.
  const crowd = await ann.page.context().newPage();
  await crowd.goto(server.url);
  const wsUrl = (await ann.page.evaluate(() => location.href)).replace(/^http/, 'ws').replace('/m/', '/api/meetings/') + '/ws';
  await joinCrowd(crowd, wsUrl, 30);
  await until('a pager', () => ann.page.locator('#pager').isVisible());
  const status = await ann.page.locator('#page-status').innerText();
  const [, pageNo, pages] = /Page (\d+) of (\d+)/.exec(status) || [];
  assert.equal(pageNo, '1');
  assert.ok(Number(pages) >= 2, status);
  const onFirst = (await shownTiles(ann.page)).map((t) => t.key);
  assert.ok(onFirst.length < 32 && onFirst.includes(bobId), `page 1 shows ${onFirst.length} of 32, Bob among them`);
  const area = await box(ann.page, '#tiles');
  for (const t of await shownTiles(ann.page)) assert.ok(inside(t, area) && t.w >= 100, `tile on the stage and not tiny (${JSON.stringify(t)})`);
  await until('Bob\'s video asked for on page 1', async () => (await listedCameras(ann.page)).includes(bobId));

  for (let i = 1; i < Number(pages); i++) await ann.page.getByRole('button', { name: 'Next' }).click();
  await ann.page.getByText(`Page ${pages} of ${pages}`).waitFor();
  assert.ok(await ann.page.getByRole('button', { name: 'Next' }).isDisabled(), 'no page after the last');
  const onLast = (await shownTiles(ann.page)).map((t) => t.key);
  assert.ok(!onLast.includes(bobId) && onLast.every((k) => !onFirst.includes(k)), 'the last page shows others');
  await until('Bob\'s video no longer asked for', async () => !(await listedCameras(ann.page)).includes(bobId));
  for (let i = 1; i < Number(pages); i++) await ann.page.getByRole('button', { name: 'Previous' }).click();
  await until('Bob\'s video asked for again', async () => (await listedCameras(ann.page)).includes(bobId));

  await crowd.close();
  await until('no pager once they have gone', async () => !(await ann.page.locator('#pager').isVisible()), 20000);
  await ann.page.setViewportSize({ width: 1280, height: 800 });
});

test('camera, microphone and speaker switched during the meeting, without leaving', async () => {
  const page = ann.page;
  const senderTracks = () => page.evaluate(() => {
    const out = {};
    for (const pc of /** @type {any} */ (window).__pcs) {
      if (pc.connectionState === 'closed') continue;
      for (const s of pc.getSenders()) if (s.track) out[s.track.kind] = { id: s.track.id, device: s.track.getSettings().deviceId };
    }
    return out;
  });
  const before = await senderTracks();
  const offers = await bob.page.evaluate(() => /** @type {any} */ (window).__pcs.length);

  await page.getByRole('button', { name: 'Devices' }).click();
  const dialog = page.getByRole('dialog', { name: 'Camera, microphone and speaker' });
  await dialog.waitFor();
  assert.deepEqual(await axe(page), [], 'the devices dialog passes axe');
  const camera = dialog.getByLabel('Camera');
  const cameras = await camera.locator('option').evaluateAll((os) => os.map((o) => ({ id: /** @type {HTMLOptionElement} */ (o).value, label: o.textContent })));
  assert.equal(cameras.length, 3, 'each camera to choose from');
  const other = cameras.find((c) => c.label === 'fake_device_2')?.id;
  assert.ok(other && other !== before.video.device);
  await camera.selectOption(other);
  await dialog.getByText('Changed.').waitFor();
  const afterCamera = await senderTracks();
  assert.equal(afterCamera.video.device, other, 'the new camera is sent');
  assert.notEqual(afterCamera.video.id, before.video.id);

  const mic = dialog.getByLabel('Microphone', { exact: true });
  const mics = await mic.locator('option').evaluateAll((os) => os.map((o) => /** @type {HTMLOptionElement} */ (o).value));
  const otherMic = mics.find((id) => id !== before.audio.device && id !== 'default' && id !== 'communications');
  if (otherMic) {
    await dialog.getByText('Changed.').evaluate((el) => { el.textContent = ''; });
    await mic.selectOption(otherMic);
    await dialog.getByText('Changed.').waitFor();
    const afterMic = await senderTracks();
    assert.notEqual(afterMic.audio.id, before.audio.id, 'the new microphone is sent');
  }

  const speaker = dialog.getByLabel('Speaker');
  const speakers = await speaker.locator('option').evaluateAll((os) => os.map((o) => /** @type {HTMLOptionElement} */ (o).value));
  if (!(await speaker.isDisabled()) && speakers.length > 1) {
    const chosen = speakers.at(-1);
    await speaker.selectOption(chosen);
    await until('every sound plays on the chosen speaker', () => page.$$eval('#audio-sink audio', (as, id) => as.length > 0 && as.every((a) => /** @type {any} */ (a).sinkId === id), chosen));
  }

  await dialog.getByRole('button', { name: 'Close' }).click();
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'devices-btn', 'focus goes back to Devices');
  // Bob keeps seeing Ann, on the same connection: nothing was renegotiated or rejoined.
  await until('Bob still decodes Ann\'s video', async () => (await decodingVideos(bob.page)) >= 1, 15000);
  assert.equal(await bob.page.evaluate(() => /** @type {any} */ (window).__pcs.length), offers, 'Bob has the same connection');
  assert.equal(await page.locator('#grid .tile').count(), 2, 'Ann never left');
  // The camera chosen is remembered for the next meeting.
  assert.equal(await page.evaluate(() => localStorage.getItem('convene-camera')), other);
});

test('on a phone (390×844) and a tablet (820×1180), host and guest reach every control without scrolling, and video keeps its room', async () => {
  for (const [who, p, width, height] of [['host', ann, 390, 844], ['guest', bob, 390, 844], ['host', ann, 820, 1180], ['guest', bob, 820, 1180]]) {
    await p.page.setViewportSize({ width, height });
    await p.page.waitForTimeout(300);
    if (width === 390) await p.page.screenshot({ path: new URL(`../../docs/screenshots/phone-${who}.png`, import.meta.url).pathname });
    const fold = p.page.getByRole('button', { name: 'Host controls' });
    assert.equal(await fold.isVisible(), who === 'host' && width <= 720, `${who} at ${width} px: the host's controls fold behind a button on a phone only`);
    if (await fold.isVisible()) {
      // Folded, the video has more room; opened, every host control is there.
      assert.ok(await p.page.locator('#host-controls').isHidden());
      const folded = await box(p.page, '#tiles');
      await fold.click();
      assert.equal(await fold.getAttribute('aria-expanded'), 'true');
      await p.page.locator('#host-controls').waitFor({ state: 'visible' });
      assert.ok(folded.h > (await box(p.page, '#tiles')).h + 50, 'folding gives the video room');
    }
    const controls = await p.page.$$eval('.controls button:not([hidden]), .controls select, #host-controls:not([hidden]) button, #host-controls:not([hidden]) select', (els) => els
      .filter((el) => !el.closest('[hidden]'))
      .map((el) => { const r = el.getBoundingClientRect(); return { id: el.id, top: r.top, bottom: r.bottom, left: r.left, right: r.right }; }));
    assert.ok(controls.length >= (who === 'host' ? 16 : 9), `${who}: ${controls.length} controls`);
    const off = controls.filter((c) => c.left < 0 || c.right > width || c.top < 0 || c.bottom > height);
    assert.deepEqual(off, [], `${who} at ${width} px: controls off the screen`);
    const scroll = await p.page.evaluate(() => ({ w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight }));
    assert.ok(scroll.w <= width && scroll.h <= height, `${who} at ${width} px: the page does not scroll (${scroll.w}×${scroll.h})`);
    const stage = await box(p.page, '#tiles');
    assert.ok(stage.h >= 250, `${who} at ${width} px: the video keeps ${Math.round(stage.h)} px of height`);
    if (await fold.isVisible()) await fold.click();
    await p.page.setViewportSize({ width: 1280, height: 800 });
  }
});

test('screenshots of each layout in English, Dutch and Swedish (docs/screenshots)', async () => {
  const link = (await ann.page.evaluate(() => location.href));
  const nora = await launchPerson({ locale: 'nl-NL' });
  const sven = await launchPerson({ locale: 'sv-SE' });
  try {
    for (const [p, name] of [[nora, 'Nora'], [sven, 'Sven']]) {
      await p.page.goto(link);
      await p.page.locator('#name').fill(name);
      await p.page.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
      await p.page.locator('#join').click();
      await p.page.locator('#meeting').waitFor({ state: 'visible' });
    }
    const views = [['en', ann.page], ['nl', nora.page], ['sv', sven.page]];
    await until('everyone sees four videos', async () => {
      for (const [, page] of views) if ((await decodingVideos(page)) < 3) return false;
      return true;
    }, 30000);
    const shot = (page, lang, layout) => page.screenshot({ path: new URL(`../../docs/screenshots/layout-${layout}-${lang}.png`, import.meta.url).pathname });
    for (const layout of ['grid', 'speaker']) {
      for (const [lang, page] of views) {
        await page.locator('#layout-select').selectOption(layout);
        await until(`${lang} ${layout}`, async () => (await layoutOf(page)) === layout);
        await shot(page, lang, layout);
      }
    }
    await bob.page.locator('#share-btn').click();
    for (const [lang, page] of views) {
      await page.locator('#layout-select').selectOption('auto');
      await until(`${lang} presentation`, async () => (await layoutOf(page)) === 'presentation');
      await until('the screen decodes', () => page.$eval('#stage .tile video', (v) => /** @type {HTMLVideoElement} */ (v).videoWidth > 0).catch(() => false));
      await shot(page, lang, 'presentation');
    }
    await bob.page.locator('#share-btn').click();
  } finally {
    await nora.browser.close().catch(() => {});
    await sven.browser.close().catch(() => {});
  }
});
