//! The tamper-evident audit log. Each row's hash covers its fields and the hash
//! of the row before it; the first row chains to [`GENESIS`].

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::db::{p, Row, Sql};
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

/// The newest row (rows 0 and [`GENESIS`] when the log is empty).
pub(crate) fn head(conn: &dyn Sql) -> Result<AuditHead, StorageError> {
    let last = conn.row(
        "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
        &[],
    )?;
    match last {
        Some(r) => Ok(AuditHead {
            rows: r.int(0)?,
            hash: r.text(1)?,
        }),
        // Every row purged: the chain goes on from the purge record.
        None => start(conn),
    }
}

/// Where the chain starts: after the rows purged by retention (the newest
/// purge record), or at [`GENESIS`]. Databases of a schema before purge
/// records (a backup being checked) start at [`GENESIS`].
pub(crate) fn start(conn: &dyn Sql) -> Result<AuditHead, StorageError> {
    let purged = if conn.has_table("audit_purges")? {
        conn.row(
            "SELECT rows, head FROM audit_purges ORDER BY rows DESC LIMIT 1",
            &[],
        )?
        .map(|r| Ok::<_, StorageError>((r.int(0)?, r.text(1)?)))
        .transpose()?
    } else {
        None
    };
    let (rows, hash) = purged.unwrap_or((0, GENESIS.to_string()));
    Ok(AuditHead { rows, hash })
}

/// Append after `head`, which must be the log's newest row.
pub(crate) fn insert(
    conn: &dyn Sql,
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
    conn.exec(
        "INSERT INTO audit_log (seq, at, meeting, actor, subject, event, outcome, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        p![rec.seq, rec.at, &rec.meeting, &rec.actor, &rec.subject, &rec.event, &rec.outcome, &rec.detail, &rec.prev_hash, &rec.hash],
    )?;
    Ok(rec)
}

/// A row of `SELECT seq, at, meeting, actor, subject, event, outcome, detail, prev_hash, hash`.
fn from_row(r: &Row) -> Result<AuditRecord, StorageError> {
    Ok(AuditRecord {
        seq: r.int(0)?,
        at: r.int(1)?,
        meeting: r.text(2)?,
        actor: r.text(3)?,
        subject: r.text(4)?,
        event: r.text(5)?,
        outcome: r.text(6)?,
        detail: r.text(7)?,
        prev_hash: r.text(8)?,
        hash: r.text(9)?,
    })
}

/// Rows read at a time by [`verify`].
const VERIFY_PAGE: i64 = 5000;

const COLUMNS: &str = "seq, at, meeting, actor, subject, event, outcome, detail, prev_hash, hash";

pub(crate) fn records(
    conn: &dyn Sql,
    meeting: Option<&str>,
) -> Result<Vec<AuditRecord>, StorageError> {
    let rows = match meeting {
        Some(m) => conn.rows(
            &format!("SELECT {COLUMNS} FROM audit_log WHERE meeting = ?1 ORDER BY seq"),
            p![m],
        )?,
        None => conn.rows(
            &format!("SELECT {COLUMNS} FROM audit_log ORDER BY seq"),
            &[],
        )?,
    };
    rows.iter().map(from_row).collect()
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
/// in the order of their numbers (in SQLite `seq` is the rowid: the order
/// they are stored in); also pick out the hashes of rows `wanted`.
pub(crate) fn verify(
    conn: &dyn Sql,
    wanted: &std::collections::BTreeSet<i64>,
    after: i64,
) -> Result<Verified, StorageError> {
    let from = start(conn)?;
    let (mut expected_seq, mut prev) = (from.rows + 1, from.hash);
    let mut broken = None;
    let mut hashes = std::collections::HashMap::new();
    let mut stored = 0;
    let mut oldest_after: Option<(i64, i64)> = None;
    // A page at a time: a log of millions of rows is checked in bounded memory.
    let page_sql = format!("SELECT {COLUMNS} FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2");
    let mut last_seq = i64::MIN;
    loop {
        let page = conn.rows(&page_sql, p![last_seq, VERIFY_PAGE])?;
        let Some(last) = page.last() else { break };
        last_seq = last.int(0)?;
        for r in &page {
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
