// The meeting page's layout, measured in real Chromium (issue 17's bugs found by
// trying it): nothing runs off a phone's screen, nothing covers anything else,
// and axe finds nothing in the states each bug was seen in.
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

async function person(viewport) {
  const p = await launchPerson();
  people.push(p);
  if (viewport) await p.page.setViewportSize(viewport);
  return p;
}

/** Rectangles of the elements matching `selector` that are shown. */
const rects = (page, selector) => page.$$eval(selector, (els) => els
  .filter((el) => /** @type {HTMLElement} */ (el).offsetParent !== null)
  .map((el) => {
    const r = el.getBoundingClientRect();
    return { what: (el.textContent || '').trim() || el.id, left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height };
  }));

test('bug 2: at 390 px the host reaches every control, and the page is no wider than the screen', async () => {
  const host = await person({ width: 390, height: 844 });
  const { hostLink } = await createMeeting(host.page, server.url, 'Phone check');
  await joinAsHost(host.page, hostLink, 'Hana');
  await host.page.locator('#host-controls').waitFor({ state: 'visible' });
  const pageWidth = await host.page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(pageWidth <= 390, `page is ${pageWidth} px wide at a 390 px screen`);
  const controls = await rects(host.page, '#host-controls button, #host-controls select, .controls button');
  assert.ok(controls.length >= 11, `all host and meeting controls shown (${controls.length})`);
  const off = controls.filter((c) => c.left < 0 || c.right > 390);
  assert.deepEqual(off, [], 'controls off the screen');
});
