//! The signalling protocol, version 1: JSON objects over one WebSocket per
//! participant, each with a `type`. Documented in docs/protocol.md.

use serde::{Deserialize, Serialize};

pub const PROTOCOL_VERSION: u32 = 1;

/// What a participant publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Microphone,
    Camera,
    Screen,
    ScreenAudio,
}

impl Source {
    pub fn is_audio(self) -> bool {
        matches!(self, Source::Microphone | Source::ScreenAudio)
    }
}

// Serialize: the message crosses to the meeting's node when its socket is on
// an edge (cascading), and is read there as it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ClientMessage {
    Join {
        protocol: u32,
        name: String,
        #[serde(default)]
        resume: Option<String>,
        /// The meeting's passcode, when it has one (not needed to resume).
        #[serde(default)]
        passcode: Option<String>,
        /// From the host link: makes the joiner a host.
        #[serde(default, rename = "hostKey")]
        host_key: Option<String>,
        /// The client can take part in an end-to-end encrypted meeting
        /// (docs/protocol.md §11); one that cannot is refused from one.
        #[serde(default)]
        e2ee: bool,
    },
    Publish {
        source: Source,
    },
    Unpublish {
        source: Source,
    },
    Mute {
        source: Source,
        muted: bool,
    },
    Answer {
        sdp: String,
    },
    Chat {
        text: String,
    },
    Ping {
        #[serde(default)]
        id: Option<u64>,
    },
    Leave {},
    /// End-to-end encryption (docs/protocol.md §11): the MLS messages the
    /// server orders and routes without reading them. Base64 of RFC 9420
    /// `MLSMessage`s.
    #[serde(rename_all = "camelCase")]
    MlsKeyPackage {
        key_package: String,
    },
    #[serde(rename_all = "camelCase")]
    MlsGroupCreated {
        group_info: String,
    },
    #[serde(rename_all = "camelCase")]
    MlsCommit {
        epoch: u64,
        commit: String,
        #[serde(default)]
        welcome: Option<String>,
        group_info: String,
    },
    /// Encrypted chat: an MLS application message.
    MlsApp {
        message: String,
    },
    /// The client could not apply the commit made at `epoch` (logged).
    MlsCommitFailed {
        epoch: u64,
        reason: String,
    },
    /// The client's network changed (or its media connection failed): offer
    /// new ICE credentials, keeping everything else.
    RestartIce {},
    /// How the client's media reaches the server now, from its own view of
    /// the selected candidate pair (shown to hosts, for support).
    MediaPath {
        path: MediaPath,
    },
    /// The size at which the client shows each video it receives: the server
    /// sends a video no larger than that, and not at all when it is not listed
    /// (checked by the room: see [`VideoSize`]).
    VideoSizes {
        sizes: Vec<VideoSize>,
    },
    /// Host actions.
    #[serde(rename_all = "camelCase")]
    Remove {
        participant_id: String,
        /// Also bar them from rejoining this meeting.
        #[serde(default)]
        bar: bool,
    },
    /// A host stops someone's camera or screen share.
    #[serde(rename_all = "camelCase")]
    StopSource {
        participant_id: String,
        source: Source,
    },
    UpdateSettings {
        settings: crate::access::Settings,
    },
    /// A host changes the meeting's handling level.
    SetLevel {
        level: String,
        /// Raise the settings to meet the level rather than refuse.
        #[serde(default)]
        raise: bool,
        /// Lowering a level must be confirmed.
        #[serde(default)]
        confirm: bool,
    },
    #[serde(rename_all = "camelCase")]
    SetRole {
        participant_id: String,
        role: crate::access::Role,
    },
    Lock {
        locked: bool,
    },
    /// A host sets or changes the meeting's passcode, or removes it (`null`
    /// or empty; refused when the meeting's level requires one).
    SetPasscode {
        #[serde(default)]
        passcode: Option<String>,
    },
    End {},
    /// Lobby: let one waiting person in, turn one away, or let everyone in.
    #[serde(rename_all = "camelCase")]
    Admit {
        participant_id: String,
    },
    #[serde(rename_all = "camelCase")]
    Deny {
        participant_id: String,
    },
    AdmitAll {},
    /// Host: mute one person's microphone, or everyone's but the hosts'.
    #[serde(rename_all = "camelCase")]
    MuteParticipant {
        participant_id: String,
    },
    MuteAll {},
    /// Raise one's own hand (it joins the end of the queue; raising it again
    /// keeps its place).
    RaiseHand {},
    /// Hosts only, in a webinar: a page of the audience (attendees), in the
    /// order of their ids, starting after `after` (absent: from the first).
    Attendees {
        #[serde(default)]
        after: Option<String>,
    },
    /// In a webinar: ask the stage a question (Q&A).
    Ask {
        text: String,
    },
    /// Hosts only: the question was answered; everyone then sees it.
    MarkAnswered {
        id: u64,
    },
    /// Hosts only: the question goes (from everyone who had it).
    DismissQuestion {
        id: u64,
    },
    /// Lower one's own hand, or (hosts only) someone else's.
    #[serde(rename_all = "camelCase")]
    LowerHand {
        #[serde(default)]
        participant_id: Option<String>,
    },
    /// A short-lived reaction, shown on the sender's tile for everyone.
    React {
        reaction: Reaction,
    },
}

