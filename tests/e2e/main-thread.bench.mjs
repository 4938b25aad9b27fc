// How busy the meeting page keeps the browser's main thread (BENCHMARKS.md,
// "The meeting page's main thread"): a 9-tile grid in Chromium, eight others
// sending their cameras. Not part of the test suite (it measures, it asserts
// nothing); run it with `node tests/e2e/main-thread.bench.mjs` after a release
// build. Chromium's own counters (CDP Performance.getMetrics): TaskDuration is
// the main thread's time in tasks, ScriptDuration its JavaScript,
// LayoutDuration and RecalcStyleDuration its layout and style work.
import { startServer, launchPerson, createMeeting, join, joinAsHost, until, decodingVideos } from './harness.mjs';

const SECONDS = Number(process.env.SECONDS_PER_CASE || 20);
const OTHERS = 8;

const server = await startServer([], {});
const observer = await launchPerson();
const senders = await launchPerson();
try {
  const { link, hostLink } = await createMeeting(observer.page, server.url, 'Main thread');
  await joinAsHost(observer.page, hostLink, 'Observer');
  const cdp = await observer.page.context().newCDPSession(observer.page);
  await cdp.send('Performance.enable');
  const metrics = async () => Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
  /** Main-thread milliseconds per second over SECONDS, by kind. */
  const measure = async (name) => {
    const a = await metrics();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const b = await metrics();
    const secs = (performance.now() - t0) / 1000;
    const per = (k) => Math.round(((b[k] - a[k]) * 1000) / secs);
    const row = { case: name, taskMsPerS: per('TaskDuration'), scriptMsPerS: per('ScriptDuration'), layoutMsPerS: per('LayoutDuration'), styleMsPerS: per('RecalcStyleDuration'), decoding: await decodingVideos(observer.page) };
    console.log(JSON.stringify(row));
    return row;
  };
  await measure('alone (1 tile)');

  // Eight others, each a small window of its own (they see one tile at a
  // time, so the server sends them little and their browsers stay light).
  for (let i = 1; i <= OTHERS; i++) {
    const context = i === 1 ? senders.page.context() : await senders.browser.newContext({ viewport: { width: 320, height: 400 } });
    const page = i === 1 ? senders.page : await context.newPage();
    if (i === 1) await page.setViewportSize({ width: 320, height: 400 });
    await join(page, link, `Sender ${i}`);
  }
  await until('the observer decodes eight videos', async () => (await decodingVideos(observer.page)) >= OTHERS, 60000);
  await observer.page.locator('#layout-select').selectOption('grid');
  await measure('grid, 9 tiles');
  await observer.page.locator('#layout-select').selectOption('speaker');
  await measure('speaker view, 1 large and 8 in the strip');
} finally {
  await observer.browser.close().catch(() => {});
  await senders.browser.close().catch(() => {});
  server.stop();
}
