//! An end-to-end encrypted meeting (docs/protocol.md §11): the MLS messages
//! passed to the meeting's Delivery Service ([`crate::e2ee::Group`]) and what
//! it says sent on; clear chat refused, encrypted chat relayed unread.

use super::*;
use crate::e2ee;
use crate::protocol::E2eeInfo;

impl Room {
    pub fn is_e2ee(&self) -> bool {
        self.e2ee.is_some()
    }

    /// For the welcome.
    pub(super) fn e2ee_info(&self) -> Option<E2eeInfo> {
        self.e2ee.as_ref().map(|g| E2eeInfo {
            group_id: g.id_b64(),
            epoch: g.epoch(),
            suite: e2ee::CIPHER_SUITE,
            sframe_suite: e2ee::SFRAME_SUITE,
        })
    }

    /// A client that cannot encrypt would send its camera and microphone in
    /// the clear to everyone: it is refused at the door.
    pub(super) fn e2ee_door(&self, client_can: bool) -> Result<(), RoomError> {
        if self.is_e2ee() && !client_can {
            return Err(err(
                ErrorCode::E2eeUnsupported,
                "this meeting is end-to-end encrypted, and this browser or app cannot take part in one: use a current Chromium-based browser or Firefox",
            ));
        }
        Ok(())
    }

    /// One of the `mls-*` client messages.
    pub(super) fn mls(
        &mut self,
        now: Instant,
        who: &ParticipantId,
        msg: ClientMessage,
    ) -> Result<(), RoomError> {
        let participants = &self.participants;
        let live = |p: &ParticipantId| connected(participants, p);
        let Some(group) = self.e2ee.as_mut() else {
            return Err(err(
                ErrorCode::WrongState,
                "this meeting is not end-to-end encrypted",
            ));
        };
        let refused = |e: e2ee::Refused| err(e.code, e.message);
        let out = match msg {
            ClientMessage::MlsKeyPackage { key_package } => group
                .key_package(now, who, &participants[who].identity, &key_package, &live)
                .map_err(refused)?,
            ClientMessage::MlsGroupCreated { group_info } => group
                .group_created(now, who, &group_info, &live)
                .map_err(refused)?,
            ClientMessage::MlsCommit {
                epoch,
                commit,
                welcome,
                group_info,
            } => group
                .commit(
                    now,
                    who,
                    epoch,
                    &commit,
                    welcome.as_deref(),
                    &group_info,
                    &live,
                )
                .map_err(refused)?,
            ClientMessage::MlsApp { message } => {
                let p = &participants[who];
                allowed(p.role, &self.settings, Action::Chat)?;
                if !group.is_member(who) {
                    return Err(err(
                        ErrorCode::WrongState,
                        "you are not in the meeting's encryption group yet",
                    ));
                }
                e2ee::check_application(group, &message).map_err(refused)?;
                let to: Vec<ParticipantId> = group
                    .members()
                    .iter()
                    .filter(|m| *m != who)
                    .cloned()
                    .collect();
                let message = ServerMessage::MlsApp {
                    message,
                    from: who.0.clone(),
                };
                self.effects.push_back(Effect::Broadcast { to, message });
                return Ok(());
            }
            ClientMessage::MlsCommitFailed { epoch, reason } => {
                // What went wrong on a member's side, for whoever looks into
                // it; the members' MLS libraries refuse a bad commit alike,
                // so the group does not fork. Recorded once per member and
                // epoch, and only as a short code: the text is the member's.
                if group.first_failure_report(who, epoch) {
                    let code = failure_code(&reason);
                    self.audit(
                        "e2ee",
                        who,
                        who,
                        "commit refused",
                        format!("epoch {epoch}: {code}"),
                    );
                }
                return Ok(());
            }
            _ => unreachable!("only mls-* messages come here"),
        };
        self.send_all(out);
        Ok(())
    }

    /// Someone left for good: the next commit takes them out of the group.
    pub(super) fn e2ee_left(&mut self, now: Instant, who: &ParticipantId) {
        let participants = &self.participants;
        let live = |p: &ParticipantId| connected(participants, p);
        if let Some(group) = self.e2ee.as_mut() {
            let out = group.left(now, who, &live);
            self.send_all(out);
        }
    }

    /// Time passed, or someone's connection came or went: a committer who is
    /// late or gone is passed over.
    pub(super) fn e2ee_tick(&mut self, now: Instant) {
        let participants = &self.participants;
        let live = |p: &ParticipantId| connected(participants, p);
        if let Some(group) = self.e2ee.as_mut() {
            let out = group.tick(now, &live);
            self.send_all(out);
        }
    }

    fn send_all(&mut self, out: e2ee::Outgoing) {
        for (to, message) in out {
            self.send(&to, message);
        }
    }
}

/// A client's reason for refusing a commit, as the audit log keeps it: its
/// first word if that is a plain code (`unknown-participant`, `invalid`…),
/// else `unknown`. Never the client's free text.
fn failure_code(reason: &str) -> &str {
    let word = reason
        .split(|c: char| c == ':' || c.is_whitespace())
        .next()
        .unwrap_or("");
    if !word.is_empty()
        && word.len() <= 40
        && word.chars().all(|c| c.is_ascii_lowercase() || c == '-')
    {
        word
    } else {
        "unknown"
    }
}

/// Whether `p` is in the meeting and connected: who may be asked to commit.
fn connected(participants: &BTreeMap<ParticipantId, Participant>, p: &ParticipantId) -> bool {
    participants
        .get(p)
        .is_some_and(|p| p.admitted && p.away_since.is_none())
}
