// The connectivity check page (/check): runs the measurements of checks.js in
// turn, shows each result as it comes (words and a symbol, never colour
// alone), then the verdict and a plain-text report for IT.
import {
  browserSupport, browserName, openDevices, CheckSocket, whySocketFailed, relayServers, relayUrls,
  probeMedia, measureDownload, measureUpload, verdict,
} from './checks.js';
import { loadSession, orgName } from './identity.js';
import { t, lang, translatePage, languagePicker } from './i18n.js';

// Every word the page shows or reports, from the catalogue (web/i18n/).
const TEXT = {
  title: t('check.title'),
  hostedBy: (/** @type {string} */ org, /** @type {string} */ server) => t('common.hosted-by', { org, server }),
  cameraPreview: t('common.camera-preview'),
  noCamera: t('check.no-camera'),
  copied: t('check.copied'),
  copyFailed: t('check.copy-failed'),
  checking: (/** @type {string} */ what) => t('check.checking', { what }),
  finished: (/** @type {string} */ v) => t('check.finished', { verdict: v }),
  names: {
    browser: t('check.name.browser'),
    camera: t('check.name.camera'),
    microphone: t('check.name.microphone'),
    signalling: t('check.name.signalling'),
    udp: t('check.name.udp'),
    tcp: t('check.name.tcp'),
    relay: t('check.name.relay'),
    rtt: t('check.name.rtt'),
    download: t('check.name.download'),
    upload: t('check.name.upload'),
  },
  status: {
    waiting: t('check.status.waiting'),
    running: t('check.status.running'),
    pass: t('check.status.pass'),
    fail: t('check.status.fail'),
    'not-offered': t('check.status.not-offered'),
    'not-configured': t('check.status.not-configured'),
    denied: t('check.status.denied'),
    skipped: t('check.status.skipped'),
    measured: t('check.status.measured'),
  },
  verdicts: {
    ok: t('check.verdict.ok'),
    'tcp-only': t('check.verdict.tcp-only'),
    'relay-only': t('check.verdict.relay-only'),
    blocked: t('check.verdict.blocked'),
    'no-server': t('check.verdict.no-server'),
    'try-later': t('check.verdict.try-later'),
    unsupported: t('check.verdict.unsupported'),
  },
  devicesDenied: t('check.devices-denied'),
  devicesMissing: (/** @type {string} */ what) => t(what === 'camera' ? 'check.devices-missing-camera' : 'check.devices-missing-microphone'),
  deviceWaiting: t('check.device-waiting'),
  deviceError: (/** @type {string} */ name) => ({
    NotFoundError: t('check.device.not-found'),
    NotReadableError: t('check.device.not-readable'),
    NotAllowedError: t('check.device.not-allowed'),
    SecurityError: t('check.device.security'),
  }[name] || name),
  supportMissing: (/** @type {string[]} */ m) => t('check.support-missing', { list: m.join(', ') }),
  supportE2ee: (/** @type {boolean} */ yes) => t(yes ? 'check.e2ee-yes' : 'check.e2ee-no'),
  socketWhy: {
    blocked: t('check.socket.blocked'),
    'rate-limited': t('check.rate-limited'),
    busy: t('check.socket.busy'),
    unreachable: t('check.socket.unreachable'),
    refused: t('check.socket.refused'),
  },
  answered: (/** @type {number} */ ms, /** @type {number} */ n) => t('check.answered', { count: n, ms }),
  connectedIn: (/** @type {number} */ ms) => t('check.connected-in', { ms }),
  via: (/** @type {import('./checks.js').Via} */ v) => (v.local === 'relay'
    ? t('check.via-relay', { protocol: v.relayProtocol || v.protocol })
    : t('check.via-direct', { protocol: v.protocol })),
  probeFailure: {
    'no-offer': t('check.probe.no-offer'),
    timeout: t('check.probe.timeout'),
    'ice-failed': t('check.probe.ice-failed'),
    error: t('check.probe.error'),
  },
  transferFailure: {
    'rate-limited': t('check.rate-limited'),
    busy: t('check.transfer.busy'),
    status: (/** @type {number} */ n) => t('check.transfer.status', { status: n }),
    timeout: t('check.transfer.timeout'),
    failed: t('check.transfer.failed'),
  },
  /** The server's reasons for a failed probe (check.rs), word for word. */
  serverReason: /** @type {Record<string, string>} */ ({
    'the answer is not SDP this server can use': t('check.probe.server-bad-sdp'),
    'the media connection could not be set up': t('check.probe.server-setup'),
    'the media connection closed': t('check.probe.server-closed'),
  }),
  notOfferedDetail: t('check.not-offered-detail'),
  notConfiguredDetail: t('check.not-configured-detail'),
  relayBusy: t('check.relay-busy'),
  rttDetail: (/** @type {number} */ ws, /** @type {number | undefined} */ media) => (media !== undefined
    ? t('check.rtt-media', { ws, media })
    : t('check.rtt', { ws })),
  speed: (/** @type {number} */ mbps) => t('check.speed', { mbps: new Intl.NumberFormat(lang, { useGrouping: false, maximumFractionDigits: mbps < 10 ? 1 : 0, minimumFractionDigits: mbps < 10 ? 1 : 0 }).format(mbps) }),
  report: {
    title: t('check.report.title'),
    server: t('check.report.server'),
    time: t('check.report.time'),
    took: (/** @type {number} */ s) => t('check.report.took', { s: new Intl.NumberFormat(lang, { useGrouping: false, minimumFractionDigits: 1, maximumFractionDigits: 1 }).format(s) }),
    browser: t('check.report.browser'),
    result: t('check.report.result'),
    unreached: t('check.report.unreached'),
    addresses: t('check.report.addresses'),
  },
};

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const video = /** @type {HTMLVideoElement} */ ($('preview'));
const meter = /** @type {HTMLMeterElement} */ ($('mic-meter'));
const reportBox = /** @type {HTMLTextAreaElement} */ ($('report'));
const copyButton = /** @type {HTMLButtonElement} */ ($('copy-report'));
const againButton = /** @type {HTMLButtonElement} */ ($('run-again'));

