//! Coming in: the checks at the door (rules, seats), the welcome, and what each person may do.

use super::*;
use crate::address::address_group;

impl Room {
    /// Someone opened the signalling socket and sent `join`. With a valid resume
    /// token for a participant still within the reconnect grace, they come back as
    /// that participant and the others see no leave and join.
    pub fn join(&mut self, now: Instant, msg: ClientMessage) -> Result<ParticipantId, RoomError> {
        self.join_as(now, msg, Role::Participant)
    }

    /// Join with the role the edge established (a valid host key makes a host).
    pub fn join_as(
        &mut self,
        now: Instant,
        msg: ClientMessage,
        role: Role,
    ) -> Result<ParticipantId, RoomError> {
        self.enter(
            now,
            msg,
            Entrant {
                role,
                ..Entrant::participant()
            },
        )
    }

    /// Join as the person the edge recognised: their credentials' role, or a
    /// higher one a host granted them earlier; refused if a host barred them.
    pub fn enter(
        &mut self,
        now: Instant,
        msg: ClientMessage,
        entrant: Entrant,
    ) -> Result<ParticipantId, RoomError> {
        let ClientMessage::Join {
            protocol,
            name,
            resume,
            e2ee,
            ..
        } = msg
        else {
            return Err(err(
                ErrorCode::WrongState,
                "the first message must be \"join\"",
            ));
        };
        if protocol != PROTOCOL_VERSION {
            return Err(err(
                ErrorCode::UnsupportedProtocol,
                format!("this server speaks protocol {PROTOCOL_VERSION}, not {protocol}"),
            ));
        }
        self.clock = now;
        if let Some(token) = resume {
            let found = self
                .participants
                .iter()
                .find(|(_, p)| constant_time_eq(p.resume_token.as_bytes(), token.as_bytes()))
                .map(|(id, _)| id.clone())
                .or_else(|| self.returning_with(&token));
            let Some(id) = found else {
                return Err(err(
                    ErrorCode::NotFound,
                    "that session has ended; join again",
                ));
            };
            // If the old socket is still open (the client noticed the loss first), the
            // edge replaces it, and `Connect` replaces the old media connection.
            if let Some(p) = self.participants.get_mut(&id) {
                p.away_since = None;
            }
            if !self.participants[&id].admitted {
                // Still waiting (for example sent back by a level change): a
                // resume must not be a way past the lobby.
                self.send_lobby(&id);
                self.audit("join", &id, &id, "resumed in lobby", String::new());
                return Ok(id);
            }
            self.welcome(&id);
            self.send_audience(&id);
            self.send_questions(&id);
            self.start_media(&id);
            self.broadcast_update(&id);
            self.audit("join", &id, &id, "resumed", String::new());
            self.e2ee_tick(now); // a committer may be back
            return Ok(id);
        }
        if self.ended {
            return Err(err(ErrorCode::Ended, "this meeting has ended"));
        }
        self.e2ee_door(e2ee)?;
        let granted = entrant
            .key
            .as_ref()
            .and_then(|k| self.grants.get(k))
            .copied();
        let role = entrant.role.min(granted.unwrap_or(Role::Participant));
        if role != Role::Host
            && entrant
                .key
                .as_ref()
                .is_some_and(|k| self.barred.contains(k))
        {
            return Err(err(
                ErrorCode::Barred,
                "a host removed you from this meeting; you cannot rejoin it",
            ));
        }
        // The handling level binds everyone, host key or not: a key proves who
        // hosts, not who someone is.
        if let Err(why) = self.level().admits(&entrant.identity) {
            let code = if entrant.identity.is_verified() {
                ErrorCode::MfaRequired
            } else {
                ErrorCode::VerificationRequired
            };
            return Err(err(code, why));
        }
        // Identity rules bind everyone but holders of the host key (a credential
        // of its own); a host role granted to an account does not lift them.
        if entrant.role != Role::Host {
            self.meets_rules(&entrant.identity)?;
        }
        // Hosts, and those a host made co-host, still get into a locked meeting.
        if self.info.locked && !role.is_host() {
            return Err(err(
                ErrorCode::Locked,
                "this meeting is locked: no one new can join",
            ));
        }
        // Verified people go by the name their organisation gives them.
        let name = match &entrant.identity.name {
            Some(verified) if entrant.identity.is_verified() => {
                clean_name(verified, self.limits.max_name_chars)
                    .or_else(|_| clean_name(&name, self.limits.max_name_chars))?
            }
            _ => clean_name(&name, self.limits.max_name_chars)?,
        };
        let admitted = !self.settings.lobby
            || role.is_host()
            || self.settings.lobby_bypass.lets_in(entrant.identity.level);
        let address = entrant.address.map(address_group);
        // Those who wait take no seat in the meeting, but have seats of their own.
        if !admitted {
            self.lobby_has_room(address)?;
        } else if !self.has_seat(role) {
            return Err(err(ErrorCode::MeetingFull, "this meeting is full"));
        }
        let id = ParticipantId(format!("p{}", self.next_participant));
        self.next_participant += 1;
        self.participants.insert(
            id.clone(),
            Participant {
                name,
                role,
                key: entrant.key,
                admitted,
                waiting_since: (!admitted).then_some(now),
                address,
                identity: entrant.identity,
                muted_by_host: false,
                resume_token: random_token(),
                returning: None,
                away_since: None,
                sources: BTreeSet::new(),
                muted: BTreeSet::new(),
                media_path: None,
                last_ice_restart: None,
                video_sizes: Default::default(),
                hand: None,
                last_reaction: None,
                last_question: None,
                last_hand_change: None,
            },
        );
        let p = &self.participants[&id];
        let name = format!("name: {}; identity: {}", p.name, p.identity.describe());
        if !p.admitted {
            self.audit("join", &id, &id, "waiting in lobby", name);
            self.send_lobby(&id);
            self.notify_hosts();
            return Ok(id);
        }
        self.audit("join", &id, &id, "admitted", name);
        self.let_in(&id);
        if role.is_host() {
            self.lobby_changed(); // a host arrived: show them the lobby, tell those waiting
        }
        Ok(id)
    }

