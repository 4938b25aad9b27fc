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
//  4. The check page (/check) in each of these networks: everything allowed
//     → "You can join meetings"; UDP blocked → UDP fails, TCP passes, the
//     TCP-only verdict; only TCP 443 to the TURN server → UDP and TCP fail,
//     the relay passes, the relay-only verdict, the report names what was
//     not reached
//  5. A network change mid-meeting, the others see no leave or join:
//     5a. a new address (the old one gone) → back within seconds by a resume
//         (the signalling socket's address went too), from the new address;
//     5b. every path cut for 10 s, then back → media again;
//     5c. UDP cut (established flows too), the socket alive → ICE restart
//         (restart-ice, an offer with new ICE credentials, the same peer
//         connection) onto ICE-TCP
//  6. https and wss with a test certificate: joining and media, and
//     6b. only TCP 443 to Convene (https, wss and ICE-TCP on one port) → ICE-TCP on 443
// Each in Chromium and in Firefox (the other person is always Chromium).
//
// Prints "join-to-first-frame udp=… ms tcp=… ms turn-tls=… ms" (navigation
// of the locked-down Chromium to its first decoded remote frame, same run),
// and how long the check page and the recoveries of scenario 5 took; the
// figures go to BENCHMARKS.md, not into assertions.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  Lab, SERVER_IP, TURN_IP, TURN_NAME, NO_UDP, onlyTcp, meet, selectedPath, describePath, offered, unsupported,
  runCheck, events, pageClock,
} from './netns.mjs';
import { until, decodingVideos, receivingAudio, peopleNames } from './harness.mjs';

const skip = unsupported() || false;
const WEB_PORT = 8080;
const MEDIA_PORT = 40000;
const ICE_TCP_PORT = 8444;
/** Each scenario's own bound (the whole file is bounded by these). */
const SCENARIO = { timeout: 60000 };

const firstFrame = {};
/** Figures printed at the end: check page run times, recovery times. */
const figures = [];

