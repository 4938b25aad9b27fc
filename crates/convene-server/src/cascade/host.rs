//! The meeting's node's side of cascading: what an edge sends for its
//! attendees becomes the meeting task's input, as if their sockets were
//! here; what the room sends them goes back to the edge in order.

use std::collections::HashMap;
use std::sync::Arc;

use convene_meeting::protocol::ErrorCode;
use convene_meeting::{ParticipantId, RoomError};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::wire::Wire;
use crate::meeting::{deliver_running, MeetingInput, Outbound, OutboundTx, OUTBOUND_QUEUE};
use crate::AppState;

/// An attendee's socket on an edge.
struct Remote {
    /// This node's number for it (the meeting tells sockets apart by it).
    socket: u64,
    meeting: String,
    /// Who joined on it, once someone did.
    who: Option<ParticipantId>,
    /// Given to the meeting with each join; kept here until a join
    /// succeeds (a refused join may be tried again on the same socket),
    /// then the meeting holds the only sender: when it lets go, the edge
    /// is told to close the socket.
    out: Option<OutboundTx>,
    /// Each join's answer, to the socket's forwarding task: it says the
    /// answer before anything the meeting sends after it.
    joins: mpsc::UnboundedSender<oneshot::Receiver<Result<ParticipantId, RoomError>>>,
}

/// From a socket's forwarding task. `socket` is the edge's number for the
/// socket, `local` this node's.
pub enum HostEvent {
    Joined {
        from: String,
        socket: u64,
        local: u64,
        meeting: String,
        who: ParticipantId,
    },
    /// The socket's forwarding task ended.
    Gone {
        from: String,
        socket: u64,
        local: u64,
    },
}

pub struct Host {
    state: Arc<AppState>,
    /// By (edge, the edge's number for the socket).
    sockets: HashMap<(String, u64), Remote>,
    events_tx: mpsc::UnboundedSender<HostEvent>,
    events_rx: mpsc::UnboundedReceiver<HostEvent>,
}

impl Host {
    pub fn new(state: Arc<AppState>) -> Host {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Host {
            state,
            sockets: HashMap::new(),
            events_tx,
            events_rx,
        }
    }

    /// Whether `wire` is for a meeting's node (the rest is for edges).
    pub fn takes(&self, wire: &Wire) -> bool {
        matches!(
            wire,
            Wire::Join { .. }
                | Wire::Message { .. }
                | Wire::Refused { .. }
                | Wire::SocketClosed { .. }
                | Wire::RelayOffer { .. }
        )
    }

    pub async fn next_event(&mut self) -> Option<HostEvent> {
        self.events_rx.recv().await
    }

