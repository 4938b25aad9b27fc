//! The tamper-evident audit log. Each row's hash covers its fields and the hash
//! of the row before it; the first row chains to [`GENESIS`].

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::StorageError;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One event to record.
#[derive(Debug, Clone, Copy)]
pub struct AuditEvent<'a> {
    pub meeting: &'a str,
    pub actor: &'a str,
    pub subject: &'a str,
    pub event: &'a str,
    pub outcome: &'a str,
    pub detail: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub seq: i64,
    pub at: i64,
    pub meeting: String,
    pub actor: String,
    pub subject: String,
    pub event: String,
    pub outcome: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    /// The hash this row must have, given its fields and `prev_hash`.
    pub fn expected_hash(&self) -> String {
        // Length-prefixed fields: no choice of field contents can make two
        // different rows hash the same input.
        let mut h = Sha256::new();
        h.update(self.prev_hash.as_bytes());
        for field in [
            self.seq.to_string().as_str(),
            self.at.to_string().as_str(),
            &self.meeting,
            &self.actor,
            &self.subject,
            &self.event,
            &self.outcome,
            &self.detail,
        ] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field.as_bytes());
        }
        hex(&h.finalize())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditBreak {
    #[error("row {seq}: its contents do not match its hash (the row was changed)")]
    Modified { seq: i64 },
    #[error("row {seq}: expected row {expected} here (rows were deleted or reordered)")]
    Gap { seq: i64, expected: i64 },
    #[error("row {seq}: it does not follow the row before it (rows were deleted, inserted or reordered)")]
    Unchained { seq: i64 },
}

/// The last row of an intact chain. Recording it elsewhere (e.g. in a records
/// system) also makes deletion of the newest rows detectable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AuditHead {
    pub rows: i64,
    pub hash: String,
}

pub(crate) fn append(
    conn: &mut Connection,
    ev: AuditEvent<'_>,
    at: i64,
) -> Result<AuditRecord, StorageError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let head = head(&tx)?;
    let rec = insert(&tx, &head, ev, at)?;
    tx.commit()?;
    Ok(rec)
}

/// The newest row (rows 0 and [`GENESIS`] when the log is empty).
pub(crate) fn head(conn: &Connection) -> Result<AuditHead, StorageError> {
    let last: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match last {
        Some((rows, hash)) => Ok(AuditHead { rows, hash }),
        // Every row purged: the chain goes on from the purge record.
        None => start(conn),
    }
}

/// Where the chain starts: after the rows purged by retention (the newest
/// purge record), or at [`GENESIS`]. Databases of a schema before purge
/// records (a backup being checked) start at [`GENESIS`].
pub(crate) fn start(conn: &Connection) -> Result<AuditHead, StorageError> {
    let purged: Option<(i64, String)> = if crate::has_table(conn, "audit_purges")? {
        conn.query_row(
            "SELECT rows, head FROM audit_purges ORDER BY rows DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
    } else {
        None
    };
    let (rows, hash) = purged.unwrap_or((0, GENESIS.to_string()));
    Ok(AuditHead { rows, hash })
}

/// Append after `head`, which must be the log's newest row.
pub(crate) fn insert(
    conn: &Connection,
    head: &AuditHead,
    ev: AuditEvent<'_>,
    at: i64,
) -> Result<AuditRecord, StorageError> {
    let mut rec = AuditRecord {
        seq: head.rows + 1,
        at,
        meeting: ev.meeting.into(),
        actor: ev.actor.into(),
        subject: ev.subject.into(),
        event: ev.event.into(),
        outcome: ev.outcome.into(),
        detail: ev.detail.into(),
        prev_hash: head.hash.clone(),
        hash: String::new(),
    };
    rec.hash = rec.expected_hash();
    conn.execute(
        "INSERT INTO audit_log (seq, at, meeting, actor, subject, event, outcome, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![rec.seq, rec.at, rec.meeting, rec.actor, rec.subject, rec.event, rec.outcome, rec.detail, rec.prev_hash, rec.hash],
    )?;
    Ok(rec)
}

/// A row of `SELECT seq, at, meeting, actor, subject, event, outcome, detail, prev_hash, hash`.
fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get(0)?,
        at: r.get(1)?,
        meeting: r.get(2)?,
        actor: r.get(3)?,
        subject: r.get(4)?,
        event: r.get(5)?,
        outcome: r.get(6)?,
        detail: r.get(7)?,
        prev_hash: r.get(8)?,
        hash: r.get(9)?,
    })
}

