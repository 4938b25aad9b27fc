//! What an operations team runs against: one configuration file as a whole
//! deployment (flags and variables still win), `check-config`, `/readyz`,
//! Prometheus metrics, and JSON logs.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use convene_client::{Client, JoinOptions};
use serde_json::{json, Value};

fn folder() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "convene-operations-{}",
        convene_storage::new_meeting_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    try_get(addr, path, token).unwrap()
}

fn try_get(addr: &str, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The real binary started with only a configuration file (and one variable),
/// its log in JSON.
#[test]
fn a_configuration_file_is_a_whole_deployment_and_variables_override_it() {
    let dir = folder();
    let file = dir.join("convene.toml");
    std::fs::write(
        &file,
        "[home]\nname = \"Department for Tests\"\n\n[server]\n\
         # Taken by something else: CONVENE_LISTEN below wins.\n\
         listen = \"127.0.0.1:1\"\n\
         data_dir = \"data\"\nmedia_workers = 1\nadmin_token = \"file-admin-token\"\n\
         log = \"info\"\nlog_format = \"json\"\n",
    )
    .unwrap();
    let mut child = common::binary::convene()
        .arg("--config")
        .arg(&file)
        .env("CONVENE_LISTEN", "127.0.0.1:0")
        .env_remove("CONVENE_LOG")
        .env_remove("CONVENE_LOG_FORMAT")
        .env_remove("CONVENE_DATA_DIR")
        .env_remove("CONVENE_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = Vec::new();
    let url = loop {
        let line = lines
            .next()
            .expect("the server prints its address")
            .unwrap();
        if let Some(rest) = line.split("Convene is running at ").nth(1) {
            break rest.trim_end_matches('/').to_string();
        }
        log.push(line);
    };
    let reader = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let addr = url.trim_start_matches("http://").to_string();
    assert_ne!(addr, "127.0.0.1:1", "the variable overrides the file");

    // The data folder is the file's `data`, relative to the file.
    assert!(
        dir.join("data").join("convene.db").exists(),
        "data folder from the file"
    );
    assert_eq!(get(&addr, "/readyz", None), (200, "ready".into()));
    // The admin token from the file guards the metrics.
    assert_eq!(get(&addr, "/metrics", None).0, 401);
    let (status, metrics) = get(&addr, "/metrics", Some("file-admin-token"));
    assert_eq!(status, 200, "{metrics}");
    for name in [
        "convene_meetings 0",
        "convene_connections{transport=\"web\"}",
        "process_resident_memory_bytes",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }

    child.kill().unwrap();
    child.wait().unwrap();
    log.extend(reader.join().unwrap());
    // Every log line is one JSON object with a level and a message.
    assert!(!log.is_empty());
    for line in &log {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(
        log.iter()
            .any(|l| l.contains("\"message\":\"Convene started\"")),
        "{log:?}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn check_config_reports_each_problem_at_its_place_and_exits_1() {
    let dir = folder();
    let file = dir.join("convene.toml");
    let run = |args: &[&std::path::Path]| {
        let out = common::binary::convene()
            .arg("check-config")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    std::fs::write(
        &file,
        "[home]\nname = \"Department for Tests\"\n[server]\nmax_participants = 0\nlisten = \"here\"\n",
    )
    .unwrap();
    let (code, out) = run(&[&file]);
    assert_eq!(code, Some(1), "{out}");
    let f = file.display();
    assert!(
        out.contains(&format!("{f}:4:1: server.max_participants")),
        "{out}"
    );
    assert!(out.contains(&format!("{f}:5:1: server.listen")), "{out}");
    // The server refuses to start on it, saying the same.
    let started = common::binary::convene()
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!started.status.success());
    let said = String::from_utf8_lossy(&started.stderr);
    assert!(said.contains(&format!("{f}:4:1: ")), "{said}");

    // Fixed, with the shipped policy: fine.
    std::fs::write(
        &file,
        "[home]\nname = \"Department for Tests\"\n[server]\nmax_participants = 40\n",
    )
    .unwrap();
    let policy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/uk.toml");
    let (code, out) = run(&[&file, &policy]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no problems found"), "{out}");
    // And the example file, as shipped.
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../convene.example.toml");
    let (code, out) = run(&[&example]);
    // Its TURN secret file does not exist here: the only problem.
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("[turn]") && out.contains("turn.secret"),
        "{out}"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// The counters a dashboard shows move with what people do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_joins_refusals_messages_and_media() {
    let server = common::server_with(|c| c.media_workers = Some(1)).await;
    let (status, body) = common::http(
        &server,
        "POST",
        "/api/meetings",
        Some(&json!({"title": "Counted", "passcode": "4711 blue"}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let opts = |p: &str| JoinOptions {
        passcode: Some(p.into()),
        ..JoinOptions::default()
    };
    assert!(Client::join_with(&server.url, &id, "Eve", opts("0000"))
        .await
        .is_err());
    let ann = Client::join_with(&server.url, &id, "Ann", opts("4711 blue"))
        .await
        .unwrap();
    let scrape = || async {
        let (status, text) = common::http_with(
            &server,
            "GET",
            "/metrics",
            None,
            "Authorization: Bearer test-admin-token\r\n",
        )
        .await;
        assert_eq!(status, 200, "{text}");
        text
    };
    let text = scrape().await;
    for line in [
        "convene_joins_total{outcome=\"joined\"} 1",
        "convene_joins_total{outcome=\"wrong-passcode\"} 1",
        "convene_signalling_messages_total{type=\"join\"} 2",
        "convene_participants 1",
        "convene_meetings 1",
        "convene_media_worker_busy_seconds_total{worker=\"0\"}",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "{line} in:\n{text}"
        );
    }
    // Media: Bob hears Ann; the packets and bytes each way are counted.
    let mut ann = ann;
    ann.publish("microphone", 0).await.unwrap();
    let mut bob = Client::join_with(&server.url, &id, "Bob", opts("4711 blue"))
        .await
        .unwrap();
    let aid = ann.participant_id.clone();
    let (_, heard) = tokio::join!(
        ann.run_until(Duration::from_secs(4), |_| false),
        bob.run_until(Duration::from_secs(4), |c| {
            c.received_from(&aid, "microphone").packets > 20
        })
    );
    assert!(heard, "Bob hears Ann");
    let text = scrape().await;
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in:\n{text}"))
    };
    let (bytes_in, bytes_out) = (
        value("convene_media_bytes_total{direction=\"in\"}"),
        value("convene_media_bytes_total{direction=\"out\"}"),
    );
    let forwarded = value("convene_media_packets_total{direction=\"forwarded\"}");
    assert!(forwarded >= 20.0, "{text}");
    // At least the forwarded audio (20 packets of Opus at 0 kbit/s
    // configured still carry tens of bytes each) went out, and more came in
    // than the audio alone (ICE, DTLS, RTCP as well).
    assert!(
        bytes_out >= forwarded * 20.0,
        "{bytes_out} out, {forwarded}"
    );
    assert!(bytes_in >= forwarded * 20.0, "{bytes_in} in, {forwarded}");
    drop(bob);
    drop(ann);
    // Gone: no longer counted (once the server has seen the socket close).
    let mut left = false;
    for _ in 0..50 {
        if scrape()
            .await
            .lines()
            .any(|l| l == "convene_participants 0")
        {
            left = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left, "{}", scrape().await);
    server.shutdown().await;
}

/// Ready means the database takes writes: another process holding its write
/// lock makes the server unready (503, saying why), and ready again after.
/// The database is probed at most once per interval however often anyone
/// asks, and only an admin is told the database's own error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database() {
    let dir = folder();
    let data = dir.clone();
    let server = common::server_with(move |c| c.data_dir = data).await;
    let ready = || common::http(&server, "GET", "/readyz", None);
    assert_eq!(ready().await, (200, "ready".into()));
    let other = rusqlite::Connection::open(dir.join("convene.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    // The answer from before the lock stands until the interval has passed.
    let (status, body) = poll_until(&ready, |(s, _)| *s == 503).await;
    assert_eq!(
        body, "storage is not writable",
        "no detail for anyone: {body}"
    );
    let (status_admin, detail) = common::http_with(
        &server,
        "GET",
        "/readyz",
        None,
        "Authorization: Bearer test-admin-token\r\n",
    )
    .await;
    assert_eq!((status, status_admin), (503, 503));
    assert!(
        detail.starts_with("storage is not writable: ") && detail.contains("locked"),
        "an admin is told why: {detail}"
    );
    other.execute_batch("ROLLBACK").unwrap();
    poll_until(&ready, |(s, b)| *s == 200 && b == "ready").await;
    // Health is only "the process answers".
    assert_eq!(common::http(&server, "GET", "/healthz", None).await.0, 200);
    server.shutdown().await;
    std::fs::remove_dir_all(dir).ok();
}

/// Asks until the answer passes `done` (at most 10 s).
async fn poll_until<F, Fut, T>(ask: F, done: impl Fn(&T) -> bool) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
    T: std::fmt::Debug,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = ask().await;
        if done(&answer) || std::time::Instant::now() > deadline {
            assert!(done(&answer), "still {answer:?}");
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The admin API counts wrong tokens per client: after a burst of them the
/// client is refused (429) even with the right token, so the token cannot be
/// guessed at speed; other clients are not affected. Too short a token is
/// refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_tokens_cannot_be_guessed_at_speed() {
    let server = common::server().await;
    let with = |token: &'static str| {
        common::http_with(
            &server,
            "GET",
            "/api/admin/stats",
            None,
            if token.is_empty() { "" } else { token },
        )
    };
    let right = "Authorization: Bearer test-admin-token\r\n";
    let wrong = "Authorization: Bearer test-admin-tokeN\r\n";
    assert_eq!(with(right).await.0, 200);
    // Requests with no token at all (scanners) are refused but cost nothing.
    for _ in 0..20 {
        assert_eq!(with("").await.0, 401);
    }
    assert_eq!(with(right).await.0, 200);
    for _ in 0..10 {
        assert_eq!(with(wrong).await.0, 401);
    }
    let (status, body) = with(wrong).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(with(right).await.0, 429, "the right token waits too");
    assert_eq!(common::http(&server, "GET", "/readyz", None).await.0, 200);
    server.shutdown().await;

    let short = common::binary::convene()
        .args(["--admin-token", "short-token", "--listen", "127.0.0.1:0"])
        .env_remove("CONVENE_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!short.status.success());
    let said = String::from_utf8_lossy(&short.stderr);
    assert!(said.contains("at least 16 characters"), "{said}");
    assert!(
        !said.contains("short-token"),
        "the refusal does not repeat it: {said}"
    );
}

/// `convene backup` while the server runs; the copy restored into a new data
/// folder serves the meetings of that moment, and its audit log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_running_restores() {
    let dir = folder();
    let data = dir.join("data");
    let d = data.clone();
    let server = common::server_with(move |c| c.data_dir = d).await;
    let kept = common::create_meeting(&server, "Kept").await;
    let copy = dir.join("backup.db");
    let out = common::binary::convene()
        .arg("--data-dir")
        .arg(&data)
        .arg("backup")
        .arg(&copy)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("1 meetings") && said.contains("chain intact"),
        "{said}"
    );
    let later = common::create_meeting(&server, "Later").await;
    server.shutdown().await;

    let restored = dir.join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(&copy, restored.join("convene.db")).unwrap();
    let r = restored.clone();
    let server = common::server_with(move |c| c.data_dir = r).await;
    assert_eq!(
        common::http(&server, "GET", &format!("/api/meetings/{kept}"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        common::http(&server, "GET", &format!("/api/meetings/{later}"), None)
            .await
            .0,
        404
    );
    server.shutdown().await;
    let out = common::binary::convene()
        .arg("--data-dir")
        .arg(&restored)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Passcodes, host keys, tokens, device cookies and chat text never reach the
/// log, even at trace level (everything every crate logs); and a meeting's
/// lines name it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_reaches_the_log_even_at_trace_level() {
    let dir = folder();
    let admin = "admin-token-Quokka-5821";
    let mut child = common::binary::convene()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--media-workers",
            "1",
            "--log",
            "trace",
            "--log-format",
            "json",
        ])
        .args(["--admin-token", admin])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env_remove("CONVENE_CONFIG")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the server prints its address")
            .unwrap();
        if let Some(rest) = line.split("Convene is running at ").nth(1) {
            break rest.trim_end_matches('/').to_string();
        }
    };
    let reader = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let addr = url.trim_start_matches("http://").to_string();

    let passcode = "Zebra-passcode-4711";
    let wrong = "Wrong-guess-0815";
    let second = "Second-passcode-9931";
    let chat = "Chat text that stays between us";
    let cookie = "Device-cookie-Platypus-77";
    let created: Value = {
        use std::io::{Read, Write};
        let body = json!({"title": "Secrets", "passcode": passcode}).to_string();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "POST /api/meetings HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap()
    };
    let id = created["id"].as_str().unwrap().to_string();
    let host_key = created["hostKey"].as_str().unwrap().to_string();
    let opts = |p: Option<&str>, k: Option<&str>| JoinOptions {
        passcode: p.map(str::to_string),
        host_key: k.map(str::to_string),
        cookie: Some(format!("convene_device={cookie}")),
        ..JoinOptions::default()
    };
    assert!(Client::join_with(&url, &id, "Eve", opts(Some(wrong), None))
        .await
        .is_err());
    let mut host = Client::join_with(&url, &id, "Hana", opts(None, Some(&host_key)))
        .await
        .unwrap();
    let mut guest = Client::join_with(&url, &id, "Gil", opts(Some(passcode), None))
        .await
        .unwrap();
    guest.chat(chat).await.unwrap();
    host.send(json!({"type": "set-passcode", "passcode": second}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(&addr, "/api/admin/stats", Some(admin)).0, 200);
    assert_eq!(get(&addr, "/metrics", Some(admin)).0, 200);
    drop((host, guest));
    // A connection that speaks no HTTP: its end is logged, naming the client.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"\x16\x03\x01 not http\r\n\r\n").unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let log = reader.join().unwrap();
    assert!(
        log.iter()
            .filter(|l| l.contains("\"level\":\"TRACE\""))
            .count()
            > 10,
        "a trace-level log: {log:?}"
    );
    let text = log.join("\n");
    let mut leaks = std::collections::BTreeMap::new();
    for (what, secret) in [
        ("the passcode", passcode),
        ("a wrong passcode", wrong),
        ("the new passcode", second),
        ("the host key", host_key.as_str()),
        ("the admin token", admin),
        ("the device cookie", cookie),
        ("chat text", chat),
        ("the meeting id (its link)", id.as_str()),
    ] {
        for line in log.iter().filter(|l| l.contains(secret)) {
            let target =
                serde_json::from_str::<Value>(line).map_or("?".into(), |v| v["target"].to_string());
            leaks.insert(
                format!("{what} in {target}"),
                line.chars().take(400).collect::<String>(),
            );
        }
    }
    assert!(leaks.is_empty(), "secrets in the log: {leaks:#?}");
    // Clients (all on 127.0.0.1 here) are named by pseudonyms, and the
    // WebRTC library names no address at all; the server's own listening
    // addresses, said at start, are no client's.
    let named: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("127.0.0.1"))
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_default();
            let target = v["target"].as_str().unwrap_or("");
            target.starts_with("str0m")
                || target == "is"
                || target.starts_with("is::")
                || v["fields"]["peer"].is_string()
                || v["fields"]["client"].is_string()
        })
        .collect();
    assert!(named.is_empty(), "client addresses in the log: {named:#?}");
    assert!(
        log.iter().any(|l| l.contains("\"peer\":\"client-")),
        "connection lines name a pseudonym"
    );
    // The meeting's own lines name it (the span), whatever the event says,
    // by a digest of its id.
    let tag = convene_server::logging::meeting_tag(&id);
    assert!(
        log.iter()
            .any(|l| l.contains("\"message\":\"meeting started\"")
                && l.contains(&format!("\"meeting\":\"{tag}\""))),
        "{}",
        &text[..text.len().min(4000)]
    );
    std::fs::remove_dir_all(dir).ok();
}

/// A flood that fills the web port's connection places does not blind
/// monitoring: the metrics listener has places of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_while_the_web_port_is_full() {
    let server = common::server_with(|c| {
        c.max_connections = 4;
        c.max_connections_per_address = 4;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    // Four idle connections take every place on the web port.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    let web = server.addr.to_string();
    let refused = tokio::task::spawn_blocking(move || {
        try_get(&web, "/healthz", None).map_or(0, |(status, _)| status)
    })
    .await
    .unwrap();
    assert_ne!(refused, 200, "the web port is full");
    let metrics = server.metrics_addr.expect("a metrics listener").to_string();
    let (status, body) = tokio::task::spawn_blocking(move || get(&metrics, "/metrics", None))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("convene_connections{transport=\"web\"} 4"),
        "{body}"
    );
    drop(held);
    server.shutdown().await;
}
