//! One participant's WebRTC connection: its `Rtc`, its m-line slots and the state
//! of the offer/answer exchange (the SFU always offers, so nothing can glare).

use std::collections::HashMap;
use std::time::Instant;

use str0m::change::SdpPendingOffer;
use str0m::media::{Direction, Mid};
use str0m::rtp::Ssrc;
use str0m::Rtc;

use crate::{Rewriter, TrackId, TrackKind};

/// Which way media flows on a slot, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotDirection {
    /// The client sends a track it publishes (the SFU's m-line is recvonly).
    Send,
    /// The client receives a track from the SFU (the SFU's m-line is sendonly).
    Receive,
}

/// An m-line of this connection. Slots are never removed: an unused one goes
/// inactive and is reused for the next track of the same kind and direction, so the
/// SDP does not grow without bound as people come and go.
#[derive(Debug)]
pub(crate) struct Slot {
    pub mid: Option<Mid>,
    pub kind: TrackKind,
    pub dir: SlotDirection,
    pub track: Option<TrackId>,
    /// Whether the last offer made this m-line active.
    pub offered_active: bool,
    /// Outgoing slots only: keeps the stream continuous across changes of source.
    pub rewriter: Rewriter,
    /// Outgoing video only: waiting for a keyframe before sending anything.
    pub needs_keyframe: bool,
}

impl Slot {
    pub fn str0m_direction(&self) -> Direction {
        match (self.track.is_some(), self.dir) {
            (false, _) => Direction::Inactive,
            (true, SlotDirection::Send) => Direction::RecvOnly,
            (true, SlotDirection::Receive) => Direction::SendOnly,
        }
    }
}

pub(crate) struct Connection {
    pub rtc: Rtc,
    pub slots: Vec<Slot>,
    pub pending_offer: Option<SdpPendingOffer>,
    /// Slots that received their mid in the pending offer (undone if it fails).
    pub pending_new_mids: Vec<usize>,
    /// The wanted slots differ from what was last offered.
    pub dirty: bool,
    /// Incoming SSRC → index of its slot, filled on first packet.
    pub ssrc_slot: HashMap<Ssrc, usize>,
    pub next_timeout: Option<Instant>,
    /// Earliest entry this connection has in the SFU's timer heap.
    pub scheduled: Option<Instant>,
    /// Media was written since the last drain (it is in the SFU's drain list).
    pub written: bool,
}

impl Connection {
    pub fn new(rtc: Rtc) -> Self {
        Connection {
            rtc,
            slots: Vec::new(),
            pending_offer: None,
            pending_new_mids: Vec::new(),
            dirty: false,
            ssrc_slot: HashMap::new(),
            next_timeout: None,
            scheduled: None,
            written: false,
        }
    }

    /// Index of a free slot for a track of this kind and direction, adding one if none.
    pub fn free_slot(&mut self, kind: TrackKind, dir: SlotDirection) -> usize {
        let found = self
            .slots
            .iter()
            .position(|s| s.track.is_none() && s.kind == kind && s.dir == dir);
        found.unwrap_or_else(|| {
            self.slots.push(Slot {
                mid: None,
                kind,
                dir,
                track: None,
                offered_active: false,
                rewriter: Rewriter::new(rand::random::<u16>() & 0x3fff),
                needs_keyframe: true,
            });
            self.slots.len() - 1
        })
    }

    pub fn slot_by_mid(&self, mid: Mid) -> Option<usize> {
        self.slots.iter().position(|s| s.mid == Some(mid))
    }

    pub fn slot_of(&self, track: TrackId, dir: SlotDirection) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.track == Some(track) && s.dir == dir)
    }
}