pub(crate) fn records(
    conn: &Connection,
    meeting: Option<&str>,
) -> Result<Vec<AuditRecord>, StorageError> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, meeting, actor, subject, event, outcome, detail, prev_hash, hash FROM audit_log
         WHERE ?1 IS NULL OR meeting = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![meeting], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What [`verify`] found.
pub(crate) struct Verified {
    /// The chain's head, or its first break.
    pub chain: Result<AuditHead, AuditBreak>,
    /// The stored hash of each row asked for that exists.
    pub hashes: std::collections::HashMap<i64, String>,
    /// Rows stored (whether or not they chain).
    pub stored: i64,
    /// The oldest date (`at`) among rows numbered above the `after` asked for.
    pub oldest_after: Option<(i64, i64)>,
}

/// Check the whole chain (from the newest purge record, if rows were purged),
/// in the order the rows are stored (rowid), which is the order they were
/// appended; also pick out the hashes of rows `wanted`.
pub(crate) fn verify(
    conn: &Connection,
    wanted: &std::collections::BTreeSet<i64>,
    after: i64,
) -> Result<Verified, StorageError> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, meeting, actor, subject, event, outcome, detail, prev_hash, hash FROM audit_log ORDER BY rowid",
    )?;
    let mut rows = stmt.query([])?;
    let from = start(conn)?;
    let (mut expected_seq, mut prev) = (from.rows + 1, from.hash);
    let mut broken = None;
    let mut hashes = std::collections::HashMap::new();
    let mut stored = 0;
    let mut oldest_after: Option<(i64, i64)> = None;
    while let Some(r) = rows.next()? {
        let rec = from_row(r)?;
        stored += 1;
        if rec.seq > after && oldest_after.is_none_or(|(_, at)| rec.at < at) {
            oldest_after = Some((rec.seq, rec.at));
        }
        if wanted.contains(&rec.seq) {
            hashes.insert(rec.seq, rec.hash.clone());
        }
        if broken.is_some() {
            continue;
        }
        if rec.expected_hash() != rec.hash {
            broken = Some(AuditBreak::Modified { seq: rec.seq });
        } else if rec.seq != expected_seq {
            broken = Some(AuditBreak::Gap {
                seq: rec.seq,
                expected: expected_seq,
            });
        } else if rec.prev_hash != prev {
            broken = Some(AuditBreak::Unchained { seq: rec.seq });
        } else {
            expected_seq += 1;
            prev = rec.hash;
        }
    }
    Ok(Verified {
        chain: match broken {
            Some(b) => Err(b),
            None => Ok(AuditHead {
                rows: expected_seq - 1,
                hash: prev,
            }),
        },
        hashes,
        stored,
        oldest_after,
    })
}

/// One JSON object per line.
pub fn to_jsonl(records: &[AuditRecord]) -> String {
    records
        .iter()
        .filter_map(|r| serde_json::to_string(r).ok())
        .map(|l| l + "\n")
        .collect()
}

/// RFC 4180 CSV with a header row.
pub fn to_csv(records: &[AuditRecord]) -> Result<String, StorageError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "seq", "at", "meeting", "actor", "subject", "event", "outcome", "detail", "prevHash",
        "hash",
    ])
    .map_err(|e| StorageError::Export(e.to_string()))?;
    for r in records {
        w.write_record([
            r.seq.to_string().as_str(),
            r.at.to_string().as_str(),
            &r.meeting,
            &r.actor,
            &r.subject,
            &r.event,
            &r.outcome,
            &r.detail,
            &r.prev_hash,
            &r.hash,
        ])
        .map_err(|e| StorageError::Export(e.to_string()))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| StorageError::Export(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| StorageError::Export(e.to_string()))
}