    /// The participant limit: the server's, or the meeting's own if lower.
    pub(super) fn capacity(&self) -> usize {
        self.limits
            .max_participants
            .min(self.settings.max_participants)
    }

    /// Whether someone with `role` may come in now: hosts and co-hosts always
    /// may (a meeting full of participants must not keep out those who run
    /// it); anyone else while fewer than the limit are in (hosts count). The
    /// lobby takes no seats.
    pub(super) fn has_seat(&self, role: Role) -> bool {
        role.is_host()
            || self.participants.values().filter(|p| p.admitted).count() < self.capacity()
    }

    /// The meeting's rules on identity: guests allowed or not, MFA required or not.
    pub(super) fn meets_rules(&self, identity: &Identity) -> Result<(), RoomError> {
        if identity.level == Level::Guest && !self.settings.guests_allowed {
            return Err(err(
                ErrorCode::VerificationRequired,
                "this meeting is only for people who sign in with their organisation's account",
            ));
        }
        if identity.is_verified() && self.settings.require_mfa && !identity.mfa {
            return Err(err(
                ErrorCode::MfaRequired,
                "this meeting needs a sign-in with a second factor (such as a security key or code): sign in again using one",
            ));
        }
        Ok(())
    }

    /// "welcome" with the first page of the participant list (the receiver
    /// first) and of the chat, then the rest in "roster" and "chat-history"
    /// pages: a message the size of a large meeting would stay in every
    /// connection's write buffer for good.
    pub(super) fn welcome(&mut self, id: &ParticipantId) {
        let p = &self.participants[id];
        let mut participants: Vec<ParticipantInfo> = std::iter::once(id)
            .chain(
                self.participants
                    .iter()
                    // A webinar's audience is not listed ([`webinar`]).
                    .filter(|(k, p)| {
                        p.admitted && *k != id && !webinar::in_audience(&self.settings, p)
                    })
                    .map(|(k, _)| k),
            )
            .map(|k| self.participant_info(k))
            .collect();
        let more_participants = participants.split_off(participants.len().min(ROSTER_PAGE));
        let mut chat: Vec<ChatMessage> = self.chat.iter().cloned().collect();
        let more_chat = chat.split_off(chat.len().min(CHAT_PAGE));
        let message = ServerMessage::Welcome {
            protocol: PROTOCOL_VERSION,
            participant_id: id.0.clone(),
            resume_token: p.resume_token.clone(),
            meeting: self.info.clone(),
            participants,
            chat,
            settings: self.settings.clone(),
            permissions: self.permissions_of(p),
            ice_servers: Vec::new(),
            e2ee: self.e2ee_info(),
        };
        self.send(id, message);
        for page in more_participants.chunks(ROSTER_PAGE) {
            let participants = page.to_vec();
            self.send(id, ServerMessage::Roster { participants });
        }
        for page in more_chat.chunks(CHAT_PAGE) {
            let messages = page.to_vec();
            self.send(id, ServerMessage::ChatHistory { messages });
        }
    }

    pub(super) fn permissions_of(&self, p: &Participant) -> Permissions {
        access::permissions(p.role, &self.settings, p.muted_by_host)
    }

    /// Tell `id` what they may do now (after a role, settings or mute change).
    pub(super) fn send_permissions(&mut self, id: &ParticipantId) {
        if let Some(p) = self.participants.get(id) {
            let permissions = self.permissions_of(p);
            self.send(id, ServerMessage::Permissions { permissions });
        }
    }

    /// A media connection for `id`, subscribed to everything the others publish.
    pub(super) fn start_media(&mut self, id: &ParticipantId) {
        self.effects
            .push_back(Effect::Media(MediaAction::Connect(id.clone())));
        let subs: Vec<(ParticipantId, Source)> = self
            .participants
            .iter()
            .filter(|(other, _)| *other != id)
            .flat_map(|(other, p)| p.sources.iter().map(move |s| (other.clone(), *s)))
            .collect();
        for (publisher, source) in subs {
            self.effects
                .push_back(Effect::Media(MediaAction::Subscribe {
                    who: id.clone(),
                    publisher,
                    source,
                }));
        }
    }
}
