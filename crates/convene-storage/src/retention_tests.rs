//! Each kind of data goes at its time and not before, with a clock the test
//! sets; what is left of the audit log stays verifiable.

use std::collections::HashSet;

use super::*;
use crate::checkpoint::CheckpointProblem;

const DAY: i64 = 24 * 60 * 60 * 1000;
/// 2026-01-01, a day to count from.
const T0: i64 = 1_767_225_600_000;

fn key() -> AuditKey {
    AuditKey::from_bytes(&[9u8; 32]).unwrap()
}

fn row(s: &Storage, meeting: &str, at: i64) {
    s.write_batch(|b| {
        b.audit(
            AuditEvent {
                meeting,
                actor: "p1",
                subject: "p1",
                event: "join",
                outcome: "admitted",
                detail: "",
            },
            at,
        )
    })
    .unwrap()
    .unwrap();
}

/// A meeting created at `created` (ms), ended at `ended` if given.
fn meeting(s: &Storage, created: i64, ended: Option<i64>) -> String {
    let (m, _) = s.create_meeting("Board", None, "{}").unwrap();
    s.raw_exec(
        "UPDATE meetings SET created_at = ?2, ended_at = ?3 WHERE id = ?1",
        db::p![&m.id, created / 1000, ended],
    )
    .unwrap();
    s.set_grant(&m.id, "p1", Some("co-host")).unwrap();
    s.bar(&m.id, "p2").unwrap();
    m.id
}

fn count(s: &Storage, table: &str, id: &str) -> i64 {
    s.raw_int(
        &format!(
            "SELECT count(*) FROM {table} WHERE {} = ?1",
            if table == "meetings" { "id" } else { "meeting" }
        ),
        db::p![id],
    )
    .unwrap()
}

const MEETINGS_30: Retention = Retention {
    meetings_days: Some(30),
    audit_days: None,
};

#[test]
fn a_meeting_goes_its_days_after_it_ended_with_its_grants_and_bars() {
    each_engine(a_meeting_goes_its_days_after_it_ended_with_its_grants_and_bars_on)
}

fn a_meeting_goes_its_days_after_it_ended_with_its_grants_and_bars_on(s: Storage) {
    let ended = meeting(&s, T0, Some(T0 + DAY));
    let none = HashSet::new();
    let at = |t| s.purge(&MEETINGS_30, t, &none, None, false).unwrap();
    assert!(
        at(T0 + 31 * DAY - 1).meetings.is_empty(),
        "kept until 30 days after the end"
    );
    assert_eq!(count(&s, "meetings", &ended), 1);
    assert_eq!(at(T0 + 31 * DAY + 1).meetings, vec![ended.clone()]);
    for table in ["meetings", "meeting_grants", "meeting_bars"] {
        assert_eq!(count(&s, table, &ended), 0, "{table}");
    }
}

#[test]
fn a_link_never_ended_counts_from_its_last_activity_and_an_open_meeting_stays() {
    each_engine(a_link_never_ended_counts_from_its_last_activity_and_an_open_meeting_stays_on)
}

fn a_link_never_ended_counts_from_its_last_activity_and_an_open_meeting_stays_on(s: Storage) {
    let used = meeting(&s, T0, None);
    let idle = meeting(&s, T0, None);
    let open = meeting(&s, T0, None);
    row(&s, &used, T0 + 20 * DAY);
    let live: HashSet<String> = [open.clone()].into();
    let r = s
        .purge(&MEETINGS_30, T0 + 40 * DAY, &live, None, false)
        .unwrap();
    assert_eq!(r.meetings, vec![idle.clone()], "only the idle link goes");
    assert_eq!(count(&s, "meetings", &used), 1);
    assert_eq!(count(&s, "meetings", &open), 1, "a meeting open now stays");
    let r = s
        .purge(&MEETINGS_30, T0 + 51 * DAY, &live, None, false)
        .unwrap();
    assert_eq!(r.meetings, vec![used]);
    // Open on another node of a cluster (this one does not know it): its
    // people's places, said current seconds ago, keep it; stale ones do not.
    let elsewhere = meeting(&s, T0, None);
    let now = T0 + 60 * DAY;
    s.write_batch(|b| b.hold_place(&elsewhere, "p1", "{}", now - 5_000).unwrap())
        .unwrap();
    let none = HashSet::new();
    let r = s.purge(&MEETINGS_30, now, &none, None, false).unwrap();
    assert_eq!(r.meetings, vec![open], "open elsewhere: kept");
    let r = s
        .purge(&MEETINGS_30, now + 10 * 60_000, &none, None, false)
        .unwrap();
    assert_eq!(
        r.meetings,
        vec![elsewhere],
        "places ten minutes stale: gone"
    );
}

#[test]
fn a_dry_run_reports_and_changes_nothing() {
    each_engine(a_dry_run_reports_and_changes_nothing_on)
}

