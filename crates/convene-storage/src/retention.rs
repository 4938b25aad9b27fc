//! Retention: what the deployment keeps, and for how long, applied by
//! [`Storage::purge`] (the server's hourly task and `convene purge`).
//!
//! * **Meetings** go a number of days after they end; a link that was never
//!   ended counts as ended at its last activity (its newest audit row, else
//!   its creation). Their grants, bars and held returns go with them
//!   (foreign keys, `ON DELETE CASCADE`). Their audit rows stay: those have
//!   their own retention.
//! * **Audit rows** older than their retention go from the front of the log
//!   only (a row goes only when every row before it goes too). A purge
//!   record (migration 0008) keeps the last purged row's number and hash,
//!   with a MAC made with the audit key like a checkpoint's, and the chain
//!   goes on from it: what is left stays verifiable, and `convene audit
//!   verify` says what was purged, when, and whether the record verifies.
//! * **Chat**, kept only where a meeting's level keeps it, goes when its own
//!   `keep_until` passes (the level's `chat_retention_days` after it was
//!   sent), whatever the retention settings here.
//! * Each purge that removes anything writes one audit row saying what went.
//!
//! One transaction: a purge cut short (a crash, `kill -9`) leaves the
//! database as it was.

use std::collections::HashSet;

use serde::Serialize;

use crate::audit::{self, AuditEvent};
use crate::checkpoint::{AuditKey, Checkpoint};
use crate::db::{p, Sql};
use crate::{Storage, StorageError};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// How long each kind of data is kept, in days; `None` keeps it for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    pub meetings_days: Option<u32>,
    pub audit_days: Option<u32>,
}

/// What a purge removed (or, on a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PurgeReport {
    /// Meetings removed, by id.
    pub meetings: Vec<String>,
    /// Audit rows removed: rows `audit_from` to `audit_to`.
    pub audit_rows: i64,
    pub audit_from: i64,
    pub audit_to: i64,
    /// Kept chat messages whose time was up.
    pub chat_messages: i64,
    /// The purge record written for the audit rows (not on a dry run).
    pub record: Option<Checkpoint>,
    pub dry_run: bool,
}

impl PurgeReport {
    pub fn is_empty(&self) -> bool {
        self.meetings.is_empty() && self.audit_rows == 0 && self.chat_messages == 0
    }
}

impl Storage {
    /// Remove what `retention` no longer keeps at `now_ms` (milliseconds
    /// since the Unix epoch): meetings, except those in `live` (open on this
    /// server now), and the oldest audit rows. `key` makes the purge record's
    /// MAC. With `dry_run`, report what would go and change nothing.
    pub fn purge(
        &self,
        retention: &Retention,
        now_ms: i64,
        live: &HashSet<String>,
        key: Option<&AuditKey>,
        dry_run: bool,
    ) -> Result<PurgeReport, StorageError> {
        self.tx(true, false, |tx| {
            purge(tx, retention, now_ms, live, key, dry_run)
        })
    }

    /// The purge records, oldest first.
    pub fn purge_records(&self) -> Result<Vec<Checkpoint>, StorageError> {
        self.with(purge_records)
    }
}

