// Locked-down networks for the end-to-end tests: Linux network namespaces the
// test makes itself, a real Convene and a real coturn in a "server" namespace,
// real browsers (Chromium through playwright-core, Firefox through
// puppeteer-core over WebDriver BiDi) each in a namespace of its own with
// nftables rules on its way out, and the WebRTC stats that prove which path
// the media took. Used by netns.test.mjs; needs root (ip netns, nft).
//
// The network, per Lab (one per group of scenarios):
//
//   server namespace "cvt<pid>-<tag>-srv"          client namespace "cvt<pid>-<tag>-<name>"
//     lo: 127.0.0.1, 203.0.113.1 (Convene: web,      eth0: 10.77.<i>.2/24
//         media, ICE-TCP), 203.0.113.2 (coturn)       default route via 10.77.<i>.1
//     c<i>: 10.77.<i>.1/24  <------- veth ------->    nftables table inet convene_test
//                                                     /etc/hosts: turn.convene.test; no DNS
//
// Clients have private addresses (10.77.<i>.2), the servers public ones, as
// in real life: 203.0.113.0/24 is TEST-NET-3 (RFC 5737, for documentation,
// never routed), and here it exists only inside the lab. It matters:
// Chromium never pairs with an ICE-TCP candidate on a private address
// (10/8, 172.16/12, 192.168/16) at a port below 1024, so ICE-TCP on 443 at
// 10.77.0.1 is silently not tried (measured: 8444 works, 443 and 80 do not;
// Firefox tries them). A deployment on an intranet address with ICE-TCP on
// 443 has the same limit with Chromium. The TURN server is named
// (turn.convene.test, in the client namespace's own /etc/hosts, which
// `ip netns exec` mounts from /etc/netns/<ns>/hosts): Firefox does no TURN
// over TLS to an IP address.
//
// Nothing is made in the machine's own namespace, so several runs (and the
// addresses here) cannot collide with each other or with the machine's
// network, and nothing else on the machine can reach or be reached from a
// lab. The server namespace routes nothing on: a client reaches only the
// server's addresses, the way a browser behind a firewall reaches only a
// public server. Names carry the test process's id; a lab left behind by a
// killed run is deleted by the next run (`reapStale`).
//
// Certificates: makeCertificate() makes a CA and a leaf with openssl.
// Chromium pins the leaf's key (--ignore-certificate-errors-spki-list: real
// TLS, checked against the pinned key, for the page, the WebSocket and TURN
// over TLS); Firefox gets the CA in its profile's NSS database (certutil).
//
// Adding a scenario (netns.test.mjs has several):
//
//   let lab, convene;
//   before(async () => {
//     lab = await Lab.create('mine');                 // the server namespace
//     const turn = await lab.startCoturn();           // optional: TURN over UDP, TCP, TLS on 443
//     convene = await lab.startConvene({ turn, iceTcp: `${SERVER_IP}:8444` });
//   });
//   after(() => lab?.close());                        // kills everything, deletes every namespace
//   test('…', async () => {
//     // Two people meet: an open Chromium hosts, a guest browser joins from
//     // a namespace with these nftables rules (NO_UDP, DROP_ALL, onlyTcp(…),
//     // or lines of your own for the output chain).
//     const m = await meet(lab, convene, { tag: 'x1', guest: 'firefox', rules: NO_UDP });
//     try {
//       const path = await selectedPath(m.guest.page); // { local: {candidateType, protocol, relayProtocol, …}, remote: {…} }
//       …
//     } finally {
//       await m.end();                                // deletes both client namespaces
//     }
//   });
//
// Lower level: lab.addClient(name) gives a namespace, client.firewall(rules)
// sets its rules, lab.chromium(client, { convene }) / lab.firefox(…) a
// browser in it, createMeeting / joinMeeting drive any of their pages.
// LAB_BROWSER_LOG=/tmp/x makes Chromium log its ICE (which allocation
// phases ran, which pair it selected and why) to /tmp/x-<namespace>.
//
// Scenario 4 (the /check page reports each case): a client namespace with
// the case's rules, its browser on `${convene.url}/check`; `runCheck(person,
// url)` waits for the verdict and reads it, each row's state and the report
// by their ids (#verdict, #result-<row>, #report). Convene with `turn` tries
// the relay row. GET /api/check/ice-servers allows 20 a minute per server:
// one a check.
//
// Scenario 5 (a network change mid-meeting): `client.moveAddress(newIndex)`
// gives the client another address and route, the old one gone, as a change
// of network does (take `lab.nextIndex++`, a link number no client has);
// `client.cut(match)` cuts its paths both ways, established flows too (all
// of them, or only those an nftables expression matches), and
// `client.mend()` restores them. `client.firewall(DROP_ALL)` does not cut a
// meeting: its rules come after "established: accept", so media and the
// signalling socket carry on. Every page keeps a log of what happened
// (`events(page)`: signalling messages each way, sockets, ICE and
// connection states, 'online'/'offline'), to tell an ICE restart (restart-ice
// out, an offer with a new ufrag in, on the same socket and peer connection)
// from a resume (a new socket and peer connection); assert on the others'
// people lists (harness.mjs peopleNames) that nobody left.
//
// Bad networks (issue 15, bad-networks.test.mjs): `await client.shape({ up,
// down })` impairs the client's link each way, `{ rateKbit, queueMs,
// delayMs, jitterMs, lossPct }` per direction; `await client.unshape()`
// lifts it (and says how many packets were delayed and dropped each way);
// `client.shaped()` says what the rate limits sent and dropped. Rates are a
// token bucket (tc tbf) on the sending end of the client's veth; delay and
// loss are impair.py on netfilter queues, since the kernel these tests were
// written on has no netem (`shapingUnsupported()` says what is missing).
// `mediaStats(page)` reads what a page receives and sends per m-line, named
// by the participant and source the latest offer said each carries;
// `lab.chromium(client, { deviceScaleFactor: 2 })` makes tiles big enough
// (in device pixels) to be worth a 720p layer.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as pathJoin } from 'node:path';
import { createServer } from 'node:net';
import { ROOT, until, decodingVideos, receivingAudio } from './harness.mjs';

// ip and nft live in /usr/sbin, which a non-login root shell may lack.
for (const dir of ['/usr/sbin', '/sbin']) {
  if (!(process.env.PATH || '').split(':').includes(dir)) process.env.PATH = `${process.env.PATH}:${dir}`;
}

