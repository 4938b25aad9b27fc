// Convene from locked-down networks (issue 14, "Proven in locked-down
// networks"): two people meet, one from an open network and one from a
// network namespace whose nftables rules let only some traffic out; each must
// decode the other's video and hear their audio, and the locked-down
// browser's selected ICE candidate pair (from getStats) proves which path the
// media took. Real Chromium, real Firefox ESR, real coturn, real Convene, all
// in namespaces this file makes and deletes (netns.mjs says how, and how to
// add scenarios). Needs root; skipped with the reason otherwise.
//
//  1. No UDP out, TCP allowed           → ICE-TCP to Convene, no relay
//     1t. the same with TURN offered too → over TCP, ICE-TCP preferred (a relay is a TODO)
//  2. Only TCP 443 to the TURN server   → TURN over TLS on 443
//     (and the web port, for the page)
//  3. Everything allowed                → direct UDP, though TCP and TURN are offered
//  6. https and wss with a test certificate: joining and media, and
//     6b. only TCP 443 to Convene (https, wss and ICE-TCP on one port) → ICE-TCP on 443
// Each in Chromium and in Firefox (the other person is always Chromium).
//
// Prints "join-to-first-frame udp=… ms tcp=… ms turn-tls=… ms" (navigation
// of the locked-down Chromium to its first decoded remote frame, same run);
// the figures go to BENCHMARKS.md, not into assertions.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, SERVER_IP, TURN_IP, TURN_NAME, NO_UDP, onlyTcp, meet, selectedPath, describePath, offered, unsupported } from './netns.mjs';

const skip = unsupported() || false;
const WEB_PORT = 8080;
const MEDIA_PORT = 40000;
const ICE_TCP_PORT = 8444;
/** Each scenario's own bound (the whole file is bounded by these). */
const SCENARIO = { timeout: 60000 };

const firstFrame = {};

/** The locked-down person's selected pair, asserted present and connected. */
async function pathOf(person) {
  const path = await selectedPath(person.page);
  assert.ok(path, 'a candidate pair is selected');
  return path;
}

