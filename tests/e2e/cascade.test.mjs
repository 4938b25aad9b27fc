// Issue 20, cascading, in real Chromium: a webinar on a cluster of two
// nodes (a real PostgreSQL and Redis from the cluster-lab example) that
// sends its audience to the other node once one attendee is on the
// meeting's own (--cascade-after 1). The host presents on the meeting's
// node; an attendee there and an attendee sent to the edge both watch and
// hear the stage; the edge's attendee raises a hand, and the host sees it;
// a host link opened then ends on the meeting's node, and its camera
// reaches the edge.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startLab, startServer, launchPerson, createMeeting, joinAsHost, until, decodingVideos } from './harness.mjs';

/** An attendee joins: no devices asked for. */
async function joinAudience(page, link, name) {
  await page.goto(link);
  await page.locator('#attendee-note').waitFor();
  await page.getByLabel('Your name').fill(name);
  await page.getByRole('button', { name: 'Join meeting' }).click();
  await page.locator('#meeting').waitFor({ state: 'visible' });
}

/** Audio packets the page has received. */
const audioIn = (page) => page.evaluate(async () => {
  let packets = 0;
  for (const pc of /** @type {any} */ (window).__pcs.filter((c) => c.connectionState !== 'closed')) {
    (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio') packets += s.packetsReceived || 0; });
  }
  return packets;
});

test('a webinar over two nodes: the audience on the edge watches and hears the stage, and its raised hand reaches the host', { timeout: 120000 }, async () => {
  const lab = await startLab();
  const node = (id) => startServer(['--cluster', '--database', lab.database, '--redis', lab.redis, '--node-id', id, '--cascade-after', '1']);
  const nodes = [await node('n1'), await node('n2')];
  const { browser } = await launchPerson();
  const person = async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await context.addInitScript(() => {
      const w = /** @type {any} */ (window);
      const Orig = window.RTCPeerConnection;
      w.__pcs = [];
      window.RTCPeerConnection = class extends Orig {
        constructor(...args) { super(...args); w.__pcs.push(this); }
      };
    });
    const page = await context.newPage();
    page.on('pageerror', (e) => console.error('page error:', e.message));
    return page;
  };
  try {
    const host = await person();
    const { link, hostLink } = await createMeeting(host, nodes[0].url, 'Town hall over two nodes', {
      setup: (p) => p.getByRole('checkbox', { name: /^Webinar:/ }).check(),
    });
    await joinAsHost(host, hostLink, 'Hana Hughes');
    const home = new URL(host.url()).origin;
    const edge = nodes.find((n) => n.url !== home);
    assert.ok(edge && nodes.some((n) => n.url === home), `the host is on a node: ${home}`);

    const ann = await person();
    await joinAudience(ann, link, 'Ann Archer');
    assert.equal(new URL(ann.url()).origin, home, 'the first attendee on the meeting\'s node');
    // The meeting counts its audience every half second; from then on,
    // newcomers go to the edge.
    await until('the host counts one attendee', async () => /1/.test(await host.locator('#audience-count').textContent() ?? ''), 10000);
    await new Promise((r) => setTimeout(r, 700));

    const bo = await person();
    await joinAudience(bo, link, 'Bo Berg');
    assert.equal(new URL(bo.url()).origin, edge.url, 'the next attendee was sent to the edge');

    for (const [name, page] of [['Ann', ann], ['Bo', bo]]) {
      await until(`${name} decodes the host's video`, async () => (await decodingVideos(page)) >= 1, 20000);
      await until(`${name} hears the host`, async () => (await audioIn(page)) > 50, 10000);
    }
    await until('the host counts two attendees', async () => /2/.test(await host.locator('#audience-count').textContent() ?? ''), 10000);

    // The host lists the attendees, on both nodes; Bo raises a hand on the
    // edge, and the host sees it.
    await host.getByRole('button', { name: 'People' }).click();
    await host.getByRole('button', { name: 'Show attendees' }).click();
    await until('both attendees listed', async () => (await host.locator('#attendees li').count()) === 2);
    const listed = await host.$$eval('#attendees li .name', (els) => els.map((e) => e.textContent).sort());
    assert.deepEqual(listed, ['Ann Archer', 'Bo Berg']);
    await bo.getByRole('button', { name: 'Raise hand' }).click();
    await host.locator('#hands li', { hasText: 'Bo Berg' }).waitFor({ timeout: 10000 });

    // A host link opened now (a host's page loaded again) is sent to the
    // edge like any newcomer's, and on from there to the meeting's node,
    // where the stage is: the host joins there, and presents.
    const again = await person();
    await joinAsHost(again, hostLink, 'Hana at her desk');
    assert.equal(new URL(again.url()).origin, home, 'the host\'s page is on the meeting\'s node');
    assert.ok(!again.url().includes('#'), 'the host key is out of the address');
    await until('Bo decodes both hosts', async () => (await decodingVideos(bo)) >= 2, 20000);
  } finally {
    await browser.close().catch(() => {});
    for (const n of nodes) n.proc.kill('SIGTERM');
    await lab.stop();
  }
});