/// The reactions a participant may send (a raised hand is not one: it stays
/// until lowered, see `raise-hand`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reaction {
    ThumbsUp,
    Clap,
    Laugh,
    Heart,
    Party,
}

const CLIENT_TYPES: &[&str] = &[
    "remove",
    "stop-source",
    "update-settings",
    "set-level",
    "set-role",
    "admit",
    "deny",
    "admit-all",
    "mute-participant",
    "mute-all",
    "lock",
    "set-passcode",
    "end",
    "join",
    "publish",
    "unpublish",
    "mute",
    "answer",
    "chat",
    "ping",
    "leave",
    "restart-ice",
    "media-path",
    "video-sizes",
    "raise-hand",
    "attendees",
    "ask",
    "mark-answered",
    "dismiss-question",
    "lower-hand",
    "react",
    "mls-key-package",
    "mls-group-created",
    "mls-commit",
    "mls-app",
    "mls-commit-failed",
];

impl ClientMessage {
    /// The message's `type`, for counting (metrics) without keeping content.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Join { .. } => "join",
            ClientMessage::Publish { .. } => "publish",
            ClientMessage::Unpublish { .. } => "unpublish",
            ClientMessage::Mute { .. } => "mute",
            ClientMessage::Answer { .. } => "answer",
            ClientMessage::Chat { .. } => "chat",
            ClientMessage::Ping { .. } => "ping",
            ClientMessage::Leave {} => "leave",
            ClientMessage::MlsKeyPackage { .. } => "mls-key-package",
            ClientMessage::MlsGroupCreated { .. } => "mls-group-created",
            ClientMessage::MlsCommit { .. } => "mls-commit",
            ClientMessage::MlsApp { .. } => "mls-app",
            ClientMessage::MlsCommitFailed { .. } => "mls-commit-failed",
            ClientMessage::RestartIce {} => "restart-ice",
            ClientMessage::MediaPath { .. } => "media-path",
            ClientMessage::VideoSizes { .. } => "video-sizes",
            ClientMessage::Remove { .. } => "remove",
            ClientMessage::StopSource { .. } => "stop-source",
            ClientMessage::UpdateSettings { .. } => "update-settings",
            ClientMessage::SetLevel { .. } => "set-level",
            ClientMessage::SetRole { .. } => "set-role",
            ClientMessage::Lock { .. } => "lock",
            ClientMessage::SetPasscode { .. } => "set-passcode",
            ClientMessage::End {} => "end",
            ClientMessage::Admit { .. } => "admit",
            ClientMessage::Deny { .. } => "deny",
            ClientMessage::AdmitAll {} => "admit-all",
            ClientMessage::MuteParticipant { .. } => "mute-participant",
            ClientMessage::MuteAll {} => "mute-all",
            ClientMessage::RaiseHand {} => "raise-hand",
            ClientMessage::Attendees { .. } => "attendees",
            ClientMessage::Ask { .. } => "ask",
            ClientMessage::MarkAnswered { .. } => "mark-answered",
            ClientMessage::DismissQuestion { .. } => "dismiss-question",
            ClientMessage::LowerHand { .. } => "lower-hand",
            ClientMessage::React { .. } => "react",
        }
    }
}

