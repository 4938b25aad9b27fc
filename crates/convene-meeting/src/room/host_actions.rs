//! What hosts do to others and to the meeting: mute, stop a source, change the settings.

use super::*;

impl Room {
    /// A host mutes `target`: the SFU stops forwarding their microphone at once,
    /// they are told, and everyone sees them muted.
    pub(super) fn host_mute(&mut self, host: &ParticipantId, target: &ParticipantId) {
        let by = self.participants[host].name.clone();
        let Some(t) = self.participants.get_mut(target) else {
            return;
        };
        t.muted_by_host = true;
        let role = t.role;
        if t.sources.contains(&Source::Microphone) {
            t.muted.insert(Source::Microphone);
        }
        self.effects.push_back(Effect::Media(MediaAction::Pause {
            who: target.clone(),
            source: Source::Microphone,
            paused: true,
        }));
        let may_unmute = access::check(role, &self.settings, Action::Unmute, true).is_ok();
        self.send(target, ServerMessage::MutedByHost { by, may_unmute });
        self.send_permissions(target);
        self.audit("mute", host, target, "muted", String::new());
        self.broadcast_update(target);
    }

    /// Stop forwarding `target`'s camera or screen (with its audio) and tell them.
    pub(super) fn stop_source(&mut self, target: &ParticipantId, source: Source, by: &str) {
        let sources: &[Source] = match source {
            Source::Screen => &[Source::Screen, Source::ScreenAudio],
            other => &[other][..],
        };
        let Some(t) = self.participants.get_mut(target) else {
            return;
        };
        for s in sources {
            if t.sources.remove(s) {
                t.muted.remove(s);
                self.effects
                    .push_back(Effect::Media(MediaAction::Unpublish {
                        who: target.clone(),
                        source: *s,
                    }));
            }
        }
        self.send(
            target,
            ServerMessage::SourceStopped {
                source,
                by: by.to_string(),
            },
        );
        self.broadcast_update(target);
    }

