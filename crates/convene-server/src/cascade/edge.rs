//! An edge's task for one meeting hosted on another node: its attendees'
//! sockets (their room messages go to the meeting's node, whose answers
//! come back as text to send) and media connections, and the uplink that
//! receives the stage's tracks from the meeting's SFU once for all of them.
//! The uplink is an ordinary publisher's connection here: the edge's SFU
//! offers to receive the tracks, the meeting's SFU answers as a relay
//! (convene-sfu relay.rs).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use convene_meeting::protocol::{ErrorCode, ServerMessage, Source};
use convene_meeting::{ParticipantId, RoomError};
use convene_sfu::driver::Command;
use convene_sfu::pool::SfuLease;
use convene_sfu::{ConnId, ConnOptions, SfuEvent, TrackId};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::wire::{EdgeMedia, StageTrack, Wire};
use crate::media_quality::MediaQuality;
use crate::meeting::{self, MeetingInput, Outbound, OutboundTx};
use crate::AppState;

/// An edge task with no socket stops after this long.
const IDLE_STOP: Duration = Duration::from_secs(30);
/// How often the edge checks that its host still hosts the meeting.
const HOST_CHECK: Duration = Duration::from_secs(2);
/// The longest that check waits for Redis.
const HOST_CHECK_WAIT: Duration = Duration::from_millis(500);
/// A join the meeting's node has not answered in this long is given up
/// (the socket closes; the client tries again).
const JOIN_PATIENCE: Duration = Duration::from_secs(10);

pub enum EdgeInput {
    /// From one of this node's sockets (as a meeting task would get it).
    Socket(MeetingInput),
    /// From the meeting's node.
    Host(Wire),
    /// Another node hosts the meeting now: close every socket and stop.
    HostChanged,
}

struct Socket {
    /// `None` once the room let go of it: the socket closes.
    out: Option<OutboundTx>,
    /// The socket waits for the room's answer to its join, asked then.
    reply: Option<(
        oneshot::Sender<Result<ParticipantId, RoomError>>,
        std::time::Instant,
    )>,
    who: Option<ParticipantId>,
    conn: Option<ConnId>,
}

struct Edge {
    meeting: String,
    /// The node that hosts the meeting.
    host: String,
    me: String,
    /// This task's number, new each time one starts: the meeting's node
    /// tells a restarted edge's offer from its predecessor's.
    incarnation: u64,
    state: Arc<AppState>,
    /// Taken at the first attendee's media connection, when the worker the
    /// stage comes from is known; with (meeting's node, its worker).
    sfu: Option<(SfuLease, (String, String))>,
    sfu_tx: mpsc::UnboundedSender<SfuEvent>,
    sockets: HashMap<u64, Socket>,
    conn_socket: HashMap<ConnId, u64>,
    /// The connection the stage's tracks arrive on.
    uplink: Option<ConnId>,
    stage: HashMap<(ParticipantId, Source), TrackId>,
    stage_owner: HashMap<TrackId, (ParticipantId, Source)>,
    quality: MediaQuality,
}

pub fn spawn(
    state: Arc<AppState>,
    meeting: String,
    host: String,
    incarnation: u64,
) -> mpsc::UnboundedSender<EdgeInput> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (sfu_tx, sfu_rx) = mpsc::unbounded_channel();
    let me = state
        .cluster
        .as_ref()
        .map(|l| l.id().to_string())
        .unwrap_or_default();
    let edge = Edge {
        sfu: None,
        meeting,
        host,
        me,
        incarnation,
        state,
        sfu_tx,
        sockets: HashMap::new(),
        conn_socket: HashMap::new(),
        uplink: None,
        stage: HashMap::new(),
        stage_owner: HashMap::new(),
        quality: MediaQuality::default(),
    };
    let span = tracing::info_span!(parent: None, "edge", meeting = %crate::logging::meeting_tag(&edge.meeting));
    tokio::spawn(tracing::Instrument::instrument(edge.run(rx, sfu_rx), span));
    tx
}

