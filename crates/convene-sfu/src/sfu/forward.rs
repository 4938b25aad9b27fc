//! Forwarding one incoming RTP packet to every subscriber that should have it.

use std::ops::Range;

use crate::rewrite::Rewriter;

use super::*;

impl Sfu {
    /// The hot path: one incoming RTP packet to every subscriber of its track.
    pub(super) fn forward(&mut self, now: Instant, conn: ConnId, pkt: RtpPacket) {
        self.stats.rtp_in += 1;
        if pkt.payload.is_empty() || !self.media_pts.contains(&pkt.header.payload_type) {
            return; // padding/probes and anything not negotiated as media
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let ssrc = pkt.header.ssrc;
        let (idx, layer) = match c.ssrc_slot.get(&ssrc) {
            Some(&found) => found,
            None => {
                let Some((mid, rid)) = c
                    .rtc
                    .direct_api()
                    .stream_rx(&ssrc)
                    .map(|s| (s.mid(), s.rid()))
                else {
                    return;
                };
                let Some(i) = c.slot_by_mid(mid) else { return };
                let layer = super::relay::layer_of(rid);
                c.ssrc_slot.insert(ssrc, (i, layer));
                (i, layer)
            }
        };
        let slot = &c.slots[idx];
        let Some(track) = slot.track.filter(|_| slot.dir == SlotDirection::Send) else {
            // Media on an m-line that publishes nothing (unpublished, or never allowed).
            self.stats.rtp_dropped_unpublished += 1;
            return;
        };
        let Some(p) = self.producers.get_mut(&track) else {
            return;
        };
        if p.conn != Some(conn) {
            return;
        }
        if p.paused {
            self.stats.rtp_dropped_paused += 1;
            return;
        }
        let kind = p.kind;
        // A RED packet's primary block, parsed once: for the audio rate, and
        // for subscribers who get it alone.
        let red = (kind.is_audio() && *pkt.header.payload_type == RED_PT)
            .then(|| red_primary(&pkt.payload))
            .flatten();
        if kind.is_audio() {
            let primary = match (&red, *pkt.header.payload_type == RED_PT) {
                (Some((_, r)), _) => r.len(),
                (None, true) => 0,
                (None, false) => pkt.payload.len(),
            };
            p.audio_rate.on_packet(pkt.payload.len(), primary);
        }
        // Video is VP8 (the only video codec offered).
        let vp8 = (kind == TrackKind::Video)
            .then(|| Vp8Descriptor::parse(&pkt.payload).ok())
            .flatten();
        let keyframe = vp8.is_some_and(|d| d.starts_keyframe(&pkt.payload));
        if let Some(l) = p.layers.get_mut(usize::from(layer)) {
            let new_layer = !l.arriving(now);
            l.on_packet(now, pkt.payload.len());
            if keyframe {
                l.keyframe_asked = None;
                if let Some(size) = vp8_keyframe_size(&pkt.payload) {
                    l.size = Some(size);
                }
            }
            if new_layer && p.simulcast {
                // A layer (re)appears: subscribers may want it, starting with
                // this packet (a layer starts with a keyframe).
                let subs: Vec<ConnId> = p.consumers.iter().map(|&(c, _)| c).collect();
                for sub in subs {
                    self.allocate(sub);
                }
            }
        }
        let Some(p) = self.producers.get_mut(&track) else {
            return;
        };
        if p.stalled {
            p.stalled = false;
            self.events.push_back(SfuEvent::VideoStalled {
                track,
                stalled: false,
            });
        }
        let mut ext = ExtensionValues::default();
        // Packets without a level count as voice: we cannot tell otherwise.
        let mut voiced = true;
        if kind.is_audio() {
            if let Some(level) = pkt.header.ext_vals.audio_level {
                let activity = pkt.header.ext_vals.voice_activity;
                ext.audio_level = Some(level);
                ext.voice_activity = activity;
                voiced = p.speaking.is_voice(level, activity);
                if let Some(speaking) = p.speaking.on_packet(now, voiced) {
                    self.events
                        .push_back(SfuEvent::Speaking { track, speaking });
                }
            }
        } else {
            ext.video_orientation = pkt.header.ext_vals.video_orientation;
        }
        // Only the packets of the datagram being received have a known age, and
        // only video is dropped for it: audio is small and cheap, and a voice
        // breaking up is the first thing people notice. Video is judged by frame:
        // once a frame's first packet went out, the rest follow (a keyframe's
        // tail waits longest; dropping it would freeze the video for good
        // whenever a keyframe takes longer than the bound to forward).
        let late = kind == TrackKind::Video
            && self
                .arrived
                .is_some_and(|a| now.saturating_duration_since(a) > MAX_MEDIA_AGE)
            && p.frame_out != Some(pkt.header.timestamp);
        if late {
            self.stats.rtp_dropped_late += 1;
            // The frame is broken for everyone on this layer: nothing more of it
            // until a keyframe. The first packet on time asks for one (below):
            // not now, while the server is behind, as keyframes are the largest
            // frames. Until the server catches up, subscribers of a simulcast
            // camera move down to its lowest layer rather than stop.
            p.frame_out = None;
            if p.simulcast {
                p.overloaded_until = Some(now + LAYER_TICK * 4);
            }
            for &(sub, slot_idx) in &p.consumers {
                if let Some(c) = self.conns.get_mut(&sub) {
                    let s = &mut c.slots[slot_idx];
                    if s.current == Some(layer) {
                        s.current = None;
                    }
                }
            }
            return;
        }
        if kind == TrackKind::Video {
            p.frame_out = Some(pkt.header.timestamp);
        }
        let out = Outgoing {
            // Track, publisher connection and SSRC: two publishers' SSRCs may be
            // equal; each simulcast layer has its own.
            source: (u128::from(track.0) << 64)
                | (u128::from(p.generation) << 32)
                | u128::from(*ssrc),
            kind,
            pkt: &pkt,
            vp8,
            red,
            red_copy: OnceCell::new(),
            ext,
            now,
        };
        let coming = Coming::of(&p.layers, now);
        let consumers = std::mem::take(&mut p.consumers);
        let listeners = std::mem::take(&mut p.listeners);
        // Edges (cascading), most often none.
        let relays = (!p.relays.is_empty()).then(|| {
            let rid = p.layers.get(usize::from(layer)).and_then(|l| l.rid);
            (std::mem::take(&mut p.relays), rid)
        });
        let mut want_keyframe = false;
        for &(sub, slot_idx) in &consumers {
            let Some(sc) = self.conns.get_mut(&sub) else {
                continue;
            };
            let slot = &mut sc.slots[slot_idx];
            if slot.track != Some(track) || !slot.live {
                continue;
            }
            let starts = if kind == TrackKind::Video {
                match video_verdict(slot, layer, keyframe, out.source, &coming) {
                    Verdict::Skip => continue,
                    Verdict::Send => false,
                    Verdict::Start => true,
                    Verdict::WantKeyframe => {
                        want_keyframe = true;
                        continue;
                    }
                }
            } else {
                false
            };
            if out.write(sc, slot_idx) {
                if starts {
                    let slot = &mut sc.slots[slot_idx];
                    if slot.current.is_some_and(|c| c != layer) {
                        self.stats.layer_switches += 1;
                    }
                    slot.current = Some(layer);
                }
                self.stats.rtp_forwarded += 1;
                queue_drain(sc, &mut self.to_drain, sub);
            }
        }
        for &sub in &listeners {
            let Some(sc) = self.conns.get_mut(&sub) else {
                continue;
            };
            let Some((slot_idx, taken)) = sc.voice_slot_for(track, voiced, now) else {
                continue; // others are talking in every slot
            };
            if taken {
                let mid = sc.slots[slot_idx].mid.map(|m| m.to_string());
                self.events.push_back(SfuEvent::VoiceSlot {
                    conn: sub,
                    mid: mid.unwrap_or_default(),
                    track: Some(track),
                });
            }
            if out.write(sc, slot_idx) {
                self.stats.rtp_forwarded += 1;
                queue_drain(sc, &mut self.to_drain, sub);
            }
        }
        // Every layer to each edge, once (its own subscribers choose there).
        if let Some((relays, rid)) = relays {
            for &(edge, slot_idx) in &relays {
                let Some(sc) = self.conns.get_mut(&edge) else {
                    continue;
                };
                if out.relay(sc, slot_idx, track, layer, rid) {
                    self.stats.rtp_relayed += 1;
                    queue_drain(sc, &mut self.to_drain, edge);
                }
            }
            if let Some(p) = self.producers.get_mut(&track) {
                let added = std::mem::replace(&mut p.relays, relays);
                p.relays.extend(added);
            }
        }
        if let Some(p) = self.producers.get_mut(&track) {
            // Subscriptions made while forwarding (none today) are kept.
            let added = std::mem::replace(&mut p.consumers, consumers);
            p.consumers.extend(added);
            let added = std::mem::replace(&mut p.listeners, listeners);
            p.listeners.extend(added);
        }
        if want_keyframe {
            self.request_keyframe(now, track, layer);
        }
    }
}

/// What to do with a video packet of `layer` for one subscriber's slot.
enum Verdict {
    /// Forward it on the layer being sent.
    Send,
    /// A keyframe of the layer to send: the slot starts (or switches to) it.
    Start,
    /// The slot waits for a keyframe of this layer: ask for one.
    WantKeyframe,
    /// Not for this subscriber (another layer, or nothing to send).
    Skip,
}

fn video_verdict(slot: &Slot, layer: u8, keyframe: bool, source: u128, coming: &Coming) -> Verdict {
    let Some(target) = slot.target else {
        return Verdict::Skip;
    };
    let on_current = slot.current == Some(layer) && slot.rewriter.is_current(source);
    if layer == target {
        if on_current {
            Verdict::Send
        } else if keyframe {
            Verdict::Start
        } else {
            Verdict::WantKeyframe
        }
    } else if on_current {
        // The old layer goes on until the new one's keyframe: no freeze.
        Verdict::Send
    } else if slot.current.is_none()
        && !coming.arriving(target)
        && coming.highest_below(target) == Some(layer)
    {
        // Nothing shown yet, and the layer chosen is not coming (its
        // publisher's uplink cannot carry it, or it was just asked for
        // again): start on the highest lower one that is, meanwhile, and
        // switch at the chosen one's keyframe. Else a late subscriber saw
        // nothing for the seconds each missing layer is waited for. Its
        // keyframe is asked for only once the chosen one is overdue: a
        // resumed layer's own keyframe is usually a round trip away, and
        // every request is a keyframe for all who watch that layer.
        if keyframe {
            Verdict::Start
        } else if coming.expected(target) {
            Verdict::Skip
        } else {
            Verdict::WantKeyframe
        }
    } else {
        Verdict::Skip
    }
}

/// Which of a camera's layers are coming, read once per packet.
struct Coming {
    arriving: [bool; 3],
    /// Arriving, or asked for again so recently that it may yet come.
    expected: [bool; 3],
}

/// How long a layer asked for again is waited for before a subscriber with
/// nothing shown starts on a lower one: its keyframe comes within a round
/// trip or two.
const RESUME_AWAITED: Duration = Duration::from_millis(500);

impl Coming {
    fn of(layers: &[crate::layers::LayerIn], now: Instant) -> Coming {
        let mut c = Coming {
            arriving: [false; 3],
            expected: [false; 3],
        };
        for (i, l) in layers.iter().enumerate().take(3) {
            c.arriving[i] = l.arriving(now);
            c.expected[i] = c.arriving[i]
                || l.resumed_at
                    .is_some_and(|t| now.saturating_duration_since(t) < RESUME_AWAITED);
        }
        c
    }

