//! A member of an encrypted meeting's MLS group (RFC 9420), speaking the
//! mls-* signalling messages of docs/protocol.md §4.16 and §5.24 exactly as
//! web/e2ee/mls.js does, so that this client and browsers share one group:
//! it sends its key package, makes the group when the server asks, joins by
//! Welcome (the ratchet tree in the Welcome), commits precisely the adds and
//! removes the server asks for (as PublicMessage, so the server can check
//! them), applies others' commits, refuses an add whose credential names
//! nobody the roster has, and reports each epoch's verification code and
//! SFrame base key. Chat travels as MLS application messages.
//!
//! openmls rather than mls-rs: docs/e2ee-design.md §11.3's spike showed
//! openmls and ts-mls 1.6.4 agree for suite 1 (epoch authenticator, exporter,
//! Welcome, commits, application messages both ways); mls-rs was not tried.
//!
//! Sans-IO: [`Member::handle`] takes a server message and returns what to do
//! (messages to send, epochs, chat, warnings); the caller owns the socket.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::credential::Claims;
use crate::verification::{verification_code, VerificationCode};

/// MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 (0x0001), the only suite
/// Convene offers (docs/protocol.md §11).
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
/// RFC 9605 §5.2: each epoch's SFrame base key.
pub const SFRAME_LABEL: &str = "SFrame 1.0 Base Key";
/// No group and no Welcome this long after a key package: the request may
/// have been lost, so a fresh one goes (as mls.js).
pub const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// The server takes one key package per participant every 5 s (protocol.md
/// §4.16): one refused as `rate-limited` goes again after this.
pub const KEY_PACKAGE_RETRY: Duration = Duration::from_millis(5100);

/// One member of the group, as its leaf's credential says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub leaf: u32,
    pub participant_id: String,
    pub name: String,
    /// `guest` unless the credential claims a sign-in.
    pub level: String,
    pub organisation: Option<String>,
}

/// A new epoch: after a create, a Welcome or a commit.
#[derive(Debug, Clone)]
pub struct EpochChange {
    pub epoch: u64,
    pub code: VerificationCode,
    pub members: Vec<GroupMember>,
    /// `MLS-Exporter("SFrame 1.0 Base Key", "", 16)`.
    pub sframe_secret: Vec<u8>,
    pub own_leaf: u32,
    /// Participants who came in (after a create or a Welcome: just this one,
    /// as mls.js reports it), and who went.
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Something the caller should know; codes as mls.js's `onWarning`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub code: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// A message for the server.
    Send(Value),
    Epoch(EpochChange),
    /// Chat whose sender is the MLS leaf that signed it.
    Chat {
        from: String,
        text: String,
    },
    Warning(Warning),
}

#[derive(Debug, thiserror::Error)]
#[error("MLS: {0}")]
pub struct Error(String);

fn err(e: impl std::fmt::Display) -> Error {
    Error(e.to_string())
}

/// Whether the meeting's roster has a participant, verified as their
/// credential's claims say (design §6; e2ee-meeting.js's `rosterHas`).
pub type RosterHas<'a> = &'a dyn Fn(&str, &Claims) -> bool;

/// The claims of a credential, if it is a basic credential of ours.
fn claims_of(credential: &Credential) -> Option<Claims> {
    let basic = BasicCredential::try_from(credential.clone()).ok()?;
    Claims::parse(basic.identity())
}

fn members_of(group: &MlsGroup) -> Vec<GroupMember> {
    group
        .members()
        .map(|m| {
            let c = claims_of(&m.credential);
            GroupMember {
                leaf: m.index.u32(),
                participant_id: c.as_ref().map(|c| c.p.clone()).unwrap_or_default(),
                name: c.as_ref().map(|c| c.n.clone()).unwrap_or_default(),
                level: c.as_ref().map_or("guest", |c| c.level()).to_string(),
                organisation: c.and_then(|c| c.o),
            }
        })
        .collect()
}

/// How this member keeps groups: commits as PublicMessage (design §5, step
/// 6), the ratchet tree in Welcomes (ts-mls joiners need it), and the
/// previous epoch's keys for chat sent just as a commit landed (the server
/// relays those, protocol.md §4.16).
fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(1)
        .build()
}

fn decode(b64: &str) -> Result<MlsMessageIn, Error> {
    let bytes = B64.decode(b64).map_err(err)?;
    <MlsMessageIn as openmls::prelude::tls_codec::Deserialize>::tls_deserialize_exact(bytes)
        .map_err(err)
}

