//! Rewriting the log with recomputed hashes, appending to it and truncating it
//! all pass the chain check; checkpoints catch them.

use super::*;
use crate::checkpoint::{self, CheckpointProblem, MacCheck};

fn key() -> AuditKey {
    AuditKey::from_bytes(&[7u8; 32]).unwrap()
}

/// `f` on each engine, with `n` rows in the log.
fn with_rows(n: usize, f: impl Fn(Storage)) {
    each_engine(|s| {
        add_rows(&s, n);
        f(s)
    })
}

fn add_rows(s: &Storage, n: usize) {
    for i in 0..n {
        s.audit(AuditEvent {
            meeting: "m1",
            actor: "host",
            subject: &format!("p{i}"),
            event: "join",
            outcome: "admitted",
            detail: "",
        })
        .unwrap();
    }
}

/// A checkpoint of the first `rows` rows, as the server would have made it
/// then, as the row was written.
fn checkpoint_at(s: &Storage, rows: usize) -> Checkpoint {
    let r = &s.audit_records(None).unwrap()[rows - 1];
    let head = AuditHead {
        rows: r.seq,
        hash: r.hash.clone(),
    };
    Checkpoint::new(&head, r.at, Some(&key()))
}

/// Write straight to the table, around the triggers, as someone with the file would.
fn tamper(s: &Storage, sql: &str) {
    s.raw_unguard();
    s.raw_batch(sql).unwrap();
}

fn insert_sql(r: &AuditRecord) -> String {
    format!(
        "INSERT INTO audit_log (seq, at, meeting, actor, subject, event, outcome, detail, prev_hash, hash)
         VALUES ({}, {}, '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}');",
        r.seq, r.at, r.meeting, r.actor, r.subject, r.event, r.outcome, r.detail, r.prev_hash, r.hash
    )
}

/// A row that chains onto the current newest one.
fn forged_row(s: &Storage, at: i64) -> AuditRecord {
    let head = s.audit_head().unwrap();
    let mut r = AuditRecord {
        seq: head.rows + 1,
        at,
        meeting: "m1".into(),
        actor: "host".into(),
        subject: "mallory".into(),
        event: "role-change".into(),
        outcome: "participant -> host".into(),
        detail: String::new(),
        prev_hash: head.hash,
        hash: String::new(),
    };
    r.hash = r.expected_hash();
    r
}

#[test]
fn an_intact_log_matches_its_checkpoints_and_later_rows_are_a_warning() {
    with_rows(5, |s| {
        let cps = [checkpoint_at(&s, 2), checkpoint_at(&s, 5)];
        let report = s.verify_audit_against(&cps, Some(&key())).unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.verified, 2);
        assert_eq!(report.newest.as_ref().unwrap().rows, 5);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);

        // Rows written since: not a break, but said.
        s.audit(AuditEvent {
            meeting: "m1",
            actor: "host",
            subject: "host",
            event: "lock",
            outcome: "locked",
            detail: "",
        })
        .unwrap();
        let report = s.verify_audit_against(&cps, Some(&key())).unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert!(
            report.warnings.iter().any(|w| w.contains("rows 6 to 6")),
            "{:?}",
            report.warnings
        );
    })
}

#[test]
fn a_row_edited_with_every_later_hash_recomputed_is_detected() {
    with_rows(6, |s| {
        let cps = [
            checkpoint_at(&s, 2),
            checkpoint_at(&s, 4),
            checkpoint_at(&s, 6),
        ];
        // Change row 3, then recompute its hash and every later one.
        let mut rows = s.audit_records(None).unwrap();
        rows[2].outcome = "denied".into();
        let mut sql = String::new();
        for i in 2..rows.len() {
            rows[i].prev_hash = rows[i - 1].hash.clone();
            rows[i].hash = rows[i].expected_hash();
            sql += &format!(
                "UPDATE audit_log SET outcome = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {};",
                rows[i].outcome, rows[i].prev_hash, rows[i].hash, rows[i].seq
            );
        }
        tamper(&s, &sql);
        assert!(
            s.verify_audit().unwrap().is_ok(),
            "the chain alone cannot tell"
        );

        let report = s.verify_audit_against(&cps, Some(&key())).unwrap();
        assert!(!report.is_intact());
        assert_eq!(
            report.problems,
            [CheckpointProblem::Rewritten {
                from: 3,
                to: 4,
                at: cps[1].at
            }]
        );
        assert_eq!(report.newest.unwrap().rows, 2);
    })
}

#[test]
fn a_forged_row_appended_and_dated_in_the_past_is_detected() {
    with_rows(5, |s| {
        let cps = [checkpoint_at(&s, 5)];
        // Dated as if it happened a minute before the checkpoint.
        let first_at = cps[0].at - 60_000;
        tamper(&s, &insert_sql(&forged_row(&s, first_at)));
        assert!(
            s.verify_audit().unwrap().is_ok(),
            "the chain alone cannot tell"
        );

        let report = s.verify_audit_against(&cps, Some(&key())).unwrap();
        assert!(!report.is_intact());
        assert_eq!(
            report.problems,
            [CheckpointProblem::Appended {
                seq: 6,
                at: first_at,
                rows: 5,
                checkpoint_at: cps[0].at
            }]
        );
    })
}

