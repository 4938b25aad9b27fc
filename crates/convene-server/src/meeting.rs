//! One task per live meeting: it owns the meeting's [`Room`] and carries out its
//! effects, sending messages to participants' sockets and commands to the SFU.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use convene_meeting::protocol::{
    ClientMessage, Direction, ErrorCode, MediaKind, ServerMessage, Source, TrackSlot,
};

use convene_meeting::{
    Effect, Entrant, MediaAction, ParticipantId, Returning, Room, RoomError, RoomState,
};
use convene_sfu::driver::Command;
use convene_sfu::pool::SfuLease;
use convene_sfu::{ConnId, SfuError, SfuEvent, SlotDirection, TrackId, TrackKind};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

use crate::cascade::wire::{EdgeMedia, StageTrack};
use crate::media_quality::MediaQuality;
use crate::writer::{AuditEntry, Item};
use crate::AppState;
use convene_meeting::access::Role;
use convene_storage::Meeting as StoredMeeting;

/// Messages queued for one participant's socket before it counts as too slow.
pub const OUTBOUND_QUEUE: usize = 512;
/// A meeting task with nobody in it stops after this long.
const IDLE_STOP: Duration = Duration::from_secs(30);
/// The longest a meeting holds its output back for a commit. A commit takes
/// milliseconds; past this the database is away or stuck (the writer's try
/// may wait for PostgreSQL's 20 s deadline), and the meeting goes on
/// without the promise that what it said is on disk (docs/cluster-design.md).
const COMMIT_PATIENCE: Duration = Duration::from_secs(5);
/// Inputs handled together before the meeting waits once for their writes to
/// be on disk.
const MAX_INPUTS_PER_COMMIT: usize = 256;

static NEXT_TRACK: AtomicU64 = AtomicU64::new(1);

/// What the socket task receives.
#[derive(Debug)]
pub enum Outbound {
    Text(Arc<str>),
    /// For a socket on an edge (cascading): a media action the edge carries out.
    Media(EdgeMedia),
}

pub type OutboundTx = mpsc::Sender<Outbound>;

pub enum MeetingInput {
    Join {
        msg: ClientMessage,
        entrant: Entrant,
        out: OutboundTx,
        socket: u64,
        reply: oneshot::Sender<Result<ParticipantId, RoomError>>,
        /// The node whose socket this is, when it is not this one
        /// (cascading: an edge's attendee).
        edge: Option<String>,
    },
    Message {
        who: ParticipantId,
        socket: u64,
        msg: ClientMessage,
    },
    /// A message the socket refused (bad JSON, too large, too many): tell the sender.
    Refused {
        who: ParticipantId,
        socket: u64,
        code: ErrorCode,
        message: String,
    },
    SocketClosed {
        who: ParticipantId,
        socket: u64,
    },
    Sfu(SfuEvent),
    /// An edge's offer to receive the stage (cascading).
    RelayOffer {
        edge: String,
        incarnation: u64,
        sdp: String,
        tracks: Vec<StageTrack>,
    },
    /// A passcode a host set, hashed off this task (`Effect::HashPasscode`).
    PasscodeHashed {
        who: ParticipantId,
        hash: Result<String, RoomError>,
    },
    /// The server stops for a restart: keep who is here, tell everyone, close
    /// every socket, stop; then answer. Without `hold_places`, who is here
    /// is not kept: another node hosts the meeting now (its places are its
    /// own), and the people here are to go there.
    Drain {
        done: oneshot::Sender<()>,
        hold_places: bool,
    },
}

struct Member {
    /// `None` once the socket's side has gone (its queue closed): nothing
    /// more is sent, but what it sent before going is still handled, until
    /// its `SocketClosed`, which always comes last, says how it ended.
    out: Option<OutboundTx>,
    socket: u64,
    /// TURN credentials given in this socket's welcome: their opaque id, and
    /// when fresh ones are due. None before a welcome (or in the lobby).
    turn: Option<TurnLease>,
    /// The node the socket is on, when not this one: its media are there.
    edge: Option<String>,
}

struct TurnLease {
    id: String,
    refresh_at: Instant,
}

struct Meeting {
    id: String,
    room: Room,
    state: Arc<AppState>,
    /// The SFU worker all of this meeting's media goes through.
    sfu: SfuLease,
    me: mpsc::UnboundedSender<MeetingInput>,
    members: HashMap<ParticipantId, Member>,
    conns: HashMap<ParticipantId, ConnId>,
    conn_owner: HashMap<ConnId, ParticipantId>,
    tracks: HashMap<(ParticipantId, Source), TrackId>,
    track_owner: HashMap<TrackId, (ParticipantId, Source)>,
    /// Video sizes, priorities and connection quality (issue 15).
    quality: MediaQuality,
    /// Writes (audit rows, what the meeting remembers) not yet handed to the
    /// writer; while there are any, output waits in `held`.
    unwritten: Vec<Item>,
    /// Output produced after a write, in order: sent once the writes before
    /// it are on disk, so nobody hears of a host action or a join that a
    /// crash could still undo.
    held: Vec<Held>,
    /// The places last written for the people here (restart.rs): written
    /// again when they change, so that a crash leaves who was here.
    places: HashMap<String, Returning>,
    /// Ticks since the places were last said to be current.
    places_ticks: u32,
    /// Cascading: the relay connection to each edge, by the edge's node id,
    /// with the number of the edge's task it was made for.
    relays: HashMap<String, (u64, ConnId)>,
}