fn a_dry_run_reports_and_changes_nothing_on(s: Storage) {
    let ended = meeting(&s, T0, Some(T0));
    row(&s, &ended, T0);
    let keep = Retention {
        meetings_days: Some(1),
        audit_days: Some(1),
    };
    let before = s.audit_records(None).unwrap();
    let r = s
        .purge(&keep, T0 + 10 * DAY, &HashSet::new(), None, true)
        .unwrap();
    assert!(r.dry_run && r.record.is_none());
    assert_eq!((r.meetings.len(), r.audit_rows), (1, 1));
    assert_eq!(count(&s, "meetings", &ended), 1);
    assert_eq!(s.audit_records(None).unwrap(), before);
    assert!(s.purge_records().unwrap().is_empty());
}

#[test]
fn old_audit_rows_go_from_the_front_and_the_rest_still_verifies() {
    each_engine(old_audit_rows_go_from_the_front_and_the_rest_still_verifies_on)
}

fn old_audit_rows_go_from_the_front_and_the_rest_still_verifies_on(s: Storage) {
    for day in 0..10 {
        row(&s, "m1", T0 + day * DAY);
    }
    // A checkpoint of row 3 (before the purge) and of row 8.
    let records = s.audit_records(None).unwrap();
    let cp = |i: usize| {
        Checkpoint::new(
            &AuditHead {
                rows: records[i - 1].seq,
                hash: records[i - 1].hash.clone(),
            },
            records[i - 1].at,
            Some(&key()),
        )
    };
    let checkpoints = [cp(3), cp(8)];
    let keep = Retention {
        meetings_days: None,
        audit_days: Some(5),
    };
    let none = HashSet::new();
    // Day 9 + 5: rows dated before day 4 go (rows 1-4, days 0-3)... not before.
    let early = s
        .purge(&keep, T0 + 8 * DAY, &none, Some(&key()), false)
        .unwrap();
    assert_eq!((early.audit_from, early.audit_to), (1, 3));
    let r = s
        .purge(&keep, T0 + 9 * DAY, &none, Some(&key()), false)
        .unwrap();
    assert_eq!((r.audit_from, r.audit_to, r.audit_rows), (4, 4, 1));
    let left = s.audit_records(None).unwrap();
    assert_eq!(left.first().unwrap().seq, 5, "rows 1-4 are gone");
    // Two rows record the purges themselves.
    let purges: Vec<_> = left.iter().filter(|r| r.event == "purge").collect();
    assert_eq!(purges.len(), 2);
    assert!(
        purges[1].detail.contains("\"auditTo\":4"),
        "{}",
        purges[1].detail
    );
    // New rows follow on; the chain verifies from the purge record.
    row(&s, "m1", T0 + 10 * DAY);
    let head = s.verify_audit().unwrap().expect("the rest verifies");
    assert_eq!(head.rows, 13);
    let report = s.verify_audit_against(&checkpoints, Some(&key())).unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("rows 1 to 4 were purged")
                && w.contains("1 checkpoint(s) of purged rows")),
        "{:?}",
        report.warnings
    );
    // Rows above the purge record cannot be deleted, in the middle or at the end.
    for seq in [6, 13] {
        let e = s
            .raw_exec("DELETE FROM audit_log WHERE seq = ?1", db::p![seq])
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
    }
    assert!(s.raw_exec("DELETE FROM audit_purges", &[]).is_err());
    // Nor emptied at one stroke (PostgreSQL's TRUNCATE skips row triggers).
    if s.is_shared() {
        for table in ["audit_log", "audit_purges"] {
            let e = s.raw_batch(&format!("TRUNCATE {table}")).unwrap_err();
            assert!(e.to_string().contains("append-only"), "{e}");
        }
        assert_eq!(s.verify_audit().unwrap().unwrap().rows, 13);
    }
}

#[test]
fn a_purge_record_made_without_the_key_is_reported_forged() {
    each_engine(a_purge_record_made_without_the_key_is_reported_forged_on)
}

