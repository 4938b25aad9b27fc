// The connectivity check page (/check): runs the measurements of checks.js in
// turn, shows each result as it comes (words and a symbol, never colour
// alone), then the verdict and a plain-text report for IT.
import {
  browserSupport, browserName, openDevices, CheckSocket, whySocketFailed, relayServers, relayUrls,
  probeMedia, measureDownload, measureUpload, verdict,
} from './checks.js';
import { loadSession } from './identity.js';

// Every word the page shows or reports, in one place for translation.
const TEXT = {
  title: 'Check your connection · Convene',
  heading: 'Check your connection',
  intro: 'This page checks whether this browser and network can take part in meetings on this server. It needs no meeting and takes about 15 seconds.',
  verdictHeading: 'Result',
  devicesHeading: 'Camera and microphone',
  meterLabel: 'Microphone level',
  resultsHeading: 'Results',
  reportHeading: 'Report for your IT team',
  reportHelp: 'If something failed, give this report to your IT team: it says what was tried, and which of the server\'s addresses and ports could not be reached.',
  reportLabel: 'Report (plain text)',
  copy: 'Copy report',
  copied: 'Report copied.',
  copyFailed: 'Could not copy: the report is selected, press Ctrl+C (or ⌘C) to copy it.',
  runAgain: 'Run the check again',
  home: 'Back to the start page',
  hostedBy: (/** @type {string} */ org, /** @type {string} */ server) => `Hosted by ${org} · ${server}`,
  cameraPreview: 'Your camera preview',
  noCamera: 'No camera picture',
  checking: (/** @type {string} */ what) => `Checking ${what}…`,
  finished: (/** @type {string} */ v) => `Check finished. ${v}`,
  names: {
    browser: 'Browser',
    camera: 'Camera',
    microphone: 'Microphone',
    signalling: 'Connection to the server (WebSocket)',
    udp: 'Media over UDP',
    tcp: 'Media over TCP',
    relay: 'Media through the relay (TURN)',
    rtt: 'Round-trip time',
    download: 'Download speed',
    upload: 'Upload speed',
  },
  status: {
    waiting: 'Waiting',
    running: 'Checking…',
    pass: 'Passed',
    fail: 'Failed',
    'not-offered': 'Not offered by this server',
    'not-configured': 'Not configured',
    denied: 'Not allowed',
    skipped: 'Not checked',
    measured: 'Measured',
  },
  verdicts: {
    ok: 'You can join meetings',
    'tcp-only': 'You can join, but only over TCP: sound and video may lag when the network is busy',
    'relay-only': 'You can join, but only through the relay: video may be lower quality',
    blocked: 'Your network blocks media: give this report to your IT team',
    'no-server': 'Your network blocks the connection to this server: give this report to your IT team',
    'try-later': 'The server could not run the check just now: try again in a minute',
    unsupported: 'This browser cannot join meetings: use a recent Chrome, Edge, Firefox or Safari',
  },
  devicesDenied: 'You did not allow the camera and microphone. You can still join, but others will not see or hear you until you allow them in this browser\'s settings for this site.',
  devicesMissing: (/** @type {string} */ what) => `No working ${what} was found: you can still join, but others will not ${what === 'camera' ? 'see' : 'hear'} you.`,
  deviceWaiting: 'Waiting for your permission',
  deviceError: (/** @type {string} */ name) => ({ NotFoundError: 'none found', NotReadableError: 'in use by another program, or not working', NotAllowedError: 'you did not allow it', SecurityError: 'not allowed on this page' }[name] || name),
  supportMissing: (/** @type {string[]} */ m) => `missing: ${m.join(', ')}`,
  supportE2ee: (/** @type {boolean} */ yes) => (yes ? 'frame encryption available, for end-to-end encryption' : 'no frame encryption: end-to-end encryption will not be available'),
  socketWhy: {
    blocked: 'the server is reachable, but the WebSocket could not open: a proxy or firewall on the way may block WebSockets',
    'rate-limited': 'too many checks from your address: try again in a minute',
    busy: 'the server is running too many checks: try again in a few seconds',
    unreachable: 'the server could not be reached',
    refused: 'the server refused the connection',
  },
  answered: (/** @type {number} */ ms, /** @type {number} */ n) => `answered; ${n} pings, median round trip ${ms} ms`,
  connectedIn: (/** @type {number} */ ms) => `connected in ${ms} ms`,
  via: (/** @type {import('./checks.js').Via} */ v) => (v.local === 'relay' ? `relay (${v.relayProtocol || v.protocol} to the TURN server)` : `${v.protocol}, direct`),
  probeFailure: {
    'no-offer': 'the server made no offer',
    timeout: 'no connection within 6 s',
    'ice-failed': 'the browser found no path that works',
    error: 'the browser could not set up the connection',
  },
  transferFailure: {
    'rate-limited': 'too many checks from your address: try again in a minute',
    busy: 'the server is busy: try again in a few seconds',
    status: (/** @type {number} */ n) => `the server answered ${n}`,
    timeout: 'nothing got through in time',
    failed: 'the transfer failed',
  },
  notOfferedDetail: 'this server offers no media over TCP',
  notConfiguredDetail: 'this server has no TURN relay',
  relayBusy: 'not tested: the server is giving out no more relay tests just now; try again in a minute',
  rttDetail: (/** @type {number} */ ws, /** @type {number | undefined} */ media) => `${ws} ms to the server${media !== undefined ? `; media ${media} ms` : ''}`,
  speed: (/** @type {number} */ mbps) => `about ${mbps < 10 ? mbps.toFixed(1) : Math.round(mbps)} Mbit/s, an estimate to this server only`,
  report: {
    title: 'Convene connectivity check',
    server: 'Server',
    time: 'Time',
    took: (/** @type {number} */ s) => `Took ${s.toFixed(1)} s`,
    browser: 'Browser',
    result: 'Result',
    unreached: 'Not reached (check firewalls and proxies for these):',
    addresses: 'The server\'s media addresses:',
    none: '(none)',
  },
};

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const video = /** @type {HTMLVideoElement} */ ($('preview'));
const meter = /** @type {HTMLMeterElement} */ ($('mic-meter'));
const reportBox = /** @type {HTMLTextAreaElement} */ ($('report'));
const copyButton = /** @type {HTMLButtonElement} */ ($('copy-report'));
const againButton = /** @type {HTMLButtonElement} */ ($('run-again'));

document.title = TEXT.title;
for (const el of document.querySelectorAll('[data-t]')) {
  const key = /** @type {HTMLElement} */ (el).dataset.t || '';
  el.textContent = /** @type {any} */ (TEXT)[key];
}
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
    const why = r.reason === 'server' ? r.serverReason : r.reason && TEXT.probeFailure[r.reason];
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
  $('hosted-by').textContent = TEXT.hostedBy(s.hostedBy, s.server);
}).catch(() => {}).finally(run);
