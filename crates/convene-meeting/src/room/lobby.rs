//! The lobby: who waits, hosts admitting and denying, the waiting list hosts see, and sending people back to it.

use super::*;

impl Room {
    /// Whether one more may wait in the lobby, from `address`.
    pub(super) fn lobby_has_room(&self, address: Option<IpAddr>) -> Result<(), RoomError> {
        let (mut waiting, mut from_there) = (0, 0);
        for p in self.participants.values().filter(|p| !p.admitted) {
            waiting += 1;
            if address.is_some() && p.address == address {
                from_there += 1;
            }
        }
        if waiting >= self.limits.max_waiting {
            return Err(err(
                ErrorCode::LobbyFull,
                "the lobby of this meeting is full: try again later",
            ));
        }
        if from_there >= self.limits.max_waiting_per_address {
            return Err(err(
                ErrorCode::LobbyFull,
                "too many people from your network address are already waiting in this meeting's lobby: try again later",
            ));
        }
        Ok(())
    }

    /// Into the meeting proper: welcome, announce, media.
    pub(super) fn let_in(&mut self, id: &ParticipantId) {
        self.welcome(id);
        self.send_audience(id);
        self.send_questions(id);
        // A webinar's attendee is counted, not announced ([`webinar`]): not
        // even to hosts, who page through the audience when they want it.
        if !self.is_attendee(id) {
            let info = self.participant_info(id);
            self.broadcast_except(id, ServerMessage::ParticipantJoined { participant: info });
        }
        self.start_media(id);
    }

    pub(super) fn host_present(&self) -> bool {
        self.participants
            .values()
            .any(|p| p.role.is_host() && p.away_since.is_none())
    }

    pub(super) fn send_lobby(&mut self, id: &ParticipantId) {
        let message = ServerMessage::Lobby {
            meeting: self.info.clone(),
            host_present: self.host_present(),
        };
        self.send(id, message);
    }

    /// Hosts see who waits; those waiting learn whether a host is there.
    pub(super) fn lobby_changed(&mut self) {
        self.notify_hosts();
        for w in self.waiting_ids() {
            self.send_lobby(&w);
        }
    }

    /// Everyone in the lobby, longest waiting first.
    pub(super) fn waiting_ids(&self) -> Vec<ParticipantId> {
        let mut waiting: Vec<(Option<Instant>, ParticipantId)> = self
            .participants
            .iter()
            .filter(|(_, p)| !p.admitted)
            .map(|(id, p)| (p.waiting_since, id.clone()))
            .collect();
        waiting.sort_by_key(|(since, _)| *since);
        waiting.into_iter().map(|(_, id)| id).collect()
    }

    /// Hosts get the current lobby list.
    pub(super) fn notify_hosts(&mut self) {
        let waiting: Vec<Waiting> = self
            .participants
            .iter()
            .filter(|(_, p)| !p.admitted)
            .map(|(id, p)| Waiting {
                id: id.0.clone(),
                name: p.name.clone(),
                identity: Verification::of(&p.identity),
            })
            .collect();
        for h in self.host_ids() {
            self.send(
                &h,
                ServerMessage::LobbyUpdated {
                    waiting: waiting.clone(),
                },
            );
        }
    }

    /// Back to the lobby: their media stops, the others see them leave, and a
    /// host must admit them again.
    pub(super) fn move_to_lobby(&mut self, now: Instant, id: &ParticipantId) {
        let attendee = self.is_attendee(id);
        let Some(p) = self.participants.get_mut(id) else {
            return;
        };
        p.admitted = false;
        p.waiting_since = Some(now);
        p.hand = None; // the queue is the meeting's: back in it only by raising again
        let sources = std::mem::take(&mut p.sources);
        p.muted.clear();
        self.unpublish(id, sources);
        self.effects
            .push_back(Effect::Media(MediaAction::Disconnect(id.clone())));
        let left = ServerMessage::ParticipantLeft {
            participant_id: id.0.clone(),
            reason: LeaveReason::Lobby,
        };
        if attendee {
            self.tell_about_attendee(id, false, left);
        } else {
            self.broadcast(left);
        }
        // Out of the encryption group too, at once: from the lobby they must
        // read nothing more of the meeting (they are added again if admitted).
        self.e2ee_left(now, id);
        self.send_lobby(id);
    }

    /// A host lets `target` in (true) or turns them away (false).
    pub(super) fn decide(
        &mut self,
        host: &ParticipantId,
        target: &ParticipantId,
        admit: bool,
    ) -> Result<(), RoomError> {
        if self.participants.get(target).is_none_or(|p| p.admitted) {
            return Err(err(ErrorCode::Invalid, "no one by that id is waiting"));
        }
        if admit {
            let role = self.participants[target].role;
            if !self.has_seat(role) {
                let limit = self.capacity();
                return Err(err(
                    ErrorCode::Invalid,
                    format!("the meeting is full ({limit} people): no one more can be admitted until someone leaves"),
                ));
            }
            if let Some(p) = self.participants.get_mut(target) {
                p.admitted = true;
                p.waiting_since = None;
            }
            self.audit("admit", host, target, "admitted", String::new());
            self.let_in(target);
        } else {
            self.audit("deny", host, target, "denied", String::new());
            self.send(target, ServerMessage::Denied {});
            self.participants.remove(target);
            self.effects.push_back(Effect::Close {
                who: target.clone(),
            });
        }
        Ok(())
    }

    /// Those who waited in the lobby past the limit are told why and let go.
    pub(super) fn expire_waiting(&mut self, now: Instant) {
        let limit = self.limits.lobby_timeout;
        let expired: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(_, p)| {
                !p.admitted
                    && p.waiting_since
                        .is_some_and(|t| now.saturating_duration_since(t) >= limit)
            })
            .map(|(id, _)| id.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        let minutes = limit.as_secs().div_ceil(60);
        for id in &expired {
            self.send(
                id,
                ServerMessage::error(
                    ErrorCode::LobbyTimeout,
                    format!(
                        "no host let you in within {minutes} minutes; join again to wait again"
                    ),
                ),
            );
            self.audit(
                "leave",
                id,
                id,
                "lobby timed out",
                format!("waited {minutes} minutes without being admitted"),
            );
            self.participants.remove(id);
            self.effects.push_back(Effect::Close { who: id.clone() });
        }
        self.notify_hosts();
    }
}
