// The meeting page in real Firefox ESR (headless, fake devices, on loopback),
// with a host in Chromium: Firefox joins, sees and is seen, and the stage's
// layouts, pin, pages and the devices dialog work there as in Chromium.
// (Headless Firefox cannot capture a screen: sharing is tested from Chromium.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join as pathJoin } from 'node:path';
import { startServer, launchPerson, launchFirefox, createMeeting, joinAsHost, until, decodingVideos, ROOT } from './harness.mjs';

const AXE_SOURCE = pathJoin(ROOT, 'tests', 'e2e', 'node_modules', 'axe-core', 'axe.min.js');

let server;
let host;
let firefox;
/** @type {any} */ let page;

/** The page's size. Puppeteer also sets the screen orientation, which the
 * WebDriver BiDi of Firefox ESR 140 lacks; the size is set by then. */
const setViewport = (p, size) => p.setViewport(size).catch((e) => {
  if (!/setScreenOrientationOverride/.test(String(e?.message))) throw e;
});

before(async () => {
  server = await startServer();
  host = await launchPerson();
  ({ browser: firefox, page } = await launchFirefox());
  await setViewport(page, { width: 1280, height: 800 });
  // Keep the page's peer connections, to read what it decodes.
  await page.evaluateOnNewDocument(() => {
    const Orig = window.RTCPeerConnection;
    /** @type {any} */ (window).__pcs = [];
    window.RTCPeerConnection = class extends Orig {
      constructor(...args) { super(...args); /** @type {any} */ (window).__pcs.push(this); }
    };
  });
});

after(async () => {
  await Promise.race([firefox?.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  await host?.browser.close().catch(() => {});
  server?.stop();
});

/** Firefox's decoded video frames, summed over its receivers. */
const firefoxFrames = () => page.evaluate(async () => {
  let frames = 0;
  for (const pc of /** @type {any} */ (window).__pcs) {
    if (pc.connectionState === 'closed') continue;
    (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0; });
  }
  return frames;
});
const layoutOf = () => page.$eval('#tiles', (el) => el.dataset.layout);
const shown = () => page.$$eval('#tiles .tile:not([hidden])', (ts) => ts.map((t) => {
  const r = t.getBoundingClientRect();
  return { key: t.dataset.key, featured: t.classList.contains('featured'), x: r.x, w: r.width };
}));

test('Firefox joins a meeting, sees the host and is seen; layouts and pin work', async () => {
  const { link, hostLink } = await createMeeting(host.page, server.url, 'Firefox check');
  await joinAsHost(host.page, hostLink, 'Hana');
  await page.goto(link);
  await page.waitForSelector('#name');
  await page.type('#name', 'Fiona');
  // Polled from here: Firefox ESR 140 runs puppeteer's waitForFunction as an eval, which the CSP refuses.
  await until('Firefox shows its camera', () => page.$eval('#preview', (v) => /** @type {HTMLVideoElement} */ (v).videoWidth > 0), 15000);
  await page.click('#join');
  await page.waitForSelector('#meeting:not([hidden])');
  await until('the host decodes Firefox\'s video', async () => (await decodingVideos(host.page)) >= 1, 20000);
  const f0 = await firefoxFrames();
  await until('Firefox decodes the host\'s video', async () => (await firefoxFrames()) > f0 + 10, 20000);

  assert.equal(await layoutOf(), 'grid');
  const two = await shown();
  assert.equal(two.length, 2);
  assert.ok(two.every((t) => t.w > 500), `two large tiles (${two.map((t) => Math.round(t.w))})`);

  await page.select('#layout-select', 'speaker');
  await until('speaker view in Firefox', async () => (await layoutOf()) === 'speaker');
  const big = (await shown()).find((t) => t.featured);
  assert.ok(big && big.key !== (await page.$eval('#grid .tile.self', (t) => t.dataset.key)), 'the host is large');

  await page.select('#layout-select', 'grid');
  await page.hover('#grid .tile.self');
  await page.click('#grid .tile.self .tile-tools .pin');
  await until('Fiona pinned', async () => (await shown()).find((t) => t.featured)?.key === await page.$eval('#grid .tile.self', (t) => t.dataset.key));
  await page.click('#grid .tile.self .tile-tools .pin');
  await until('grid again', async () => (await layoutOf()) === 'grid');

  // The host shares a screen: Firefox shows the presentation view.
  await page.select('#layout-select', 'auto');
  await host.page.getByRole('button', { name: 'Share screen' }).click();
  await until('presentation in Firefox', async () => (await layoutOf()) === 'presentation');
  await host.page.getByRole('button', { name: 'Stop sharing' }).click();
  await until('grid after the share', async () => (await layoutOf()) === 'grid');
});

test('Firefox: the devices dialog lists what it has and says where the speaker is chosen; axe finds nothing', async () => {
  await page.click('#devices-btn');
  await page.waitForSelector('#devices-dialog[open]');
  const cameras = await page.$$eval('#meeting-camera option', (os) => os.length);
  assert.ok(cameras >= 1, 'Firefox\'s camera listed');
  const speaker = await page.$eval('#meeting-speaker', (s) => ({ disabled: s.disabled, options: s.options.length }));
  const hint = await page.$eval('#speaker-hint', (p) => !p.hidden);
  assert.ok(!speaker.disabled || hint, 'a speaker picker that cannot be used says where to choose instead');
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(readFileSync(AXE_SOURCE, 'utf8'));
  const violations = await page.evaluate(async () => {
    const r = await /** @type {any} */ (window).axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] });
    return r.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  });
  assert.deepEqual(violations, [], 'axe in Firefox, devices dialog open');
  await page.click('#devices-form button[type=submit]');
  await until('focus back on Devices', () => page.evaluate(() => document.activeElement?.id === 'devices-btn'));
});

test('Firefox at 390 px: every control on the screen, the page does not scroll', async () => {
  await setViewport(page, { width: 390, height: 844 });
  await new Promise((r) => setTimeout(r, 500));
  const off = await page.$$eval('.controls button, .controls select', (els) => els
    .filter((el) => !el.closest('[hidden]'))
    .map((el) => ({ id: el.id, r: el.getBoundingClientRect() }))
    .filter(({ r }) => r.left < 0 || r.right > 390 || r.top < 0 || r.bottom > 844)
    .map(({ id }) => id));
  assert.deepEqual(off, [], 'controls off the screen');
  const size = await page.evaluate(() => ({ w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight }));
  assert.ok(size.w <= 390 && size.h <= 844, `page ${size.w}×${size.h}`);
});
