// An end-to-end encrypted meeting in real browsers (issue 16): two Chromium
// and one Firefox agree on an MLS group through the real server, encrypt
// every frame with SFrame, and each decodes the others' video and hears
// their audio. The verification code is the same on every screen and changes
// when someone leaves; chat goes encrypted and never reaches the server's log.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchPerson, launchFirefox, createMeeting, joinAsHost, join, until, decodingVideos, receivingAudio, keepSecret, axe } from './harness.mjs';

let server;
/** @type {any[]} */ const people = [];
let firefox;
/** @type {any} */ let fx;

before(async () => {
  server = await startServer();
  people.push(await launchPerson(), await launchPerson());
  ({ browser: firefox, page: fx } = await launchFirefox());
  fx.on('console', (m) => { if (m.type() === 'error' || m.text().startsWith('e2ee') || process.env.CONVENE_E2E_DEBUG) console.error('firefox console:', m.type(), m.text()); });
});

/** Keep Firefox's peer connections, to read what it decodes: patched in the
 * page's own world once it has loaded (a preload script's objects are
 * another compartment's there, which the page's code may not read). */
const watchFirefox = () => fx.evaluate(() => {
  const Orig = window.RTCPeerConnection;
  /** @type {any} */ (window).__pcs = [];
  window.RTCPeerConnection = class extends Orig {
    constructor(...args) { super(...args); /** @type {any} */ (window).__pcs.push(this); }
  };
});

after(async () => {
  await Promise.race([firefox?.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  for (const p of people) await p.browser.close().catch(() => {});
  server?.stop();
});

/** What a page's MLS group says now: epoch, code, members (set by e2ee-meeting.js). */
const groupOf = (page) => page.evaluate(() => /** @type {any} */ (window).conveneE2ee || null);
/** The SFrame worker's counters. */
const sframeOf = (page) => page.evaluate(() => /** @type {any} */ (window).conveneE2eeStats || null);

/** Decoded video frames and received audio samples of a page, summed over its receivers. */
const media = (page) => page.evaluate(async () => {
  const out = { frames: 0, samples: 0, concealed: 0 };
  for (const pc of /** @type {any} */ (window).__pcs) {
    if (pc.connectionState === 'closed') continue;
    // A stats call that never answers must not hang the test's page call.
    const stats = await Promise.race([pc.getStats(), new Promise((r) => setTimeout(() => r(new Map()), 3000))]);
    stats.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'video') out.frames += s.framesDecoded || 0;
      if (s.kind === 'audio') { out.samples += s.totalSamplesReceived || 0; out.concealed += s.concealedSamples || 0; }
    });
  }
  return out;
});

/** Media decoded over two seconds: frames and samples gained, and the share of samples concealed. */
async function decodedOver(page) {
  const a = await media(page);
  await new Promise((r) => setTimeout(r, 2000));
  const b = await media(page);
  const samples = b.samples - a.samples;
  return { frames: b.frames - a.frames, samples, concealed: samples ? (b.concealed - a.concealed) / samples : 1 };
}