const VERDICT = {
  ok: 'You can join meetings',
  tcpOnly: 'You can join, but only over TCP: sound and video may lag when the network is busy',
  relayOnly: 'You can join, but only through the relay: video may be lower quality',
};

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
    if (figures.length) console.log(figures.join('\n'));
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

  // 4. The check page in each locked-down case. Each case is a client of its
  // own (a fresh namespace and browser: no flow a case allowed carries over
  // into the next). One GET /api/check/ice-servers per check: 4 on
  // `convene`, 2 on `direct`, within its 20 a minute.
  const CHECK_CASES = [
    {
      id: '4a', what: 'everything allowed', server: () => convene, rules: null,
      verdict: VERDICT.ok, rows: { udp: 'pass', tcp: 'pass', relay: 'pass' }, unreached: [],
    },
    {
      // Convene without TURN: ICE-TCP is the way out.
      id: '4b', what: 'UDP blocked, TCP allowed', server: () => direct, rules: NO_UDP,
      verdict: VERDICT.tcpOnly, rows: { udp: 'fail', tcp: 'pass', relay: 'not-configured' },
      unreached: [`UDP ${SERVER_IP}:${MEDIA_PORT + 10}`],
    },
    {
      // ICE-TCP (8444) is offered but dropped: only the relay gets through.
      id: '4c', what: 'only TCP 443 to the TURN server (and the web port)', server: () => convene,
      rules: onlyTcp([TURN_IP, 443], [SERVER_IP, WEB_PORT]),
      verdict: VERDICT.relayOnly, rows: { udp: 'fail', tcp: 'fail', relay: 'pass' },
      unreached: [`UDP ${SERVER_IP}:${MEDIA_PORT}`, `TCP ${SERVER_IP}:${ICE_TCP_PORT}`],
    },
  ];
  for (const guest of ['chromium', 'firefox']) {
    for (const c of CHECK_CASES) {
      test(`${c.id}. the check page, ${c.what}: ${guest} says "${c.verdict.split(':')[0]}"`, SCENARIO, async () => {
        const server = c.server();
        const client = await lab.addClient(`${c.id}${guest[0]}`);
        try {
          client.firewall(c.rules);
          const person = guest === 'firefox' ? await lab.firefox(client, { convene: server }) : await lab.chromium(client, { convene: server });
          const r = await runCheck(person, server.url);
          figures.push(`check page ${c.id} ${guest}: ${r.tookMs} ms`);
          const why = `${guest} ${c.id}:\n${r.report}`;
          assert.equal(r.verdict, c.verdict, why);
          assert.equal(r.rows.signalling.state, 'pass', why);
          for (const [row, state] of Object.entries(c.rows)) assert.equal(r.rows[row].state, state, `${row}: ${why}`);
          // A failed row names the addresses it could not reach, and so does
          // the report, under "Not reached".
          for (const target of c.unreached) {
            const row = target.startsWith('UDP') ? 'udp' : 'tcp';
            assert.ok(r.rows[row].text.includes(target), `the ${row} row names ${target}: ${r.rows[row].text}`);
          }
          if (c.unreached.length) {
            const listed = r.report.split('Not reached (check firewalls and proxies for these):\n')[1]?.split('\n\n')[0]?.split('\n').map((l) => l.trim());
            assert.deepEqual(listed, c.unreached, why);
          } else {
            assert.ok(!r.report.includes('Not reached'), why);
          }
          assert.ok(r.report.includes(`Result: ${c.verdict}`), why);
          if (c.rows.relay === 'pass' && c.rules) {
            assert.match(r.rows.relay.text, /relay \(tls to the TURN server\)/, why);
          }
          if (c.rows.tcp === 'pass') assert.match(r.rows.tcp.text, /tcp, direct/, why);
          if (c.rules) assert.ok(client.dropped() > 0, 'the rules dropped what the check tried');
          // Within the page's own bound (15 s), with a second for navigation.
          assert.ok(r.tookMs < 16000, `the check took ${r.tookMs} ms`);
        } finally {
          await lab.removeClient(client);
        }
      });
    }
  }

  // 5. A network change mid-meeting. Two people meet over `direct` (ICE-TCP
  // on its own port, no TURN); the mover's network changes; media must flow
  // both ways again within 20 s, the mover must be the same participant with
  // new ICE credentials, and the other person's people list must show the
  // mover all along (sampled every 250 ms), with no participant-left or
  // participant-joined for them.
  const RECOVERY_MS = 20000;
  /** Media both ways: each decodes the other's video and receives their audio. */
  const flowing = async (m) => (await Promise.all([
    decodingVideos(m.guest.page), receivingAudio(m.guest.page), decodingVideos(m.host.page), receivingAudio(m.host.page),
  ])).every((n) => n >= 1);
  /** Samples the host's people list every 250 ms until the returned function is called. */
  const watchPeople = (page) => {
    const samples = [];
    let on = true;
    const done = (async () => {
      while (on) {
        samples.push(await peopleNames(page).catch((e) => [`(could not read: ${e.message})`]));
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    return async () => { on = false; await done; return samples; };
  };

  /**
   * Meets, runs `change(m)` (which returns when the network has changed, or
   * is back: `since` says which), waits for media both ways, watches 1 s
   * more, and checks what every variant must show. Returns what happened in
   * the mover's page after the change, and the selected pair.
   */
  async function networkChange(tag, guest, since, change) {
    const m = await meet(lab, direct, { tag, guest });
    try {
      const before = await events(m.guest.page);
      const moverId = before.find((e) => e.what === 'in' && e.type === 'welcome')?.participant;
      assert.ok(moverId, 'the mover was welcomed');
      const oldUfrags = new Set(before.filter((e) => e.type === 'offer').map((e) => e.ufrag));
      const [guestMark, hostMark] = [await pageClock(m.guest.page), await pageClock(m.host.page)];
      const stopWatching = watchPeople(m.host.page);
      let back;
      let recoveredMs;
      try {
        back = await change(m);
        await until('media flowing both ways again', () => flowing(m), RECOVERY_MS);
        recoveredMs = Date.now() - back;
        // Watch a little longer: a late leave or another drop would show.
        await new Promise((r) => setTimeout(r, 1000));
      } finally {
        const samples = await stopWatching();
        const lost = samples.filter((names) => !names.some((n) => n.startsWith('Locked-down network')));
        assert.ok(samples.length >= 8, `${samples.length} samples of the people list`);
        assert.deepEqual(lost, [], `the other person's list always showed the mover (${lost.length} of ${samples.length} samples did not)`);
      }
      const after = (await events(m.guest.page)).filter((e) => e.t >= guestMark);
      const hostSaw = (await events(m.host.page)).filter((e) => e.t >= hostMark && e.what === 'in');
      const comings = hostSaw.filter((e) => ['participant-left', 'participant-joined'].includes(e.type) && e.participant === moverId);
      assert.deepEqual(comings, [], 'the other person got no leave or join for the mover');
      const welcomes = after.filter((e) => e.what === 'in' && e.type === 'welcome');
      assert.ok(welcomes.every((e) => e.participant === moverId), `a resume kept the participant: ${JSON.stringify(welcomes)}`);
      const newOffers = after.filter((e) => e.what === 'in' && e.type === 'offer' && !oldUfrags.has(e.ufrag));
      assert.ok(newOffers.length > 0, `an offer with new ICE credentials came: ${JSON.stringify(after)}`);
      const how = welcomes.length ? 'resume (new socket and peer connection)' : 'ICE restart';
      const path = await selectedPath(m.guest.page);
      figures.push(`network change ${tag} ${guest}: media both ways again ${recoveredMs} ms after ${since}, by ${how}; now ${describePath(path)}`);
      return { m, after, path, welcomes };
    } catch (e) {
      e.message += `\nConvene's log, last lines:\n${direct.log().split('\n').slice(-10).join('\n')}`;
      throw e;
    } finally {
      await m.end();
    }
  }

  for (const guest of ['chromium', 'firefox']) {
    // The socket's TCP connection goes with the old address: restart-ice is
    // sent (Chromium on 'online', Firefox when ICE disconnects) but cannot
    // arrive; the signalling's check finds the socket silent within 3 s and
    // resumes from the new address, within the server's grace.
    test(`5a. a new address mid-meeting: ${guest} is back within seconds from it, and nobody saw a leave`, SCENARIO, async () => {
      const { m: _m, after, path, welcomes } = await networkChange(`5a${guest[0]}`, guest, 'the move', async (m) => {
        m.shut.moveAddress(lab.nextIndex++);
        return Date.now();
      });
      assert.ok(path, 'a candidate pair is selected');
      assert.equal(path.local.address, _m.shut.ip, `the media comes from the new address: ${describePath(path)}`);
      assert.ok(after.some((e) => e.what === 'out' && e.type === 'restart-ice'), 'the browser asked for an ICE restart');
      assert.equal(welcomes.length, 1, 'one resume');
    });

    // Every path gone for 10 s (longer than either browser takes to see the
    // media connection 'disconnected'), then back.
    test(`5b. every path cut for 10 s: ${guest} has media both ways again after, and nobody saw a leave`, SCENARIO, async () => {
      const { path } = await networkChange(`5b${guest[0]}`, guest, 'the paths came back', async (m) => {
        m.shut.cut();
        await new Promise((r) => setTimeout(r, 10000));
        m.shut.mend();
        return Date.now();
      });
      assert.ok(path, 'a candidate pair is selected');
      assert.equal(path.local.protocol, 'udp', describePath(path));
    });

    // Only UDP goes (a firewall that starts dropping it, established flows
    // too); the signalling socket lives on. The browser asks for an ICE
    // restart, gets an offer with new credentials on the same socket, and
    // its same peer connection moves to ICE-TCP.
    test(`5c. UDP cut mid-meeting: ${guest} restarts ICE onto ICE-TCP, and nobody saw a leave`, SCENARIO, async () => {
      const { after, path, welcomes } = await networkChange(`5c${guest[0]}`, guest, 'the cut', async (m) => {
        m.shut.cut('meta l4proto udp');
        return Date.now();
      });
      assert.deepEqual(welcomes, [], 'no resume');
      assert.ok(!after.some((e) => e.what === 'pc'), 'the same peer connection');
      const asked = after.findIndex((e) => e.what === 'out' && e.type === 'restart-ice');
      assert.ok(asked >= 0, `the browser asked for an ICE restart: ${JSON.stringify(after)}`);
      const ufrags = after.slice(asked).filter((e) => e.what === 'in' && e.type === 'offer').map((e) => e.ufrag);
      assert.ok(ufrags.length > 0, 'an offer answered it');
      assert.ok(path, 'a candidate pair is selected');
      const why = describePath(path);
      assert.equal(path.local.protocol, 'tcp', why);
      assert.equal(path.remote.address, SERVER_IP, why);
      assert.equal(path.remote.port, ICE_TCP_PORT + 1, why);
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
