//! What the nodes of a cascaded meeting say to each other (JSON, over each
//! node's Redis inbox). An edge holds a webinar attendee's socket and media
//! connection; the meeting's node holds the room. Room messages go to the
//! meeting's node as the socket gave them, and what the room says comes
//! back as the text the socket sends; media actions the room takes for an
//! attendee on an edge are carried out there.

use convene_meeting::protocol::{ClientMessage, ErrorCode, Source, VideoSize};
use convene_meeting::{Entrant, ParticipantId, RoomError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Wire {
    // From an edge (`from`) to the meeting's node. `socket` is the edge's
    // number for the socket.
    Join {
        meeting: String,
        from: String,
        socket: u64,
        msg: ClientMessage,
        entrant: Entrant,
    },
    Message {
        meeting: String,
        from: String,
        socket: u64,
        who: ParticipantId,
        msg: ClientMessage,
    },
    Refused {
        meeting: String,
        from: String,
        socket: u64,
        who: ParticipantId,
        code: ErrorCode,
        message: String,
    },
    SocketClosed {
        meeting: String,
        from: String,
        socket: u64,
        who: ParticipantId,
    },
    /// The edge's offer to receive the stage's tracks (its uplink).
    RelayOffer {
        meeting: String,
        from: String,
        /// The edge task's number: a new one (the task restarted) gets a
        /// new relay.
        incarnation: u64,
        sdp: String,
        tracks: Vec<StageTrack>,
    },

    // From the meeting's node to an edge.
    Joined {
        meeting: String,
        socket: u64,
        result: Result<ParticipantId, RoomError>,
    },
    /// A message for the socket, as it is to be sent (a broadcast's copies
    /// share one text).
    Text {
        meeting: String,
        socket: u64,
        text: Arc<str>,
    },
    /// The same message for several sockets (a broadcast crosses once per
    /// edge, not once per attendee: coalesce.rs).
    Texts {
        meeting: String,
        sockets: Vec<u64>,
        text: Arc<str>,
    },
    Media {
        meeting: String,
        socket: u64,
        action: EdgeMedia,
    },
    /// The room is done with the socket (a leave, a removal, the end).
    Close {
        meeting: String,
        socket: u64,
    },
    RelayAnswer {
        meeting: String,
        sdp: String,
    },
    /// A track the edge receives is no longer published.
    StageGone {
        meeting: String,
        publisher: ParticipantId,
        source: Source,
    },
}

impl Wire {
    pub fn meeting(&self) -> &str {
        match self {
            Wire::Join { meeting, .. }
            | Wire::Message { meeting, .. }
            | Wire::Refused { meeting, .. }
            | Wire::SocketClosed { meeting, .. }
            | Wire::RelayOffer { meeting, .. }
            | Wire::Joined { meeting, .. }
            | Wire::Text { meeting, .. }
            | Wire::Texts { meeting, .. }
            | Wire::Media { meeting, .. }
            | Wire::Close { meeting, .. }
            | Wire::RelayAnswer { meeting, .. }
            | Wire::StageGone { meeting, .. } => meeting,
        }
    }
}

/// One m-line of an edge's uplink offer: which stage track it is to carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageTrack {
    pub mid: String,
    pub publisher: ParticipantId,
    pub source: Source,
}

/// A media action the room took for an attendee whose socket is on an edge
/// (`MediaAction`, without the participant: the socket says who).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case")]
pub enum EdgeMedia {
    Connect {
        redundant_audio: bool,
        /// The media worker of the meeting's node the stage comes from
        /// (its socket's address): the edge serves the meeting on a worker
        /// that takes a relay from no other meeting there.
        host_worker: String,
    },
    Disconnect,
    Subscribe {
        publisher: ParticipantId,
        source: Source,
    },
    Answer {
        sdp: String,
    },
    RestartIce,
    VideoSizes {
        sizes: Vec<VideoSize>,
    },
}
