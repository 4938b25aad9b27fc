//! The server's side of the connectivity check page (`/check`,
//! docs/protocol.md §10): a WebSocket that answers pings and proves that media
//! reaches the SFU over whichever path the browser restricts itself to (UDP,
//! TCP, a TURN relay), and a fixed-size download and upload for the browser to
//! time. No meeting is involved.
//!
//! Everything is bounded: requests per client address (the socket, the
//! download and the upload share one token bucket), checks running at once,
//! a check's lifetime (its media connections are removed when it ends, or
//! sooner when the browser leaves), the number and size of its messages, one
//! probe per path, and the sizes of the bodies.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use convene_sfu::driver::Command;
use convene_sfu::pool::SfuLease;
use convene_sfu::{ConnId, SfuError, SfuEvent, TrackId, TrackKind};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::debug;

use crate::client_addr::ClientIp;
use crate::http::{api_error, retry_later};
use crate::origin::same_origin;
use crate::rates::PerClient;
use crate::AppState;

/// How long a check's socket, and with it its media connections, may live.
/// The page finishes within 15 s; a socket left open is closed at this age.
pub const LIFETIME: Duration = Duration::from_secs(20);
/// Checks running at once, from everyone (each holds at most [`PATHS`] media
/// connections, so at most 192 probe connections in all).
pub const MAX_RUNNING: usize = 64;
/// The download's size: a few seconds' worth at office speeds, small enough
/// for a slow link to finish some of it within the page's time.
pub const DOWNLOAD_BYTES: usize = 2 << 20;
/// The most an upload may carry; more is refused with 413.
pub const UPLOAD_BYTES: usize = 1 << 20;
/// A check is three requests (the socket, the download, the upload). One
/// client address may run a burst of six, then six a minute.
const REQUESTS_PER_CHECK: f64 = 3.0;
const CHECKS_PER_MINUTE: f64 = 6.0;
/// Messages a check's socket may send in all (a check needs about ten: five
/// pings, three probes, three answers), and the largest (an SDP answer of one
/// audio m-line is about 2 KB).
const MAX_MESSAGES: u32 = 32;
const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// The paths a check can probe, one media connection each.
const PATHS: usize = 3;
/// Probe tracks are numbered far from meetings' (which count up from 1), so
/// they can never take one of a meeting's track ids on the SFU.
static NEXT_PROBE_TRACK: AtomicU64 = AtomicU64::new(1 << 62);

/// The check's limits and counters, shared by all checks.
pub struct Checks {
    requests: PerClient,
    running: Arc<AtomicUsize>,
    lifetime_ms: AtomicU64,
}

impl Default for Checks {
    fn default() -> Self {
        let burst = CHECKS_PER_MINUTE * REQUESTS_PER_CHECK;
        Checks {
            requests: PerClient::new(burst / 60.0, burst),
            running: Arc::default(),
            lifetime_ms: AtomicU64::new(LIFETIME.as_millis() as u64),
        }
    }
}

impl Checks {
    /// Checks whose socket is open now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// A shorter lifetime, for tests that watch probes being closed.
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.lifetime_ms
            .store(lifetime.as_millis() as u64, Ordering::Relaxed);
    }

    fn lifetime(&self) -> Duration {
        Duration::from_millis(self.lifetime_ms.load(Ordering::Relaxed))
    }

    /// Take one of the client's tokens: the refusal when it has none left.
    fn refusal(&self, client: IpAddr) -> Option<Response> {
        (!self.requests.allow(client)).then(|| {
            retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "too many connectivity checks from your address: try again in a minute",
                "10",
            )
        })
    }

    /// A place among the checks running at once, if one is free.
    fn place(&self) -> Option<Running> {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_RUNNING).then_some(n + 1)
            })
            .ok()
            .map(|_| Running(self.running.clone()))
    }
}

fn busy() -> Response {
    retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is running too many connectivity checks: try again in a few seconds",
        "10",
    )
}

/// One check's place among those running; given back when dropped, however
/// the socket ends (or if its upgrade never completes).
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn cross_origin() -> Response {
    api_error(
        StatusCode::FORBIDDEN,
        "cross-origin connectivity checks are not allowed",
    )
}

/// `GET /api/check/ws`: the check's socket. A plain GET (no upgrade) is
/// charged like an upgrade and answers what an upgrade would have got, or
/// `426`: a page whose socket failed to open learns whether the server
/// refused it (429, 503) or something on the way did not let it through.
pub async fn socket(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ClientIp(client): ClientIp,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if !same_origin(&headers, &state.public_url) {
        return cross_origin();
    }
    if let Some(refused) = state.checks.refusal(client) {
        return refused;
    }
    let Ok(upgrade) = upgrade else {
        if state.checks.running() >= MAX_RUNNING {
            return busy();
        }
        return api_error(
            StatusCode::UPGRADE_REQUIRED,
            "this is the connectivity check's WebSocket: the server would have accepted it",
        );
    };
    let Some(place) = state.checks.place() else {
        return busy();
    };
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(crate::ws::READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| run(socket, state, client, place))
}

