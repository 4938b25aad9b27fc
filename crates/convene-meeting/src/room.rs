//! One meeting's state: who is in it, what they publish, the chat.
//!
//! This file holds the room's types and the dispatch of client messages
//! (`handle`); the behaviour is in modules by concern: `join` (the door and
//! the welcome), `lobby`, `host_actions`, `levels`, `passcode`, `hands`,
//! `media`, `outbox` (messages out, audit rows), `restart` and `webinar`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::access::{self, Action, Role, Settings};
use crate::identity::{Identity, Level, Verification};
use crate::names;
use crate::protocol::{
    ChatMessage, ClientMessage, ErrorCode, LeaveReason, MediaPath, MeetingInfo, NoticeAbout,
    ParticipantInfo, Permissions, RemovedAbout, ServerMessage, Source, Waiting, PROTOCOL_VERSION,
};

#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ParticipantId(pub String);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Participants per "welcome" or "roster" message.
const ROSTER_PAGE: usize = 50;
/// A participant's media connection is restarted at most this often.
const ICE_RESTART_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// Chat messages per "welcome" or "chat-history" message: with the default
/// limit of 2000 characters each, a page stays under 80 KB of text even in
/// 4-byte characters (JSON escapes of control characters aside).
const CHAT_PAGE: usize = 10;

/// How many messages the welcome to a meeting of `participants` people with
/// `chat_history` messages takes: the welcome itself, then the `roster` and
/// `chat-history` pages, and in a webinar `audience` and the `questions`
/// pages at most. The edge keeps each socket's outbound queue above this.
pub const fn welcome_messages(participants: usize, chat_history: usize) -> usize {
    1 + participants
        .saturating_sub(ROSTER_PAGE)
        .div_ceil(ROSTER_PAGE)
        + chat_history.saturating_sub(CHAT_PAGE).div_ceil(CHAT_PAGE)
        + 1
        + questions::MOST_PAGES
}

#[derive(Debug, Clone)]
pub struct RoomLimits {
    /// Most people in the meeting (the meeting's own setting may lower it).
    /// Everyone admitted counts, hosts too, but hosts and co-hosts are never
    /// refused by it; people waiting in the lobby do not count.
    pub max_participants: usize,
    /// Most people waiting in one meeting's lobby at once.
    pub max_waiting: usize,
    /// Most people waiting in one meeting's lobby from one client address (for
    /// IPv6, one /64 network), so that one address cannot fill the lobby.
    pub max_waiting_per_address: usize,
    /// How long someone may wait in the lobby without being let in before
    /// they are turned away.
    pub lobby_timeout: Duration,
    pub max_name_chars: usize,
    pub max_chat_chars: usize,
    /// Chat messages kept for people who join later (memory only, gone with the meeting).
    pub chat_history: usize,
    /// How long a participant whose connection dropped may come back as themselves.
    pub reconnect_grace: Duration,
    /// How long those who were in the meeting when the server stopped for a
    /// restart may take to come back as themselves ([`restart`]).
    pub restart_grace: Duration,
    /// The deployment's handling levels.
    pub policy: std::sync::Arc<crate::policy::Policy>,
    /// Whether this server can verify identities (some levels need it).
    pub sign_in_available: bool,
    /// Checks the commits of end-to-end encrypted meetings before fan-out
    /// (the server gives one; without it only their framing is checked).
    pub handshake_check: Option<crate::e2ee::check::NewCheck>,
}

impl RoomLimits {
    /// Chat messages kept for latecomers.
    pub const DEFAULT_CHAT_HISTORY: usize = 200;
    /// People waiting in one meeting's lobby.
    pub const DEFAULT_MAX_WAITING: usize = 50;
    /// People waiting in one meeting's lobby from one address: enough for a
    /// team behind one office NAT, too few to fill the lobby alone.
    pub const DEFAULT_MAX_WAITING_PER_ADDRESS: usize = 10;
    /// The longest wait in the lobby.
    pub const DEFAULT_LOBBY_TIMEOUT: Duration = Duration::from_secs(30 * 60);
}

