//! The Delivery Service of an end-to-end encrypted meeting (docs/e2ee-design.md
//! §5): the server's part of MLS (RFC 9420). It holds no key and reads no
//! content. It orders commits (the first valid commit for the current epoch
//! wins; any other is stale), decides who commits the joins and leaves it
//! knows of, passes that task on when the committer is slow or gone, keeps the
//! newest GroupInfo, and routes Welcomes to the people they add.
//!
//! Sans-IO: the room feeds it events and sends what it returns.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::identity::Identity;
use crate::protocol::{ErrorCode, MlsAdd, MlsAdded, ServerMessage};
use crate::room::ParticipantId;
use sha2::{Digest, Sha256};

pub mod check;
pub mod credential;
pub mod wire;

use check::{HandshakeCheck, NewCheck};

use wire::{ContentType, WireFormat};

/// MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 (RFC 9420 §17.1).
pub const CIPHER_SUITE: u16 = 1;
/// SFrame AES_128_GCM_SHA256_128 (RFC 9605 §4.5).
pub const SFRAME_SUITE: u16 = 4;
/// How long a committer has to answer before the next one is asked.
pub const COMMIT_DEADLINE: Duration = Duration::from_secs(2);
/// Largest KeyPackage (decoded): one leaf with a basic credential is under 1 KB.
pub const MAX_KEY_PACKAGE: usize = 4 * 1024;
/// Largest commit, Welcome or GroupInfo (decoded). A Welcome and a GroupInfo
/// carry the ratchet tree, about 230 bytes a member, so a meeting of a few
/// hundred fits, and one message with all three stays under the socket's
/// 256 KiB once in base64.
pub const MAX_HANDSHAKE: usize = 60 * 1024;
/// Largest application message (decoded): chat of 2000 characters, encrypted.
pub const MAX_APPLICATION: usize = 16 * 1024;
/// A participant's key packages are taken at most this often: each one from
/// a member makes the group remove and add them again (a rekey for everyone),
/// so a client must not be able to keep the group busy. Clients send one at
/// join, again after 10 s without a Welcome, and after a resume.
pub const KEY_PACKAGE_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub code: ErrorCode,
    pub message: String,
}

fn bad(message: impl Into<String>) -> Refused {
    Refused {
        code: ErrorCode::MlsBadMessage,
        message: message.into(),
    }
}

fn stale(message: impl Into<String>) -> Refused {
    Refused {
        code: ErrorCode::MlsStaleEpoch,
        message: message.into(),
    }
}

/// What the committer was asked to do.
#[derive(Debug, Clone)]
enum Task {
    Create,
    Commit {
        add: Vec<(ParticipantId, Vec<u8>)>,
        remove: Vec<ParticipantId>,
    },
}

#[derive(Debug, Clone)]
struct Request {
    /// The epoch the commit must be made at (0 for a creation, unused).
    epoch: u64,
    task: Task,
    /// Everyone asked so far: any of them may answer; the first answer wins.
    asked: BTreeSet<ParticipantId>,
    /// The one asked last, and until when they have.
    current: ParticipantId,
    deadline: Instant,
}

/// One meeting's MLS group, as the server sees it.
#[derive(Debug)]
pub struct Group {
    group_id: Vec<u8>,
    /// `None` until someone has made the group.
    epoch: Option<u64>,
    group_info: Option<Vec<u8>>,
    /// In the group at `epoch`, in the order they came in (who commits is
    /// the first of them who is connected).
    members: Vec<ParticipantId>,
    /// Key packages of those waiting to be added, in the order they came.
    joining: Vec<(ParticipantId, Vec<u8>)>,
    /// Members who left the meeting and are still in the group.
    leaving: BTreeSet<ParticipantId>,
    request: Option<Request>,
    /// Asked and did not answer in time: asked again only when nobody else can be.
    passed_over: BTreeSet<ParticipantId>,
    /// When each participant's last key package was taken.
    key_package_at: std::collections::BTreeMap<ParticipantId, Instant>,
    /// The epoch each member last reported a commit failure for (one audit row each).
    failure_reported: std::collections::BTreeMap<ParticipantId, u64>,
    /// Checks each commit before anyone gets it (none in the domain's own tests).
    check: Option<Box<dyn HandshakeCheck>>,
    new_check: Option<NewCheck>,
}

