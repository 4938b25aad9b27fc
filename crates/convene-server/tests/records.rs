//! Records and retention against the real binary and a real database: what
//! `convene purge` removes and when, that the running server purges by
//! itself, and that a purge cut short by kill -9 leaves a consistent,
//! verifiable database.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
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

use common::binary::{self, run as convene, text};

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

    // Neither mode, or both, or a retention that is no number of days:
    // refused, nothing done.
    for args in [
        &["purge"][..],
        &["purge", "--dry-run", "--now"],
        &["purge", "--now", "--retain-audit-days", "-1"],
        &["purge", "--now", "--retain-meetings-days", "2026-01-01"],
        &["purge", "--now", "--retain-audit-days", "99999999"],
    ] {
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
        let mut child = binary::convene()
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
    // The writer goes on after the purge without taking it for tampering.
    let _ = common::create_meeting(&server, "After the purge").await;
    server.shutdown().await;
    let rows = Storage::open(&data).unwrap().audit_records(None).unwrap();
    assert!(rows.iter().any(|r| r.event == "purge"), "{rows:?}");
    assert!(
        !rows.iter().any(|r| r.outcome == "changed elsewhere"),
        "the server's own purge is not an alarm: {rows:?}"
    );
    let v = convene(&data, &["audit", "verify"]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    std::fs::remove_dir_all(data).ok();
}

async fn admin(server: &convene_server::RunningServer, path: &str) -> (u16, String) {
    common::http_with(
        server,
        "GET",
        path,
        None,
        "Authorization: Bearer test-admin-token\r\n",
    )
    .await
}

fn lines(jsonl: &str) -> Vec<serde_json::Value> {
    jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn of_kind<'a>(v: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    v.iter().filter(|l| l["kind"] == kind).collect()
}

/// A real meeting (a host, a guest the host removes, a refused guess), then
/// its export and a person's, through the admin API and the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_hold_exactly_the_meetings_rows_and_the_persons() {
    use convene_client::{Client, JoinOptions};
    let data = folder();
    let dir = data.clone();
    let server = common::server_with(move |c| c.data_dir = dir).await;
    let (status, body) = common::http(
        &server,
        "POST",
        "/api/meetings",
        Some(
            &serde_json::json!({"title": "Budget <b>&</b> round 2", "passcode": "4711 blue"})
                .to_string(),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let host_key = created["hostKey"].as_str().unwrap().to_string();
    let other = common::create_meeting(&server, "Elsewhere").await;

    let url = server.url.clone();
    let join = |name: &str, passcode: Option<&str>, host: bool| {
        let opts = JoinOptions {
            passcode: passcode.map(str::to_string),
            host_key: host.then(|| host_key.clone()),
            ..JoinOptions::default()
        };
        let (url, id, name) = (url.clone(), id.clone(), name.to_string());
        async move { Client::join_with(&url, &id, &name, opts).await }
    };
    let mut hana = join("Hana", None, true).await.unwrap();
    assert!(join("Bob", Some("wrong one"), false).await.is_err());
    let bob = join("Bob", Some("4711 blue"), false).await.unwrap();
    let bob_id = bob.participant_id.clone();
    let bob_elsewhere = Client::join(&url, &other, "Bob", None).await.unwrap();
    hana.send(serde_json::json!({"type": "remove", "participantId": bob_id}))
        .await
        .unwrap();
    hana.run_until(Duration::from_secs(1), |_| false).await;
    hana.leave().await;
    drop(bob);
    drop(bob_elsewhere);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The meeting: exactly its audit rows, its two people, no secrets.
    let (status, jsonl) = admin(&server, &format!("/api/admin/export/meeting/{id}")).await;
    assert_eq!(status, 200, "{jsonl}");
    let export = lines(&jsonl);
    let (_, audit) = admin(&server, &format!("/api/admin/audit?meeting={id}")).await;
    let seqs = |rows: Vec<&serde_json::Value>| -> Vec<i64> {
        rows.iter().map(|r| r["seq"].as_i64().unwrap()).collect()
    };
    assert_eq!(
        seqs(of_kind(&export, "audit")),
        seqs(lines(&audit).iter().collect()),
        "the meeting's rows, all of them and only them"
    );
    let meeting = of_kind(&export, "meeting");
    assert_eq!(meeting[0]["title"], "Budget <b>&</b> round 2");
    assert_eq!(meeting[0]["hasPasscode"], true);
    let people: Vec<(String, String)> = of_kind(&export, "participant")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["leftAs"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        people,
        vec![
            ("Hana".into(), "left".into()),
            ("Bob".into(), "removed".into())
        ]
    );
    let outcomes: Vec<&str> = of_kind(&export, "audit")
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.iter().any(|o| o.contains("wrong passcode")),
        "the refused guess is in it: {outcomes:?}"
    );
    for secret in ["argon2", "4711 blue", &host_key] {
        assert!(!jsonl.contains(secret), "{secret} in the export");
    }

    // The report: readable, escaped, styled under a policy that allows its
    // own style sheet (by hash) and nothing else.
    let (status, head, html) = common::http_full(
        &server,
        "GET",
        &format!("/api/admin/export/meeting/{id}?format=html"),
        None,
        "Authorization: Bearer test-admin-token\r\n",
    )
    .await;
    assert_eq!(status, 200);
    let csp = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(": ")?;
            name.eq_ignore_ascii_case("content-security-policy")
                .then(|| value.to_string())
        })
        .expect("a policy");
    let style = html
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(css, _)| css)
        .expect("a style sheet");
    let hash = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style))
    };
    assert!(
        csp.contains(&format!("style-src 'sha256-{hash}'")) && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(html.starts_with("<!doctype html>"));
    assert!(
        html.contains("Budget &lt;b&gt;&amp;&lt;/b&gt; round 2"),
        "escaped title"
    );
    assert!(!html.contains("<b>&</b>"));
    assert!(html.contains("guest (unverified)"));

    // The person: Bob in both meetings; every row is about him.
    let (status, person) = admin(&server, "/api/admin/export/person?q=BOB").await;
    assert_eq!(status, 200, "{person}");
    let person = lines(&person);
    let places: Vec<&str> = of_kind(&person, "participant")
        .iter()
        .map(|p| p["meeting"].as_str().unwrap())
        .collect();
    assert_eq!(places.len(), 2, "{places:?}");
    assert!(places.contains(&id.as_str()) && places.contains(&other.as_str()));
    let rows = of_kind(&person, "audit");
    assert!(rows.len() >= 4, "{rows:?}");
    for r in &rows {
        let bob_here = of_kind(&person, "participant")
            .iter()
            .find(|p| p["meeting"] == r["meeting"])
            .map(|p| p["participant"].clone())
            .unwrap();
        assert!(
            r["actor"] == bob_here || r["subject"] == bob_here,
            "a row not about Bob: {r}"
        );
    }
    assert!(rows.iter().any(|r| r["event"] == "remove"), "his removal");
    assert!(
        !rows.iter().any(|r| r["subject"] == "-"),
        "no refusals of unknown people"
    );

    // Bad requests get clear errors.
    for (path, want) in [
        ("/api/admin/export/meeting/not-an-id", 400),
        ("/api/admin/export/meeting/aaaa-bbbb-cccc", 404),
        ("/api/admin/export/person", 400),
        ("/api/admin/export/person?q=x", 400),
        (
            &format!("/api/admin/export/meeting/{id}?format=pdf") as &str,
            400,
        ),
    ] {
        assert_eq!(admin(&server, path).await.0, want, "{path}");
    }
    let (status, _) = common::http(
        &server,
        "GET",
        &format!("/api/admin/export/meeting/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 401, "the admin token is needed");
    server.shutdown().await;

    // The command line gives the same export.
    let cli = convene(&data, &["export", "meeting", &id]);
    assert!(cli.status.success(), "{}", text(&cli));
    let cli_rows = lines(&String::from_utf8_lossy(&cli.stdout));
    assert_eq!(
        seqs(of_kind(&cli_rows, "audit")),
        seqs(of_kind(&export, "audit"))
    );
    let bad = convene(&data, &["export", "meeting", "nonsense"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("is not a meeting id"));
    let unknown = convene(&data, &["export", "meeting", "aaaa-bbbb-cccc"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    let html = convene(&data, &["export", "person", "bob", "--format", "html"]);
    assert!(String::from_utf8_lossy(&html.stdout).contains("Records about bob"));
    std::fs::remove_dir_all(data).ok();
}

/// A wrong passcode from 198.51.100.23 (through a trusted proxy): by default
/// neither the audit log nor the info-level log names the address; asked
/// for (`--audit-client-addresses`), the audit row does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_addresses_are_kept_only_where_the_deployment_asks() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    const FROM: &str = "198.51.100.23";
    for ask in [false, true] {
        let data = folder();
        let mut cmd = binary::convene();
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--media-workers",
            "1",
            "--log",
            "info",
        ])
        .args(["--trusted-proxy", "127.0.0.1"])
        .arg("--data-dir")
        .arg(&data);
        if ask {
            cmd.arg("--audit-client-addresses");
        }
        let mut server = binary::start_command(&mut cmd);
        let log = server.log();
        let url = server.url.clone();
        let client = reqwest::Client::new();
        let created: serde_json::Value = client
            .post(format!("{url}/api/meetings"))
            .header("X-Forwarded-For", FROM)
            .json(&serde_json::json!({"title": "Addresses", "passcode": "4711 blue"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap().to_string();
        let ws_url = format!("{}/api/meetings/{id}/ws", url.replace("http", "ws"));
        let mut req = ws_url.into_client_request().unwrap();
        req.headers_mut()
            .insert("X-Forwarded-For", FROM.parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        ws.send(Message::text(
            r#"{"type":"join","protocol":1,"name":"Eve","passcode":"not it at all"}"#,
        ))
        .await
        .unwrap();
        let reply = loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => break t.to_string(),
                Ok(Some(Ok(_))) => continue,
                other => panic!("no reply: {other:?}"),
            }
        };
        assert!(reply.contains("wrong-passcode"), "{reply}");
        drop(ws);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // SIGTERM: the writer flushes before the process ends.
        assert!(Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status()
            .unwrap()
            .success());
        server.child.wait().unwrap();
        let log = log.join().unwrap().join("\n");
        assert!(
            !log.contains(FROM),
            "the info log names no client address:\n{log}"
        );
        let rows = Storage::open(&data)
            .unwrap()
            .audit_records(Some(&id))
            .unwrap();
        let refusal = rows
            .iter()
            .find(|r| r.outcome.contains("wrong passcode"))
            .unwrap_or_else(|| panic!("{rows:?}"));
        let named = rows.iter().any(|r| format!("{r:?}").contains(FROM));
        assert_eq!(named, ask, "address in the audit log: {rows:?}");
        assert_eq!(
            refusal.actor,
            if ask {
                format!("client {FROM}")
            } else {
                "client".into()
            }
        );
        std::fs::remove_dir_all(data).ok();
    }
}

/// Bytes of the database files (the main file and its write-ahead log).
fn database_bytes(data: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for f in ["convene.db", "convene.db-wal"] {
        all.extend(std::fs::read(data.join(f)).unwrap_or_default());
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// OFFICIAL keeps chat 30 days (policies/uk.toml): sealed in the database,
/// shown to people who join later, after a restart too, and exported.
/// OFFICIAL-SENSITIVE keeps none: relayed only, nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_is_kept_sealed_only_where_the_level_keeps_it() {
    use convene_client::{Client, JoinOptions};
    let data = folder();
    let dir = data.clone();
    let server = common::server_with(move |c| c.data_dir = dir).await;
    let create = |level: &str| {
        let body = serde_json::json!({"title": "Chat", "level": level, "passcode": "4711 blue", "raise": true}).to_string();
        let server = &server;
        async move {
            let (status, body) = common::http(server, "POST", "/api/meetings", Some(&body)).await;
            assert_eq!(status, 201, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            (
                v["id"].as_str().unwrap().to_string(),
                v["hostKey"].as_str().unwrap().to_string(),
            )
        }
    };
    let (kept, kept_key) = create("official").await;
    let (relayed, relayed_key) = create("official-sensitive").await;
    const SAID: &str = "Minutes: the budget of 4.2 million is approved";
    const UNSAID: &str = "Off the record: the other bid was cheaper";

    let url = server.url.clone();
    let mut ann = Client::join_with(&url, &kept, "Ann", JoinOptions::host(&kept_key))
        .await
        .unwrap();
    ann.chat(SAID).await.unwrap();
    ann.run_until(Duration::from_secs(2), |c| {
        c.chat.iter().any(|m| m["text"] == SAID)
    })
    .await;
    let mut sam = Client::join_with(&url, &relayed, "Sam", JoinOptions::host(&relayed_key))
        .await
        .unwrap();
    let mut tom = Client::join_with(&url, &relayed, "Tom", JoinOptions::host(&relayed_key))
        .await
        .unwrap();
    sam.chat(UNSAID).await.unwrap();
    let (_, heard) = tokio::join!(
        sam.run_until(Duration::from_secs(1), |_| false),
        tom.run_until(Duration::from_secs(2), |c| c
            .chat
            .iter()
            .any(|m| m["text"] == UNSAID))
    );
    assert!(heard, "chat is relayed where it is not kept");

    // Later joiners: the kept chat, and none of the other.
    let bob = Client::join_with(&url, &kept, "Bob", JoinOptions::host(&kept_key))
        .await
        .unwrap();
    assert!(bob.chat.iter().any(|m| m["text"] == SAID), "{:?}", bob.chat);
    let una = Client::join_with(&url, &relayed, "Una", JoinOptions::host(&relayed_key))
        .await
        .unwrap();
    assert!(una.chat.is_empty(), "{:?}", una.chat);
    drop((ann, bob, sam, tom, una));
    server.shutdown().await;

    // On disk: sealed, and only the kept meeting's.
    let db = database_bytes(&data);
    assert!(
        !contains(&db, "budget of 4.2"),
        "kept chat is sealed at rest"
    );
    assert!(
        !contains(&db, "other bid"),
        "unkept chat is not stored at all"
    );
    let rows: Vec<String> = rusqlite::Connection::open(data.join("convene.db"))
        .unwrap()
        .prepare("SELECT meeting FROM meeting_chat")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, vec![kept.clone()]);

    // After a restart, a later joiner still sees it.
    let dir = data.clone();
    let server = common::server_with(move |c| c.data_dir = dir).await;
    let cy = Client::join_with(&server.url, &kept, "Cy", JoinOptions::host(&kept_key))
        .await
        .unwrap();
    assert!(cy.chat.iter().any(|m| m["text"] == SAID), "{:?}", cy.chat);
    drop(cy);
    server.shutdown().await;

    // Exported for the record (with the key in the data folder).
    let out = convene(&data, &["export", "meeting", &kept]);
    let chat: Vec<serde_json::Value> = lines(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .filter(|l| l["kind"] == "chat")
        .collect();
    assert_eq!(chat.len(), 1, "{}", text(&out));
    assert_eq!(chat[0]["text"], SAID);
    assert_eq!(chat[0]["name"], "Ann");
    let person = convene(&data, &["export", "person", "ann"]);
    assert!(String::from_utf8_lossy(&person.stdout).contains(SAID));
    let other = convene(&data, &["export", "meeting", &relayed]);
    assert!(!String::from_utf8_lossy(&other.stdout).contains("\"kind\":\"chat\""));
    std::fs::remove_dir_all(data).ok();
}