/// One video as a client shows it, in device pixels (CSS pixels times
/// `devicePixelRatio`); 0 either way: not shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VideoSize {
    pub participant_id: String,
    pub source: Source,
    pub width: u32,
    pub height: u32,
}

impl VideoSize {
    /// Entries in one `video-sizes`.
    pub const MAX_ENTRIES: usize = 64;
    /// Largest width or height, in device pixels (an 8K screen is 7680).
    pub const MAX_PIXELS: u32 = 16_384;
}

/// Which way a participant's media travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaPath {
    /// Straight to the server over UDP: the best path.
    Udp,
    /// Straight to the server over TCP (ICE-TCP): UDP is blocked.
    Tcp,
    /// Through the TURN relay (over UDP, TCP or TLS).
    Relay,
}

/// What the receiver may not do right now: each field is `null` when allowed,
/// or the reason to show beside the disabled control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permissions {
    pub camera: Option<String>,
    pub screen_share: Option<String>,
    pub unmute: Option<String>,
    pub chat: Option<String>,
    /// Whether the receiver may use host controls.
    pub host: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeetingInfo {
    pub id: String,
    pub title: String,
    /// No new joins while locked (hosts with the host link still get in).
    pub locked: bool,
    /// The meeting's handling level: show its banner at every stage.
    pub level: crate::policy::LevelView,
    /// Joining needs the meeting's passcode (not through the host link).
    pub passcode: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantInfo {
    pub id: String,
    pub name: String,
    /// Sources this participant publishes now.
    pub sources: Vec<Source>,
    /// Published sources the participant has muted (sending silence or black).
    pub muted: Vec<Source>,
    /// False while the participant's connection is lost and may come back.
    pub connected: bool,
    pub role: crate::access::Role,
    pub identity: crate::identity::Verification,
    /// How their media reaches the server, as their client reports it; hosts
    /// only (`null` for others, and until reported).
    pub media_path: Option<MediaPath>,
    /// Their raised hand: its place in the order hands were raised (a number
    /// that increases within the meeting's run; lowest first), or `None`.
    pub hand: Option<u64>,
}

/// A person waiting in the lobby, as hosts see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Waiting {
    pub id: String,
    /// Self-declared for guests; from their organisation for members and partners.
    pub name: String,
    pub identity: crate::identity::Verification,
}

/// A chat message, as sent to everyone (and, where the level keeps chat,
/// stored sealed: hence `Deserialize`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    pub id: u64,
    pub participant_id: String,
    pub name: String,
    pub text: String,
    /// Milliseconds since the Unix epoch, by the server's clock.
    pub sent_at: u64,
    pub identity: crate::identity::Verification,
}

/// A question asked in a webinar's Q&A.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Question {
    pub id: u64,
    /// Who asked: to the stage and the asker; absent for the rest of the
    /// audience, who do not learn of each other.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub text: String,
    /// Milliseconds since the Unix epoch, by the server's clock.
    pub asked_at: u64,
    /// A host marked it answered: everyone sees it then.
    pub answered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MediaKind {
    Audio,
    Video,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// The client sends its own source on this m-line.
    Send,
    /// The client receives another participant's source.
    Receive,
}

/// One m-line of an offer, so the client knows what each transceiver carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackSlot {
    pub mid: String,
    pub kind: MediaKind,
    pub direction: Direction,
    /// Absent when the m-line is inactive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// A voice slot: an audio m-line that carries whichever participant is talking,
    /// switched by the server without renegotiation; `voice-slot` messages say who.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub voice: bool,
    /// On a camera the client sends: the simulcast layers (rids, lowest first)
    /// it is asked to send. Absent for a single layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
}

/// A connection's quality, in words (from loss, round-trip time and jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quality {
    Good,
    Fair,
    Poor,
}

/// One participant's entry in `connection-quality`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantQuality {
    pub participant_id: String,
    pub quality: Quality,
    /// They publish a camera, but nothing of it arrives (their uplink cannot
    /// carry even its lowest layer).
    pub video_paused: bool,
}

