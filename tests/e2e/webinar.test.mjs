// Webinars (issue 20) in real Chromium: a host on stage and two attendees,
// each a context of one shared browser. Attendees are asked for no devices,
// publish nothing, decode the stage, see the audience's count and not one
// another; the host pages through the attendees, brings one on stage (the
// other attendee then sees and decodes them) and takes them off again (their
// tile goes, their camera stops).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join as pathJoin } from 'node:path';
import { joinCrowd, startServer, launchPerson, joinAsHost, until, decodingVideos, peopleNames, axe, ROOT } from './harness.mjs';

/** Where the screenshots for the documentation go. @param {string} name */
const shot = (name) => pathJoin(ROOT, 'docs', 'screenshots', `${name}.png`);

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

/**
 * A person: a context of the shared browser (its own cookies, so its own
 * device), keeping its peer connections, its getUserMedia calls and the
 * tracks they gave, and the server's messages to it.
 */
async function person() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.addInitScript(() => {
    const w = /** @type {any} */ (window);
    const Orig = window.RTCPeerConnection;
    w.__pcs = [];
    window.RTCPeerConnection = class extends Orig {
      constructor(...args) { super(...args); w.__pcs.push(this); }
    };
    w.__gum = 0;
    w.__gumTracks = [];
    const md = navigator.mediaDevices;
    const gum = md.getUserMedia.bind(md);
    md.getUserMedia = async (c) => {
      w.__gum++;
      const s = await gum(c);
      w.__gumTracks.push(...s.getTracks());
      return s;
    };
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  /** @type {any[]} */
  const received = [];
  page.on('websocket', (ws) => ws.on('framereceived', (f) => {
    try { received.push(JSON.parse(String(f.payload))); } catch { /* not JSON */ }
  }));
  return { page, received };
}

/** An attendee joins: the pre-join page asks for no devices and shows why. */
async function joinAudience(page, link, name) {
  await page.goto(link);
  await page.locator('#attendee-note').waitFor();
  assert.ok(await page.locator('#prejoin-devices').isHidden(), 'no device pickers for an attendee');
  assert.ok(await page.locator('#preview-box').isHidden(), 'no camera preview for an attendee');
  await page.getByLabel('Your name').fill(name);
  await page.getByRole('button', { name: 'Join meeting' }).click();
  await page.locator('#meeting').waitFor({ state: 'visible' });
}

/** What the page sends: senders with a track, and outbound RTP bytes. */
const sending = (page) => page.evaluate(async () => {
  let tracks = 0;
  let bytes = 0;
  for (const pc of /** @type {any} */ (window).__pcs.filter((c) => c.connectionState !== 'closed')) {
    tracks += pc.getSenders().filter((s) => s.track).length;
    (await pc.getStats()).forEach((s) => { if (s.type === 'outbound-rtp') bytes += s.bytesSent || 0; });
  }
  return { tracks, bytes };
});
const gumCalls = (page) => page.evaluate(() => /** @type {any} */ (window).__gum);
const liveTracks = (page) => page.evaluate(() => /** @type {any} */ (window).__gumTracks.filter((t) => t.readyState === 'live').map((t) => t.kind).sort());
const tileOf = (page, name) => page.locator('#grid .tile').filter({ has: page.locator('.name', { hasText: name }) });
const audience = (page) => page.locator('#audience-count').textContent();

test('a webinar: attendees watch without devices, the host brings one on stage and takes them off', { timeout: 60000 }, async () => {
  const res = await fetch(`${server.url}/api/meetings`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'Quarterly briefing', settings: { webinar: true } }),
  });
  assert.equal(res.status, 201);
  const { joinUrl, hostUrl, settings } = await res.json();
  assert.equal(settings.webinar, true);
  const link = joinUrl.replace(/^https?:\/\/[^/]+/, server.url);

  const host = await person();
  // The home page offers it too; it rules out end-to-end encryption, and says so.
  await host.page.goto(server.url);
  await host.page.getByRole('checkbox', { name: /^Webinar:/ }).check();
  assert.ok(await host.page.locator('#e2ee').isDisabled(), 'no end-to-end encryption with a webinar');
  assert.ok(await host.page.getByText('A webinar cannot be end-to-end encrypted').isVisible());
  await joinAsHost(host.page, hostUrl.replace(/^https?:\/\/[^/]+/, server.url), 'Hana');
  const ann = await person();
  const bob = await person();
  await joinAudience(ann.page, link, 'Ann');
  await joinAudience(bob.page, link, 'Bob');

  // Everyone sees the audience's count, in a polite live region.
  for (const { page } of [host, ann, bob]) {
    await until('the count says 2 attendees', async () => (await audience(page)) === '2 attendees');
    assert.equal(await page.locator('#audience-count').getAttribute('role'), 'status');
  }
  assert.equal(await host.page.locator('#people-count').textContent(), '1 on stage');

  // Attendees asked for no devices, send nothing, and decode the host's video.
  for (const { page } of [ann, bob]) {
    assert.equal(await gumCalls(page), 0, 'no getUserMedia for an attendee');
    await until('the host\'s video decoded', async () => (await decodingVideos(page)) >= 1);
    assert.deepEqual(await sending(page), { tracks: 0, bytes: 0 }, 'an attendee sends nothing');
    // The controls they cannot use are off, with the webinar's reason beside them.
    for (const id of ['#mic-btn', '#cam-btn', '#share-btn']) assert.ok(await page.locator(id).isDisabled(), `${id} off`);
    assert.match(await page.locator('#restrictions').innerText(), /this is a webinar/);
    assert.ok(await page.locator('#hand-btn').isEnabled(), 'an attendee may raise a hand');
  }
  // Attendees do not see each other: in People, the stage and themselves; on the stage, the host.
  await ann.page.getByRole('button', { name: 'People' }).click();
  const annSees = await peopleNames(ann.page);
  assert.ok(annSees.some((n) => n.includes('Hana')) && annSees.some((n) => n.includes('Ann')), annSees.join(' | '));
  assert.ok(!annSees.some((n) => n.includes('Bob')), `Ann sees Bob: ${annSees.join(' | ')}`);
  assert.ok(!(await peopleNames(bob.page)).some((n) => n.includes('Ann')), 'Bob does not see Ann');
  assert.equal(await ann.page.locator('#grid .tile').count(), 1, 'Ann\'s stage: the host\'s tile only');
  assert.ok(await ann.page.locator('#attendees-panel').isHidden(), 'no attendee list for attendees');
  assert.deepEqual(await axe(ann.page), [], 'axe: an attendee with People open');
  // Their chat reaches the stage only, and the chat panel says so.
  await ann.page.getByRole('button', { name: 'Chat' }).click();
  assert.ok(await ann.page.getByText('your messages and reactions reach the people on stage').isVisible());
  await ann.page.getByRole('button', { name: 'Chat' }).click();

  // The host asks for the attendees: both, publishing nothing.
  await host.page.getByRole('button', { name: 'People' }).click();
  await host.page.getByRole('button', { name: 'Show attendees' }).click();
  await until('both attendees listed', async () => (await host.page.locator('#attendees li').count()) === 2);
  const listed = await host.page.$$eval('#attendees li .name', (els) => els.map((e) => e.textContent).sort());
  assert.deepEqual(listed, ['Ann', 'Bob']);
  assert.equal(await host.page.locator('#attendees-heading').textContent(), 'Attendees (2)');
  const page = host.received.findLast((m) => m.type === 'attendees');
  assert.equal(page.total, 2);
  assert.deepEqual(page.attendees.map((a) => a.sources), [[], []], 'the server has no sources from attendees');
  assert.deepEqual(await axe(host.page), [], 'axe: the host with the attendee list');

  // Ann raises her hand: the host sees it without paging, with a way on stage.
  await ann.page.getByRole('button', { name: 'Raise hand' }).click();
  await host.page.locator('#hands li', { hasText: 'Ann' }).getByRole('button', { name: 'Bring on stage: Ann' }).waitFor();
  await host.page.screenshot({ path: shot('webinar-host') });

  // On stage: Ann's page asks for devices now and publishes; Bob sees and decodes her.
  await host.page.locator('#attendees').getByRole('button', { name: 'Bring on stage: Ann' }).click();
  await until('Ann asked for devices', async () => (await gumCalls(ann.page)) === 1);
  await until('Ann sends video', async () => (await sending(ann.page)).tracks >= 1);
  await tileOf(bob.page, 'Ann').waitFor();
  await until('Bob decodes the host and Ann', async () => (await decodingVideos(bob.page)) >= 2);
  await bob.page.screenshot({ path: shot('webinar-attendee') });
  await until('the count says 1 attendee', async () => (await audience(bob.page)) === '1 attendee');
  await until('Ann off the host\'s attendee list', async () => (await host.page.locator('#attendees li').count()) === 1);
  assert.ok(await ann.page.locator('#mic-btn').isEnabled(), 'Ann may unmute on stage');

  // Off stage: the tile goes from Bob's page, Ann's camera and microphone stop.
  await host.page.getByRole('button', { name: 'Take off stage: Ann' }).click();
  await tileOf(bob.page, 'Ann').waitFor({ state: 'detached' });
  await until('Ann\'s devices stopped', async () => (await liveTracks(ann.page)).length === 0);
  await until('Ann sends nothing', async () => (await sending(ann.page)).tracks === 0);
  assert.ok(await ann.page.locator('#mic-btn').isDisabled(), 'Ann is an attendee again');
  assert.equal(await ann.page.locator('#grid .tile').count(), 1, 'Ann\'s own tile is gone');
  await until('Ann back on the host\'s list', async () => (await host.page.locator('#attendees li').count()) === 2);

  // At 390 px: nothing wider than the screen, and axe still clean.
  for (const { page: p } of [host, ann]) {
    await p.setViewportSize({ width: 390, height: 844 });
    const width = await p.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `page is ${width} px wide at 390 px`);
    assert.deepEqual(await axe(p), [], 'axe at 390 px');
  }
});

