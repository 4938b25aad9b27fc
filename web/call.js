// The media connection. The server always offers and we always answer, so there
// is never glare; each offer says what every m-line (mid) carries.

/** `layers`: on a send slot the server wants in simulcast, the rids, lowest first (§7.3).
 * @typedef {{mid: string, kind: 'audio'|'video', direction: 'send'|'receive', participantId?: string, source?: string, voice?: boolean, layers?: string[]}} TrackSlot */
/** TURN servers with this participant's own, expiring credentials (protocol §5.22): `[]` without TURN.
 * @typedef {{urls: string[], username: string, credential: string}} IceServer */

/** How each simulcast layer is encoded, by rid: a quarter, half and full size. The
 * low layer at 15 frames a second, so that two cameras and their audio fit a
 * 400 kbit/s link (and it costs the sender's CPU less). */
const LAYERS = /** @type {Record<string, {scaleResolutionDownBy: number, maxBitrate: number, maxFramerate?: number}>} */ ({
  l: { scaleResolutionDownBy: 4, maxBitrate: 100_000, maxFramerate: 15 },
  m: { scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  h: { scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
});

export class Call extends EventTarget {
  /**
   * @param {(msg: object) => void} send
   * @param {(source: string) => MediaStreamTrack | null} localTrack
   * @param {IceServer[]} [iceServers] from the welcome
   */
  constructor(send, localTrack, iceServers = []) {
    super();
    this.send = send;
    this.localTrack = localTrack;
    this.pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    /** @type {TrackSlot[]} */
    this.slots = [];
    /** Offers are handled one at a time, in order. */
    this.queue = Promise.resolve();
    /** @type {Map<string, string[]>} source → the layers (rids) the server last asked us to send */
    this.activeLayers = new Map();
    this.pc.addEventListener('connectionstatechange', () => {
      this.dispatchEvent(new CustomEvent('state', { detail: this.pc.connectionState }));
      if (this.pc.connectionState === 'connected') this.reportPath();
    });
    /** @type {string | null} the path last told to the server */
    this.path = null;
    /** Called with the connection after each offer is applied, before any
     * track is attached: end-to-end encryption sets its transforms there.
     * @type {(pc: RTCPeerConnection, tracks: TrackSlot[]) => void} */
    this.onTransceivers = () => {};
    /** @type {number | undefined} */
    this.restartTimer = undefined;
    this.lastRestart = 0;
    // A network change (Wi-Fi to mobile, a VPN coming up) breaks the media
    // connection's path: ask the server for new ICE credentials rather than
    // leave. 'disconnected' may mend by itself, so give it a moment first.
    this.pc.addEventListener('iceconnectionstatechange', () => {
      const state = this.pc.iceConnectionState;
      clearTimeout(this.restartTimer);
      if (state === 'failed') this.restartIce();
      else if (state === 'disconnected') this.restartTimer = setTimeout(() => this.restartIce(), 2000);
    });
    this.onOnline = () => this.restartIce();
    window.addEventListener('online', this.onOnline);
    // The selected pair can change without a state change (an ICE restart, a
    // relay taking over): look again now and then.
    this.pathTimer = setInterval(() => this.reportPath(), 5000);
  }

  /** Ask the server for an ICE restart (it offers new credentials; at most one every 2 s). */
  restartIce() {
    if (this.pc.signalingState === 'closed') return;
    const now = Date.now();
    if (now - this.lastRestart < 2500) return;
    this.lastRestart = now;
    this.send({ type: 'restart-ice' });
  }

  /** Tell the server which path media takes: direct UDP, direct TCP, or the relay. */
  async reportPath() {
    if (this.pc.connectionState !== 'connected') return;
    const path = await selectedPath(this.pc);
    if (path && path !== this.path) {
      this.path = path;
      this.send({ type: 'media-path', path });
      this.dispatchEvent(new CustomEvent('path', { detail: path }));
    }
  }

  /** @param {string} sdp @param {TrackSlot[]} tracks */
  handleOffer(sdp, tracks) {
    this.queue = this.queue.then(() => this.answer(sdp, tracks)).catch((e) => {
      console.error('could not answer the offer', e);
      this.dispatchEvent(new CustomEvent('error', { detail: e }));
    });
  }

  /** @param {string} sdp @param {TrackSlot[]} tracks */
  async answer(sdp, tracks) {
    await this.pc.setRemoteDescription({ type: 'offer', sdp });
    this.onTransceivers(this.pc, tracks);
    // A source we no longer send forgets what was asked of its layers (a new
    // publication gets its own `video-layers`).
    const sending = (/** @type {TrackSlot[]} */ list) => new Set(list.filter((t) => t.direction === 'send' && t.source).map((t) => t.source));
    const now = sending(tracks);
    for (const source of sending(this.slots)) if (!now.has(source)) this.activeLayers.delete(source);
    /** @type {TrackSlot[]} */
    const retry = [];
    for (const slot of tracks) {
      const tr = this.pc.getTransceivers().find((t) => t.mid === slot.mid);
      if (!tr) continue;
      if (slot.direction === 'send') {
        const track = slot.source ? this.localTrack(slot.source) : null;
        // A shared screen is mostly text: keep it sharp rather than smooth.
        // (A shared video file's track says 'motion' already: smooth rather than sharp.)
        if (track && slot.source === 'screen' && !track.contentHint) track.contentHint = 'detail';
        await tr.sender.replaceTrack(track);
        tr.direction = slot.source ? 'sendonly' : 'inactive';
        // Encodings on every offer: Chromium turns every simulcast layer back
        // on when it applies one. (Chromium 156 and Firefox 153 take them
        // before the answer; a browser that does not gets them after it.)
        if (track && !(await this.encode(slot))) retry.push(slot);
      } else {
        tr.direction = slot.participantId || slot.voice ? 'recvonly' : 'inactive';
      }
    }
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    this.send({ type: 'answer', sdp: answer.sdp });
    this.slots = tracks;
    for (const slot of retry) await this.encode(slot, true);
    this.dispatchEvent(new Event('tracks'));
  }

  /**
   * Set how a send slot's track is encoded: simulcast layers by rid (their
   * sizes and bitrates, and which are on), and for a shared screen, keep
   * its resolution when the link is short (frames are dropped instead; a
   * shared video file keeps its frame rate instead).
   * @param {TrackSlot} slot
   * @param {boolean} [last] the last try: say so if it fails
   * @returns {Promise<boolean>} whether it worked (or there was nothing to do)
   */
  async encode(slot, last = false) {
    const tr = this.pc.getTransceivers().find((t) => t.mid === slot.mid);
    if (!tr || !tr.sender.track) return true;
    try {
      const params = tr.sender.getParameters();
      if (slot.layers?.length) {
        const active = this.activeLayers.get(/** @type {string} */ (slot.source));
        for (const enc of params.encodings) {
          const layer = enc.rid ? LAYERS[enc.rid] : undefined;
          if (!layer) continue;
          Object.assign(enc, layer);
          enc.active = active ? active.includes(/** @type {string} */ (enc.rid)) : true;
        }
      } else if (slot.source === 'screen') {
        // A video file keeps its frame rate, a screen its resolution.
        /** @type {any} */ (params).degradationPreference = tr.sender.track.contentHint === 'motion' ? 'maintain-framerate' : 'maintain-resolution';
      } else {
        return true;
      }
      await tr.sender.setParameters(params);
      return true;
    } catch (e) {
      // Not fatal: the browser's defaults still send video.
      if (last) console.warn(`could not set the encodings of ${slot.source}`, e);
      return false;
    }
  }

  /**
   * The server says which of a source's layers somebody needs (`video-layers`):
   * the rest are paused, without renegotiating. Kept for a sender that does
   * not exist yet, and applied again after every answer.
   * @param {string} source @param {string[]} active rids
   */
  setLayers(source, active) {
    this.activeLayers.set(source, active);
    this.queue = this.queue.then(async () => {
      for (const slot of this.slots) {
        if (slot.direction === 'send' && slot.source === source && slot.layers?.length) await this.encode(slot, true);
      }
    }).catch((e) => console.warn('could not change layers', e));
  }

  /** Swap the track we send for a source (device change) without renegotiating. */
  async replaceLocal(source, track) {
    for (const slot of this.slots) {
      if (slot.direction !== 'send' || slot.source !== source) continue;
      const tr = this.pc.getTransceivers().find((t) => t.mid === slot.mid);
      if (tr) await tr.sender.replaceTrack(track);
    }
  }

  /** @returns {Map<string, Map<string, MediaStreamTrack>>} participant → source → track */
  remoteTracks() {
    const out = new Map();
    for (const slot of this.slots) {
      if (slot.direction !== 'receive' || !slot.participantId || !slot.source) continue;
      const tr = this.pc.getTransceivers().find((t) => t.mid === slot.mid);
      if (!tr) continue;
      if (!out.has(slot.participantId)) out.set(slot.participantId, new Map());
      out.get(slot.participantId).set(slot.source, tr.receiver.track);
    }
    return out;
  }

  /** Tracks of the voice slots: each carries whoever is talking (the server switches). */
  voiceTracks() {
    const out = [];
    for (const slot of this.slots) {
      if (slot.direction !== 'receive' || !slot.voice) continue;
      const tr = this.pc.getTransceivers().find((t) => t.mid === slot.mid);
      if (tr) out.push({ mid: slot.mid, track: tr.receiver.track });
    }
    return out;
  }

  /**
   * Fresh TURN credentials (`ice-servers`): used for relays set up from now on
   * (an ICE restart); relays in use go on. No renegotiation.
   * @param {IceServer[]} iceServers
   */
  setIceServers(iceServers) {
    if (this.pc.signalingState === 'closed') return;
    try {
      this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers });
    } catch (e) {
      console.warn('could not apply fresh TURN credentials', e);
    }
  }

  close() {
    clearTimeout(this.restartTimer);
    clearInterval(this.pathTimer);
    window.removeEventListener('online', this.onOnline);
    this.pc.close();
  }
}

/**
 * The selected candidate pair's path: 'relay' when our side is a TURN relay,
 * else the protocol, 'udp' or 'tcp'. Null before a pair is selected.
 * @param {RTCPeerConnection} pc
 * @returns {Promise<'udp'|'tcp'|'relay'|null>}
 */
export async function selectedPath(pc) {
  const stats = await pc.getStats();
  /** @type {any} */
  let pair = null;
  stats.forEach((/** @type {any} */ s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
  });
  // Firefox names no selected pair on the transport: it marks the pair.
  if (!pair) {
    stats.forEach((/** @type {any} */ s) => {
      if (s.type === 'candidate-pair' && (s.selected || s.nominated) && s.state === 'succeeded') pair = s;
    });
  }
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  if (!local) return null;
  if (local.candidateType === 'relay') return 'relay';
  return local.protocol === 'tcp' ? 'tcp' : 'udp';
}
