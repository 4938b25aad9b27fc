//! This node's part in a cluster (`--cluster`): it says every second that it
//! is alive, how loaded it is and which meetings it hosts, and sends a join
//! for a meeting another node hosts to that node (docs/cluster-design.md).
//!
//! Redirect, not proxy: a browser that opens a meeting's page on the wrong
//! node is sent to the right one (307), and stays there, socket and all;
//! a client that asks for the meeting (`GET /api/meetings/{id}`) is told
//! the node (`node`). Signalling never crosses two nodes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use convene_cluster::{Cluster, Load, Route};

use crate::AppState;

/// A meeting placed here is kept while its first people arrive (page, then
/// socket) even before its task runs.
const ARRIVING: Duration = Duration::from_secs(30);

pub struct Link {
    cluster: Cluster,
    /// Meetings routed here whose task may not be running yet, and when.
    arriving: Mutex<HashMap<String, Instant>>,
    /// When this node last told Redis it is alive.
    last_beat: Mutex<Instant>,
    /// Where it may send people (`--node-urls`).
    allowed: crate::node_urls::NodeUrls,
    /// The pages' Content-Security-Policy: they may reach the nodes that
    /// may carry a sign-in (to find one when theirs is lost).
    pub csp: axum::http::HeaderValue,
}

impl Link {
    /// Connect to Redis as node `id` (default: the host and port of
    /// `public_url`); a clear error when it does not answer.
    pub async fn connect(
        redis: &str,
        redis_ca: Option<Vec<u8>>,
        id: Option<&str>,
        public_url: &str,
        allowed: crate::node_urls::NodeUrls,
        message_secret: &[u8],
    ) -> Result<Link, String> {
        let id = match id {
            Some(id) => id.to_string(),
            None => public_url
                .split_once("://")
                .map_or(public_url, |(_, rest)| rest)
                .trim_end_matches('/')
                .to_string(),
        };
        let cluster = Cluster::connect_checked(redis, redis_ca, &id, public_url)
            .await
            .and_then(|c| c.with_message_key(message_secret))
            .map_err(|e| match e.to_string() {
                said if said.contains("invalid peer certificate") => format!(
                    "cluster: {said} (Redis's certificate must come from the authority in --redis-ca FILE, or one the system trusts, and name the host connected to)"
                ),
                said => format!("cluster: {said}"),
            })?;
        let csp = axum::http::HeaderValue::from_str(&crate::http::csp(&allowed.csp_sources()))
            .map_err(|e| format!("cluster: the node URLs make no header: {e}"))?;
        Ok(Link {
            cluster,
            arriving: Mutex::default(),
            last_beat: Mutex::new(Instant::now()),
            allowed,
            csp,
        })
    }

    /// Whether the other nodes know this one is alive: its last beat reached
    /// Redis within [`convene_cluster::LIVENESS`]. (If not, its meetings'
    /// holds run out and new joins are told to try again.)
    pub fn reaches_redis(&self) -> Result<(), String> {
        let since = self
            .last_beat
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed();
        if since < convene_cluster::LIVENESS {
            Ok(())
        } else {
            Err(format!(
                "the cluster's Redis has not answered for {} s",
                since.as_secs()
            ))
        }
    }

