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
  // On a phone the host's controls fold behind one button.
  await host.page.getByRole('button', { name: 'Host controls' }).click();
  await host.page.locator('#host-controls').waitFor({ state: 'visible' });
  const pageWidth = await host.page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(pageWidth <= 390, `page is ${pageWidth} px wide at a 390 px screen`);
  const controls = await rects(host.page, '#host-controls button, #host-controls select, .controls button');
  assert.ok(controls.length >= 11, `all host and meeting controls shown (${controls.length})`);
  const off = controls.filter((c) => c.left < 0 || c.right > 390);
  assert.deepEqual(off, [], 'controls off the screen');
});

test('bug 3: sign-in buttons on the home and join pages overlap neither each other nor the text', async () => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join: pathJoin } = await import('node:path');
  // Two organisations whose providers are never reached: only the pages are measured.
  const config = pathJoin(mkdtempSync(pathJoin(tmpdir(), 'convene-e2e-layout-')), 'convene.toml');
  writeFileSync(config, `
[home]
name = "Department for Levelling Up, Housing and Communities"
domains = ["home.example"]
[home.provider]
issuer = "http://127.0.0.1:9/home"
client_id = "convene"
client_secret = "unused"

[[partner]]
id = "partner-agency"
name = "Partner Agency for Regional Development"
domains = ["partner.example"]
[partner.provider]
issuer = "http://127.0.0.1:9/partner"
client_id = "convene"
client_secret = "unused"
`);
  const signin = await startServer(['--config', config]);
  try {
    // A meeting to open the join page of (created over the API: nobody is signed in to create one).
    const res = await fetch(`${signin.url}/api/meetings`, { method: 'POST', headers: { 'Content-Type': 'application/json', Origin: signin.url }, body: JSON.stringify({ title: 'Joint planning' }) });
    const made = res.ok ? await res.json() : null;
    const overlaps = (boxes) => {
      const out = [];
      for (let i = 0; i < boxes.length; i++) {
        for (let j = i + 1; j < boxes.length; j++) {
          const a = boxes[i], b = boxes[j];
          if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5) out.push(`${a.what} / ${b.what}`);
        }
      }
      return out;
    };
    for (const width of [1280, 390]) {
      const p = await person({ width, height: 844 });
      await p.page.goto(signin.url);
      await p.page.getByRole('link', { name: /Sign in with Partner Agency/ }).waitFor();
      const home = [...await rects(p.page, '#sign-in a'), ...await rects(p.page, '#create-needs-sign-in, .lead')];
      assert.equal(home.length, 4, 'two sign-in links and two texts on the home page');
      assert.deepEqual(overlaps(home), [], `home page at ${width} px`);
      if (made) {
        await p.page.goto(made.joinUrl);
        await p.page.getByRole('link', { name: /Sign in with Partner Agency/ }).waitFor();
        const joinPage = [...await rects(p.page, '#sign-in a'), ...await rects(p.page, '#guest-note, #identity-heading')];
        assert.equal(joinPage.length, 4, 'two sign-in links, the heading and the guest note on the join page');
        assert.deepEqual(overlaps(joinPage), [], `join page at ${width} px`);
      }
    }
  } finally {
    signin.stop();
  }
});

test('bug 4: with a side panel open, a shared screen fits the stage, and axe finds no unreachable scrolling', async () => {
  const host = await person();
  const { hostLink } = await createMeeting(host.page, server.url, 'Share check');
  await joinAsHost(host.page, hostLink, 'Hana');
  await host.page.getByRole('button', { name: 'Share screen' }).click();
  await host.page.locator('#stage .tile video').waitFor();
  await host.page.getByRole('button', { name: 'People' }).click();
  await host.page.locator('#people-panel').waitFor({ state: 'visible' });
  const [area] = await rects(host.page, '.stage-area');
  const [share] = await rects(host.page, '#stage .tile');
  assert.ok(share.left >= area.left - 0.5 && share.right <= area.right + 0.5,
    `the shared screen (${share.left}–${share.right}) is inside the stage (${area.left}–${area.right})`);
  const scroll = await host.page.$eval('.stage-area', (el) => ({ sw: el.scrollWidth, cw: el.clientWidth }));
  assert.ok(scroll.sw <= scroll.cw, `the stage scrolls sideways (${scroll.sw} > ${scroll.cw})`);
  assert.deepEqual(await axe(host.page, ['scrollable-region-focusable']), []);
});

test('bug 5: buttons in People are named with the words they show', async () => {
  const host = await person();
  const guest = await person();
  const { link, hostLink } = await createMeeting(host.page, server.url, 'Names check');
  await joinAsHost(host.page, hostLink, 'Hana');
  await join(guest.page, link, 'Gus');
  await guest.page.getByRole('button', { name: 'Share screen' }).click();
  await host.page.getByRole('button', { name: 'People' }).click();
  await host.page.locator('#people li', { hasText: 'Gus' }).getByText('Stop sharing').waitFor();
  await host.page.locator('#people li', { hasText: 'Gus' }).getByText('Stop camera').waitFor();
  assert.deepEqual(await axe(host.page, ['label-content-name-mismatch']), []);
});

test('bug 7: a host alone at 1280×800 sees their name label above the control bar', async () => {
  const host = await person({ width: 1280, height: 800 });
  const { hostLink } = await createMeeting(host.page, server.url, 'Alone');
  await joinAsHost(host.page, hostLink, 'Hana');
  await host.page.locator('#grid .tile video').waitFor();
  const [label] = await rects(host.page, '#grid .tile .label');
  const [bar] = await rects(host.page, '.controls');
  const [area] = await rects(host.page, '.stage-area');
  assert.ok(label.bottom <= bar.top, `the name label (bottom ${label.bottom}) is above the control bar (top ${bar.top})`);
  assert.ok(label.bottom <= area.bottom, `the name label (bottom ${label.bottom}) is inside the stage (bottom ${area.bottom})`);
  const [tile] = await rects(host.page, '#grid .tile');
  assert.ok(tile.bottom <= area.bottom + 0.5, `the tile (bottom ${tile.bottom}) fits the stage (bottom ${area.bottom})`);
});

test('bug 8: the level banner is inside a landmark on the join page, in the lobby and in the meeting', async () => {
  const host = await person();
  const guest = await person();
  const { link, hostLink } = await createMeeting(host.page, server.url, 'Landmarks', {
    setup: (page) => page.getByLabel('Lobby: people wait until a host lets them in').check(),
  });
  await guest.page.goto(link);
  await guest.page.locator('#level-banner').waitFor();
  assert.deepEqual(await axe(guest.page, ['region']), [], 'join page');
  await joinAsHost(host.page, hostLink, 'Hana');
  assert.deepEqual(await axe(host.page, ['region']), [], 'meeting');
  await guest.page.getByLabel('Your name').fill('Gus');
  await guest.page.getByRole('button', { name: 'Join meeting' }).click();
  await guest.page.getByRole('heading', { name: 'Waiting to be let in' }).waitFor();
  assert.deepEqual(await axe(guest.page, ['region']), [], 'lobby');
  await until('the banner named as a region', async () => (await guest.page.getByRole('region', { name: 'Handling level' }).count()) === 1);
});
