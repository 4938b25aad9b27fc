//! `/readyz`: whether this server can serve meetings now. Anyone may ask
//! (load balancers hold no token), so the one check that costs something,
//! a write to the database, runs at most once per [`PROBE_INTERVAL`] however
//! many ask, and only an admin is told the storage error itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::client_addr::ClientIp;
use crate::AppState;

/// How long one answer about the database stands. Short against a load
/// balancer's interval (seconds), long against a flood of probes.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// The last database probe: when it ran, and its error if it failed.
#[derive(Default)]
pub struct StorageProbe {
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl StorageProbe {
    /// The database's answer, probed again only when the last one is older
    /// than [`PROBE_INTERVAL`]. Callers that arrive while a probe runs wait
    /// for it and share its answer, so at most one probe holds the write lock.
    /// The probe runs on a task of its own: a caller that goes away does not
    /// cancel it (and let the next caller start another).
    async fn writable(state: &Arc<AppState>) -> Result<(), String> {
        let st = state.clone();
        tokio::spawn(async move { st.ready.probe(&st).await })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    }

    async fn probe(&self, state: &Arc<AppState>) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = last.as_ref() {
            if at.elapsed() < PROBE_INTERVAL {
                return answer.clone();
            }
        }
        let storage = state.storage.clone();
        let answer = tokio::task::spawn_blocking(move || storage.check_writable())
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}

/// Ready to serve meetings: storage takes writes, the audit writer and every
/// media worker run, the server is not stopping, and (in a cluster) Redis
/// has heard from it within 3 s. 503 naming what is not,
/// for load balancers and systemd health checks (`/healthz` only says the
/// process answers). The storage error's own words go only to an admin.
pub async fn readyz(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
) -> Response {
    let mut problems = Vec::new();
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        problems.push("stopping for a restart".to_string());
    }
    if let Err(e) = StorageProbe::writable(&state).await {
        if crate::admin::is_admin(&state, &headers, client) {
            problems.push(format!("storage is not writable: {e}"));
        } else {
            problems.push("storage is not writable".to_string());
        }
    }
    if !state.writer.is_running() {
        problems.push("the audit writer has stopped".to_string());
    }
    if !state.sfu.all_running() {
        problems.push("a media worker has stopped".to_string());
    }
    if let Some(Err(e)) = state.cluster.as_ref().map(|l| l.reaches_redis()) {
        problems.push(e);
    }
    if problems.is_empty() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n")).into_response()
    }
}