test('a host pages through 55 attendees, 50 at a time, and sees a raised hand without paging', { timeout: 60000 }, async () => {
  const COUNT = 55;
  const res = await fetch(`${server.url}/api/meetings`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'Town hall', settings: { webinar: true } }),
  });
  const { id, hostUrl } = await res.json();
  const host = await person();
  await joinAsHost(host.page, hostUrl.replace(/^https?:\/\/[^/]+/, server.url), 'Hana');

  // The audience: plain signalling sockets (no media) from a page of another context.
  const crowd = await (await browser.newContext()).newPage();
  await crowd.goto(server.url);
  await joinCrowd(crowd, `${server.url.replace(/^http/, 'ws')}/api/meetings/${id}/ws`, COUNT);

  await until(`the count says ${COUNT} attendees`, async () => (await audience(host.page)) === `${COUNT} attendees`);
  await host.page.getByRole('button', { name: 'People' }).click();
  await host.page.getByRole('button', { name: 'Show attendees' }).click();
  const rows = host.page.locator('#attendees li');
  await until('the first page', async () => (await rows.count()) === 50);
  assert.equal(await host.page.locator('#attendees-range').textContent(), `1–50 of ${COUNT}`);
  assert.ok(await host.page.locator('#attendees-prev').isDisabled());
  await host.page.locator('#attendees-pager').getByRole('button', { name: 'Next' }).click();
  await until('the second page', async () => (await rows.count()) === COUNT - 50);
  assert.equal(await host.page.locator('#attendees-range').textContent(), `51–${COUNT} of ${COUNT}`);
  assert.ok(await host.page.locator('#attendees-next').isDisabled(), 'no page after the last');
  const pageTwo = await host.page.$$eval('#attendees li .name', (els) => els.map((e) => e.textContent));
  await host.page.locator('#attendees-pager').getByRole('button', { name: 'Previous' }).click();
  await until('the first page again', async () => (await rows.count()) === 50);
  const pageOne = await host.page.$$eval('#attendees li .name', (els) => els.map((e) => e.textContent));
  assert.equal(new Set([...pageOne, ...pageTwo]).size, COUNT, 'every attendee on one page or the other');

  // A hand from an attendee on the other page reaches the host's queue at once.
  const raiser = pageTwo[pageTwo.length - 1];
  await crowd.evaluate((n) => /** @type {any} */ (window).__crowd[n - 1].send(JSON.stringify({ type: 'raise-hand' })), Number(raiser.replace('Guest ', '')));
  await host.page.locator('#hands li', { hasText: raiser }).getByRole('button', { name: `Bring on stage: ${raiser}` }).waitFor();
  assert.equal(await host.page.locator('#grid .tile').count(), 1, 'attendees have no tiles, a raised hand neither');
  // They leave: their hand goes from the queue, and the count goes down.
  await crowd.evaluate((n) => /** @type {any} */ (window).__crowd[n - 1].send(JSON.stringify({ type: 'leave' })), Number(raiser.replace('Guest ', '')));
  await host.page.locator('#hands li', { hasText: raiser }).waitFor({ state: 'detached' });
  await until(`the count says ${COUNT - 1} attendees`, async () => (await audience(host.page)) === `${COUNT - 1} attendees`);
  await crowd.context().close();
});