    /// A host changes the settings: they apply at once to everyone present.
    pub(super) fn update_settings(
        &mut self,
        host: &ParticipantId,
        by: &str,
        settings: Settings,
    ) -> Result<(), RoomError> {
        // Above the server's own limit is allowed: that limit applies anyway.
        if settings.max_participants == 0 {
            return Err(err(
                ErrorCode::Invalid,
                "the participant limit must be at least 1",
            ));
        }
        if settings.e2ee != self.settings.e2ee {
            return Err(err(
                ErrorCode::Invalid,
                "end-to-end encryption is chosen when a meeting is created and cannot be changed",
            ));
        }
        if settings.webinar != self.settings.webinar {
            return Err(err(
                ErrorCode::Invalid,
                "a webinar is chosen when a meeting is created and cannot be changed",
            ));
        }
        if settings == self.settings {
            return Ok(());
        }
        let detail = settings_diff(&self.settings, &settings);
        self.settings = settings.clone();
        self.audit("settings", host, host, "changed", detail);
        self.effects
            .push_back(Effect::Persist(Change::Settings(settings.clone())));
        self.broadcast(ServerMessage::SettingsUpdated { settings });
        // What people may no longer send stops now, not at their next publish.
        let admitted: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(_, p)| p.admitted)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &admitted {
            let p = &self.participants[id];
            let stop: Vec<Source> = [Source::Camera, Source::Screen]
                .into_iter()
                .filter(|s| {
                    p.sources.contains(s)
                        && access::check(p.role, &self.settings, Action::Publish(*s), false)
                            .is_err()
                })
                .collect();
            for s in stop {
                self.stop_source(id, s, by);
            }
            self.send_permissions(id);
        }
        // No lobby any more, or one that now lets some people straight in: they
        // come in.
        // Whoever the new rules keep out altogether is turned away.
        let lobby = self.settings.lobby;
        let bypass = self.settings.lobby_bypass;
        let mut admit = Vec::new();
        let mut turn_away = Vec::new();
        for w in self.waiting_ids() {
            let identity = &self.participants[&w].identity;
            if self.meets_rules(identity).is_err() {
                turn_away.push(w);
            } else if !lobby || bypass.lets_in(identity.level) {
                admit.push(w);
            }
        }
        if !admit.is_empty() || !turn_away.is_empty() {
            // Those the meeting has no seat for wait on, for a host to admit.
            let no_seat = admit
                .into_iter()
                .filter(|w| self.decide(host, w, true).is_err())
                .count();
            for w in turn_away {
                self.decide(host, &w, false)?;
            }
            self.notify_hosts();
            if no_seat > 0 {
                let text = format!(
                    "the meeting is full: {no_seat} still wait in the lobby until someone leaves"
                );
                for h in self.host_ids() {
                    self.send(
                        &h,
                        ServerMessage::Notice {
                            text: text.clone(),
                            about: Some(NoticeAbout::MeetingFull { waiting: no_seat }),
                        },
                    );
                }
            }
        }
        Ok(())
    }

    pub(super) fn host_ids(&self) -> Vec<ParticipantId> {
        self.participants
            .iter()
            .filter(|(_, p)| p.admitted && p.role.is_host() && p.away_since.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// A host removes someone (barred from coming back with `bar`, where their
    /// device can be recognised); `actor_role` must outrank theirs.
    pub(super) fn remove_by_host(
        &mut self,
        who: &ParticipantId,
        actor_role: Role,
        participant_id: String,
        bar: bool,
    ) -> Result<(), RoomError> {
        let target = ParticipantId(participant_id);
        let Some(t) = self.participants.get(&target).filter(|_| target != *who) else {
            return Err(err(ErrorCode::Invalid, "no such participant to remove"));
        };
        outranks(actor_role, t.role)?;
        let key = t.key.clone();
        let barred = bar && key.is_some();
        if bar && !barred {
            // Nothing recognises them again (no device cookie): say so
            // rather than pretend.
            self.send(
                who,
                ServerMessage::error(
                    ErrorCode::Invalid,
                    "removed, but they could not be barred: their client gives no way to recognise them again",
                ),
            );
        }
        if let (true, Some(key)) = (barred, key) {
            self.barred.insert(key.clone());
            self.effects.push_back(Effect::Persist(Change::Bar { key }));
        }
        self.send(
            &target,
            ServerMessage::Removed {
                by: self.participants[who].name.clone(),
                barred,
                reason: None,
                about: None,
            },
        );
        self.audit(
            "remove",
            who,
            &target,
            if barred {
                "removed and barred"
            } else {
                "removed"
            },
            String::new(),
        );
        self.remove(&target, LeaveReason::Removed);
        Ok(())
    }

    /// A host stops someone's camera or screen share (microphones are muted instead).
    pub(super) fn stop_source_by_host(
        &mut self,
        who: &ParticipantId,
        actor_role: Role,
        by: &str,
        participant_id: String,
        source: Source,
    ) -> Result<(), RoomError> {
        if !matches!(source, Source::Camera | Source::Screen) {
            return Err(err(
                ErrorCode::Invalid,
                "a host may stop a camera or a screen share (use mute for microphones)",
            ));
        }
        let target = ParticipantId(participant_id);
        let Some(t) = self.participants.get_mut(&target).filter(|t| t.admitted) else {
            return Err(err(ErrorCode::Invalid, "no such participant"));
        };
        outranks(actor_role, t.role)?;
        if !t.sources.contains(&source) {
            return Err(err(ErrorCode::WrongState, "they are not sending that"));
        }
        self.stop_source(&target, source, by);
        self.audit(
            "stop-source",
            who,
            &target,
            "stopped",
            format!("source: {}", source_name(source)),
        );
        Ok(())
    }

    /// A host gives someone a role; only the host makes or unmakes hosts, and
    /// a meeting keeps at least one. Kept across rejoins and restarts.
    pub(super) fn set_role(
        &mut self,
        who: &ParticipantId,
        actor_role: Role,
        participant_id: String,
        role: Role,
    ) -> Result<(), RoomError> {
        let target = ParticipantId(participant_id);
        let hosts = self
            .participants
            .values()
            .filter(|p| p.role == Role::Host)
            .count();
        let Some(t) = self.participants.get_mut(&target) else {
            return Err(err(ErrorCode::Invalid, "no such participant"));
        };
        if actor_role != Role::Host && (t.role == Role::Host || role == Role::Host) {
            return Err(err(
                ErrorCode::Forbidden,
                "only the host may make or unmake hosts",
            ));
        }
        if t.role == Role::Host && role != Role::Host && hosts == 1 {
            return Err(err(ErrorCode::Invalid, "a meeting keeps at least one host"));
        }
        let before = t.role;
        t.role = role;
        if let Some(key) = t.key.clone() {
            // They keep the role if they leave and come back, even after a restart.
            match role {
                Role::Participant => self.grants.remove(&key),
                _ => self.grants.insert(key.clone(), role),
            };
            self.effects
                .push_back(Effect::Persist(Change::Grant { key, role }));
        }
        self.send_permissions(&target);
        self.audit(
            "role-change",
            who,
            &target,
            &format!("{before:?} -> {role:?}").to_lowercase(),
            String::new(),
        );
        let admitted = self.participants.get(&target).is_some_and(|t| t.admitted);
        if !admitted {
            // In the lobby: they join the stage, or the audience, when admitted.
        } else if self.settings.webinar && webinar::on_stage(before) != webinar::on_stage(role) {
            self.stage_changed(&target, before, role);
        } else {
            self.broadcast_update(&target);
        }
        Ok(())
    }
}
