//! Raised hands and reactions (issue 17).
//!
//! A raised hand is part of the participant (`hand` in [`ParticipantInfo`]):
//! the number of its place in the queue, from a counter that only grows, so
//! the queue is every raised hand ordered by that number (first raised
//! first). Anyone may raise or lower their own hand; only hosts lower someone
//! else's. The hand stays through a lost connection and a resume (the
//! participant is the same), and goes with the participant: when they leave,
//! are removed, or are moved back to the lobby. Changes reach everyone as
//! `participant-updated`.
//!
//! A reaction is not kept: it is passed on to everyone as `reaction`, at most
//! one per person every [`REACTION_INTERVAL`]; those sent faster are dropped
//! without an error (a burst of clicks should not fill the sender's screen
//! with refusals). Reactions follow the meeting's chat setting: whoever may
//! not chat may not react either, so a meeting that quietens its chat is
//! quiet.
//!
//! [`ParticipantInfo`]: crate::protocol::ParticipantInfo

use std::time::{Duration, Instant};

use super::{allowed, err, ParticipantId, Room, RoomError};
use crate::access::Action;
use crate::protocol::{ErrorCode, Reaction, ServerMessage};

/// At most one reaction per person in this time; more are dropped.
pub const REACTION_INTERVAL: Duration = Duration::from_secs(1);
/// A webinar's attendee changes their hand at most this often.
pub const HAND_TOGGLE_INTERVAL: Duration = Duration::from_secs(1);

impl Room {
    /// `raise-hand`: to the end of the queue, unless already in it.
    pub(super) fn raise_hand(
        &mut self,
        now: Instant,
        who: &ParticipantId,
    ) -> Result<(), RoomError> {
        let attendee = self.is_attendee(who);
        let Some(p) = self.participants.get_mut(who) else {
            return Ok(());
        };
        if p.hand.is_some() {
            return Ok(()); // keeps its place
        }
        if attendee {
            hand_toggle(now, p)?;
        }
        p.hand = Some(self.next_hand);
        self.next_hand += 1;
        self.broadcast_update(who);
        Ok(())
    }

    /// `lower-hand`: one's own (`target` absent or oneself), or a host
    /// lowers someone else's.
    pub(super) fn lower_hand(
        &mut self,
        now: Instant,
        who: &ParticipantId,
        target: Option<ParticipantId>,
    ) -> Result<(), RoomError> {
        let target = target.unwrap_or_else(|| who.clone());
        if target != *who {
            let role = self.participants[who].role;
            allowed(role, &self.settings, Action::Host).map_err(|_| {
                err(
                    ErrorCode::Forbidden,
                    "only hosts may lower someone else's hand",
                )
            })?;
        }
        let attendee = self.is_attendee(&target);
        let Some(t) = self.participants.get_mut(&target).filter(|t| t.admitted) else {
            return Err(err(ErrorCode::Invalid, "no such participant"));
        };
        if attendee && target == *who && t.hand.is_some() {
            hand_toggle(now, t)?;
        }
        if t.hand.take().is_some() {
            self.broadcast_update(&target);
        }
        Ok(())
    }

    /// `react`: passed on to everyone, unless the sender may not chat (an
    /// error) or reacted less than [`REACTION_INTERVAL`] ago (dropped).
    pub(super) fn react(
        &mut self,
        now: Instant,
        who: &ParticipantId,
        reaction: Reaction,
    ) -> Result<(), RoomError> {
        let p = self
            .participants
            .get_mut(who)
            .ok_or_else(|| err(ErrorCode::WrongState, "not in this meeting"))?;
        allowed(p.role, &self.settings, Action::Chat).map_err(|e| {
            err(
                ErrorCode::Forbidden,
                format!("reactions follow the chat setting: {}", e.message),
            )
        })?;
        if p.last_reaction
            .is_some_and(|t| now.saturating_duration_since(t) < REACTION_INTERVAL)
        {
            return Ok(());
        }
        p.last_reaction = Some(now);
        let message = ServerMessage::Reaction {
            participant_id: who.0.clone(),
            reaction,
        };
        if super::webinar::in_audience(&self.settings, p) {
            // A webinar's audience does not learn of each other ([`webinar`]).
            self.tell_stage_and(who, message);
        } else {
            self.broadcast(message);
        }
        Ok(())
    }

    /// The raised hands, first raised first (for tests and the edge).
    pub fn hand_queue(&self) -> Vec<ParticipantId> {
        let mut hands: Vec<(u64, &ParticipantId)> = self
            .participants
            .iter()
            .filter_map(|(id, p)| p.hand.filter(|_| p.admitted).map(|h| (h, id)))
            .collect();
        hands.sort_unstable();
        hands.into_iter().map(|(_, id)| id.clone()).collect()
    }
}

/// A webinar's attendee raises or lowers their hand at most once per
/// [`HAND_TOGGLE_INTERVAL`]: each change is a message to every host, and a
/// thousand toggling fast would flood them.
fn hand_toggle(now: Instant, p: &mut super::Participant) -> Result<(), RoomError> {
    if p.last_hand_change
        .is_some_and(|t| now.saturating_duration_since(t) < HAND_TOGGLE_INTERVAL)
    {
        return Err(err(
            ErrorCode::RateLimited,
            "your hand was just raised or lowered: wait a moment",
        ));
    }
    p.last_hand_change = Some(now);
    Ok(())
}

#[cfg(test)]
mod tests;