/** Convene's address in the server namespace. */
export const SERVER_IP = '203.0.113.1';
/** The TURN server's address in the server namespace (another "host"). */
export const TURN_IP = '203.0.113.2';
/** The TURN server's name (RFC 2606 .test), in each client's /etc/hosts. */
export const TURN_NAME = 'turn.convene.test';
/** The secret Convene shares with coturn (REST API credentials). */
const TURN_SECRET = 'convene-netns-test-secret-5b1f0e2d';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/** Delay and loss on NFQUEUEs (client.shape): netem's stand-in. */
const IMPAIR = pathJoin(ROOT, 'tests', 'e2e', 'impair.py');
const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';

// nftables rules for a client's way out (the chain's body; loopback is always
// allowed, and replies to what was allowed).

/** No UDP at all leaves the client (there is no DNS here to allow). */
export const NO_UDP = 'meta l4proto udp counter drop';
/** Nothing leaves but loopback. */
export const DROP_ALL = 'counter drop';
/** Only TCP to `ip`:`port` leaves, for each pair given; everything else is dropped. */
export const onlyTcp = (...to) => [
  ...to.map(([ip, port]) => `ip daddr ${ip} tcp dport ${port} accept`),
  'counter drop',
].join('\n');

/** Why these tests cannot run here, or null when they can. */
export function unsupported() {
  if (process.getuid?.() !== 0) return 'needs root (ip netns, nftables)';
  for (const [cmd, args, pkg] of [['ip', ['-V'], 'iproute2'], ['nft', ['--version'], 'nftables'], ['turnserver', ['--version'], 'coturn'],
    ['openssl', ['version'], 'openssl'], ['certutil', ['-H'], 'libnss3-tools']]) {
    if (spawnSync(cmd, args).error) return `${cmd} is not installed (Debian: ${pkg})`;
  }
  const probe = `cvt${process.pid}-probe`;
  const made = spawnSync('ip', ['netns', 'add', probe]);
  if (made.status !== 0) return `cannot make a network namespace: ${made.stderr}`;
  const nft = spawnSync('ip', ['netns', 'exec', probe, 'nft', 'list', 'ruleset']);
  spawnSync('ip', ['netns', 'del', probe]);
  if (nft.status !== 0) return `nftables does not work in a namespace: ${nft.stderr}`;
  return null;
}

/**
 * Why `client.shape` cannot work here, on top of `unsupported()`, or null:
 * it needs tc with the tbf qdisc, iptables with the NFQUEUE target, and
 * python3 (impair.py).
 */
export function shapingUnsupported() {
  for (const [cmd, args, pkg] of [['tc', ['-V'], 'iproute2'], ['iptables', ['-V'], 'iptables'], ['python3', ['--version'], 'python3']]) {
    if (spawnSync(cmd, args).error) return `${cmd} is not installed (Debian: ${pkg})`;
  }
  const probe = `cvt${process.pid}-shprobe`;
  const made = spawnSync('ip', ['netns', 'add', probe]);
  if (made.status !== 0) return `cannot make a network namespace: ${made.stderr}`;
  try {
    const steps = [
      ['ip', '-n', probe, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1'],
      ['ip', 'netns', 'exec', probe, 'tc', 'qdisc', 'add', 'dev', 'p0', 'root', 'tbf', 'rate', '400kbit', 'burst', '3028', 'latency', '100ms'],
      ['ip', 'netns', 'exec', probe, 'iptables', '-w', '-t', 'mangle', '-A', 'OUTPUT', '-o', 'p0', '-j', 'NFQUEUE', '--queue-num', '0', '--queue-bypass'],
    ];
    for (const [cmd, ...args] of steps) {
      const r = spawnSync(cmd, args, { encoding: 'utf8' });
      if (r.status !== 0) return `${args.slice(3).join(' ')}: ${(r.stderr || '').trim()}`;
    }
    return null;
  } finally {
    spawnSync('ip', ['netns', 'del', probe]);
  }
}

function run(cmd, args, input) {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout;
}
const ipn = (ns, ...args) => run('ip', ['-n', ns, ...args]);

/** Deletes namespaces left by test runs whose process is gone. */
export function reapStale() {
  for (const line of run('ip', ['netns', 'list']).split('\n')) {
    const m = line.match(/^(cvt(\d+)-\S+)/);
    if (!m) continue;
    const pid = Number(m[2]);
    if (pid === process.pid) continue;
    try { process.kill(pid, 0); continue; } catch { /* its run is gone */ }
    killIn(m[1]);
    spawnSync('ip', ['netns', 'del', m[1]]);
    rmSync(`/etc/netns/${m[1]}`, { recursive: true, force: true });
  }
}

/** Kills every process still in namespace `ns` (only ours live there). */
function killIn(ns) {
  const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout || '';
  for (const pid of pids.split(/\s+/).filter(Boolean)) {
    try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
  }
}

/**
 * A test CA and a certificate it signs for `ips` (subject alternative names:
 * IP addresses, or DNS names), made with openssl in `dir`. Returns the PEM paths and the
 * certificate's SPKI hash (base64 SHA-256), which Chromium pins with
 * --ignore-certificate-errors-spki-list.
 */
export function makeCertificate(dir, name, ips) {
  const p = (f) => pathJoin(dir, `${name}-${f}`);
  const ossl = (...args) => run('openssl', args);
  ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=Convene test CA (${name})`, '-keyout', p('ca.key'), '-out', p('ca.pem'),
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-subj', `/CN=${ips[0]}`, '-keyout', p('key.pem'), '-out', p('csr.pem'));
  const san = ips.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  writeFileSync(p('ext.cnf'), `subjectAltName=${san}\n` +
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n');
  ossl('x509', '-req', '-in', p('csr.pem'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial',
    '-days', '2', '-extfile', p('ext.cnf'), '-out', p('leaf.pem'));
  // Leaf first, then the CA, as a server sends its chain.
  writeFileSync(p('cert.pem'), readFileSync(p('leaf.pem'), 'utf8') + readFileSync(p('ca.pem'), 'utf8'));
  const spki = execFileSync('sh', ['-c',
    `openssl x509 -in '${p('leaf.pem')}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`],
  { encoding: 'utf8' }).trim();
  return { cert: p('cert.pem'), key: p('key.pem'), ca: p('ca.pem'), spki };
}

/** Waits until `proc`'s output (stdout and stderr) matches `re`; returns the match. */
function waitForOutput(proc, re, what, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start in time:\n${out}`)), timeoutMs);
    const on = (d) => {
      out += d;
      const m = out.match(re);
      if (m) { clearTimeout(timer); resolve(m); }
    };
    proc.stdout?.on('data', on);
    proc.stderr?.on('data', on);
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${what} exited with ${code}:\n${out}`)); });
  });
}