impl Edge {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<EdgeInput>,
        mut sfu_rx: mpsc::UnboundedReceiver<SfuEvent>,
    ) {
        info!(host = %self.host, "edge for a meeting on another node");
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut empty_since: Option<std::time::Instant> = None;
        let mut host_checked = std::time::Instant::now();
        let mut host_misses = 0;
        loop {
            tokio::select! {
                input = rx.recv() => match input {
                    Some(EdgeInput::Socket(input)) => self.socket(input),
                    Some(EdgeInput::Host(wire)) => self.host_says(wire),
                    Some(EdgeInput::HostChanged) => {
                        info!("another node hosts the meeting now: the sockets here close");
                        self.tell_host_all_closed();
                        break;
                    }
                    None => break,
                },
                Some(event) = sfu_rx.recv() => self.sfu_event(event),
                _ = tick.tick() => {
                    self.forget_gone_sockets();
                    if host_checked.elapsed() >= HOST_CHECK {
                        host_checked = std::time::Instant::now();
                        // Twice in a row: a hold that lapsed for a moment
                        // does not close a whole audience's sockets.
                        host_misses = if self.host_still_hosts().await { 0 } else { host_misses + 1 };
                        if host_misses >= 2 {
                            info!("the meeting's node no longer hosts it: the sockets here close");
                            self.tell_host_all_closed();
                            if let Some(c) = &self.state.cascade {
                                c.edge_leaves(&self.meeting, self.incarnation, false);
                            }
                            break;
                        }
                    }
                    if self.sockets.is_empty() {
                        let since = *empty_since.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() >= IDLE_STOP {
                            let Some(cascade) = &self.state.cascade else { break };
                            // Not while a socket holds a sender (one between
                            // its upgrade and its join).
                            if rx.is_empty() && cascade.edge_leaves(&self.meeting, self.incarnation, true) {
                                break;
                            }
                        }
                    } else {
                        empty_since = None;
                    }
                }
            }
        }
        // Every socket closes (its queue goes out first), and a join waiting
        // for its answer gets none.
        self.sockets.clear();
        if let (Some(cascade), Some((lease, from))) = (&self.state.cascade, &self.sfu) {
            cascade.release(from, lease.local_addr());
        }
        let conns: Vec<ConnId> = self
            .conn_socket
            .keys()
            .copied()
            .chain(self.uplink)
            .collect();
        for conn in conns {
            self.state.registry.remove_probe(conn);
            self.command(Command::RemoveConnection(conn));
        }
        info!("edge task stopped");
    }

    /// Whether the node this task sends to still hosts the meeting (true
    /// when Redis cannot say, or not within [`HOST_CHECK_WAIT`]: running
    /// sockets are not closed for that, and the task does not wait long).
    async fn host_still_hosts(&self) -> bool {
        let Some(link) = &self.state.cluster else {
            return true;
        };
        match tokio::time::timeout(HOST_CHECK_WAIT, link.cluster().owner(&self.meeting)).await {
            Ok(Ok(owner)) => owner.as_deref() == Some(self.host.as_str()),
            _ => true,
        }
    }

    /// The sockets here close: the meeting's node is told of each (it may
    /// still run the room, and would otherwise keep them there).
    fn tell_host_all_closed(&mut self) {
        let closed: Vec<(u64, ParticipantId)> = self
            .sockets
            .iter()
            .filter_map(|(k, s)| Some((*k, s.who.clone()?)))
            .collect();
        for (socket, who) in closed {
            self.to_host(Wire::SocketClosed {
                meeting: self.meeting.clone(),
                from: self.me.clone(),
                socket,
                who,
            });
        }
    }

    fn command(&self, command: Command) {
        if let Some((lease, _)) = &self.sfu {
            lease.send(command);
        }
    }

    /// The worker this meeting is served on here, taken now if not yet.
    fn lease(&mut self, host_worker: String) -> &SfuLease {
        if self.sfu.is_none() {
            let from = (self.host.clone(), host_worker);
            let (lease, clash) = match &self.state.cascade {
                Some(c) => c.lease_for(&self.state.sfu, &from),
                None => (self.state.sfu.lease(), false),
            };
            if clash {
                warn!(
                    "every media worker here takes a relay from the meeting's worker already: this meeting's will not connect (one relay per pair of workers is not built yet)"
                );
            }
            self.sfu = Some((lease, from));
        }
        &self.sfu.as_ref().expect("set above").0
    }

    fn to_host(&self, wire: Wire) {
        if let Some(c) = &self.state.cascade {
            c.send(&self.host, wire);
        }
    }

    /// What a socket here says: to the room, on the meeting's node.
    fn socket(&mut self, input: MeetingInput) {
        let meeting = self.meeting.clone();
        let from = self.me.clone();
        match input {
            MeetingInput::Join {
                msg,
                entrant,
                out,
                socket,
                reply,
                ..
            } => {
                let s = self.sockets.entry(socket).or_insert(Socket {
                    out: None,
                    reply: None,
                    who: None,
                    conn: None,
                });
                s.out = Some(out);
                s.reply = Some((reply, std::time::Instant::now()));
                self.to_host(Wire::Join {
                    meeting,
                    from,
                    socket,
                    msg,
                    entrant,
                });
            }
            MeetingInput::Message { who, socket, msg } => self.to_host(Wire::Message {
                meeting,
                from,
                socket,
                who,
                msg,
            }),
            MeetingInput::Refused {
                who,
                socket,
                code,
                message,
            } => self.to_host(Wire::Refused {
                meeting,
                from,
                socket,
                who,
                code,
                message,
            }),
            MeetingInput::SocketClosed { who, socket } => {
                self.drop_socket(socket);
                self.to_host(Wire::SocketClosed {
                    meeting,
                    from,
                    socket,
                    who,
                });
            }
            MeetingInput::Drain { done, .. } => {
                let _ = done.send(());
            }
            _ => {}
        }
    }

    /// Sockets that went away before they joined (they say nothing then):
    /// the meeting's node forgets them too. A join not answered in time is
    /// given up (its socket closes, and is forgotten at the next tick).
    fn forget_gone_sockets(&mut self) {
        for s in self.sockets.values_mut() {
            if s.reply
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() >= JOIN_PATIENCE)
            {
                s.reply = None;
                s.out = None;
            }
        }
        let gone: Vec<u64> = self
            .sockets
            .iter()
            .filter(|(_, s)| s.who.is_none() && s.out.as_ref().is_none_or(|o| o.is_closed()))
            .map(|(k, _)| *k)
            .collect();
        for socket in gone {
            self.drop_socket(socket);
            self.to_host(Wire::SocketClosed {
                meeting: self.meeting.clone(),
                from: self.me.clone(),
                socket,
                who: ParticipantId(String::new()),
            });
        }
    }

    fn drop_socket(&mut self, socket: u64) {
        if let Some(s) = self.sockets.remove(&socket) {
            if let Some(conn) = s.conn {
                self.drop_conn(conn);
            }
        }
    }

    fn drop_conn(&mut self, conn: ConnId) {
        self.conn_socket.remove(&conn);
        self.state.registry.remove_probe(conn);
        self.command(Command::RemoveConnection(conn));
    }

    fn send_text(&mut self, socket: u64, text: Arc<str>) {
        let Some(s) = self.sockets.get_mut(&socket) else {
            return;
        };
        let Some(out) = &s.out else { return };
        match out.try_send(Outbound::Text(text)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => s.out = None,
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Too slow to keep up: the socket closes; the client resumes.
                info!("socket cannot keep up; closing it");
                s.out = None;
            }
        }
    }

    fn send_message(&mut self, socket: u64, message: &ServerMessage) {
        if let Ok(text) = serde_json::to_string(message) {
            self.send_text(socket, text.into());
        }
    }

    /// What the meeting's node says.
    fn host_says(&mut self, wire: Wire) {
        match wire {
            Wire::Joined { socket, result, .. } => {
                let Some(s) = self.sockets.get_mut(&socket) else {
                    return;
                };
                if let Ok(who) = &result {
                    s.who = Some(who.clone());
                }
                if let Some((reply, _)) = s.reply.take() {
                    let _ = reply.send(result);
                }
            }
            Wire::Text { socket, text, .. } => self.send_text(socket, text),
            Wire::Texts { sockets, text, .. } => {
                for socket in sockets {
                    self.send_text(socket, text.clone());
                }
            }
            Wire::Close { socket, .. } => {
                if let Some(s) = self.sockets.get_mut(&socket) {
                    // Dropping the last sender closes the socket once its queue is out.
                    s.out = None;
                    s.reply = None;
                }
            }
            Wire::Media { socket, action, .. } => self.media(socket, action),
            Wire::RelayAnswer { sdp, .. } => match self.uplink {
                Some(conn) => self.command(Command::Answer { conn, sdp }),
                None => debug!("a relay answer with no uplink"),
            },
            Wire::StageGone {
                publisher, source, ..
            } => {
                if let Some(track) = self.stage.remove(&(publisher.clone(), source)) {
                    self.stage_owner.remove(&track);
                    self.quality.unpublished(&publisher, source, track);
                    self.command(Command::Unpublish(track));
                }
            }
            _ => {}
        }
    }

    /// The connection the stage arrives on (made on first need).
    fn uplink(&mut self) -> Option<ConnId> {
        if let Some(conn) = self.uplink {
            return Some(conn);
        }
        let conn = self.sfu.as_ref()?.0.add_connection();
        self.state.registry.add_probe(conn, self.sfu_tx.clone());
        self.uplink = Some(conn);
        Some(conn)
    }

    /// The stage track of `publisher`'s `source` here, asked of the meeting's
    /// node on first need.
    fn stage_track(&mut self, publisher: &ParticipantId, source: Source) -> Option<TrackId> {
        if let Some(&t) = self.stage.get(&(publisher.clone(), source)) {
            return Some(t);
        }
        let uplink = self.uplink()?;
        let track = meeting::new_track_id();
        self.stage.insert((publisher.clone(), source), track);
        self.stage_owner.insert(track, (publisher.clone(), source));
        self.command(meeting::publish_command(uplink, track, source));
        Some(track)
    }

    /// A media action the room took for the attendee on `socket`.
    fn media(&mut self, socket: u64, action: EdgeMedia) {
        let Some(who) = self.sockets.get(&socket).and_then(|s| s.who.clone()) else {
            return;
        };
        let conn = self.sockets.get(&socket).and_then(|s| s.conn);
        match action {
            EdgeMedia::Connect {
                redundant_audio,
                host_worker,
            } => {
                if let Some(old) = conn {
                    self.drop_conn(old);
                }
                let conn = self
                    .lease(host_worker)
                    .add_connection_with(ConnOptions { redundant_audio });
                self.state.registry.add_probe(conn, self.sfu_tx.clone());
                self.conn_socket.insert(conn, socket);
                if let Some(s) = self.sockets.get_mut(&socket) {
                    s.conn = Some(conn);
                }
            }
            EdgeMedia::Disconnect => {
                if let Some(old) = conn {
                    self.drop_conn(old);
                    if let Some(s) = self.sockets.get_mut(&socket) {
                        s.conn = None;
                    }
                }
            }
            EdgeMedia::Subscribe { publisher, source } => {
                let Some(conn) = conn else { return };
                let Some(track) = self.stage_track(&publisher, source) else {
                    return;
                };
                self.command(Command::Subscribe { conn, track });
                if let Some(c) = self
                    .quality
                    .subscribed(&who, conn, &publisher, source, track)
                {
                    self.command(c);
                }
            }
            EdgeMedia::Answer { sdp } => match conn {
                Some(conn) => self.command(Command::Answer { conn, sdp }),
                None => self.send_message(
                    socket,
                    &ServerMessage::error(ErrorCode::WrongState, "no media connection"),
                ),
            },
            EdgeMedia::RestartIce => {
                if let Some(conn) = conn {
                    self.command(Command::RestartIce(conn));
                }
            }
            EdgeMedia::VideoSizes { sizes } => {
                for c in self.quality.video_sizes(&who, conn, sizes, &self.stage) {
                    self.command(c);
                }
            }
        }
    }

    fn sfu_event(&mut self, event: SfuEvent) {
        match event {
            SfuEvent::Offer { conn, sdp, slots } if Some(conn) == self.uplink => {
                let tracks = slots
                    .iter()
                    .filter_map(|s| {
                        let (publisher, source) = self.stage_owner.get(&s.track?)?;
                        Some(StageTrack {
                            mid: s.mid.clone(),
                            publisher: publisher.clone(),
                            source: *source,
                        })
                    })
                    .collect();
                self.to_host(Wire::RelayOffer {
                    meeting: self.meeting.clone(),
                    from: self.me.clone(),
                    incarnation: self.incarnation,
                    sdp,
                    tracks,
                });
            }
            SfuEvent::Offer { conn, sdp, slots } => {
                let Some(&socket) = self.conn_socket.get(&conn) else {
                    return;
                };
                let owners = &self.stage_owner;
                let message = meeting::offer_message(sdp, slots, |t| owners.get(&t));
                self.send_message(socket, &message);
            }
            SfuEvent::Failed { conn, error } if Some(conn) == self.uplink => {
                warn!("the uplink from the meeting's node: {error}");
            }
            SfuEvent::Failed { conn, error } => {
                if let Some(&socket) = self.conn_socket.get(&conn) {
                    info!("media request failed: {error}");
                    let message = meeting::failure_message(&error);
                    self.send_message(socket, &message);
                }
            }
            SfuEvent::Closed(conn) if Some(conn) == self.uplink => {
                // Offered again on a new connection, every stage track on it.
                warn!("the uplink from the meeting's node closed; asking again");
                self.state.registry.remove_probe(conn);
                self.uplink = None;
                let Some(uplink) = self.uplink() else { return };
                for (&track, (_, source)) in &self.stage_owner {
                    self.command(meeting::publish_command(uplink, track, *source));
                }
            }
            SfuEvent::Closed(conn) => {
                self.state.registry.remove_probe(conn);
                if let Some(socket) = self.conn_socket.remove(&conn) {
                    // Media died under a live socket: the socket closes too,
                    // and the client resumes with a fresh connection.
                    if let Some(s) = self.sockets.get_mut(&socket) {
                        s.conn = None;
                        s.out = None;
                    }
                }
            }
            SfuEvent::VoiceSlot { conn, mid, track } => {
                let Some(&socket) = self.conn_socket.get(&conn) else {
                    return;
                };
                let participant_id = track
                    .and_then(|t| self.stage_owner.get(&t))
                    .map(|(p, _)| p.0.clone());
                self.send_message(
                    socket,
                    &ServerMessage::VoiceSlot {
                        mid,
                        participant_id,
                    },
                );
            }
            SfuEvent::RelayLink { .. }
            | SfuEvent::RelayAnswer { .. }
            | SfuEvent::Connected(_)
            | SfuEvent::Disconnected(_)
            | SfuEvent::Quality { .. }
            | SfuEvent::Speaking { .. }
            | SfuEvent::VideoLayers { .. }
            | SfuEvent::VideoStalled { .. } => {}
        }
    }
}
