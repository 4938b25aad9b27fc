//! The audit log records joins and leaves; admins export it over HTTP with a
//! token; `convene audit verify` detects tampering.

mod common;

use std::process::Command;
use std::time::Duration;

use convene_client::Client;

const TOKEN_HEADER: &str = "Authorization: Bearer test-admin-token\r\n";

async fn export(server: &convene_server::RunningServer, query: &str) -> (u16, String) {
    common::http_with(
        server,
        "GET",
        &format!("/api/admin/audit{query}"),
        None,
        TOKEN_HEADER,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_leaves_and_refusals_are_recorded_and_exported_to_admins_only() {
    let dir = std::env::temp_dir().join(format!(
        "convene-audit-{}",
        convene_storage::new_meeting_id()
    ));
    let d = dir.clone();
    let server = common::server_with(|c| {
        c.data_dir = d;
        c.max_participants = 2;
    })
    .await;
    let meeting = common::create_meeting(&server, "Audited").await;
    let other = common::create_meeting(&server, "Other").await;
    let ann = Client::join(&server.url, &meeting, "Ann", None)
        .await
        .unwrap();
    let mut bob = Client::join(&server.url, &meeting, "Bob", None)
        .await
        .unwrap();
    assert!(
        Client::join(&server.url, &meeting, "Cat", None)
            .await
            .is_err(),
        "meeting full"
    );
    let _dan = Client::join(&server.url, &other, "Dan", None)
        .await
        .unwrap();
    let ann_id = ann.participant_id.clone();
    ann.leave().await;
    assert!(
        bob.run_until(Duration::from_secs(5), |c| !c.left.is_empty())
            .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await; // the writer thread

    assert_eq!(
        common::http(&server, "GET", "/api/admin/audit", None)
            .await
            .0,
        401
    );
    let wrong = "Authorization: Bearer nope\r\n";
    assert_eq!(
        common::http_with(&server, "GET", "/api/admin/audit", None, wrong)
            .await
            .0,
        401
    );

    let (status, body) = export(&server, &format!("?meeting={meeting}")).await;
    assert_eq!(status, 200, "{body}");
    let rows: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |event: &str, outcome: &str| {
        rows.iter()
            .any(|r| r["event"] == event && r["outcome"] == outcome)
    };
    assert!(find("join", "admitted"));
    assert!(find("join", "refused: meeting-full"));
    assert!(rows.iter().any(|r| r["event"] == "leave"
        && r["outcome"] == "left"
        && r["subject"] == ann_id.as_str()));
    assert!(
        rows.iter().all(|r| r["meeting"] == meeting.as_str()),
        "filtered to one meeting"
    );
    assert!(rows
        .iter()
        .all(|r| r["hash"].as_str().is_some_and(|h| h.len() == 64)));

    let (status, csv) = export(&server, "?format=csv").await;
    assert_eq!(status, 200);
    assert!(csv.starts_with("seq,at,meeting,actor,subject,event,outcome,detail,prevHash,hash"));
    assert!(
        csv.contains(&other),
        "the whole log includes the other meeting"
    );
    assert_eq!(export(&server, "?format=pdf").await.0, 400);
    server.shutdown().await;

    // The command line: verify, export, and tampering detected.
    let convene = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_convene"))
            .arg("--data-dir")
            .arg(&dir)
            .args(args)
            .output()
            .unwrap()
    };
    let out = convene(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact"));
    let out = convene(&["audit", "export", "--meeting", &meeting, "--format", "csv"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("refused: meeting-full"));

    let db = rusqlite::Connection::open(dir.join("convene.db")).unwrap();
    db.execute_batch("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET outcome = 'admitted' WHERE outcome LIKE 'refused%';")
        .unwrap();
    drop(db);
    let out = convene(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BROKEN"));
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_admin_api_is_off() {
    let server = common::server_with(|c| c.admin_token = None).await;
    assert_eq!(export(&server, "").await.0, 404);
    server.shutdown().await;
}
