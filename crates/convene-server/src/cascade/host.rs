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
    /// Given to the meeting with each join; kept here until a join
    /// succeeds (a refused join may be tried again on the same socket),
    /// then the meeting holds the only sender: when it lets go, the edge
    /// is told to close the socket.
    out: Option<OutboundTx>,
}

pub enum HostEvent {
    Joined {
        meeting: String,
        from: String,
        socket: u64,
        result: Option<Result<ParticipantId, RoomError>>,
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

    fn send(&self, to: &str, wire: Wire) {
        if let Some(c) = &self.state.cascade {
            c.send(to, wire);
        }
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
                    forward(
                        self.state.clone(),
                        from.clone(),
                        meeting.clone(),
                        socket,
                        rx,
                    );
                    Remote {
                        socket: crate::ws::next_socket_id(),
                        out: Some(tx),
                    }
                });
                let Some(out) = remote.out.clone() else {
                    debug!("cascade: a second join on a socket that joined");
                    return;
                };
                let (reply, result) = oneshot::channel();
                let input = MeetingInput::Join {
                    msg,
                    entrant,
                    out,
                    socket: remote.socket,
                    reply,
                    edge: Some(from.clone()),
                };
                if !deliver_running(&self.state, &meeting, input) {
                    // Not (or no longer) hosted here: the edge's socket closes,
                    // and the client finds the meeting again.
                    self.sockets.remove(&(from.clone(), socket));
                    self.send(&from, Wire::Close { meeting, socket });
                    return;
                }
                let events = self.events_tx.clone();
                tokio::spawn(async move {
                    let result = result.await.ok();
                    let _ = events.send(HostEvent::Joined {
                        meeting,
                        from,
                        socket,
                        result,
                    });
                });
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
                sdp,
                tracks,
            } => {
                let input = MeetingInput::RelayOffer {
                    edge: from,
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
                meeting,
                from,
                socket,
                result,
            } => match result {
                Some(result) => {
                    let joined = result.is_ok();
                    self.send(
                        &from,
                        Wire::Joined {
                            meeting,
                            socket,
                            result,
                        },
                    );
                    if joined {
                        // The meeting holds the only sender now.
                        if let Some(r) = self.sockets.get_mut(&(from, socket)) {
                            r.out = None;
                        }
                    }
                }
                // The meeting stopped before it answered.
                None => {
                    self.sockets.remove(&(from.clone(), socket));
                    let error = RoomError {
                        code: ErrorCode::WrongState,
                        message: "the meeting is not running here".into(),
                    };
                    self.send(
                        &from,
                        Wire::Joined {
                            meeting: meeting.clone(),
                            socket,
                            result: Err(error),
                        },
                    );
                    self.send(&from, Wire::Close { meeting, socket });
                }
            },
        }
    }
}

/// What the meeting queues for an edge's socket goes to the edge, in order;
/// when the meeting lets go of the socket, the edge is told to close it.
fn forward(
    state: Arc<AppState>,
    edge: String,
    meeting: String,
    socket: u64,
    mut rx: mpsc::Receiver<Outbound>,
) {
    tokio::spawn(async move {
        let Some(cascade) = &state.cascade else {
            return;
        };
        while let Some(out) = rx.recv().await {
            let wire = match out {
                Outbound::Text(text) => Wire::Text {
                    meeting: meeting.clone(),
                    socket,
                    text: text.to_string(),
                },
                Outbound::Media(action) => Wire::Media {
                    meeting: meeting.clone(),
                    socket,
                    action,
                },
            };
            cascade.send(&edge, wire);
        }
        cascade.send(&edge, Wire::Close { meeting, socket });
    });
}