/// What the room must send, and to whom.
pub type Outgoing = Vec<(ParticipantId, ServerMessage)>;

impl Default for Group {
    fn default() -> Self {
        Self::new()
    }
}

impl Group {
    /// A group whose handshake messages are checked only for their framing
    /// (the domain's tests; a server always gives a checker).
    pub fn new() -> Self {
        Self::checked_by(None)
    }

    /// A group whose commits `new_check`'s checker verifies before fan-out
    /// (the same for the groups that follow it, after a reset).
    pub fn checked_by(new_check: Option<NewCheck>) -> Self {
        Group {
            group_id: new_group_id(),
            epoch: None,
            group_info: None,
            members: Vec::new(),
            joining: Vec::new(),
            leaving: BTreeSet::new(),
            request: None,
            passed_over: BTreeSet::new(),
            key_package_at: std::collections::BTreeMap::new(),
            failure_reported: std::collections::BTreeMap::new(),
            check: new_check.map(|f| f()),
            new_check,
        }
    }

    /// For the welcome: the group's id (base64), and its epoch once made.
    pub fn id_b64(&self) -> String {
        B64.encode(&self.group_id)
    }

    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    pub fn is_member(&self, who: &ParticipantId) -> bool {
        self.members.contains(who)
    }

    pub fn members(&self) -> &[ParticipantId] {
        &self.members
    }

    /// `who` asks to be added, with their KeyPackage (base64), whose
    /// credential must fit `identity`, what the server verified of them. A
    /// member who asks again lost their group state (a reload, a missed
    /// commit): they are removed and added afresh in one commit.
    pub fn key_package(
        &mut self,
        now: Instant,
        who: &ParticipantId,
        identity: &Identity,
        key_package: &str,
        live: &dyn Fn(&ParticipantId) -> bool,
    ) -> Result<Outgoing, Refused> {
        if self
            .key_package_at
            .get(who)
            .is_some_and(|t| now.saturating_duration_since(*t) < KEY_PACKAGE_INTERVAL)
        {
            return Err(Refused {
                code: ErrorCode::RateLimited,
                message: format!(
                    "a key package at most every {} s",
                    KEY_PACKAGE_INTERVAL.as_secs()
                ),
            });
        }
        let bytes = decode(key_package, MAX_KEY_PACKAGE, "key package")?;
        let header = wire::key_package(&bytes).map_err(|e| bad(format!("key package: {e}")))?;
        if header.cipher_suite != CIPHER_SUITE {
            return Err(bad(format!(
                "key package: this meeting uses cipher suite {CIPHER_SUITE}"
            )));
        }
        // The credential must name the sender and what the server verified of
        // them, so that nobody can enter the group under another participant's
        // name or claim a sign-in they did not make.
        credential::check(&header.identity, who, identity)
            .map_err(|why| bad(format!("key package: {why}")))?;
        if self.is_member(who) || self.being_added(who) {
            self.leaving.insert(who.clone());
        }
        self.joining.retain(|(p, _)| p != who);
        self.joining.push((who.clone(), bytes));
        self.key_package_at.insert(who.clone(), now);
        Ok(self.drive(now, live))
    }

    /// The first member's new group (base64 GroupInfo at epoch 0).
    pub fn group_created(
        &mut self,
        now: Instant,
        who: &ParticipantId,
        group_info: &str,
        live: &dyn Fn(&ParticipantId) -> bool,
    ) -> Result<Outgoing, Refused> {
        match &self.request {
            Some(Request {
                task: Task::Create,
                asked,
                ..
            }) if asked.contains(who) => {}
            _ => return Err(stale("the group exists already: join it")),
        }
        let bytes = decode(group_info, MAX_HANDSHAKE, "group info")?;
        self.check_group_info(&bytes, 0)?;
        if let Some(check) = &mut self.check {
            let key_package = self
                .joining
                .iter()
                .find(|(p, _)| p == who)
                .map(|(_, kp)| kp.as_slice())
                .unwrap_or_default();
            if let Err(e) = check.created(&bytes, &self.group_id, &who.0, key_package) {
                self.refused_by_check(now, who);
                return Err(bad(format!("group info: {e}")));
            }
        }
        self.epoch = Some(0);
        self.group_info = Some(bytes);
        self.members = vec![who.clone()];
        self.joining.retain(|(p, _)| p != who);
        self.request = None;
        self.passed_over.remove(who);
        Ok(self.drive(now, live))
    }