fn encode(m: &MlsMessageOut) -> Result<String, Error> {
    Ok(B64.encode(m.to_bytes().map_err(err)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddRequest {
    participant_id: String,
    key_package: String,
}

#[derive(Deserialize)]
struct CommitRequest {
    epoch: u64,
    #[serde(default)]
    add: Vec<AddRequest>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Deserialize)]
struct CommitFanout {
    epoch: u64,
    commit: String,
    #[serde(default)]
    from: Option<String>,
}

pub struct Member {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    claims: Claims,
    credential: CredentialWithKey,
    /// `None` before a create or Welcome, and after losing the group.
    group: Option<MlsGroup>,
    /// Our commit not yet fanned back: (epoch, its base64). openmls keeps one
    /// pending commit; a second request at one epoch replaces it.
    pending: Option<(u64, String)>,
    /// When to send a fresh key package, while waiting for a group.
    key_package_retry: Option<Instant>,
}

impl Member {
    /// Starts this participant's MLS side: the returned events hold its key
    /// package for the server (`mls-key-package`, protocol.md §11 step 2).
    pub fn start(claims: Claims, now: Instant) -> Result<(Member, Vec<Event>), Error> {
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(err)?;
        signer.store(provider.storage()).map_err(err)?;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(claims.to_identity()).into(),
            signature_key: signer.public().into(),
        };
        let mut m = Member {
            provider,
            signer,
            claims,
            credential,
            group: None,
            pending: None,
            key_package_retry: None,
        };
        let mut out = Vec::new();
        m.send_key_package(now, &mut out)?;
        Ok((m, out))
    }

    pub fn participant_id(&self) -> &str {
        &self.claims.p
    }

    /// The group's epoch, once this is a member.
    pub fn epoch(&self) -> Option<u64> {
        self.group.as_ref().map(|g| g.epoch().as_u64())
    }

    /// The group's id, once this is a member.
    pub fn group_id(&self) -> Option<&[u8]> {
        self.group.as_ref().map(|g| g.group_id().as_slice())
    }

    pub fn members(&self) -> Vec<GroupMember> {
        self.group.as_ref().map(members_of).unwrap_or_default()
    }

    pub fn own_leaf(&self) -> Option<u32> {
        self.group.as_ref().map(|g| g.own_leaf_index().u32())
    }

    /// The current epoch's verification code.
    pub fn code(&self) -> Option<VerificationCode> {
        verification_code(self.group.as_ref()?.epoch_authenticator().as_slice())
    }

    fn send_key_package(&mut self, now: Instant, out: &mut Vec<Event>) -> Result<(), Error> {
        let bundle = KeyPackage::builder()
            .build(
                CIPHERSUITE,
                &self.provider,
                &self.signer,
                self.credential.clone(),
            )
            .map_err(err)?;
        let msg = MlsMessageOut::from(bundle.key_package().clone());
        out.push(Event::Send(
            json!({"type": "mls-key-package", "keyPackage": encode(&msg)?}),
        ));
        self.key_package_retry = Some(now + WELCOME_TIMEOUT);
        Ok(())
    }

    /// When [`Member::tick`] next has something to do.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.key_package_retry.filter(|_| self.group.is_none())
    }

    /// Time passes: without a group after [`WELCOME_TIMEOUT`], a fresh key package.
    pub fn tick(&mut self, now: Instant) -> Vec<Event> {
        let mut out = Vec::new();
        if self.next_timeout().is_some_and(|t| now >= t) {
            if let Err(e) = self.send_key_package(now, &mut out) {
                warn(&mut out, "bad-message", e);
            }
        }
        out
    }

    /// The page resumed and may have missed messages: ask to be added again.
    pub fn rejoin(&mut self, now: Instant) -> Vec<Event> {
        let mut out = Vec::new();
        self.lost_group("rejoin", now, &mut out);
        out
    }

    /// Handles a server message (`mls-*`; others are ignored). Never panics on
    /// what a server sends: anything wrong becomes a warning.
    pub fn handle(&mut self, msg: &Value, roster_has: RosterHas<'_>, now: Instant) -> Vec<Event> {
        let mut out = Vec::new();
        let kind = msg["type"].as_str().unwrap_or("");
        let r = match kind {
            "mls-create-request" => self.create(msg, &mut out),
            "mls-commit-request" => self.commit_request(msg, roster_has, &mut out),
            "mls-commit" => self.commit(msg, roster_has, now, &mut out),
            "mls-welcome" => self.welcome(msg, &mut out),
            "mls-app" => self.app(msg, &mut out),
            // Waiting for a group, a `rate-limited` refusal is most likely
            // of our key package (a resume within 5 s of the join): again
            // once the server takes one, not after the whole welcome wait.
            "error" if msg["code"] == "rate-limited" && self.group.is_none() => {
                if let Some(t) = &mut self.key_package_retry {
                    *t = (*t).min(now + KEY_PACKAGE_RETRY);
                }
                Ok(())
            }
            // `error` mls-stale-epoch: another commit won; it comes as
            // mls-commit and replaces ours there.
            _ => Ok(()),
        };
        if let Err(e) = r {
            out.push(Event::Warning(Warning {
                code: "bad-message",
                detail: format!("{kind}: {e}"),
            }));
        }
        out
    }

    /// Encrypts chat as an MLS application message: `mls-app` for the server.
    pub fn send_chat(&mut self, text: &str) -> Result<Value, Error> {
        let group = self
            .group
            .as_mut()
            .ok_or_else(|| Error("not in the encrypted group yet".into()))?;
        let body = json!({"t": "chat", "text": text}).to_string();
        let msg = group
            .create_message(&self.provider, &self.signer, body.as_bytes())
            .map_err(err)?;
        Ok(json!({"type": "mls-app", "message": encode(&msg)?}))
    }

    /// Forgets the group (and so every key of it).
    pub fn stop(&mut self) {
        self.group = None;
        self.pending = None;
        self.key_package_retry = None;
    }

    fn lost_group(&mut self, code: &'static str, now: Instant, out: &mut Vec<Event>) {
        // Its state goes from the store too: a Welcome back into the same
        // group (the usual way back) is refused while the store holds a group
        // by that id.
        if let Some(mut group) = self.group.take() {
            if let Err(e) = group.delete(self.provider.storage()) {
                warn(out, "bad-message", e);
            }
        }
        self.pending = None;
        warn(out, code, "");
        if code != "removed" {
            if let Err(e) = self.send_key_package(now, out) {
                warn(out, "bad-message", e);
            }
        }
    }

    /// `before`: the members of the previous epoch, or `None` after a create
    /// or Welcome (then `added` is just this participant, as in mls.js).
    fn new_epoch(
        &mut self,
        before: Option<Vec<GroupMember>>,
        out: &mut Vec<Event>,
    ) -> Result<(), Error> {
        let group = self
            .group
            .as_ref()
            .ok_or_else(|| Error("no group".into()))?;
        let members = members_of(group);
        let me = &self.claims.p;
        let prev: BTreeSet<String> = match before {
            Some(b) => b.into_iter().map(|m| m.participant_id).collect(),
            None => members
                .iter()
                .map(|m| m.participant_id.clone())
                .filter(|p| p != me)
                .collect(),
        };
        let now: BTreeSet<String> = members.iter().map(|m| m.participant_id.clone()).collect();
        let sframe_secret = group
            .export_secret(self.provider.crypto(), SFRAME_LABEL, &[], 16)
            .map_err(err)?;
        let code = verification_code(group.epoch_authenticator().as_slice())
            .ok_or_else(|| Error("short epoch authenticator".into()))?;
        self.key_package_retry = None;
        out.push(Event::Epoch(EpochChange {
            epoch: group.epoch().as_u64(),
            code,
            members,
            sframe_secret,
            own_leaf: group.own_leaf_index().u32(),
            added: now.difference(&prev).cloned().collect(),
            removed: prev.difference(&now).cloned().collect(),
        }));
        Ok(())
    }

    /// The server has no group (the first member, or everyone left): make it.
    fn create(&mut self, msg: &Value, out: &mut Vec<Event>) -> Result<(), Error> {
        if let Some(g) = &self.group {
            warn(
                out,
                "group-replaced",
                format!("epoch {}", g.epoch().as_u64()),
            );
        }
        self.group = None;
        self.pending = None;
        let id = B64
            .decode(msg["groupId"].as_str().unwrap_or(""))
            .map_err(err)?;
        if id.is_empty() {
            return Err(Error("no group id".into()));
        }
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .max_past_epochs(1)
            .build();
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &config,
            GroupId::from_slice(&id),
            self.credential.clone(),
        )
        .map_err(err)?;
        let info = group
            .export_group_info(self.provider.crypto(), &self.signer, true)
            .map_err(err)?;
        out.push(Event::Send(
            json!({"type": "mls-group-created", "groupInfo": encode(&info)?}),
        ));
        self.group = Some(group);
        self.new_epoch(None, out)
    }

    /// Commit exactly the adds and removes the server asks for, at its epoch.
    fn commit_request(
        &mut self,
        msg: &Value,
        roster_has: RosterHas<'_>,
        out: &mut Vec<Event>,
    ) -> Result<(), Error> {
        let req: CommitRequest = serde_json::from_value(msg.clone()).map_err(err)?;
        let Some(group) = self.group.as_mut() else {
            warn(out, "commit-request-epoch", req.epoch);
            return Ok(());
        };
        if group.epoch().as_u64() != req.epoch {
            warn(out, "commit-request-epoch", req.epoch);
            return Ok(());
        }
        let mut adds = Vec::new();
        for a in &req.add {
            // The committer checks too: a server must not slip a ghost in through it (§3).
            let kp = decode(&a.key_package).ok().and_then(|m| match m.extract() {
                MlsMessageBodyIn::KeyPackage(kp) => kp
                    .validate(self.provider.crypto(), ProtocolVersion::Mls10)
                    .ok(),
                _ => None,
            });
            let fits = kp
                .as_ref()
                .and_then(|kp| claims_of(kp.leaf_node().credential()))
                .filter(|c| c.p == a.participant_id && roster_has(&c.p, c));
            match (kp, fits) {
                (Some(kp), Some(_)) => adds.push(kp),
                _ => warn(out, "bad-key-package", &a.participant_id),
            }
        }
        let members = members_of(group);
        let removes: Vec<LeafNodeIndex> = members
            .iter()
            .filter(|m| req.remove.contains(&m.participant_id))
            .map(|m| LeafNodeIndex::new(m.leaf))
            .collect();
        // Asked again at the same epoch (a takeover): the new commit replaces ours.
        if group.pending_commit().is_some() {
            group
                .clear_pending_commit(self.provider.storage())
                .map_err(err)?;
        }
        let nothing = adds.is_empty() && removes.is_empty();
        let bundle = group
            .commit_builder()
            .propose_adds(adds)
            .propose_removals(removes)
            .force_self_update(nothing)
            .load_psks(self.provider.storage())
            .map_err(err)?
            .use_ratchet_tree_extension(true)
            .build(
                self.provider.rand(),
                self.provider.crypto(),
                &self.signer,
                |_| true,
            )
            .map_err(err)?
            .stage_commit(&self.provider)
            .map_err(err)?;
        let (commit, welcome, info) = bundle.into_messages();
        let commit = encode(&commit)?;
        let welcome = welcome.map(|w| encode(&w)).transpose()?;
        let info = info.ok_or_else(|| Error("no group info".into()))?;
        self.pending = Some((req.epoch, commit.clone()));
        out.push(Event::Send(json!({
            "type": "mls-commit", "epoch": req.epoch, "commit": commit,
            "welcome": welcome, "groupInfo": encode(&info)?,
        })));
        Ok(())
    }

    /// The commit that won `epoch`: ours (merge it) or another's (check and apply it).
    fn commit(
        &mut self,
        msg: &Value,
        roster_has: RosterHas<'_>,
        now: Instant,
        out: &mut Vec<Event>,
    ) -> Result<(), Error> {
        let c: CommitFanout = serde_json::from_value(msg.clone()).map_err(err)?;
        let Some(group) = self.group.as_mut() else {
            return Ok(()); // not a member yet: our Welcome comes separately
        };
        let before = members_of(group);
        let epoch = group.epoch().as_u64();
        let ours = self
            .pending
            .as_ref()
            .is_some_and(|(e, commit)| *e == c.epoch && *commit == c.commit)
            && c.from.as_deref() == Some(self.claims.p.as_str());
        if ours {
            self.pending = None;
            group.merge_pending_commit(&self.provider).map_err(err)?;
            return self.new_epoch(Some(before), out);
        }
        if c.epoch < epoch {
            warn(out, "old-commit", c.epoch);
            return Ok(());
        }
        // Behind the server, or a commit of ours this member no longer holds
        // (openmls keeps one): this state cannot follow, so start again.
        if c.epoch > epoch || c.from.as_deref() == Some(self.claims.p.as_str()) {
            self.lost_group("behind", now, out);
            return Ok(());
        }
        if self.pending.take().is_some() && group.pending_commit().is_some() {
            group
                .clear_pending_commit(self.provider.storage())
                .map_err(err)?; // another commit won
        }
        let (staged, committer) = match process_commit(group, &self.provider, &c.commit) {
            Ok(s) => s,
            Err(reason) => return refuse(out, c.epoch, format!("invalid: {reason}")),
        };
        if !staged.self_removed() && staged.group_context().epoch().as_u64() != c.epoch + 1 {
            return refuse(out, c.epoch, "invalid: not the next epoch".into());
        }
        // §6 and §3: a commit may add only people the roster shows, and nobody twice.
        let gone: BTreeSet<u32> = staged
            .remove_proposals()
            .map(|r| r.remove_proposal().removed().u32())
            .collect();
        let mut present: BTreeSet<String> = before
            .iter()
            .filter(|m| !gone.contains(&m.leaf))
            .map(|m| m.participant_id.clone())
            .collect();
        for add in staged.add_proposals() {
            let Some(claims) = claims_of(add.add_proposal().key_package().leaf_node().credential())
            else {
                return refuse(out, c.epoch, "bad-credential".into());
            };
            if !roster_has(&claims.p, &claims) {
                return refuse(out, c.epoch, format!("unknown-participant {}", claims.p));
            }
            if !present.insert(claims.p.clone()) {
                return refuse(out, c.epoch, format!("already-member {}", claims.p));
            }
        }
        let credential = |leaf: u32| group.member(LeafNodeIndex::new(leaf)).cloned();
        if let Some(reason) = changed_credential(credential, &staged, committer, &gone) {
            return refuse(out, c.epoch, reason);
        }
        if let Some(expected) = msg["adds"].as_array() {
            if let Some(reason) = unexpected_adds(&staged, expected)? {
                return refuse(out, c.epoch, reason);
            }
        }
        let removed = staged.self_removed();
        group
            .merge_staged_commit(&self.provider, *staged)
            .map_err(err)?;
        if removed {
            self.lost_group("removed", now, out);
            return Ok(());
        }
        self.new_epoch(Some(before), out)
    }

    fn welcome(&mut self, msg: &Value, out: &mut Vec<Event>) -> Result<(), Error> {
        let MlsMessageBodyIn::Welcome(welcome) =
            decode(msg["welcome"].as_str().unwrap_or(""))?.extract()
        else {
            return Err(Error("not a Welcome".into()));
        };
        let joined = StagedWelcome::new_from_welcome(&self.provider, &join_config(), welcome, None)
            .map_err(err)
            .and_then(|s| {
                // mls.js's AuthenticationService: every credential must be ours.
                if s.members().any(|m| claims_of(&m.credential).is_none()) {
                    return Err(Error("a member's credential is not Convene's".into()));
                }
                s.into_group(&self.provider).map_err(err)
            });
        match joined {
            Ok(group) => {
                self.group = Some(group);
                self.pending = None;
                self.new_epoch(None, out)
            }
            Err(e) => {
                warn(out, "welcome-unusable", e);
                Ok(())
            }
        }
    }

    fn app(&mut self, msg: &Value, out: &mut Vec<Event>) -> Result<(), Error> {
        let Some(group) = self.group.as_mut() else {
            return Ok(());
        };
        let claimed = msg["from"].as_str();
        let m = decode(msg["message"].as_str().unwrap_or(""))?;
        if m.wire_format() != WireFormat::PrivateMessage {
            return Err(Error("not a PrivateMessage".into()));
        }
        let processed = m
            .try_into_protocol_message()
            .map_err(err)
            .and_then(|pm| group.process_message(&self.provider, pm).map_err(err));
        let processed = match processed {
            Ok(p) => p,
            Err(e) => {
                warn(
                    out,
                    "undecryptable",
                    format!("from {}: {e}", claimed.unwrap_or("?")),
                );
                return Ok(());
            }
        };
        // The sender is the leaf that signed it, not what the server says.
        let Some(from) = claims_of(processed.credential()).map(|c| c.p) else {
            return Ok(());
        };
        let ProcessedMessageContent::ApplicationMessage(app) = processed.into_content() else {
            return Ok(());
        };
        if claimed.is_some_and(|c| c != from) {
            warn(
                out,
                "sender-mismatch",
                format!("{from}, claimed {}", claimed.unwrap_or("")),
            );
        }
        #[derive(Deserialize)]
        struct Body {
            t: String,
            text: String,
        }
        if let Ok(b) = serde_json::from_slice::<Body>(&app.into_bytes()) {
            if b.t == "chat" {
                out.push(Event::Chat { from, text: b.text });
            }
        }
        Ok(())
    }
}