/// A TURN server the client may relay media through, in WebRTC's
/// `RTCIceServer` shape, so a browser passes the list to `RTCPeerConnection`
/// as it is. The credentials are the receiver's own and expire: the server
/// sends fresh ones (`ice-servers`) before they do. This crate only carries
/// them; the server makes them.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// Without the credential: whatever prints a message must not print it.
impl std::fmt::Debug for IceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaveReason {
    /// Moved back to the lobby (a level change).
    Lobby,
    Left,
    Disconnected,
    /// A host removed them.
    Removed,
    /// A host ended the meeting.
    Ended,
    /// A host took them off a webinar's stage: they are in the audience now,
    /// which only hosts see.
    OffStage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    BadJson,
    TooLarge,
    RateLimited,
    UnknownType,
    Invalid,
    WrongState,
    UnsupportedProtocol,
    BadSdp,
    MeetingFull,
    /// The lobby has as many people waiting as it takes (in all, or from the
    /// joiner's address): try again later.
    LobbyFull,
    /// Waited in the lobby too long without being let in; the socket closes.
    LobbyTimeout,
    /// The meeting's settings or the sender's role do not allow this.
    Forbidden,
    WrongPasscode,
    /// Too many wrong passcodes from this address: wait and try again.
    LockedOut,
    /// The meeting is locked: no new joins.
    Locked,
    /// A host removed this person and barred them from rejoining.
    Barred,
    /// The meeting admits only people verified by their organisation's sign-in.
    VerificationRequired,
    /// The meeting needs members and partners to sign in with more than one factor.
    MfaRequired,
    /// The settings fall short of the meeting's handling level.
    Policy,
    /// A host asked to remove the passcode of a meeting whose level requires
    /// one (it can be changed). A code of its own, so clients word it
    /// without reading the English message.
    PasscodeKept,
    /// The meeting has ended.
    Ended,
    NotFound,
    Media,
    /// The server is too busy for this now (its passcode checks are all
    /// taken): try again in a few seconds.
    Busy,
    /// The meeting is end-to-end encrypted and the client did not say it can be.
    E2eeUnsupported,
    /// An MLS commit or message for an epoch the group has left (another
    /// commit won), or a commit nobody asked for.
    MlsStaleEpoch,
    /// An MLS message that is malformed, too large, or for another group.
    MlsBadMessage,
}

/// An end-to-end encrypted meeting's group, in the welcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct E2eeInfo {
    /// Base64 of the MLS group id.
    pub group_id: String,
    /// The group's epoch now; null until its first member has made it.
    pub epoch: Option<u64>,
    /// The MLS cipher suite (1: X25519, AES-128-GCM, SHA-256, Ed25519).
    pub suite: u16,
    /// The SFrame cipher suite (4: AES-128-GCM with SHA-256, 128-bit tag).
    pub sframe_suite: u16,
}

/// Someone to add, with their KeyPackage (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MlsAdd {
    pub participant_id: String,
    pub key_package: String,
}

/// Someone a commit adds, with the SHA-256 of the KeyPackage they sent (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MlsAdded {
    pub participant_id: String,
    pub key_package_sha256: String,
}

/// What a `notice` is about (protocol.md §5.21).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "kebab-case")]
pub enum NoticeAbout {
    /// Admitting all left `waiting` people in the lobby: no seat for them.
    MeetingFull { waiting: usize },
    /// A level change (to the level with id `level`) removed some people and
    /// sent others back to the lobby (by name).
    #[serde(rename_all = "camelCase")]
    LevelChanged {
        level: String,
        removed: Vec<String>,
        to_lobby: Vec<String>,
    },
}

/// Why a level change removed someone (protocol.md §5.12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "kebab-case")]
pub enum RemovedAbout {
    /// The level (by id) admits only people verified by their organisation's sign-in.
    LevelVerified { level: String },
    /// The level (by id) needs a sign-in with a second factor.
    LevelMfa { level: String },
}