let labs = 0;
/** Labs not closed yet: deleted at exit even when a run is cut short. */
const openLabs = new Set();
process.once('exit', () => { for (const lab of openLabs) lab.closeSync(); });
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => process.exit(128 + (signal === 'SIGINT' ? 2 : 15)));

export class Lab {
  /** Makes the server namespace. `tag`: a few letters naming the group. */
  static async create(tag) {
    reapStale();
    const lab = new Lab(`cvt${process.pid}-${tag}${labs++}`);
    openLabs.add(lab);
    run('ip', ['netns', 'add', lab.serverNs]);
    ipn(lab.serverNs, 'link', 'set', 'lo', 'up');
    ipn(lab.serverNs, 'addr', 'add', `${SERVER_IP}/32`, 'dev', 'lo');
    ipn(lab.serverNs, 'addr', 'add', `${TURN_IP}/32`, 'dev', 'lo');
    return lab;
  }

  constructor(prefix) {
    this.prefix = prefix;
    this.serverNs = `${prefix}-srv`;
    this.dir = mkdtempSync(pathJoin(tmpdir(), 'convene-netns-'));
    /** @type {Map<string, object>} */
    this.clients = new Map();
    this.procs = [];
    this.browsers = [];
    this.nextIndex = 1;
  }

  /** A client namespace with a veth to the server namespace; no rules yet. */
  async addClient(name) {
    const index = this.nextIndex++;
    const ns = `${this.prefix}-${name}`;
    run('ip', ['netns', 'add', ns]);
    // `ip netns exec` mounts /etc/netns/<ns>/{hosts,resolv.conf} over
    // /etc's: the machine's names (its own name: Firefox looks it up) and
    // the lab's; no DNS server (a query fails at once instead of waiting
    // for one the lab cannot reach: Firefox took 22 s to start so).
    mkdirSync(`/etc/netns/${ns}`, { recursive: true });
    let hosts = '127.0.0.1 localhost\n';
    try { hosts = readFileSync('/etc/hosts', 'utf8'); } catch { /* the default above */ }
    writeFileSync(`/etc/netns/${ns}/hosts`, `${hosts.trimEnd()}\n${TURN_IP} ${TURN_NAME}\n`);
    writeFileSync(`/etc/netns/${ns}/resolv.conf`, 'nameserver 127.0.0.1\n');
    // IPv4 only: an IPv6 link-local address would appear about 2 s after
    // the link comes up (duplicate address detection), and Chromium fails a
    // navigation under way then with ERR_NETWORK_CHANGED (seen in scenario 6).
    run('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    ipn(ns, 'link', 'set', 'lo', 'up');
    ipn(this.serverNs, 'link', 'add', `c${index}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    const client = {
      name, ns, index,
      ip: `10.77.${index}.2`,
      /** The server namespace's end of the client's veth (its egress is the client's downlink). */
      link: `c${index}`,
      /** What `shape` set up: { up, down, impair (the impair.py process) }. */
      shaping: null,
      /**
       * Impairs the client's link, each direction on its own: `up` (from
       * the browser to the server) and `down` (to the browser), each
       * `{ rateKbit, queueMs, delayMs, jitterMs, lossPct }` (any of them;
       * a direction left out, or null, is not impaired). Replaces what an
       * earlier call set up, so a test can tighten or loosen a link as it
       * goes. The rate is a token bucket (`tc qdisc … tbf`) on the egress
       * of the sending end of the veth: `eth0` in the client namespace for
       * the uplink, the server namespace's end (`link`) for the downlink,
       * the client's ingress shaped on its peer's egress. Its queue holds
       * `queueMs` (default 100 ms) at that rate; more is dropped, as a
       * router with that much buffer does. Delay, jitter (never reordering)
       * and random loss come from impair.py on an NFQUEUE in the client
       * namespace (iptables' mangle table: OUTPUT to eth0 for the uplink,
       * PREROUTING from eth0 for the downlink): this kernel has no netem.
       * So loss and delay happen on the browser's side of the rate limit
       * going up and after it coming down.
       */
      shape: async ({ up = null, down = null } = {}) => {
        await client.unshape();
        const tbf = (where, dev, dir) => {
          if (!dir?.rateKbit) return;
          const bytesPerSec = dir.rateKbit * 125;
          // A burst of at least two full packets, or 10 ms at the rate.
          const burst = Math.max(3028, Math.round(bytesPerSec / 100));
          run('ip', ['netns', 'exec', where, 'tc', 'qdisc', 'replace', 'dev', dev, 'root', 'tbf',
            'rate', `${dir.rateKbit}kbit`, 'burst', String(burst), 'latency', `${dir.queueMs ?? 100}ms`]);
        };
        tbf(ns, 'eth0', up);
        tbf(this.serverNs, client.link, down);
        const impaired = (dir) => dir && (dir.delayMs || dir.jitterMs || dir.lossPct);
        let impair = null;
        if (impaired(up) || impaired(down)) {
          const q = (n, dir) => `${n}:${dir?.delayMs || 0}:${dir?.jitterMs || 0}:${dir?.lossPct || 0}`;
          impair = this.spawnIn(ns, 'python3', [IMPAIR, q(0, up), q(1, down)]);
          await waitForOutput(impair, /^ready$/m, 'impair.py');
          const ipt = (...args) => run('ip', ['netns', 'exec', ns, 'iptables', '-w', '-t', 'mangle', ...args]);
          if (impaired(up)) ipt('-A', 'OUTPUT', '-o', 'eth0', '-j', 'NFQUEUE', '--queue-num', '0', '--queue-bypass');
          if (impaired(down)) ipt('-A', 'PREROUTING', '-i', 'eth0', '-j', 'NFQUEUE', '--queue-num', '1', '--queue-bypass');
        }
        client.shaping = { up, down, impair };
      },
      /**
       * Lifts what `shape` set up: packets held for delay are let go, not
       * dropped. Returns how many packets impair.py saw and dropped each way
       * (`{ up: {packets, dropped}, down: … }`, null without it).
       */
      unshape: async () => {
        const was = client.shaping;
        client.shaping = null;
        spawnSync('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'del', 'dev', 'eth0', 'root']);
        spawnSync('ip', ['netns', 'exec', this.serverNs, 'tc', 'qdisc', 'del', 'dev', client.link, 'root']);
        if (!was?.impair) return null;
        spawnSync('ip', ['netns', 'exec', ns, 'iptables', '-w', '-t', 'mangle', '-F']);
        const proc = was.impair;
        if (proc.exitCode === null) {
          const exited = new Promise((r) => proc.once('exit', r));
          proc.kill('SIGTERM');
          await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        }
        const counts = (n) => {
          const m = proc.log().match(new RegExp(`queue ${n}: (\\d+) packets, (\\d+) dropped`));
          return m ? { packets: Number(m[1]), dropped: Number(m[2]) } : null;
        };
        return { up: counts(0), down: counts(1) };
      },
      /**
       * What the rate limits did so far: per direction, bytes and packets
       * sent through the token bucket and packets it dropped (`tc -s`),
       * null where there is none.
       */
      shaped: () => {
        const stats = (where, dev) => {
          const out = spawnSync('ip', ['netns', 'exec', where, 'tc', '-s', 'qdisc', 'show', 'dev', dev], { encoding: 'utf8' }).stdout || '';
          const m = out.match(/qdisc tbf[\s\S]*?Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)/);
          return m ? { bytes: Number(m[1]), packets: Number(m[2]), dropped: Number(m[3]), overlimits: Number(m[4]) } : null;
        };
        return { up: stats(ns, 'eth0'), down: stats(this.serverNs, client.link) };
      },
      /** Replaces the client's outgoing rules (null: none, everything allowed). */
      firewall: (rules) => {
        spawnSync('ip', ['netns', 'exec', ns, 'nft', 'delete', 'table', 'inet', 'convene_test']);
        if (rules == null) return;
        run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], [
          'table inet convene_test {',
          '  chain out {',
          '    type filter hook output priority 0; policy accept;',
          '    oif "lo" accept',
          '    ct state established,related accept',
          ...rules.split('\n').map((r) => `    ${r}`),
          '  }',
          '}',
        ].join('\n'));
      },
      /**
       * Cuts every path in and out but loopback, established flows too, as a
       * network going dark does, until `mend()`; with `match` (an nftables
       * expression such as 'meta l4proto udp'), only the packets it matches.
       * (`firewall` rules come after "established: accept", so
       * `firewall(DROP_ALL)` stops only new flows: media and the signalling
       * socket go on through it.) Independent of the `firewall` rules.
       */
      cut: (match = '') => {
        run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], [
          'table inet convene_cut {',
          `  chain out { type filter hook output priority -10; policy accept; oif "lo" accept; ${match} counter drop; }`,
          `  chain in { type filter hook input priority -10; policy accept; iif "lo" accept; ${match} counter drop; }`,
          '}',
        ].join('\n'));
      },
      /** Undoes `cut()`. */
      mend: () => {
        spawnSync('ip', ['netns', 'exec', ns, 'nft', 'delete', 'table', 'inet', 'convene_cut']);
      },
      /** Packets the rules dropped so far (the `counter drop` rules). */
      dropped: () => {
        const out = spawnSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'inet', 'convene_test'], { encoding: 'utf8' }).stdout || '';
        return [...out.matchAll(/counter packets (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
      },
      /** Gives the client the address of link `newIndex` instead (as a change of network does). */
      moveAddress: (newIndex) => {
        const peer = client.link;
        ipn(ns, 'addr', 'flush', 'dev', 'eth0');
        ipn(this.serverNs, 'addr', 'flush', 'dev', peer);
        client.index = newIndex;
        client.ip = `10.77.${newIndex}.2`;
        ipn(this.serverNs, 'addr', 'add', `10.77.${newIndex}.1/24`, 'dev', peer);
        ipn(ns, 'addr', 'add', `${client.ip}/24`, 'dev', 'eth0');
        ipn(ns, 'route', 'add', 'default', 'via', `10.77.${newIndex}.1`);
      },
    };
    ipn(this.serverNs, 'addr', 'add', `10.77.${index}.1/24`, 'dev', `c${index}`);
    ipn(ns, 'addr', 'add', `${client.ip}/24`, 'dev', 'eth0');
    ipn(this.serverNs, 'link', 'set', `c${index}`, 'up');
    ipn(ns, 'link', 'set', 'eth0', 'up');
    ipn(ns, 'route', 'add', 'default', 'via', `10.77.${index}.1`);
    this.clients.set(ns, client);
    // The link's carrier comes up a moment later (0.7 s measured): a browser
    // started before would see that as a network change.
    for (const end = Date.now() + 5000; !/state UP/.test(ipn(ns, '-o', 'link', 'show', 'eth0'));) {
      if (Date.now() > end) throw new Error(`${ns}: its link did not come up`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return client;
  }

  /** Closes the client's browsers, kills what is left in it, deletes it. */
  async removeClient(client) {
    for (const b of this.browsers.filter((x) => x.ns === client.ns)) await b.close();
    this.browsers = this.browsers.filter((x) => x.ns !== client.ns);
    killIn(client.ns);
    spawnSync('ip', ['netns', 'del', client.ns]);
    rmSync(`/etc/netns/${client.ns}`, { recursive: true, force: true });
    this.clients.delete(client.ns);
  }

  /** Starts a process in namespace `ns`, killed by close(). */
  spawnIn(ns, cmd, args, opts = {}) {
    const proc = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let log = '';
    proc.stdout?.on('data', (d) => { log += d; });
    proc.stderr?.on('data', (d) => { log += d; });
    proc.log = () => log;
    this.procs.push(proc);
    return proc;
  }

  /**
   * coturn on TURN_IP (TURN_NAME to clients): UDP and TCP on 3478, TLS on
   * 443 (its own test certificate), REST API credentials from the secret
   * Convene has.
   */
  async startCoturn() {
    const tls = makeCertificate(this.dir, 'turn', [TURN_NAME, TURN_IP]);
    const proc = this.spawnIn(this.serverNs, 'turnserver', [
      '-n', `--listening-ip=${TURN_IP}`, `--relay-ip=${TURN_IP}`, '--listening-port=3478', '--tls-listening-port=443',
      `--cert=${tls.cert}`, `--pkey=${tls.key}`, '--no-dtls', '--no-cli',
      '--use-auth-secret', `--static-auth-secret=${TURN_SECRET}`, '--realm=convene.test',
      '--min-port=49152', '--max-port=49999', '--relay-threads=1',
      '--log-file=stdout', '--simple-log', `--pidfile=${pathJoin(this.dir, 'turnserver.pid')}`, `--db=${pathJoin(this.dir, 'turndb')}`,
    ]);
    await waitForOutput(proc, /Total General servers/, 'coturn');
    return {
      proc, spki: tls.spki, ca: tls.ca, log: proc.log,
      // By name: Firefox does no TURN over TLS to an IP address (measured:
      // with `turns:203.0.113.2:443` it gathers no relay candidate at all).
      urls: [`turn:${TURN_NAME}:3478?transport=udp`, `turn:${TURN_NAME}:3478?transport=tcp`, `turns:${TURN_NAME}:443?transport=tcp`],
    };
  }

  /**
   * target/release/convene in the server namespace on SERVER_IP:`port`, media
   * on UDP `mediaPort`, ICE-TCP per `iceTcp` ('web', 'off' or an address);
   * with `turn` (from startCoturn) a deployment file hands out its URLs; with
   * `tls`, https and wss with a test certificate (`convene.spki` to pin,
   * `convene.ca` to trust).
   */
  async startConvene({ port = 8080, mediaPort = 40000, iceTcp = 'web', turn = null, tls = false, publicUrl = null, log = 'warn', extraArgs = [] } = {}) {
    const bin = process.env.CONVENE_BIN || pathJoin(ROOT, 'target', 'release', 'convene');
    const dir = mkdtempSync(pathJoin(this.dir, 'convene-'));
    const args = [
      '--listen', `${SERVER_IP}:${port}`, '--data-dir', pathJoin(dir, 'data'), '--log', log,
      '--media-listen', `${SERVER_IP}:${mediaPort}`, '--media-workers', '1', '--ice-tcp-listen', iceTcp,
    ];
    if (publicUrl) args.push('--public-url', publicUrl);
    let spki = null;
    let ca = null;
    if (tls) {
      const c = makeCertificate(dir, 'convene', [SERVER_IP]);
      args.push('--tls-cert', c.cert, '--tls-key', c.key);
      ({ spki, ca } = c);
    }
    if (turn) {
      writeFileSync(pathJoin(dir, 'turn.secret'), TURN_SECRET, { mode: 0o600 });
      writeFileSync(pathJoin(dir, 'convene.toml'), [
        '[home]', 'name = "Network test"', '',
        '[turn]', `urls = [${turn.urls.map((u) => JSON.stringify(u)).join(', ')}]`, 'secret_file = "turn.secret"', '',
      ].join('\n'));
      args.push('--config', pathJoin(dir, 'convene.toml'));
    }
    const proc = this.spawnIn(this.serverNs, bin, [...args, ...extraArgs]);
    const [, url] = await waitForOutput(proc, /Convene is running at (\S+?)\/?\n/, 'Convene');
    return { url, proc, spki, ca, log: proc.log, turn, port };
  }

  /** An executable that runs `bin` with its arguments inside namespace `ns`. */
  wrapper(ns, bin) {
    const path = pathJoin(this.dir, `${ns}-${bin.split('/').pop()}`);
    const log = process.env.LAB_BROWSER_LOG ? ` 2>>'${process.env.LAB_BROWSER_LOG}-${ns}'` : '';
    writeFileSync(path, `#!/bin/sh\nexec ip netns exec '${ns}' '${bin}' "$@"${log}\n`);
    chmodSync(path, 0o755);
    return path;
  }

  /**
   * Real headless Chromium in `client`'s namespace, for a page of `convene`:
   * plain http on SERVER_IP is treated as a secure origin (camera and
   * microphone), https certificates of the lab are pinned by their keys.
   * `viewport` and `deviceScaleFactor` size the page (tiles grow with
   * both: a page's tiles are measured in device pixels); `cameraFps` sets
   * the fake camera's frame rate (Chromium's default is 20). Returns a person:
   * { kind, page, close }.
   */
  async chromium(client, { convene, pins = [], viewport = { width: 1280, height: 800 }, deviceScaleFactor = 1, cameraFps = null } = {}) {
    const { chromium } = await import('playwright-core');
    const spkis = [convene?.spki, convene?.turn?.spki, ...pins].filter(Boolean);
    const args = [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-ui-for-media-stream', cameraFps ? `--use-fake-device-for-media-stream=fps=${cameraFps}` : '--use-fake-device-for-media-stream',
      '--autoplay-policy=no-user-gesture-required',
      '--disable-features=WebRtcHideLocalIpsWithMdns',
      `--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE ${SERVER_IP} , EXCLUDE ${TURN_IP} , EXCLUDE ${TURN_NAME}`,
    ];
    if (process.env.LAB_BROWSER_LOG) args.push('--enable-logging=stderr', '--vmodule=*/p2p/*=1,*/webrtc/*=1,p2p_transport_channel=1,basic_port_allocator=1,tcp_port=1,port=1,connection=1');
    if (convene && convene.url.startsWith('http:')) args.push(`--unsafely-treat-insecure-origin-as-secure=${convene.url}`);
    if (spkis.length) args.push(`--ignore-certificate-errors-spki-list=${spkis.join(',')}`);
    const browser = await chromium.launch({ executablePath: this.wrapper(client.ns, CHROMIUM), headless: true, args, timeout: 30000 });
    const context = await browser.newContext({ viewport, deviceScaleFactor });
    await context.addInitScript(INIT_SCRIPT);
    const page = await context.newPage();
    page.on('pageerror', (e) => console.error(`[${client.name} chromium] page error:`, e.message));
    const person = { kind: 'chromium', ns: client.ns, page, browser, close: () => browser.close().catch(() => {}) };
    this.browsers.push(person);
    return person;
  }

  /**
   * Real headless Firefox ESR in `client`'s namespace, driven by
   * puppeteer-core over WebDriver BiDi. Firefox's remote agent listens on
   * the namespace's own loopback, which this process cannot reach: a small
   * forwarder on this side's loopback carries the one WebSocket across
   * (each connection is piped through `ip netns exec … node`). The test CAs
   * of `convene` and its TURN server are trusted in the profile's own NSS
   * database (certutil, Debian's libnss3-tools): Firefox has no flag to pin
   * a key as Chromium does. `viewport` and `deviceScaleFactor` size the page
   * (as Puppeteer leaves it unless given).
   */
  async firefox(client, { convene, viewport = null, deviceScaleFactor = 1 } = {}) {
    const puppeteer = (await import('puppeteer-core')).default;
    const cas = [convene?.ca, convene?.turn?.ca].filter(Boolean);
    const profile = mkdtempSync(pathJoin(this.dir, 'firefox-profile-'));
    if (cas.length) {
      run('certutil', ['-N', '-d', `sql:${profile}`, '--empty-password']);
      cas.forEach((ca, i) => run('certutil', ['-A', '-d', `sql:${profile}`, '-n', `Convene test CA ${i}`, '-t', 'C,,', '-i', ca]));
    }
    const port = await freePort();
    const forwarder = createServer((sock) => {
      const pipe = spawn('ip', ['netns', 'exec', client.ns, process.execPath, '-e', NS_PIPE, String(port)], { stdio: ['pipe', 'pipe', 'ignore'] });
      sock.pipe(pipe.stdin);
      pipe.stdout.pipe(sock);
      const end = () => { sock.destroy(); pipe.kill(); };
      sock.on('close', end); sock.on('error', end); pipe.on('exit', end);
    });
    await new Promise((r) => forwarder.listen(port, '127.0.0.1', r));
    const host = convene ? new URL(convene.url).hostname : SERVER_IP;
    let browser;
    try {
      browser = await puppeteer.launch({
        browser: 'firefox',
        protocol: 'webDriverBiDi',
        executablePath: this.wrapper(client.ns, FIREFOX),
        headless: true,
        userDataDir: profile,
        args: [`--remote-debugging-port=${port}`],
        timeout: 30000,
        extraPrefsFirefox: {
          'media.navigator.streams.fake': true,
          'media.navigator.permission.disabled': true,
          'permissions.default.camera': 1,
          'permissions.default.microphone': 1,
          'media.autoplay.default': 0,
          // Plain http on the lab's address counts as a secure origin (as
          // Chromium's --unsafely-treat-insecure-origin-as-secure).
          'dom.securecontext.allowlist': host,
          // Real addresses in host candidates, not mDNS names.
          'media.peerconnection.ice.obfuscate_host_addresses': false,
          'media.peerconnection.ice.tcp': true,
          'network.proxy.type': 0,
        },
      });
    } catch (e) {
      forwarder.close();
      throw e;
    }
    const close = async () => {
      await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
      forwarder.close();
    };
    let page;
    try {
      page = (await browser.pages())[0] || (await browser.newPage());
      // Puppeteer's default viewport does not reach the page Firefox opened itself.
      // (Puppeteer then sets the screen orientation too, which Firefox ESR's
      // WebDriver BiDi lacks: the viewport is set by then, so that is no failure.)
      if (viewport) {
        await page.setViewport({ ...viewport, deviceScaleFactor }).catch((e) => {
          if (!/setScreenOrientationOverride/.test(String(e?.message))) throw e;
        });
      }
      await page.evaluateOnNewDocument(INIT_SCRIPT);
    } catch (e) {
      // Not left running: an open forwarder keeps the test file's process alive for good.
      await close();
      throw e;
    }
    page.on('pageerror', (e) => console.error(`[${client.name} firefox] page error:`, e.message));
    const person = { kind: 'firefox', ns: client.ns, page, browser, close };
    this.browsers.push(person);
    return person;
  }

  /** Closes browsers, kills processes, deletes every namespace and file of the lab. */
  async close() {
    for (const b of this.browsers) await b.close();
    this.browsers = [];
    this.closeSync();
  }

  /** Kills whatever is left (browsers included) and deletes it all, at once. */
  closeSync() {
    for (const p of this.procs) if (p.exitCode === null) p.kill('SIGKILL');
    for (const ns of [...this.clients.keys(), this.serverNs]) {
      killIn(ns);
      spawnSync('ip', ['netns', 'del', ns]);
      rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
    }
    this.clients.clear();
    rmSync(this.dir, { recursive: true, force: true });
    openLabs.delete(this);
  }
}

/** In a namespace: pipe stdin/stdout to TCP 127.0.0.1:<argv[1]> there. */
const NS_PIPE = `const s = require('net').connect(Number(process.argv[1]), '127.0.0.1');
process.stdin.pipe(s); s.pipe(process.stdout);
s.on('error', () => process.exit(1)); s.on('close', () => process.exit(0));`;

async function freePort() {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {any} */ (srv.address());
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Runs in every page before its own scripts: keeps every RTCPeerConnection
 * (to read its stats) and WebSocket, the TURN servers the server handed out
 * (`__iceServers`), and notes when the first remote video
 * frame was decoded, in ms since navigation began (`__firstFrameMs`, from
 * getStats every 50 ms).
 */
const INIT_SCRIPT = `(() => {
  const Orig = window.RTCPeerConnection;
  window.__pcs = [];
  // What happened, in order ({t: ms since navigation, what, …}): signalling
  // messages each way, sockets opening and closing, ICE and connection
  // states; the last 500.
  window.__events = [];
  const note = (what, more) => {
    window.__events.push({ t: Math.round(performance.now()), what, ...more });
    if (window.__events.length > 500) window.__events.shift();
  };
  window.addEventListener('online', () => note('online'));
  window.addEventListener('offline', () => note('offline'));
  window.RTCPeerConnection = class extends Orig {
    constructor(...args) {
      super(...args);
      const pc = window.__pcs.push(this) - 1;
      note('pc', { pc });
      this.addEventListener('iceconnectionstatechange', () => note('ice', { pc, state: this.iceConnectionState }));
      this.addEventListener('connectionstatechange', () => note('connection', { pc, state: this.connectionState }));
    }
  };
  const OrigWs = window.WebSocket;
  window.__sockets = [];
  window.__iceServers = null;
  window.__me = null;
  window.__slots = [];
  window.WebSocket = class extends OrigWs {
    constructor(...args) {
      super(...args);
      const ws = window.__sockets.push(this) - 1;
      this.addEventListener('open', () => note('open', { ws }));
      this.addEventListener('close', (e) => note('close', { ws, code: e.code }));
      this.addEventListener('message', (e) => {
        try {
          const m = JSON.parse(e.data);
          // The TURN servers the server handed out (welcome, ice-servers).
          if ((m.type === 'welcome' || m.type === 'ice-servers') && Array.isArray(m.iceServers)) window.__iceServers = m.iceServers;
          // Who this page is, and what each m-line of the latest offer carries.
          if (m.type === 'welcome') window.__me = m.participantId;
          if (m.type === 'offer' && Array.isArray(m.tracks)) window.__slots = m.tracks;
          if (m.type === 'pong') return;
          note('in', { ws, type: m.type, ufrag: typeof m.sdp === 'string' ? (m.sdp.match(/a=ice-ufrag:(\\S+)/) || [])[1] : undefined,
            participant: m.participantId ?? m.participant?.id, active: m.type === 'video-layers' ? m.active : undefined });
        } catch { /* not ours to judge */ }
      });
    }
    send(data) {
      try {
        const m = JSON.parse(data);
        if (m.type !== 'ping') note('out', { ws: window.__sockets.indexOf(this), type: m.type, sizes: m.type === 'video-sizes' ? m.sizes : undefined });
      } catch { /* not ours to judge */ }
      super.send(data);
    }
  };
  window.__firstFrameMs = null;
  const timer = setInterval(async () => {
    for (const pc of window.__pcs) {
      if (pc.connectionState === 'closed') continue;
      const stats = await pc.getStats();
      let decoded = false;
      stats.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) decoded = true; });
      if (decoded && window.__firstFrameMs === null) {
        window.__firstFrameMs = Math.round(performance.now());
        clearInterval(timer);
      }
    }
  }, 50);
})();`;

// Steps in a page that work alike with playwright's and puppeteer's pages
// (only goto and evaluate).

/** Creates a meeting through the API from `person`'s page; returns its links. */
export async function createMeeting(person, serverUrl, title) {
  await person.page.goto(serverUrl);
  return person.page.evaluate(async (t) => {
    const res = await fetch('/api/meetings', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: t }),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(`create: ${res.status} ${JSON.stringify(body)}`);
    return { joinUrl: body.joinUrl, hostUrl: body.hostUrl };
  }, title);
}

/**
 * Opens `link`, waits for the camera preview, gives `name`, clicks Join,
 * waits for the meeting view. Returns the time of navigation (Date.now()).
 */
export async function joinMeeting(person, link, name) {
  const { page } = person;
  const started = Date.now();
  await page.goto(link);
  await until(`${name}'s camera preview`, () => page.evaluate(() => {
    const v = /** @type {HTMLVideoElement|null} */ (document.getElementById('preview'));
    return !!v && v.videoWidth > 0 && !!document.getElementById('name');
  }), 20000);
  await page.evaluate((n) => {
    const input = /** @type {HTMLInputElement} */ (document.getElementById('name'));
    input.value = n;
    input.dispatchEvent(new Event('input', { bubbles: true }));
    /** @type {HTMLButtonElement} */ (document.getElementById('join')).click();
  }, name);
  await until(`${name} in the meeting`, () => page.evaluate(() => {
    const m = document.getElementById('meeting');
    return !!m && !m.hidden;
  }), 20000);
  return started;
}

/**
 * What happened in the page, oldest first (the last 500): `{t, what, …}`, `t`
 * in ms of the page's clock (performance.now()); `what` is 'in' or 'out' (a
 * signalling message: `type`, `ws` the socket's number, `ufrag` of an
 * offer's ICE credentials, `participant`; `active` of a video-layers
 * message in, `sizes` of a video-sizes message out), 'open' or 'close' (a socket),
 * 'pc' (a new peer connection), 'ice' or 'connection' (`state` of
 * peer connection `pc`), 'online' or 'offline'.
 */
export const events = (page) => page.evaluate(() => /** @type {any} */ (window).__events);

/** The page's clock now (ms), to read `events` from a moment on. */
export const pageClock = (page) => page.evaluate(() => performance.now());

/**
 * Runs the connectivity check page of `url` in `person`'s browser and reads
 * it when it has finished: the verdict, each row's state (`pass`, `fail`,
 * `not-offered`, `not-configured`, …, from #result-<row>'s class) and words,
 * the plain-text report, and how long it took.
 */
export async function runCheck(person, url, timeoutMs = 25000) {
  const { page } = person;
  const started = Date.now();
  await page.goto(`${url}/check`);
  await until('the check page\'s verdict', () => page.evaluate(() => {
    const section = document.getElementById('verdict-section');
    return !!section && !section.hidden && /^Check finished/.test(document.getElementById('progress')?.textContent || '');
  }), timeoutMs);
  const tookMs = Date.now() - started;
  return {
    tookMs,
    ...(await page.evaluate(() => {
      /** @type {Record<string, {state: string, text: string}>} */
      const rows = {};
      for (const li of document.querySelectorAll('#results li[id^="result-"]')) {
        rows[li.id.slice('result-'.length)] = {
          state: [...li.classList].find((c) => c !== 'result') || '',
          text: (li.textContent || '').replace(/^[^A-Za-z]+/, ''),
        };
      }
      return {
        verdict: document.getElementById('verdict')?.textContent || '',
        rows,
        report: /** @type {HTMLTextAreaElement} */ (document.getElementById('report')).value,
      };
    })),
  };
}

/**
 * What the page's live peer connection receives and sends, per m-line (read
 * through each transceiver's receiver and sender, so Chromium and Firefox
 * alike), with what the latest offer says each carries:
 *   inbound:  { mid, kind, participantId, source, voice, frameWidth,
 *               frameHeight, framesDecoded, framesReceived, keyFramesDecoded,
 *               pliCount, nackCount, framesPerSecond, bytesReceived,
 *               packetsReceived, packetsLost, jitter, freezeCount,
 *               totalFreezesDuration, concealedSamples, silentConcealedSamples,
 *               totalSamplesReceived }
 *   outbound: { mid, kind, source, rid, active, frameWidth, frameHeight,
 *               framesEncoded, bytesSent, targetBitrate, qualityLimitationReason,
 *               trackHeight (of the track sent, as captured) }
 *               retransmittedBytesSent, nackCount (received) }
 *   outgoingKbps: the browser's own estimate of its uplink (Chromium's
 *             availableOutgoingBitrate), kbit/s
 *   rttMs:    the selected candidate pair's current round trip (Chromium),
 *             else the largest remote-inbound-rtp roundTripTime, in ms
 *   at:       the page's clock (ms); me: its participant id.
 * Fields a browser lacks are undefined. Null without a live connection.
 */
export async function mediaStats(page) {
  return page.evaluate(async () => {
    const w = /** @type {any} */ (window);
    const pc = w.__pcs.filter((p) => p.connectionState !== 'closed').at(-1);
    if (!pc) return null;
    const slots = new Map((w.__slots || []).map((s) => [s.mid, s]));
    const out = { at: performance.now(), me: w.__me, inbound: [], outbound: [], rttMs: null, outgoingKbps: null };
    const pick = (s, keys) => Object.fromEntries(keys.map((k) => [k, s[k]]));
    let remoteRtt = null;
    for (const tr of pc.getTransceivers()) {
      if (!tr.mid || tr.stopped) continue;
      const slot = slots.get(tr.mid) || {};
      const dir = tr.currentDirection || '';
      if (dir.includes('recv')) {
        (await tr.receiver.getStats()).forEach((s) => {
          if (s.type !== 'inbound-rtp') return;
          out.inbound.push({
            mid: tr.mid, participantId: slot.participantId, source: slot.source, voice: !!slot.voice,
            ...pick(s, ['kind', 'frameWidth', 'frameHeight', 'framesDecoded', 'framesReceived', 'keyFramesDecoded', 'pliCount',
              'nackCount', 'framesPerSecond', 'bytesReceived',
              'packetsReceived', 'packetsLost', 'jitter', 'freezeCount', 'totalFreezesDuration', 'concealedSamples',
              'silentConcealedSamples', 'totalSamplesReceived']),
          });
        });
      }
      if (dir.includes('send')) {
        (await tr.sender.getStats()).forEach((s) => {
          if (s.type === 'remote-inbound-rtp' && s.roundTripTime != null) remoteRtt = Math.max(remoteRtt ?? 0, s.roundTripTime * 1000);
          if (s.type !== 'outbound-rtp') return;
          out.outbound.push({
            mid: tr.mid, source: slot.source, trackHeight: tr.sender.track?.getSettings().height,
            ...pick(s, ['kind', 'rid', 'active', 'frameWidth', 'frameHeight', 'framesEncoded', 'bytesSent', 'targetBitrate',
              'qualityLimitationReason', 'retransmittedBytesSent', 'nackCount']),
          });
        });
      }
    }
    const all = await pc.getStats();
    all.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = all.get(s.selectedCandidatePairId);
        if (pair?.currentRoundTripTime != null) out.rttMs = pair.currentRoundTripTime * 1000;
        if (pair?.availableOutgoingBitrate != null) out.outgoingKbps = Math.round(pair.availableOutgoingBitrate / 1000);
      }
    });
    if (out.rttMs == null) out.rttMs = remoteRtt;
    return out;
  });
}

