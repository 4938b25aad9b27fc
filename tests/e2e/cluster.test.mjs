// Issue 20: a meeting in Chromium on a cluster of two nodes that share a
// real PostgreSQL and Redis (started by the cluster-lab example). The node
// the meeting runs on is killed (SIGKILL, no goodbye): the pages notice
// their node no longer answers and go to the other node by themselves with
// their resume tokens; one click there, and they are back as the same
// people with the same roles, cameras decoding again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startLab, startServer, launchPerson, createMeeting, join, joinAsHost, until, decodingVideos, peopleNames } from './harness.mjs';

/** The participant ids of the tiles a page shows (its own included). */
const tiles = (page) => page.$$eval('#grid .tile[data-id]', (ts) => ts.map((t) => /** @type {HTMLElement} */ (t).dataset.id).sort());

test('the node a meeting runs on is killed: the pages go to another node by themselves and, at a click, resume as the same people', { timeout: 120000 }, async () => {
  const lab = await startLab();
  const node = (id) => startServer(['--cluster', '--database', lab.database, '--redis', lab.redis, '--node-id', id]);
  const nodes = [await node('n1'), await node('n2')];
  const people = await Promise.all([launchPerson(), launchPerson()]);
  const [hana, gil] = people;
  let other;
  try {
    const { link, hostLink } = await createMeeting(hana.page, nodes[0].url, 'Across two nodes');
    await joinAsHost(hana.page, hostLink, 'Hana Hughes');
    await join(gil.page, link, 'Gil Grant');
    // The meeting runs on whichever node was the less busy: the pages were sent there.
    const origin = new URL(hana.page.url()).origin;
    const host = nodes.find((n) => n.url === origin);
    assert.ok(host, `the page is on a node: ${origin}`);
    other = nodes.find((n) => n !== host);
    assert.equal(new URL(gil.page.url()).origin, origin, 'both on the meeting\'s node');
    await until('each decoding the other', async () => (await Promise.all(people.map((p) => decodingVideos(p.page)))).every((n) => n >= 1), 20000);
    const before = await Promise.all(people.map((p) => tiles(p.page)));
    const rolesBefore = await peopleNames(gil.page);

    const exited = new Promise((resolve) => host.proc.on('exit', resolve));
    host.proc.kill('SIGKILL');
    await exited;
    const killed = Date.now();
    await until('both pages on the other node', async () => people.every((p) => p.page.url().startsWith(other.url)), 30000);
    // There the page says what happened and asks for a click (it never
    // joins by itself: a link anyone can make may carry such a fragment).
    for (const p of people) {
      await p.page.getByText('The server your meeting ran on stopped answering.').waitFor();
      await p.page.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
      await p.page.getByRole('button', { name: 'Join meeting' }).click();
    }
    await until('each decoding the other again', async () => (await Promise.all(people.map((p) => decodingVideos(p.page)))).every((n) => n >= 1), 30000);
    console.log(`# figure: node lost: a two-person meeting decoding again on another node (a click each included) ${((Date.now() - killed) / 1000).toFixed(1)} s after its node was killed`);
    assert.deepEqual(await Promise.all(people.map((p) => tiles(p.page))), before, 'the same people, as the same participants');
    await until('the same names and roles', async () => JSON.stringify(await peopleNames(gil.page)) === JSON.stringify(rolesBefore));
    for (const p of people) {
      assert.ok(!p.page.url().includes('#'), `the resume token is out of the address: ${p.page.url()}`);
      assert.equal(await p.page.locator('#meeting').isVisible(), true, 'in the meeting, not on the join page');
    }
    // Still the host there.
    await hana.page.getByRole('button', { name: 'Lock meeting' }).click();
    await hana.page.getByText('Locked', { exact: true }).waitFor();
  } finally {
    await Promise.all(people.map((p) => p.browser.close()));
    for (const n of nodes) n.proc.kill('SIGTERM');
    await lab.stop();
  }
});

test('Redis away: a page whose socket drops says the meeting cannot be reached just now, and a page opened meanwhile says so in words; both come back by themselves with Redis', { timeout: 90000 }, async () => {
  const lab = await startLab();
  const node = await startServer(['--cluster', '--database', lab.database, '--redis', lab.redis, '--node-id', 'n1']);
  const people = await Promise.all([launchPerson(), launchPerson({ locale: 'nl-NL' })]);
  const [ida, jo] = people;
  try {
    const { link, hostLink } = await createMeeting(ida.page, node.url, 'Through an outage');
    await joinAsHost(ida.page, hostLink, 'Ida Irving');
    await lab.command('stop-redis');
    // The meeting goes on without Redis; a socket that drops (a network's
    // blip) cannot be routed again until Redis is back.
    await ida.page.evaluate(() => /** @type {any} */ (window).__sockets.forEach((s) => s.close()));
    await ida.page.getByText('The meeting cannot be reached just now. Trying again…').waitFor({ timeout: 15000 });
    // Opened now, the meeting's page says so in its reader's language (not
    // an API's JSON) and loads again by itself.
    const opened = await jo.page.goto(link);
    assert.equal(opened?.status(), 503);
    await jo.page.getByRole('heading', { name: 'De vergadering is nu niet bereikbaar' }).waitFor();
    await lab.command('start-redis');
    await until('Ida back in the meeting, the note gone', async () => (await ida.page.locator('#status').textContent()) === '', 30000);
    await until('the host still host', async () => ida.page.getByRole('button', { name: 'Lock meeting' }).isVisible(), 10000);
    await jo.page.getByRole('button', { name: 'Deelnemen' }).waitFor({ timeout: 30000 });
  } finally {
    await Promise.all(people.map((p) => p.browser.close()));
    node.proc.kill('SIGTERM');
    await lab.stop();
  }
});