fn purge(
    tx: &dyn Sql,
    retention: &Retention,
    now_ms: i64,
    live: &HashSet<String>,
    key: Option<&AuditKey>,
    dry_run: bool,
) -> Result<PurgeReport, StorageError> {
    let mut report = PurgeReport {
        dry_run,
        ..Default::default()
    };
    if let Some(days) = retention.meetings_days {
        let cut = now_ms - i64::from(days) * DAY_MS;
        report.meetings = meetings_before(tx, cut, now_ms)?
            .into_iter()
            .filter(|id| !live.contains(id))
            .collect();
    }
    if let Some(days) = retention.audit_days {
        let cut = now_ms - i64::from(days) * DAY_MS;
        let from = audit::start(tx)?.rows + 1;
        let to = audit_rows_before(tx, cut)?;
        if to >= from {
            report.audit_from = from;
            report.audit_to = to;
            report.audit_rows = to - from + 1;
        }
    }
    report.chat_messages = tx
        .int(
            "SELECT count(*) FROM meeting_chat WHERE keep_until <= ?1",
            p![now_ms],
        )?
        .unwrap_or(0);
    if dry_run || report.is_empty() {
        return Ok(report);
    }
    tx.exec(
        "DELETE FROM meeting_chat WHERE keep_until <= ?1",
        p![now_ms],
    )?;
    for id in &report.meetings {
        tx.exec("DELETE FROM meetings WHERE id = ?1", p![id])?;
    }
    if report.audit_rows > 0 {
        let head = tx
            .row(
                "SELECT hash FROM audit_log WHERE seq = ?1",
                p![report.audit_to],
            )?
            .ok_or_else(|| StorageError::Column("the last purged row is gone".into()))?
            .text(0)?;
        let record = Checkpoint::new(
            &audit::AuditHead {
                rows: report.audit_to,
                hash: head,
            },
            now_ms,
            key,
        );
        tx.exec(
            "INSERT INTO audit_purges (rows, head, at, key, mac) VALUES (?1, ?2, ?3, ?4, ?5)",
            p![
                record.rows,
                &record.head,
                record.at,
                record.key.as_deref(),
                &record.mac
            ],
        )?;
        tx.exec("DELETE FROM audit_log WHERE seq <= ?1", p![report.audit_to])?;
        report.record = Some(record);
    }
    let detail = serde_json::json!({
        "meetings": report.meetings.len(),
        "chatMessages": report.chat_messages,
        "auditRows": report.audit_rows,
        "auditFrom": report.audit_from,
        "auditTo": report.audit_to,
        "meetingsDays": retention.meetings_days,
        "auditDays": retention.audit_days,
    })
    .to_string();
    let head = audit::head(tx)?;
    audit::insert(
        tx,
        &head,
        AuditEvent {
            meeting: "-",
            actor: "system",
            subject: "retention",
            event: "purge",
            outcome: "done",
            detail: &detail,
        },
        now_ms,
    )?;
    Ok(report)
}

/// Meetings whose end (or, never ended, last activity) is before `cut`.
/// A running meeting says its people's places are current every 10 s (on
/// whichever node of a cluster it runs): places newer than this mean open.
const PLACES_FRESH_MS: i64 = 60_000;

/// Meetings last active before `cut_ms`, except those open now as their
/// places show (the caller spares those open on this node too).
fn meetings_before(conn: &dyn Sql, cut_ms: i64, now_ms: i64) -> Result<Vec<String>, StorageError> {
    conn.rows(
        "SELECT id FROM meetings m
         WHERE NOT EXISTS (SELECT 1 FROM meeting_returns r
                           WHERE r.meeting = m.id AND r.held_at >= ?2)
           AND CASE WHEN m.ended_at IS NOT NULL THEN m.ended_at
               WHEN m.created_at * 1000 >= coalesce(
                        (SELECT max(a.at) FROM audit_log a WHERE a.meeting = m.id), 0)
                    THEN m.created_at * 1000
               ELSE (SELECT max(a.at) FROM audit_log a WHERE a.meeting = m.id)
               END < ?1
         ORDER BY id",
        p![cut_ms, now_ms - PLACES_FRESH_MS],
    )?
    .iter()
    .map(|r| r.text(0))
    .collect()
}

/// The newest row such that it and every row before it are dated before
/// `cut` (0 if there is none).
fn audit_rows_before(conn: &dyn Sql, cut_ms: i64) -> Result<i64, StorageError> {
    let first_kept = conn.int("SELECT min(seq) FROM audit_log WHERE at >= ?1", p![cut_ms])?;
    Ok(match first_kept {
        Some(seq) => seq - 1,
        None => audit::head(conn)?.rows,
    })
}

pub(crate) fn purge_records(conn: &dyn Sql) -> Result<Vec<Checkpoint>, StorageError> {
    if !conn.has_table("audit_purges")? {
        return Ok(Vec::new());
    }
    conn.rows(
        "SELECT rows, head, at, key, mac FROM audit_purges ORDER BY rows",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok(Checkpoint {
            rows: r.int(0)?,
            head: r.text(1)?,
            at: r.int(2)?,
            key: r.opt_text(3)?,
            mac: r.text(4)?,
        })
    })
    .collect()
}