translatePage();
document.title = TEXT.title;
languagePicker($('language'));
video.setAttribute('aria-label', TEXT.cameraPreview);

/** @typedef {keyof typeof TEXT.names} RowKey */
/** @typedef {keyof typeof TEXT.status} Status */
/** @type {RowKey[]} */
const ORDER = ['browser', 'camera', 'microphone', 'signalling', 'udp', 'tcp', 'relay', 'rtt', 'download', 'upload'];
const MARK = { waiting: '○', running: '…', pass: '✓', fail: '✗', 'not-offered': '–', 'not-configured': '–', denied: '✗', skipped: '–', measured: '•' };

/** @type {Map<RowKey, {status: Status, detail: string}>} */
const rows = new Map();
/** What the report needs besides the rows. */
const facts = {
  started: 0,
  took: 0,
  /** @type {string | null} */ verdict: null,
  /** @type {string[]} */ unreached: [],
  /** @type {string[]} */ addresses: [],
};
/** @type {Record<string, HTMLLIElement>} */
const items = {};

function buildRows() {
  const list = $('results');
  list.replaceChildren();
  for (const key of ORDER) {
    const li = document.createElement('li');
    li.id = `result-${key}`;
    items[key] = li;
    list.append(li);
    set(key, 'waiting');
  }
}

/** @param {RowKey} key @param {Status} status @param {string} [detail] */
function set(key, status, detail = '') {
  rows.set(key, { status, detail });
  const li = items[key];
  const mark = document.createElement('span');
  mark.className = 'mark';
  mark.setAttribute('aria-hidden', 'true');
  mark.textContent = MARK[status];
  const name = document.createElement('strong');
  name.textContent = TEXT.names[key];
  const word = document.createElement('span');
  word.className = 'result-status';
  word.textContent = TEXT.status[status];
  li.className = `result ${status}`;
  li.replaceChildren(mark, name, ': ', word);
  if (detail) {
    const d = document.createElement('span');
    d.className = 'hint result-detail';
    d.textContent = ` (${detail})`;
    li.append(d);
  }
  writeReport();
}

/** @param {string} text */
function progress(text) {
  $('progress').textContent = text;
}

function writeReport() {
  const lines = [
    TEXT.report.title,
    `${TEXT.report.server}: ${location.origin}`,
    `${TEXT.report.time}: ${new Date(facts.started || Date.now()).toISOString()}${facts.took ? ` · ${TEXT.report.took(facts.took)}` : ''}`,
    `${TEXT.report.browser}: ${browserName()} · ${navigator.userAgent}`,
  ];
  if (facts.verdict) lines.push(`${TEXT.report.result}: ${facts.verdict}`);
  lines.push('');
  for (const key of ORDER) {
    const r = rows.get(key);
    if (r) lines.push(`${TEXT.names[key]}: ${TEXT.status[r.status]}${r.detail ? ` (${r.detail})` : ''}`);
  }
  if (facts.unreached.length) lines.push('', TEXT.report.unreached, ...facts.unreached.map((t) => `  ${t}`));
  if (facts.addresses.length) lines.push('', TEXT.report.addresses, ...facts.addresses.map((t) => `  ${t}`));
  reportBox.value = lines.join('\n');
}