/** Ms from navigation to the first decoded remote video frame, once there is one. */
export const firstFrameMs = (person) => person.page.evaluate(() => /** @type {any} */ (window).__firstFrameMs);

/**
 * The selected ICE candidate pair of the page's live peer connection: the
 * transport's selectedCandidatePairId (Chromium), or the pair marked
 * `selected` (Firefox, which has no transport stats). Null before one is
 * selected.
 */
export async function selectedPath(page) {
  return page.evaluate(async () => {
    const pcs = /** @type {any} */ (window).__pcs.filter((pc) => pc.connectionState !== 'closed');
    for (const pc of pcs) {
      const stats = await pc.getStats();
      let pair = null;
      stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId); });
      if (!pair) stats.forEach((s) => { if (s.type === 'candidate-pair' && s.selected) pair = s; });
      if (!pair || pair.state !== 'succeeded') continue;
      const cand = (c) => c && ({
        candidateType: c.candidateType, protocol: c.protocol, relayProtocol: c.relayProtocol,
        address: c.address ?? c.ip, port: c.port, tcpType: c.tcpType,
      });
      return {
        local: cand(stats.get(pair.localCandidateId)),
        remote: cand(stats.get(pair.remoteCandidateId)),
        connectionState: pc.connectionState,
      };
    }
    return null;
  });
}

