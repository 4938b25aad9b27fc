//! One WebSocket per participant: limits on size and rate, JSON parsing, the
//! first-message-must-be-join rule, keepalive, and clean-up when it goes away.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket};
use convene_meeting::access::Role;
use convene_meeting::passcode;
use convene_meeting::protocol::{parse_client_message, ClientMessage, ErrorCode, ServerMessage};
use convene_meeting::{Entrant, ParticipantId};
use convene_storage::Meeting;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use std::net::IpAddr;

use crate::meeting::{deliver, MeetingInput, Outbound, OUTBOUND_QUEUE};
use crate::writer::AuditEntry;
use crate::AppState;

/// Largest message we read; larger ones get a "too-large" error. (SDP answers in
/// big meetings are the largest legitimate messages.)
pub const MAX_MESSAGE: usize = 256 * 1024;
/// Bytes read from the socket at a time.
pub const READ_BUFFER: usize = 4096;
/// Frames beyond this are refused by the WebSocket layer itself, which closes.
pub const MAX_FRAME: usize = 1024 * 1024;
/// Token bucket: sustained messages per second, and burst.
const RATE_PER_SEC: f64 = 20.0;
const RATE_BURST: f64 = 60.0;
/// More refused messages than this within [`REFUSED_WINDOW`] close the socket
/// (counted over time, not in a row: accepted messages in between do not
/// reset it).
const MAX_REFUSED: u32 = 100;
const REFUSED_WINDOW: Duration = Duration::from_secs(10);
/// `rate-limited` is said at most this often; further ones are dropped here
/// without reaching the meeting.
const RATE_LIMITED_EVERY: Duration = Duration::from_secs(1);
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(5);
/// No frame at all (not even a pong) for this long means the peer is gone.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

/// A number for a socket, unique in this process (a socket on an edge gets
/// one here too: cascade/host.rs).
pub fn next_socket_id() -> u64 {
    NEXT_SOCKET.fetch_add(1, Ordering::Relaxed)
}

/// Checks made before a "join" reaches the meeting: the host key gives the host
/// role; a meeting's passcode must be given (by everyone but hosts). Guessing
/// is bounded per client address and meeting and per meeting, each try charged
/// before the slow check so simultaneous guesses gain nothing; the checks run
/// on the bounded hashing threads, at a bounded rate per address. A right host
/// key always gets in; an address that keeps sending wrong ones is turned away
/// for a while. A resume skips all this: its token proves the earlier admission.
async fn admit(
    state: &Arc<AppState>,
    meeting: &Meeting,
    client: IpAddr,
    msg: &ClientMessage,
) -> Result<Role, ServerMessage> {
    let ClientMessage::Join {
        resume,
        passcode,
        host_key,
        ..
    } = msg
    else {
        return Ok(Role::Participant); // the room answers "wrong-state"
    };
    if meeting.ended_at.is_some() {
        return Err(ServerMessage::error(
            ErrorCode::Ended,
            "this meeting has ended",
        ));
    }
    if resume.is_some() {
        return Ok(Role::Participant); // the room restores the role it knew
    }
    let audit = |outcome: &str, detail: String| {
        state.writer.record(AuditEntry {
            meeting: meeting.id.clone(),
            actor: state.client_label(Some(client)),
            subject: "-".into(),
            event: "join".into(),
            outcome: outcome.into(),
            detail,
        })
    };
    // Limits count per address group (an IPv4 address, an IPv6 /64); the
    // audit names the address itself.
    let group = crate::client_addr::address_group(client);
    if let Some(key) = host_key {
        // A right host key always gets in. Wrong ones are refused, and an
        // address that keeps sending them is turned away unread for a while.
        if meeting.is_host_key(key) {
            return Ok(Role::Host);
        }
        if !state.refused_joins.allow(client) {
            audit("refused: too many refusals", String::new());
            return Err(ServerMessage::error(
                ErrorCode::RateLimited,
                "too many refused joins from your address: wait a minute and try again",
            ));
        }
        audit("refused: bad host key", String::new());
        return Err(ServerMessage::error(
            ErrorCode::Forbidden,
            "that host link is not valid for this meeting",
        ));
    }
    let Some(hash) = meeting.passcode_hash.clone() else {
        return Ok(Role::Participant);
    };
    let Some(attempt) = passcode.clone() else {
        return Err(ServerMessage::error(
            ErrorCode::WrongPasscode,
            "this meeting needs a passcode",
        ));
    };
    // The rate of checks first: a try refused here touches no guess count.
    if !state.passcode_checks.allow(client) {
        return Err(ServerMessage::error(
            ErrorCode::RateLimited,
            "too many passcode checks from your address: wait a few seconds",
        ));
    }
    let guess = match Try::reserve(state, group, &meeting.id).await {
        Ok(g) => g,
        Err(NoTry::Unreachable) => {
            return Err(ServerMessage::error(
                ErrorCode::Busy,
                "the meeting cannot be reached just now; try again in a moment",
            ))
        }
        Err(NoTry::Wait(wait)) => {
            let secs = wait.as_secs() + 1;
            audit("refused: locked out", format!("retry after {secs} s"));
            return Err(ServerMessage::error(
                ErrorCode::LockedOut,
                format!("too many wrong passcodes: try again in {secs} seconds"),
            ));
        }
    };
    let verdict = state
        .hashers
        .run(move |scratch| passcode::verify_with(scratch, &hash, &attempt))
        .await;
    match verdict {
        Ok(true) => {
            guess.settle(false).await; // right: its charge is taken back
            Ok(Role::Participant)
        }
        Ok(false) => {
            // Settled before the answer: the client's next try finds it counted.
            guess.settle(true).await;
            audit("refused: wrong passcode", String::new());
            Err(ServerMessage::error(
                ErrorCode::WrongPasscode,
                "that passcode is not right",
            ))
        }
        Err(crate::hashing::Busy) => {
            guess.settle(false).await;
            Err(ServerMessage::error(
                ErrorCode::Busy,
                "the server is busy checking passcodes: try again in a few seconds",
            ))
        }
    }
}

