// The connectivity check's measurements, without the page: what the browser
// supports, its camera and microphone, the check socket (pings, media probes
// over UDP, TCP and a TURN relay), download and upload timing, and the verdict.
// No words here: results carry codes, and check.js words them (and shows
// them). The server's side is docs/protocol.md §10.

/** How long each part may take: the whole check stays under 15 s. */
export const LIMITS = {
  socketOpenMs: 4000,
  pings: 5,
  pingMs: 2000,
  offerMs: 3000,
  fetchMs: 2000,
  connectMs: 6000,
  downloadMs: 3000,
  uploadMs: 3000,
};

/**
 * @typedef {'pass'|'fail'|'not-offered'|'not-configured'|'skipped'} PathOutcome
 * @typedef {{address: string, port: number, protocol: string, type: string}} Candidate
 * @typedef {{local: string, protocol: string, relayProtocol?: string}} Via the candidate pair used: the browser's side
 * @typedef {'no-offer'|'timeout'|'ice-failed'|'server'|'error'} ProbeFailure
 * @typedef {{ok: boolean, ms?: number, via?: Via, rttMs?: number, reason?: ProbeFailure, serverReason?: string}} ProbeResult
 * @typedef {{outcome: PathOutcome, ms?: number, via?: Via, rttMs?: number, reason?: ProbeFailure, serverReason?: string, targets: string[]}} PathResult
 * @typedef {{error: 'rate-limited'|'busy'|'status'|'timeout'|'failed', status?: number}} TransferFailure
 */

/** What Convene needs from the browser, and what later end-to-end encryption will. */
export function browserSupport() {
  const needs = {
    RTCPeerConnection: typeof RTCPeerConnection === 'function',
    getUserMedia: !!navigator.mediaDevices?.getUserMedia,
    WebSocket: typeof WebSocket === 'function',
    isSecureContext: window.isSecureContext,
    AudioContext: typeof AudioContext === 'function',
  };
  const missing = Object.entries(needs).filter(([, ok]) => !ok).map(([name]) => name);
  const e2ee = {
    RTCRtpScriptTransform: 'RTCRtpScriptTransform' in window,
    createEncodedStreams: typeof RTCRtpSender !== 'undefined' && 'createEncodedStreams' in RTCRtpSender.prototype,
  };
  return { ok: missing.length === 0, missing, e2ee };
}

/** A short name for the browser, for the report. */
export function browserName() {
  const ua = navigator.userAgent;
  const m = ua.match(/(Edg|Firefox|Chrome|Chromium|Version)\/(\d+)/);
  if (!m || (m[1] === 'Version' && !/Safari/.test(ua))) return ua;
  const name = { Edg: 'Edge', Version: 'Safari' }[m[1]] || m[1];
  return `${name} ${m[2]}`;
}

/**
 * @typedef {{ok: boolean, label?: string, error?: string}} DeviceResult
 * @typedef {{camera: DeviceResult, microphone: DeviceResult, denied: boolean, stream: MediaStream | null}} Devices
 */

/**
 * Camera and microphone: both at once, and on failure each alone (someone may
 * have only one). A refusal is not asked again.
 * @returns {Promise<Devices>}
 */
export async function openDevices() {
  /** @param {unknown} e */
  const why = (e) => (e instanceof DOMException ? e.name : String(e));
  const denied = (/** @type {string} */ name) => name === 'NotAllowedError' || name === 'SecurityError';
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
    const [cam] = stream.getVideoTracks();
    const [mic] = stream.getAudioTracks();
    return { camera: { ok: true, label: cam?.label }, microphone: { ok: true, label: mic?.label }, denied: false, stream };
  } catch (e) {
    if (denied(why(e))) {
      return { camera: { ok: false, error: why(e) }, microphone: { ok: false, error: why(e) }, denied: true, stream: null };
    }
  }
  const tracks = [];
  /** @type {Record<'camera'|'microphone', DeviceResult>} */
  const out = { camera: { ok: false }, microphone: { ok: false } };
  let wasDenied = false;
  for (const [kind, constraints] of /** @type {const} */ ([['camera', { video: true }], ['microphone', { audio: true }]])) {
    try {
      const s = await navigator.mediaDevices.getUserMedia(constraints);
      const [t] = s.getTracks();
      tracks.push(t);
      out[kind] = { ok: true, label: t.label };
    } catch (e) {
      out[kind] = { ok: false, error: why(e) };
      wasDenied ||= denied(why(e));
    }
  }
  return { ...out, denied: wasDenied, stream: tracks.length ? new MediaStream(tracks) : null };
}

