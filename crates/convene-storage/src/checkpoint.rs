//! Keyed checkpoints of the audit log's head.
//!
//! The hash chain shows that rows were changed *unless* whoever changed them
//! also recomputed every later hash, which anyone holding the database can do;
//! and it cannot show that the newest rows were deleted or that rows were
//! appended. A checkpoint records, at a moment, how many rows the log had and
//! the hash of the newest: kept somewhere the database's holder cannot rewrite
//! (another volume, a log collector), it pins everything up to that row.
//!
//! A checkpoint carries an HMAC-SHA256 over its fields with a key from the
//! deployment's configuration, never stored in the database: someone with the
//! database and the checkpoint file, but not the key, cannot make checkpoints
//! for a rewritten log. Without a key, a checkpoint carries a plain SHA-256 of
//! its fields instead, which catches damage but anyone can recompute: such
//! checkpoints are only as good as the place they are kept.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::Path;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::{self, hex, AuditBreak, AuditHead, GENESIS};
use crate::db::Sql;
use crate::StorageError;

type HmacSha256 = Hmac<Sha256>;

/// The secret that keys checkpoints. Its bytes are never printed.
#[derive(Clone)]
pub struct AuditKey {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.id())
    }
}

impl AuditKey {
    /// Fewest bytes a key may have.
    pub const MIN_LEN: usize = 32;

    pub fn from_bytes(bytes: &[u8]) -> Result<AuditKey, String> {
        if bytes.len() < Self::MIN_LEN {
            return Err(format!(
                "an audit key must have at least {} bytes (it has {}); make one with \
                 `head -c 32 /dev/urandom > FILE`",
                Self::MIN_LEN,
                bytes.len()
            ));
        }
        Ok(AuditKey {
            bytes: bytes.to_vec(),
        })
    }

    /// The file's bytes, as they are, are the key.
    pub fn from_file(path: &Path) -> Result<AuditKey, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("audit key {}: {e}", path.display()))?;
        Self::from_bytes(&bytes).map_err(|e| format!("audit key {}: {e}", path.display()))
    }

    /// A name for the key that reveals nothing of it (the first 8 bytes of a
    /// MAC of a fixed text), so a checkpoint says which key made it.
    pub fn id(&self) -> String {
        let mut mac = self.mac();
        mac.update(b"convene audit key id");
        hex(&mac.finalize().into_bytes()[..8])
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.bytes).expect("HMAC takes keys of any length")
    }
}

/// The audit log had `rows` rows, the newest with hash `head`, at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub rows: i64,
    pub head: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// The id of the key that made `mac`; `None`: unkeyed.
    pub key: Option<String>,
    /// HMAC-SHA256 (hex) of the fields above with the key; unkeyed, their SHA-256.
    pub mac: String,
}

/// Whether a checkpoint's MAC holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacCheck {
    /// Keyed, and verified with the key given.
    Verified,
    /// Unkeyed, and its digest matches: intact, but anyone could have made it.
    Unkeyed,
    /// Keyed, but with no key or another key given: not checked.
    Unchecked,
    /// Does not verify: forged or damaged.
    Wrong,
}

impl Checkpoint {
    pub fn new(head: &AuditHead, at: i64, key: Option<&AuditKey>) -> Checkpoint {
        let mut cp = Checkpoint {
            rows: head.rows,
            head: head.hash.clone(),
            at,
            key: key.map(AuditKey::id),
            mac: String::new(),
        };
        cp.mac = match key {
            Some(k) => {
                let mut m = k.mac();
                m.update(&cp.message());
                hex(&m.finalize().into_bytes())
            }
            None => hex(&Sha256::digest(cp.message())),
        };
        cp
    }

    /// What the MAC covers: every field, in a fixed unambiguous form.
    fn message(&self) -> Vec<u8> {
        format!(
            "convene-audit-checkpoint/1\n{}\n{}\n{}\n{}",
            self.rows,
            self.head,
            self.at,
            self.key.as_deref().unwrap_or("-")
        )
        .into_bytes()
    }