    fn arriving(&self, layer: u8) -> bool {
        self.arriving
            .get(usize::from(layer))
            .copied()
            .unwrap_or(false)
    }

    fn expected(&self, layer: u8) -> bool {
        self.expected
            .get(usize::from(layer))
            .copied()
            .unwrap_or(false)
    }

    /// The highest layer below `layer` that is arriving.
    fn highest_below(&self, layer: u8) -> Option<u8> {
        (0..usize::from(layer).min(3))
            .rev()
            .find(|&i| self.arriving[i])
            .map(|i| i as u8)
    }
}

/// Queue a subscriber for draining once after this batch of input.
fn queue_drain(c: &mut Connection, to_drain: &mut VecDeque<ConnId>, conn: ConnId) {
    if !c.written {
        c.written = true;
        to_drain.push_back(conn);
    }
}

/// One incoming packet on its way out to subscribers.
struct Outgoing<'a> {
    /// The source's identity for the rewriter.
    source: u128,
    kind: TrackKind,
    pkt: &'a RtpPacket,
    vp8: Option<Vp8Descriptor>,
    /// A RED packet's primary block: its payload type and place.
    red: Option<(u8, Range<usize>)>,
    /// That block, copied out for subscribers without RED (once, when the
    /// first of them needs it).
    red_copy: OnceCell<Option<(Pt, Arc<[u8]>)>>,
    ext: ExtensionValues,
    now: Instant,
}