/// Which way the browser lets the probe's media go (the server offers the
/// same candidates to each; the browser removes the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
enum ProbePath {
    Udp,
    Tcp,
    Relay,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
enum Incoming {
    Ping {
        #[serde(default)]
        n: u32,
    },
    Probe {
        path: ProbePath,
    },
    Answer {
        path: ProbePath,
        sdp: String,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Outgoing<'a> {
    Hello {
        seconds: u64,
    },
    Pong {
        n: u32,
    },
    Offer {
        path: ProbePath,
        sdp: &'a str,
    },
    /// `ms`: from the offer being sent to the SFU's "connected" (ICE and DTLS up).
    Connected {
        path: ProbePath,
        ms: u64,
    },
    Failed {
        path: ProbePath,
        reason: &'static str,
    },
    Error {
        message: &'static str,
    },
}

struct Probe {
    conn: ConnId,
    track: TrackId,
    offered: Option<Instant>,
}

/// One check's media side: its SFU worker (leased at the first probe) and its
/// probe connections, removed from the SFU when the check ends however it
/// ends (the task finishing, timing out, or being dropped).
struct Session {
    state: Arc<AppState>,
    sfu: Option<SfuLease>,
    probes: HashMap<ProbePath, Probe>,
    events_tx: mpsc::UnboundedSender<SfuEvent>,
}

impl Drop for Session {
    fn drop(&mut self) {
        let Some(sfu) = &self.sfu else { return };
        for probe in self.probes.values() {
            self.state.registry.remove_probe(probe.conn);
            sfu.send(Command::RemoveConnection(probe.conn));
            sfu.send(Command::Unpublish(probe.track));
        }
    }
}

/// Why the socket stopped being served.
enum End {
    /// The browser closed it or went away.
    Gone,
    /// A message broke the rules: close with this reason.
    Refused(&'static str),
}

async fn run(mut socket: WebSocket, state: Arc<AppState>, client: IpAddr, _place: Running) {
    let lifetime = state.checks.lifetime();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut session = Session {
        state,
        sfu: None,
        probes: HashMap::new(),
        events_tx,
    };
    let served =
        tokio::time::timeout(lifetime, session.serve(&mut socket, &mut events, lifetime)).await;
    let (code, reason) = match served {
        Err(_) => (close_code::NORMAL, "the check's time is up"),
        Ok(End::Gone) => return,
        Ok(End::Refused(why)) => (close_code::POLICY, why),
    };
    debug!(client = %convene_sfu::logged_address::logged(client), reason, "connectivity check closed");
    // The probes go now, not after a slow reader takes the close frame.
    drop(session);
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(close)).await;
}

impl Session {
    async fn serve(
        &mut self,
        socket: &mut WebSocket,
        events: &mut mpsc::UnboundedReceiver<SfuEvent>,
        lifetime: Duration,
    ) -> End {
        let hello = Outgoing::Hello {
            seconds: lifetime.as_secs(),
        };
        if send(socket, &hello).await.is_err() {
            return End::Gone;
        }
        let mut messages = 0u32;
        loop {
            let reply = tokio::select! {
                msg = socket.recv() => {
                    let text = match msg {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Binary(_))) => {
                            return End::Refused("messages are JSON text");
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_)) | Err(_)) | None => return End::Gone,
                    };
                    messages += 1;
                    if messages > MAX_MESSAGES {
                        return End::Refused("too many messages");
                    }
                    let Ok(incoming) = serde_json::from_str::<Incoming>(&text) else {
                        let _ = send(socket, &Outgoing::Error {
                            message: "not a connectivity check message",
                        })
                        .await;
                        return End::Refused("not a connectivity check message");
                    };
                    match self.handle(incoming) {
                        Ok(reply) => reply,
                        Err(message) => {
                            let _ = send(socket, &Outgoing::Error { message }).await;
                            return End::Refused(message);
                        }
                    }
                }
                Some(event) = events.recv() => self.sfu_event(event),
            };
            if let Some(reply) = reply {
                if socket.send(Message::Text(reply.into())).await.is_err() {
                    return End::Gone;
                }
            }
        }
    }

    /// A message from the browser: the reply to send, if any, or why the
    /// socket is closed.
    fn handle(&mut self, msg: Incoming) -> Result<Option<String>, &'static str> {
        match msg {
            Incoming::Ping { n } => Ok(Some(text(&Outgoing::Pong { n }))),
            Incoming::Probe { path } => {
                if self.probes.contains_key(&path) {
                    return Err("each path is probed once per check");
                }
                debug_assert!(self.probes.len() < PATHS);
                let state = &self.state;
                let sfu = self.sfu.get_or_insert_with(|| state.sfu.lease());
                let conn = sfu.add_connection();
                state.registry.add_probe(conn, self.events_tx.clone());
                let track = TrackId(NEXT_PROBE_TRACK.fetch_add(1, Ordering::Relaxed));
                // One receive-only audio m-line: the offer comes as an event.
                sfu.send(Command::Publish {
                    conn,
                    track,
                    kind: TrackKind::Voice,
                    simulcast: false,
                });
                self.probes.insert(
                    path,
                    Probe {
                        conn,
                        track,
                        offered: None,
                    },
                );
                Ok(None)
            }
            Incoming::Answer { path, sdp } => {
                let (Some(probe), Some(sfu)) = (self.probes.get(&path), &self.sfu) else {
                    return Err("no probe on that path");
                };
                if probe.offered.is_none() {
                    return Err("no offer is waiting for an answer");
                }
                sfu.send(Command::Answer {
                    conn: probe.conn,
                    sdp,
                });
                Ok(None)
            }
        }
    }

    /// An event of one of this check's connections: what to tell the browser.
    fn sfu_event(&mut self, event: SfuEvent) -> Option<String> {
        let conn = match &event {
            SfuEvent::Offer { conn, .. }
            | SfuEvent::Connected(conn)
            | SfuEvent::Closed(conn)
            | SfuEvent::Failed { conn, .. } => *conn,
            _ => return None,
        };
        let (&path, probe) = self.probes.iter_mut().find(|(_, p)| p.conn == conn)?;
        let out = match event {
            SfuEvent::Offer { sdp, .. } => {
                probe.offered = Some(Instant::now());
                return Some(text(&Outgoing::Offer { path, sdp: &sdp }));
            }
            SfuEvent::Connected(_) => Outgoing::Connected {
                path,
                ms: probe.offered.map_or(0, |t| t.elapsed().as_millis() as u64),
            },
            SfuEvent::Failed { error, .. } => {
                debug!(?path, "connectivity check: media request failed: {error}");
                Outgoing::Failed {
                    path,
                    reason: match error {
                        SfuError::BadSdp(_) => "the answer is not SDP this server can use",
                        _ => "the media connection could not be set up",
                    },
                }
            }
            SfuEvent::Closed(_) => {
                self.state.registry.remove_probe(conn);
                // Its track goes with the check; the connection is gone already.
                Outgoing::Failed {
                    path,
                    reason: "the media connection closed",
                }
            }
            _ => return None,
        };
        Some(text(&out))
    }
}