    pub fn id(&self) -> &str {
        self.cluster.id()
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Whether `url` is among the nodes people may be sent to.
    pub fn allows(&self, url: &str) -> bool {
        self.allowed.allows(url)
    }

    /// The live nodes a page may go to when its own is lost (those that
    /// may carry a sign-in: the page takes its resume token there).
    pub async fn fallbacks(&self) -> Vec<String> {
        match self.cluster.nodes().await {
            Ok(nodes) => nodes
                .into_iter()
                .filter(|n| !n.draining && self.allowed.carries_signin(&n.url))
                .map(|n| n.url.trim_end_matches('/').to_string())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Whether a sign-in may follow a join to the node at `url`.
    pub fn carries_signin(&self, url: &str) -> bool {
        self.allowed.carries_signin(url)
    }

    /// Where a join for `meeting` goes. An error (Redis unreachable, or no
    /// node takes new meetings) is the caller's "try again".
    pub async fn route(&self, meeting: &str) -> Result<Route, String> {
        let route = self
            .cluster
            .route(meeting)
            .await
            .map_err(|e| e.to_string())?;
        if let Route::There(url) = &route {
            if !self.allowed.allows(url) {
                tracing::error!(
                    node = %url,
                    "cluster: Redis names a node outside --node-urls; joins are not sent there (a forged record, or --node-urls is missing a node)"
                );
                return Err(format!("the node {url} is not among --node-urls"));
            }
        }
        if route == Route::Here {
            self.arriving
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(meeting.to_string(), Instant::now());
        }
        Ok(route)
    }
}

/// Another node hosts `meeting` now: this node's hold ran out (it did not
/// reach Redis for [`convene_cluster::LIVENESS`]) and someone's join started
/// it there. Two copies of one meeting must not go on: the people here are
/// told it restarts (their clients come back through this node, which sends
/// them to the other), and what this node kept for it while the database
/// was away is not written over the other node's.
fn moved_away(state: &AppState, link: &Link, meeting: &str) {
    tracing::error!(
        meeting = %crate::logging::meeting_tag(meeting),
        "cluster: another node hosts this meeting now (this node did not reach Redis in time); its people here are sent there"
    );
    link.arriving
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(meeting);
    state.writer.moved_away(meeting);
    if let Some(tx) = state.registry.lock().meetings.get(meeting) {
        let (done, _) = tokio::sync::oneshot::channel();
        let _ = tx.send(crate::meeting::MeetingInput::Drain {
            done,
            hold_places: false,
        });
    }
}

/// Beat every second until the server stops: this node's load, and the
/// meetings it hosts (running, or placed here and arriving); meetings it
/// stopped hosting are given back.
pub fn spawn_heartbeat(state: Arc<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let Some(link) = state.cluster.as_ref() else {
            return;
        };
        let mut held: HashSet<String> = HashSet::new();
        let mut busy_before: Vec<u64> = Vec::new();
        let mut at_before = Instant::now();
        let mut tick = tokio::time::interval(convene_cluster::HEARTBEAT);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let now = Instant::now();
            let hosting: HashSet<String> = {
                let mut arriving = link.arriving.lock().unwrap_or_else(|e| e.into_inner());
                arriving.retain(|_, at| now.duration_since(*at) < ARRIVING);
                let running = state
                    .registry
                    .lock()
                    .meetings
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>();
                running
                    .into_iter()
                    .chain(arriving.keys().cloned())
                    .collect()
            };
            let ended: Vec<String> = held.difference(&hosting).cloned().collect();
            let busy_now: Vec<u64> = state.sfu.handles().map(|h| h.stats().busy_ns).collect();
            let elapsed = now.duration_since(at_before).as_nanos().max(1) as f64;
            let busy = busy_now
                .iter()
                .zip(busy_before.iter().chain(std::iter::repeat(&0)))
                .map(|(n, b)| n.saturating_sub(*b) as f64 / elapsed)
                .fold(f64::INFINITY, f64::min);
            let load = Load {
                busy: if busy.is_finite() { busy.min(1.0) } else { 0.0 },
                connections: state
                    .connections
                    .open
                    .load(std::sync::atomic::Ordering::Relaxed),
                meetings: state.registry.lock().meetings.len() as u64,
            };
            let draining = state.draining.load(std::sync::atomic::Ordering::Relaxed);
            let hosting_list: Vec<String> = hosting.iter().cloned().collect();
            match link
                .cluster
                .heartbeat(load, draining, &hosting_list, &ended)
                .await
            {
                Ok(lost) => {
                    held = hosting;
                    *link.last_beat.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                    for meeting in lost {
                        moved_away(&state, link, &meeting);
                        held.remove(&meeting);
                    }
                }
                Err(e) => tracing::warn!("cluster heartbeat: {e}"),
            }
            busy_before = busy_now;
            at_before = now;
        }
        // Stopping: give back what this node holds, so that the others need
        // not wait for the holds to expire.
        for m in held {
            let _ = link.cluster.release(&m).await;
        }
    });
}
