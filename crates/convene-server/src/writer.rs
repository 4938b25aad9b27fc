//! Writes audit events and what meetings remember, in order, on a thread of
//! their own, so a meeting's task never waits on the database.

use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

use convene_meeting::Change;
use convene_storage::{AuditEvent, Storage, StorageError};
use tracing::error;

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub meeting: String,
    pub actor: String,
    pub subject: String,
    pub event: String,
    pub outcome: String,
    pub detail: String,
}

enum Write {
    Audit(AuditEntry),
    Remember { meeting: String, change: Change },
}

#[derive(Clone)]
pub struct Writer {
    tx: Sender<Write>,
}

impl Writer {
    pub fn start(storage: Arc<Storage>) -> Writer {
        let (tx, rx) = mpsc::channel::<Write>();
        std::thread::Builder::new()
            .name("convene-writer".into())
            .spawn(move || {
                for w in rx {
                    match w {
                        Write::Audit(e) => {
                            let ev = AuditEvent {
                                meeting: &e.meeting,
                                actor: &e.actor,
                                subject: &e.subject,
                                event: &e.event,
                                outcome: &e.outcome,
                                detail: &e.detail,
                            };
                            if let Err(err) = storage.audit(ev) {
                                error!("audit log write failed: {err} ({e:?})");
                            }
                        }
                        Write::Remember { meeting, change } => {
                            if let Err(err) = remember(&storage, &meeting, &change) {
                                error!(%meeting, "could not store {change:?}: {err}");
                            }
                        }
                    }
                }
            })
            .expect("writer thread starts");
        Writer { tx }
    }

    pub fn record(&self, entry: AuditEntry) {
        let _ = self.tx.send(Write::Audit(entry));
    }

    pub fn remember(&self, meeting: &str, change: Change) {
        let _ = self.tx.send(Write::Remember {
            meeting: meeting.to_string(),
            change,
        });
    }
}

fn remember(storage: &Storage, meeting: &str, change: &Change) -> Result<(), StorageError> {
    match change {
        Change::Settings(s) => {
            let json = serde_json::to_string(s).map_err(|e| StorageError::Export(e.to_string()))?;
            storage.update_settings(meeting, &json)
        }
        Change::Locked(locked) => storage.set_locked(meeting, *locked),
        Change::Grant { key, role } => {
            let role = match role {
                convene_meeting::access::Role::Participant => None,
                r => Some(role_name(*r)),
            };
            storage.set_grant(meeting, key, role.as_deref())
        }
        Change::Bar { key } => storage.bar(meeting, key),
        Change::Level(level) => storage.set_level(meeting, level),
    }
}

pub fn role_name(role: convene_meeting::access::Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
