//! Webinars (issue 20): a stage everyone sees, an audience only hosts see.
//!
//! In a meeting with [`Settings::webinar`] on, hosts, co-hosts and presenters
//! are on stage: announced, listed and heard as in any meeting. Participants
//! are the audience. They receive the stage's media, may raise a hand and
//! chat as the chat setting allows, and publish nothing ([`access::check`]).
//! What is about an attendee reaches the hosts and the attendee alone: no
//! `participant-joined` or `-left` goes to the whole audience, so a join costs
//! the same with ten attendees or a thousand. Everyone is told how many
//! attendees there are in `audience`, at most every [`AUDIENCE_EVERY`]; hosts
//! page through them with `attendees`. A host brings an attendee on stage by
//! making them a presenter, and takes them off by making them a participant
//! again (`set-role`), which stops what they publish.
//!
//! [`Settings::webinar`]: crate::access::Settings::webinar

use super::*;

/// The audience's count goes out at most this often.
pub const AUDIENCE_EVERY: Duration = Duration::from_secs(1);
/// Attendees per `attendees` page.
pub const ATTENDEES_PAGE: usize = 50;

/// Whether this person is in a webinar's audience (admitted, not on stage).
pub(super) fn in_audience(settings: &Settings, p: &Participant) -> bool {
    settings.webinar && p.admitted && !on_stage(p.role)
}

/// Who is on a webinar's stage: hosts, co-hosts and presenters.
pub(super) fn on_stage(role: Role) -> bool {
    role <= Role::Presenter
}

/// The audience count as last told, and when.
#[derive(Debug, Default)]
pub(super) struct AudienceCount {
    told: Option<(usize, Instant)>,
    /// A joiner was told a count other than the last one told to all: the
    /// next tick tells everyone again, even if it is back to that one.
    stale: bool,
}

impl Room {
    /// Whether `id` is in a webinar's audience now (the server counts its
    /// own audience to decide when to send new attendees to an edge).
    pub fn in_audience(&self, id: &ParticipantId) -> bool {
        self.is_attendee(id)
    }

    pub(super) fn is_attendee(&self, id: &ParticipantId) -> bool {
        self.participants
            .get(id)
            .is_some_and(|p| in_audience(&self.settings, p))
    }

    /// Whether `viewer` may hear about `subject` (its joins, changes, leaves,
    /// connection quality): anyone on stage, yes; an attendee, only to hosts
    /// and themselves.
    pub fn sees(&self, viewer: &ParticipantId, subject: &ParticipantId) -> bool {
        viewer == subject
            || !self.is_attendee(subject)
            || self
                .participants
                .get(viewer)
                .is_some_and(|v| v.admitted && v.role.is_host())
    }

    /// A message about an attendee: to the hosts, and to the attendee when
    /// `to_them` (not, say, their own leave).
    pub(super) fn tell_about_attendee(
        &mut self,
        attendee: &ParticipantId,
        to_them: bool,
        message: ServerMessage,
    ) {
        let mut to = self.host_ids();
        to.retain(|h| h != attendee);
        if !to.is_empty() {
            self.effects.push_back(Effect::Broadcast {
                to,
                message: message.clone(),
            });
        }
        if to_them {
            self.send(attendee, message);
        }
    }

    fn audience_size(&self) -> usize {
        self.participants
            .values()
            .filter(|p| in_audience(&self.settings, p))
            .count()
    }

    /// After a welcome in a webinar: how many attendees there are.
    pub(super) fn send_audience(&mut self, id: &ParticipantId) {
        if self.settings.webinar {
            let attendees = self.audience_size();
            if self.audience.told.is_some_and(|(n, _)| n != attendees) {
                self.audience.stale = true;
            }
            self.send(id, ServerMessage::Audience { attendees });
        }
    }

    /// The count to everyone when it changed, at most every [`AUDIENCE_EVERY`]
    /// (a thousand joining at fifty a second must not be fifty messages a
    /// second to each of them).
    pub(super) fn tick_audience(&mut self, now: Instant) {
        if !self.settings.webinar {
            return;
        }
        let attendees = self.audience_size();
        match self.audience.told {
            Some((n, _)) if n == attendees && !self.audience.stale => return,
            Some((_, at)) if now.saturating_duration_since(at) < AUDIENCE_EVERY => return,
            None if attendees == 0 => return,
            _ => {}
        }
        self.audience.told = Some((attendees, now));
        self.audience.stale = false;
        self.broadcast(ServerMessage::Audience { attendees });
    }

    /// `attendees`: a page of the audience for a host, in the order of ids.
    pub(super) fn attendees_page(
        &mut self,
        host: &ParticipantId,
        after: Option<String>,
    ) -> Result<(), RoomError> {
        if !self.settings.webinar {
            return Err(err(
                ErrorCode::WrongState,
                "this meeting is not a webinar: everyone is in the participant list",
            ));
        }
        let total = self.audience_size();
        let start = match &after {
            Some(a) => std::ops::Bound::Excluded(ParticipantId(a.clone())),
            None => std::ops::Bound::Unbounded,
        };
        let mut ids: Vec<ParticipantId> = self
            .participants
            .range((start, std::ops::Bound::Unbounded))
            .filter(|(_, p)| in_audience(&self.settings, p))
            .map(|(id, _)| id.clone())
            .take(ATTENDEES_PAGE + 1)
            .collect();
        let more = ids.len() > ATTENDEES_PAGE;
        ids.truncate(ATTENDEES_PAGE);
        let next = if more {
            ids.last().map(|id| id.0.clone())
        } else {
            None
        };
        let attendees = ids.iter().map(|id| self.participant_info(id)).collect();
        self.send(
            host,
            ServerMessage::Attendees {
                total,
                attendees,
                next,
            },
        );
        Ok(())
    }

    /// A role change that moves someone on or off a webinar's stage.
    pub(super) fn stage_changed(&mut self, target: &ParticipantId, before: Role, after: Role) {
        if !self.settings.webinar || on_stage(before) == on_stage(after) {
            return;
        }
        if on_stage(after) {
            // On stage: everyone meets them now. Their hand has been answered.
            if let Some(p) = self.participants.get_mut(target) {
                p.hand = None;
            }
            let participant = self.participant_info(target);
            self.broadcast_except(target, ServerMessage::ParticipantJoined { participant });
            let participant = self.participant_info(target);
            self.send(target, ServerMessage::ParticipantUpdated { participant });
            self.send_questions(target); // the stage sees them all
            return;
        }
        // Off stage: what they sent stops, and only the hosts still see them.
        let Some(p) = self.participants.get_mut(target) else {
            return;
        };
        let sources = std::mem::take(&mut p.sources);
        p.muted.clear();
        self.unpublish(target, sources);
        let left = ServerMessage::ParticipantLeft {
            participant_id: target.0.clone(),
            reason: LeaveReason::OffStage,
        };
        let hosts = self.host_ids();
        let audience: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(id, p)| {
                *id != target && p.admitted && p.away_since.is_none() && !p.role.is_host()
            })
            .map(|(id, _)| id.clone())
            .collect();
        if !audience.is_empty() {
            self.effects.push_back(Effect::Broadcast {
                to: audience,
                message: left,
            });
        }
        // Hosts keep them, now as an attendee (a host page may show them).
        let participant = self.participant_info(target);
        let updated = ServerMessage::ParticipantUpdated { participant };
        if !hosts.is_empty() {
            self.effects.push_back(Effect::Broadcast {
                to: hosts,
                message: updated.clone(),
            });
        }
        self.send(target, updated);
    }
}

#[cfg(test)]
mod tests;
