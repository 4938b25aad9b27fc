// Three people meet in real Chromium through Convene's SFU.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join as pathJoin } from 'node:path';
import { ROOT, startServer, launchPerson, createMeeting, join, until, decodingVideos, receivingAudio, peopleNames, cutConnections } from './harness.mjs';

const SHOTS = pathJoin(ROOT, 'docs', 'screenshots');
let server;
const people = [];

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  server = await startServer(['--reconnect-grace', '3']);
});

after(async () => {
  for (const p of people) await p.browser.close().catch(() => {});
  server?.stop();
});

test('three people meet: video, audio, screen share, chat, leave, vanish', async () => {
  const ann = await launchPerson();
  const bob = await launchPerson();
  const cat = await launchPerson();
  people.push(ann, bob, cat);

  // Ann creates the meeting on the home page.
  const { link } = await createMeeting(ann.page, server.url, 'Cross-department planning');
  await ann.page.screenshot({ path: pathJoin(SHOTS, 'home.png') });
  assert.match(link, /\/m\/[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}$/);

  await join(ann.page, link, 'Ann (Home Office)', { screenshot: pathJoin(SHOTS, 'prejoin.png') });
  await join(bob.page, link, 'Bob (DWP)');
  await join(cat.page, link, 'Cat (Cabinet Office)');

  // Each decodes video from the other two and receives their audio.
  for (const [who, p] of [['Ann', ann], ['Bob', bob], ['Cat', cat]]) {
    await until(`${who} decoding two videos`, async () => (await decodingVideos(p.page)) >= 2, 20000);
    await until(`${who} receiving two audio streams`, async () => (await receivingAudio(p.page)) >= 2);
    assert.equal((await peopleNames(p.page)).length, 3);
  }

  // Joining a running call: time from clicking Join to the first decoded remote frame.
  const dan = await launchPerson();
  people.push(dan);
  await join(dan.page, link, 'Dan (HMRC)');
  const firstFrameMs = await until('Dan\'s first frame', () => dan.page.evaluate(() => window['conveneJoinToFirstFrameMs']));
  console.log(`METRIC join_to_first_remote_frame_ms=${firstFrameMs}`);
  await dan.page.getByRole('button', { name: 'Leave' }).click();
  await dan.browser.close();
  for (const p of [ann, bob, cat]) await until('Dan gone', async () => (await peopleNames(p.page)).length === 3);

  // The fake audio is a beep: the speaking indicator shows on someone's tile.
  await until('a speaking indicator', () => bob.page.locator('.tile.speaking').count());

  // Bob mutes and stops his camera: the others see it; then he turns both back on.
  await bob.page.getByRole('button', { name: 'Mute' }).click();
  await until('Ann sees Bob muted', async () => (await peopleNames(ann.page)).some((n) => n.startsWith('Bob (DWP)') && n.includes('microphone off')));
  await bob.page.getByRole('button', { name: 'Stop camera' }).click();
  const bobTile = ann.page.locator('#grid .tile', { hasText: 'Bob (DWP)' });
  await until('Bob\'s tile shows no video', async () => (await bobTile.locator('video').count()) === 0);
  await bob.page.getByRole('button', { name: 'Unmute' }).click();
  await bob.page.getByRole('button', { name: 'Start camera' }).click();
  await until('Bob\'s video back', async () => (await bobTile.locator('video').count()) === 1);
  await until('Ann decoding two videos again', async () => (await decodingVideos(ann.page)) >= 2, 20000);

  // Ann shares her screen; Bob and Cat see it large and decode it.
  await ann.page.getByRole('button', { name: 'Share screen' }).click();
  for (const [who, p] of [['Bob', bob], ['Cat', cat]]) {
    await until(`${who} sees the shared screen`, () => p.page.locator('#stage video').count());
    await until(`${who} decoding three videos`, async () => (await decodingVideos(p.page)) >= 3, 20000);
    const frames = await p.page.$eval('#stage video', async (v) => {
      const video = /** @type {HTMLVideoElement} */ (v);
      const a = video.getVideoPlaybackQuality().totalVideoFrames;
      await new Promise((r) => setTimeout(r, 1000));
      return video.getVideoPlaybackQuality().totalVideoFrames - a;
    });
    assert.ok(frames > 0, `${who} plays the shared screen`);
  }
  await bob.page.screenshot({ path: pathJoin(SHOTS, 'meeting.png') });

  // Chat reaches everyone.
  await bob.page.getByRole('button', { name: /^Chat/ }).click();
  await bob.page.getByLabel('Message').fill('Shall we start with the budget?');
  await bob.page.getByRole('button', { name: 'Send' }).click();
  for (const p of [ann, bob, cat]) {
    await until('the chat message', () => p.page.locator('#chat-log li', { hasText: 'Shall we start with the budget?' }).count());
  }
  await ann.page.getByRole('button', { name: 'Stop sharing' }).click();
  await until('the stage closes', async () => (await bob.page.locator('#stage video').count()) === 0);

  // Ann's connections drop: her page reconnects and resumes; nobody sees her leave.
  const bobSawAnnLeave = bob.page.waitForFunction(() => document.querySelectorAll('#people li').length < 3, null, { timeout: 8000 })
    .then(() => true, () => false);
  await cutConnections(ann.page);
  await until('Ann decoding again after resuming', async () => (await decodingVideos(ann.page)) >= 2, 20000);
  await until('Bob decoding Ann again', async () => (await decodingVideos(bob.page)) >= 2, 20000);
  assert.equal(await bobSawAnnLeave, false, 'Bob never saw Ann leave');
  assert.ok(await ann.page.evaluate(() => window['__sockets'].length) >= 2, 'Ann opened a new socket');
  assert.ok(await ann.page.evaluate(() => window['__pcs'].filter((pc) => pc.connectionState === 'connected').length) === 1);
  assert.equal((await peopleNames(bob.page)).length, 3);

  // Cat leaves; Ann and Bob carry on decoding each other.
  await cat.page.getByRole('button', { name: 'Leave' }).click();
  await cat.page.getByRole('heading', { name: 'You left the meeting' }).waitFor();
  for (const p of [ann, bob]) {
    await until('Cat gone from the list', async () => (await peopleNames(p.page)).length === 2);
    assert.ok((await decodingVideos(p.page)) >= 1, 'still decoding the other');
  }

  // Bob's browser disappears without leaving: Ann's list drops him within a few seconds.
  const vanishedAt = Date.now();
  await bob.browser.close();
  await until('Bob removed', async () => (await peopleNames(ann.page)).length === 1, 10000);
  console.log(`METRIC vanished_participant_removed_after_ms=${Date.now() - vanishedAt}`);
});