/// Ticks (of 500 ms) between saying the places held are current.
const PLACES_CURRENT_EVERY: u32 = 20;

// Held only between a write and its commit: the size is no cost worth boxing
// every held message for.
#[allow(clippy::large_enum_variant)]
enum Held {
    Send(Vec<ParticipantId>, ServerMessage),
    Close(ParticipantId),
    /// For an attendee on an edge: in order with what they are sent.
    Media(ParticipantId, EdgeMedia),
}

/// Send `input` to the meeting's task, starting the task if it is not running.
/// Holding the registry lock while sending means a task cannot stop between our
/// lookup and our send.
pub fn deliver(state: &Arc<AppState>, meeting: &StoredMeeting, input: MeetingInput) {
    let id = meeting.id.as_str();
    let mut inner = state.registry.lock();
    if let Some(tx) = inner.meetings.get(id) {
        if let Err(mpsc::error::SendError(back)) = tx.send(input) {
            inner.meetings.remove(id);
            drop(inner);
            return deliver(state, meeting, back);
        }
        return;
    }
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        // Stopping: no meeting starts again in this process (a join waiting
        // for its answer sees its reply dropped and closes).
        return;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(input);
    inner.meetings.insert(id.to_string(), tx.clone());
    state.writer.hosted_here(id);
    let (state, stored, id) = (state.clone(), meeting.clone(), id.to_string());
    // Every log line of the meeting's task names it.
    // A root span: the task outlives the socket whose input started it.
    let span =
        tracing::info_span!(parent: None, "meeting", meeting = %crate::logging::meeting_tag(&id));
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            // Read what the meeting remembers off the async workers; inputs wait in
            // the channel meanwhile.
            let st = state.clone();
            let remembered = tokio::task::spawn_blocking(move || {
                let room_state = remembered(&st, &stored);
                let returning = returning(&st, &stored.id);
                (stored, room_state, returning)
            })
            .await;
            let Ok((stored, room_state, returning)) = remembered else {
                state.registry.lock().meetings.remove(&id);
                return;
            };
            let mut room = Room::restore(
                stored.id.clone(),
                stored.title.clone(),
                state.limits.clone(),
                room_state,
            );
            if !returning.is_empty() {
                info!(
                    people = returning.len(),
                    "places held for those here before the restart"
                );
                // Verified identities were given under the configuration of
                // then; a place is held only where this one still vouches.
                let auth = state.auth.clone();
                let refused =
                    room.expect_returning(Instant::now(), returning, |who| auth.still_vouches(who));
                for (participant, why) in refused {
                    info!(%participant, why, "no place held after the restart: they join again as anyone does");
                }
            }
            let meeting = Meeting {
                id: stored.id.clone(),
                room,
                sfu: state.sfu.lease(),
                state,
                me: tx,
                members: HashMap::new(),
                conns: HashMap::new(),
                conn_owner: HashMap::new(),
                tracks: HashMap::new(),
                track_owner: HashMap::new(),
                quality: MediaQuality::default(),
                unwritten: Vec::new(),
                held: Vec::new(),
                places: HashMap::new(),
                places_ticks: 0,
                relays: HashMap::new(),
            };
            info!("meeting started");
            meeting.run(rx).await;
        },
        span,
    ));
}

/// Send `input` to the meeting's task if it runs here (false if not).
pub fn deliver_running(state: &AppState, id: &str, input: MeetingInput) -> bool {
    let inner = state.registry.lock();
    inner
        .meetings
        .get(id)
        .is_some_and(|tx| tx.send(input).is_ok())
}

/// A new track's id, unique in this process.
pub fn new_track_id() -> TrackId {
    TrackId(NEXT_TRACK.fetch_add(1, Ordering::Relaxed))
}

/// How the SFU carries a source: microphones share each listener's few
/// voice slots; a screen's sound is forwarded to everyone on its own m-line.
pub fn track_kind(source: Source) -> TrackKind {
    match source {
        Source::Microphone => TrackKind::Voice,
        s if s.is_audio() => TrackKind::Audio,
        _ => TrackKind::Video,
    }
}

/// Publish `source` as `track` on `conn`: cameras in simulcast layers.
pub fn publish_command(conn: ConnId, track: TrackId, source: Source) -> Command {
    Command::Publish {
        conn,
        track,
        kind: track_kind(source),
        simulcast: source == Source::Camera,
    }
}

/// The `offer` message for an SFU offer, each slot named by whose track it
/// carries.
pub fn offer_message<'a>(
    sdp: String,
    slots: Vec<convene_sfu::OfferedSlot>,
    owner: impl Fn(TrackId) -> Option<&'a (ParticipantId, Source)>,
) -> ServerMessage {
    let tracks = slots
        .into_iter()
        .map(|s| {
            let owner = s.track.and_then(&owner);
            TrackSlot {
                mid: s.mid,
                kind: match s.kind {
                    TrackKind::Audio | TrackKind::Voice => MediaKind::Audio,
                    TrackKind::Video => MediaKind::Video,
                },
                voice: s.kind == TrackKind::Voice && s.direction == SlotDirection::Receive,
                direction: match s.direction {
                    SlotDirection::Send => Direction::Send,
                    SlotDirection::Receive => Direction::Receive,
                },
                participant_id: owner.map(|(p, _)| p.0.clone()),
                source: owner.map(|(_, s)| *s),
                layers: s.layers,
            }
        })
        .collect();
    ServerMessage::Offer { sdp, tracks }
}