fn text(msg: &Outgoing) -> String {
    serde_json::to_string(msg).unwrap_or_default()
}

async fn send(socket: &mut WebSocket, msg: &Outgoing<'_>) -> Result<(), axum::Error> {
    socket.send(Message::Text(text(msg).into())).await
}

/// Incompressible bytes (xorshift), made once.
fn noise() -> Bytes {
    static NOISE: OnceLock<Bytes> = OnceLock::new();
    NOISE
        .get_or_init(|| {
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut out = Vec::with_capacity(DOWNLOAD_BYTES);
            while out.len() < DOWNLOAD_BYTES {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                out.extend_from_slice(&x.to_le_bytes());
            }
            out.truncate(DOWNLOAD_BYTES);
            Bytes::from(out)
        })
        .clone()
}

/// `GET /api/check/download`: [`DOWNLOAD_BYTES`] of noise, never cached.
pub async fn download(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ClientIp(client): ClientIp,
) -> Response {
    if !same_origin(&headers, &state.public_url) {
        return cross_origin();
    }
    if let Some(refused) = state.checks.refusal(client) {
        return refused;
    }
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from(noise()),
    )
        .into_response()
}

/// `POST /api/check/upload`: reads and discards at most [`UPLOAD_BYTES`];
/// answers how many arrived. (The body is read here, not through an
/// extractor, so the API's 16 KiB body limit does not apply.)
pub async fn upload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ClientIp(client): ClientIp,
    body: Body,
) -> Response {
    if !same_origin(&headers, &state.public_url) {
        return cross_origin();
    }
    if let Some(refused) = state.checks.refusal(client) {
        return refused;
    }
    let too_large = || {
        let mut res = api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("an upload is at most {UPLOAD_BYTES} bytes"),
        );
        // The rest of the body is not read: the connection cannot be reused.
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        res
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > UPLOAD_BYTES as u64) {
        return too_large();
    }
    let mut received = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                received += chunk.len();
                if received > UPLOAD_BYTES {
                    return too_large();
                }
            }
            Err(_) => return api_error(StatusCode::BAD_REQUEST, "the upload was cut short"),
        }
    }
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({ "received": received })),
    )
        .into_response()
}