test('two Chromium and a Firefox meet end-to-end encrypted: same code, everyone decodes everyone', async () => {
  const [ana, bo] = people.map((p) => p.page);
  const { link, hostLink } = await createMeeting(ana, server.url, 'Sealed talks', {
    setup: (page) => page.getByLabel(/End-to-end encrypted/).check(),
  });
  await joinAsHost(ana, hostLink, 'Ana');
  await until('Ana has made the group', async () => (await groupOf(ana))?.epoch === 0);
  await join(bo, link, 'Bo');
  await fx.goto(link);
  await fx.waitForSelector('#name');
  await watchFirefox();
  // The join page says what the meeting is before anyone joins.
  const req = await fx.$eval('#requirements', (el) => el.textContent);
  assert.match(req, /End-to-end encrypted/);
  await fx.type('#name', 'Fiona');
  await until('Firefox shows its camera', () => fx.$eval('#preview', (v) => v.videoWidth > 0), 20000);
  await fx.click('#join');
  await fx.waitForSelector('#meeting', { visible: true });

  // One group, one epoch, one code on all three screens.
  const pages = [ana, bo, fx];
  const groups = await until('all three in one group at one epoch', async () => {
    const gs = await Promise.all(pages.map(groupOf));
    return gs.every((g) => g && g.members.length === 3 && g.epoch === gs[0].epoch && g.code === gs[0].code) && gs;
  }, 20000);
  assert.equal(groups[0].epoch, 2, 'made, then two adds');
  assert.match(groups[0].code, /^\d{5} \d{5} \d{5}$/);
  // The badge opens the code, in emoji with their names and in digits.
  await ana.getByRole('button', { name: 'End-to-end encrypted' }).click();
  const dialog = ana.getByRole('dialog', { name: 'End-to-end encrypted' });
  await dialog.waitFor();
  assert.equal(await ana.locator('#e2ee-digits').textContent(), groups[0].code);
  assert.equal(await ana.locator('#e2ee-emoji li').count(), 8);
  // Each emoji is read out by its name (the glyph itself is hidden from screen readers).
  assert.match(await ana.locator('#e2ee-emoji li').first().textContent(), /\p{L}{2,}/u);
  assert.deepEqual(await axe(ana), [], 'the code dialog passes axe');
  await dialog.getByRole('button', { name: 'Close' }).click();

  // Everyone decodes the two others' video and hears their audio, through SFrame.
  for (const [i, page] of pages.entries()) {
    const who = ['Ana (Chromium)', 'Bo (Chromium)', 'Fiona (Firefox)'][i];
    await until(`${who} decodes video`, async () => {
      const d = await decodedOver(page);
      if (process.env.CONVENE_E2E_DEBUG) console.log(who, 'video', JSON.stringify(d), JSON.stringify(await groupOf(page)), JSON.stringify(await sframeOf(page)));
      return d.frames >= 20 && d;
    }, 20000);
    const d = await until(`${who} hears audio`, async () => {
      const r = await decodedOver(page);
      if (process.env.CONVENE_E2E_DEBUG) console.log(who, JSON.stringify(r), JSON.stringify(await sframeOf(page)));
      return r.samples > 48000 && r.concealed < 0.2 && r;
    }, 20000);
    assert.ok(d.concealed < 0.2, `${who}: ${JSON.stringify(d)}`);
    const s = await sframeOf(page);
    assert.ok(s && s.encrypted > 0 && s.decrypted > 0, `${who} encrypts and decrypts frames: ${JSON.stringify(s)}`);
    // Each video tile's receiver is bound to the one it shows, and drops nothing for
    // a wrong sender: the binding (security review F6) keeps honest media flowing.
    const tiles = s.byTransform.filter((x) => x.side === 'recv' && x.kind === 'video' && x.decrypted > 0);
    assert.equal(tiles.length, 2, `${who}: two video receivers decrypting: ${JSON.stringify(s.byTransform)}`);
    assert.ok(tiles.every((x) => x.sender && !x.why['wrong-sender']), `${who}: bound, none dropped: ${JSON.stringify(tiles)}`);
    assert.equal(new Set(tiles.map((x) => x.sender)).size, 2, `${who}: bound to two different people: ${JSON.stringify(tiles)}`);
    assert.ok(tiles.every((x) => groups[0].members.includes(x.sender)), `${who}: bound to members of the group`);
  }
  if (process.env.CONVENE_E2E_DEBUG) console.log('decoding', await Promise.all(pages.map(decodingVideos)), await Promise.all(pages.map(receivingAudio)));

  // Encrypted chat: read by the others, never by the server (its log is checked at exit).
  const secret = 'the figures for the third quarter are 7319';
  keepSecret(secret);
  await ana.getByRole('button', { name: /^Chat/ }).click();
  await ana.getByLabel('Message').fill(secret);
  await ana.getByLabel('Message').press('Enter');
  await until('Bo reads the chat', () => bo.locator('#chat-log').textContent().then((t) => t.includes(secret)));
  await until('Fiona reads the chat', () => fx.$eval('#chat-log', (el) => el.textContent).then((t) => t.includes(secret)));

  // Bo leaves: a new epoch at once, a new code, the same on the two left.
  await bo.getByRole('button', { name: 'Leave' }).click();
  const after = await until('a new epoch without Bo', async () => {
    const gs = await Promise.all([ana, fx].map(groupOf));
    if (process.env.CONVENE_E2E_DEBUG) console.log('after leave', JSON.stringify(gs));
    return gs.every((g) => g.members.length === 2 && g.epoch === groups[0].epoch + 1 && g.code === gs[0].code) && gs;
  });
  assert.notEqual(after[0].code, groups[0].code, 'the code changed');
  await until('Ana and Fiona still decode each other', async () => (await decodedOver(fx)).frames >= 10 && (await decodedOver(ana)).frames >= 10);
});

