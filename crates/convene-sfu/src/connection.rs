//! One participant's WebRTC connection: its `Rtc`, its m-line slots and the state
//! of the offer/answer exchange (the SFU always offers, so nothing can glare).

use std::collections::HashMap;
use std::time::Instant;

use str0m::change::SdpPendingOffer;
use str0m::media::{Direction, Mid};
use str0m::rtp::Ssrc;
use str0m::Rtc;

use crate::climb::ClimbGate;
use crate::feedback::FeedbackWatch;
use crate::layers::View;
use crate::loss_cap::LossCap;
use crate::quality::QualityMeter;
use crate::vp8::PictureIds;
use crate::{Rewriter, TrackId, TrackKind};

/// A speaker keeps a voice slot through pauses shorter than this.
const VOICE_HOLD: std::time::Duration = std::time::Duration::from_secs(1);

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
    /// Active in the last accepted answer: what is sent on it reaches the
    /// client. (Sent before that, a keyframe would be lost, and a new
    /// subscriber would wait for the next one.)
    pub live: bool,
    /// Outgoing slots only: keeps the stream continuous across changes of source.
    pub rewriter: Rewriter,
    /// Outgoing video: keeps its VP8 picture numbering continuous likewise.
    pub picture_ids: PictureIds,
    /// Incoming video: the m-line was offered with simulcast layers (a camera).
    pub simulcast: bool,
    /// Outgoing video: how the client shows it (`None`: it never said).
    pub view: Option<View>,
    /// Outgoing video: the layer to send (`None`: nothing, hidden or no room).
    pub target: Option<u8>,
    /// Outgoing video: the layer being sent, from a keyframe on; `None` until a
    /// keyframe starts it (again, after a break).
    pub current: Option<u8>,
    /// Voice slots only: until when the current speaker keeps the slot against
    /// another who starts talking (the last voiced packet plus a pause's length).
    pub voice_until: Option<Instant>,
}

impl Slot {
    /// A voice slot the SFU sends on: it stays open while its speaker changes.
    pub fn is_voice_out(&self) -> bool {
        self.kind == TrackKind::Voice && self.dir == SlotDirection::Receive
    }

    /// Whether the m-line should be active.
    pub fn wanted(&self) -> bool {
        self.track.is_some() || self.is_voice_out()
    }

    pub fn str0m_direction(&self) -> Direction {
        match (self.wanted(), self.dir) {
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
    /// Incoming SSRC → index of its slot and simulcast layer, filled on first packet.
    pub ssrc_slot: HashMap<Ssrc, (usize, u8)>,
    pub next_timeout: Option<Instant>,
    /// Earliest entry this connection has in the SFU's timer heap.
    pub scheduled: Option<Instant>,
    /// Media was written since the last drain (it is in the SFU's drain list).
    pub written: bool,
    /// Voice tracks this connection hears, through its voice slots.
    pub listening: Vec<TrackId>,
    /// Indices of its voice slots (at most `VOICE_SLOTS`).
    pub voice_slots: Vec<usize>,
    /// The next offer restarts ICE.
    pub ice_restart: bool,
    /// The pending offer restarts ICE, with this new username fragment.
    pub pending_restart: Option<String>,
    /// The downlink estimate (bits/s) from congestion feedback, once there is one.
    pub estimate: Option<u64>,
    /// Whether it sends congestion feedback on what it receives.
    pub feedback: FeedbackWatch,
    /// When its videos may climb to higher layers.
    pub climb: ClimbGate,
    /// The estimate's cap from the loss it reports, and whether one was in
    /// force at the last allocation.
    pub loss_cap: LossCap,
    pub capped: bool,
    /// Its answer took redundant audio (RED): what it receives may carry it.
    pub red: bool,
    /// RED is not sent to it for now: its downlink is too narrow for every
    /// shown video's lowest layer beside redundant audio, and clean.
    pub red_off: bool,
    /// The bit rate last asked of str0m's bandwidth estimation (to probe for).
    pub desired: u64,
    /// The rate str0m was last asked to pad up to (never past its estimate).
    pub pad_to: u64,
    pub quality: QualityMeter,
    /// A relay to an edge (cascading): it answers the edge's offers and
    /// sends every layer of its tracks.
    pub relay: Option<Box<crate::sfu::relay::RelayOut>>,
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
            listening: Vec::new(),
            voice_slots: Vec::new(),
            ice_restart: false,
            pending_restart: None,
            estimate: None,
            feedback: FeedbackWatch::default(),
            climb: ClimbGate::default(),
            loss_cap: LossCap::default(),
            capped: false,
            red: false,
            red_off: false,
            desired: 0,
            pad_to: 0,
            quality: QualityMeter::default(),
            relay: None,
        }
    }