    pub fn check_mac(&self, key: Option<&AuditKey>) -> MacCheck {
        match (&self.key, key) {
            (None, _) => {
                if hex(&Sha256::digest(self.message())) == self.mac {
                    MacCheck::Unkeyed
                } else {
                    MacCheck::Wrong
                }
            }
            (Some(id), Some(k)) if *id == k.id() => {
                let Ok(mac) = decode_hex(&self.mac) else {
                    return MacCheck::Wrong;
                };
                let mut m = k.mac();
                m.update(&self.message());
                // verify_slice compares in constant time.
                if m.verify_slice(&mac).is_ok() {
                    MacCheck::Verified
                } else {
                    MacCheck::Wrong
                }
            }
            (Some(_), _) => MacCheck::Unchecked,
        }
    }

    /// One line of JSON, as written to the checkpoint file and the log.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn decode_hex(s: &str) -> Result<Vec<u8>, ()> {
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).map_err(|_| ())?;
            match pair.len() {
                2 => u8::from_str_radix(pair, 16).map_err(|_| ()),
                _ => Err(()),
            }
        })
        .collect()
}

/// Append `cp` as one line to the file at `path` (created if missing) and
/// flush it to disk.
pub fn append_to(path: &Path, cp: &Checkpoint) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // One write of one line: appends from two processes do not interleave.
    f.write_all(format!("{}\n", cp.to_json()).as_bytes())?;
    f.sync_data()
}

/// Lines of a checkpoint file that are not checkpoints: (line number, problem).
pub type Unreadable = Vec<(usize, String)>;

/// The checkpoints in the file at `path`, oldest first (none if there is no
/// file), and the lines that are not checkpoints.
pub fn read_from(path: &Path) -> std::io::Result<(Vec<Checkpoint>, Unreadable)> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e),
    };
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Checkpoint>(&line) {
            Ok(cp) => good.push(cp),
            Err(e) => bad.push((i + 1, e.to_string())),
        }
    }
    Ok((good, bad))
}

/// What checking the log against checkpoints found that breaks it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointProblem {
    #[error(
        "TRUNCATED: a checkpoint made at {at} ms counted {rows} rows; the log has {stored} \
         (its newest rows were deleted)"
    )]
    Truncated { rows: i64, stored: i64, at: i64 },
    #[error(
        "REWRITTEN: row {to} does not have the hash checkpointed at {at} ms: rows {from} to {to} \
         were changed, or deleted and replaced, and the later hashes recomputed"
    )]
    Rewritten { from: i64, to: i64, at: i64 },
    #[error(
        "APPENDED: row {seq} is dated {at} ms, before the checkpoint made at {checkpoint_at} ms \
         that counted only {rows} rows: it was put in the log afterwards"
    )]
    Appended {
        seq: i64,
        at: i64,
        rows: i64,
        checkpoint_at: i64,
    },
    #[error(
        "FORGED CHECKPOINT: the checkpoint for row {rows} made at {at} ms does not verify \
         (forged or damaged)"
    )]
    BadMac { rows: i64, at: i64 },
    #[error(
        "FORGED PURGE RECORD: the record of rows 1 to {rows} purged at {at} ms does not verify \
         (rows were deleted by someone without the audit key, or the record is damaged)"
    )]
    BadPurge { rows: i64, at: i64 },
    #[error("PURGE RECORD DOES NOT FIT: the record of rows 1 to {rows} purged at {at} ms {why}")]
    PurgeMisfit { rows: i64, at: i64, why: String },
}

/// The result of checking the log and its checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointReport {
    /// The chain on its own: its head, or its first break.
    pub chain: Result<AuditHead, AuditBreak>,
    /// Rows in the database.
    pub stored: i64,
    /// Checkpoints the log was compared with.
    pub compared: usize,
    /// Of those, how many were verified with the key given.
    pub verified: usize,
    /// The newest checkpoint that matched the log.
    pub newest: Option<Checkpoint>,
    /// What breaks the log (besides a broken chain).
    pub problems: Vec<CheckpointProblem>,
    /// What limits the checking, without breaking the log.
    pub warnings: Vec<String>,
}