/// The longest a join waits for the cluster's guess count.
const SHARED_GUESS_WAIT: Duration = Duration::from_secs(2);

/// A passcode try charged before its check: to this node's limiters, or,
/// in a cluster, to the cluster's (every node, an edge of a cascaded
/// webinar included, draws on one budget: convene-cluster guesses.rs).
enum Try<'a> {
    Local(Guess<'a>),
    Shared(&'a convene_cluster::Cluster, convene_cluster::Guess),
}

enum NoTry {
    Wait(Duration),
    /// The cluster's count cannot be read: no try unless it is counted.
    Unreachable,
}

fn backoff(rules: passcode::Rules) -> convene_cluster::Backoff {
    convene_cluster::Backoff {
        free_tries: rules.free_tries,
        first_wait: rules.first_wait,
        max_wait: rules.max_wait,
        forget_after: rules.forget_after,
    }
}

impl<'a> Try<'a> {
    async fn reserve(state: &'a AppState, group: IpAddr, meeting: &str) -> Result<Try<'a>, NoTry> {
        let Some(link) = &state.cluster else {
            return Guess::reserve(state, group, meeting)
                .map(Try::Local)
                .map_err(NoTry::Wait);
        };
        if link.reaches_redis().is_err() {
            return Err(NoTry::Unreachable);
        }
        let per_address = backoff(
            state
                .passcode_limiter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .rules(),
        );
        let per_meeting = backoff(
            state
                .meeting_passcode_limiter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .rules(),
        );
        let cluster = link.cluster();
        let guess = cluster
            .guess(meeting, group, &per_address, &per_meeting)
            .map_err(|e| {
                tracing::warn!("cluster: passcode guesses not counted: {e}");
                NoTry::Unreachable
            })?;
        match tokio::time::timeout(SHARED_GUESS_WAIT, cluster.reserve(&guess)).await {
            Ok(Ok(None)) => Ok(Try::Shared(cluster, guess)),
            Ok(Ok(Some(
                convene_cluster::Waiting::Address(wait) | convene_cluster::Waiting::Meeting(wait),
            ))) => Err(NoTry::Wait(wait)),
            failed => {
                if let Ok(Err(e)) = failed {
                    tracing::warn!("cluster: passcode guesses not counted: {e}");
                }
                // It may have been charged all the same (Redis answered
                // late): taken back, or its lease would count it as wrong.
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    let _ = cluster.settle_guess(guess, false).await;
                });
                Err(NoTry::Unreachable)
            }
        }
    }

    /// Wrong: the charge stays; right (or never checked): taken back. A
    /// shared try not settled (Redis away) counts as wrong when its lease
    /// runs out.
    async fn settle(self, wrong: bool) {
        match self {
            Try::Local(g) if wrong => g.failed(),
            Try::Local(g) => drop(g),
            Try::Shared(cluster, g) => {
                if let Err(e) = cluster.settle_guess(g, wrong).await {
                    debug!("cluster: a passcode try not settled: {e}");
                }
            }
        }
    }
}

