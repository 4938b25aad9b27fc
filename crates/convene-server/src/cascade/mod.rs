//! Cascading webinars across nodes (docs/cluster-design.md, step 5): once
//! a webinar's audience on its node reaches `--cascade-after`, newcomers are
//! sent to another node, its edge. The room stays on the meeting's node
//! (host.rs); the edge holds the attendees' sockets and media connections
//! and receives the stage's tracks once, over one relay from the meeting's
//! SFU (edge.rs). The nodes speak through their Redis inboxes (wire.rs).

mod edge;
mod host;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::meeting::MeetingInput;
use crate::AppState;
pub use edge::EdgeInput;
use wire::Wire;

/// This node's part in cascading.
pub struct Cascade {
    /// Messages to other nodes, sent in order by one task.
    out: mpsc::UnboundedSender<(String, Wire)>,
    out_rx: Mutex<Option<mpsc::UnboundedReceiver<(String, Wire)>>>,
    /// A webinar's audience here at which newcomers go to an edge (0: never).
    pub after: usize,
    /// Each hosted meeting's audience on this node, as its task last counted.
    audience: Mutex<HashMap<String, usize>>,
    /// The meetings this node is an edge for: their edge tasks.
    edges: Mutex<HashMap<String, mpsc::UnboundedSender<EdgeInput>>>,
}

impl Cascade {
    pub fn new(after: usize) -> Cascade {
        let (out, out_rx) = mpsc::unbounded_channel();
        Cascade {
            out,
            out_rx: Mutex::new(Some(out_rx)),
            after,
            audience: Mutex::default(),
            edges: Mutex::default(),
        }
    }

    /// Send `wire` to node `to` (after what was sent before it).
    pub fn send(&self, to: &str, wire: Wire) {
        let _ = self.out.send((to.to_string(), wire));
    }

    /// A hosted meeting's audience on this node (`None`: it stopped here).
    pub fn set_audience(&self, meeting: &str, count: Option<usize>) {
        let mut audience = self.audience.lock().unwrap_or_else(|e| e.into_inner());
        match count {
            Some(n) => audience.insert(meeting.to_string(), n),
            None => audience.remove(meeting),
        };
    }

    /// Whether a newcomer to `meeting` (hosted here) goes to an edge.
    pub fn wants_edge(&self, meeting: &str) -> bool {
        self.after > 0
            && self
                .audience
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(meeting)
                .is_some_and(|&n| n >= self.after)
    }

    /// Hand a socket's input to `meeting`'s edge task if this node is its
    /// edge; otherwise give it back.
    pub fn to_edge(&self, meeting: &str, input: MeetingInput) -> Option<MeetingInput> {
        let edges = self.edges.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = edges.get(meeting) else {
            return Some(input);
        };
        match tx.send(EdgeInput::Socket(input)) {
            Ok(()) => None,
            Err(mpsc::error::SendError(EdgeInput::Socket(back))) => Some(back),
            Err(_) => None,
        }
    }
}

/// Where a socket for a meeting goes on this node.
pub enum Placement {
    /// Hosted here (or no cluster).
    Here,
    /// Hosted on node `host`; this node is its edge.
    Edge { host: String },
    /// Elsewhere: the node's URL.
    There(String),
}

/// Start this node's edge task for `meeting` (hosted on node `host`), unless
/// it runs.
pub fn ensure_edge(state: &Arc<AppState>, meeting: &str, host: &str) {
    let Some(cascade) = &state.cascade else {
        return;
    };
    let mut edges = cascade.edges.lock().unwrap_or_else(|e| e.into_inner());
    if edges.get(meeting).is_some_and(|tx| !tx.is_closed()) {
        return;
    }
    let tx = edge::spawn(state.clone(), meeting.to_string(), host.to_string());
    edges.insert(meeting.to_string(), tx);
}

/// Run the sending task and the inbox's reader until the server stops.
pub fn spawn(state: Arc<AppState>) {
    let (Some(cascade), Some(link)) = (&state.cascade, &state.cluster) else {
        return;
    };
    let Some(mut out_rx) = cascade
        .out_rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        return;
    };
    let cluster = link.cluster().clone();
    tokio::spawn(async move {
        while let Some((to, wire)) = out_rx.recv().await {
            let bytes = match serde_json::to_vec(&wire) {
                Ok(b) => b,
                Err(e) => {
                    warn!("cascade: a message not encoded: {e}");
                    continue;
                }
            };
            match cluster.send_to(&to, &bytes).await {
                Ok(true) => {}
                Ok(false) => debug!(node = %to, "cascade: no node listens"),
                Err(e) => warn!(node = %to, "cascade: not sent: {e}"),
            }
        }
    });
    let st = state.clone();
    tokio::spawn(async move {
        let Some(link) = &st.cluster else { return };
        let mut inbox = loop {
            match link.cluster().inbox().await {
                Ok(i) => break i,
                Err(e) => {
                    warn!("cascade: this node's inbox: {e}; trying again");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        };
        let mut host = host::Host::new(st.clone());
        loop {
            tokio::select! {
                bytes = inbox.recv() => {
                    let Some(bytes) = bytes else { break };
                    let wire: Wire = match serde_json::from_slice(&bytes) {
                        Ok(w) => w,
                        Err(e) => {
                            warn!("cascade: a message not understood: {e}");
                            continue;
                        }
                    };
                    if host.takes(&wire) {
                        host.handle(wire).await;
                    } else {
                        to_edge_task(&st, wire);
                    }
                }
                Some(event) = host.next_event() => host.event(event),
            }
        }
    });
}

/// Where a newcomer to `meeting`, which this node hosts, goes instead: an
/// edge's URL once the audience here is large enough.
pub async fn newcomers_edge(
    state: &AppState,
    link: &crate::cluster::Link,
    meeting: &str,
) -> Option<String> {
    if !state.cascade.as_ref()?.wants_edge(meeting) {
        return None;
    }
    match link.cluster().name_edge(meeting).await {
        Ok(Some(node)) if link.allows(&node.url) => Some(node.url),
        Ok(Some(node)) => {
            tracing::error!(node = %node.url, "cascade: Redis names a node outside --node-urls; no one is sent there");
            None
        }
        Ok(None) => None,
        Err(e) => {
            warn!("cascade: no edge named: {e}");
            None
        }
    }
}

/// The node that hosts `meeting`, when this node is one of its edges.
pub async fn hosted_by(
    state: &AppState,
    link: &crate::cluster::Link,
    meeting: &str,
) -> Option<String> {
    state.cascade.as_ref()?;
    if !link.cluster().is_edge(meeting).await.ok()? {
        return None;
    }
    let owner = link.cluster().owner(meeting).await.ok()??;
    (owner != link.id()).then_some(owner)
}

fn to_edge_task(state: &AppState, wire: Wire) {
    let Some(cascade) = &state.cascade else {
        return;
    };
    let edges = cascade.edges.lock().unwrap_or_else(|e| e.into_inner());
    match edges.get(wire.meeting()) {
        Some(tx) => {
            let _ = tx.send(EdgeInput::Host(wire));
        }
        None => debug!("cascade: a message for a meeting this node is no edge of"),
    }
}