impl CheckpointReport {
    pub fn is_intact(&self) -> bool {
        self.chain.is_ok() && self.problems.is_empty()
    }
}

/// Check the chain, then each checkpoint against the log:
///
/// * the log must still have the checkpoint's row and that row must still
///   have the checkpointed hash (else rows were truncated, or rewritten with
///   their hashes recomputed);
/// * a checkpoint whose MAC (or, unkeyed, digest) does not verify is itself a
///   problem: forged or damaged, and not compared;
/// * keyed checkpoints are compared even when `key` cannot verify them (no key
///   or another key), but a warning says they were not authenticated;
/// * rows after the newest checkpoint are covered by none: a warning (they may
///   be legitimate rows not yet checkpointed, or appended by whoever holds the
///   database).
pub(crate) fn check(
    conn: &dyn Sql,
    checkpoints: &[Checkpoint],
    key: Option<&AuditKey>,
) -> Result<CheckpointReport, StorageError> {
    let (mut verified, mut unkeyed, mut unchecked) = (0, 0, 0);
    let mut usable: Vec<&Checkpoint> = Vec::new();
    let mut forged = Vec::new();
    for cp in checkpoints {
        match cp.check_mac(key) {
            MacCheck::Wrong => forged.push(CheckpointProblem::BadMac {
                rows: cp.rows,
                at: cp.at,
            }),
            MacCheck::Verified => {
                verified += 1;
                usable.push(cp);
            }
            MacCheck::Unkeyed => {
                unkeyed += 1;
                usable.push(cp);
            }
            MacCheck::Unchecked => {
                unchecked += 1;
                usable.push(cp);
            }
        }
    }
    // Rows purged by retention: the chain starts after the newest record,
    // whose MAC must hold like a checkpoint's.
    let purges = crate::retention::purge_records(conn)?;
    let start = audit::start(conn)?;
    // With the key, only records made with it count: an unkeyed one, or one
    // naming another key, is what someone holding only the database makes.
    for p in &purges {
        let good = matches!(
            (p.check_mac(key), key),
            (MacCheck::Verified, _) | (MacCheck::Unkeyed | MacCheck::Unchecked, None)
        );
        if !good {
            forged.push(CheckpointProblem::BadPurge {
                rows: p.rows,
                at: p.at,
            });
        }
    }
    for pair in purges.windows(2) {
        if pair[1].at < pair[0].at {
            forged.push(CheckpointProblem::PurgeMisfit {
                rows: pair[1].rows,
                at: pair[1].at,
                why: format!("is dated before the record of rows 1 to {}", pair[0].rows),
            });
        }
    }
    let wanted: BTreeSet<i64> = usable.iter().map(|c| c.rows).collect();
    let covered = usable.iter().map(|c| c.rows).max().unwrap_or(0);
    let v = audit::verify(conn, &wanted, covered)?;
    let mut report = CheckpointReport {
        chain: v.chain,
        stored: v.stored,
        compared: usable.len(),
        verified,
        newest: None,
        problems: forged,
        warnings: Vec::new(),
    };
    usable.sort_by_key(|c| (c.rows, c.at));
    let mut matched = 0i64;
    let (mut rewritten, mut truncated) = (false, None::<&Checkpoint>);
    let mut before_purge = 0;
    for cp in &usable {
        let stored_hash = if cp.rows == 0 {
            Some(GENESIS)
        } else if cp.rows < start.rows {
            // Its row was purged: nothing left to compare it with.
            before_purge += 1;
            matched = cp.rows;
            continue;
        } else if cp.rows == start.rows {
            Some(start.hash.as_str())
        } else {
            v.hashes.get(&cp.rows).map(String::as_str)
        };
        match stored_hash {
            None => {
                if truncated.is_none_or(|t| t.rows < cp.rows) {
                    truncated = Some(cp);
                }
            }
            Some(h) if h != cp.head => {
                if !rewritten {
                    rewritten = true;
                    report.problems.push(CheckpointProblem::Rewritten {
                        from: matched + 1,
                        to: cp.rows,
                        at: cp.at,
                    });
                }
            }
            Some(_) => {
                if !rewritten {
                    matched = cp.rows;
                    report.newest = Some((*cp).clone());
                }
            }
        }
    }
    if let Some(cp) = truncated {
        report.problems.push(CheckpointProblem::Truncated {
            rows: cp.rows,
            stored: report.chain.as_ref().map_or(v.stored, |h| h.rows),
            at: cp.at,
        });
    }
    // The server dates no row before a checkpoint it has already written, so
    // an uncovered row dated before the newest checkpoint was put there later.
    if let (Some((seq, at)), Some(newest)) = (v.oldest_after, usable.iter().max_by_key(|c| c.at)) {
        if at < newest.at && truncated.is_none() {
            report.problems.push(CheckpointProblem::Appended {
                seq,
                at,
                rows: newest.rows,
                checkpoint_at: newest.at,
            });
        }
    }
    if let Some(p) = purges.last() {
        // Every purge writes its own row after its record: the log goes on
        // past the newest record, and no checkpoint made after a purge
        // counts fewer rows than it purged.
        let head_rows = report.chain.as_ref().map_or(i64::MAX, |h| h.rows);
        if head_rows <= p.rows {
            report.problems.push(CheckpointProblem::PurgeMisfit {
                rows: p.rows,
                at: p.at,
                why: "is the end of the log: the purge's own row after it is missing".into(),
            });
        }
        if let Some(cp) = usable.iter().find(|c| c.at >= p.at && c.rows <= p.rows) {
            report.problems.push(CheckpointProblem::PurgeMisfit {
                rows: p.rows,
                at: p.at,
                why: format!(
                    "purged more rows than the checkpoint made after it ({} rows at {} ms) counted",
                    cp.rows, cp.at
                ),
            });
        }
        if key.is_none() {
            report
                .warnings
                .push("no audit key given: purge records were not authenticated".into());
        }
        report.warnings.push(format!(
            "rows 1 to {} were purged by retention (the newest purge at {} ms; {} purge record(s)); \
             the chain is checked from row {}{}",
            p.rows,
            p.at,
            purges.len(),
            p.rows + 1,
            if before_purge > 0 {
                format!("; {before_purge} checkpoint(s) of purged rows could not be compared")
            } else {
                String::new()
            }
        ));
    }
    if key.is_none() {
        report.warnings.push(
            "no audit key given: checkpoint MACs were not verified, so the checkpoints prove \
             only as much as the place they were kept (see docs/security.md)"
                .into(),
        );
    }
    if unchecked > 0 && key.is_some() {
        report.warnings.push(format!(
            "{unchecked} checkpoint(s) were made with another key and could not be verified"
        ));
    }
    if unkeyed > 0 {
        report.warnings.push(format!(
            "{unkeyed} checkpoint(s) are unkeyed: anyone who can write their file could have made them"
        ));
    }
    if usable.is_empty() {
        report.warnings.push(
            "no checkpoints: truncation, appended rows and rewriting with recomputed hashes \
             cannot be detected"
                .into(),
        );
    }
    let newest_row = report.chain.as_ref().map_or(v.stored, |h| h.rows);
    if report.problems.is_empty() && newest_row > covered.max(start.rows) {
        report.warnings.push(format!(
            "rows {} to {} are not covered by any checkpoint yet: they may have been written \
             since the newest checkpoint, or appended by whoever holds the database",
            covered.max(start.rows) + 1,
            newest_row
        ));
    }
    Ok(report)
}
