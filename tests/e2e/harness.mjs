// Shared pieces of the end-to-end tests: start the real server binary, launch
// real Chromium with fake devices, read WebRTC stats from pages.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as pathJoin, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = pathJoin(dirname(fileURLToPath(import.meta.url)), '..', '..');

// Every server this process starts logs at CONVENE_E2E_LOG (default debug)
// into memory; every secret a browser or a test hands the server is noted.
// When the process exits, a secret found in any server's log fails the test
// file, naming where (docs/security.md: nothing secret is logged).
const LOG_LEVEL = process.env.CONVENE_E2E_LOG || 'debug';
/** @type {{ name: string, chunks: Buffer[] }[]} */
const serverLogs = [];
const secrets = new Set();

/** Note a value that must never appear in a server log (short values are skipped: they match by chance). */
export function keepSecret(value) {
  if (typeof value === 'string' && value.trim().length >= 6) secrets.add(value.trim());
}

const SECRET_KEYS = new Set(['passcode', 'hostKey', 'hostUrl', 'resume', 'resumeToken', 'credential']);

/** Secrets a signalling frame (either way) or an API body carries: passcodes, host keys, resume tokens, TURN credentials, chat text. */
function secretsInFrame(payload) {
  let m;
  try { m = JSON.parse(String(payload)); } catch { return; }
  const walk = (v, chat) => {
    if (Array.isArray(v)) { for (const x of v) walk(x, chat); return; }
    if (!v || typeof v !== 'object') return;
    for (const [k, x] of Object.entries(v)) {
      if (SECRET_KEYS.has(k) || (chat && k === 'text')) keepSecret(x);
      else walk(x, k === 'chat' || v.type === 'chat');
    }
  };
  walk(m, m?.type === 'chat');
}

/** Where each secret appears in the logs: lines naming the log, never the secret itself. */
export function leaksIn(logs, secretValues) {
  const found = [];
  for (const { name, text } of logs) {
    const lines = text.split('\n');
    for (const secret of secretValues) {
      const at = lines.findIndex((l) => l.includes(secret));
      if (at >= 0) found.push(`${name} line ${at + 1}: a secret of ${secret.length} characters (${lines[at].replaceAll(secret, '«secret»').slice(0, 160)})`);
    }
  }
  return found;
}

process.on('exit', () => {
  const leaks = leaksIn(serverLogs.map((l) => ({ name: l.name, text: Buffer.concat(l.chunks).toString() })), secrets);
  if (leaks.length) {
    console.error(`secrets in server logs (at --log ${LOG_LEVEL}):\n  ${leaks.join('\n  ')}`);
    process.exitCode = 1;
  }
});

/** Start target/release/convene on loopback with a fresh data folder (or `dataDir`, to start it again on the same one). */
export async function startServer(extraArgs = [], { port = 0, dataDir = mkdtempSync(pathJoin(tmpdir(), 'convene-e2e-')) } = {}) {
  const bin = process.env.CONVENE_BIN || pathJoin(ROOT, 'target', 'release', 'convene');
  for (const flag of ['--admin-token', '--passcode']) {
    const i = extraArgs.indexOf(flag);
    if (i >= 0) keepSecret(extraArgs[i + 1]);
  }
  const proc = spawn(bin, ['--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--log', LOG_LEVEL, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = { name: `server ${serverLogs.length + 1} (${dataDir})`, chunks: [] };
  serverLogs.push(log);
  // Warnings and errors still reach the test's output, as at --log warn.
  const keep = (/** @type {Buffer} */ d) => {
    log.chunks.push(d);
    for (const line of d.toString().split('\n')) if (/\b(WARN|ERROR)\b/.test(line)) console.error(line);
  };
  proc.stderr.on('data', keep);
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not start: ${out}`)), 15000);
    proc.stdout.on('data', (d) => {
      keep(d);
      if (out.length < 65536) out += d;
      const m = out.match(/Convene is running at (\S+?)\/?\n/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}: ${out}`)));
  });
  return { url, proc, dataDir, bin, stop: () => proc.kill('SIGTERM') };
}

const ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  '--auto-select-desktop-capture-source=Entire screen',
  '--autoplay-policy=no-user-gesture-required',
  '--disable-features=WebRtcHideLocalIpsWithMdns', '--allow-loopback-in-peer-connection',
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
];