/** The candidates of an SDP (each m-line repeats them: listed once). */
export function candidatesIn(/** @type {string} */ sdp) {
  /** @type {Candidate[]} */
  const out = [];
  for (const line of sdp.split(/\r?\n/)) {
    if (!line.startsWith('a=candidate:')) continue;
    const f = line.slice('a=candidate:'.length).split(' ');
    const c = { protocol: (f[2] || '').toLowerCase(), address: f[4], port: Number(f[5]), type: f[7] };
    if (!out.some((o) => o.protocol === c.protocol && o.address === c.address && o.port === c.port)) out.push(c);
  }
  return out;
}

/**
 * The offer with only the candidates of one transport, so that ICE can use no
 * other path.
 * @param {string} sdp @param {'udp'|'tcp'} protocol
 */
export function onlyTransport(sdp, protocol) {
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  return sdp
    .split(eol)
    .filter((line) => !line.startsWith('a=candidate:') || line.slice(12).split(' ')[2]?.toLowerCase() === protocol)
    .join(eol);
}

/** `host:port` as people write it (IPv6 in brackets). */
const hostPort = (/** @type {Candidate} */ c) => `${c.address.includes(':') ? `[${c.address}]` : c.address}:${c.port}`;

/**
 * The check's socket (docs/protocol.md §10): one at a time per message kind
 * is all the page needs, so replies are awaited by type and path.
 */
export class CheckSocket {
  /** @param {WebSocket} ws */
  constructor(ws) {
    this.ws = ws;
    /** @type {Array<{match: (m: any) => boolean, resolve: (m: any) => void}>} */
    this.waiting = [];
    /** @type {any[]} */
    this.early = [];
    this.closed = false;
    ws.addEventListener('message', (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      const i = this.waiting.findIndex((w) => w.match(msg));
      if (i >= 0) this.waiting.splice(i, 1)[0].resolve(msg);
      else this.early.push(msg);
    });
    ws.addEventListener('close', () => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) w.resolve(null);
    });
  }

  /**
   * Open the socket and wait for the server's hello.
   * @param {string} url @returns {Promise<CheckSocket>}
   */
  static open(url) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      const sock = new CheckSocket(ws);
      const timer = setTimeout(() => { ws.close(); reject(new Error('timeout')); }, LIMITS.socketOpenMs);
      sock.next((m) => m.type === 'hello', LIMITS.socketOpenMs).then((hello) => {
        clearTimeout(timer);
        if (hello) resolve(sock);
        else reject(new Error('closed'));
      });
    });
  }

  /**
   * The next message that `match` accepts, or null after `ms` or when the socket closes.
   * @param {(m: any) => boolean} match @param {number} ms
   */
  next(match, ms) {
    const i = this.early.findIndex(match);
    if (i >= 0) return Promise.resolve(this.early.splice(i, 1)[0]);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const entry = { match, resolve: (/** @type {any} */ m) => { clearTimeout(timer); resolve(m); } };
      const timer = setTimeout(() => {
        this.waiting = this.waiting.filter((w) => w !== entry);
        resolve(null);
      }, ms);
      this.waiting.push(entry);
    });
  }

  /** @param {object} msg */
  send(msg) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  /** Round-trip times of a few pings, in ms. */
  async pings() {
    const rtts = [];
    for (let n = 1; n <= LIMITS.pings; n++) {
      const start = performance.now();
      this.send({ type: 'ping', n });
      const pong = await this.next((m) => m.type === 'pong' && m.n === n, LIMITS.pingMs);
      if (!pong) break;
      rtts.push(performance.now() - start);
    }
    return rtts;
  }

  /** Ask for a probe on `path`; its offer's SDP, or null. @param {'udp'|'tcp'|'relay'} path */
  async offer(path) {
    this.send({ type: 'probe', path });
    const m = await this.next((x) => (x.type === 'offer' || x.type === 'error') && (x.path === path || x.type === 'error'), LIMITS.offerMs);
    return m?.type === 'offer' ? /** @type {string} */ (m.sdp) : null;
  }

  close() {
    this.ws.close();
  }
}

/**
 * Why the socket did not open: the server's own refusal (429, 503), or, when
 * the server would have taken it (426), something on the way that does not
 * let WebSockets through.
 * @returns {Promise<'rate-limited'|'busy'|'blocked'|'unreachable'|'refused'>}
 */
export async function whySocketFailed() {
  try {
    const res = await fetch('/api/check/ws', { cache: 'no-store', signal: AbortSignal.timeout(LIMITS.fetchMs) });
    if (res.status === 429) return 'rate-limited';
    if (res.status === 503) return 'busy';
    if (res.status === 426) return 'blocked';
    return 'refused';
  } catch {
    return 'unreachable';
  }
}

/**
 * TURN servers to try (`GET /api/check/ice-servers`). None means the server
 * has no relay configured (also when it does not have that endpoint); null,
 * that it hands out no more credentials for checks just now (429, 503).
 * @returns {Promise<RTCIceServer[] | null>}
 */