/// What a client is told of a media request that failed. The media stack's
/// own words (parser positions, addresses) stay in the server's log; the
/// client gets a fixed sentence.
pub fn failure_message(error: &SfuError) -> ServerMessage {
    let (code, message) = match error {
        SfuError::BadSdp(_) => (
            ErrorCode::BadSdp,
            "the answer is not SDP this server can use",
        ),
        SfuError::NoOfferPending => (ErrorCode::WrongState, "no offer is waiting for an answer"),
        _ => (ErrorCode::Media, "the media connection could not be set up"),
    };
    ServerMessage::error(code, message)
}

/// Those who were in the meeting when the server last stopped gracefully
/// (read once; empty after a crash or when too old).
fn returning(state: &AppState, meeting: &str) -> Vec<Returning> {
    let max_age = i64::try_from(state.limits.restart_grace.as_millis()).unwrap_or(i64::MAX);
    match state.storage.take_returns(meeting, max_age) {
        Ok(rows) => rows
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect(),
        Err(e) => {
            tracing::error!("could not read who to expect back after the restart: {e}");
            Vec::new()
        }
    }
}

/// What the meeting remembers: the stored meeting row is as fresh as the caller's
/// read; grants and bars are read now. (A failed read starts the meeting with
/// none, loudly: refusing to start it would shut everyone out.)
fn remembered(state: &AppState, meeting: &StoredMeeting) -> RoomState {
    if !meeting.level.is_empty() && state.limits.policy.level(&meeting.level).is_none() {
        // The policy file changed under a stored meeting: say so rather than
        // quietly treat it as the lowest level.
        tracing::warn!(
            meeting = %crate::logging::meeting_tag(&meeting.id),
            level = %meeting.level,
            "this meeting's handling level is not in the policy any more; it runs at the lowest level"
        );
    }
    let people = state
        .storage
        .meeting_people(&meeting.id)
        .unwrap_or_else(|e| {
            tracing::error!(meeting = %crate::logging::meeting_tag(&meeting.id), "could not read roles and bars: {e}");
            Default::default()
        });
    let role =
        |name: &str| serde_json::from_value::<Role>(serde_json::Value::String(name.into())).ok();
    RoomState {
        settings: serde_json::from_str(&meeting.settings).unwrap_or_default(),
        locked: meeting.locked,
        level: meeting.level.clone(),
        has_passcode: meeting.passcode_hash.is_some(),
        grants: people
            .grants
            .into_iter()
            .filter_map(|(k, r)| Some((k, role(&r)?)))
            .collect(),
        barred: people.barred.into_iter().collect(),
        // Only while the level keeps chat: stored rows from before a change
        // to a level that keeps none stay out of the meeting.
        chat: if state
            .limits
            .policy
            .level_or_lowest(&meeting.level)
            .chat_retention_days
            > 0
        {
            kept_chat(state, &meeting.id)
        } else {
            Vec::new()
        },
        next_participant: match state.storage.highest_participant(&meeting.id) {
            Ok(n) => n.map_or(1, |n| n + 1),
            Err(e) => {
                tracing::error!("could not read the highest participant number: {e}");
                1
            }
        },
        next_chat: match state.storage.last_chat_id(&meeting.id) {
            Ok(last) => last
                .and_then(|l| u64::try_from(l).ok())
                .map_or(1, |l| l + 1),
            Err(e) => {
                tracing::error!("could not read the last chat number: {e}");
                1
            }
        },
    }
}

/// The chat this meeting keeps (where its level keeps chat), oldest first.
fn kept_chat(state: &AppState, meeting: &str) -> Vec<convene_meeting::protocol::ChatMessage> {
    match state.storage.kept_chat(
        &state.chat_key,
        meeting,
        convene_storage::unix_millis(),
        Some(state.limits.chat_history),
    ) {
        Ok((kept, unreadable)) => {
            if unreadable > 0 {
                tracing::warn!(
                    meeting = %crate::logging::meeting_tag(meeting),
                    unreadable,
                    "kept chat that this server's chat key cannot open (another key, or damaged)"
                );
            }
            kept.into_iter()
                .filter_map(|k| serde_json::from_slice(&k.message).ok())
                .collect()
        }
        Err(e) => {
            tracing::error!(meeting = %crate::logging::meeting_tag(meeting), "could not read kept chat: {e}");
            Vec::new()
        }
    }
}

/// Longest a stopping meeting waits for a passcode being hashed (a hash
/// takes well under a second; the shutdown deadline bounds the whole stop).
const DRAIN_HASH_WAIT: Duration = Duration::from_secs(3);

