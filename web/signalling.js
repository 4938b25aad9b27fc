// The signalling socket: join, resume after a drop, keepalive. See docs/protocol.md.

const PROTOCOL = 1;
const PING_EVERY_MS = 5000;
const PONG_TIMEOUT_MS = 10000;

export class Signalling extends EventTarget {
  /** @param {string} meetingId @param {string} name */
  constructor(meetingId, name) {
    super();
    this.meetingId = meetingId;
    this.name = name;
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {string | null} */
    this.resumeToken = sessionStorage.getItem(`convene-resume-${meetingId}`);
    this.closedByUs = false;
    this.attempt = 0;
    this.lastPong = 0;
    /** @type {number | undefined} */
    this.pingTimer = undefined;
  }

  connect() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/api/meetings/${this.meetingId}/ws`);
    this.ws = ws;
    ws.addEventListener('open', () => {
      /** @type {Record<string, unknown>} */
      const join = { type: 'join', protocol: PROTOCOL, name: this.name };
      if (this.resumeToken) join.resume = this.resumeToken;
      this.send(join);
      this.lastPong = Date.now();
      clearInterval(this.pingTimer);
      this.pingTimer = window.setInterval(() => this.keepalive(), PING_EVERY_MS);
    });
    ws.addEventListener('message', (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (msg.type === 'pong') { this.lastPong = Date.now(); return; }
      if (msg.type === 'welcome') {
        this.attempt = 0;
        this.resumeToken = msg.resumeToken;
        sessionStorage.setItem(`convene-resume-${this.meetingId}`, msg.resumeToken);
      }
      if (msg.type === 'error' && msg.code === 'not-found' && this.resumeToken) {
        // Our old session is over: join afresh under the same name.
        this.forgetSession();
        this.send({ type: 'join', protocol: PROTOCOL, name: this.name });
        return;
      }
      this.dispatchEvent(new CustomEvent('message', { detail: msg }));
    });
    ws.addEventListener('close', () => {
      clearInterval(this.pingTimer);
      if (this.ws !== ws || this.closedByUs) return;
      this.dispatchEvent(new Event('lost'));
      const delay = Math.min(4000, 250 * 2 ** this.attempt++);
      setTimeout(() => { if (!this.closedByUs) this.connect(); }, delay);
    });
  }

  keepalive() {
    if (Date.now() - this.lastPong > PONG_TIMEOUT_MS) {
      this.reconnect(); // the server stopped answering: start over
      return;
    }
    this.send({ type: 'ping' });
  }

  /** Drop the socket and resume (used when media fails). */
  reconnect() {
    this.ws?.close();
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
    this.ws?.close();
  }
}