impl Default for RoomLimits {
    fn default() -> Self {
        RoomLimits {
            max_participants: 100,
            max_waiting: Self::DEFAULT_MAX_WAITING,
            max_waiting_per_address: Self::DEFAULT_MAX_WAITING_PER_ADDRESS,
            lobby_timeout: Self::DEFAULT_LOBBY_TIMEOUT,
            max_name_chars: 64,
            max_chat_chars: 2000,
            chat_history: Self::DEFAULT_CHAT_HISTORY,
            reconnect_grace: Duration::from_secs(5),
            restart_grace: Duration::from_secs(60),
            policy: std::sync::Arc::new(crate::policy::Policy::uk()),
            sign_in_available: false,
            handshake_check: None,
        }
    }
}

/// What the media layer must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaAction {
    /// Open a media connection for this participant, replacing any it has.
    Connect(ParticipantId),
    /// Close the participant's media connection; its tracks stay until unpublished.
    Disconnect(ParticipantId),
    Publish {
        who: ParticipantId,
        source: Source,
    },
    Unpublish {
        who: ParticipantId,
        source: Source,
    },
    Subscribe {
        who: ParticipantId,
        publisher: ParticipantId,
        source: Source,
    },
    /// Stop or resume forwarding one source (a host mute), without renegotiation.
    Pause {
        who: ParticipantId,
        source: Source,
        paused: bool,
    },
    Answer {
        who: ParticipantId,
        sdp: String,
    },
    /// Offer the participant's media connection new ICE credentials.
    RestartIce {
        who: ParticipantId,
    },
    /// How `who` shows the videos it receives (checked: see `room/media.rs`);
    /// a video it receives and does not list is not on its screen.
    VideoSizes {
        who: ParticipantId,
        sizes: Vec<crate::protocol::VideoSize>,
    },
}

/// An auditable event, described by the domain; the edge stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFact {
    pub event: &'static str,
    pub actor: String,
    pub subject: String,
    pub outcome: String,
    pub detail: String,
}

/// A change to what the meeting remembers across restarts; the edge stores it.
/// Its `Debug` never shows a passcode's hash (it is what a guess is checked
/// against offline), so a logged change cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub enum Change {
    Settings(Settings),
    Locked(bool),
    /// The person known by `key` gets `role` whenever they join (`Participant`
    /// withdraws the grant).
    Grant {
        key: String,
        role: Role,
    },
    /// The person known by `key` may not join again.
    Bar {
        key: String,
    },
    /// The handling level's id.
    Level(String),
    /// The passcode's Argon2 hash, or none: the meeting has no passcode.
    Passcode(Option<String>),
    /// A chat message to keep for `days` days (the level keeps chat).
    Chat {
        message: ChatMessage,
        days: u32,
    },
}

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Settings(s) => f.debug_tuple("Settings").field(s).finish(),
            Change::Locked(l) => f.debug_tuple("Locked").field(l).finish(),
            Change::Grant { key, role } => f
                .debug_struct("Grant")
                .field("key", key)
                .field("role", role)
                .finish(),
            Change::Bar { key } => f.debug_struct("Bar").field("key", key).finish(),
            Change::Level(l) => f.debug_tuple("Level").field(l).finish(),
            // Never the text: a logged change must not leak what was said.
            Change::Chat { message, days } => f
                .debug_struct("Chat")
                .field("id", &message.id)
                .field("days", days)
                .finish(),
            Change::Passcode(h) => {
                let shown = if h.is_some() { "set" } else { "none" };
                f.debug_tuple("Passcode").field(&shown).finish()
            }
        }
    }
}