/**
 * What the page was offered: the server's candidates in the remote
 * description ("tcp 203.0.113.1:8444"), the TURN URLs the server handed out,
 * and those the peer connection was given.
 */
export async function offered(page) {
  return page.evaluate(() => {
    const w = /** @type {any} */ (window);
    const pc = w.__pcs.find((p) => p.connectionState !== 'closed');
    const sdp = pc?.remoteDescription?.sdp || '';
    const candidates = [...new Set(sdp.split(/\r?\n/).filter((l) => l.startsWith('a=candidate:')).map((l) => {
      const f = l.split(' ');
      return `${f[2].toLowerCase()} ${f[4]}:${f[5]}`;
    }))];
    const urls = (servers) => (servers || []).flatMap((s) => [].concat(s.urls));
    return { candidates, handedOut: urls(w.__iceServers), configured: urls(pc?.getConfiguration().iceServers) };
  });
}

/** "tcp host → host 10.77.0.1:8444": a path in words, for messages. */
export const describePath = (p) => p
  ? `${p.local.protocol} ${p.local.candidateType}${p.local.relayProtocol ? ` (relay over ${p.local.relayProtocol})` : ''}` +
    ` → ${p.remote.candidateType} ${p.remote.protocol} ${p.remote.address}:${p.remote.port}`
  : 'no selected pair';