impl Meeting {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<MeetingInput>) {
        // Places restored from a stop or a crash are held again at once.
        self.note_places();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut empty_since: Option<Instant> = None;
        loop {
            tokio::select! {
                input = rx.recv() => {
                    let Some(input) = input else { break };
                    // Handle what else is waiting too, then wait once for all
                    // their writes (group commit) before sending their output.
                    let mut drain = None;
                    let more = std::iter::from_fn(|| rx.try_recv().ok());
                    for input in std::iter::once(input).chain(more).take(MAX_INPUTS_PER_COMMIT) {
                        match input {
                            MeetingInput::Drain { done, hold_places } => {
                                drain = Some((done, hold_places))
                            }
                            input => self.handle(input),
                        }
                    }
                    self.settle().await;
                    if let Some((done, hold_places)) = drain {
                        self.drain(&mut rx, hold_places).await;
                        let _ = done.send(());
                        break;
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.room.tick(now);
                    let room = &self.room;
                    self.quality.retain(|who| room.is_admitted(who));
                    self.tell_quality(now);
                    self.apply_effects();
                    self.refresh_turn(now);
                    self.count_audience();
                    self.places_ticks += 1;
                    if self.places_ticks >= PLACES_CURRENT_EVERY && !self.places.is_empty() {
                        self.places_ticks = 0;
                        self.unwritten.push(Item::PlacesCurrent { meeting: self.id.clone() });
                    }
                    self.settle().await;
                    if self.room.is_empty() {
                        let since = *empty_since.get_or_insert(now);
                        if now.duration_since(since) >= IDLE_STOP {
                            let mut inner = self.state.registry.lock();
                            if rx.is_empty() {
                                inner.meetings.remove(&self.id);
                                break;
                            }
                        }
                    } else {
                        empty_since = None;
                    }
                }
            }
        }
        for conn in self
            .conns
            .values()
            .chain(self.relays.values().map(|(_, c)| c))
        {
            self.sfu.send(Command::RemoveConnection(*conn));
            self.state.registry.remove_conn(*conn);
        }
        if let Some(c) = &self.state.cascade {
            c.set_audience(&self.id, None);
        }
        info!("meeting task stopped");
    }

