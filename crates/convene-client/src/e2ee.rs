//! The client's part in an end-to-end encrypted meeting (docs/protocol.md
//! §11): the MLS member of convene-e2ee on the signalling messages, and
//! SFrame on whole frames both ways, counting per sender what decrypted and
//! what did not, as the browser's worker does (web/e2ee/sframe-worker.js).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use convene_e2ee::mls::RosterHas;
use convene_e2ee::{Claims, EpochChange, Event, FrameKeys, MediaKind, Member, Warning};
use serde_json::Value;
use str0m::rtp::{RtpPacket, Ssrc};

use crate::frames::Assembler;

/// Frames from one (participant, source) of an encrypted meeting.
#[derive(Debug, Default, Clone)]
pub struct FrameCount {
    /// Decrypted, from the sender the server says it is.
    pub decrypted: u64,
    /// Refused: unknown key, failed authentication, replayed, malformed, or
    /// sealed by another member than the one the slot carries.
    pub failed: u64,
    /// Video frames given up before all their packets came (not decrypted at all).
    pub incomplete: u64,
    /// `failed` by reason.
    pub why: BTreeMap<String, u64>,
}

impl FrameCount {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &FrameCount) {
        self.decrypted += other.decrypted;
        self.failed += other.failed;
        self.incomplete += other.incomplete;
        for (why, n) in &other.why {
            *self.why.entry(why.clone()).or_default() += n;
        }
    }
}

/// What the client holds for an encrypted meeting.
pub struct E2ee {
    pub member: Member,
    keys: FrameKeys,
    assemblers: HashMap<Ssrc, Assembler>,
    /// Leaf → participant id, in the newest epoch.
    leaves: HashMap<u32, String>,
    pub frames: BTreeMap<(String, String), FrameCount>,
    /// Decrypted chat: (sender, text), the sender from its MLS leaf.
    pub chat: Vec<(String, String)>,
    pub warnings: Vec<Warning>,
    /// Every epoch this client entered, oldest first.
    pub epochs: Vec<EpochChange>,
    new_epoch: bool,
}

/// This participant's claims, from the welcome's participant object (`me`):
/// a signed-in person's credential says how they were verified (design §6).
pub fn claims_of(participant_id: &str, me: &Value) -> Claims {
    let mut c = Claims::guest(participant_id, me["name"].as_str().unwrap_or(""));
    let level = me["identity"]["level"].as_str().unwrap_or("guest");
    if level != "guest" {
        c.l = Some(level.to_string());
        c.o = me["identity"]["organisation"].as_str().map(str::to_string);
    }
    c
}

/// Whether the roster has `pid`, verified as the credential claims (as the
/// browser's e2ee-meeting.js `rosterHas`).
pub fn roster_has(participants: &BTreeMap<String, Value>, pid: &str, claims: &Claims) -> bool {
    let Some(p) = participants.get(pid) else {
        return false;
    };
    let level = p["identity"]["level"].as_str().unwrap_or("guest");
    if claims.level() != level {
        return false;
    }
    if level == "guest" {
        claims.o.is_none()
    } else {
        claims.o.as_deref() == p["identity"]["organisation"].as_str()
    }
}

impl E2ee {
    pub fn start(claims: Claims, now: Instant) -> Result<(E2ee, Vec<Event>), String> {
        let (member, events) = Member::start(claims, now).map_err(|e| e.to_string())?;
        let e = E2ee {
            member,
            keys: FrameKeys::new(),
            assemblers: HashMap::new(),
            leaves: HashMap::new(),
            frames: BTreeMap::new(),
            chat: Vec::new(),
            warnings: Vec::new(),
            epochs: Vec::new(),
            new_epoch: false,
        };
        Ok((e, events))
    }

    /// A welcome after a resume: unless it names our group at our epoch,
    /// we missed something and ask to be added again (protocol.md §4.16).
    pub fn resumed(&mut self, info: &Value, now: Instant) -> Vec<Event> {
        use base64::Engine as _;
        let group = info["groupId"]
            .as_str()
            .and_then(|g| base64::engine::general_purpose::STANDARD.decode(g).ok());
        let same_group = group.is_some() && group.as_deref() == self.member.group_id();
        let same_epoch =
            info["epoch"].as_u64().is_some() && info["epoch"].as_u64() == self.member.epoch();
        if same_group && same_epoch {
            return Vec::new();
        }
        self.member.rejoin(now)
    }

