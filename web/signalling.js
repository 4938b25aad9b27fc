// The signalling socket: join, resume after a drop, keepalive. See docs/protocol.md.

import { e2eeCapable } from './e2ee-support.js';

const PROTOCOL = 1;
const PING_EVERY_MS = 5000;
const PONG_TIMEOUT_MS = 10000;
/** After a sign that the network changed, a ping unanswered this long means the socket's path is gone. */
const CHECK_MS = 3000;
/** A lookup's answer when the node cannot reach the meeting just now (503). */
const UNAVAILABLE = Object.freeze({ unavailable: true });
/** In a cluster, how long without our node before we look for another (a lost node's meetings move after 3 s). */
const NODE_LOST_MS = 4000;

export class Signalling extends EventTarget {
  /** @param {string} meetingId @param {string} name @param {{passcode?: string, hostKey?: string}} credentials */
  constructor(meetingId, name, credentials = {}) {
    super();
    this.meetingId = meetingId;
    this.name = name;
    this.credentials = credentials;
    this.welcomed = false;
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {string | null} */
    this.resumeToken = sessionStorage.getItem(`convene-resume-${meetingId}`);
    this.closedByUs = false;
    this.attempt = 0;
    /** In a cluster: the nodes we may resume on if ours is lost (from the meeting's lookup). @type {string[]} */
    this.nodes = [];
    /** Whether our node last answered that it cannot reach the meeting just now (503). */
    this.unavailable = false;
    /** When the socket was lost (0: it is not). */
    this.lostAt = 0;
    this.lastPong = 0;
    /** @type {number | undefined} */
    this.pingTimer = undefined;
    /** @type {number | undefined} */
    this.checkTimer = undefined;
    // A new network (the browser went offline and online again): the
    // socket may be tied to an address that is gone.
    this.onOnline = () => this.check();
    window.addEventListener('online', this.onOnline);
  }