    /// Index of a free slot for a track of this kind and direction, adding one if none.
    /// Simulcast m-lines are reused only for simulcast tracks (and the other way
    /// round): an m-line's layers are fixed once negotiated.
    pub fn free_slot(&mut self, kind: TrackKind, dir: SlotDirection, simulcast: bool) -> usize {
        let found = self.slots.iter().position(|s| {
            s.track.is_none() && s.kind == kind && s.dir == dir && s.simulcast == simulcast
        });
        found.unwrap_or_else(|| {
            let i = self.add_slot(kind, dir);
            self.slots[i].simulcast = simulcast;
            i
        })
    }

    pub fn add_slot(&mut self, kind: TrackKind, dir: SlotDirection) -> usize {
        self.slots.push(Slot {
            mid: None,
            kind,
            dir,
            track: None,
            offered_active: false,
            live: false,
            rewriter: Rewriter::new(rand::random::<u16>() & 0x3fff),
            picture_ids: PictureIds::default(),
            simulcast: false,
            view: None,
            target: None,
            current: None,
            voice_until: None,
        });
        self.slots.len() - 1
    }

    /// The voice slot that carries `track`'s packet (`voiced` or not) to this
    /// connection, taking one over if `track` has none: an empty slot, or, for a
    /// voiced packet, one whose speaker has paused for `VOICE_HOLD`. `None` if
    /// every slot carries someone still talking. The flag says whether the slot
    /// changed hands.
    pub fn voice_slot_for(
        &mut self,
        track: TrackId,
        voiced: bool,
        now: Instant,
    ) -> Option<(usize, bool)> {
        // Which to take, best first: an empty slot; one whose holder has not said
        // anything; the one whose speaker has been quiet longest.
        let mut take: Option<(usize, (u8, Option<Instant>))> = None;
        for &i in &self.voice_slots {
            let s = &self.slots[i];
            if s.track == Some(track) {
                if voiced {
                    self.slots[i].voice_until = Some(now + VOICE_HOLD);
                }
                return Some((i, false));
            }
            if !s.live {
                continue; // not in an accepted answer yet: it may never exist
            }
            let rank = match (s.track, s.voice_until) {
                (None, _) => (0, None),
                (Some(_), _) if !voiced => continue,
                (Some(_), None) => (1, None),
                (Some(_), Some(t)) if t <= now => (2, Some(t)),
                _ => continue, // still talking
            };
            if take.is_none_or(|(_, best)| rank < best) {
                take = Some((i, rank));
            }
        }
        let (i, _) = take?;
        self.slots[i].track = Some(track);
        self.slots[i].voice_until = voiced.then_some(now + VOICE_HOLD);
        Some((i, true))
    }

    /// Stop carrying `track` on a voice slot; the slot it had, if any.
    pub fn drop_voice(&mut self, track: TrackId) -> Option<usize> {
        self.listening.retain(|&t| t != track);
        let i = self
            .voice_slots
            .iter()
            .copied()
            .find(|&i| self.slots[i].track == Some(track))?;
        self.slots[i].track = None;
        self.slots[i].voice_until = None;
        Some(i)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A connection with `n` negotiated voice slots.
    fn with_voice_slots(n: usize) -> Connection {
        let mut c = Connection::new(str0m::RtcConfig::new().build(Instant::now()));
        for k in 0..n {
            let i = c.add_slot(TrackKind::Voice, SlotDirection::Receive);
            c.slots[i].mid = Some(Mid::from(k.to_string().as_str()));
            c.slots[i].live = true;
            c.voice_slots.push(i);
        }
        c
    }

    #[test]
    fn a_new_voice_takes_the_slot_of_whoever_said_least_and_never_a_talker() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut c = with_voice_slots(3);
        for (i, until) in [(0, Some(s(1))), (1, None), (2, Some(s(5)))] {
            c.slots[i].track = Some(TrackId(i as u64 + 1));
            c.slots[i].voice_until = until;
        }
        // Slot 1's holder never said anything; slot 0's paused at 1 s; slot 2's talks.
        assert_eq!(c.voice_slot_for(TrackId(4), true, s(2)), Some((1, true)));
        assert_eq!(c.voice_slot_for(TrackId(5), true, s(2)), Some((0, true)));
        assert_eq!(c.voice_slot_for(TrackId(6), true, s(2)), None);
        // Silence takes nothing that is held, and a holder keeps its slot.
        assert_eq!(c.voice_slot_for(TrackId(7), false, s(9)), None);
        assert_eq!(c.voice_slot_for(TrackId(3), false, s(9)), Some((2, false)));
    }

    #[test]
    fn no_voice_goes_on_an_m_line_the_client_has_not_accepted() {
        let now = Instant::now();
        let mut c = with_voice_slots(1);
        c.slots[0].live = false;
        assert_eq!(c.voice_slot_for(TrackId(1), true, now), None);
        c.slots[0].live = true;
        assert_eq!(c.voice_slot_for(TrackId(1), true, now), Some((0, true)));
    }
}