test('Q&A: an attendee asks, the stage sees who, hosts answer and dismiss, the rest of the audience sees answers without the asker', { timeout: 90000 }, async () => {
  const res = await fetch(`${server.url}/api/meetings`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'Ask me anything', settings: { webinar: true } }),
  });
  const { joinUrl, hostUrl } = await res.json();
  const link = joinUrl.replace(/^https?:\/\/[^/]+/, server.url);
  const host = await person();
  await joinAsHost(host.page, hostUrl.replace(/^https?:\/\/[^/]+/, server.url), 'Hana');
  const ann = await person();
  const bob = await person();
  await joinAudience(ann.page, link, 'Ann');
  await joinAudience(bob.page, link, 'Bob');
  const qa = (page) => page.locator('#qa-list li');
  const item = (page, text) => qa(page).filter({ hasText: text });
  for (const { page } of [host, ann, bob]) {
    await page.getByRole('button', { name: /^Q&A/ }).click();
    await page.getByRole('heading', { name: 'Questions' }).waitFor();
  }
  assert.ok(await host.page.getByRole('button', { name: /^Q&A/ }).isVisible());

  // Ann asks: the host sees it with her name, open, and hears of it; Ann sees her own.
  const Q1 = 'Will the slides be shared afterwards?';
  await ann.page.getByLabel('Your question').fill(Q1);
  await ann.page.getByRole('button', { name: 'Ask', exact: true }).click();
  await item(host.page, Q1).waitFor();
  assert.match(await item(host.page, Q1).locator('.who').innerText(), /^Ann$/);
  assert.match(await item(host.page, Q1).innerText(), /Not answered yet/);
  await until('the host hears of the question', async () => (await host.page.locator('#announcer').textContent()).includes('New question from Ann.'));
  assert.equal(await host.page.locator('#qa-badge').textContent(), '1 open', 'the stage counts open questions');
  await item(ann.page, Q1).waitFor();
  assert.equal(await ann.page.getByLabel('Your question').inputValue(), '', 'the box empties once asked');
  assert.match(await item(ann.page, Q1).locator('.who').innerText(), /Ann \(you\)/);
  assert.ok(await ann.page.locator('#qa-badge').isHidden(), 'no count for the audience');

  // A second question at once is refused (one per 5 s): said in words, as an alert, and the text kept.
  await ann.page.getByLabel('Your question').fill('And the recording?');
  await ann.page.getByRole('button', { name: 'Ask', exact: true }).click();
  const error = ann.page.getByRole('alert').filter({ hasText: 'one question every few seconds' });
  await error.waitFor();
  assert.equal(await ann.page.getByLabel('Your question').inputValue(), 'And the recording?');
  assert.equal(await ann.page.locator('#status').textContent(), '', 'not in the status line');

  // Bob asks too; neither attendee sees the other's open question.
  const Q2 = 'Is there a discount for students?';
  await bob.page.getByLabel('Your question').fill(Q2);
  await bob.page.getByRole('button', { name: 'Ask', exact: true }).click();
  await item(host.page, Q2).waitFor();
  await item(bob.page, Q2).waitFor();
  assert.equal(await qa(bob.page).count(), 1, 'Bob sees his own question only');
  assert.equal(await qa(ann.page).count(), 1, 'Ann sees her own question only');
  assert.ok(!bob.received.some((m) => m.type === 'question' && m.question.text === Q1), 'Bob was not sent Ann\'s open question');
  await until('two open', async () => (await host.page.locator('#qa-badge').textContent()) === '2 open');
  assert.deepEqual(await axe(host.page), [], 'axe: the host with questions');
  assert.deepEqual(await axe(ann.page), [], 'axe: an attendee with the Q&A panel and an error');

  // The host marks Ann's answered: Bob sees it answered from "an attendee"; Ann with her name, and hears it.
  await host.page.getByRole('button', { name: 'Mark answered: Will the slides be shared afterwards?' }).click();
  await until('answered for the host', async () => /Answered/.test(await item(host.page, Q1).innerText()));
  assert.equal(await host.page.locator('#qa-badge').textContent(), '1 open');
  await item(bob.page, Q1).waitFor();
  assert.match(await item(bob.page, Q1).innerText(), /Answered/);
  assert.match(await item(bob.page, Q1).locator('.who').innerText(), /^An attendee$/);
  assert.ok(!(await item(bob.page, Q1).innerText()).includes('Ann'), 'Bob does not learn who asked');
  const toBob = bob.received.findLast((m) => m.type === 'question' && m.question.text === Q1);
  assert.ok(!('participantId' in toBob.question) && !('name' in toBob.question), 'nor does the server tell him');
  await until('Ann sees it answered', async () => /Answered/.test(await item(ann.page, Q1).innerText()));
  assert.match(await item(ann.page, Q1).locator('.who').innerText(), /Ann \(you\)/);
  await until('Ann hears it was answered', async () => (await ann.page.locator('#announcer').textContent()).includes('Your question was answered.'));
  assert.equal(await host.page.locator('#qa-list button', { hasText: 'Mark answered' }).count(), 1, 'no Mark answered on an answered question');

  // The host dismisses Bob's: gone for the host and for Bob.
  await host.page.getByRole('button', { name: 'Dismiss: Is there a discount for students?' }).click();
  await item(host.page, Q2).waitFor({ state: 'detached' });
  await item(bob.page, Q2).waitFor({ state: 'detached' });
  assert.ok(await host.page.locator('#qa-badge').isHidden(), 'nothing open');
  assert.equal(await qa(bob.page).count(), 1, 'Bob keeps the answered question');

  // An attendee's double click on the hand: one change, and no error.
  await bob.page.locator('#hand-btn').dblclick();
  await host.page.locator('#hands li', { hasText: 'Bob' }).waitFor({ state: 'attached' });
  assert.equal(await bob.page.locator('#hand-btn').textContent(), 'Lower hand', 'the hand is up after a double click');
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(!bob.received.some((m) => m.type === 'error'), `errors: ${JSON.stringify(bob.received.filter((m) => m.type === 'error'))}`);
  assert.equal(await bob.page.locator('#status').textContent(), '');

  // At 390 px: nothing wider than the screen, axe clean.
  for (const { page: p } of [host, bob]) {
    await p.setViewportSize({ width: 390, height: 844 });
    const width = await p.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `page is ${width} px wide at 390 px`);
    assert.deepEqual(await axe(p), [], 'axe at 390 px with Q&A');
  }
  for (const p of [host, ann, bob]) await p.page.context().close();
});