    /// A commit for `epoch`, with the Welcome for those it adds and the new
    /// GroupInfo. Accepted only from someone asked to commit, for the
    /// current epoch: the first such commit wins.
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &mut self,
        now: Instant,
        who: &ParticipantId,
        epoch: u64,
        commit: &str,
        welcome: Option<&str>,
        group_info: &str,
        live: &dyn Fn(&ParticipantId) -> bool,
    ) -> Result<Outgoing, Refused> {
        let Some(current) = self.epoch else {
            return Err(stale("there is no group yet"));
        };
        if epoch != current {
            return Err(stale(format!(
                "the group is at epoch {current}, not {epoch}"
            )));
        }
        let Some(request) = self
            .request
            .as_ref()
            .filter(|r| r.epoch == current && r.asked.contains(who))
        else {
            return Err(stale("nobody asked you for a commit at this epoch"));
        };
        let Task::Commit { add, remove } = request.task.clone() else {
            return Err(stale("the group is being made"));
        };
        let commit_bytes = decode(commit, MAX_HANDSHAKE, "commit")?;
        let header = wire::framed(&commit_bytes).map_err(|e| bad(format!("commit: {e}")))?;
        if header.content_type != ContentType::Commit {
            return Err(bad("commit: not a commit"));
        }
        if header.group_id != self.group_id || header.epoch != current {
            return Err(bad("commit: for another group or epoch"));
        }
        let welcome = match (welcome, add.is_empty()) {
            (Some(w), false) => {
                let bytes = decode(w, MAX_HANDSHAKE, "welcome")?;
                if !wire::is_welcome(&bytes) {
                    return Err(bad("welcome: not a Welcome"));
                }
                Some(w.to_owned())
            }
            (None, false) => {
                return Err(bad("welcome: the commit adds people; send their Welcome"))
            }
            (_, true) => None,
        };
        let info = decode(group_info, MAX_HANDSHAKE, "group info")?;
        self.check_group_info(&info, current + 1)?;
        if let Some(check) = &mut self.check {
            let adds: Vec<(&str, &[u8])> = add
                .iter()
                .map(|(p, kp)| (p.0.as_str(), kp.as_slice()))
                .collect();
            let removes: Vec<&str> = remove.iter().map(|p| p.0.as_str()).collect();
            if let Err(e) = check.commit(&commit_bytes, &who.0, &adds, &removes) {
                self.refused_by_check(now, who);
                return Err(bad(format!("commit: refused: {e}")));
            }
        }

        // Accepted: the group moves on.
        let before = self.members.clone();
        self.epoch = Some(current + 1);
        self.group_info = Some(info);
        self.request = None;
        self.passed_over.remove(who);
        for r in &remove {
            self.leaving.remove(r);
        }
        self.members.retain(|m| !remove.contains(m));
        // Those added are in; a newer key package sent meanwhile waits on.
        self.joining.retain(|j| !add.contains(j));
        let mut out: Outgoing = Vec::new();
        let message = ServerMessage::MlsCommit {
            epoch: current,
            commit: commit.to_owned(),
            from: who.0.clone(),
            adds: add
                .iter()
                .map(|(p, kp)| MlsAdded {
                    participant_id: p.0.clone(),
                    key_package_sha256: B64.encode(Sha256::digest(kp)),
                })
                .collect(),
        };
        for m in before.iter().filter(|m| !remove.contains(m)) {
            out.push((m.clone(), message.clone()));
        }
        for (p, _) in &add {
            self.members.push(p.clone());
        }
        self.leaving.retain(|p| self.members.contains(p));
        for (p, _) in &add {
            if let Some(w) = &welcome {
                out.push((
                    p.clone(),
                    ServerMessage::MlsWelcome {
                        welcome: w.clone(),
                        epoch: current + 1,
                    },
                ));
            }
        }
        out.extend(self.drive(now, live));
        Ok(out)
    }

    /// `who` left the meeting for good (left, removed, or gone past the
    /// grace): the next commit removes them, so they can read nothing after it.
    pub fn left(
        &mut self,
        now: Instant,
        who: &ParticipantId,
        live: &dyn Fn(&ParticipantId) -> bool,
    ) -> Outgoing {
        self.joining.retain(|(p, _)| p != who);
        self.passed_over.remove(who);
        self.key_package_at.remove(who);
        self.failure_reported.remove(who);
        // Someone a commit in flight adds is removed by the one after it.
        if self.is_member(who) || self.being_added(who) {
            self.leaving.insert(who.clone());
        }
        self.drive(now, live)
    }

    /// Whether `who`'s report that it could not apply the commit made at
    /// `epoch` is the first from them for that epoch (only that one is recorded).
    pub fn first_failure_report(&mut self, who: &ParticipantId, epoch: u64) -> bool {
        self.is_member(who) && self.failure_reported.insert(who.clone(), epoch) != Some(epoch)
    }

    /// Time passes, or someone's connection came or went: a committer past
    /// their deadline, or no longer connected, is passed over.
    pub fn tick(&mut self, now: Instant, live: &dyn Fn(&ParticipantId) -> bool) -> Outgoing {
        self.drive(now, live)
    }

    /// `who`'s new group or commit failed the check: members would refuse
    /// it, or it does not do what was asked. Nobody gets it, and the next one
    /// is asked at once (on the next tick) rather than after the deadline.
    /// Nor may `who` try again for this request: each try costs the server a
    /// verification, so it is not theirs to repeat.
    fn refused_by_check(&mut self, now: Instant, who: &ParticipantId) {
        self.passed_over.insert(who.clone());
        if let Some(r) = self.request.as_mut() {
            r.asked.remove(who);
            if r.current == *who {
                r.deadline = now;
            }
        }
    }

    /// Whether the commit asked for now adds `who`.
    fn being_added(&self, who: &ParticipantId) -> bool {
        matches!(&self.request, Some(Request { task: Task::Commit { add, .. }, .. })
            if add.iter().any(|(p, _)| p == who))
    }

    fn check_group_info(&self, bytes: &[u8], epoch: u64) -> Result<(), Refused> {
        let gi = wire::group_info(bytes).map_err(|e| bad(format!("group info: {e}")))?;
        if gi.cipher_suite != CIPHER_SUITE {
            return Err(bad(format!(
                "group info: this meeting uses cipher suite {CIPHER_SUITE}"
            )));
        }
        if gi.group_id != self.group_id || gi.epoch != epoch {
            return Err(bad(format!(
                "group info: must be for this meeting's group at epoch {epoch}"
            )));
        }
        Ok(())
    }

    /// Ask someone to do what is pending, if nobody is on it; pass it on if
    /// the one asked is gone or late.
    fn drive(&mut self, now: Instant, live: &dyn Fn(&ParticipantId) -> bool) -> Outgoing {
        // Everyone left: the group is over. A fresh one (a new id, so no old
        // message can be replayed into it) starts with whoever joins next.
        if self.epoch.is_some() && self.members.iter().all(|m| self.leaving.contains(m)) {
            let joining = std::mem::take(&mut self.joining);
            *self = Group::checked_by(self.new_check);
            self.joining = joining;
        }
        if let Some(r) = &self.request {
            let stuck = now >= r.deadline || !live(&r.current);
            if !stuck {
                return Vec::new();
            }
            self.passed_over.insert(r.current.clone());
        }
        let task = match self.epoch {
            None => Task::Create,
            Some(_) => {
                let add: Vec<(ParticipantId, Vec<u8>)> = self.joining.clone();
                let remove: Vec<ParticipantId> = self
                    .leaving
                    .iter()
                    .filter(|p| self.members.contains(*p))
                    .cloned()
                    .collect();
                if add.is_empty() && remove.is_empty() {
                    self.request = None;
                    return Vec::new();
                }
                Task::Commit { add, remove }
            }
        };
        let candidates: Vec<ParticipantId> = match task {
            // The group is made by the longest-waiting joiner who is here.
            Task::Create => self.joining.iter().map(|(p, _)| p.clone()).collect(),
            Task::Commit { .. } => self
                .members
                .iter()
                .filter(|m| !self.leaving.contains(*m))
                .cloned()
                .collect(),
        };
        let here: Vec<&ParticipantId> = candidates.iter().filter(|c| live(c)).collect();
        let pick = here
            .iter()
            .find(|c| !self.passed_over.contains(**c))
            .or_else(|| here.first())
            .map(|c| (*c).clone());
        let Some(committer) = pick else {
            // Nobody in the group is connected to commit, and someone who is
            // here has waited for it as long as a committer would be given:
            // rather than keep them waiting for a member who may never come
            // back, the group starts afresh with them (a new id). (Not at once:
            // a member whose connection blinked is usually back within that
            // time, and a reset changes everyone's code.) Members who come back
            // find the new id in their welcome and join it like anyone; the
            // old group's keys are never used again.
            let waited = |p: &ParticipantId| {
                self.key_package_at
                    .get(p)
                    .is_some_and(|t| now.saturating_duration_since(*t) >= COMMIT_DEADLINE)
            };
            if matches!(task, Task::Commit { .. })
                && self.joining.iter().any(|(p, _)| live(p) && waited(p))
            {
                let joining = std::mem::take(&mut self.joining);
                let key_package_at = std::mem::take(&mut self.key_package_at);
                *self = Group::checked_by(self.new_check);
                self.joining = joining;
                self.key_package_at = key_package_at;
                return self.drive(now, live);
            }
            // Nobody can commit now; asked again when someone can.
            if let Some(r) = &mut self.request {
                r.deadline = now; // whoever comes back first is asked
            }
            return Vec::new();
        };
        if here.iter().all(|c| self.passed_over.contains(*c)) {
            self.passed_over.clear();
        }
        let epoch = self.epoch.unwrap_or(0);
        let mut asked = match self.request.take() {
            Some(r) if r.epoch == epoch && same_task(&r.task, &task) => r.asked,
            _ => BTreeSet::new(),
        };
        asked.insert(committer.clone());
        let message = match &task {
            Task::Create => ServerMessage::MlsCreateRequest {
                group_id: self.id_b64(),
            },
            Task::Commit { add, remove } => ServerMessage::MlsCommitRequest {
                epoch,
                add: add
                    .iter()
                    .map(|(p, kp)| MlsAdd {
                        participant_id: p.0.clone(),
                        key_package: B64.encode(kp),
                    })
                    .collect(),
                remove: remove.iter().map(|p| p.0.clone()).collect(),
                deadline_ms: COMMIT_DEADLINE.as_millis() as u64,
            },
        };
        self.request = Some(Request {
            epoch,
            task,
            asked,
            current: committer.clone(),
            deadline: now + COMMIT_DEADLINE,
        });
        vec![(committer, message)]
    }
}