fn a_purge_record_made_without_the_key_is_reported_forged_on(s: Storage) {
    for day in 0..4 {
        row(&s, "m1", T0 + day * DAY);
    }
    // Someone with the database but not the key deletes rows 1-2 and writes
    // a record for them (keyed with another key, or unkeyed).
    let keep = Retention {
        meetings_days: None,
        audit_days: Some(1),
    };
    let other = AuditKey::from_bytes(&[1u8; 32]).unwrap();
    let head = &s.audit_records(None).unwrap()[1];
    let forged = Checkpoint::new(
        &AuditHead {
            rows: 2,
            hash: head.hash.clone(),
        },
        T0,
        Some(&other),
    );
    let mut tampered = forged.clone();
    tampered.key = Some(key().id());
    s.raw_exec(
        "INSERT INTO audit_purges (rows, head, at, key, mac) VALUES (?1, ?2, ?3, ?4, ?5)",
        db::p![
            2i64,
            &tampered.head,
            tampered.at,
            tampered.key.as_deref(),
            &tampered.mac
        ],
    )
    .unwrap();
    s.raw_exec("DELETE FROM audit_log WHERE seq <= 2", &[])
        .unwrap();
    assert!(
        s.verify_audit().unwrap().is_ok(),
        "the chain alone cannot tell"
    );
    let report = s.verify_audit_against(&[], Some(&key())).unwrap();
    assert_eq!(
        report.problems,
        vec![CheckpointProblem::BadPurge { rows: 2, at: T0 }]
    );
    // A real purge with the key afterwards is fine and says so.
    let r = s
        .purge(&keep, T0 + 10 * DAY, &HashSet::new(), Some(&key()), false)
        .unwrap();
    assert_eq!((r.audit_from, r.audit_to), (3, 4));
    assert_eq!(
        r.record.unwrap().check_mac(Some(&key())),
        crate::checkpoint::MacCheck::Verified
    );
}

#[test]
fn purging_every_row_keeps_the_chain_going() {
    each_engine(purging_every_row_keeps_the_chain_going_on)
}

fn purging_every_row_keeps_the_chain_going_on(s: Storage) {
    row(&s, "m1", T0);
    let keep = Retention {
        meetings_days: None,
        audit_days: Some(1),
    };
    let none = HashSet::new();
    s.purge(&keep, T0 + 5 * DAY, &none, None, false).unwrap();
    // Now only the purge's own row is left; purge again later: it goes too.
    let r = s.purge(&keep, T0 + 10 * DAY, &none, None, false).unwrap();
    assert_eq!((r.audit_from, r.audit_to), (2, 2));
    let left = s.audit_records(None).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].seq, 3);
    assert!(s.verify_audit().unwrap().is_ok());
    // A purge that finds nothing writes nothing.
    let r = s.purge(&keep, T0 + 10 * DAY, &none, None, false).unwrap();
    assert!(r.is_empty());
    assert_eq!(s.audit_records(None).unwrap().len(), 1);
}

/// Someone with only the database writes an unkeyed record, or one naming
/// another key, deletes the front of the log, and (the worst) claims rows
/// far beyond the head: with the key, each is caught.
#[test]
fn purge_records_not_made_with_the_key_or_that_do_not_fit_are_caught() {
    each_engine(purge_records_not_made_with_the_key_or_that_do_not_fit_are_caught_on)
}

fn purge_records_not_made_with_the_key_or_that_do_not_fit_are_caught_on(s0: Storage) {
    let fresh = || -> Storage {
        if s0.is_shared() {
            Storage::connect(&crate::testing::postgres_url()).unwrap()
        } else {
            Storage::in_memory().unwrap()
        }
    };
    for (key_id, rows_claimed) in [(None, 2), (Some("x"), 2), (None, 1_000_000_000)] {
        let s = fresh();
        for day in 0..4 {
            row(&s, "m1", T0 + day * DAY);
        }
        let hash = s.audit_records(None).unwrap()[1].hash.clone();
        // Well made, each MAC holding for what it names: unkeyed, or another key.
        let other = AuditKey::from_bytes(&[3u8; 32]).unwrap();
        let mut record = Checkpoint::new(
            &AuditHead {
                rows: rows_claimed,
                hash,
            },
            T0,
            key_id.map(|_| &other),
        );
        if key_id.is_some() {
            assert_eq!(
                record.check_mac(Some(&key())),
                crate::checkpoint::MacCheck::Unchecked
            );
        } else {
            assert_eq!(
                record.check_mac(Some(&key())),
                crate::checkpoint::MacCheck::Unkeyed
            );
        }
        record.key = record.key.map(|_| "x".into()).filter(|_| key_id.is_some());
        s.raw_exec(
            "INSERT INTO audit_purges (rows, head, at, key, mac) VALUES (?1, ?2, ?3, ?4, ?5)",
            db::p![
                record.rows,
                &record.head,
                record.at,
                record.key.as_deref(),
                &record.mac
            ],
        )
        .unwrap();
        s.raw_exec(
            "DELETE FROM audit_log WHERE seq <= ?1",
            db::p![rows_claimed],
        )
        .unwrap();
        let report = s.verify_audit_against(&[], Some(&key())).unwrap();
        assert!(
            !report.is_intact(),
            "{key_id:?} {rows_claimed}: {:?} {:?}",
            report.chain,
            report.problems
        );
        // Without the key it cannot be told, and verify says so.
        let unkeyed = s.verify_audit_against(&[], None).unwrap();
        assert!(
            unkeyed
                .warnings
                .iter()
                .any(|w| w.contains("purge records were not authenticated"))
                || !unkeyed.is_intact(),
            "{:?}",
            unkeyed.warnings
        );
    }
}