/**
 * One browser process per person, so one can vanish without the others.
 * `locale` is the browser's language (navigator.languages, Accept-Language).
 */
export async function launchPerson({ locale, cameras = 1 } = {}) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // `cameras`: how many fake cameras (and microphones) the browser has, to switch between.
    args: cameras > 1 ? ARGS.map((a) => (a === '--use-fake-device-for-media-stream' ? `${a}=device-count=${cameras}` : a)) : ARGS,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...(locale ? { locale } : {}) });
  // Test-only: keep every RTCPeerConnection the page makes, to read its stats.
  await context.addInitScript(() => {
    const Orig = window.RTCPeerConnection;
    /** @type {any} */ (window).__pcs = [];
    window.RTCPeerConnection = class extends Orig {
      constructor(...args) { super(...args); /** @type {any} */ (window).__pcs.push(this); }
    };
    // …and every WebSocket, so a test can cut the page's connections.
    const OrigWs = window.WebSocket;
    /** @type {any} */ (window).__sockets = [];
    window.WebSocket = class extends OrigWs {
      constructor(...args) { super(...args); /** @type {any} */ (window).__sockets.push(this); }
    };
  });
  // Every secret the page sends or is sent: the server must log none of them.
  context.on('page', (p) => {
    p.on('websocket', (ws) => {
      ws.on('framesent', (f) => secretsInFrame(f.payload));
      ws.on('framereceived', (f) => secretsInFrame(f.payload));
    });
    p.on('request', (r) => {
      if (r.method() === 'POST' && r.url().includes('/api/')) secretsInFrame(r.postData() || '');
    });
    p.on('response', async (r) => {
      const cookie = await r.headerValue('set-cookie').catch(() => null);
      for (const c of (cookie || '').split('\n')) keepSecret(c.split(';')[0].split('=').slice(1).join('='));
      if (r.request().method() === 'POST' && r.url().includes('/api/meetings')) {
        secretsInFrame(await r.text().catch(() => ''));
      }
    });
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  return { browser, page };
}

/**
 * Headless Firefox ESR on loopback with fake devices, over WebDriver BiDi
 * (puppeteer-core), in a fresh profile. Returns the browser and its first page.
 */
export async function launchFirefox() {
  const puppeteer = (await import('puppeteer-core')).default;
  const browser = await puppeteer.launch({
    browser: 'firefox',
    protocol: 'webDriverBiDi',
    executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr',
    headless: true,
    userDataDir: mkdtempSync(pathJoin(tmpdir(), 'convene-firefox-')),
    timeout: 30000,
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      'permissions.default.camera': 1,
      'permissions.default.microphone': 1,
      'media.autoplay.default': 0,
      'media.peerconnection.ice.loopback': true,
      'media.peerconnection.ice.obfuscate_host_addresses': false,
      'network.proxy.type': 0,
    },
  });
  const page = (await browser.pages())[0] || (await browser.newPage());
  page.on('pageerror', (e) => console.error('firefox page error:', e.message));
  return { browser, page };
}

/** Inbound RTP totals of the page's live peer connection. */
export async function inbound(page) {
  return page.evaluate(async () => {
    const pcs = /** @type {any} */ (window).__pcs.filter((pc) => pc.connectionState !== 'closed');
    const out = { video: [], audio: [] };
    for (const pc of pcs) {
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        if (s.kind === 'video') out.video.push({ mid: s.mid, framesDecoded: s.framesDecoded || 0, bytes: s.bytesReceived || 0 });
        if (s.kind === 'audio') out.audio.push({ mid: s.mid, packets: s.packetsReceived || 0, bytes: s.bytesReceived || 0 });
      });
    }
    return out;
  });
}