    /// Keep who is here for when the server is back, tell everyone, and let
    /// their sockets close (the queues drain first).
    async fn drain(&mut self, rx: &mut mpsc::UnboundedReceiver<MeetingInput>, hold_places: bool) {
        // From here no input reaches this meeting (`deliver` finds it gone and,
        // stopping, starts none). What was sent before is handled and written
        // first, so an action taken as the server stopped (a host's lock, a
        // role given) is kept and in the places held, not dropped with the
        // queue.
        self.state.registry.lock().meetings.remove(&self.id);
        while let Ok(input) = rx.try_recv() {
            match input {
                MeetingInput::Drain { done, .. } => {
                    let _ = done.send(());
                }
                input => self.handle(input),
            }
        }
        // A passcode a host set just before is still being hashed: its
        // answer comes through this queue (from the hashing task, not a
        // socket); wait for it, a little, rather than lose the change.
        let deadline = tokio::time::Instant::now() + DRAIN_HASH_WAIT;
        while self.room.hashing_passcode() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(MeetingInput::Drain { done, .. })) => {
                    let _ = done.send(());
                }
                Ok(Some(input)) => self.handle(input),
                Ok(None) | Err(_) => break,
            }
        }
        self.settle().await;
        if hold_places {
            let rows: Vec<(String, String)> = self
                .room
                .returning()
                .iter()
                .filter_map(|r| Some((r.id.clone(), serde_json::to_string(r).ok()?)))
                .collect();
            let (st, id, n) = (self.state.clone(), self.id.clone(), rows.len());
            match tokio::task::spawn_blocking(move || st.storage.hold_returns(&id, &rows)).await {
                Ok(Ok(())) => info!(people = n, "stopping for a restart: places held"),
                Ok(Err(e)) => tracing::error!("stopping for a restart: places not held: {e}"),
                Err(e) => tracing::error!("stopping for a restart: places not held: {e}"),
            }
        }
        let everyone: Vec<ParticipantId> = self.members.keys().cloned().collect();
        self.broadcast(&everyone, ServerMessage::Restarting {});
        self.settle().await;
        // Dropping the senders closes the sockets once their queues are out.
        self.members.clear();
    }

    fn handle(&mut self, input: MeetingInput) {
        let now = Instant::now();
        match input {
            MeetingInput::Join {
                msg,
                entrant,
                out,
                socket,
                reply,
                edge,
            } => {
                let address = entrant.address;
                match self.room.enter(now, msg, entrant) {
                    Ok(who) => {
                        // A resume while the old socket is open replaces that socket.
                        self.members.insert(
                            who.clone(),
                            Member {
                                out: Some(out),
                                socket,
                                turn: None,
                                edge,
                            },
                        );
                        let _ = reply.send(Ok(who));
                    }
                    Err(e) => {
                        let outcome = serde_json::to_value(e.code)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default();
                        // Tallied per actor (writer.rs): a flood of refusals
                        // costs a row or two a minute.
                        self.state.writer.record(AuditEntry {
                            meeting: self.id.clone(),
                            actor: self.state.client_label(address),
                            subject: "-".into(),
                            event: "join".into(),
                            outcome: format!("refused: {outcome}"),
                            detail: e.message.clone(),
                        });
                        let _ = reply.send(Err(e));
                    }
                }
            }
            MeetingInput::Message { who, socket, msg } => {
                if self.members.get(&who).is_none_or(|m| m.socket != socket) {
                    return; // a replaced socket
                }
                if let Err(e) = self.room.handle(now, &who, msg) {
                    self.send(&who, ServerMessage::error(e.code, e.message));
                }
            }
            MeetingInput::Refused {
                who,
                socket,
                code,
                message,
            } => {
                if self.members.get(&who).is_some_and(|m| m.socket == socket) {
                    self.send(&who, ServerMessage::error(code, message));
                }
            }
            MeetingInput::SocketClosed { who, socket } => {
                // An edge may not know who joined on a socket it gave up on
                // (its join's answer came late, or was lost): the socket's
                // number says.
                let who = if self.members.get(&who).is_some_and(|m| m.socket == socket) {
                    Some(who)
                } else {
                    self.members
                        .iter()
                        .find(|(_, m)| m.socket == socket && m.edge.is_some())
                        .map(|(w, _)| w.clone())
                };
                if let Some(who) = who {
                    self.members.remove(&who);
                    self.room.connection_lost(now, &who);
                }
            }
            MeetingInput::Sfu(event) => self.sfu_event(event),
            MeetingInput::RelayOffer {
                edge,
                incarnation,
                sdp,
                tracks,
            } => self.relay_offer(edge, incarnation, sdp, tracks),
            // Taken out in `run`; never reaches here.
            MeetingInput::Drain { done, .. } => {
                let _ = done.send(());
            }
            MeetingInput::PasscodeHashed { who, hash } => match hash {
                Ok(hash) => self.room.passcode_hashed(&who, hash),
                Err(e) => {
                    self.room.passcode_hash_failed();
                    self.send(&who, ServerMessage::error(e.code, e.message));
                }
            },
        }
        self.tell_quality(now);
        self.apply_effects();
    }

    /// Connection quality that changed, to everyone, at most every
    /// [`crate::media_quality::QUALITY_EVERY`].
    fn tell_quality(&mut self, now: Instant) {
        if let Some(participants) = self.quality.due(now) {
            self.room.connection_quality(participants);
        }
    }

    fn sfu_event(&mut self, event: SfuEvent) {
        match event {
            SfuEvent::Offer { conn, sdp, slots } => {
                let Some(who) = self.conn_owner.get(&conn).cloned() else {
                    return;
                };
                let owners = &self.track_owner;
                let message = offer_message(sdp, slots, |t| owners.get(&t));
                self.send(&who, message);
            }
            SfuEvent::RelayAnswer { conn, sdp } => {
                if let Some(edge) = self.edge_of_relay(conn) {
                    if let Some(c) = &self.state.cascade {
                        c.send(
                            &edge,
                            crate::cascade::wire::Wire::RelayAnswer {
                                meeting: self.id.clone(),
                                sdp,
                            },
                        );
                    }
                }
            }
            SfuEvent::Failed { conn, error } if self.edge_of_relay(conn).is_some() => {
                info!("an edge's relay offer refused: {error}");
            }
            SfuEvent::Closed(conn) if self.edge_of_relay(conn).is_some() => {
                self.state.registry.remove_conn(conn);
                self.relays.retain(|_, (_, c)| *c != conn);
                info!("a relay to an edge closed");
            }
            SfuEvent::Failed { conn, error } => {
                let Some(who) = self.conn_owner.get(&conn).cloned() else {
                    return;
                };
                info!(%who, "media request failed: {error}");
                self.send(&who, failure_message(&error));
            }
            SfuEvent::Closed(conn) => {
                self.state.registry.remove_conn(conn);
                let Some(who) = self.conn_owner.remove(&conn) else {
                    return;
                };
                debug!(%who, "media connection closed");
                if self.conns.get(&who) == Some(&conn) {
                    // Media died under a live socket: close the socket too, so the
                    // client resumes with a fresh connection within the grace period.
                    self.conns.remove(&who);
                    self.members.remove(&who);
                    self.room.connection_lost(Instant::now(), &who);
                }
            }
            SfuEvent::Speaking { track, speaking } => {
                if let Some((who, Source::Microphone)) = self.track_owner.get(&track).cloned() {
                    self.room.speaking(&who, speaking);
                    if speaking {
                        for command in self.quality.speaking(&who, &self.tracks) {
                            self.sfu.send(command);
                        }
                    }
                }
            }
            SfuEvent::VoiceSlot { conn, mid, track } => {
                let Some(who) = self.conn_owner.get(&conn).cloned() else {
                    return;
                };
                let participant_id = track
                    .and_then(|t| self.track_owner.get(&t))
                    .map(|(p, _)| p.0.clone());
                self.send(
                    &who,
                    ServerMessage::VoiceSlot {
                        mid,
                        participant_id,
                    },
                );
            }
            SfuEvent::VideoLayers { track, active } => {
                if let Some((who, source)) = self.track_owner.get(&track).cloned() {
                    self.send(&who, ServerMessage::VideoLayers { source, active });
                }
            }
            SfuEvent::Quality { conn, quality } => {
                if let Some(who) = self.conn_owner.get(&conn) {
                    self.quality.quality(who, quality.level);
                }
            }
            SfuEvent::VideoStalled { track, stalled } => {
                if let Some((who, Source::Camera)) = self.track_owner.get(&track) {
                    self.quality.video_paused(who, stalled);
                }
            }
            SfuEvent::RelayLink { loss, rtt, .. } => {
                debug!(?loss, ?rtt, "relay to an edge");
            }
            SfuEvent::Connected(_) | SfuEvent::Disconnected(_) => {}
        }
    }

    /// Hash a host's new passcode on the bounded hashing threads and hand the
    /// result back to this task (the room applies it then).
    fn hash_passcode(&self, who: ParticipantId, passcode: String) {
        let state = self.state.clone();
        let me = self.me.clone();
        tokio::spawn(async move {
            let hash = match state
                .hashers
                .run(move |scratch| convene_meeting::passcode::hash_with(scratch, &passcode))
                .await
            {
                Ok(Ok(h)) => Ok(h),
                Ok(Err(e)) => Err(RoomError {
                    code: ErrorCode::Invalid,
                    message: e.to_string(),
                }),
                Err(crate::hashing::Busy) => Err(RoomError {
                    code: ErrorCode::Busy,
                    message: "the server is busy: set the passcode again in a few seconds".into(),
                }),
            };
            let _ = me.send(MeetingInput::PasscodeHashed { who, hash });
        });
    }

    fn apply_effects(&mut self) {
        let mut welcomed = Vec::new();
        while let Some(effect) = self.room.poll_effect() {
            match effect {
                Effect::Send { to, message } => {
                    if matches!(message, ServerMessage::Welcome { .. }) {
                        welcomed.push(to.clone());
                    }
                    self.send(&to, message);
                }
                Effect::Broadcast { to, message } => self.broadcast(&to, message),
                Effect::Close { who } => {
                    if self.unwritten.is_empty() {
                        self.members.remove(&who); // dropping the sender closes the socket
                    } else {
                        self.held.push(Held::Close(who));
                    }
                }
                Effect::Media(action) => self.media(action),
                Effect::Ended => self.unwritten.push(Item::End {
                    meeting: self.id.clone(),
                }),
                Effect::Persist(change) => self.unwritten.push(Item::Remember {
                    meeting: self.id.clone(),
                    change,
                }),
                Effect::HashPasscode { by, passcode } => self.hash_passcode(by, passcode),
                Effect::Audit(fact) => self.unwritten.push(Item::Audit(AuditEntry {
                    meeting: self.id.clone(),
                    actor: fact.actor,
                    subject: fact.subject,
                    event: fact.event.to_string(),
                    outcome: fact.outcome,
                    detail: fact.detail,
                })),
            }
        }
        // After the welcome and the roster pages that follow it: how good
        // everyone's connection is now.
        for who in welcomed {
            let participants: Vec<_> = self
                .quality
                .snapshot()
                .into_iter()
                .filter(|q| {
                    let subject = ParticipantId(q.participant_id.clone());
                    // Not a webinar's audience, but to hosts (webinar.rs).
                    self.room.is_admitted(&subject) && self.room.sees(&who, &subject)
                })
                .collect();
            if !participants.is_empty() {
                self.send(&who, ServerMessage::ConnectionQuality { participants });
            }
        }
    }

    /// Hand the writes to the writer, wait until they are on disk (at most
    /// [`COMMIT_PATIENCE`]), then send
    /// the output held behind them, in order. Other meetings run meanwhile;
    /// this one's inputs wait in its channel and are handled together next.
    async fn settle(&mut self) {
        while !self.unwritten.is_empty() {
            // Joins, leaves, role changes and the like are audited: the
            // places change with them, and are written in the same commit.
            if self.unwritten.iter().any(|i| matches!(i, Item::Audit(_))) {
                self.note_places();
            }
            let items = std::mem::take(&mut self.unwritten);
            let held = std::mem::take(&mut self.held);
            // A database that stopped answering makes the writer's try wait
            // up to its deadline: the meeting does not wait that long. The
            // writes stay with the writer, in order, either way.
            let commit = self.state.writer.commit(items);
            if !matches!(
                tokio::time::timeout(COMMIT_PATIENCE, commit).await,
                Ok(true)
            ) {
                // Not stored yet (the database is away or slow): the writer
                // keeps the writes and logs it. The room has moved on
                // already; what it says still goes out, and the meeting goes on.
                tracing::debug!("sending output whose writes wait for the database");
            }
            for h in held {
                match h {
                    Held::Send(to, message) => self.deliver(&to, message),
                    Held::Close(who) => {
                        self.members.remove(&who);
                    }
                    Held::Media(who, media) => self.send_edge_media(&who, media),
                }
            }
            // A socket too slow for the output leaves, which may write again.
            self.apply_effects();
        }
    }

    /// Queue a write of the places that changed since the last one.
    fn note_places(&mut self) {
        let now: HashMap<String, Returning> = self
            .room
            .returning()
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let hold: Vec<(String, String)> = now
            .iter()
            .filter(|(id, r)| self.places.get(*id) != Some(*r))
            .filter_map(|(id, r)| Some((id.clone(), serde_json::to_string(r).ok()?)))
            .collect();
        let forget: Vec<String> = self
            .places
            .keys()
            .filter(|id| !now.contains_key(*id))
            .cloned()
            .collect();
        if !hold.is_empty() || !forget.is_empty() {
            self.unwritten.push(Item::Places {
                meeting: self.id.clone(),
                hold,
                forget,
            });
        }
        self.places = now;
    }

    fn media(&mut self, action: MediaAction) {
        if let Some(who) = media_subject(&action) {
            if self.members.get(who).is_some_and(|m| m.edge.is_some()) {
                return self.edge_media(action);
            }
        }
        let sfu = (*self.sfu).clone();
        match action {
            MediaAction::Connect(who) => {
                self.drop_conn(&who);
                let conn = sfu.add_connection_with(convene_sfu::ConnOptions {
                    redundant_audio: !self.room.is_e2ee(),
                });
                self.state.registry.add_conn(conn, self.me.clone());
                self.conns.insert(who.clone(), conn);
                self.conn_owner.insert(conn, who);
            }
            MediaAction::Disconnect(who) => self.drop_conn(&who),
            MediaAction::Publish { who, source } => {
                let Some(&conn) = self.conns.get(&who) else {
                    return;
                };
                let track = *self.tracks.entry((who.clone(), source)).or_insert_with(|| {
                    let t = new_track_id();
                    self.state.registry.add_track(t, self.me.clone());
                    t
                });
                self.track_owner.insert(track, (who.clone(), source));
                sfu.send(publish_command(conn, track, source));
                if let Some(command) = self.quality.published(&who, source, track) {
                    sfu.send(command);
                }
            }
            MediaAction::Unpublish { who, source } => {
                if let Some(track) = self.tracks.remove(&(who.clone(), source)) {
                    self.quality.unpublished(&who, source, track);
                    self.track_owner.remove(&track);
                    self.state.registry.remove_track(track);
                    sfu.send(Command::Unpublish(track));
                    // The edges let go of their copy (the relay stops carrying it).
                    if let Some(c) = &self.state.cascade {
                        for edge in self.relays.keys() {
                            c.send(
                                edge,
                                crate::cascade::wire::Wire::StageGone {
                                    meeting: self.id.clone(),
                                    publisher: who.clone(),
                                    source,
                                },
                            );
                        }
                    }
                }
            }
            MediaAction::Subscribe {
                who,
                publisher,
                source,
            } => {
                let (Some(&conn), Some(&track)) = (
                    self.conns.get(&who),
                    self.tracks.get(&(publisher.clone(), source)),
                ) else {
                    return;
                };
                sfu.send(Command::Subscribe { conn, track });
                if let Some(command) = self
                    .quality
                    .subscribed(&who, conn, &publisher, source, track)
                {
                    sfu.send(command);
                }
            }
            MediaAction::VideoSizes { who, sizes } => {
                let conn = self.conns.get(&who).copied();
                for command in self.quality.video_sizes(&who, conn, sizes, &self.tracks) {
                    sfu.send(command);
                }
            }
            MediaAction::Pause {
                who,
                source,
                paused,
            } => {
                if let Some(&track) = self.tracks.get(&(who, source)) {
                    sfu.send(Command::Pause { track, paused });
                }
            }
            MediaAction::RestartIce { who } => {
                if let Some(&conn) = self.conns.get(&who) {
                    sfu.send(Command::RestartIce(conn));
                }
            }
            MediaAction::Answer { who, sdp } => match self.conns.get(&who) {
                Some(&conn) => sfu.send(Command::Answer { conn, sdp }),
                None => self.send(
                    &who,
                    ServerMessage::error(ErrorCode::WrongState, "no media connection"),
                ),
            },
        }
    }

    /// A media action for someone whose socket is on an edge: carried out
    /// there, after what they were sent before it. They receive the stage;
    /// publishing from an edge is not carried (the room lets only the stage
    /// publish in a webinar; someone brought on stage there is told).
    fn edge_media(&mut self, action: MediaAction) {
        let (who, media) = match action {
            MediaAction::Connect(who) => (
                who,
                EdgeMedia::Connect {
                    redundant_audio: !self.room.is_e2ee(),
                    host_worker: self.sfu.local_addr().to_string(),
                },
            ),
            MediaAction::Disconnect(who) => (who, EdgeMedia::Disconnect),
            MediaAction::Subscribe {
                who,
                publisher,
                source,
            } => (who, EdgeMedia::Subscribe { publisher, source }),
            MediaAction::Answer { who, sdp } => (who, EdgeMedia::Answer { sdp }),
            MediaAction::RestartIce { who } => (who, EdgeMedia::RestartIce),
            MediaAction::VideoSizes { who, sizes } => (who, EdgeMedia::VideoSizes { sizes }),
            MediaAction::Publish { who, .. } => {
                self.send(
                    &who,
                    ServerMessage::error(
                        ErrorCode::Forbidden,
                        "you joined through another server of this meeting, which cannot carry what you send: leave and join again to present",
                    ),
                );
                return;
            }
            MediaAction::Unpublish { .. } | MediaAction::Pause { .. } => return,
        };
        if self.unwritten.is_empty() {
            self.send_edge_media(&who, media);
        } else {
            self.held.push(Held::Media(who, media));
        }
    }

    fn send_edge_media(&mut self, who: &ParticipantId, media: EdgeMedia) {
        let Some(out) = self.members.get(who).and_then(|m| m.out.as_ref()) else {
            return;
        };
        if out.try_send(Outbound::Media(media)).is_err() {
            info!(%who, "socket cannot keep up; closing it");
            self.members.remove(who);
            self.room.connection_lost(Instant::now(), who);
        }
    }

    /// An edge asks for the stage's tracks (cascading): its offer is
    /// answered by this meeting's SFU on the relay to that edge.
    fn relay_offer(
        &mut self,
        edge: String,
        incarnation: u64,
        sdp: String,
        tracks: Vec<StageTrack>,
    ) {
        let tracks: Vec<(String, TrackId)> = tracks
            .into_iter()
            .filter_map(|t| Some((t.mid, *self.tracks.get(&(t.publisher, t.source))?)))
            .collect();
        // A restarted edge task offers afresh: its predecessor's relay goes.
        if let Some(&(was, old)) = self.relays.get(&edge) {
            if was != incarnation {
                self.relays.remove(&edge);
                self.state.registry.remove_conn(old);
                self.sfu.send(Command::RemoveConnection(old));
            }
        }
        let conn = match self.relays.get(&edge) {
            Some(&(_, c)) => c,
            None => {
                let c = self.sfu.new_conn_id();
                self.state.registry.add_conn(c, self.me.clone());
                self.relays.insert(edge.clone(), (incarnation, c));
                info!(%edge, "a relay to an edge");
                c
            }
        };
        self.sfu.send(Command::RelayOffer {
            conn,
            offer: sdp,
            tracks,
        });
    }

    fn edge_of_relay(&self, conn: ConnId) -> Option<String> {
        self.relays
            .iter()
            .find(|(_, (_, c))| *c == conn)
            .map(|(e, _)| e.clone())
    }

    /// Say how many of the audience are on this node (the rest are on edges).
    fn count_audience(&self) {
        let Some(c) = &self.state.cascade else {
            return;
        };
        let here = self
            .members
            .iter()
            .filter(|(who, m)| m.edge.is_none() && self.room.in_audience(who))
            .count();
        c.set_audience(&self.id, Some(here));
    }

    fn drop_conn(&mut self, who: &ParticipantId) {
        if let Some(conn) = self.conns.remove(who) {
            self.conn_owner.remove(&conn);
            self.state.registry.remove_conn(conn);
            self.sfu.send(Command::RemoveConnection(conn));
        }
    }

    fn send(&mut self, to: &ParticipantId, message: ServerMessage) {
        self.broadcast(std::slice::from_ref(to), message);
    }

    /// Sent now, or held behind writes not yet on disk.
    fn broadcast(&mut self, to: &[ParticipantId], message: ServerMessage) {
        if self.unwritten.is_empty() {
            self.deliver(to, message);
        } else {
            self.held.push(Held::Send(to.to_vec(), message));
        }
    }

    /// Fresh TURN credentials for everyone whose are due (at 80 % of their
    /// lifetime), same id, later expiry.
    fn refresh_turn(&mut self, now: Instant) {
        let state = self.state.clone();
        let Some(issuer) = state.turn.issuer.as_ref() else {
            return;
        };
        let mut due = Vec::new();
        for (who, member) in &mut self.members {
            let Some(lease) = member.turn.as_mut().filter(|l| l.refresh_at <= now) else {
                continue;
            };
            lease.refresh_at = now + issuer.refresh_after();
            let ice_servers = issuer.ice_servers(&lease.id, SystemTime::now(), issuer.ttl());
            due.push((who.clone(), ice_servers));
        }
        for (who, ice_servers) in due {
            self.send(&who, ServerMessage::IceServers { ice_servers });
        }
    }

    /// The server's part of a message as it goes out: a welcome gets the
    /// receiver's own TURN credentials (a new id each time: a resume is a new
    /// socket), which are then refreshed until the lobby or the end.
    fn personalise(&mut self, to: &[ParticipantId], message: &mut ServerMessage) {
        let state = self.state.clone();
        match message {
            ServerMessage::Welcome { ice_servers, .. } => {
                let (Some(issuer), [who]) = (state.turn.issuer.as_ref(), to) else {
                    return;
                };
                let Some(member) = self.members.get_mut(who) else {
                    return;
                };
                let id = crate::turn::new_id();
                *ice_servers = issuer.ice_servers(&id, SystemTime::now(), issuer.ttl());
                member.turn = Some(TurnLease {
                    id,
                    refresh_at: Instant::now() + issuer.refresh_after(),
                });
            }
            // Sent back to the lobby (a level change): no media, no relay.
            ServerMessage::Lobby { .. } => {
                for who in to {
                    if let Some(member) = self.members.get_mut(who) {
                        member.turn = None;
                    }
                }
            }
            _ => {}
        }
    }

    /// Serialised once; every recipient's socket gets the same text.
    fn deliver(&mut self, to: &[ParticipantId], mut message: ServerMessage) {
        if !to.iter().any(|who| self.members.contains_key(who)) {
            return;
        }
        self.personalise(to, &mut message);
        let text: Arc<str> = match serde_json::to_string(&message) {
            Ok(t) => t.into(),
            Err(_) => return,
        };
        for who in to {
            let Some(member) = self.members.get_mut(who) else {
                continue;
            };
            let Some(out) = &member.out else { continue };
            match out.try_send(Outbound::Text(text.clone())) {
                Ok(()) => {}
                // The socket is going (a client that leaves and hangs up at
                // once): a leave it sent may still be queued here, so wait
                // for its SocketClosed rather than call it lost now.
                Err(mpsc::error::TrySendError::Closed(_)) => member.out = None,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Too slow to keep up: drop the socket; the client may resume.
                    info!(%who, "socket cannot keep up; closing it");
                    self.members.remove(who);
                    self.room.connection_lost(Instant::now(), who);
                }
            }
        }
    }
}

/// Whom a media action is for.
fn media_subject(action: &MediaAction) -> Option<&ParticipantId> {
    match action {
        MediaAction::Connect(who)
        | MediaAction::Disconnect(who)
        | MediaAction::Publish { who, .. }
        | MediaAction::Unpublish { who, .. }
        | MediaAction::Subscribe { who, .. }
        | MediaAction::Pause { who, .. }
        | MediaAction::Answer { who, .. }
        | MediaAction::RestartIce { who }
        | MediaAction::VideoSizes { who, .. } => Some(who),
    }
}