/** @type {MediaStream | null} */ let stream = null;
/** @type {AudioContext | null} */ let audioCtx = null;
let meterTimer = 0;

/** Camera and microphone, with preview and meter; never holds up the rest. */
async function checkDevices() {
  set('camera', 'running', TEXT.deviceWaiting);
  set('microphone', 'running', TEXT.deviceWaiting);
  const d = await openDevices();
  stream = d.stream;
  for (const kind of /** @type {const} */ (['camera', 'microphone'])) {
    const r = d[kind];
    if (r.ok) set(kind, 'pass', r.label || '');
    else set(kind, d.denied ? 'denied' : 'fail', TEXT.deviceError(r.error || ''));
  }
  const cam = stream?.getVideoTracks()[0];
  video.srcObject = cam ? new MediaStream([cam]) : null;
  $('preview-off').textContent = cam ? '' : TEXT.noCamera;
  $('preview-off').hidden = !!cam;
  const mic = stream?.getAudioTracks()[0];
  if (mic) {
    audioCtx ??= new AudioContext();
    const analyser = audioCtx.createAnalyser();
    analyser.fftSize = 512;
    audioCtx.createMediaStreamSource(new MediaStream([mic])).connect(analyser);
    const data = new Float32Array(analyser.fftSize);
    clearInterval(meterTimer);
    meterTimer = window.setInterval(() => {
      analyser.getFloatTimeDomainData(data);
      let sum = 0;
      for (const v of data) sum += v * v;
      meter.value = Math.min(1, Math.sqrt(sum / data.length) * 4);
    }, 100);
  }
  const note = $('verdict-note');
  if (d.denied) note.textContent = TEXT.devicesDenied;
  else if (!d.camera.ok || !d.microphone.ok) note.textContent = TEXT.devicesMissing(!d.camera.ok ? 'camera' : 'microphone');
  note.hidden = d.denied ? false : d.camera.ok && d.microphone.ok;
}

/** @type {any} */ let session = null;