// Messages are serialised as soon as they are made: the welcome's size is no
// cost worth boxing it for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    #[serde(rename_all = "camelCase")]
    Welcome {
        protocol: u32,
        participant_id: String,
        resume_token: String,
        meeting: MeetingInfo,
        participants: Vec<ParticipantInfo>,
        chat: Vec<ChatMessage>,
        settings: crate::access::Settings,
        permissions: Permissions,
        /// TURN servers with the receiver's credentials; empty when the
        /// server has none. The room leaves it empty: the server's edge fills
        /// it in for the one participant the welcome goes to.
        ice_servers: Vec<IceServer>,
        /// The meeting's MLS group, when it is end-to-end encrypted; null when not.
        e2ee: Option<E2eeInfo>,
    },
    /// You are the first in an end-to-end encrypted meeting: make its group.
    #[serde(rename_all = "camelCase")]
    MlsCreateRequest {
        group_id: String,
    },
    /// Commit these adds and removes at `epoch`, within `deadlineMs`.
    #[serde(rename_all = "camelCase")]
    MlsCommitRequest {
        epoch: u64,
        add: Vec<MlsAdd>,
        remove: Vec<String>,
        deadline_ms: u64,
    },
    /// The commit made at `epoch` that won: apply it (the group is then at `epoch + 1`).
    /// `adds`: exactly whom the server asked it to add, and by which KeyPackage
    /// (members refuse a commit that adds anyone else, or another KeyPackage).
    #[serde(rename_all = "camelCase")]
    MlsCommit {
        epoch: u64,
        commit: String,
        from: String,
        adds: Vec<MlsAdded>,
    },
    /// You were added: join from this Welcome (the group is at `epoch`).
    MlsWelcome {
        welcome: String,
        epoch: u64,
    },
    /// Encrypted chat from `from`.
    MlsApp {
        message: String,
        from: String,
    },
    /// Fresh TURN credentials, before the ones the receiver has expire.
    #[serde(rename_all = "camelCase")]
    IceServers {
        ice_servers: Vec<IceServer>,
    },
    /// The receiver's permissions changed (role, settings or a host mute).
    Permissions {
        permissions: Permissions,
    },
    SettingsUpdated {
        settings: crate::access::Settings,
    },
    /// A host stopped the receiver's camera or screen share: stop sending it.
    SourceStopped {
        source: Source,
        by: String,
    },
    /// More of the participant list, right after "welcome", which carries the
    /// first page. Sent in pages so that no message grows with the meeting.
    Roster {
        participants: Vec<ParticipantInfo>,
    },
    /// In a webinar, how many attendees there are (they are not announced
    /// one by one): after "welcome", then when it changed, at most every
    /// second.
    Audience {
        attendees: usize,
    },
    /// To a host, in a webinar: one page of the attendees, in the order of
    /// their ids; `next` is the `after` of the following page (absent: the
    /// last page).
    Attendees {
        total: usize,
        attendees: Vec<ParticipantInfo>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// A question, new or answered (Q&A, in a webinar).
    Question {
        question: Question,
    },
    /// The questions so far that the receiver may see, oldest first, in
    /// pages: after "welcome", and to someone brought on stage.
    Questions {
        questions: Vec<Question>,
    },
    /// A host dismissed this question.
    QuestionRemoved {
        id: u64,
    },
    /// More of the chat so far, right after "welcome", oldest first.
    ChatHistory {
        messages: Vec<ChatMessage>,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantUpdated {
        participant: ParticipantInfo,
    },
    #[serde(rename_all = "camelCase")]
    ParticipantLeft {
        participant_id: String,
        reason: LeaveReason,
    },
    Offer {
        sdp: String,
        tracks: Vec<TrackSlot>,
    },
    Chat {
        message: ChatMessage,
    },
    /// Someone's reaction, to everyone (the sender too): show it on their
    /// tile for a few seconds.
    #[serde(rename_all = "camelCase")]
    Reaction {
        participant_id: String,
        reaction: Reaction,
    },
    #[serde(rename_all = "camelCase")]
    Speaking {
        participant_id: String,
        speaking: bool,
    },
    /// A voice slot now carries this participant's microphone (absent: nobody's).
    #[serde(rename_all = "camelCase")]
    VoiceSlot {
        mid: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        participant_id: Option<String>,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// To a publisher: the simulcast layers (rids) of its source somebody
    /// receives; it should pause the others (none listed: pause them all).
    VideoLayers {
        source: Source,
        active: Vec<String>,
    },
    /// How good participants' connections are: everyone's after a welcome,
    /// then those that changed, at most every two seconds.
    ConnectionQuality {
        participants: Vec<ParticipantQuality>,
    },
    /// The meeting's state changed (locked or unlocked).
    MeetingUpdated {
        meeting: MeetingInfo,
    },
    /// To the person removed, just before their socket closes.
    #[serde(rename_all = "camelCase")]
    Removed {
        by: String,
        /// They may not rejoin this meeting.
        barred: bool,
        /// Why, when it was not a host's choice about them alone (a level change).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The same, for a client to word in its language.
        #[serde(skip_serializing_if = "Option::is_none")]
        about: Option<RemovedAbout>,
    },
    /// Something hosts should know (for example who a level change removed).
    Notice {
        /// In English, for people reading raw messages.
        text: String,
        /// What it says, for a client to word in its language.
        #[serde(skip_serializing_if = "Option::is_none")]
        about: Option<NoticeAbout>,
    },
    /// To someone waiting in the lobby (again whenever a host arrives or leaves).
    #[serde(rename_all = "camelCase")]
    Lobby {
        meeting: MeetingInfo,
        host_present: bool,
    },
    /// To hosts: who is waiting in the lobby now.
    LobbyUpdated {
        waiting: Vec<Waiting>,
    },
    /// To someone a host muted: their microphone is no longer forwarded.
    #[serde(rename_all = "camelCase")]
    MutedByHost {
        by: String,
        /// Whether they may unmute themselves (the meeting's `unmute` setting).
        may_unmute: bool,
    },
    /// To someone a host turned away from the lobby, before the socket closes.
    Denied {},
    /// To everyone when the server stops for a restart, just before sockets
    /// close: resume (§3.4) once it is back; places are held for a minute.
    Restarting {},
    /// To everyone when a host ends the meeting, just before sockets close.
    #[serde(rename_all = "camelCase")]
    Ended {
        by: String,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
        }
    }
}

/// Parse one client message, telling bad JSON, unknown types and bad fields apart.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ProtocolError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ProtocolError::new(ErrorCode::BadJson, format!("not valid JSON: {e}")))?;
    let Some(kind) = value
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
    else {
        return Err(ProtocolError::new(
            ErrorCode::Invalid,
            "a message must be an object with a string \"type\"",
        ));
    };
    if !CLIENT_TYPES.contains(&kind.as_str()) {
        let shown: String = kind.chars().take(40).collect();
        return Err(ProtocolError::new(
            ErrorCode::UnknownType,
            format!("unknown message type \"{shown}\""),
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        let detail = shortened(&e.to_string());
        ProtocolError::new(
            ErrorCode::Invalid,
            format!("invalid \"{kind}\" message: {detail}"),
        )
    })
}

/// serde's errors quote the value or field name they could not use, which can be
/// as long as the message (found by fuzzing: a 200 KB `source` came back whole in
/// the error). Long ones keep their start and their end ("expected one of …").
fn shortened(detail: &str) -> String {
    const HEAD: usize = 120;
    const TAIL: usize = 160;
    let count = detail.chars().count();
    if count <= HEAD + TAIL {
        return detail.to_owned();
    }
    let head: String = detail.chars().take(HEAD).collect();
    let tail: String = detail.chars().skip(count - TAIL).collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_client_message() {
        assert_eq!(
            parse_client_message(r#"{"type":"join","protocol":1,"name":"Ann"}"#).unwrap(),
            ClientMessage::Join {
                protocol: 1,
                name: "Ann".into(),
                resume: None,
                passcode: None,
                host_key: None,
                e2ee: false,
            }
        );
        assert_eq!(
            parse_client_message(r#"{"type":"publish","source":"screen-audio"}"#).unwrap(),
            ClientMessage::Publish {
                source: Source::ScreenAudio
            }
        );
        assert_eq!(
            parse_client_message(r#"{"type":"leave"}"#).unwrap(),
            ClientMessage::Leave {}
        );
        assert_eq!(
            parse_client_message(r#"{"type":"ping"}"#).unwrap(),
            ClientMessage::Ping { id: None }
        );
    }

    #[test]
    fn tells_errors_apart() {
        let code = |s: &str| parse_client_message(s).unwrap_err().code;
        assert_eq!(code("{nope"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::Invalid);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code(r#"{"type":"publish","source":"hologram"}"#),
            ErrorCode::Invalid
        );
        assert_eq!(code(r#"{"type":"chat"}"#), ErrorCode::Invalid);
        assert_eq!(
            code(r#"{"type":"chat","text":"x","extra":1}"#),
            ErrorCode::Invalid
        );
    }

    #[test]
    fn an_error_does_not_echo_a_long_value_whole() {
        let long = "\u{202e}x".repeat(100_000);
        let e = parse_client_message(&format!(r#"{{"type":"publish","source":"{long}"}}"#))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Invalid);
        assert!(e.message.chars().count() < 320, "{}", e.message.len());
        assert!(e
            .message
            .starts_with("invalid \"publish\" message: unknown variant"));
        assert!(e.message.contains("expected one of"), "{}", e.message);
    }

    #[test]
    fn video_sizes_parse_and_bad_ones_are_invalid() {
        assert_eq!(
            parse_client_message(
                r#"{"type":"video-sizes","sizes":[{"participantId":"p1","source":"camera","width":320,"height":180}]}"#
            )
            .unwrap(),
            ClientMessage::VideoSizes {
                sizes: vec![VideoSize {
                    participant_id: "p1".into(),
                    source: Source::Camera,
                    width: 320,
                    height: 180,
                }]
            }
        );
        let code = |s: &str| parse_client_message(s).unwrap_err().code;
        for bad in [
            r#"{"type":"video-sizes"}"#,
            r#"{"type":"video-sizes","sizes":{}}"#,
            r#"{"type":"video-sizes","sizes":[{"participantId":"p1","source":"camera","width":-1,"height":1}]}"#,
            r#"{"type":"video-sizes","sizes":[{"participantId":"p1","source":"camera","width":1.5,"height":1}]}"#,
            r#"{"type":"video-sizes","sizes":[{"participantId":"p1","source":"camera","width":4294967296,"height":1}]}"#,
            r#"{"type":"video-sizes","sizes":[{"participantId":"p1","source":"camera","width":1}]}"#,
            r#"{"type":"video-sizes","sizes":[{"participantId":"p1","source":"camera","width":1,"height":1,"x":0}]}"#,
        ] {
            assert_eq!(code(bad), ErrorCode::Invalid, "{bad}");
        }
    }

    #[test]
    fn media_quality_messages_serialise_as_documented() {
        let m = ServerMessage::VideoLayers {
            source: Source::Camera,
            active: vec!["l".into(), "m".into()],
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"video-layers","source":"camera","active":["l","m"]}"#
        );
        let m = ServerMessage::ConnectionQuality {
            participants: vec![ParticipantQuality {
                participant_id: "p1".into(),
                quality: Quality::Poor,
                video_paused: true,
            }],
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"connection-quality","participants":[{"participantId":"p1","quality":"poor","videoPaused":true}]}"#
        );
        let slot = |layers: Vec<String>| TrackSlot {
            mid: "a".into(),
            kind: MediaKind::Video,
            direction: Direction::Send,
            participant_id: Some("p1".into()),
            source: Some(Source::Camera),
            voice: false,
            layers,
        };
        assert_eq!(
            serde_json::to_string(&slot(vec!["l".into(), "m".into(), "h".into()])).unwrap(),
            r#"{"mid":"a","kind":"video","direction":"send","participantId":"p1","source":"camera","layers":["l","m","h"]}"#
        );
        let single = serde_json::to_value(slot(Vec::new())).unwrap();
        assert!(single.get("layers").is_none(), "{single}");
    }

    #[test]
    fn server_messages_serialise_as_documented() {
        let m = ServerMessage::Speaking {
            participant_id: "p1".into(),
            speaking: true,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"speaking","participantId":"p1","speaking":true}"#
        );
        let m = ServerMessage::VoiceSlot {
            mid: "3".into(),
            participant_id: Some("p2".into()),
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"voice-slot","mid":"3","participantId":"p2"}"#
        );
        let m = ServerMessage::ParticipantLeft {
            participant_id: "p2".into(),
            reason: LeaveReason::Disconnected,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"participant-left","participantId":"p2","reason":"disconnected"}"#
        );
        let m = ServerMessage::IceServers {
            ice_servers: vec![IceServer {
                urls: vec!["turn:turn.example.org:3478?transport=udp".into()],
                username: "1764080400:3f9a0c2e5b7d1f48".into(),
                credential: "c2VjcmV0IGhtYWMgc2hhMSBiYXNlNjQ=".into(),
            }],
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"ice-servers","iceServers":[{"urls":["turn:turn.example.org:3478?transport=udp"],"username":"1764080400:3f9a0c2e5b7d1f48","credential":"c2VjcmV0IGhtYWMgc2hhMSBiYXNlNjQ="}]}"#
        );
    }
}
