//! One meeting's state: who is in it, what they publish, the chat.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::access::{self, Action, Role, Settings};
use crate::identity::{Identity, Level, Verification};
use crate::names;
use crate::protocol::{
    ChatMessage, ClientMessage, ErrorCode, LeaveReason, MediaPath, MeetingInfo, ParticipantInfo,
    Permissions, ServerMessage, Source, Waiting, PROTOCOL_VERSION,
};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
/// `chat-history` pages. The edge keeps each socket's outbound queue above this.
pub const fn welcome_messages(participants: usize, chat_history: usize) -> usize {
    1 + participants
        .saturating_sub(ROSTER_PAGE)
        .div_ceil(ROSTER_PAGE)
        + chat_history.saturating_sub(CHAT_PAGE).div_ceil(CHAT_PAGE)
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

/// Who is joining, as the edge established it.
#[derive(Debug, Clone, PartialEq, Eq)]
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
            self.start_media(&id);
            self.broadcast_update(&id);
            self.audit("join", &id, &id, "resumed", String::new());
            return Ok(id);
        }
        if self.ended {
            return Err(err(ErrorCode::Ended, "this meeting has ended"));
        }
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
    fn capacity(&self) -> usize {
        self.limits
            .max_participants
            .min(self.settings.max_participants)
    }

    /// Whether someone with `role` may come in now: hosts and co-hosts always
    /// may (a meeting full of participants must not keep out those who run
    /// it); anyone else while fewer than the limit are in (hosts count). The
    /// lobby takes no seats.
    fn has_seat(&self, role: Role) -> bool {
        role.is_host()
            || self.participants.values().filter(|p| p.admitted).count() < self.capacity()
    }

    /// Whether one more may wait in the lobby, from `address`.
    fn lobby_has_room(&self, address: Option<IpAddr>) -> Result<(), RoomError> {
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
    fn let_in(&mut self, id: &ParticipantId) {
        self.welcome(id);
        let info = self.participant_info(id);
        self.broadcast_except(id, ServerMessage::ParticipantJoined { participant: info });
        self.start_media(id);
    }

    fn host_present(&self) -> bool {
        self.participants
            .values()
            .any(|p| p.role.is_host() && p.away_since.is_none())
    }

    fn send_lobby(&mut self, id: &ParticipantId) {
        let message = ServerMessage::Lobby {
            meeting: self.info.clone(),
            host_present: self.host_present(),
        };
        self.send(id, message);
    }

    /// Hosts see who waits; those waiting learn whether a host is there.
    fn lobby_changed(&mut self) {
        self.notify_hosts();
        for w in self.waiting_ids() {
            self.send_lobby(&w);
        }
    }

    /// Everyone in the lobby, longest waiting first.
    fn waiting_ids(&self) -> Vec<ParticipantId> {
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
    fn notify_hosts(&mut self) {
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

    /// A host mutes `target`: the SFU stops forwarding their microphone at once,
    /// they are told, and everyone sees them muted.
    fn host_mute(&mut self, host: &ParticipantId, target: &ParticipantId) {
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
    fn stop_source(&mut self, target: &ParticipantId, source: Source, by: &str) {
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
    fn update_settings(
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
                    self.send(&h, ServerMessage::Notice { text: text.clone() });
                }
            }
        }
        Ok(())
    }

    /// The meeting's handling level.
    pub fn level(&self) -> &crate::policy::HandlingLevel {
        self.limits.policy.level_or_lowest(&self.info.level.id)
    }

    fn meets_level(
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
    fn set_level(
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
        let settings = if raise {
            new.raise(&self.settings)
        } else {
            self.settings.clone()
        };
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
                removed.push((id.clone(), p.name.clone(), why));
            } else if new.lobby_required
                && !old.lobby_required
                && p.admitted
                && p.identity.level == Level::Guest
                && !p.role.is_host()
            {
                to_lobby.push((id.clone(), p.name.clone()));
            }
        }
        for (id, _, why) in &removed {
            self.send(
                id,
                ServerMessage::Removed {
                    by: by.to_string(),
                    barred: false,
                    reason: Some(why.clone()),
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
        let mut notes = Vec::new();
        if !removed.is_empty() {
            let names: Vec<&str> = removed.iter().map(|(_, n, _)| n.as_str()).collect();
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
            for h in self.host_ids() {
                self.send(&h, ServerMessage::Notice { text: text.clone() });
            }
        }
        if !to_lobby.is_empty() {
            self.notify_hosts();
        }
        Ok(())
    }

    fn host_ids(&self) -> Vec<ParticipantId> {
        self.participants
            .iter()
            .filter(|(_, p)| p.admitted && p.role.is_host() && p.away_since.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Back to the lobby: their media stops, the others see them leave, and a
    /// host must admit them again.
    fn move_to_lobby(&mut self, now: Instant, id: &ParticipantId) {
        let Some(p) = self.participants.get_mut(id) else {
            return;
        };
        p.admitted = false;
        p.waiting_since = Some(now);
        p.hand = None; // the queue is the meeting's: back in it only by raising again
        let sources: Vec<Source> = std::mem::take(&mut p.sources).into_iter().collect();
        p.muted.clear();
        for source in sources {
            self.effects
                .push_back(Effect::Media(MediaAction::Unpublish {
                    who: id.clone(),
                    source,
                }));
        }
        self.effects
            .push_back(Effect::Media(MediaAction::Disconnect(id.clone())));
        self.broadcast(ServerMessage::ParticipantLeft {
            participant_id: id.0.clone(),
            reason: LeaveReason::Lobby,
        });
        self.send_lobby(id);
    }

    /// A host lets `target` in (true) or turns them away (false).
    fn decide(
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

    /// "welcome" with the first page of the participant list (the receiver
    /// first) and of the chat, then the rest in "roster" and "chat-history"
    /// pages: a message the size of a large meeting would stay in every
    /// connection's write buffer for good.
    fn welcome(&mut self, id: &ParticipantId) {
        let p = &self.participants[id];
        let mut participants: Vec<ParticipantInfo> = std::iter::once(id)
            .chain(
                self.participants
                    .iter()
                    .filter(|(k, p)| p.admitted && *k != id)
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

    fn permissions_of(&self, p: &Participant) -> Permissions {
        access::permissions(p.role, &self.settings, p.muted_by_host)
    }

    /// Tell `id` what they may do now (after a role, settings or mute change).
    fn send_permissions(&mut self, id: &ParticipantId) {
        if let Some(p) = self.participants.get(id) {
            let permissions = self.permissions_of(p);
            self.send(id, ServerMessage::Permissions { permissions });
        }
    }

    /// A media connection for `id`, subscribed to everything the others publish.
    fn start_media(&mut self, id: &ParticipantId) {
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

    /// A message from a joined participant.
    pub fn handle(
        &mut self,
        now: Instant,
        who: &ParticipantId,
        msg: ClientMessage,
    ) -> Result<(), RoomError> {
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
                if p.media_path != Some(path) {
                    p.media_path = Some(path);
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
            ClientMessage::RaiseHand {} => self.raise_hand(who),
            ClientMessage::LowerHand { participant_id } => {
                self.lower_hand(who, participant_id.map(ParticipantId))?
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
                // No bidi controls: a message must not reverse what is shown after it.
                let text = names::chat_text(&text);
                let text = text.trim();
                if text.is_empty() {
                    return Err(err(ErrorCode::Invalid, "a chat message cannot be empty"));
                }
                if text.chars().count() > self.limits.max_chat_chars {
                    return Err(err(
                        ErrorCode::Invalid,
                        format!(
                            "a chat message is at most {} characters",
                            self.limits.max_chat_chars
                        ),
                    ));
                }
                let message = ChatMessage {
                    id: self.next_chat,
                    participant_id: who.0.clone(),
                    name: p.name.clone(),
                    text: text.to_string(),
                    sent_at: unix_millis(),
                    identity: Verification::of(&p.identity).public(),
                };
                self.next_chat += 1;
                // Kept (for later joiners, and stored) only where the level
                // keeps chat; otherwise it lives only in the browsers.
                let days = self.level().chat_retention_days;
                if days > 0 {
                    if self.chat.len() >= self.limits.chat_history {
                        self.chat.pop_front();
                    }
                    self.chat.push_back(message.clone());
                    self.effects.push_back(Effect::Persist(Change::Chat {
                        message: message.clone(),
                        days,
                    }));
                }
                self.broadcast(ServerMessage::Chat { message });
            }
            ClientMessage::Ping { id } => self.send(who, ServerMessage::Pong { id }),
            ClientMessage::Leave {} => self.remove(who, LeaveReason::Left),
            ClientMessage::Remove {
                participant_id,
                bar,
            } => {
                allowed(p.role, &self.settings, Action::Host)?;
                let actor_role = p.role;
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
            }
            ClientMessage::StopSource {
                participant_id,
                source,
            } => {
                allowed(p.role, &self.settings, Action::Host)?;
                let actor_role = p.role;
                let by = p.name.clone();
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
                self.stop_source(&target, source, &by);
                self.audit(
                    "stop-source",
                    who,
                    &target,
                    "stopped",
                    format!("source: {}", source_name(source)),
                );
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
                self.broadcast_update(&target);
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
                    .filter(|(id, t)| *id != who && t.admitted && !t.role.is_host())
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
        let Some(p) = self.participants.get_mut(who) else {
            return;
        };
        if p.away_since.is_some() {
            return;
        }
        if !p.admitted {
            // Waiting is not a seat worth keeping: gone at once.
            self.participants.remove(who);
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
    }

    /// Time passes: participants away longer than the grace period are gone.
    pub fn tick(&mut self, now: Instant) {
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
    }

    /// Those who waited in the lobby past the limit are told why and let go.
    fn expire_waiting(&mut self, now: Instant) {
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
        let Some(p) = self.participants.remove(who) else {
            return;
        };
        if !p.admitted {
            // Left the lobby: only the hosts' lobby list changes.
            self.effects.push_back(Effect::Close { who: who.clone() });
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
        for source in p.sources {
            self.effects
                .push_back(Effect::Media(MediaAction::Unpublish {
                    who: who.clone(),
                    source,
                }));
        }
        self.broadcast(ServerMessage::ParticipantLeft {
            participant_id: who.0.clone(),
            reason,
        });
        let outcome = match reason {
            LeaveReason::Left => "left",
            LeaveReason::Disconnected => "disconnected",
            LeaveReason::Removed => "removed",
            LeaveReason::Ended => "ended",
            LeaveReason::Lobby => "moved to lobby",
        };
        self.audit("leave", who, who, outcome, String::new());
    }

    fn audit(
        &mut self,
        event: &'static str,
        actor: &ParticipantId,
        subject: &ParticipantId,
        outcome: &str,
        detail: String,
    ) {
        self.effects.push_back(Effect::Audit(AuditFact {
            event,
            actor: actor.0.clone(),
            subject: subject.0.clone(),
            outcome: outcome.to_string(),
            detail,
        }));
    }

    fn participant_info(&self, id: &ParticipantId) -> ParticipantInfo {
        let p = &self.participants[id];
        ParticipantInfo {
            id: id.0.clone(),
            name: p.name.clone(),
            sources: p.sources.iter().copied().collect(),
            muted: p.muted.iter().copied().collect(),
            connected: p.away_since.is_none(),
            role: p.role,
            identity: Verification::of(&p.identity),
            media_path: p.media_path,
            hand: p.hand,
        }
    }

    /// The meeting's rules on identity: guests allowed or not, MFA required or not.
    fn meets_rules(&self, identity: &Identity) -> Result<(), RoomError> {
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

    fn broadcast_update(&mut self, id: &ParticipantId) {
        let participant = self.participant_info(id);
        self.broadcast(ServerMessage::ParticipantUpdated { participant });
    }

    fn send(&mut self, to: &ParticipantId, message: ServerMessage) {
        let host = self
            .participants
            .get(to)
            .is_some_and(|p| p.admitted && p.role.is_host());
        let message = if host { message } else { for_non_host(message) };
        self.effects.push_back(Effect::Send {
            to: to.clone(),
            message,
        });
    }

    /// To everyone connected (those away catch up from "welcome" when they resume).
    fn broadcast(&mut self, message: ServerMessage) {
        self.broadcast_filtered(None, message);
    }

    fn broadcast_except(&mut self, except: &ParticipantId, message: ServerMessage) {
        self.broadcast_filtered(Some(except), message);
    }

    /// Hosts get the message as it is, everyone else [`for_non_host`]'s version.
    fn broadcast_filtered(&mut self, except: Option<&ParticipantId>, message: ServerMessage) {
        let (mut hosts, mut others) = (Vec::new(), Vec::new());
        for (id, p) in &self.participants {
            if p.admitted && p.away_since.is_none() && Some(id) != except {
                let group = if p.role.is_host() {
                    &mut hosts
                } else {
                    &mut others
                };
                group.push(id.clone());
            }
        }
        if !others.is_empty() {
            let message = for_non_host(message.clone());
            self.effects.push_back(Effect::Broadcast {
                to: others,
                message,
            });
        }
        if !hosts.is_empty() {
            self.effects
                .push_back(Effect::Broadcast { to: hosts, message });
        }
    }
}

/// Only hosts learn who signed in with more than one factor.
fn for_non_host(message: ServerMessage) -> ServerMessage {
    let strip = |mut p: ParticipantInfo| {
        p.identity = p.identity.public();
        p.media_path = None;
        p
    };
    match message {
        ServerMessage::Welcome {
            protocol,
            participant_id,
            resume_token,
            meeting,
            participants,
            chat,
            settings,
            permissions,
            ice_servers,
        } => ServerMessage::Welcome {
            protocol,
            participant_id,
            resume_token,
            meeting,
            participants: participants.into_iter().map(strip).collect(),
            chat,
            settings,
            permissions,
            ice_servers,
        },
        ServerMessage::Roster { participants } => ServerMessage::Roster {
            participants: participants.into_iter().map(strip).collect(),
        },
        ServerMessage::ParticipantJoined { participant } => ServerMessage::ParticipantJoined {
            participant: strip(participant),
        },
        ServerMessage::ParticipantUpdated { participant } => ServerMessage::ParticipantUpdated {
            participant: strip(participant),
        },
        // None of these carries a participant's identity beyond its public part
        // (the lobby list goes to hosts only). Listed rather than matched with a
        // wildcard so that a new message has to be decided on here.
        other @ (ServerMessage::IceServers { .. }
        | ServerMessage::Permissions { .. }
        | ServerMessage::SettingsUpdated { .. }
        | ServerMessage::SourceStopped { .. }
        | ServerMessage::ChatHistory { .. }
        | ServerMessage::ParticipantLeft { .. }
        | ServerMessage::Offer { .. }
        | ServerMessage::Chat { .. }
        | ServerMessage::Reaction { .. }
        | ServerMessage::Speaking { .. }
        | ServerMessage::VoiceSlot { .. }
        | ServerMessage::Pong { .. }
        | ServerMessage::VideoLayers { .. }
        | ServerMessage::ConnectionQuality { .. }
        | ServerMessage::MeetingUpdated { .. }
        | ServerMessage::Removed { .. }
        | ServerMessage::Notice { .. }
        | ServerMessage::Lobby { .. }
        | ServerMessage::LobbyUpdated { .. }
        | ServerMessage::MutedByHost { .. }
        | ServerMessage::Denied { .. }
        | ServerMessage::Ended { .. }
        | ServerMessage::Restarting {}
        | ServerMessage::Error { .. }) => other,
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

/// What the lobby's cap per address counts by: an IPv4 address, or an IPv6
/// address's /64 network (one client commonly has a whole /64 to pick from).
fn address_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
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

mod hands;
mod media;
mod passcode;
pub mod restart;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod chat_tests;
