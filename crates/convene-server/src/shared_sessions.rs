//! Sign-in sessions kept in the database the nodes share (PostgreSQL), so
//! that a person stays signed in whichever node serves them
//! (convene-auth shared.rs says how they are used).

use std::sync::Arc;

use convene_auth::shared::{SessionBackend, Stored};
use convene_storage::{SharedSession, Storage};

pub struct InDatabase(pub Arc<Storage>);

/// The key that tags session cookies, alike on every node: from the
/// database (made by the first node that asks).
pub fn cookie_key(storage: &Storage) -> Result<Vec<u8>, String> {
    let hex = storage
        .node_secret("session-cookies")
        .map_err(|e| format!("the session cookies' key: {e}"))?;
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .filter(|k| k.len() >= 16)
        .ok_or_else(|| "the session cookies' key in the database is not hex".to_string())
}

/// Run a database call from wherever sign-in runs: on a worker of the
/// multi-threaded runtime, the worker's other tasks move elsewhere while it
/// waits (a database that is away makes a call wait up to its deadline).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn stored(s: SharedSession) -> Stored {
    Stored {
        family: s.family,
        data: s.data,
        expires_at: s.expires_at,
    }
}

impl SessionBackend for InDatabase {
    fn save(&self, hash: &str, s: &Stored) -> Result<(), String> {
        let session = SharedSession {
            family: s.family.clone(),
            data: s.data.clone(),
            expires_at: s.expires_at,
        };
        blocking(|| {
            self.0
                .save_session(hash, &session, convene_storage::unix_millis())
        })
        .map_err(|e| e.to_string())
    }

    fn load(&self, hash: &str) -> Result<Option<Stored>, String> {
        blocking(|| self.0.session(hash, convene_storage::unix_millis()))
            .map(|s| s.map(stored))
            .map_err(|e| e.to_string())
    }

    fn end(&self, family: &str) -> Result<(), String> {
        blocking(|| self.0.end_sessions(family)).map_err(|e| e.to_string())
    }

    fn hold_code(&self, hash: &str, family: &str, expires_at: i64) -> Result<(), String> {
        blocking(|| self.0.hold_handoff(hash, family, expires_at)).map_err(|e| e.to_string())
    }

    fn take_code(&self, hash: &str) -> Result<Option<Stored>, String> {
        blocking(|| self.0.take_handoff(hash, convene_storage::unix_millis()))
            .map(|s| s.map(stored))
            .map_err(|e| e.to_string())
    }
}