/**
 * Two people meet through `convene`: "open" (Chromium, no rules) creates the
 * meeting and joins as host, then "shut" (a `guest` browser, 'chromium' or
 * 'firefox', in a namespace with `rules`) joins from the link. Waits until
 * each decodes the other's video and receives the other's audio. Returns
 * both people, their clients and the guest's join-to-first-frame; `end()`
 * removes both namespaces (also done by lab.close()).
 */
export async function meet(lab, convene, { tag, guest = 'chromium', rules = null, timeoutMs = 25000 }) {
  const open = await lab.addClient(`${tag}o`);
  const shut = await lab.addClient(`${tag}s`);
  const end = async () => { await lab.removeClient(open); await lab.removeClient(shut); };
  try {
    shut.firewall(rules);
    const host = await lab.chromium(open, { convene });
    const other = guest === 'firefox' ? await lab.firefox(shut, { convene }) : await lab.chromium(shut, { convene });
    const { hostUrl, joinUrl } = await createMeeting(host, convene.url, `Network test ${tag}`);
    await joinMeeting(host, hostUrl, 'Open network');
    await joinMeeting(other, joinUrl, 'Locked-down network');
    for (const [who, p] of [['the locked-down person', other], ['the open person', host]]) {
      await until(`${who} decoding the other's video`, async () => (await decodingVideos(p.page)) >= 1, timeoutMs);
      await until(`${who} receiving the other's audio`, async () => (await receivingAudio(p.page)) >= 1, timeoutMs);
    }
    return { host, guest: other, open, shut, joinToFirstFrameMs: await firstFrameMs(other), end };
  } catch (e) {
    // Say what the guest's ICE saw, then clean up.
    const guestPage = lab.browsers.find((b) => b.ns === shut.ns)?.page;
    const path = guestPage ? await selectedPath(guestPage).catch(() => null) : null;
    const dropped = shut.dropped();
    await end();
    e.message += ` (locked-down path: ${describePath(path)}; dropped by its rules: ${dropped} packets)` +
      `\nConvene's log, last lines:\n${convene.log().split('\n').slice(-15).join('\n')}`;
    throw e;
  }
}