/// A commit processed but not merged, and the leaf that sent it.
fn process_commit(
    group: &mut MlsGroup,
    provider: &OpenMlsRustCrypto,
    b64: &str,
) -> Result<(Box<StagedCommit>, Option<u32>), Error> {
    let m = decode(b64)?;
    if !matches!(
        m.wire_format(),
        WireFormat::PublicMessage | WireFormat::PrivateMessage
    ) {
        return Err(Error("not a handshake message".into()));
    }
    let pm = m.try_into_protocol_message().map_err(err)?;
    let processed = group.process_message(provider, pm).map_err(err)?;
    let sender = match processed.sender() {
        Sender::Member(leaf) => Some(leaf.u32()),
        _ => None,
    };
    match processed.into_content() {
        ProcessedMessageContent::StagedCommitMessage(s) => Ok((s, sender)),
        _ => Err(Error("not a commit".into())),
    }
}

/// Whether a commit changes the credential of a leaf that stays (its
/// committer's through the update path, or anyone's by an Update): a
/// committer taking another member's name. `before` gives each leaf's
/// credential before the commit. Returns the reason, as mls.js. (The
/// server's check, [`crate::delivery`], asks the same.)
pub(crate) fn changed_credential(
    before: impl Fn(u32) -> Option<Credential>,
    staged: &StagedCommit,
    committer: Option<u32>,
    gone: &BTreeSet<u32>,
) -> Option<String> {
    let mut changed = Vec::new();
    if let (Some(leaf), Some(node)) = (committer, staged.update_path_leaf_node()) {
        changed.push((leaf, node.credential().clone()));
    }
    for u in staged.update_proposals() {
        if let Sender::Member(leaf) = u.sender() {
            changed.push((
                leaf.u32(),
                u.update_proposal().leaf_node().credential().clone(),
            ));
        }
    }
    changed
        .into_iter()
        .find(|(leaf, c)| !gone.contains(leaf) && before(*leaf).is_some_and(|b| &b != c))
        .map(|(leaf, _)| format!("credential-changed leaf {leaf}"))
}