    pub fn handle(&mut self, msg: &Value, roster_has: RosterHas<'_>, now: Instant) -> Vec<Event> {
        self.member.handle(msg, roster_has, now)
    }

    pub fn tick(&mut self, now: Instant) -> Vec<Event> {
        self.member.tick(now)
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.member.next_timeout()
    }

    pub fn chat(&mut self, text: &str) -> Result<Value, String> {
        self.member.send_chat(text).map_err(|e| e.to_string())
    }

    /// Takes in one event of the member; returns a message to send, if any.
    pub fn on_event(&mut self, ev: Event, now: Instant) -> Option<Value> {
        match ev {
            Event::Send(msg) => return Some(msg),
            Event::Epoch(e) => {
                self.keys.add_epoch(
                    e.epoch,
                    &e.sframe_secret,
                    e.own_leaf,
                    !e.removed.is_empty(),
                    now,
                );
                self.leaves = e
                    .members
                    .iter()
                    .map(|m| (m.leaf, m.participant_id.clone()))
                    .collect();
                self.epochs.push(e);
                self.new_epoch = true;
            }
            Event::Chat { from, text } => self.chat.push((from, text)),
            Event::Warning(w) => {
                // Out of the group: none of its keys may open or seal anything.
                if matches!(w.code, "removed" | "behind" | "rejoin" | "group-replaced") {
                    self.keys.clear();
                }
                self.warnings.push(w);
            }
        }
        None
    }

    /// Whether an epoch began since the last call.
    pub fn take_new_epoch(&mut self) -> bool {
        std::mem::take(&mut self.new_epoch)
    }

    /// The newest epoch's verification code and number.
    pub fn current(&self) -> Option<&EpochChange> {
        self.epochs.last()
    }

    /// Seals a frame this client sends in `context`; `None` before a key.
    pub fn seal(&mut self, context: u64, video: bool, frame: &[u8]) -> Option<Vec<u8>> {
        let kind = if video {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        self.keys.encrypt(kind, context, frame)
    }

    /// A received packet of `key`'s (participant, source): whole frames are
    /// decrypted and counted.
    pub fn receive(
        &mut self,
        key: &(String, String),
        ssrc: Ssrc,
        audio: bool,
        pkt: &RtpPacket,
        now: Instant,
    ) {
        let (kind, frame) = if audio {
            (MediaKind::Audio, Some(pkt.payload.to_vec()))
        } else {
            let pushed = self.assemblers.entry(ssrc).or_default().push(
                *pkt.seq_no,
                pkt.header.timestamp,
                pkt.header.marker,
                &pkt.payload,
            );
            if pushed.abandoned > 0 {
                self.count(key).incomplete += pushed.abandoned;
            }
            (MediaKind::Video, pushed.frame)
        };
        let Some(frame) = frame else { return };
        // Empty frames carry nothing (browsers send some on audio).
        if frame.is_empty() {
            return;
        }
        let result = self.keys.decrypt(kind, &frame, now);
        // A voice slot's packets can beat the `voice-slot` message that says
        // whose they are (key.0 is then ""): the sealing leaf tells.
        let owner = match (&result, key.0.is_empty()) {
            (Ok((_, leaf)), true) => self.leaves.get(leaf).map(|p| (p.clone(), key.1.clone())),
            _ => None,
        };
        let key = owner.as_ref().unwrap_or(key);
        let why = match result {
            Ok((_, leaf)) if self.leaves.get(&leaf) == Some(&key.0) => None,
            Ok((_, leaf)) => Some(format!("sealed by leaf {leaf}, not {}", key.0)),
            Err(e) => Some(match e {
                convene_e2ee::sframe::DecryptError::Malformed => "malformed".into(),
                convene_e2ee::sframe::DecryptError::UnknownKid(_) => "unknown-kid".into(),
                convene_e2ee::sframe::DecryptError::Auth(_) => "auth".into(),
                convene_e2ee::sframe::DecryptError::Replay { .. } => "replay".into(),
            }),
        };
        let count = self.count(key);
        match why {
            None => count.decrypted += 1,
            Some(w) => {
                count.failed += 1;
                *count.why.entry(w).or_default() += 1;
            }
        }
    }

    fn count(&mut self, key: &(String, String)) -> &mut FrameCount {
        self.frames.entry(key.clone()).or_default()
    }
}
