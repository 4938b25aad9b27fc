//! Cascading: this SFU feeds another one (an edge, which holds part of a
//! large audience) with some of its tracks, over one WebRTC connection per
//! edge, so a panelist's media crosses to each edge once, not once per
//! attendee there.
//!
//! The edge sees an ordinary publisher: it offers to receive the tracks
//! (recvonly m-lines, simulcast for cameras) as it would from a browser,
//! and this side answers as a browser would, then sends every layer of each
//! track as it arrives, each on its own rid, so that the edge chooses
//! layers for its own subscribers. Both SFUs are ICE-lite towards browsers;
//! this end of a relay is a full ICE agent (controlling), the one that
//! checks. The link is str0m's like any other (SRTP, NACK and RTX,
//! transport-wide feedback), and its loss and round trip are reported
//! ([`SfuEvent::RelayLink`]).

use std::collections::{BTreeSet, HashMap};

use str0m::change::SdpOffer;
use str0m::media::Mid;

use super::*;
use crate::rewrite::Rewriter;
use crate::vp8::PictureIds;

/// What a relay connection keeps beyond a subscriber's: numbering per
/// relayed layer, continuous across a change of source (a publisher that
/// reconnected), as a subscriber's slot keeps it for its one layer.
#[derive(Default)]
pub(crate) struct RelayOut {
    layers: HashMap<(usize, u8), (Rewriter, PictureIds)>,
    /// The rids the edge asked for on each slot, lowest layer first; none
    /// for an m-line without layers. Read once from the negotiated streams
    /// (asked for without a rid, str0m finds any stream of an m-line, so a
    /// lookup cannot tell).
    rids: HashMap<usize, Vec<Rid>>,
}

impl Sfu {
    /// The edge's offer on relay connection `conn` (a new one, or one that
    /// exists: the edge offers again when the tracks change): answer it,
    /// sending `tracks` (the offer's mid for each) from now on. An m-line
    /// not named carries nothing. Returns the answer for the edge.
    pub fn relay_offer(
        &mut self,
        now: Instant,
        conn: ConnId,
        offer: &str,
        tracks: &[(String, TrackId)],
    ) -> Result<String, SfuError> {
        self.now = self.now.max(now);
        // One track per m-line, each of a kind its m-line can carry, and
        // each once.
        let kinds = mline_kinds(offer);
        let mut seen_mids = BTreeSet::new();
        let mut seen_tracks = BTreeSet::new();
        for (mid, track) in tracks {
            if !seen_mids.insert(mid.as_str()) || !seen_tracks.insert(*track) {
                return Err(SfuError::BadSdp(format!(
                    "m-line {mid} or its track named twice"
                )));
            }
            let Some(p) = self.producers.get(track) else {
                continue;
            };
            let want = if p.kind.is_audio() { "audio" } else { "video" };
            if kinds.get(mid.as_str()) != Some(&want) {
                return Err(SfuError::BadSdp(format!(
                    "m-line {mid} is no {want} m-line"
                )));
            }
        }
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let created = match self.conns.get(&conn) {
            Some(c) if c.relay.is_none() => return Err(SfuError::DuplicateConnection),
            Some(_) => false,
            None => {
                let cfg = self
                    .rtc_config(ConnOptions::default())
                    .set_ice_lite(false)
                    // Between servers: what the edge needs is sent, and
                    // nothing is probed for.
                    .enable_bwe(None);
                let mut rtc = cfg.build(now);
                for addr in &self.config.candidates {
                    let c =
                        Candidate::host(*addr, "udp").map_err(|e| SfuError::Rtc(e.to_string()))?;
                    rtc.add_local_candidate(c);
                }
                let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
                self.routes.add_conn(conn, ufrag);
                let mut c = Connection::new(rtc);
                c.relay = Some(Box::default());
                self.conns.insert(conn, Box::new(c));
                true
            }
        };
        let c = self.conns.get_mut(&conn).expect("present above");
        let before = c.rtc.direct_api().local_ice_credentials().ufrag;
        let answer = match c.rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                if created {
                    self.remove_connection(conn);
                }
                return Err(SfuError::BadSdp(e.to_string()));
            }
        };
        // An ICE restart by the edge: its checks come to the new ufrag.
        let ufrag = c.rtc.direct_api().local_ice_credentials().ufrag;
        if ufrag != before {
            self.routes.add_ufrag(conn, ufrag);
        }
        // Slots as the tracks say; whatever this relay carried before is let go.
        for p in self.producers.values_mut() {
            p.relays.retain(|&(c2, _)| c2 != conn);
        }
        let c = self.conns.get_mut(&conn).expect("present above");
        for slot in &mut c.slots {
            slot.track = None;
        }
        for (mid, track) in tracks {
            let Some(p) = self.producers.get_mut(track) else {
                continue;
            };
            let mid = Mid::from(mid.as_str());
            let idx = match c.slot_by_mid(mid) {
                Some(i) => i,
                None => {
                    let i = c.add_slot(p.kind, SlotDirection::Receive);
                    c.slots[i].mid = Some(mid);
                    i
                }
            };
            let mut api = c.rtc.direct_api();
            let rids = SIMULCAST_RIDS
                .iter()
                .map(|r| Rid::from(*r))
                .filter(|r| api.stream_tx_by_mid(mid, Some(*r)).is_some())
                .collect();
            if let Some(relay) = c.relay.as_mut() {
                relay.rids.insert(idx, rids);
            }
            let slot = &mut c.slots[idx];
            slot.kind = p.kind;
            slot.track = Some(*track);
            slot.live = true;
            p.relays.push((conn, idx));
        }
        self.drain(conn);
        self.process_work(now);
        Ok(answer.to_sdp_string())
    }

    /// Whether `conn` is a relay to an edge.
    pub fn is_relay(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.relay.is_some())
    }
}

/// Each m-line's media type (`audio`, `video`, …) by its mid, in `sdp`.
fn mline_kinds(sdp: &str) -> HashMap<&str, &str> {
    let mut kinds = HashMap::new();
    let mut current = None;
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            current = m.split(' ').next();
        } else if let (Some(mid), Some(kind)) = (line.strip_prefix("a=mid:"), current) {
            kinds.insert(mid.trim(), kind);
        }
    }
    kinds
}

/// The simulcast layer a rid names (the only layer when there is none).
pub(super) fn layer_of(rid: Option<Rid>) -> u8 {
    rid.and_then(|r| SIMULCAST_RIDS.iter().position(|x| **x == *r))
        .unwrap_or(0) as u8
}

impl RelayOut {
    /// The rids the edge asked for on `slot`, lowest first.
    pub(super) fn rids(&self, slot: usize) -> &[Rid] {
        self.rids.get(&slot).map_or(&[], Vec::as_slice)
    }

    /// The numbering of relayed `layer` on `slot`.
    pub(super) fn layer(&mut self, slot: usize, layer: u8) -> &mut (Rewriter, PictureIds) {
        self.layers.entry((slot, layer)).or_insert_with(|| {
            (
                Rewriter::new(rand::random::<u16>() & 0x3fff),
                PictureIds::default(),
            )
        })
    }
}