/** Wait until `check()` returns a truthy value; returns it. */
export async function until(what, check, timeoutMs = 15000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await check();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** How many inbound streams of `kind` have `field` rising over one second. */
async function rising(page, kind, field) {
  const a = await inbound(page);
  await new Promise((r) => setTimeout(r, 1000));
  const b = await inbound(page);
  return b[kind].filter((v) => {
    const before = a[kind].find((x) => x.mid === v.mid);
    return before && v[field] > before[field];
  }).length;
}

/** Remote videos really playing (decoded frames rising), not just negotiated. */
export const decodingVideos = (page) => rising(page, 'video', 'framesDecoded');
/** Remote audio streams whose bytes keep arriving. */
export const receivingAudio = (page) => rising(page, 'audio', 'bytes');

/**
 * Create a meeting on the home page of `serverUrl` as a person would: the title,
 * whatever `setup(page)` fills in, then Create. Returns the join and host links.
 */
export async function createMeeting(page, serverUrl, title, { setup } = {}) {
  await page.goto(serverUrl);
  await page.getByLabel('Meeting title').fill(title);
  if (setup) await setup(page);
  await page.getByRole('button', { name: 'Create meeting' }).click();
  // The links are filled in when the meeting exists: reading them sooner gives "".
  await page.getByRole('heading', { name: 'Your meeting is ready' }).waitFor();
  return {
    link: await page.getByLabel('Join link').inputValue(),
    hostLink: await page.getByLabel('Your host link').inputValue(),
  };
}

/** Go to the join link, give a name, click Join. */
export async function join(page, link, name, { screenshot } = {}) {
  await page.goto(link);
  await page.getByLabel('Your name').fill(name);
  // Wait for the camera preview before joining, as a person would.
  await page.waitForFunction(() => {
    const v = /** @type {HTMLVideoElement} */ (document.getElementById('preview'));
    return v && v.videoWidth > 0;
  });
  if (screenshot) await page.screenshot({ path: screenshot });
  await page.getByRole('button', { name: 'Join meeting' }).click();
  await page.locator('#meeting').waitFor({ state: 'visible' });
}

export async function peopleNames(page) {
  return page.$$eval('#people li', (lis) => lis.map((li) => li.textContent));
}

/** Cut the page's signalling and media connections at once, as a network drop would. */
export async function cutConnections(page) {
  await page.evaluate(() => {
    for (const ws of /** @type {any} */ (window).__sockets) ws.close();
    for (const pc of /** @type {any} */ (window).__pcs) pc.close();
  });
}

/** A free TCP port on loopback (for servers whose address must be known up front). */
export async function freePort() {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {any} */ (srv.address());
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A real OpenID provider (tests/oidc/provider.mjs, built on oidc-provider) on
 * loopback, with a client for the Convene at `convenePort`.
 */
export async function startProvider(options) {
  // Node now and then hangs at start (seen once in CI: the provider's process
  // blocked in a futex after 0.4 s of CPU, never listening): another try then,
  // rather than a test that waits for ever on a process that never answers.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startProviderOnce(options, attempt < 3 ? 15000 : 30000);
    } catch (e) {
      if (attempt === 3 || !String(e?.message).startsWith('provider did not start')) throw e;
    }
  }
}

async function startProviderOnce({ port, keyId, org, convenePort, users }, waitMs) {
  const config = {
    port,
    keyId,
    clients: [{ client_id: 'convene', client_secret: `secret-${port}`, redirect_uris: [`http://127.0.0.1:${convenePort}/auth/callback/${org}`] }],
    users: users.map((u) => ({ password: 'pw', email_verified: true, sub: `${u.username}-sub`, ...u })),
  };
  const proc = spawn(process.execPath, [pathJoin(ROOT, 'tests', 'oidc', 'provider.mjs')], {
    env: { ...process.env, OIDC_CONFIG: JSON.stringify(config) },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL'); // never left behind, holding the test's process open
      reject(new Error(`provider did not start: ${out}`));
    }, waitMs);
    proc.stdout.on('data', (d) => {
      out += d;
      if (out.includes('"ready":true')) { clearTimeout(timer); resolve(undefined); }
    });
    proc.on('exit', (code) => reject(new Error(`provider exited with ${code}`)));
  });
  return { issuer: `http://127.0.0.1:${port}`, secret: `secret-${port}`, stop: () => proc.kill('SIGTERM') };
}

/**
 * A real TURN server (Debian's coturn) on loopback with TURN REST API
 * credentials made from `secret` (what Convene's `[turn]` section shares with
 * it). Relays to loopback peers, since the SFU is on loopback in the tests.
 * Null when `turnserver` is not installed.
 */