export async function relayServers() {
  try {
    const res = await fetch('/api/check/ice-servers', { cache: 'no-store', signal: AbortSignal.timeout(LIMITS.fetchMs) });
    if (res.status === 429 || res.status === 503) return null;
    if (!res.ok) return [];
    const body = await res.json();
    return Array.isArray(body.iceServers) ? body.iceServers : [];
  } catch {
    return [];
  }
}

/** The TURN URLs of `servers`, for the report. @param {RTCIceServer[]} servers */
export function relayUrls(servers) {
  return servers.flatMap((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]));
}

/** A silent microphone made with WebAudio: media to send without a real one. */
export function silentTrack() {
  const ctx = new AudioContext();
  const osc = ctx.createOscillator();
  const gain = ctx.createGain();
  gain.gain.value = 0;
  const dest = ctx.createMediaStreamDestination();
  osc.connect(gain).connect(dest);
  osc.start();
  const [track] = dest.stream.getAudioTracks();
  return { track, stop: () => { track.stop(); ctx.close(); } };
}

/**
 * Answer one probe's offer with a peer connection restricted to one path and
 * wait for the server to say the media connection is up.
 * @param {CheckSocket} sock @param {'udp'|'tcp'|'relay'} path @param {string} sdp
 * @param {RTCConfiguration} config @param {MediaStreamTrack} track
 * @returns {Promise<ProbeResult>}
 */
export async function connectProbe(sock, path, sdp, config, track) {
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require', ...config });
  try {
    await pc.setRemoteDescription({ type: 'offer', sdp });
    for (const tr of pc.getTransceivers()) {
      await tr.sender.replaceTrack(track);
      tr.direction = 'sendonly';
    }
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    sock.send({ type: 'answer', path, sdp: pc.localDescription?.sdp });
    const started = performance.now();
    const failedHere = new Promise((resolve) => {
      pc.addEventListener('connectionstatechange', () => {
        if (pc.connectionState === 'failed') resolve({ type: 'ice-failed' });
      });
    });
    const said = await Promise.race([
      sock.next((m) => (m.type === 'connected' || m.type === 'failed') && m.path === path, LIMITS.connectMs),
      failedHere,
    ]);
    if (!said) return { ok: false, reason: 'timeout' };
    if (said.type === 'ice-failed') return { ok: false, reason: 'ice-failed' };
    if (said.type !== 'connected') return { ok: false, reason: 'server', serverReason: said.reason };
    return { ok: true, ms: Math.round(performance.now() - started), ...(await selectedPath(pc)) };
  } catch (e) {
    console.error('connectivity check: probe', path, e);
    return { ok: false, reason: 'error' };
  } finally {
    pc.close();
  }
}

/**
 * The candidate pair the browser uses (its own side: host, srflx or relay,
 * and over what), and its round-trip time.
 * @param {RTCPeerConnection} pc
 * @returns {Promise<{via?: Via, rttMs?: number}>}
 */
async function selectedPath(pc) {
  const stats = await pc.getStats();
  /** @type {any} */ let pair = null;
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
  });
  if (!pair) stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
  if (!pair) return {};
  const local = stats.get(pair.localCandidateId);
  const via = local && { local: local.candidateType, protocol: local.protocol, relayProtocol: local.relayProtocol };
  const rttMs = typeof pair.currentRoundTripTime === 'number' ? Math.round(pair.currentRoundTripTime * 1000) : undefined;
  return { via, rttMs };
}

/**
 * Media probes: UDP first (its offer also says which transports the server
 * offers), then TCP and the relay at the same time.
 * @param {CheckSocket} sock @param {RTCIceServer[]} turn
 * @param {(path: string, result: PathResult) => void} progress
 * @returns {Promise<Record<'udp'|'tcp'|'relay', PathResult>>}
 */