#[test]
fn a_forged_row_appended_after_the_newest_checkpoint_is_reported_as_uncovered() {
    // Dated after the newest checkpoint, a forged row looks like a row not yet
    // checkpointed: the report says no checkpoint vouches for it.
    with_rows(5, |s| {
        let cps = [checkpoint_at(&s, 5)];
        tamper(&s, &insert_sql(&forged_row(&s, cps[0].at + 10)));
        let report = s.verify_audit_against(&cps, Some(&key())).unwrap();
        assert!(report.problems.is_empty(), "{report:?}");
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("rows 6 to 6 are not covered")),
            "{:?}",
            report.warnings
        );
    })
}

#[test]
fn truncating_the_newest_rows_is_detected() {
    with_rows(5, |s| {
        let cps = [checkpoint_at(&s, 3), checkpoint_at(&s, 5)];
        tamper(&s, "DELETE FROM audit_log WHERE seq > 3");
        assert!(
            s.verify_audit().unwrap().is_ok(),
            "the chain alone cannot tell"
        );

        let report = s.verify_audit_against(&cps, Some(&key())).unwrap();
        assert!(!report.is_intact());
        assert_eq!(
            report.problems,
            [CheckpointProblem::Truncated {
                rows: 5,
                stored: 3,
                at: cps[1].at
            }]
        );

        // Truncated, then grown back with other rows: the checkpoint's hash differs.
        s.audit(AuditEvent {
            meeting: "m1",
            actor: "x",
            subject: "y",
            event: "join",
            outcome: "admitted",
            detail: "",
        })
        .unwrap();
        tamper(&s, &insert_sql(&forged_row(&s, cps[1].at + 5)));
        let report = s.verify_audit_against(&cps, Some(&key())).unwrap();
        assert!(
            matches!(
                report.problems[..],
                [CheckpointProblem::Rewritten { from: 4, to: 5, .. }]
            ),
            "{report:?}"
        );
    })
}

#[test]
fn checkpoints_cannot_be_forged_without_the_key() {
    with_rows(3, |s| {
        let real = checkpoint_at(&s, 3);
        assert_eq!(real.check_mac(Some(&key())), MacCheck::Verified);
        assert_eq!(real.check_mac(None), MacCheck::Unchecked);

        // Someone rewrote the log and wants a checkpoint for it, claiming the key.
        let mut forged = real.clone();
        forged.head = "ab".repeat(32);
        assert_eq!(forged.check_mac(Some(&key())), MacCheck::Wrong);
        let other = AuditKey::from_bytes(&[9u8; 32]).unwrap();
        let mut forged2 = Checkpoint::new(&s.audit_head().unwrap(), real.at, Some(&other));
        forged2.key = real.key.clone();
        assert_eq!(forged2.check_mac(Some(&key())), MacCheck::Wrong);
        let report = s
            .verify_audit_against(&[real.clone(), forged2], Some(&key()))
            .unwrap();
        assert!(matches!(
            report.problems[..],
            [CheckpointProblem::BadMac { rows: 3, .. }]
        ));

        // Unkeyed checkpoints detect damage only.
        let unkeyed = Checkpoint::new(&s.audit_head().unwrap(), real.at, None);
        assert_eq!(unkeyed.check_mac(Some(&key())), MacCheck::Unkeyed);
        let report = s.verify_audit_against(&[unkeyed], None).unwrap();
        assert!(report.is_intact());
        assert!(report.warnings.iter().any(|w| w.contains("no audit key")));
        assert!(report.warnings.iter().any(|w| w.contains("unkeyed")));

        assert!(AuditKey::from_bytes(&[1u8; 31]).is_err(), "too short");
        assert!(
            !format!("{:?}", key()).contains("7, 7"),
            "no key bytes in Debug"
        );
    })
}

#[test]
fn checkpoints_round_trip_through_their_file() {
    let dir = std::env::temp_dir().join(format!("convene-cp-{}", new_meeting_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("checkpoints.jsonl");
    assert_eq!(checkpoint::read_from(&path).unwrap().0, []);
    let s = Storage::in_memory().unwrap();
    add_rows(&s, 2);
    {
        let (a, b) = (checkpoint_at(&s, 1), checkpoint_at(&s, 2));
        checkpoint::append_to(&path, &a).unwrap();
        checkpoint::append_to(&path, &b).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"not json\n"))
            .unwrap();
        let (cps, bad) = checkpoint::read_from(&path).unwrap();
        assert_eq!(cps, [a, b]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 3);
        std::fs::remove_dir_all(dir).ok();
    }
}
