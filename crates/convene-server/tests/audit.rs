//! The audit log records joins and leaves; admins export it over HTTP with a
//! token; `convene audit verify` detects tampering.

mod common;

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
        common::binary::convene()
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

/// The refusals a row stands for (see writer.rs): itself, or those its
/// minute's tally adds ("and N more like it …", or "… (N in all)").
fn refusals_in(detail: &str) -> u64 {
    let number = |s: &str| s.split(' ').next().and_then(|n| n.parse().ok());
    if let Some(more) = detail.strip_prefix("and ") {
        return number(more).unwrap();
    }
    detail
        .rsplit_once('(')
        .and_then(|(_, t)| t.strip_suffix(" in all)"))
        .and_then(number)
        .unwrap_or(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_joins_writes_a_few_rows_that_count_them_all() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let dir = std::env::temp_dir().join(format!(
        "convene-audit-flood-{}",
        convene_storage::new_meeting_id()
    ));
    let d = dir.clone();
    let server = common::server_with(|c| c.data_dir = d).await;
    let meeting = common::create_meeting(&server, "Flooded").await;
    let ws_url = format!(
        "{}/api/meetings/{meeting}/ws",
        server.url.replacen("http", "ws", 1)
    );
    // 300 joins with a wrong host key, from one address, on 10 sockets.
    let mut replies: std::collections::HashMap<String, u64> = Default::default();
    for _ in 0..10 {
        let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
        for _ in 0..30 {
            let join = r#"{"type":"join","protocol":1,"name":"Eve","hostKey":"00112233445566778899aabbccddeeff"}"#;
            ws.send(Message::text(join)).await.unwrap();
            let reply = loop {
                match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => break t.to_string(),
                    Ok(Some(Ok(_))) => continue,
                    other => panic!("no reply: {other:?}"),
                }
            };
            let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
            assert_eq!(v["type"], "error", "{v}");
            *replies
                .entry(v["code"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(replies.values().sum::<u64>(), 300);
    tokio::time::sleep(Duration::from_millis(300)).await; // the writer thread
    let refusal_rows = |s: &convene_storage::Storage| {
        s.audit_records(Some(&meeting))
            .unwrap()
            .into_iter()
            .filter(|r| r.event == "join" && r.outcome.starts_with("refused"))
            .collect::<Vec<_>>()
    };
    // While the minute is open: the first of each kind only (two kinds, and
    // the minute may turn during the flood).
    let rows = refusal_rows(&server.state.storage);
    assert!(
        (1..=2 * 2).contains(&rows.len()),
        "{} rows for 300 refusals: {rows:?}",
        rows.len()
    );

    // At shutdown the open minutes are closed: one more row each, with the count.
    let storage = server.state.storage.clone();
    server.shutdown().await;
    let rows = refusal_rows(&storage);
    assert!(rows.len() <= 2 * 2 * 2, "{rows:?}");
    let mut counted: std::collections::HashMap<String, u64> = Default::default();
    for r in &rows {
        assert_eq!(r.actor, "client", "no address unless asked for");
        let code = match r.outcome.as_str() {
            "refused: bad host key" => "forbidden",
            "refused: too many refusals" => "rate-limited",
            other => panic!("unexpected refusal {other}"),
        };
        *counted.entry(code.to_string()).or_default() += refusals_in(&r.detail);
    }
    assert_eq!(counted, replies, "{rows:?}");
    assert!(storage.verify_audit().unwrap().is_ok());
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_checks_the_log_against_keyed_checkpoints_and_fails_on_truncation() {
    let dir = std::env::temp_dir().join(format!(
        "convene-audit-cp-{}",
        convene_storage::new_meeting_id()
    ));
    let data = dir.join("data");
    // The key and the checkpoints live outside the data folder.
    let key_file = dir.join("audit.key");
    let checkpoints = dir.join("elsewhere").join("checkpoints.jsonl");
    std::fs::create_dir_all(checkpoints.parent().unwrap()).unwrap();
    std::fs::write(&key_file, rand_bytes()).unwrap();
    let (d, k, c) = (data.clone(), key_file.clone(), checkpoints.clone());
    let server = common::server_with(|cfg| {
        cfg.data_dir = d;
        cfg.audit_key_file = Some(k);
        cfg.audit_checkpoints = Some(c);
    })
    .await;
    let meeting = common::create_meeting(&server, "Checkpointed").await;
    for name in ["Ann", "Bob", "Cat"] {
        Client::join(&server.url, &meeting, name, None)
            .await
            .unwrap()
            .leave()
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.shutdown().await; // makes a checkpoint of everything written

    let convene = |args: &[&str]| {
        common::binary::convene()
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .arg("--audit-key-file")
            .arg(&key_file)
            .arg("--audit-checkpoints")
            .arg(&checkpoints)
            .output()
            .unwrap()
    };
    let out = convene(&["audit", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("audit log intact"), "{stdout}");
    assert!(stdout.contains("1 verified with key"), "{stdout}");
    let cp: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&checkpoints)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    let rows = cp["rows"].as_i64().unwrap();
    assert!(rows >= 7, "create, 3 joins, 3 leaves: {cp}");

    // Whoever holds the database deletes the newest rows: the chain still
    // holds, the checkpoint does not.
    let db = rusqlite::Connection::open(data.join("convene.db")).unwrap();
    db.execute_batch(&format!(
        "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq > {};",
        rows - 2
    ))
    .unwrap();
    drop(db);
    let out = convene(&["audit", "verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("TRUNCATED"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hash chain intact"),
        "the chain alone cannot tell"
    );
    std::fs::remove_dir_all(dir).ok();
}

fn rand_bytes() -> Vec<u8> {
    // Not secret in a test; a real key comes from /dev/urandom.
    (0..32u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect()
}
