// Sharing a video file (issue 20) in real Chromium: the host makes a short
// WebM in the page (a canvas and a tone through MediaRecorder), picks it with
// "Share a video file", and the browser sends what it plays as its shared
// screen with the file's sound. The guest decodes the picture on the stage's
// tile and receives the sound; Pause and Play work; Stop unpublishes it, and
// so does the file's end. The page plays the file from a blob: URL, which
// the server's Content-Security-Policy allows for media (media-src 'self'
// blob:); the test runs under that policy.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchPerson, createMeeting, joinAsHost, join, until, axe } from './harness.mjs';

let server;
const browsers = [];

before(async () => { server = await startServer(); });
after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  server?.stop();
});

/** What a receiver of the track shown by `selector` has had (an inbound-rtp field), or -1 when there is none. */
const received = (page, selector, field) => page.evaluate(async ({ selector, field }) => {
  const el = /** @type {HTMLMediaElement | null} */ (document.querySelector(selector));
  const track = /** @type {MediaStream | null} */ (el?.srcObject)?.getTracks()[0];
  if (!track) return -1;
  for (const pc of /** @type {any} */ (window).__pcs) {
    for (const r of pc.getReceivers()) {
      if (r.track !== track) continue;
      let v = 0;
      (await r.getStats()).forEach((s) => { if (s.type === 'inbound-rtp') v = s[field] || 0; });
      return v;
    }
  }
  return -1;
}, { selector, field });

/** Whether that field rises over a second. */
async function rising(page, selector, field) {
  const a = await received(page, selector, field);
  await new Promise((r) => setTimeout(r, 1000));
  const b = await received(page, selector, field);
  return a >= 0 && b > a;
}

test('a host shares a video file: the guest decodes its picture and hears its sound; Pause, Play, Stop', { timeout: 90000 }, async () => {
  const h = await launchPerson();
  const g = await launchPerson();
  browsers.push(h.browser, g.browser);
  const host = h.page;
  const guest = g.page;
  const { link, hostLink } = await createMeeting(host, server.url, 'Film night');

  // An 8 s WebM made in the page: a changing canvas and a tone.
  const clip = await host.evaluate(async () => {
    const canvas = document.createElement('canvas');
    canvas.width = 320;
    canvas.height = 240;
    const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
    let n = 0;
    const draw = setInterval(() => {
      ctx.fillStyle = `hsl(${(n * 7) % 360} 70% 45%)`;
      ctx.fillRect(0, 0, 320, 240);
      ctx.fillStyle = '#fff';
      ctx.font = '48px sans-serif';
      ctx.fillText(String(n++), 40, 120);
    }, 33);
    const audio = new AudioContext();
    const tone = audio.createOscillator();
    const out = audio.createMediaStreamDestination();
    tone.connect(out);
    tone.start();
    const stream = new MediaStream([...canvas.captureStream(30).getVideoTracks(), ...out.stream.getAudioTracks()]);
    const rec = new MediaRecorder(stream, { mimeType: 'video/webm;codecs=vp8,opus' });
    /** @type {Blob[]} */
    const chunks = [];
    rec.ondataavailable = (e) => chunks.push(e.data);
    const stopped = new Promise((r) => { rec.onstop = r; });
    rec.start(500);
    await new Promise((r) => setTimeout(r, 8000));
    rec.stop();
    await stopped;
    clearInterval(draw);
    await audio.close();
    const bytes = new Uint8Array(await new Blob(chunks).arrayBuffer());
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s);
  });

  const pick = async () => {
    const [chooser] = await Promise.all([
      host.waitForEvent('filechooser'),
      host.getByRole('button', { name: 'Share a video file' }).click(),
    ]);
    await chooser.setFiles({ name: 'clip.webm', mimeType: 'video/webm', buffer: Buffer.from(clip, 'base64') });
  };

  // The page plays the file from a blob: URL, under the server's own policy.
  const served = await host.goto(hostLink);
  assert.match(served?.headers()['content-security-policy'] ?? '', /media-src 'self' blob:/);
  await joinAsHost(host, hostLink, 'Hana');
  assert.equal(await host.locator('#video-file-input').getAttribute('accept'), 'video/*');
  await join(guest, link, 'Gus');
  await pick();

  // The guest sees it as a shared screen (the presentation layout), decodes it, and hears it.
  const tile = '#stage .tile[data-source="screen"] video';
  await guest.locator(tile).waitFor({ state: 'attached' });
  await until('the presentation layout', () => guest.evaluate(() => document.getElementById('tiles')?.dataset.layout === 'presentation'));
  await until('the guest decodes the file', () => rising(guest, tile, 'framesDecoded'), 6000);
  const sound = '#audio-sink audio[data-key$="-screen-audio"]';
  await until('the guest receives its sound', () => rising(guest, sound, 'bytesReceived'), 6000);
  // Sent as moving pictures, not as a screen's text.
  assert.equal(await host.evaluate(() => /** @type {any} */ (window).__pcs.flatMap((pc) => pc.getSenders())
    .find((s) => s.track?.kind === 'video' && s.track.contentHint === 'motion') ? 'motion' : ''), 'motion');

  // The sharer's controls: Pause (focused), Play, Stop.
  const bar = host.getByRole('group', { name: 'Sharing clip.webm' });
  await bar.waitFor();
  assert.equal(await host.evaluate(() => document.activeElement?.id), 'video-file-play');
  await bar.getByRole('button', { name: 'Pause' }).click();
  await bar.getByRole('button', { name: 'Play' }).click();
  await bar.getByRole('button', { name: 'Pause' }).waitFor();
  assert.deepEqual(await axe(host), [], 'axe: the host sharing a video file');
  await host.setViewportSize({ width: 390, height: 844 });
  const width = await host.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `page is ${width} px wide at 390 px`);
  assert.deepEqual(await axe(host), [], 'axe at 390 px');
  await bar.getByRole('button', { name: 'Stop the video' }).click();
  await guest.locator(tile).waitFor({ state: 'detached' });
  await guest.locator(sound).waitFor({ state: 'detached' });
  assert.equal(await host.evaluate(() => document.activeElement?.id), 'video-file-btn');
  assert.equal(await host.locator('#share-btn').textContent(), 'Share screen');
  assert.ok(await host.locator('#video-file-bar').isHidden());

  // Shared again and played to its end: the share ends with it, and the host is told.
  await host.setViewportSize({ width: 1280, height: 800 });
  await pick();
  await guest.locator(tile).waitFor({ state: 'attached' });
  await host.evaluate(() => { /** @type {HTMLVideoElement} */ (document.querySelector('#video-file-player video')).currentTime = 1e6; });
  await until('the host is told the video ended', async () => /^The video clip\.webm ended/.test(await host.locator('#status').textContent()), 5000);
  await guest.locator(tile).waitFor({ state: 'detached' });
  assert.equal(await host.locator('#share-btn').textContent(), 'Share screen');
});
