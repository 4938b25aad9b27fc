// The media connection. The server always offers and we always answer, so there
// is never glare; each offer says what every m-line (mid) carries.

/** @typedef {{mid: string, kind: 'audio'|'video', direction: 'send'|'receive', participantId?: string, source?: string, voice?: boolean}} TrackSlot */
/** TURN servers with this participant's own, expiring credentials (protocol §5.22): `[]` without TURN.
 * @typedef {{urls: string[], username: string, credential: string}} IceServer */

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
    this.pc.addEventListener('connectionstatechange', () => {
      this.dispatchEvent(new CustomEvent('state', { detail: this.pc.connectionState }));
    });
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
    for (const slot of tracks) {
      const tr = this.pc.getTransceivers().find((t) => t.mid === slot.mid);
      if (!tr) continue;
      if (slot.direction === 'send') {
        const track = slot.source ? this.localTrack(slot.source) : null;
        await tr.sender.replaceTrack(track);
        tr.direction = slot.source ? 'sendonly' : 'inactive';
      } else {
        tr.direction = slot.participantId || slot.voice ? 'recvonly' : 'inactive';
      }
    }
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    this.send({ type: 'answer', sdp: answer.sdp });
    this.slots = tracks;
    this.dispatchEvent(new Event('tracks'));
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
    this.pc.close();
  }
}