export async function probeMedia(sock, turn, progress) {
  const silent = silentTrack();
  /** @type {Record<'udp'|'tcp'|'relay', PathResult>} */
  const results = {
    udp: { outcome: 'skipped', targets: [] },
    tcp: { outcome: 'skipped', targets: [] },
    relay: { outcome: 'skipped', targets: relayUrls(turn) },
  };
  try {
    const first = await sock.offer('udp');
    if (!first) {
      for (const p of /** @type {const} */ (['udp', 'tcp', 'relay'])) results[p] = { ...results[p], outcome: 'fail', reason: 'no-offer' };
      return results;
    }
    const cands = candidatesIn(first);
    const udp = cands.filter((c) => c.protocol === 'udp');
    const tcp = cands.filter((c) => c.protocol === 'tcp');
    results.udp.targets = udp.map((c) => `UDP ${hostPort(c)}`);
    results.tcp.targets = tcp.map((c) => `TCP ${hostPort(c)}`);
    /**
     * @param {'udp'|'tcp'|'relay'} path @param {string | null} sdp
     * @param {RTCConfiguration} config
     */
    const run = async (path, sdp, config) => {
      if (!sdp) {
        results[path] = { ...results[path], outcome: 'fail', reason: 'no-offer' };
      } else {
        const r = await connectProbe(sock, path, sdp, config, silent.track);
        results[path] = { ...results[path], ...r, outcome: r.ok ? 'pass' : 'fail' };
      }
      progress(path, results[path]);
    };
    const jobs = [];
    if (udp.length) jobs.push(run('udp', onlyTransport(first, 'udp'), { iceServers: [] }));
    else progress('udp', (results.udp = { ...results.udp, outcome: 'not-offered' }));
    if (tcp.length) {
      jobs.push(sock.offer('tcp').then((sdp) => run('tcp', sdp && onlyTransport(sdp, 'tcp'), { iceServers: [] })));
    } else {
      progress('tcp', (results.tcp = { ...results.tcp, outcome: 'not-offered' }));
    }
    if (turn.length) {
      // Through the relay, which reaches the server's UDP port.
      jobs.push(sock.offer('relay').then((sdp) => run('relay', sdp && onlyTransport(sdp, 'udp'), { iceServers: turn, iceTransportPolicy: 'relay' })));
    } else {
      progress('relay', (results.relay = { ...results.relay, outcome: 'not-configured' }));
    }
    await Promise.all(jobs);
    return results;
  } finally {
    silent.stop();
  }
}

/**
 * Download speed to this server: read the check's download for at most
 * `LIMITS.downloadMs`, timed from the first byte.
 * @returns {Promise<{mbps: number, bytes: number} | TransferFailure>}
 */
export async function measureDownload() {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), LIMITS.downloadMs);
  let bytes = 0;
  let start = 0;
  try {
    const res = await fetch('/api/check/download', { cache: 'no-store', signal: abort.signal });
    if (!res.ok || !res.body) return refusal(res.status);
    start = performance.now();
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
    }
  } catch (e) {
    if (!start || !bytes) return { error: abort.signal.aborted ? 'timeout' : 'failed' };
  } finally {
    clearTimeout(timer);
  }
  return { mbps: rate(bytes, performance.now() - start), bytes };
}

/**
 * Upload speed to this server: send up to 1 MiB of random bytes for at most
 * `LIMITS.uploadMs` (XMLHttpRequest, whose progress says how much went).
 * @param {string | undefined} csrfToken
 * @returns {Promise<{mbps: number, bytes: number} | TransferFailure>}
 */
export function measureUpload(csrfToken) {
  const size = 1 << 20;
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    let sent = 0;
    let start = performance.now();
    xhr.open('POST', '/api/check/upload');
    xhr.timeout = LIMITS.uploadMs;
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    if (csrfToken) xhr.setRequestHeader('X-CSRF-Token', csrfToken);
    xhr.upload.addEventListener('progress', (e) => { sent = e.loaded; });
    xhr.addEventListener('load', () => {
      if (xhr.status !== 200) resolve(refusal(xhr.status));
      else resolve({ mbps: rate(size, performance.now() - start), bytes: size });
    });
    xhr.addEventListener('timeout', () => {
      resolve(sent ? { mbps: rate(sent, performance.now() - start), bytes: sent } : { error: 'timeout' });
    });
    xhr.addEventListener('error', () => resolve({ error: 'failed' }));
    start = performance.now();
    xhr.send(data);
  });
}

const rate = (/** @type {number} */ bytes, /** @type {number} */ ms) => (bytes * 8) / (Math.max(ms, 1) / 1000) / 1e6;

/** @param {number} status @returns {TransferFailure} */
function refusal(status) {
  if (status === 429) return { error: 'rate-limited' };
  if (status === 503) return { error: 'busy' };
  return { error: 'status', status };
}

/**
 * The verdict, from the results.
 * @param {{support: {ok: boolean}, signalling: {ok: boolean, why?: string}, media: Record<'udp'|'tcp'|'relay', PathResult> | null}} r
 * @returns {'unsupported'|'try-later'|'no-server'|'ok'|'tcp-only'|'relay-only'|'blocked'}
 */
export function verdict(r) {
  if (!r.support.ok) return 'unsupported';
  if (!r.signalling.ok) return r.signalling.why === 'rate-limited' || r.signalling.why === 'busy' ? 'try-later' : 'no-server';
  const m = r.media;
  if (m?.udp.outcome === 'pass') return 'ok';
  if (m?.tcp.outcome === 'pass') return 'tcp-only';
  if (m?.relay.outcome === 'pass') return 'relay-only';
  return 'blocked';
}
