//! Messages out: to one, to all, to all but one, and what non-hosts may not see; audit rows.

use super::*;

impl Room {
    pub(super) fn audit(
        &mut self,
        event: &'static str,
        actor: &ParticipantId,
        subject: &ParticipantId,
        outcome: &str,
        detail: String,
    ) {
        self.effects.push_back(Effect::Audit(AuditFact {
            event,
            actor: actor.0.clone(),
            subject: subject.0.clone(),
            outcome: outcome.to_string(),
            detail,
        }));
    }

    pub(super) fn participant_info(&self, id: &ParticipantId) -> ParticipantInfo {
        let p = &self.participants[id];
        ParticipantInfo {
            id: id.0.clone(),
            name: p.name.clone(),
            sources: p.sources.iter().copied().collect(),
            muted: p.muted.iter().copied().collect(),
            connected: p.away_since.is_none(),
            role: p.role,
            identity: Verification::of(&p.identity),
            media_path: p.media_path,
            hand: p.hand,
        }
    }

    /// A change to `id` (in a webinar's audience: to the hosts and them only).
    pub(super) fn broadcast_update(&mut self, id: &ParticipantId) {
        let participant = self.participant_info(id);
        let message = ServerMessage::ParticipantUpdated { participant };
        if self.is_attendee(id) {
            self.tell_about_attendee(id, true, message);
        } else {
            self.broadcast(message);
        }
    }

    pub(super) fn send(&mut self, to: &ParticipantId, message: ServerMessage) {
        let host = self
            .participants
            .get(to)
            .is_some_and(|p| p.admitted && p.role.is_host());
        let message = if host { message } else { for_non_host(message) };
        self.effects.push_back(Effect::Send {
            to: to.clone(),
            message,
        });
    }

    /// To everyone connected (those away catch up from "welcome" when they resume).
    pub(super) fn broadcast(&mut self, message: ServerMessage) {
        self.broadcast_filtered(None, message);
    }

    pub(super) fn broadcast_except(&mut self, except: &ParticipantId, message: ServerMessage) {
        self.broadcast_filtered(Some(except), message);
    }

    /// Hosts get the message as it is, everyone else [`for_non_host`]'s version.
    pub(super) fn broadcast_filtered(
        &mut self,
        except: Option<&ParticipantId>,
        message: ServerMessage,
    ) {
        let (mut hosts, mut others) = (Vec::new(), Vec::new());
        for (id, p) in &self.participants {
            if p.admitted && p.away_since.is_none() && Some(id) != except {
                let group = if p.role.is_host() {
                    &mut hosts
                } else {
                    &mut others
                };
                group.push(id.clone());
            }
        }
        if !others.is_empty() {
            let message = for_non_host(message.clone());
            self.effects.push_back(Effect::Broadcast {
                to: others,
                message,
            });
        }
        if !hosts.is_empty() {
            self.effects
                .push_back(Effect::Broadcast { to: hosts, message });
        }
    }
}

/// Only hosts learn who signed in with more than one factor.
pub(super) fn for_non_host(message: ServerMessage) -> ServerMessage {
    let strip = |mut p: ParticipantInfo| {
        p.identity = p.identity.public();
        p.media_path = None;
        p
    };
    match message {
        ServerMessage::Welcome {
            protocol,
            participant_id,
            resume_token,
            meeting,
            participants,
            chat,
            settings,
            permissions,
            ice_servers,
            e2ee,
        } => ServerMessage::Welcome {
            protocol,
            participant_id,
            resume_token,
            meeting,
            participants: participants.into_iter().map(strip).collect(),
            chat,
            settings,
            permissions,
            ice_servers,
            e2ee,
        },
        ServerMessage::Roster { participants } => ServerMessage::Roster {
            participants: participants.into_iter().map(strip).collect(),
        },
        ServerMessage::ParticipantJoined { participant } => ServerMessage::ParticipantJoined {
            participant: strip(participant),
        },
        ServerMessage::ParticipantUpdated { participant } => ServerMessage::ParticipantUpdated {
            participant: strip(participant),
        },
        ServerMessage::Attendees {
            total,
            attendees,
            next,
        } => ServerMessage::Attendees {
            total,
            attendees: attendees.into_iter().map(strip).collect(),
            next,
        },
        // None of these carries a participant's identity beyond its public part
        // (the lobby list goes to hosts only). Listed rather than matched with a
        // wildcard so that a new message has to be decided on here.
        other @ (ServerMessage::IceServers { .. }
        | ServerMessage::Permissions { .. }
        | ServerMessage::SettingsUpdated { .. }
        | ServerMessage::SourceStopped { .. }
        | ServerMessage::ChatHistory { .. }
        | ServerMessage::Audience { .. }
        | ServerMessage::Question { .. }
        | ServerMessage::Questions { .. }
        | ServerMessage::QuestionRemoved { .. }
        | ServerMessage::ParticipantLeft { .. }
        | ServerMessage::Offer { .. }
        | ServerMessage::Chat { .. }
        | ServerMessage::Reaction { .. }
        | ServerMessage::Speaking { .. }
        | ServerMessage::VoiceSlot { .. }
        | ServerMessage::Pong { .. }
        | ServerMessage::VideoLayers { .. }
        | ServerMessage::ConnectionQuality { .. }
        | ServerMessage::MeetingUpdated { .. }
        | ServerMessage::Removed { .. }
        | ServerMessage::Notice { .. }
        | ServerMessage::Lobby { .. }
        | ServerMessage::LobbyUpdated { .. }
        | ServerMessage::MutedByHost { .. }
        | ServerMessage::Denied { .. }
        | ServerMessage::Ended { .. }
        | ServerMessage::Restarting {}
        // MLS messages are the members' own, end to end: passed on as they came.
        | ServerMessage::MlsCreateRequest { .. }
        | ServerMessage::MlsCommitRequest { .. }
        | ServerMessage::MlsCommit { .. }
        | ServerMessage::MlsWelcome { .. }
        | ServerMessage::MlsApp { .. }
        | ServerMessage::Error { .. }) => other,
    }
}
