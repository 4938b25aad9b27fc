//! Cascading webinars across nodes (docs/cluster-design.md, step 5): once
//! a webinar's audience on its node reaches `--cascade-after`, newcomers are
//! sent to another node, its edge. The room stays on the meeting's node
//! (host.rs); the edge holds the attendees' sockets and media connections
//! and receives the stage's tracks once, over one relay from the meeting's
//! SFU (edge.rs). The nodes speak through their Redis inboxes (wire.rs).

mod coalesce;
mod edge;
mod host;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::AppState;
pub use edge::EdgeInput;
use wire::Wire;

/// Bytes of messages to sockets on other nodes waiting to be sent, at most
/// (shared by every socket on every edge; a socket's own queue is 512
/// messages).
const OUT_BYTES: usize = 64 << 20;

/// Messages sent to Redis in one pipeline, at most.
const SEND_BATCH: usize = 256;

/// Messages taken from the queue at once, at most, for a broadcast to many
/// sockets on an edge to cross as one (coalesce.rs).
const COALESCE_WINDOW: usize = 8192;

/// How long the edge named for a meeting's newcomers stays the one named.
const NAMED_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// How often the meeting's node looks for edges that are gone.
const EDGES_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// This node's part in cascading.
pub struct Cascade {
    /// Messages to other nodes, sent in order by one task. Past
    /// [`OUT_BYTES`] waiting (Redis slow or away), what a socket is sent is
    /// dropped; joins, answers and closes never are.
    out: mpsc::UnboundedSender<(String, Wire, usize)>,
    out_rx: Mutex<Option<mpsc::UnboundedReceiver<(String, Wire, usize)>>>,
    /// Bytes (about) waiting in `out`.
    out_bytes: Arc<std::sync::atomic::AtomicUsize>,
    /// Messages dropped for a full queue (logged now and then).
    dropped: std::sync::atomic::AtomicU64,
    /// A webinar's audience here at which newcomers go to an edge (0: never).
    pub after: usize,
    /// Each hosted meeting's audience on this node, as its task last counted.
    audience: Mutex<HashMap<String, usize>>,
    /// The edge each hosted meeting last sent a newcomer to, and when: the
    /// same for a while, so that a page's redirect and its sign-in's
    /// handoff (handoff.rs), moments apart, name the same edge.
    named: Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// The meetings this node is an edge for: their edge tasks.
    /// With the host each runs for and its task's number.
    edges: Mutex<HashMap<String, EdgeTask>>,
    /// For each (meeting's node, its worker), this node's workers that
    /// take a relay from it: one relay each (edge.rs).
    relayed_to: Mutex<HashMap<(String, String), Vec<std::net::SocketAddr>>>,
}

impl Cascade {
    pub fn new(after: usize) -> Cascade {
        let (out, out_rx) = mpsc::unbounded_channel();
        Cascade {
            out,
            out_rx: Mutex::new(Some(out_rx)),
            out_bytes: Arc::default(),
            dropped: std::sync::atomic::AtomicU64::new(0),
            after,
            audience: Mutex::default(),
            edges: Mutex::default(),
            named: Mutex::default(),
            relayed_to: Mutex::default(),
        }
    }