/// Whether a commit's adds are exactly those the server asked for
/// (`adds`: participant id and SHA-256 of the KeyPackage MLSMessage each
/// sent, protocol.md §5.24): a committer must not put a key package of its
/// own into the group under a participant's name. Returns the reason.
fn unexpected_adds(staged: &StagedCommit, expected: &[Value]) -> Result<Option<String>, Error> {
    let want = expected
        .iter()
        .map(|a| {
            let pid = a["participantId"].as_str().unwrap_or("");
            format!("{pid} {}", a["keyPackageSha256"].as_str().unwrap_or(""))
        })
        .collect();
    adds_differ(staged, want)
}

/// Whether a commit's adds differ from `want` ("participant-id sha256-base64"
/// of each KeyPackage MLSMessage); the reason if so.
pub(crate) fn adds_differ(
    staged: &StagedCommit,
    mut want: Vec<String>,
) -> Result<Option<String>, Error> {
    let mut got = Vec::new();
    for add in staged.add_proposals() {
        let kp = add.add_proposal().key_package();
        let pid = claims_of(kp.leaf_node().credential())
            .map(|c| c.p)
            .unwrap_or_default();
        let bytes = MlsMessageOut::from(kp.clone()).to_bytes().map_err(err)?;
        got.push(format!("{pid} {}", B64.encode(Sha256::digest(&bytes))));
    }
    want.sort();
    got.sort();
    if got == want {
        return Ok(None);
    }
    let extra: Vec<&str> = got
        .iter()
        .filter(|g| !want.contains(g))
        .map(|g| g.split(' ').next().unwrap_or(""))
        .collect();
    let who = if extra.is_empty() {
        "(missing)".to_string()
    } else {
        extra.join(",")
    };
    Ok(Some(format!("unexpected-add {who}")))
}

fn warn(out: &mut Vec<Event>, code: &'static str, detail: impl std::fmt::Display) {
    out.push(Event::Warning(Warning {
        code,
        detail: detail.to_string(),
    }));
}

/// A commit this member will not apply: say so, and keep the old state.
fn refuse(out: &mut Vec<Event>, epoch: u64, reason: String) -> Result<(), Error> {
    warn(out, "commit-refused", &reason);
    out.push(Event::Send(
        json!({"type": "mls-commit-failed", "epoch": epoch, "reason": reason}),
    ));
    Ok(())
}

#[cfg(test)]
mod tests;
