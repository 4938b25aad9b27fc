//! The meeting's handling level: what it requires of the settings and of who is in, and hosts changing it.

use super::*;

impl Room {
    /// The meeting's handling level.
    pub fn level(&self) -> &crate::policy::HandlingLevel {
        self.limits.policy.level_or_lowest(&self.info.level.id)
    }

    pub(super) fn meets_level(
        &self,
        level: &crate::policy::HandlingLevel,
        settings: &Settings,
    ) -> Result<(), RoomError> {
        let unmet = level.unmet(&crate::policy::Proposal {
            settings,
            has_passcode: self.info.passcode,
            sign_in_available: self.limits.sign_in_available,
        });
        if unmet.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = unmet.into_iter().map(|u| u.0).collect();
        Err(err(ErrorCode::Policy, list.join("; ")))
    }

    /// A host changes the handling level. Raising applies the new requirements
    /// at once: people the level does not admit are removed, and unverified
    /// guests go back to the lobby when the level newly requires one.
    pub(super) fn set_level(
        &mut self,
        now: Instant,
        host: &ParticipantId,
        by: &str,
        id: &str,
        raise: bool,
        confirm: bool,
    ) -> Result<(), RoomError> {
        let policy = self.limits.policy.clone();
        let Some(new) = policy.level(id) else {
            let ids: Vec<&str> = policy.levels().iter().map(|l| l.id.as_str()).collect();
            let shown: String = id.chars().take(40).collect();
            return Err(err(
                ErrorCode::Invalid,
                format!(
                    "no level \"{shown}\"; this server's levels are {}",
                    ids.join(", ")
                ),
            ));
        };
        let old = self.level().clone();
        if new.id == old.id {
            return Ok(());
        }
        let lowering = policy.rank(&new.id) < policy.rank(&old.id);
        if lowering && !confirm {
            return Err(err(
                ErrorCode::Invalid,
                format!(
                    "lowering the level from {} to {} must be confirmed",
                    old.name, new.name
                ),
            ));
        }
        if let Err(why) = new.admits(&self.participants[host].identity) {
            return Err(err(
                ErrorCode::Policy,
                format!("you could not stay in the meeting at that level: {why}"),
            ));
        }
        let mut settings = if raise {
            new.raise(&self.settings)
        } else {
            self.settings.clone()
        };
        // Encryption cannot be switched on in a running meeting: everyone's
        // media would have to start again under keys (the level then names
        // it as unmet).
        settings.e2ee = self.settings.e2ee;
        settings.webinar = self.settings.webinar;
        self.meets_level(new, &settings)?;
        self.info.level = new.view();
        self.effects
            .push_back(Effect::Persist(Change::Level(new.id.clone())));
        self.audit(
            "level",
            host,
            host,
            if lowering { "lowered" } else { "raised" },
            format!("{} -> {}", old.name, new.name),
        );
        // From this moment chat is kept, or no longer kept, as the new level says.
        let (was_days, new_days) = (old.chat_retention_days, new.chat_retention_days);
        if was_days != new_days {
            self.audit(
                "chat-retention",
                host,
                host,
                if new_days > 0 { "kept" } else { "not kept" },
                format!("{was_days} -> {new_days} days, from this moment"),
            );
            if new_days == 0 {
                self.chat.clear();
            }
        }
        self.broadcast(ServerMessage::MeetingUpdated {
            meeting: self.info.clone(),
        });
        for w in self.waiting_ids() {
            self.send_lobby(&w);
        }
        if lowering {
            return self.update_settings(host, by, settings);
        }
        // Apply the new level to everyone present or waiting.
        let mut removed = Vec::new();
        let mut to_lobby = Vec::new();
        for (id, p) in &self.participants {
            if let Err(why) = new.admits(&p.identity) {
                // admits refuses guests first; a verified person, for want of a second factor.
                let about = if p.identity.level == Level::Guest {
                    RemovedAbout::LevelVerified {
                        level: new.id.clone(),
                    }
                } else {
                    RemovedAbout::LevelMfa {
                        level: new.id.clone(),
                    }
                };
                removed.push((id.clone(), p.name.clone(), why, about));
            } else if new.lobby_required
                && !old.lobby_required
                && p.admitted
                && p.identity.level == Level::Guest
                && !p.role.is_host()
            {
                to_lobby.push((id.clone(), p.name.clone()));
            }
        }
        for (id, _, why, about) in &removed {
            self.send(
                id,
                ServerMessage::Removed {
                    by: by.to_string(),
                    barred: false,
                    reason: Some(why.clone()),
                    about: Some(about.clone()),
                },
            );
            self.audit("remove", host, id, "removed by level", why.clone());
            self.remove(id, LeaveReason::Removed);
        }
        for (id, _) in &to_lobby {
            self.move_to_lobby(now, id);
            self.audit(
                "lobby",
                host,
                id,
                "moved to lobby by level",
                new.name.clone(),
            );
        }
        // Settings last: people are removed above with the level's reason, not
        // turned away by the raised settings.
        self.update_settings(host, by, settings)?;
        // The lobby's new list first: a client shows the notice after it
        // (its status line says the last), not the other way round.
        if !to_lobby.is_empty() {
            self.notify_hosts();
        }
        let mut notes = Vec::new();
        if !removed.is_empty() {
            let names: Vec<&str> = removed.iter().map(|(_, n, _, _)| n.as_str()).collect();
            notes.push(format!(
                "{} does not admit {}: removed",
                new.name,
                names.join(", ")
            ));
        }
        if !to_lobby.is_empty() {
            let names: Vec<&str> = to_lobby.iter().map(|(_, n)| n.as_str()).collect();
            notes.push(format!(
                "{} requires the lobby: {} wait there for a host to admit them again",
                new.name,
                names.join(", ")
            ));
        }
        if !notes.is_empty() {
            let text = notes.join(". ");
            let about = NoticeAbout::LevelChanged {
                level: new.id.clone(),
                removed: removed.iter().map(|(_, n, _, _)| n.clone()).collect(),
                to_lobby: to_lobby.iter().map(|(_, n)| n.clone()).collect(),
            };
            for h in self.host_ids() {
                self.send(
                    &h,
                    ServerMessage::Notice {
                        text: text.clone(),
                        about: Some(about.clone()),
                    },
                );
            }
        }
        Ok(())
    }
}
