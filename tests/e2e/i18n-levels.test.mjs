// A level's words in the page's language (issue 17, Languages): the policy
// gives each level's name and banner in Dutch and Swedish (policies/
// four-levels.toml); a Dutch browser sees them on the home page and the join
// page. And a Dutch page never shows its English first: until the catalogue
// has translated it, the page is hidden (i18n-early.js), for at most a second.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, launchPerson, ROOT } from './harness.mjs';

let server;
const people = [];

before(async () => {
  server = await startServer(['--policy', join(ROOT, 'policies', 'four-levels.toml')]);
});

after(async () => {
  for (const p of people) await p.browser.close().catch(() => {});
  server?.stop();
});

async function person(options) {
  const p = await launchPerson(options);
  people.push(p);
  return p;
}

/**
 * Before each frame is painted, what the page shows of the create button: the
 * text of the first frame in which the page is not hidden.
 */
function recordFirstPaint() {
  /** @type {any} */ (window).firstPaint = null;
  const look = () => {
    const button = document.querySelector('[data-i18n="home.create"]');
    if (button && getComputedStyle(document.documentElement).visibility !== 'hidden') {
      /** @type {any} */ (window).firstPaint = { text: button.textContent, at: performance.now() };
      return;
    }
    requestAnimationFrame(look);
  };
  requestAnimationFrame(look);
}

test('a Dutch browser sees the level names and banner in Dutch, and no English first', async () => {
  const { page } = await person({ locale: 'nl-NL' });
  await page.addInitScript(recordFirstPaint);
  await page.goto(server.url);
  await page.getByRole('button', { name: 'Vergadering aanmaken' }).waitFor();
  const first = await page.evaluate(() => /** @type {any} */ (window).firstPaint);
  assert.ok(first, 'the page was shown');
  assert.equal(first.text, 'Vergadering aanmaken', 'the first frame shown is Dutch already');
  assert.ok(first.at < 1500, `shown after ${first.at} ms`);
  assert.equal(await page.evaluate(() => document.documentElement.classList.contains('i18n-pending')), false);

  const options = await page.locator('#level option').allTextContents();
  assert.equal(options[0], 'Beschermingsniveau 0');
  assert.equal(options[1], 'Beschermingsniveau 1');
  assert.equal(await page.locator('#level-preview').textContent(), 'Beschermingsniveau 0: openbaar');
  await page.locator('#level').selectOption('level-1');
  assert.equal(await page.locator('#level-preview').textContent(), 'Beschermingsniveau 1: intern');

  // A meeting at level 1 (it needs a passcode): the join page names its level in Dutch.
  await page.getByLabel('Onderwerp van de vergadering').fill('Overleg');
  await page.getByLabel('Toegangscode (niet verplicht)').fill('tulpen 4711');
  await page.locator('#raise').check();
  await page.getByRole('button', { name: 'Vergadering aanmaken' }).click();
  const invitation = page.getByLabel('Uitnodiging om te versturen');
  await page.waitForFunction(() => /** @type {HTMLTextAreaElement} */ (document.getElementById('invite-text'))?.value.includes('Rubricering'));
  assert.ok((await invitation.inputValue()).includes('Rubricering: Beschermingsniveau 1'));
  assert.match(await page.locator('#invite-ics').getAttribute('href') || '', /invitation\.ics\?lang=nl$/);
  const link = await page.getByLabel('Deelnamelink').inputValue();

  const guest = await person({ locale: 'nl-NL' });
  await guest.page.goto(link);
  const level = guest.page.locator('#requirements .requirements-level');
  await level.waitFor();
  assert.equal(await level.textContent(), 'Rubricering: Beschermingsniveau 1');
});

test('a Dutch browser sees the meeting\'s banner in Dutch on the join page', async () => {
  const { page } = await person({ locale: 'nl-NL' });
  const res = await page.request.post(`${server.url}/api/meetings`, { data: { title: 'Banner', level: 'level-0' } });
  const { joinUrl } = await res.json();
  await page.goto(joinUrl);
  await page.locator('#level-banner').waitFor();
  assert.equal(await page.locator('#level-banner').textContent(), 'Beschermingsniveau 0: openbaar');
});

test('a Dutch host is told in Dutch what a level change did to people, the level named in Dutch', async () => {
  const { page: host } = await person({ locale: 'nl-NL' });
  const { page: guest } = await person();
  const res = await host.request.post(`${server.url}/api/meetings`, { data: { title: 'Notices', level: 'level-0', passcode: '4711 blue' } });
  const { joinUrl, hostUrl } = await res.json();
  await host.goto(hostUrl);
  await host.locator('#name').fill('Hanneke');
  await host.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
  await host.locator('#join').click();
  await host.locator('#meeting').waitFor({ state: 'visible' });
  await guest.goto(joinUrl);
  await guest.getByLabel('Your name').fill('Gus');
  await guest.getByLabel('Meeting passcode').fill('4711 blue');
  await guest.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
  await guest.getByRole('button', { name: 'Join meeting' }).click();
  await guest.locator('#meeting').waitFor({ state: 'visible' });
  // Raising to level 1, which needs the lobby: the guest goes back to it, and the host reads why in Dutch.
  await host.locator('#level-select').selectOption('level-1');
  await host.locator('#level-btn').click();
  await guest.getByRole('heading', { name: 'Waiting to be let in' }).waitFor();
  await host.locator('#status').getByText('Beschermingsniveau 1 vereist een wachtruimte: Gus wachten daar tot een organisator hen weer toelaat.', { exact: true }).waitFor();
});
