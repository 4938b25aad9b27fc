// A browser hears a meeting of more talkers than voice slots: three at once, and
// a fourth on a freed slot when the host mutes one of the three. The talkers are
// the load generator's synthetic microphones, which talk without pause.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join as pathJoin } from 'node:path';
import { ROOT, startServer, launchPerson, createMeeting, join, until, inbound, receivingAudio, peopleNames } from './harness.mjs';

const TALKERS = 4;
let server;
let person;
let talkers;

before(async () => {
  server = await startServer();
});

after(async () => {
  talkers?.kill('SIGTERM');
  await person?.browser.close().catch(() => {});
  server?.stop();
});

test('a browser hears three talkers at once, and the fourth when the host mutes one', async () => {
  person = await launchPerson();
  const { page } = person;
  const { link, hostLink } = await createMeeting(page, server.url, 'Radio check');
  const id = link.split('/m/')[1];
  await join(page, hostLink, 'Hana');

  // Keep every voice-slot message and every name, to know whom each slot carries.
  await page.evaluate(() => {
    const w = /** @type {any} */ (window);
    w.__voice = new Map();
    w.__names = new Map();
    for (const ws of w.__sockets) {
      ws.addEventListener('message', (e) => {
        const m = JSON.parse(e.data);
        if (m.type === 'voice-slot') w.__voice.set(m.mid, m.participantId);
        if (m.type === 'participant-joined') w.__names.set(m.participant.id, m.participant.name);
      });
    }
  });
  const heardNames = () => page.evaluate(() => {
    const w = /** @type {any} */ (window);
    return [...w.__voice.values()].filter(Boolean).map((p) => w.__names.get(p)).sort();
  });

  const bench = process.env.CONVENE_BENCH || pathJoin(ROOT, 'target', 'release', 'convene-bench');
  talkers = spawn(bench, ['--server', server.url, '--meeting', id, '--scenario', 'audio-room',
    '--speakers', String(TALKERS), '--listeners', '0', '--join-rate', '20', '--warmup', '0', '--duration', '60'],
  { stdio: 'ignore' });
  await until('the talkers in the list', async () => (await peopleNames(page)).length === TALKERS + 1, 20000);

  // Three voice slots, all carrying someone; the fourth talker waits.
  await until('three voices arriving', async () => (await receivingAudio(page)) === 3, 20000);
  assert.equal((await inbound(page)).audio.length, 3, 'three audio streams for four microphones');
  const before = await until('three talkers named', async () => {
    const names = await heardNames();
    return names.length === 3 && names;
  });
  const waiting = [...Array(TALKERS).keys()].map((i) => `speaker-0-${i}`).find((n) => !before.includes(n));

  // The host mutes one of the three: within a pause's length the fourth is heard
  // on that slot, and all three slots carry sound again.
  await page.getByRole('button', { name: 'People' }).click();
  await page.getByRole('button', { name: `Mute ${before[0]}` }).click();
  await until('the fourth talker heard', async () => (await heardNames()).includes(waiting));
  await until('three voices arriving again', async () => (await receivingAudio(page)) === 3);
  assert.deepEqual(await heardNames(), [...before.slice(1), waiting].sort());
  assert.equal((await inbound(page)).audio.length, 3, 'no new m-line: the slot switched');
});