describe('locked-down networks: plain http, ICE-TCP on its own port, coturn', { skip }, () => {
  let lab;
  /** With TURN (coturn) configured. */
  let convene;
  /** Without TURN: ICE-TCP is the only way past a UDP block. */
  let direct;

  before(async () => {
    lab = await Lab.create('net');
    const turn = await lab.startCoturn();
    // ICE-TCP on a port of its own (not the web port): scenario 2 must let
    // the page and its WebSocket through to the web port while dropping
    // ICE-TCP, to show the relay is used because the network blocks the
    // direct paths, with ICE-TCP still offered. (With ICE-TCP on the web
    // port, a network that can load the page can reach ICE-TCP too: 6b.)
    convene = await lab.startConvene({ port: WEB_PORT, mediaPort: MEDIA_PORT, iceTcp: `${SERVER_IP}:${ICE_TCP_PORT}`, turn });
    direct = await lab.startConvene({ port: WEB_PORT + 1, mediaPort: MEDIA_PORT + 10, iceTcp: `${SERVER_IP}:${ICE_TCP_PORT + 1}` });
  });

  after(async () => {
    await lab?.close();
    const f = (k) => (firstFrame[k] == null ? 'n/a' : `${firstFrame[k]} ms`);
    console.log(`join-to-first-frame udp=${f('udp')} tcp=${f('tcp')} turn-tls=${f('turn-tls')}`);
  });

  for (const guest of ['chromium', 'firefox']) {
    test(`1. UDP blocked, TCP allowed: ${guest} joins over ICE-TCP, no relay, media both ways`, SCENARIO, async () => {
      const m = await meet(lab, direct, { tag: `1${guest[0]}`, guest, rules: NO_UDP });
      try {
        const path = await pathOf(m.guest);
        const why = `${guest}: ${describePath(path)}`;
        assert.equal(path.local.protocol, 'tcp', why);
        assert.equal(path.remote.protocol, 'tcp', why);
        assert.notEqual(path.local.candidateType, 'relay', why);
        assert.equal(path.remote.candidateType, 'host', why);
        assert.equal(path.remote.address, SERVER_IP, why);
        assert.equal(path.remote.port, ICE_TCP_PORT + 1, why);
        assert.ok(m.shut.dropped() > 0, 'the browser tried UDP and the rules dropped it');
        // The open side stays on UDP.
        assert.equal((await pathOf(m.host)).local.protocol, 'udp');
        if (guest === 'chromium') firstFrame.tcp = m.joinToFirstFrameMs;
      } finally {
        await m.end();
      }
    });

    // The same network with TURN offered too: TCP to the TURN server is
    // allowed, so relaying over TCP is another way out. ICE-TCP should win
    // (direct, and of higher priority), but Chromium stops gathering as soon
    // as one pair is writable: if the relay over TCP answers before its TCP
    // phase starts (about 60 ms after the relay phase), no ICE-TCP candidate
    // is ever made (its log, LAB_BROWSER_LOG: "Allocation Phase=Relay", the
    // relay selected, "gathering complete", no "Allocation Phase=Tcp"). With
    // no latency in the lab, Chromium relayed in every run of this file so
    // far (6 of 6), and in 2 of 10 runs of this scenario alone; Firefox took
    // ICE-TCP every time. Over a real network the relay needs more round
    // trips than ICE-TCP's TCP connect and check, so ICE-TCP stands a better
    // chance there (not measured: this kernel has no netem). So media must
    // flow over TCP either way, and a relay is reported as a TODO, not
    // passed.
    test(`1t. UDP blocked, TCP allowed, TURN offered too: ${guest} sends media over TCP, preferably ICE-TCP`, SCENARIO, async (t) => {
      const m = await meet(lab, convene, { tag: `4${guest[0]}`, guest, rules: NO_UDP });
      try {
        const path = await pathOf(m.guest);
        const why = `${guest}: ${describePath(path)}`;
        if (path.local.candidateType === 'relay') {
          assert.ok(['tcp', 'tls'].includes(path.local.relayProtocol), why);
          t.todo(`${guest} relayed (${why}) instead of using ICE-TCP`);
        } else {
          assert.equal(path.local.protocol, 'tcp', why);
          assert.equal(path.remote.port, ICE_TCP_PORT, why);
        }
      } finally {
        await m.end();
      }
    });
  }

  for (const guest of ['chromium', 'firefox']) {
    test(`2. only TCP 443 to the TURN server (and the web port): ${guest} joins through TURN over TLS`, SCENARIO, async () => {
      const rules = onlyTcp([TURN_IP, 443], [SERVER_IP, WEB_PORT]);
      const m = await meet(lab, convene, { tag: `2${guest[0]}`, guest, rules });
      try {
        const offer = await offered(m.guest.page);
        assert.ok(offer.configured.includes(`turns:${TURN_NAME}:443?transport=tcp`), `the peer connection has the TURN servers: ${JSON.stringify(offer)}`);
        assert.ok(offer.candidates.includes(`tcp ${SERVER_IP}:${ICE_TCP_PORT}`), `ICE-TCP was offered too: ${offer.candidates}`);
        const path = await pathOf(m.guest);
        const why = `${guest}: ${describePath(path)}`;
        assert.equal(path.local.candidateType, 'relay', why);
        assert.equal(path.local.relayProtocol, 'tls', why);
        assert.equal(path.local.address, TURN_IP, why);
        // From the relay to Convene: UDP to the media port.
        assert.equal(path.remote.protocol, 'udp', why);
        assert.equal(path.remote.address, SERVER_IP, why);
        assert.equal(path.remote.port, MEDIA_PORT, why);
        assert.ok(m.shut.dropped() > 0, 'the browser tried the direct paths and the rules dropped them');
        if (guest === 'chromium') firstFrame['turn-tls'] = m.joinToFirstFrameMs;
      } finally {
        await m.end();
      }
    });
  }

  for (const guest of ['chromium', 'firefox']) {
    test(`3. everything allowed: ${guest} uses direct UDP, though TCP and TURN are offered`, SCENARIO, async () => {
      const m = await meet(lab, convene, { tag: `3${guest[0]}`, guest });
      try {
        const offer = await offered(m.guest.page);
        assert.ok(offer.candidates.includes(`tcp ${SERVER_IP}:${ICE_TCP_PORT}`), `ICE-TCP offered: ${offer.candidates}`);
        assert.ok(offer.handedOut.includes(`turns:${TURN_NAME}:443?transport=tcp`), `TURN offered: ${JSON.stringify(offer)}`);
        assert.ok(offer.configured.includes(`turn:${TURN_NAME}:3478?transport=udp`), `the peer connection has the TURN servers: ${JSON.stringify(offer)}`);
        for (const p of [m.guest, m.host]) {
          const path = await pathOf(p);
          const why = `${p.kind}: ${describePath(path)}`;
          assert.equal(path.local.protocol, 'udp', why);
          assert.ok(['host', 'prflx'].includes(path.local.candidateType), why);
          assert.equal(path.remote.candidateType, 'host', why);
          assert.equal(path.remote.address, SERVER_IP, why);
          assert.equal(path.remote.port, MEDIA_PORT, why);
        }
        if (guest === 'chromium') firstFrame.udp = m.joinToFirstFrameMs;
      } finally {
        await m.end();
      }
    });
  }
});