impl Outgoing<'_> {
    fn red_primary(&self) -> Option<&(Pt, Arc<[u8]>)> {
        self.red_copy
            .get_or_init(|| {
                let (pt, range) = self.red.clone()?;
                Some((Pt::from(pt), Arc::from(&self.pkt.payload[range])))
            })
            .as_ref()
    }

    /// Rewrite the packet for one slot of a subscriber and hand it to its `Rtc`.
    /// False if nothing was written (slot not negotiated, or a late packet from
    /// before a change of source).
    fn write(&self, sc: &mut Connection, slot_idx: usize) -> bool {
        let slot = &mut sc.slots[slot_idx];
        let Some(mid) = slot.mid else {
            return false;
        };
        let pkt = self.pkt;
        let mut api = sc.rtc.direct_api();
        // Checked before rewriting: a packet that cannot go out must not move
        // the subscriber's numbering on.
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return false;
        };
        // Forwarded video is not paced: the layer choice keeps it within the
        // subscriber's estimate, and pacing it cost a timeout per packet
        // (BENCHMARKS.md 2026-12-02). str0m's pacer still times its probes.
        tx.set_unpaced(true);
        let Some((seq, ts)) = self.renumbered(&mut slot.rewriter) else {
            return false;
        };
        let (pt, payload) = if *pkt.header.payload_type == RED_PT && (!sc.red || sc.red_off) {
            match self.red_primary() {
                Some((pt, p)) => (*pt, p.clone()),
                None => return false,
            }
        } else {
            (pkt.header.payload_type, pkt.payload.clone())
        };
        tx.write_rtp(self.rtp_write(pt, payload, seq, ts, &mut slot.picture_ids));
        true
    }

    /// The packet's number and timestamp in `rewriter`'s numbering; none
    /// for a late packet from before a change of source.
    #[inline]
    fn renumbered(&self, rewriter: &mut Rewriter) -> Option<(u64, u32)> {
        let pkt = self.pkt;
        rewriter.rewrite(
            self.source,
            *pkt.seq_no,
            pkt.header.timestamp,
            self.now,
            self.kind.clock_rate(),
        )
    }

    /// The packet as written out: `pt` and `payload` at `seq` and `ts`, its
    /// VP8 picture numbering kept continuous by `picture_ids`.
    #[inline]
    fn rtp_write(
        &self,
        pt: Pt,
        payload: Arc<[u8]>,
        seq: u64,
        ts: u32,
        picture_ids: &mut crate::vp8::PictureIds,
    ) -> RtpWrite {
        let pkt = self.pkt;
        let mut w = RtpWrite::new(pt, SeqNo::from(seq), ts, pkt.timestamp, payload)
            .marker(pkt.header.marker)
            .ext_vals(self.ext.clone())
            .nackable(self.kind == TrackKind::Video);
        if let Some(d) = &self.vp8 {
            if let Some(patch) = picture_ids.rewrite(self.source, &pkt.payload, d) {
                w = w.vp8_patch(patch);
            }
        }
        w
    }

    /// Hand the packet, of `track`'s `layer` (sent as `rid`), to a relay's
    /// `Rtc` on `slot_idx`, unchanged but for its numbering. False if
    /// nothing was written.
    fn relay(
        &self,
        sc: &mut Connection,
        slot_idx: usize,
        track: TrackId,
        layer: u8,
        rid: Option<Rid>,
    ) -> bool {
        let slot = &sc.slots[slot_idx];
        if slot.track != Some(track) || !slot.live {
            return false;
        }
        let (Some(mid), Some(relay)) = (slot.mid, sc.relay.as_mut()) else {
            return false;
        };
        // The edge's m-line and the publisher may differ: a camera without
        // layers goes on the edge's lowest layer; an edge without layers
        // gets the lowest only (one stream cannot carry three numberings).
        let offered = relay.rids(slot_idx);
        let rid = match (offered.first(), rid) {
            (None, _) if layer == 0 => None,
            (None, _) => return false,
            (Some(_), Some(r)) if offered.contains(&r) => Some(r),
            (Some(_), Some(_)) => return false,
            (Some(lowest), None) => Some(*lowest),
        };
        let mut api = sc.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, rid) else {
            return false;
        };
        tx.set_unpaced(true);
        let (rewriter, picture_ids) = relay.layer(slot_idx, layer);
        let Some((seq, ts)) = self.renumbered(rewriter) else {
            return false;
        };
        let pkt = self.pkt;
        let (pt, payload) = (pkt.header.payload_type, pkt.payload.clone());
        tx.write_rtp(self.rtp_write(pt, payload, seq, ts, picture_ids));
        true
    }
}