    pub async fn handle(&mut self, wire: Wire) {
        match wire {
            Wire::Join {
                meeting,
                from,
                socket,
                msg,
                entrant,
            } => {
                let key = (from.clone(), socket);
                let remote = self.sockets.entry(key).or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
                    let (joins, joins_rx) = mpsc::unbounded_channel();
                    let local = crate::ws::next_socket_id();
                    tokio::spawn(forward(
                        self.state.clone(),
                        (from.clone(), meeting.clone(), socket, local),
                        rx,
                        joins_rx,
                        self.events_tx.clone(),
                    ));
                    Remote {
                        socket: local,
                        meeting: meeting.clone(),
                        who: None,
                        out: Some(tx),
                        joins,
                    }
                });
                let Some(out) = remote.out.clone() else {
                    debug!("cascade: a second join on a socket that joined");
                    return;
                };
                let (reply, result) = oneshot::channel();
                // Before the meeting can answer: the answer goes out first.
                let _ = remote.joins.send(result);
                let input = MeetingInput::Join {
                    msg,
                    entrant,
                    out,
                    socket: remote.socket,
                    reply,
                    edge: Some(from.clone()),
                };
                if !deliver_running(&self.state, &meeting, input) {
                    // Not (or no longer) hosted here: the join is refused
                    // (its answer dropped), and the edge's socket closes.
                    self.sockets.remove(&(from, socket));
                }
            }
            Wire::Message {
                meeting,
                from,
                socket,
                who,
                msg,
            } => {
                if let Some(r) = self.sockets.get(&(from, socket)) {
                    let input = MeetingInput::Message {
                        who,
                        socket: r.socket,
                        msg,
                    };
                    deliver_running(&self.state, &meeting, input);
                }
            }
            Wire::Refused {
                meeting,
                from,
                socket,
                who,
                code,
                message,
            } => {
                if let Some(r) = self.sockets.get(&(from, socket)) {
                    let input = MeetingInput::Refused {
                        who,
                        socket: r.socket,
                        code,
                        message,
                    };
                    deliver_running(&self.state, &meeting, input);
                }
            }
            Wire::SocketClosed {
                meeting,
                from,
                socket,
                who,
            } => {
                if let Some(r) = self.sockets.remove(&(from, socket)) {
                    let input = MeetingInput::SocketClosed {
                        who,
                        socket: r.socket,
                    };
                    deliver_running(&self.state, &meeting, input);
                }
            }
            Wire::RelayOffer {
                meeting,
                from,
                incarnation,
                sdp,
                tracks,
            } => {
                let input = MeetingInput::RelayOffer {
                    edge: from,
                    incarnation,
                    sdp,
                    tracks,
                };
                deliver_running(&self.state, &meeting, input);
            }
            _ => {}
        }
    }

    pub fn event(&mut self, event: HostEvent) {
        match event {
            HostEvent::Joined {
                from,
                socket,
                local,
                meeting,
                who,
            } => match self.sockets.get_mut(&(from, socket)) {
                Some(r) if r.socket == local => {
                    // The meeting holds the only sender now.
                    r.out = None;
                    r.who = Some(who);
                }
                // The edge said the socket closed before its join was
                // answered: the one who joined on it is gone too.
                _ => {
                    let input = MeetingInput::SocketClosed { who, socket: local };
                    deliver_running(&self.state, &meeting, input);
                }
            },
            HostEvent::Gone {
                from,
                socket,
                local,
            } => {
                let key = (from, socket);
                if self.sockets.get(&key).is_some_and(|r| r.socket == local) {
                    self.sockets.remove(&key);
                }
            }
        }
    }

    /// Sockets on edges that are gone (not among the `alive` nodes Redis
    /// lists): their people lost their connection, as when a socket here
    /// drops.
    pub fn forget_lost_edges(&mut self, alive: &std::collections::HashSet<String>) {
        let lost: Vec<(String, u64)> = self
            .sockets
            .keys()
            .filter(|(edge, _)| !alive.contains(edge))
            .cloned()
            .collect();
        for key in lost {
            let Some(r) = self.sockets.remove(&key) else {
                continue;
            };
            let input = MeetingInput::SocketClosed {
                who: r.who.unwrap_or_else(|| ParticipantId(String::new())),
                socket: r.socket,
            };
            deliver_running(&self.state, &r.meeting, input);
        }
    }

    /// Whether any socket on an edge is known here (else no need to look).
    pub fn has_remote_sockets(&self) -> bool {
        !self.sockets.is_empty()
    }
}

/// What the meeting queues for an edge's socket goes to the edge, in order,
/// each join's answer before what follows it; when the meeting lets go of
/// the socket, the edge is told to close it.
async fn forward(
    state: Arc<AppState>,
    (edge, meeting, socket, local): (String, String, u64, u64),
    mut rx: mpsc::Receiver<Outbound>,
    mut joins: mpsc::UnboundedReceiver<oneshot::Receiver<Result<ParticipantId, RoomError>>>,
    events: mpsc::UnboundedSender<HostEvent>,
) {
    let Some(cascade) = &state.cascade else {
        return;
    };
    let mut pending: Option<oneshot::Receiver<Result<ParticipantId, RoomError>>> = None;
    let mut joins_open = true;
    loop {
        if let Some(answer) = pending.take() {
            let result = match answer.await {
                Ok(result) => result,
                // The meeting stopped (or is not here) before it answered.
                Err(_) => Err(RoomError {
                    code: ErrorCode::WrongState,
                    message: "the meeting is not running here".into(),
                }),
            };
            if let Ok(who) = &result {
                let _ = events.send(HostEvent::Joined {
                    from: edge.clone(),
                    socket,
                    local,
                    meeting: meeting.clone(),
                    who: who.clone(),
                });
            }
            cascade.send(
                &edge,
                Wire::Joined {
                    meeting: meeting.clone(),
                    socket,
                    result,
                },
            );
            continue;
        }
        tokio::select! {
            biased;
            join = joins.recv(), if joins_open => match join {
                Some(j) => pending = Some(j),
                None => joins_open = false,
            },
            out = rx.recv() => {
                let Some(out) = out else { break };
                let wire = match out {
                    Outbound::Text(text) => Wire::Text {
                        meeting: meeting.clone(),
                        socket,
                        text,
                    },
                    Outbound::Media(action) => Wire::Media {
                        meeting: meeting.clone(),
                        socket,
                        action,
                    },
                };
                cascade.send(&edge, wire);
            }
        }
    }
    cascade.send(&edge, Wire::Close { meeting, socket });
    let _ = events.send(HostEvent::Gone {
        from: edge,
        socket,
        local,
    });
}
