//! Records and retention against the real binary and a real database: what
//! `convene purge` removes and when, that the running server purges by
//! itself, and that a purge cut short by kill -9 leaves a consistent,
//! verifiable database.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use convene_storage::{audit, AuditRecord, Storage};
use rusqlite::params;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn folder() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "convene-records-{}",
        convene_storage::new_meeting_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn convene(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_convene"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("CONVENE_RETAIN_MEETINGS_DAYS")
        .env_remove("CONVENE_RETAIN_AUDIT_DAYS")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `n` audit rows dated from `days_ago` days back, one a second, appended in one
/// transaction (as the server's writer would, only faster).
fn old_rows(data: &Path, n: i64, days_ago: i64) {
    Storage::open(data).unwrap();
    let mut db = rusqlite::Connection::open(data.join("convene.db")).unwrap();
    let tx = db.transaction().unwrap();
    let (mut seq, mut prev): (i64, String) = tx
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or((0, audit::GENESIS.to_string()));
    let start = convene_storage::unix_millis() - days_ago * DAY_MS;
    for i in 0..n {
        seq += 1;
        let mut rec = AuditRecord {
            seq,
            at: start + i * 1_000,
            meeting: "abcd-efgh-jkmn".into(),
            actor: "p1".into(),
            subject: "p1".into(),
            event: "join".into(),
            outcome: "admitted".into(),
            detail: String::new(),
            prev_hash: prev.clone(),
            hash: String::new(),
        };
        rec.hash = rec.expected_hash();
        tx.execute(
            "INSERT INTO audit_log (seq, at, meeting, actor, subject, event, outcome, detail, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![rec.seq, rec.at, rec.meeting, rec.actor, rec.subject, rec.event, rec.outcome, rec.detail, rec.prev_hash, rec.hash],
        )
        .unwrap();
        prev = rec.hash;
    }
    tx.commit().unwrap();
}

/// A meeting that ended `days_ago` days back; returns its id.
fn ended_meeting(data: &Path, days_ago: i64) -> String {
    let s = Storage::open(data).unwrap();
    let (m, _) = s.create_meeting("Old board", None, "{}").unwrap();
    drop(s);
    let db = rusqlite::Connection::open(data.join("convene.db")).unwrap();
    db.execute(
        "UPDATE meetings SET created_at = ?2, ended_at = ?3 WHERE id = ?1",
        params![
            m.id,
            (convene_storage::unix_millis() - days_ago * DAY_MS) / 1000,
            convene_storage::unix_millis() - days_ago * DAY_MS
        ],
    )
    .unwrap();
    m.id
}

fn meeting_exists(data: &Path, id: &str) -> bool {
    Storage::open(data).unwrap().meeting(id).unwrap().is_some()
}

#[test]
fn purge_dry_run_says_what_would_go_and_now_removes_only_that() {
    let data = folder();
    let old = ended_meeting(&data, 100);
    let recent = ended_meeting(&data, 10);
    old_rows(&data, 50, 400);
    old_rows(&data, 5, 2);
    let before = Storage::open(&data).unwrap().audit_records(None).unwrap();

    let dry = convene(&data, &["purge", "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    let out = text(&dry);
    assert!(
        out.contains(&format!("would remove 1 meeting(s): {old}")),
        "{out}"
    );
    assert!(
        out.contains("would remove 50 audit row(s): rows 1 to 50"),
        "{out}"
    );
    assert!(out.contains("nothing was changed"), "{out}");
    assert!(meeting_exists(&data, &old));
    assert_eq!(
        Storage::open(&data).unwrap().audit_records(None).unwrap(),
        before,
        "a dry run changes nothing"
    );

    // Neither mode, or both: refused, nothing done.
    for args in [&["purge"][..], &["purge", "--dry-run", "--now"]] {
        let o = convene(&data, args);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    }
    assert!(meeting_exists(&data, &old));

    let now = convene(&data, &["purge", "--now"]);
    assert!(now.status.success(), "{}", text(&now));
    assert!(text(&now).contains("removed 50 audit row(s): rows 1 to 50"));
    assert!(!meeting_exists(&data, &old));
    assert!(meeting_exists(&data, &recent), "kept: ended 10 days ago");
    let left = Storage::open(&data).unwrap().audit_records(None).unwrap();
    assert_eq!(left.first().unwrap().seq, 51);
    assert_eq!(left.last().unwrap().event, "purge");

    // What is left verifies, and verify says what was purged.
    let v = convene(&data, &["audit", "verify"]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert!(
        text(&v).contains("rows 1 to 50 were purged"),
        "{}",
        text(&v)
    );

    // Retention switched off: nothing more goes.
    let off = convene(
        &data,
        &[
            "--retain-meetings-days",
            "0",
            "--retain-audit-days",
            "0",
            "purge",
            "--now",
        ],
    );
    assert!(
        text(&off).contains("removed 0 meeting(s)"),
        "{}",
        text(&off)
    );
    assert!(meeting_exists(&data, &recent));
    std::fs::remove_dir_all(data).ok();
}

/// kill -9 at different moments of a purge of many rows: each time the
/// database is either as before or fully purged, and verifies.
#[test]
fn a_purge_cut_short_by_kill_9_leaves_a_consistent_verifiable_database() {
    let data = folder();
    old_rows(&data, 200_000, 400);
    // How long a whole purge takes here, on a copy: the kills are spread over it.
    let copy = folder();
    for f in ["convene.db", "convene.db-wal", "convene.db-shm"] {
        let _ = std::fs::copy(data.join(f), copy.join(f));
    }
    let t = std::time::Instant::now();
    let whole = convene(&copy, &["purge", "--now"]);
    assert!(
        text(&whole).contains("removed 200000 audit row(s)"),
        "{}",
        text(&whole)
    );
    let took = t.elapsed().as_millis() as u64;
    std::fs::remove_dir_all(copy).ok();
    let mut outcomes = Vec::new();
    for delay_ms in [
        took / 10,
        took * 3 / 10,
        took / 2,
        took * 7 / 10,
        took * 9 / 10,
        took * 2,
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_convene"))
            .arg("--data-dir")
            .arg(&data)
            .args(["purge", "--now"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let s = Storage::open(&data).unwrap();
        let rows = s.audit_records(None).unwrap();
        let first = rows.first().map(|r| r.seq);
        assert!(
            s.verify_audit().unwrap().is_ok(),
            "after kill at {delay_ms} ms"
        );
        assert!(
            first == Some(1) || (first == Some(200_001) && rows.len() == 1),
            "all or nothing: first row {first:?}, {} rows",
            rows.len()
        );
        outcomes.push((delay_ms, status.code(), first));
        if first != Some(1) {
            break; // purged: nothing left to interrupt
        }
    }
    let v = convene(&data, &["audit", "verify"]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    eprintln!(
        "whole purge {took} ms; kill -9 outcomes (delay, exit code, first row): {outcomes:?}"
    );
    assert_eq!(
        outcomes.last().unwrap().2,
        Some(200_001),
        "given time, the purge completes: {outcomes:?}"
    );
    std::fs::remove_dir_all(data).ok();
}

/// The running server purges at start and spares nothing it should keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_purges_by_itself() {
    let data = folder();
    let old = ended_meeting(&data, 100);
    let recent = ended_meeting(&data, 10);
    let dir = data.clone();
    let server = common::server_with(move |c| c.data_dir = dir).await;
    let mut gone = false;
    for _ in 0..50 {
        let (status, _) = common::http(&server, "GET", &format!("/api/meetings/{old}"), None).await;
        if status == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the meeting ended 100 days ago is purged");
    let (status, _) = common::http(&server, "GET", &format!("/api/meetings/{recent}"), None).await;
    assert_eq!(status, 200, "the one ended 10 days ago is kept");
    server.shutdown().await;
    std::fs::remove_dir_all(data).ok();
}