describe('https end to end: Convene with a test certificate on 443', { skip }, () => {
  let lab;
  let convene;

  before(async () => {
    lab = await Lab.create('tls');
    // The production layout: https, wss and ICE-TCP all on 443 (ICE-TCP told
    // apart from TLS by its first bytes). --public-url is given because the
    // default names the port (https://203.0.113.1:443), which no browser's
    // Origin header does.
    convene = await lab.startConvene({ port: 443, mediaPort: MEDIA_PORT, iceTcp: 'web', tls: true, publicUrl: `https://${SERVER_IP}` });
  });

  after(async () => {
    await lab?.close();
  });

  for (const guest of ['chromium', 'firefox']) {
    test(`6. ${guest} trusting a test certificate: https page, wss signalling, media both ways`, SCENARIO, async () => {
      const m = await meet(lab, convene, { tag: `6${guest[0]}`, guest });
      try {
        for (const p of [m.host, m.guest]) {
          assert.match(p.page.url(), new RegExp(`^https://${SERVER_IP.replaceAll('.', '\\.')}/m/`));
          const socket = await p.page.evaluate(() => {
            const ws = /** @type {any} */ (window).__sockets.find((s) => s.readyState === WebSocket.OPEN);
            return ws && { url: ws.url, secure: window.isSecureContext };
          });
          assert.ok(socket, 'an open WebSocket');
          assert.match(socket.url, new RegExp(`^wss://${SERVER_IP.replaceAll('.', '\\.')}/`));
          assert.equal(socket.secure, true);
          assert.equal((await pathOf(p)).local.protocol, 'udp');
        }
      } finally {
        await m.end();
      }
    });

    test(`6b. only TCP 443 to Convene: ${guest} gets the page, wss and ICE-TCP all on 443`, SCENARIO, async () => {
      const m = await meet(lab, convene, { tag: `6${guest[0]}t`, guest, rules: onlyTcp([SERVER_IP, 443]) });
      try {
        const path = await pathOf(m.guest);
        const why = `${guest}: ${describePath(path)}`;
        assert.equal(path.local.protocol, 'tcp', why);
        assert.notEqual(path.local.candidateType, 'relay', why);
        assert.equal(path.remote.address, SERVER_IP, why);
        assert.equal(path.remote.port, 443, why);
        assert.ok(m.shut.dropped() > 0, 'the browser tried UDP and the rules dropped it');
      } finally {
        await m.end();
      }
    });
  }
});