/// What the meeting remembers across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomState {
    pub settings: Settings,
    pub locked: bool,
    /// The handling level's id (unknown or empty: the lowest).
    pub level: String,
    pub has_passcode: bool,
    pub grants: BTreeMap<String, Role>,
    pub barred: BTreeSet<String>,
    /// Chat kept from before (where the level keeps chat), oldest first.
    pub chat: Vec<ChatMessage>,
    /// The number the next chat message takes: past every message stored,
    /// shown or not, so a new one never takes a kept one's place.
    pub next_chat: u64,
    /// The number the next participant takes: past every id used before
    /// (the audit log names them), so an id never stands for two people.
    pub next_participant: u64,
}

/// Who is joining, as the edge established it. (Serialised when the edge is
/// another node: cascading.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entrant {
    /// The role their credentials give (a valid host key makes a host).
    pub role: Role,
    /// What recognises this person again (their verified account, or else a
    /// browser's device cookie; hashed): role grants and bars attach to it.
    /// `None` for clients without either.
    pub key: Option<String>,
    pub identity: Identity,
    /// The client's network address, as the edge saw it: it caps how many may
    /// wait in the lobby from one place. `None` if unknown (no such cap then).
    pub address: Option<IpAddr>,
}

impl Entrant {
    pub fn participant() -> Self {
        Entrant {
            role: Role::Participant,
            key: None,
            identity: Identity::guest(),
            address: None,
        }
    }
}