/// A passcode try charged to its address and meeting and to the meeting; it
/// stays charged only if [`Guess::failed`], and is taken back when dropped
/// otherwise (right, or never checked).
struct Guess<'a> {
    state: &'a AppState,
    key: (IpAddr, String),
    failed: bool,
}

impl<'a> Guess<'a> {
    fn reserve(state: &'a AppState, client: IpAddr, meeting: &str) -> Result<Guess<'a>, Duration> {
        let now = Instant::now();
        let key = (client, meeting.to_string());
        let mut by_address = state
            .passcode_limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut by_meeting = state
            .meeting_passcode_limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        by_address.check(now, &key)?;
        by_meeting.reserve(now, &key.1)?;
        if let Err(wait) = by_address.reserve(now, &key) {
            by_meeting.succeeded(&key.1);
            return Err(wait);
        }
        Ok(Guess {
            state,
            key,
            failed: false,
        })
    }

    fn failed(mut self) {
        self.failed = true;
    }
}

impl Drop for Guess<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut by_address = self
            .state
            .passcode_limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut by_meeting = self
            .state
            .meeting_passcode_limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if self.failed {
            by_address.failed(now, &self.key);
            by_meeting.failed(now, &self.key.1);
        } else {
            by_address.succeeded(&self.key);
            by_meeting.succeeded(&self.key.1);
        }
    }
}