async function run() {
  againButton.disabled = true;
  copyButton.disabled = true;
  $('results').setAttribute('aria-busy', 'true');
  $('verdict-section').hidden = true;
  facts.started = Date.now();
  facts.took = 0;
  facts.verdict = null;
  facts.unreached = [];
  facts.addresses = [];
  const t0 = performance.now();
  buildRows();

  const support = browserSupport();
  set('browser', support.ok ? 'pass' : 'fail',
    [browserName(), support.ok ? '' : TEXT.supportMissing(support.missing), TEXT.supportE2ee(support.e2ee.RTCRtpScriptTransform || support.e2ee.createEncodedStreams)]
      .filter(Boolean).join('; '));
  const devices = stream ? Promise.resolve() : (support.missing.includes('getUserMedia') ? Promise.resolve() : checkDevices().catch(() => {}));
  if (stream) {
    set('camera', stream.getVideoTracks().length ? 'pass' : 'fail', stream.getVideoTracks()[0]?.label || '');
    set('microphone', stream.getAudioTracks().length ? 'pass' : 'fail', stream.getAudioTracks()[0]?.label || '');
  }

  /** @type {{ok: boolean, why?: string}} */
  let signalling = { ok: false };
  /** @type {Awaited<ReturnType<typeof probeMedia>> | null} */
  let media = null;
  let wsRtt = 0;
  if (support.ok) {
    progress(TEXT.checking(TEXT.names.signalling));
    set('signalling', 'running');
    const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/api/check/ws`;
    /** @type {CheckSocket | null} */ let sock = null;
    try {
      sock = await CheckSocket.open(url);
    } catch {
      signalling = { ok: false, why: await whySocketFailed() };
      facts.unreached.push(`WebSocket ${url}`);
      set('signalling', 'fail', TEXT.socketWhy[/** @type {keyof typeof TEXT.socketWhy} */ (signalling.why)]);
    }
    if (sock) {
      const rtts = (await sock.pings()).sort((a, b) => a - b);
      wsRtt = Math.round(rtts[Math.floor(rtts.length / 2)] || 0);
      signalling = { ok: rtts.length > 0, why: rtts.length ? undefined : 'refused' };
      set('signalling', signalling.ok ? 'pass' : 'fail', signalling.ok ? TEXT.answered(wsRtt, rtts.length) : TEXT.socketWhy.refused);
      if (signalling.ok) {
        progress(TEXT.checking(`${TEXT.names.udp}, ${TEXT.names.tcp}, ${TEXT.names.relay}`));
        for (const k of /** @type {const} */ (['udp', 'tcp', 'relay'])) set(k, 'running');
        const offered = await relayServers();
        const turn = offered ?? [];
        media = await probeMedia(sock, turn, (path, r) => showPath(/** @type {'udp'|'tcp'|'relay'} */ (path), r));
        if (offered === null) set('relay', 'skipped', TEXT.relayBusy);
        facts.addresses = [...media.udp.targets, ...media.tcp.targets, ...relayUrls(turn).map((u) => `TURN ${u}`)];
        for (const k of /** @type {const} */ (['udp', 'tcp', 'relay'])) {
          if (media[k].outcome === 'fail') facts.unreached.push(...media[k].targets.map((t) => (k === 'relay' ? `TURN ${t}` : t)));
        }
      }
      sock.close();
    }
  }
  for (const k of /** @type {const} */ (['udp', 'tcp', 'relay'])) if (!media) set(k, 'skipped');
  if (signalling.ok) set('rtt', 'measured', TEXT.rttDetail(wsRtt, media?.udp.rttMs ?? media?.tcp.rttMs ?? media?.relay.rttMs));
  else set('rtt', 'skipped');

  if (signalling.why === 'rate-limited' || !support.ok) {
    set('download', 'skipped');
    set('upload', 'skipped');
  } else {
    progress(TEXT.checking(TEXT.names.download));
    set('download', 'running');
    const down = await measureDownload();
    set('download', 'mbps' in down ? 'measured' : 'fail', 'mbps' in down ? TEXT.speed(down.mbps) : transferFailure(down));
    progress(TEXT.checking(TEXT.names.upload));
    set('upload', 'running');
    const up = await measureUpload(session?.csrfToken);
    set('upload', 'mbps' in up ? 'measured' : 'fail', 'mbps' in up ? TEXT.speed(up.mbps) : transferFailure(up));
  }

  const v = TEXT.verdicts[verdict({ support, signalling, media })];
  facts.verdict = v;
  facts.took = (performance.now() - t0) / 1000;
  const kind = verdict({ support, signalling, media });
  const box = $('verdict');
  box.className = `verdict-text ${kind === 'ok' ? 'pass' : kind === 'tcp-only' || kind === 'relay-only' || kind === 'try-later' ? 'warn' : 'fail'}`;
  box.textContent = v;
  $('verdict-section').hidden = false;
  $('results').setAttribute('aria-busy', 'false');
  writeReport();
  progress(TEXT.finished(v));
  againButton.disabled = false;
  copyButton.disabled = false;
  // Devices may still wait for a person's answer: the report follows them.
  devices.then(writeReport);
}

/** @param {import('./checks.js').TransferFailure} f */
function transferFailure(f) {
  return f.error === 'status' ? TEXT.transferFailure.status(f.status || 0) : TEXT.transferFailure[f.error];
}

/** @param {'udp'|'tcp'|'relay'} path @param {import('./checks.js').PathResult} r */
function showPath(path, r) {
  if (r.outcome === 'pass') set(path, 'pass', [TEXT.connectedIn(r.ms || 0), r.via && TEXT.via(r.via)].filter(Boolean).join('; '));
  else if (r.outcome === 'not-offered') set(path, 'not-offered', TEXT.notOfferedDetail);
  else if (r.outcome === 'not-configured') set(path, 'not-configured', TEXT.notConfiguredDetail);
  else if (r.outcome === 'fail') {
    const why = r.reason === 'server' ? (TEXT.serverReason[r.serverReason || ''] ?? r.serverReason) : r.reason && TEXT.probeFailure[r.reason];
    set(path, 'fail', [why, ...r.targets].filter(Boolean).join('; '));
  }
  else set(path, 'skipped');
}

copyButton.addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText(reportBox.value);
    progress(TEXT.copied);
  } catch {
    reportBox.focus();
    reportBox.select();
    progress(TEXT.copyFailed);
  }
});
againButton.addEventListener('click', () => { run(); });
window.addEventListener('pagehide', () => {
  for (const t of stream?.getTracks() || []) t.stop();
});

loadSession().then((s) => {
  session = s;
  $('hosted-by').textContent = TEXT.hostedBy(orgName(s.hostedBy), s.server);
}).catch(() => {}).finally(run);