// Effects are made and consumed at once, one at a time: their size is no cost
// worth boxing the welcome message for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Send {
        to: ParticipantId,
        message: ServerMessage,
    },
    /// One message for several people: made once, not once per recipient (a
    /// meeting of a thousand would otherwise queue a thousand copies of every
    /// join, leave and change).
    Broadcast {
        to: Vec<ParticipantId>,
        message: ServerMessage,
    },
    Media(MediaAction),
    /// The participant's session is over: close its socket.
    Close {
        who: ParticipantId,
    },
    /// Something the audit log must record.
    Audit(AuditFact),
    /// A host ended the meeting: it takes no more joins, ever.
    Ended,
    /// Something to remember across restarts.
    Persist(Change),
    /// A host asked for this passcode: hash it off the meeting's task (Argon2
    /// is slow on purpose) and hand the hash to [`Room::passcode_hashed`].
    HashPasscode {
        by: ParticipantId,
        passcode: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{message}")]
pub struct RoomError {
    pub code: ErrorCode,
    pub message: String,
}

fn err(code: ErrorCode, message: impl Into<String>) -> RoomError {
    RoomError {
        code,
        message: message.into(),
    }
}

#[derive(Debug)]
struct Participant {
    name: String,
    role: Role,
    key: Option<String>,
    identity: Identity,
    /// False while waiting in the lobby: such a person gets no media, chat or list.
    admitted: bool,
    /// Since when they wait in the lobby (while not admitted).
    waiting_since: Option<Instant>,
    /// Where they connect from (see [`address_group`]), for the lobby's cap per address.
    address: Option<IpAddr>,
    /// A host muted their microphone; it stays unforwarded until they may unmute.
    muted_by_host: bool,
    resume_token: String,
    /// Held for them across a server restart ([`restart`]): the SHA-256 of
    /// their resume token, until they resume (and [`RoomLimits::restart_grace`]
    /// applies while they are away).
    returning: Option<String>,
    /// `Some(since)` while the connection is lost.
    away_since: Option<Instant>,
    sources: BTreeSet<Source>,
    muted: BTreeSet<Source>,
    /// As their client last reported it.
    media_path: Option<MediaPath>,
    last_ice_restart: Option<Instant>,
    video_sizes: media::SizesGate,
    /// Their raised hand's place in the queue ([`hands`]).
    hand: Option<u64>,
    /// When their last reaction was passed on ([`hands`]).
    last_reaction: Option<Instant>,
    /// When they last asked a question ([`questions`]).
    last_question: Option<Instant>,
    /// When a webinar's attendee last raised or lowered their hand ([`hands`]).
    last_hand_change: Option<Instant>,
}

#[derive(Debug)]
pub struct Room {
    info: MeetingInfo,
    ended: bool,
    /// A host's new passcode is being hashed: another change waits for it
    /// (one hash per meeting at a time; the last request is the one applied).
    passcode_pending: bool,
    limits: RoomLimits,
    settings: Settings,
    grants: BTreeMap<String, Role>,
    barred: BTreeSet<String>,
    participants: BTreeMap<ParticipantId, Participant>,
    chat: VecDeque<ChatMessage>,
    next_participant: u64,
    next_chat: u64,
    /// The next raised hand's place in the queue.
    next_hand: u64,
    /// A webinar's audience count, as last told ([`webinar`]).
    audience: webinar::AudienceCount,
    /// A webinar's Q&A ([`questions`]).
    questions: questions::Questions,
    /// The MLS group's Delivery Service, in an end-to-end encrypted meeting ([`e2ee`]).
    e2ee: Option<crate::e2ee::Group>,
    /// The latest time the room was told of (for what happens without a `now`
    /// of its own, such as a removal).
    clock: Instant,
    effects: VecDeque<Effect>,
}

impl Room {
    pub fn new(id: String, title: String, limits: RoomLimits) -> Self {
        Self::with_settings(id, title, limits, Settings::default())
    }

    pub fn with_settings(
        id: String,
        title: String,
        limits: RoomLimits,
        settings: Settings,
    ) -> Self {
        Self::restore(
            id,
            title,
            limits,
            RoomState {
                settings,
                ..RoomState::default()
            },
        )
    }

    /// A meeting as it was remembered (after a restart, or after its task stopped
    /// for lack of people).
    pub fn restore(id: String, title: String, limits: RoomLimits, state: RoomState) -> Self {
        let level = limits.policy.level_or_lowest(&state.level).view();
        let shown = state.chat.len().saturating_sub(limits.chat_history);
        let e2ee = state
            .settings
            .e2ee
            .then(|| crate::e2ee::Group::checked_by(limits.handshake_check));
        Room {
            info: MeetingInfo {
                id,
                title,
                locked: state.locked,
                level,
                passcode: state.has_passcode,
            },
            ended: false,
            passcode_pending: false,
            limits,
            settings: state.settings,
            grants: state.grants,
            barred: state.barred,
            participants: BTreeMap::new(),
            next_chat: state
                .chat
                .iter()
                .map(|m| m.id + 1)
                .chain([state.next_chat, 1])
                .max()
                .unwrap_or(1),
            // The newest that later joiners are shown, as while it runs.
            chat: state.chat.iter().skip(shown).cloned().collect(),
            next_participant: state.next_participant.max(1),
            next_hand: 1,
            audience: Default::default(),
            questions: Default::default(),
            e2ee,
            clock: Instant::now(),
            effects: VecDeque::new(),
        }
    }

    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    pub fn info(&self) -> &MeetingInfo {
        &self.info
    }

    /// A message from a joined participant.
    pub fn handle(
        &mut self,
        now: Instant,
        who: &ParticipantId,
        msg: ClientMessage,
    ) -> Result<(), RoomError> {
        self.clock = now;
        let Some(p) = self.participants.get_mut(who) else {
            return Err(err(ErrorCode::WrongState, "not in this meeting"));
        };
        // Someone in the lobby may only wait, ping or leave.
        if !p.admitted && !matches!(msg, ClientMessage::Ping { .. } | ClientMessage::Leave {}) {
            return Err(err(ErrorCode::WrongState, "you are waiting in the lobby"));
        }
        match msg {
            ClientMessage::Join { .. } => return Err(err(ErrorCode::WrongState, "already joined")),
            ClientMessage::Publish { source } => {
                if !p.sources.contains(&source) {
                    // A new publication. (Republishing after a resume keeps whatever
                    // was allowed, and any host mute, on the same track.)
                    let host_muted = p.muted_by_host && source == Source::Microphone;
                    access::check(p.role, &self.settings, Action::Publish(source), host_muted)
                        .map_err(|d| err(ErrorCode::Forbidden, d.0))?;
                    if source == Source::Microphone {
                        p.muted_by_host = false; // a new track starts unmuted
                    }
                }
                if !p.sources.insert(source) {
                    // Republishing after a reconnect: the media layer moves the track.
                    self.effects.push_back(Effect::Media(MediaAction::Publish {
                        who: who.clone(),
                        source,
                    }));
                    return Ok(());
                }
                p.muted.remove(&source);
                self.effects.push_back(Effect::Media(MediaAction::Publish {
                    who: who.clone(),
                    source,
                }));
                let others: Vec<ParticipantId> = self
                    .participants
                    .keys()
                    .filter(|k| *k != who)
                    .cloned()
                    .collect();
                for other in others {
                    if self.participants[&other].away_since.is_none() {
                        self.effects
                            .push_back(Effect::Media(MediaAction::Subscribe {
                                who: other,
                                publisher: who.clone(),
                                source,
                            }));
                    }
                }
                self.broadcast_update(who);
            }
            ClientMessage::Unpublish { source } => {
                if !p.sources.remove(&source) {
                    return Err(err(ErrorCode::WrongState, "that source is not published"));
                }
                p.muted.remove(&source);
                self.effects
                    .push_back(Effect::Media(MediaAction::Unpublish {
                        who: who.clone(),
                        source,
                    }));
                self.broadcast_update(who);
            }
            ClientMessage::Mute { source, muted } => {
                if !p.sources.contains(&source) {
                    return Err(err(ErrorCode::WrongState, "that source is not published"));
                }
                let lifts_host_mute = source == Source::Microphone && !muted && p.muted_by_host;
                if lifts_host_mute {
                    access::check(p.role, &self.settings, Action::Unmute, true)
                        .map_err(|d| err(ErrorCode::Forbidden, d.0))?;
                    p.muted_by_host = false;
                    self.effects.push_back(Effect::Media(MediaAction::Pause {
                        who: who.clone(),
                        source,
                        paused: false,
                    }));
                }
                let changed = if muted {
                    p.muted.insert(source)
                } else {
                    p.muted.remove(&source)
                };
                if lifts_host_mute {
                    self.send_permissions(who);
                }
                if changed {
                    self.broadcast_update(who);
                }
            }
            ClientMessage::RestartIce {} => {
                // Each restart is a new offer and new checks: a client that
                // asks in a loop gets one a while.
                if p.last_ice_restart
                    .is_some_and(|t| now.saturating_duration_since(t) < ICE_RESTART_INTERVAL)
                {
                    return Err(err(
                        ErrorCode::RateLimited,
                        "the media connection is already being restarted",
                    ));
                }
                p.last_ice_restart = Some(now);
                self.effects
                    .push_back(Effect::Media(MediaAction::RestartIce { who: who.clone() }));
            }
            ClientMessage::MediaPath { path } => {
                let attendee = webinar::in_audience(&self.settings, p);
                if p.media_path != Some(path) {
                    p.media_path = Some(path);
                    if attendee {
                        // Shown to hosts in `attendees` pages: a push per
                        // change, from each of a thousand, could flood them.
                        return Ok(());
                    }
                    // Only hosts see paths: the others would get an update
                    // with nothing changed in it.
                    let participant = self.participant_info(who);
                    for host in self.host_ids() {
                        self.send(
                            &host,
                            ServerMessage::ParticipantUpdated {
                                participant: participant.clone(),
                            },
                        );
                    }
                }
            }
            ClientMessage::VideoSizes { sizes } => self.video_sizes(now, who, sizes)?,
            ClientMessage::RaiseHand {} => self.raise_hand(now, who)?,
            ClientMessage::Attendees { after } => {
                allowed(p.role, &self.settings, Action::Host)?;
                self.attendees_page(who, after)?;
            }
            ClientMessage::Ask { text } => self.ask(now, who, &text)?,
            ClientMessage::MarkAnswered { id } => {
                allowed(p.role, &self.settings, Action::Host)?;
                self.mark_answered(id)?;
            }
            ClientMessage::DismissQuestion { id } => {
                allowed(p.role, &self.settings, Action::Host)?;
                self.dismiss_question(id)?;
            }
            ClientMessage::LowerHand { participant_id } => {
                self.lower_hand(now, who, participant_id.map(ParticipantId))?
            }
            ClientMessage::React { reaction } => self.react(now, who, reaction)?,
            ClientMessage::Answer { sdp } => {
                self.effects.push_back(Effect::Media(MediaAction::Answer {
                    who: who.clone(),
                    sdp,
                }));
            }
            ClientMessage::Chat { text } => {
                allowed(p.role, &self.settings, Action::Chat)?;
                if self.is_e2ee() {
                    // The server must never see what is said in such a meeting.
                    return Err(err(
                        ErrorCode::Forbidden,
                        "chat in this meeting is end-to-end encrypted: send it as mls-app",
                    ));
                }
                self.chat(who, &text)?;
            }
            msg @ (ClientMessage::MlsKeyPackage { .. }
            | ClientMessage::MlsGroupCreated { .. }
            | ClientMessage::MlsCommit { .. }
            | ClientMessage::MlsApp { .. }
            | ClientMessage::MlsCommitFailed { .. }) => self.mls(now, who, msg)?,
            ClientMessage::Ping { id } => self.send(who, ServerMessage::Pong { id }),
            ClientMessage::Leave {} => self.remove(who, LeaveReason::Left),
            ClientMessage::Remove {
                participant_id,
                bar,
            } => {
                allowed(p.role, &self.settings, Action::Host)?;
                let actor_role = p.role;
                self.remove_by_host(who, actor_role, participant_id, bar)?;
            }
            ClientMessage::StopSource {
                participant_id,
                source,
            } => {
                allowed(p.role, &self.settings, Action::Host)?;
                let actor_role = p.role;
                let by = p.name.clone();
                self.stop_source_by_host(who, actor_role, &by, participant_id, source)?;
            }
            ClientMessage::UpdateSettings { settings } => {
                allowed(p.role, &self.settings, Action::Host)?;
                let by = p.name.clone();
                self.meets_level(self.level(), &settings)?;
                self.update_settings(who, &by, settings)?;
            }
            ClientMessage::SetLevel {
                level,
                raise,
                confirm,
            } => {
                allowed(p.role, &self.settings, Action::Host)?;
                let by = p.name.clone();
                self.set_level(now, who, &by, &level, raise, confirm)?;
            }
            ClientMessage::SetRole {
                participant_id,
                role,
            } => {
                allowed(p.role, &self.settings, Action::Host)?;
                let actor_role = p.role;
                self.set_role(who, actor_role, participant_id, role)?;
            }
            ClientMessage::SetPasscode { passcode } => {
                allowed(p.role, &self.settings, Action::Host)?;
                self.set_passcode(who, passcode)?;
            }
            ClientMessage::Lock { locked } => {
                allowed(p.role, &self.settings, Action::Host)?;
                if self.info.locked != locked {
                    self.info.locked = locked;
                    self.effects
                        .push_back(Effect::Persist(Change::Locked(locked)));
                    self.audit(
                        "lock",
                        who,
                        who,
                        if locked { "locked" } else { "unlocked" },
                        String::new(),
                    );
                    self.broadcast(ServerMessage::MeetingUpdated {
                        meeting: self.info.clone(),
                    });
                }
            }
            ClientMessage::Admit { participant_id } | ClientMessage::Deny { participant_id }
                if !p.admitted =>
            {
                let _ = participant_id;
                return Err(err(ErrorCode::WrongState, "you are waiting in the lobby"));
            }
            ClientMessage::Admit { participant_id } => {
                allowed(p.role, &self.settings, Action::Host)?;
                self.decide(who, &ParticipantId(participant_id), true)?;
                self.notify_hosts();
            }
            ClientMessage::Deny { participant_id } => {
                allowed(p.role, &self.settings, Action::Host)?;
                self.decide(who, &ParticipantId(participant_id), false)?;
                self.notify_hosts();
            }
            ClientMessage::AdmitAll {} => {
                allowed(p.role, &self.settings, Action::Host)?;
                // As many as there are seats for, longest waiting first.
                let mut full = Ok(());
                for w in self.waiting_ids() {
                    if let Err(e) = self.decide(who, &w, true) {
                        full = Err(e);
                    }
                }
                self.notify_hosts();
                full?;
            }
            ClientMessage::MuteParticipant { participant_id } => {
                allowed(p.role, &self.settings, Action::Host)?;
                let actor_role = p.role;
                let target = ParticipantId(participant_id);
                let Some(t) = self.participants.get(&target).filter(|t| t.admitted) else {
                    return Err(err(ErrorCode::Invalid, "no such participant"));
                };
                outranks(actor_role, t.role)?;
                self.host_mute(who, &target);
            }
            ClientMessage::MuteAll {} => {
                allowed(p.role, &self.settings, Action::Host)?;
                let targets: Vec<ParticipantId> = self
                    .participants
                    .iter()
                    // Not a webinar's audience: they publish nothing, and a
                    // mute each would be a message each to every host.
                    .filter(|(id, t)| {
                        *id != who
                            && t.admitted
                            && !t.role.is_host()
                            && !webinar::in_audience(&self.settings, t)
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                for t in targets {
                    self.host_mute(who, &t);
                }
            }
            ClientMessage::End {} => {
                allowed(p.role, &self.settings, Action::Host)?;
                let by = p.name.clone();
                self.ended = true;
                self.audit("end", who, who, "ended", String::new());
                // The lobby is told first and let go, so that the hosts
                // leaving below send it no "lobby" (no host) before the end.
                for w in self.waiting_ids() {
                    self.send(&w, ServerMessage::Ended { by: by.clone() });
                    self.participants.remove(&w);
                    self.effects.push_back(Effect::Close { who: w });
                }
                self.broadcast(ServerMessage::Ended { by });
                let everyone: Vec<ParticipantId> = self.participants.keys().cloned().collect();
                for id in everyone {
                    self.remove(&id, LeaveReason::Ended);
                }
                self.effects.push_back(Effect::Ended);
            }
        }
        Ok(())
    }

    /// The participant's signalling socket closed without "leave", or its media
    /// connection died. They may resume within the grace period.
    pub fn connection_lost(&mut self, now: Instant, who: &ParticipantId) {
        self.clock = now;
        let Some(p) = self.participants.get_mut(who) else {
            return;
        };
        if p.away_since.is_some() {
            return;
        }
        if !p.admitted {
            // Waiting is not a seat worth keeping: gone at once.
            self.participants.remove(who);
            self.e2ee_left(now, who); // nothing to do unless a bug left them in the group
            self.notify_hosts();
            return;
        }
        p.away_since = Some(now);
        let was_host = p.role.is_host();
        self.effects
            .push_back(Effect::Media(MediaAction::Disconnect(who.clone())));
        self.broadcast_update(who);
        if was_host {
            self.lobby_changed();
        }
        self.e2ee_tick(now);
    }

    /// Time passes: participants away longer than the grace period are gone.
    pub fn tick(&mut self, now: Instant) {
        self.clock = now;
        let expired: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(_, p)| {
                let grace = match p.returning {
                    Some(_) => self.limits.restart_grace,
                    None => self.limits.reconnect_grace,
                };
                p.away_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= grace)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove(&id, LeaveReason::Disconnected);
        }
        self.expire_waiting(now);
        self.flush_video_sizes(now);
        self.tick_audience(now);
        self.e2ee_tick(now);
    }

    /// Voice activity reported by the media layer.
    pub fn speaking(&mut self, who: &ParticipantId, speaking: bool) {
        if self.participants.contains_key(who) {
            self.broadcast(ServerMessage::Speaking {
                participant_id: who.0.clone(),
                speaking,
            });
        }
    }

    pub fn is_away(&self, who: &ParticipantId) -> bool {
        self.participants
            .get(who)
            .is_some_and(|p| p.away_since.is_some())
    }

    fn remove(&mut self, who: &ParticipantId, reason: LeaveReason) {
        let attendee = self.is_attendee(who);
        let Some(p) = self.participants.remove(who) else {
            return;
        };
        if !p.admitted {
            // Left the lobby: only the hosts' lobby list changes.
            self.effects.push_back(Effect::Close { who: who.clone() });
            self.e2ee_left(self.clock, who); // nothing to do unless a bug left them in the group
            self.notify_hosts();
            return;
        }
        if p.role.is_host() {
            self.lobby_changed();
        }
        if p.away_since.is_none() {
            self.effects
                .push_back(Effect::Media(MediaAction::Disconnect(who.clone())));
            self.effects.push_back(Effect::Close { who: who.clone() });
        }
        self.unpublish(who, p.sources);
        let left = ServerMessage::ParticipantLeft {
            participant_id: who.0.clone(),
            reason,
        };
        if attendee {
            self.tell_about_attendee(who, false, left);
        } else {
            self.broadcast(left);
        }
        self.e2ee_left(self.clock, who);
        let outcome = match reason {
            LeaveReason::Left => "left",
            LeaveReason::Disconnected => "disconnected",
            LeaveReason::Removed => "removed",
            LeaveReason::Ended => "ended",
            LeaveReason::Lobby => "moved to lobby",
            LeaveReason::OffStage => "off stage",
        };
        self.audit("leave", who, who, outcome, String::new());
    }
}

impl Room {
    /// The media layer stops taking `sources` from `who`.
    fn unpublish(&mut self, who: &ParticipantId, sources: BTreeSet<Source>) {
        for source in sources {
            self.effects
                .push_back(Effect::Media(MediaAction::Unpublish {
                    who: who.clone(),
                    source,
                }));
        }
    }
}

/// Co-hosts may act on participants and presenters, not on the host.
fn outranks(actor: Role, target: Role) -> Result<(), RoomError> {
    if target == Role::Host && actor != Role::Host {
        return Err(err(
            ErrorCode::Forbidden,
            "only the host may do that to the host",
        ));
    }
    Ok(())
}

fn source_name(source: Source) -> &'static str {
    match source {
        Source::Microphone => "microphone",
        Source::Camera => "camera",
        Source::Screen => "screen",
        Source::ScreenAudio => "screen-audio",
    }
}

/// The changed settings, as `name: old -> new` pairs, for the audit log.
fn settings_diff(before: &Settings, after: &Settings) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return String::new();
    };
    b.iter()
        .filter(|(k, v)| a.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: {} -> {v}", a.get(k).cloned().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The permission rule, as a room error the sender is shown.
fn allowed(role: Role, settings: &Settings, action: Action) -> Result<(), RoomError> {
    access::check(role, settings, action, false).map_err(|d| err(ErrorCode::Forbidden, d.0))
}

/// The name as shown, or why it is refused (see [`names::display_name`]).
fn clean_name(name: &str, max: usize) -> Result<String, RoomError> {
    names::display_name(name, max).map_err(|e| err(ErrorCode::Invalid, e.to_string()))
}

fn random_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

mod chat;
mod e2ee;
mod hands;
mod host_actions;
mod join;
mod levels;
mod lobby;
mod media;
mod outbox;
mod passcode;
pub mod questions;
pub mod restart;
pub mod webinar;

#[cfg(test)]
mod testkit;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod chat_tests;

#[cfg(test)]
mod e2ee_tests;