/// Whether a request already out asks for the same thing (so that anyone
/// asked before may still answer it).
fn same_task(a: &Task, b: &Task) -> bool {
    match (a, b) {
        (Task::Create, Task::Create) => true,
        (
            Task::Commit {
                add: a1,
                remove: r1,
            },
            Task::Commit {
                add: a2,
                remove: r2,
            },
        ) => a1 == a2 && r1 == r2,
        _ => false,
    }
}

/// A relayed application message (encrypted chat): checked for shape only.
pub fn check_application(group: &Group, message: &str) -> Result<(), Refused> {
    let bytes = decode(message, MAX_APPLICATION, "message")?;
    let header = wire::framed(&bytes).map_err(|e| bad(format!("message: {e}")))?;
    if wire::wire_format(&bytes) != Ok(WireFormat::PrivateMessage)
        || header.content_type != ContentType::Application
    {
        return Err(bad("message: not an encrypted application message"));
    }
    if header.group_id != group.group_id {
        return Err(bad("message: for another group"));
    }
    // Made at the current epoch, or the one before: a member who sent just
    // as a commit landed is one behind, and the others still hold that
    // epoch's keys for a while (a member removed since cannot send at all).
    match group.epoch {
        Some(e) if header.epoch == e || header.epoch + 1 == e => Ok(()),
        _ => Err(stale("message: made at an epoch the group has left")),
    }
}

fn decode(b64: &str, max: usize, what: &str) -> Result<Vec<u8>, Refused> {
    // base64 is 4 characters for 3 bytes: refuse before decoding anything huge.
    if b64.len() > max.div_ceil(3) * 4 {
        return Err(bad(format!("{what}: at most {max} bytes")));
    }
    B64.decode(b64)
        .map_err(|_| bad(format!("{what}: not base64")))
}

fn new_group_id() -> Vec<u8> {
    rand::random::<[u8; 16]>().to_vec()
}

#[cfg(test)]
mod tests;
