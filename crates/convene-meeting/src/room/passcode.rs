//! A host sets, changes or removes the meeting's passcode during the meeting
//! (issue 17, bug 11: a meeting created without one could never be raised to a
//! level that requires one). Hashing is slow on purpose, so it happens outside
//! the room: `set-passcode` asks for it ([`Effect::HashPasscode`]) and
//! [`Room::passcode_hashed`] applies the result. Every change is audited; the
//! passcode itself is never stored, sent or logged.

use super::{allowed, err, Change, Effect, ParticipantId, Room, RoomError};
use crate::access::Action;
use crate::passcode::{MAX_CHARS, MIN_CHARS};
use crate::protocol::{ErrorCode, ServerMessage};

impl Room {
    /// `set-passcode` from a host (the caller checked the role).
    pub(super) fn set_passcode(
        &mut self,
        who: &ParticipantId,
        passcode: Option<String>,
    ) -> Result<(), RoomError> {
        // One hash at a time per meeting: hashing threads are shared by the
        // whole server, and a later request must not be overtaken by an
        // earlier one still being hashed.
        if self.passcode_pending {
            return Err(err(
                ErrorCode::Busy,
                "the last passcode change is still being applied: try again in a moment",
            ));
        }
        match passcode.filter(|p| !p.is_empty()) {
            Some(passcode) => {
                if !(MIN_CHARS..=MAX_CHARS).contains(&passcode.chars().count()) {
                    return Err(err(
                        ErrorCode::Invalid,
                        format!("a passcode has {MIN_CHARS} to {MAX_CHARS} characters"),
                    ));
                }
                self.passcode_pending = true;
                self.effects.push_back(Effect::HashPasscode {
                    by: who.clone(),
                    passcode,
                });
            }
            None => {
                if !self.info.passcode {
                    return Ok(());
                }
                let level = self.level();
                if level.passcode_required {
                    return Err(err(
                        ErrorCode::PasscodeKept,
                        format!(
                            "{} requires a passcode: it can be changed, not removed",
                            level.name
                        ),
                    ));
                }
                self.apply_passcode(who, None);
            }
        }
        Ok(())
    }

    /// The hash of the passcode `who` asked for ([`Effect::HashPasscode`]). If
    /// they left or stopped being a host meanwhile, nothing changes.
    pub fn passcode_hashed(&mut self, who: &ParticipantId, hash: String) {
        self.passcode_pending = false;
        let Some(p) = self.participants.get(who) else {
            return;
        };
        if allowed(p.role, &self.settings, Action::Host).is_err() || self.ended {
            return;
        }
        self.apply_passcode(who, Some(hash));
    }

    /// A passcode a host set is being hashed: its change is still to come.
    pub fn hashing_passcode(&self) -> bool {
        self.passcode_pending
    }

    /// The passcode asked for could not be hashed (the server was busy, or
    /// it was refused): nothing changes, and another may be asked for.
    pub fn passcode_hash_failed(&mut self) {
        self.passcode_pending = false;
    }

    fn apply_passcode(&mut self, who: &ParticipantId, hash: Option<String>) {
        let outcome = match (self.info.passcode, hash.is_some()) {
            (false, true) => "set",
            (true, true) => "changed",
            _ => "removed",
        };
        self.info.passcode = hash.is_some();
        self.effects
            .push_back(Effect::Persist(Change::Passcode(hash)));
        self.audit("passcode", who, who, outcome, String::new());
        self.broadcast(ServerMessage::MeetingUpdated {
            meeting: self.info.clone(),
        });
    }
}