    /// Send `wire` to node `to` (after what was sent before it). Dropped
    /// when too much waits: the sockets concerned fall out of step, as
    /// when a socket drops, and a resume puts them back.
    pub fn send(&self, to: &str, wire: Wire) {
        use std::sync::atomic::Ordering::Relaxed;
        let (bytes, droppable) = match &wire {
            Wire::Text { text, .. } => (text.len() + 64, true),
            Wire::Media { .. } => (512, true),
            Wire::Message { .. } | Wire::Refused { .. } => (1024, true),
            Wire::RelayOffer { sdp, .. } | Wire::RelayAnswer { sdp, .. } => {
                (sdp.len() + 256, false)
            }
            _ => (256, false),
        };
        if droppable && self.out_bytes.load(Relaxed) + bytes > OUT_BYTES {
            let n = self.dropped.fetch_add(1, Relaxed);
            if n.is_power_of_two() {
                warn!(
                    dropped = n + 1,
                    "cascade: too much waits for Redis; dropping messages to sockets"
                );
            }
            return;
        }
        self.out_bytes.fetch_add(bytes, Relaxed);
        let _ = self.out.send((to.to_string(), wire, bytes));
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
}

impl Cascade {
    /// Edge task `incarnation` leaves the map, if the map holds it for
    /// `meeting` and (when `idle`) no socket holds a sender of it (the map
    /// holds one). Whether it may stop: when idle, only if it left.
    fn edge_leaves(&self, meeting: &str, incarnation: u64, idle: bool) -> bool {
        let mut edges = self.edges.lock().unwrap_or_else(|e| e.into_inner());
        let ours = edges
            .get(meeting)
            .is_some_and(|t| t.incarnation == incarnation && (!idle || t.tx.strong_count() <= 1));
        if ours {
            edges.remove(meeting);
        }
        ours || !idle
    }

    /// A worker of this node for a meeting whose stage comes from `from`
    /// (node, worker): one that takes no relay from there yet, if there is
    /// one; true with it when every worker does (its relay will not connect).
    pub fn lease_for(
        &self,
        pool: &convene_sfu::pool::SfuPool,
        from: &(String, String),
    ) -> (convene_sfu::pool::SfuLease, bool) {
        let mut relayed = self.relayed_to.lock().unwrap_or_else(|e| e.into_inner());
        let taken = relayed.entry(from.clone()).or_default();
        let lease = pool.lease_avoiding(taken);
        let clash = taken.contains(&lease.local_addr());
        taken.push(lease.local_addr());
        (lease, clash)
    }

