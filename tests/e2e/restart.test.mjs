// Issue 18: the server restarted (SIGTERM, then the same binary on the same
// port and data folder) in the middle of a three-person meeting in Chromium.
// Everyone is told it is restarting, their pages come back by themselves as
// the same people (same tiles), with the same roles, cameras decoding again;
// the lock still keeps newcomers out; the audit log verifies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startServer, launchPerson, createMeeting, join, joinAsHost, until, peopleNames, decodingVideos, freePort } from './harness.mjs';

/** The participant ids of the tiles a page shows (its own included). */
const tiles = (page) => page.$$eval('#grid .tile[data-id]', (ts) => ts.map((t) => /** @type {HTMLElement} */ (t).dataset.id).sort());

test('a server restart in the middle of a meeting: the same people come back by themselves, with their roles, and the lock holds', { timeout: 120000 }, async () => {
  const port = await freePort();
  let server = await startServer([], { port });
  const people = await Promise.all([launchPerson(), launchPerson(), launchPerson()]);
  const [hana, gil, ann] = people;
  const newcomer = await launchPerson();
  try {
    const { link, hostLink } = await createMeeting(hana.page, server.url, 'Through a restart');
    await joinAsHost(hana.page, hostLink, 'Hana Hughes');
    await join(gil.page, link, 'Gil Grant');
    await join(ann.page, link, 'Ann Abbot');
    await hana.page.getByRole('button', { name: 'People' }).click();
    await hana.page.getByLabel('Role of Gil Grant').selectOption('co-host');
    await hana.page.getByRole('button', { name: 'Lock meeting' }).click();
    await hana.page.getByText('Locked', { exact: true }).waitFor();
    await until('Gil shown as co-host', async () => (await peopleNames(ann.page)).some((n) => n.startsWith('Gil') && n.includes('co-host')));
    await until('every camera decoding', async () => (await Promise.all(people.map((p) => decodingVideos(p.page)))).every((n) => n >= 2));
    const before = await Promise.all(people.map((p) => tiles(p.page)));
    const rolesBefore = await peopleNames(ann.page);

    // SIGTERM: everyone is told; the process ends by itself.
    const exited = new Promise((resolve) => server.proc.on('exit', (code) => resolve(code)));
    server.stop();
    await Promise.all(people.map((p) => p.page.getByText('The server is restarting.').first().waitFor({ timeout: 10000 })));
    assert.equal(await exited, 0, 'a graceful stop exits 0');

    // Back on the same port and data: the pages resume by themselves.
    const started = Date.now();
    server = await startServer([], { port, dataDir: server.dataDir });
    await until('every camera decoding again', async () => (await Promise.all(people.map((p) => decodingVideos(p.page)))).every((n) => n >= 2), 30000);
    console.log(`# figure: restart: a three-person meeting back in full (every camera decoding everywhere) ${((Date.now() - started) / 1000).toFixed(1)} s after the server started again`);
    assert.deepEqual(await Promise.all(people.map((p) => tiles(p.page))), before, 'the same people, as the same participants');
    await until('the same names and roles', async () => JSON.stringify(await peopleNames(ann.page)) === JSON.stringify(rolesBefore));
    for (const p of people) assert.equal(await p.page.locator('#status').textContent(), '', 'no restart note left');

    // The lock held through the restart.
    await newcomer.page.goto(link);
    await newcomer.page.getByLabel('Your name').fill('Lee Long');
    await newcomer.page.getByRole('button', { name: 'Join meeting' }).click();
    await newcomer.page.getByText('this meeting is locked').waitFor();
  } finally {
    await Promise.all([...people, newcomer].map((p) => p.browser.close()));
    const exited = new Promise((resolve) => server.proc.on('exit', resolve));
    server.stop();
    await exited;
  }
  const verify = spawnSync(server.bin, ['--data-dir', server.dataDir, 'audit', 'verify'], { encoding: 'utf8' });
  assert.equal(verify.status, 0, `audit verify: ${verify.stdout}${verify.stderr}`);
});

// The encryption group lives in the server's memory only (it holds no keys to
// keep): after a restart the pages find a new group id in their welcome, make a
// new group with new keys, and decode each other again through SFrame.
test('a server restart in an end-to-end encrypted meeting: a new group, a new code, and media decrypting again', { timeout: 120000 }, async () => {
  const port = await freePort();
  let server = await startServer([], { port });
  const people = await Promise.all([launchPerson(), launchPerson()]);
  const [hana, gil] = people;
  const groupOf = (page) => page.evaluate(() => /** @type {any} */ (window).conveneE2ee || null);
  const decrypted = (page) => page.evaluate(() => /** @type {any} */ (window).conveneE2eeStats?.decrypted ?? 0);
  /** Both in one group with one code, other than `old`. */
  const together = (old) => until('both in one group with one code', async () => {
    const [a, b] = await Promise.all(people.map((p) => groupOf(p.page)));
    return a && b && a.members.length === 2 && a.code === b.code && a.code !== old && a;
  }, 30000);
  try {
    const { link, hostLink } = await createMeeting(hana.page, server.url, 'Sealed through a restart', {
      setup: (page) => page.getByLabel(/End-to-end encrypted/).check(),
    });
    await joinAsHost(hana.page, hostLink, 'Hana Hughes');
    await join(gil.page, link, 'Gil Grant');
    const before = await together();
    await until('each decoding the other', async () => (await Promise.all(people.map((p) => decodingVideos(p.page)))).every((n) => n >= 1), 20000);

    const exited = new Promise((resolve) => server.proc.on('exit', (code) => resolve(code)));
    server.stop();
    await Promise.all(people.map((p) => p.page.getByText('The server is restarting.').first().waitFor({ timeout: 10000 })));
    assert.equal(await exited, 0);
    server = await startServer([], { port, dataDir: server.dataDir });

    // A new group, so a new code (waited for: the old one stays shown until then).
    await together(before.code);
    await until('each decoding the other again, through SFrame', async () => (await Promise.all(people.map((p) => decodingVideos(p.page)))).every((n) => n >= 1), 30000);
    // The worker's counters (a new worker, with the new group: they start again).
    const d0 = await Promise.all(people.map((p) => decrypted(p.page)));
    await new Promise((r) => setTimeout(r, 2500));
    const d1 = await Promise.all(people.map((p) => decrypted(p.page)));
    assert.ok(d1.every((n, i) => n > d0[i]), `frames decrypted: ${d0} then ${d1}`);
    for (const p of people) assert.equal(await p.page.locator('#e2ee-warning').isVisible(), false, 'no warning');
  } finally {
    await Promise.all(people.map((p) => p.browser.close()));
    const exited = new Promise((resolve) => server.proc.on('exit', resolve));
    server.stop();
    await exited;
  }
});
