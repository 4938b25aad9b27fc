//! Sessions shared by the nodes of a deployment (a database they all use):
//! a person stays signed in whichever node serves the page, through a
//! node's restart, and across the redirect to the node that hosts a meeting
//! (a one-time code, since a cookie only goes to the name that set it).
//!
//! Memory stays in front: a session read from the store is trusted for
//! [`RECHECK`], so a sign-out on one node holds on every node within that.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use convene_meeting::identity::Identity;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::store::{random_hex, sha256_hex, Session, Sessions};

/// How long a node trusts what it read of a session.
pub const RECHECK: Duration = Duration::from_secs(10);
/// How long a one-time code carries a sign-in to another node.
pub const CODE_TTL: Duration = Duration::from_secs(60);

/// A session as the store keeps it: its family, what it holds (JSON), and
/// when it ends (milliseconds since the Unix epoch).
#[derive(Debug, Clone)]
pub struct Stored {
    pub family: String,
    pub data: String,
    pub expires_at: i64,
}

/// Where sessions are kept for every node. Calls may block on a database:
/// the implementation must not stall an async runtime.
pub trait SessionBackend: Send + Sync {
    fn save(&self, hash: &str, session: &Stored) -> Result<(), String>;
    fn load(&self, hash: &str) -> Result<Option<Stored>, String>;
    /// Sign-out: every cookie of the sign-in `family`, and its codes.
    fn end(&self, family: &str) -> Result<(), String>;
    fn hold_code(&self, hash: &str, family: &str, expires_at: i64) -> Result<(), String>;
    /// The session a code stands for, once.
    fn take_code(&self, hash: &str) -> Result<Option<Stored>, String>;
}

#[derive(Serialize, Deserialize)]
struct Data {
    identity: Identity,
    key: String,
    csrf: String,
}

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn store(session: &Session, now: Instant) -> Stored {
    let data = Data {
        identity: session.identity.clone(),
        key: session.key.clone(),
        csrf: session.csrf.clone(),
    };
    Stored {
        family: session.family.clone(),
        data: serde_json::to_string(&data).unwrap_or_default(),
        expires_at: unix_ms() + session.expires.saturating_duration_since(now).as_millis() as i64,
    }
}

fn load(stored: Stored, now: Instant) -> Option<Session> {
    let data: Data = serde_json::from_str(&stored.data).ok()?;
    let left = stored.expires_at - unix_ms();
    (left > 0).then(|| Session {
        identity: data.identity,
        key: data.key,
        csrf: data.csrf,
        expires: now + Duration::from_millis(left as u64),
        family: stored.family,
    })
}

/// The session under cookie hash `hash`: from memory while fresh, else from
/// the store (kept in memory again). While the store does not answer, what
/// this node knew.
pub(crate) fn session(
    memory: &std::sync::Mutex<Sessions>,
    backend: &dyn SessionBackend,
    hash: &str,
) -> Option<Session> {
    let now = Instant::now();
    let lock = || memory.lock().unwrap_or_else(|e| e.into_inner());
    let known = lock().by_cookie_hash(hash, now);
    if let Some((s, checked)) = &known {
        if now.saturating_duration_since(*checked) < RECHECK {
            return Some(s.clone());
        }
    }
    match backend.load(hash) {
        Ok(Some(stored)) => {
            let s = load(stored, now)?;
            lock().put(hash.to_string(), s.clone(), now);
            Some(s)
        }
        Ok(None) => {
            lock().forget(hash);
            None
        }
        Err(e) => {
            warn!("sessions: the shared store did not answer: {e}");
            known.map(|(s, _)| s)
        }
    }
}

/// A one-time code that carries the sign-in of `session` to another node.
pub(crate) fn handoff(backend: &dyn SessionBackend, session: &Session) -> Option<String> {
    let code = random_hex(32);
    let expires_at = unix_ms() + CODE_TTL.as_millis() as i64;
    match backend.hold_code(&sha256_hex(&code), &session.family, expires_at) {
        Ok(()) => Some(code),
        Err(e) => {
            warn!("sessions: could not keep a code for another node: {e}");
            None
        }
    }
}

/// Take a code made by [`handoff`]: a new cookie value for this node, for
/// the same sign-in.
pub(crate) fn take_handoff(
    memory: &std::sync::Mutex<Sessions>,
    backend: &dyn SessionBackend,
    code: &str,
) -> Option<String> {
    let stored = match backend.take_code(&sha256_hex(code)) {
        Ok(s) => s?,
        Err(e) => {
            warn!("sessions: could not read a code from another node: {e}");
            return None;
        }
    };
    let now = Instant::now();
    let session = load(stored.clone(), now)?;
    let token = random_hex(32);
    let hash = sha256_hex(&token);
    if let Err(e) = backend.save(&hash, &stored) {
        warn!("sessions: could not keep a session: {e}");
        return None;
    }
    memory
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .put(hash, session, now);
    Some(token)
}