    /// Worker `at` no longer takes a relay from `from`.
    pub fn release(&self, from: &(String, String), at: std::net::SocketAddr) {
        let mut relayed = self.relayed_to.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(taken) = relayed.get_mut(from) {
            if let Some(i) = taken.iter().position(|a| *a == at) {
                taken.swap_remove(i);
            }
            if taken.is_empty() {
                relayed.remove(from);
            }
        }
    }
}

/// An edge task, as the node's map knows it.
struct EdgeTask {
    host: String,
    incarnation: u64,
    tx: mpsc::UnboundedSender<EdgeInput>,
}

/// Where a socket for a meeting goes on this node.
pub enum Placement {
    /// Hosted here (or no cluster).
    Here,
    /// Hosted on node `host` (at `url`); this node is its edge.
    Edge { host: String, url: String },
    /// Elsewhere: the node's URL.
    There(String),
}

/// This node's edge task for `meeting` (hosted on node `host`), started if
/// it does not run, or runs for another host (the meeting moved). Each
/// socket holds the sender it was given: the task does not stop while one
/// does.
pub fn ensure_edge(
    state: &Arc<AppState>,
    meeting: &str,
    host: &str,
) -> Option<mpsc::UnboundedSender<EdgeInput>> {
    let cascade = state.cascade.as_ref()?;
    let mut edges = cascade.edges.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(task) = edges.get(meeting) {
        if task.host == host && !task.tx.is_closed() {
            return Some(task.tx.clone());
        }
        // The meeting moved: the old task closes its sockets and stops.
        let _ = task.tx.send(EdgeInput::HostChanged);
    }
    let incarnation = rand::random();
    let tx = edge::spawn(
        state.clone(),
        meeting.to_string(),
        host.to_string(),
        incarnation,
    );
    edges.insert(
        meeting.to_string(),
        EdgeTask {
            host: host.to_string(),
            incarnation,
            tx: tx.clone(),
        },
    );
    Some(tx)
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
    let out_bytes = cascade.out_bytes.clone();
    tokio::spawn(async move {
        // What waits is taken at once (up to COALESCE_WINDOW), a broadcast's
        // copies for one edge merged into one message, and sent in
        // pipelines (up to SEND_BATCH each), in order: one round trip to
        // Redis for many messages.
        let mut waiting = Vec::new();
        let counted = |n: usize| out_bytes.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        while let Some(first) = out_rx.recv().await {
            // A broadcast's copies are queued by one task per socket: let
            // those that are ready run first, so that they cross together.
            tokio::task::yield_now().await;
            waiting.clear();
            // What is taken stays counted against OUT_BYTES until it is
            // sent; at most an eighth of it is taken at once.
            let mut taken = 0;
            let mut next = Some(first);
            while let Some((to, wire, bytes)) = next {
                taken += bytes;
                waiting.push((to, wire));
                next = if waiting.len() < COALESCE_WINDOW && taken < OUT_BYTES / 8 {
                    out_rx.try_recv().ok()
                } else {
                    None
                };
            }
            let mut batch = Vec::with_capacity(SEND_BATCH);
            let mut merged = coalesce::coalesce(std::mem::take(&mut waiting))
                .into_iter()
                .peekable();
            while merged.peek().is_some() {
                batch.clear();
                for (to, wire) in merged.by_ref().take(SEND_BATCH) {
                    match serde_json::to_vec(&wire) {
                        Ok(b) => batch.push((to, b)),
                        Err(e) => warn!("cascade: a message not encoded: {e}"),
                    }
                }
                match cluster.send_many(&batch).await {
                    Ok(0) => {}
                    Ok(n) => debug!(messages = n, "cascade: no node listens"),
                    Err(e) => warn!(messages = batch.len(), "cascade: not sent: {e}"),
                }
            }
            counted(taken);
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
        let mut edges_check = tokio::time::interval(EDGES_CHECK);
        // The live nodes, read off this loop (Redis may be slow to answer).
        let (alive_tx, mut alive_rx) = mpsc::channel::<std::collections::HashSet<String>>(1);
        loop {
            tokio::select! {
                _ = edges_check.tick(), if host.has_remote_sockets() => {
                    let (cluster, tx) = (link.cluster().clone(), alive_tx.clone());
                    tokio::spawn(async move {
                        if let Ok(nodes) = cluster.nodes().await {
                            let _ = tx.try_send(nodes.into_iter().map(|n| n.id).collect());
                        }
                    });
                }
                Some(alive) = alive_rx.recv() => host.forget_lost_edges(&alive),
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
    let cascade = state.cascade.as_ref()?;
    if !cascade.wants_edge(meeting) {
        return None;
    }
    {
        let named = cascade.named.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((url, at)) = named.get(meeting) {
            if at.elapsed() < NAMED_FOR {
                return Some(url.clone());
            }
        }
    }
    match link.cluster().name_edge(meeting).await {
        Ok(Some(node)) if link.allows(&node.url) => {
            let mut named = cascade.named.lock().unwrap_or_else(|e| e.into_inner());
            named.retain(|_, (_, at)| at.elapsed() < NAMED_FOR);
            named.insert(
                meeting.to_string(),
                (node.url.clone(), std::time::Instant::now()),
            );
            Some(node.url)
        }
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

/// Whether a page's query says it is for the stage (`stage`): a host's page
/// that an edge sent to the meeting's node, not to be sent to an edge again.
pub fn for_stage(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|p| p == "stage" || p.starts_with("stage="))
    })
}

fn to_edge_task(state: &AppState, wire: Wire) {
    let Some(cascade) = &state.cascade else {
        return;
    };
    let edges = cascade.edges.lock().unwrap_or_else(|e| e.into_inner());
    match edges.get(wire.meeting()) {
        Some(task) => {
            let _ = task.tx.send(EdgeInput::Host(wire));
        }
        None => debug!("cascade: a message for a meeting this node is no edge of"),
    }
}