export async function startCoturn(secret) {
  const { spawnSync } = await import('node:child_process');
  if (spawnSync('turnserver', ['--version']).error) return null;
  const port = await freePort();
  const dir = mkdtempSync(pathJoin(tmpdir(), 'convene-coturn-'));
  const proc = spawn('turnserver', [
    '-n', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${port}`,
    '--use-auth-secret', `--static-auth-secret=${secret}`, '--realm=convene.test',
    '--allow-loopback-peers', '--no-tls', '--no-dtls', '--no-cli', '--relay-threads=1',
    '--log-file=stdout', '--simple-log', `--pidfile=${pathJoin(dir, 'turnserver.pid')}`, `--db=${pathJoin(dir, 'turndb')}`,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  // Ready when it has started its servers (its last line at start).
  const end = Date.now() + 10000;
  while (!/Total General servers/.test(log)) {
    if (Date.now() > end || proc.exitCode !== null) throw new Error(`coturn did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { port, url: `turn:127.0.0.1:${port}?transport=udp`, log: () => log, stop: () => proc.kill('SIGTERM') };
}

const AXE_SOURCE = pathJoin(ROOT, 'tests', 'e2e', 'node_modules', 'axe-core', 'axe.min.js');

/**
 * axe-core's violations on the page as "rule: targets" lines; `rules` limits
 * the run to those rule ids (all of WCAG 2.1 A/AA and best practice otherwise).
 * @param {import('playwright-core').Page} page @param {string[]} [rules]
 */
export async function axe(page, rules) {
  const { readFileSync } = await import('node:fs');
  // Evaluated rather than added as a script: the page's CSP allows no inline scripts.
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(readFileSync(AXE_SOURCE, 'utf8'));
  return page.evaluate(async (only) => {
    const r = await /** @type {any} */ (window).axe.run(document, only
      ? { runOnly: { type: 'rule', values: only } }
      : { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] });
    return r.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  }, rules || null);
}

/** Open a meeting's host link (from createMeeting) and join as host named `name`. */
export async function joinAsHost(page, hostLink, name) {
  await page.goto(hostLink);
  await page.getByText('You are joining as a host.').waitFor();
  await page.getByLabel('Your name').fill(name);
  await page.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
  await page.getByRole('button', { name: 'Join meeting' }).click();
  await page.locator('#meeting').waitFor({ state: 'visible' });
}

/**
 * A crowd without media: `count` plain signalling sockets, named Guest 1…,
 * opened from `page` (a page of this server's origin, so its Origin is
 * allowed) and kept open in `window.__crowd` until the page closes. Each
 * join waits for its welcome.
 * @param {import('playwright-core').Page} page
 * @param {string} wsUrl the meeting's signalling socket
 * @param {number} count
 */
export async function joinCrowd(page, wsUrl, count) {
  await page.evaluate(async ({ wsUrl, count }) => {
    const w = /** @type {any} */ (window);
    w.__crowd = [];
    for (let i = 1; i <= count; i++) {
      const ws = new WebSocket(wsUrl);
      await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
      const welcomed = new Promise((ok) => ws.addEventListener('message', (e) => { if (JSON.parse(e.data).type === 'welcome') ok(undefined); }));
      ws.send(JSON.stringify({ type: 'join', protocol: 1, name: `Guest ${i}` }));
      await welcomed;
      w.__crowd.push(ws);
    }
  }, { wsUrl, count });
}

/** PostgreSQL and Redis for a cluster's nodes (the cluster-lab example), until `stop`. */
export async function startLab() {
  const bin = pathJoin(ROOT, 'target', 'release', 'examples', 'cluster-lab');
  const proc = spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const urls = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`cluster-lab did not start: ${out}`)), 30000);
    proc.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) { clearTimeout(timer); resolve(JSON.parse(line)); }
    });
    proc.on('exit', (code) => reject(new Error(`cluster-lab exited with ${code}: ${out}`)));
  });
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  /** Send the lab a command (`stop-redis`, `start-redis`); resolves once it has done it. */
  const command = (line) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cluster-lab: ${line} not done`)), 20000);
    const onData = (d) => {
      if (!String(d).includes('done')) return;
      clearTimeout(timer);
      proc.stdout.off('data', onData);
      resolve(undefined);
    };
    proc.stdout.on('data', onData);
    proc.stdin.write(`${line}\n`);
  });
  return { ...urls, command, stop: async () => { proc.stdin.end(); await Promise.race([exited, new Promise((r) => setTimeout(r, 10000))]); } };
}
