// Join to first remote frame, clear versus end-to-end encrypted (BENCHMARKS.md,
// "End-to-end encryption"): a host in Chromium sends its camera; a second
// Chromium joins ROUNDS times into each kind of meeting, alternating, and the
// page's own timing ("first remote frame N ms after Join", stage.js) is read.
// Also the SFrame worker's share of the joiner's CPU is not measured here.
// Not part of the test suite (it measures, it asserts nothing); run it with
// `node tests/e2e/e2ee-join.bench.mjs` after a release build.
import { startServer, launchPerson, createMeeting, joinAsHost, join } from './harness.mjs';

const ROUNDS = Number(process.env.ROUNDS || 5);

const server = await startServer([], {});
const host = await launchPerson();
const guest = await launchPerson();
try {
  const meetings = {};
  for (const kind of ['clear', 'e2ee']) {
    const hostPage = kind === 'clear' ? host.page : await host.browser.newContext().then((c) => c.newPage());
    const { link, hostLink } = await createMeeting(hostPage, server.url, `Join timing ${kind}`, {
      setup: kind === 'e2ee' ? (p) => p.getByLabel(/End-to-end encrypted/).check() : undefined,
    });
    await joinAsHost(hostPage, hostLink, `Host ${kind}`);
    meetings[kind] = link;
  }
  const times = { clear: [], e2ee: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const kind of ['clear', 'e2ee']) {
      const page = await guest.browser.newContext().then((c) => c.newPage());
      const first = new Promise((resolve) => page.on('console', (m) => {
        const hit = /first remote frame (\d+) ms after Join/.exec(m.text());
        if (hit) resolve(Number(hit[1]));
      }));
      await join(page, meetings[kind], `Guest ${round}`);
      const ms = await Promise.race([first, new Promise((r) => setTimeout(() => r(NaN), 15000))]);
      times[kind].push(ms);
      await page.getByRole('button', { name: 'Leave' }).click();
      await page.context().close();
    }
  }
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  console.log(JSON.stringify({ rounds: ROUNDS, clearMs: times.clear, e2eeMs: times.e2ee, clearMedian: median(times.clear), e2eeMedian: median(times.e2ee) }));
} finally {
  await host.browser.close();
  await guest.browser.close();
  server.stop();
}