  connect() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/api/meetings/${this.meetingId}/ws`);
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (this.ws !== ws) { ws.close(); return; } // given up on while it was opening
      this.send(this.joinMessage());
      this.lastPong = Date.now();
      clearInterval(this.pingTimer);
      this.pingTimer = window.setInterval(() => this.keepalive(), PING_EVERY_MS);
    });
    ws.addEventListener('message', (e) => {
      if (this.ws !== ws) return; // a socket given up on (reconnect) says nothing more
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (msg.type === 'pong') { this.lastPong = Date.now(); return; }
      if (msg.type === 'lobby') this.welcomed = true; // past the door: errors now are not refusals
      if (msg.type === 'removed' || msg.type === 'ended' || msg.type === 'denied' || (msg.type === 'error' && msg.code === 'lobby-timeout')) {
        // The server closes the socket next: do not try to come back.
        this.closedByUs = true;
        this.forgetSession();
      }
      if (msg.type === 'error' && msg.code === 'ended') {
        // The meeting is over for good (found so on a join or a resume): never come back.
        this.closedByUs = true;
        this.forgetSession();
        clearInterval(this.pingTimer);
        ws.close();
        this.dispatchEvent(new CustomEvent('message', { detail: msg }));
        return;
      }
      if (msg.type === 'error' && !this.welcomed && ['wrong-passcode', 'locked-out', 'busy', 'rate-limited', 'forbidden', 'meeting-full', 'lobby-full', 'invalid', 'locked', 'barred', 'verification-required', 'mfa-required'].includes(msg.code)) {
        // Not let in: stop here and let the page ask again.
        this.closedByUs = true;
        ws.close();
        this.dispatchEvent(new CustomEvent('refused', { detail: msg }));
        return;
      }
      if (msg.type === 'welcome') {
        this.welcomed = true;
        this.unavailable = false;
        this.attempt = 0;
        this.lostAt = 0;
        this.learnNodes();
        this.resumeToken = msg.resumeToken;
        sessionStorage.setItem(`convene-resume-${this.meetingId}`, msg.resumeToken);
      }
      if (msg.type === 'error' && msg.code === 'not-found' && this.resumeToken) {
        // Our old session is over: join afresh under the same name.
        this.forgetSession();
        this.send(this.joinMessage());
        return;
      }
      this.dispatchEvent(new CustomEvent('message', { detail: msg }));
    });
    ws.addEventListener('close', () => {
      if (this.ws !== ws || this.closedByUs) return;
      this.lost();
    });
  }

  /** The socket is gone: say so, and open another after a back-off (a resume).
   * `detail.unavailable`: the node's last answer was that it cannot reach the meeting just now. */
  lost() {
    clearInterval(this.pingTimer);
    clearTimeout(this.checkTimer);
    this.checkTimer = undefined;
    this.dispatchEvent(new CustomEvent('lost', { detail: { unavailable: this.unavailable } }));
    const again = this.attempt > 0;
    if (!this.lostAt) this.lostAt = Date.now();
    // In a cluster, try at least every second: another node is looked for
    // soon after our node has been gone for NODE_LOST_MS.
    const delay = Math.min(this.nodes.length > 1 ? 1000 : 4000, 250 * 2 ** this.attempt++);
    setTimeout(async () => {
      if (this.closedByUs) return;
      // Failed again: in a cluster, another node may host the meeting now
      // (this one lost it). A socket refused for that says nothing a page
      // can read; the meeting's lookup names the node. A node that does not
      // answer at all is lost: resume on another.
      if (again) {
        const moved = await this.movedElsewhere();
        if (moved === true) return;
        if (moved === 'unreachable' && Date.now() - this.lostAt >= NODE_LOST_MS && await this.goToAnotherNode()) return;
        // Our node answers, but cannot reach the meeting (its database or
        // the cluster's Redis is away): say so, not "lost"; keep trying.
        if (moved === 'unavailable') this.dispatchEvent(new Event('unavailable'));
      }
      this.connect();
    }, delay);
  }

  /** The meeting as our node's lookup says it (null: not found); throws when the node does not answer.
   * In a cluster it names the nodes to resume on if ours is lost: kept. */
  async lookup() {
    const res = await fetch(`/api/meetings/${this.meetingId}`, { cache: 'no-store', signal: AbortSignal.timeout(3000) });
    this.unavailable = res.status === 503;
    if (this.unavailable) return UNAVAILABLE;
    const m = res.ok ? await res.json() : null;
    if (Array.isArray(m?.nodes)) this.nodes = m.nodes.filter((/** @type {unknown} */ n) => typeof n === 'string');
    return m;
  }

  /** In a cluster, the nodes to resume on if ours is lost (asked after each welcome). */
  async learnNodes() {
    try { await this.lookup(); } catch { /* kept as they were */ }
  }

  /** Leave this page for `detail.node` ('moved'; the socket is not tried again). */
  moveTo(/** @type {{node: string, lost: boolean, resumeToken?: string | null}} */ detail) {
    this.closedByUs = true;
    this.dispatchEvent(new CustomEvent('moved', { detail }));
  }

  /** Another node that answers, if any: 'moved' is dispatched with it (and our resume token goes there). */
  async goToAnotherNode() {
    for (const node of this.nodes) {
      if (node === location.origin) continue;
      try {
        // Opaque (no CORS), but it resolves only if the node answered.
        await fetch(`${node}/healthz`, { mode: 'no-cors', cache: 'no-store', signal: AbortSignal.timeout(2000) });
      } catch {
        continue;
      }
      if (this.closedByUs || !this.mayMove()) return false;
      this.moveTo({ node, lost: true, resumeToken: this.resumeToken });
      return true;
    }
    return false;
  }

  /** Whether another node hosts the meeting now (true: 'moved' is dispatched); 'unreachable' when our node did not answer,
   * 'unavailable' when it answered that the meeting cannot be reached just now (503). */
  async movedElsewhere() {
    let m;
    try {
      m = await this.lookup();
    } catch {
      return 'unreachable';
    }
    if (m === UNAVAILABLE) return 'unavailable';
    if (typeof m?.node !== 'string' || this.closedByUs || !this.mayMove()) return false;
    this.moveTo({ node: m.node, lost: false });
    return true;
  }

  /** Whether this page may load again to follow the meeting: at most three
   * times a minute, so two nodes that each name the other (a moment of
   * disagreement in the cluster) cannot make it reload without end; past
   * that it keeps trying its socket here. */
  mayMove() {
    const key = `convene-moves-${this.meetingId}`;
    try {
      const now = Date.now();
      const recent = (JSON.parse(sessionStorage.getItem(key) || '[]') || []).filter((t) => typeof t === 'number' && now - t < 60000);
      if (recent.length >= 3) return false;
      sessionStorage.setItem(key, JSON.stringify([...recent, now]));
      return true;
    } catch {
      return true;
    }
  }

  joinMessage() {
    /** @type {Record<string, unknown>} */
    const join = { type: 'join', protocol: PROTOCOL, name: this.name };
    // Say we can take part in an end-to-end encrypted meeting (refused from one otherwise).
    if (e2eeCapable()) join.e2ee = true;
    if (this.resumeToken) join.resume = this.resumeToken;
    else {
      if (this.credentials.hostKey) join.hostKey = this.credentials.hostKey;
      if (this.credentials.passcode) join.passcode = this.credentials.passcode;
    }
    return join;
  }

  keepalive() {
    if (Date.now() - this.lastPong > PONG_TIMEOUT_MS) {
      this.reconnect(); // the server stopped answering: start over
      return;
    }
    this.send({ type: 'ping' });
  }

  /**
   * Drop the socket and resume (used when media fails, or the socket stopped
   * answering). The old socket is given up on at once, not when its close
   * completes: on a path that is gone (a network change took its address)
   * the closing handshake never finishes, and no 'close' came in 40 s.
   */
  reconnect() {
    const ws = this.ws;
    if (!ws || this.closedByUs) return;
    this.ws = null;
    ws.close();
    this.lost();
  }

  /**
   * Is the socket still alive? Called on signs of a network change: a ping
   * unanswered within CHECK_MS means its path is gone, and we resume on a
   * new socket (from the new address) instead of waiting for the keepalive.
   */
  check() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.closedByUs || this.checkTimer !== undefined) return;
    const sent = Date.now();
    this.send({ type: 'ping' });
    this.checkTimer = window.setTimeout(() => {
      this.checkTimer = undefined;
      if (this.ws === ws && this.lastPong < sent) this.reconnect();
    }, CHECK_MS);
  }

  /** @param {object} msg */
  send(msg) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  forgetSession() {
    this.resumeToken = null;
    sessionStorage.removeItem(`convene-resume-${this.meetingId}`);
  }

  leave() {
    this.closedByUs = true;
    this.send({ type: 'leave' });
    this.forgetSession();
    clearInterval(this.pingTimer);
    clearTimeout(this.checkTimer);
    window.removeEventListener('online', this.onOnline);
    this.ws?.close();
  }
}