test('a client that does not say it can encrypt is refused from an encrypted meeting', async () => {
  const page = people[1].page;
  const { link } = await createMeeting(page, server.url, 'Sealed again', {
    setup: (p) => p.getByLabel(/End-to-end encrypted/).check(),
  });
  const id = new URL(link).pathname.split('/').pop();
  const answer = await page.evaluate(async (meeting) => {
    const ws = new WebSocket(`${location.origin.replace("http", "ws")}/api/meetings/${meeting}/ws`);
    await new Promise((r) => ws.addEventListener('open', r));
    ws.send(JSON.stringify({ type: 'join', protocol: 1, name: 'Old app' }));
    return new Promise((r) => ws.addEventListener('message', (e) => r(JSON.parse(e.data))));
  }, id);
  assert.equal(answer.type, 'error');
  assert.equal(answer.code, 'e2ee-unsupported');
});

/** The height of each remote video a page decodes, by mid, and its decoded frames. */
const videosOf = (page) => page.evaluate(async () => {
  const out = [];
  for (const pc of /** @type {any} */ (window).__pcs) {
    if (pc.connectionState === 'closed') continue;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) out.push({ mid: s.mid, height: s.frameHeight || 0, frames: s.framesDecoded });
    });
  }
  return out;
});

// What the SFU still does without reading media: it switches a receiver to a
// smaller simulcast layer when the tile shrinks (its keyframe detection reads
// only the clear prefix), and forwards a screen share, all decrypted by the receiver.
test('in an encrypted meeting the SFU still switches simulcast layers, and a screen share is decrypted too', async () => {
  const [ana, bo] = people.map((p) => p.page);
  await bo.setViewportSize({ width: 1280, height: 800 });
  const { link, hostLink } = await createMeeting(ana, server.url, 'Sealed layers', {
    setup: (page) => page.getByLabel(/End-to-end encrypted/).check(),
  });
  await joinAsHost(ana, hostLink, 'Ana');
  await join(bo, link, 'Bo');
  await until('one group', async () => (await groupOf(bo))?.members.length === 2 && (await groupOf(ana))?.epoch === (await groupOf(bo)).epoch, 20000);
  // (Two people side by side at 1280×800: the middle layer, 360 lines, fits Ana's tile.)
  const big = await until('Bo decodes Ana\'s camera at 360 lines or more', async () => {
    const v = await videosOf(bo);
    if (process.env.CONVENE_E2E_DEBUG) console.log('bo receives', JSON.stringify(v));
    return v.length === 1 && v[0].height >= 360 && v[0];
  }, 30000);
  // A phone-sized window: Ana's tile shrinks, and the SFU sends a smaller layer.
  await bo.setViewportSize({ width: 390, height: 500 });
  const small = await until('a smaller layer, still decoding', async () => {
    const a = await videosOf(bo);
    await new Promise((r) => setTimeout(r, 1000));
    const b = await videosOf(bo);
    const [x, y] = [a.find((v) => v.mid === big.mid), b.find((v) => v.mid === big.mid)];
    return x && y && y.height > 0 && y.height < big.height && y.frames > x.frames && y;
  }, 30000);
  console.log(`# figure: encrypted meeting: Bo's layer of Ana's camera ${big.height} lines, then ${small.height} in a phone-sized window`);
  await bo.setViewportSize({ width: 1280, height: 800 });

  // Ana shares her screen: Bo decodes it, through his SFrame worker.
  await ana.getByRole('button', { name: 'Share screen' }).click();
  await until('Bo decodes Ana\'s camera and screen', async () => (await decodingVideos(bo)) >= 2, 20000);
  const s = await sframeOf(bo);
  const decrypting = s.byTransform.filter((t) => t.side === 'recv' && t.kind === 'video' && t.decrypted > 0);
  assert.ok(decrypting.length >= 2, `two video receivers decrypting: ${JSON.stringify(s.byTransform)}`);
  await ana.getByRole('button', { name: 'Stop sharing' }).click();
  await bo.getByRole('button', { name: 'Leave' }).click();
  await ana.getByRole('button', { name: 'Leave' }).click();
});
