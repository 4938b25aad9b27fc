//! Writes audit events in order on a thread of their own.

use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

use convene_storage::{AuditEvent, Storage};
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

#[derive(Clone)]
pub struct AuditWriter {
    tx: Sender<AuditEntry>,
}

impl AuditWriter {
    pub fn start(storage: Arc<Storage>) -> AuditWriter {
        let (tx, rx) = mpsc::channel::<AuditEntry>();
        std::thread::Builder::new()
            .name("convene-audit".into())
            .spawn(move || {
                for e in rx {
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
            })
            .expect("audit thread starts");
        AuditWriter { tx }
    }

    pub fn record(&self, entry: AuditEntry) {
        let _ = self.tx.send(entry);
    }
}