struct RateLimit {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    fn new() -> Self {
        RateLimit {
            tokens: RATE_BURST,
            at: Instant::now(),
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * RATE_PER_SEC)
            .min(RATE_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn encode(message: &ServerMessage) -> Message {
    Message::Text(Utf8Bytes::from(
        serde_json::to_string(message).unwrap_or_default(),
    ))
}

enum Incoming {
    Message(ClientMessage),
    Refused { code: ErrorCode, message: String },
    Closed,
}

impl Incoming {
    fn refused(code: ErrorCode, message: impl Into<String>) -> Incoming {
        Incoming::Refused {
            code,
            message: message.into(),
        }
    }
}

/// Read the next client message, applying the limits.
async fn next_message(
    socket: &mut futures_util::stream::SplitStream<WebSocket>,
    rate: &mut RateLimit,
) -> Incoming {
    loop {
        let frame = match tokio::time::timeout(IDLE_TIMEOUT, socket.next()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => {
                debug!("socket error: {e}");
                return Incoming::Closed;
            }
            Ok(None) | Err(_) => return Incoming::Closed,
        };
        let text = match frame {
            Message::Text(t) => t,
            Message::Binary(_) => {
                return Incoming::refused(ErrorCode::BadJson, "messages are JSON text")
            }
            Message::Close(_) => return Incoming::Closed,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if !rate.allow(Instant::now()) {
            return Incoming::refused(ErrorCode::RateLimited, "too many messages; slow down");
        }
        if text.len() > MAX_MESSAGE {
            return Incoming::refused(
                ErrorCode::TooLarge,
                format!("a message is at most {MAX_MESSAGE} bytes"),
            );
        }
        return match parse_client_message(text.as_str()) {
            Ok(m) => Incoming::Message(m),
            Err(e) => Incoming::refused(e.code, e.message),
        };
    }
}

/// The edge task of a meeting this node serves part of the audience of
/// (cascading): the socket's input goes there, never to a meeting task here.
pub type Edge = tokio::sync::mpsc::UnboundedSender<crate::cascade::EdgeInput>;

/// Give `input` to the meeting: its task here, or this node's edge task for it.
fn to_meeting(state: &Arc<AppState>, meeting: &Meeting, edge: &Option<Edge>, input: MeetingInput) {
    match edge {
        // An edge task that stopped drops the input: a join's answer never
        // comes, and the socket closes.
        Some(tx) => {
            let _ = tx.send(crate::cascade::EdgeInput::Socket(input));
        }
        None => deliver(state, meeting, input),
    }
}

/// A join is checked against the meeting as it is now, not as it was when
/// the socket opened (up to [`JOIN_TIMEOUT`] before): a host may have set or
/// changed the passcode meanwhile. Read again at most once a second per
/// socket, so a stream of joins costs no more than that.
const MEETING_FRESH_FOR: Duration = Duration::from_secs(1);

async fn fresh_meeting(state: &Arc<AppState>, meeting: &Meeting) -> Option<Meeting> {
    let st = state.clone();
    let id = meeting.id.clone();
    match tokio::task::spawn_blocking(move || st.storage.meeting(&id)).await {
        Ok(Ok(Some(m))) => Some(m),
        _ => None,
    }
}

pub async fn run(
    socket: WebSocket,
    state: Arc<AppState>,
    mut meeting: Meeting,
    client: IpAddr,
    person: Option<String>,
    identity: convene_meeting::identity::Identity,
    edge: Option<Edge>,
) {
    let socket_id = next_socket_id();
    let (mut tx, mut rx) = socket.split();
    let mut rate = RateLimit::new();
    let (out_tx, out_rx) = mpsc::channel::<Outbound>(OUTBOUND_QUEUE);

    // Until "join" succeeds, this task answers errors itself.
    // One deadline for the whole joining phase: refused messages do not extend it.
    let join_deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut meeting_read = Instant::now();
    let who: ParticipantId = loop {
        let msg =
            match tokio::time::timeout_at(join_deadline, next_message(&mut rx, &mut rate)).await {
                Err(_) => {
                    let _ = tx
                        .send(encode(&ServerMessage::error(
                            ErrorCode::WrongState,
                            "no \"join\" in time",
                        )))
                        .await;
                    return;
                }
                Ok(Incoming::Closed) => return,
                Ok(Incoming::Refused { code, message }) => {
                    state.metrics.refused_message(code);
                    let _ = tx.send(encode(&ServerMessage::error(code, message))).await;
                    continue;
                }
                Ok(Incoming::Message(m)) => {
                    state.metrics.message(m.kind());
                    m
                }
            };
        let fresh_join = matches!(&msg, ClientMessage::Join { resume: None, .. });
        if fresh_join && meeting_read.elapsed() >= MEETING_FRESH_FOR {
            if let Some(m) = fresh_meeting(&state, &meeting).await {
                meeting = m;
            }
            meeting_read = Instant::now();
        }
        let role = match admit(&state, &meeting, client, &msg).await {
            Ok(role) => role,
            Err(refusal) => {
                state.metrics.join_refused(&refusal);
                let _ = tx.send(encode(&refusal)).await;
                continue;
            }
        };
        let (reply, result) = oneshot::channel();
        let input = MeetingInput::Join {
            msg,
            entrant: Entrant {
                role,
                key: person.clone(),
                identity: identity.clone(),
                address: Some(client),
            },
            out: out_tx.clone(),
            socket: socket_id,
            reply,
            edge: None,
        };
        to_meeting(&state, &meeting, &edge, input);
        match result.await {
            Ok(Ok(who)) => {
                state.metrics.join("joined");
                break who;
            }
            Ok(Err(e)) => {
                state.metrics.join_refused_with(e.code);
                let _ = tx
                    .send(encode(&ServerMessage::error(e.code, e.message)))
                    .await;
            }
            Err(_) => return,
        }
    };
    drop(out_tx); // the meeting task holds the only sender now: when it drops it, we close
    tracing::Span::current().record("participant", tracing::field::display(&who));
    let _counted = state.metrics.participant();

    let (stop_tx, stop_rx) = oneshot::channel::<CloseFrame>();
    let writer = write_loop(tx, out_rx, stop_rx);

    let st = state.clone();
    let meeting_r = meeting.clone();
    let edge_r = edge.clone();
    let who_r = who.clone();
    let reader = async move {
        let mut refused = 0u32;
        let mut window = Instant::now();
        let mut said_rate_limited: Option<Instant> = None;
        loop {
            match next_message(&mut rx, &mut rate).await {
                Incoming::Closed => return (End::Lost, rx),
                Incoming::Refused { code, message } => {
                    st.metrics.refused_message(code);
                    let now = Instant::now();
                    if now.duration_since(window) > REFUSED_WINDOW {
                        window = now;
                        refused = 0;
                    }
                    refused += 1;
                    if refused > MAX_REFUSED {
                        return (End::Flooded, rx);
                    }
                    if code == ErrorCode::RateLimited {
                        if said_rate_limited
                            .is_some_and(|t| now.duration_since(t) < RATE_LIMITED_EVERY)
                        {
                            continue;
                        }
                        said_rate_limited = Some(now);
                    }
                    // Through the meeting task, so errors keep their order with other output.
                    let input = MeetingInput::Refused {
                        who: who_r.clone(),
                        socket: socket_id,
                        code,
                        message,
                    };
                    to_meeting(&st, &meeting_r, &edge_r, input);
                }
                Incoming::Message(msg) => {
                    st.metrics.message(msg.kind());
                    let leaving = matches!(msg, ClientMessage::Leave {});
                    let input = MeetingInput::Message {
                        who: who_r.clone(),
                        socket: socket_id,
                        msg,
                    };
                    to_meeting(&st, &meeting_r, &edge_r, input);
                    if leaving {
                        return (End::Left, rx);
                    }
                }
            }
        }
    };

    tokio::pin!(writer, reader);
    let (end, mut rx) = tokio::select! {
        _ = &mut writer => return to_meeting(&state, &meeting, &edge, MeetingInput::SocketClosed {
            who,
            socket: socket_id,
        }),
        ended = &mut reader => ended,
    };
    let closed = MeetingInput::SocketClosed {
        who,
        socket: socket_id,
    };
    match end {
        // The meeting handles the leave, then closes this socket's queue;
        // until then its messages still go out, so the leave is never mistaken
        // for a lost connection.
        End::Left => {
            let _ = tokio::time::timeout(LEAVE_WAIT, writer).await;
            // Harmless after a handled leave: the meeting no longer knows this socket.
            to_meeting(&state, &meeting, &edge, closed);
            until_close(&mut rx).await;
        }
        // The meeting answers what it was given before it hears the socket is
        // closing, then closes the queue; the answers go out, then a close
        // frame that says why.
        End::Flooded => {
            let _ = stop_tx.send(CloseFrame {
                code: close_code::POLICY,
                reason: Utf8Bytes::from_static("too many refused messages"),
            });
            to_meeting(&state, &meeting, &edge, closed);
            let _ = tokio::time::timeout(LEAVE_WAIT, writer).await;
            until_close(&mut rx).await;
        }
        End::Lost => to_meeting(&state, &meeting, &edge, closed),
    }
}

/// Read (and drop) what the client still sends until it answers our close,
/// for at most [`CLOSE_WAIT`]: a socket closed with unread data is reset, and
/// a reset can destroy the last messages and the close frame before the client
/// has read them.
async fn until_close(rx: &mut futures_util::stream::SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(frame)) = rx.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// How long a closing socket reads on for the client's close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How long a leaving or closing socket waits for the meeting to finish with it.
const LEAVE_WAIT: Duration = Duration::from_secs(5);

enum End {
    Left,
    Lost,
    Flooded,
}

/// Send what the meeting queues for this socket, and pings; ends when the
/// meeting closes the queue (with the close frame `reason` gave by then, if
/// any) or the socket fails.
async fn write_loop(
    mut tx: futures_util::stream::SplitSink<WebSocket, Message>,
    mut out_rx: mpsc::Receiver<Outbound>,
    mut reason: oneshot::Receiver<CloseFrame>,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut frame = None;
    let mut reason_open = true;
    loop {
        tokio::select! {
            out = out_rx.recv() => match out {
                Some(Outbound::Text(text)) => {
                    if tx.send(Message::Text(Utf8Bytes::from(&*text))).await.is_err() {
                        return;
                    }
                }
                // Only for sockets on an edge (cascade/host.rs), never queued here.
                Some(Outbound::Media(_)) => {}
                None => {
                    // The reason may have come together with the end.
                    if reason_open {
                        frame = frame.or(reason.try_recv().ok());
                    }
                    let _ = tx.send(Message::Close(frame)).await;
                    return;
                }
            },
            _ = ping.tick() => {
                if tx.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            given = &mut reason, if reason_open => {
                reason_open = false;
                frame = given.ok();
            }
        }
    }
}
