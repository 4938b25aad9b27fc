//! A server facing the internet, tried as an attacker would: idle and slow
//! connections, parallel passcode guesses, hashing bursts, oversized input,
//! look-alike host names and forwarded addresses. Each test drives a real
//! server on loopback with raw TCP or real WebSocket clients.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use convene_client::{Client, JoinOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn connect_from(ip: &str, server: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 0))?;
    sock.connect(server).await
}

/// Whether the server closed `s` (read gives end of file or a reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // an error page before the close
        }
    }
}

/// A whole request on its own connection from `ip`; the status, or None if
/// the connection was refused or closed without an answer.
async fn get_from(ip: &str, server: SocketAddr, path: &str) -> Option<u16> {
    let mut s = connect_from(ip, server).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out);
    text.get(9..12)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_cannot_crowd_out_others() {
    let server = common::server_with(|c| {
        c.idle_timeout = 2;
        c.max_connections_per_address = 100;
    })
    .await;
    // 2 000 connections from one address that never send a byte: the first
    // 100 are held (until the idle timeout), the rest are closed at once.
    let mut idle = Vec::new();
    for _ in 0..2000 {
        if let Ok(s) = connect_from("127.0.0.1", server.addr).await {
            idle.push(s);
        }
    }
    // Someone else is still served, and so is a real request from the crowded
    // address once its idle connections are gone.
    assert_eq!(
        get_from("127.0.0.2", server.addr, "/healthz").await,
        Some(200)
    );
    let started = Instant::now();
    let mut closed = 0;
    for s in idle.iter_mut() {
        if closed_within(s, Duration::from_secs(4).saturating_sub(started.elapsed())).await {
            closed += 1;
        }
    }
    assert_eq!(closed, idle.len(), "every idle connection is closed");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(
        get_from("127.0.0.1", server.addr, "/healthz").await,
        Some(200)
    );
    // The operator sees what was turned away.
    let (_, body) = common::http_with(
        &server,
        "GET",
        "/api/admin/stats",
        None,
        "Authorization: Bearer test-admin-token\r\n",
    )
    .await;
    let stats: Value = serde_json::from_str(&body).unwrap();
    let refused = stats["connections"]["refusedAtAddressCap"]
        .as_u64()
        .unwrap();
    assert_eq!(refused as usize, idle.len() - 100, "{stats}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_slow_bodies_and_idle_keep_alive_are_cut_off() {
    let server = common::server_with(|c| {
        c.idle_timeout = 1;
        c.request_timeout = 2;
    })
    .await;
    // Headers a byte at a time: closed at the header deadline, however busy.
    let mut slow = connect_from("127.0.0.3", server.addr).await.unwrap();
    let dribble = async {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let t = Instant::now();
    dribble.await;
    assert!(closed_within(&mut slow, Duration::from_secs(2)).await);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // A body that never finishes: answered 408 at the request deadline.
    let mut s = connect_from("127.0.0.3", server.addr).await.unwrap();
    s.write_all(
        b"POST /api/meetings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ti",
    )
    .await
    .unwrap();
    let t = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(4));

    // Keep-alive: one request answered, then the idle connection is closed.
    let mut s = connect_from("127.0.0.3", server.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_and_bodies_get_clear_refusals() {
    let server = common::server().await;
    let mut s = connect_from("127.0.0.1", server.addr).await.unwrap();
    let big = "a".repeat(200 * 1024);
    let req = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&out[..out.len().min(200)])
    );

    let body = json!({ "title": "x".repeat(20 * 1024) }).to_string();
    let (status, text) = common::http(&server, "POST", "/api/meetings", Some(&body)).await;
    assert_eq!(status, 413, "{text}");

    // The answer that carries the host key may not be cached anywhere.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let body = json!({ "title": "Kept" }).to_string();
    let req = format!(
        "POST /api/meetings HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 201"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("cache-control: no-store"),
        "{out}"
    );

    // One address may create 60 meetings at once without signing in, then one
    // every 10 s (two requests above took one each).
    let mut statuses = Vec::new();
    for i in 0..62 {
        let body = json!({ "title": format!("Spam {i}") }).to_string();
        statuses.push(
            common::http(&server, "POST", "/api/meetings", Some(&body))
                .await
                .0,
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        58,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        get_from("127.0.0.9", server.addr, "/healthz").await,
        Some(200)
    );

    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_that_only_looks_like_loopback_is_cross_origin() {
    let server = common::server().await;
    for (host, expect) in [("127.attacker.example", 403), ("127.0.0.1", 201)] {
        // A DNS-rebinding page: the attacker's name resolves here, and the
        // browser sends Host and Origin with that name.
        let body = json!({ "title": "Rebound" }).to_string();
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let req = format!(
            "POST /api/meetings HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: http://{host}:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len(),
            port = server.addr.port(),
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(
            out.starts_with(&format!("HTTP/1.1 {expect}")),
            "{host}: {}",
            &out[..out.len().min(200)]
        );
    }
    server.shutdown().await;
}

async fn create(server: &convene_server::RunningServer, body: Value) -> Value {
    let (status, text) =
        common::http(server, "POST", "/api/meetings", Some(&body.to_string())).await;
    assert_eq!(status, 201, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn from(passcode: &str, ip: &str) -> JoinOptions {
    JoinOptions {
        passcode: Some(passcode.into()),
        local_ip: Some(ip.parse().unwrap()),
        ..JoinOptions::default()
    }
}

fn code(result: &Result<Client, String>) -> &'static str {
    match result {
        Ok(_) => "joined",
        Err(e) => [
            "wrong-passcode",
            "locked-out",
            "rate-limited",
            "busy",
            "forbidden",
        ]
        .into_iter()
        .find(|c| e.contains(c))
        .unwrap_or("other"),
    }
}

/// Fire `n` joins at once from the given addresses (round robin); the codes.
async fn burst(url: &str, id: &str, n: usize, passcode: &str, ips: &[&str]) -> Vec<&'static str> {
    let joins = (0..n).map(|i| {
        let (url, id) = (url.to_string(), id.to_string());
        let opts = from(passcode, ips[i % ips.len()]);
        tokio::spawn(async move {
            let r = Client::join_with(&url, &id, &format!("Guess {i}"), opts).await;
            code(&r)
        })
    });
    let mut codes = Vec::new();
    for j in joins.collect::<Vec<_>>() {
        codes.push(j.await.unwrap());
    }
    codes
}

fn count(codes: &[&str], which: &str) -> usize {
    codes.iter().filter(|c| **c == which).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_parallel_guesses_gets_no_more_checks_than_sequential_ones() {
    let server = common::server().await;
    let url = server.url.clone();
    let m = create(
        &server,
        json!({ "title": "Guarded", "passcode": "4711 blue" }),
    )
    .await;
    let id = m["id"].as_str().unwrap().to_string();

    // 200 wrong guesses at once from one address: five are checked.
    let codes = burst(&url, &id, 200, "0000", &["127.0.0.1"]).await;
    assert_eq!(count(&codes, "wrong-passcode"), 5, "{codes:?}");
    assert_eq!(count(&codes, "other"), 0, "{codes:?}");

    // From 40 addresses at once (5 tries each): the meeting's own budget
    // holds them to 30 checks together.
    let ips: Vec<String> = (10..50).map(|i| format!("127.0.1.{i}")).collect();
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    let codes = burst(&url, &id, 200, "1111", &ips).await;
    let checked = count(&codes, "wrong-passcode");
    assert!(checked <= 30, "{checked} checks: {codes:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_right_guess_does_not_reset_wrong_ones() {
    let server = common::server().await;
    let url = server.url.clone();
    let m = create(
        &server,
        json!({ "title": "Guarded", "passcode": "4711 blue" }),
    )
    .await;
    let id = m["id"].as_str().unwrap().to_string();
    let ip = "127.0.2.1";
    for round in 0..3 {
        let wrong = burst(&url, &id, 1, "0000", &[ip]).await;
        assert_eq!(wrong, ["wrong-passcode"], "round {round}");
        // Knowing the passcode (a participant, or the meeting's creator) and
        // joining again does not clear the failures.
        let right = burst(&url, &id, 1, "4711 blue", &[ip]).await;
        assert_eq!(right, ["joined"], "round {round}");
    }
    let wrong = burst(&url, &id, 2, "0000", &[ip]).await;
    assert_eq!(wrong, ["wrong-passcode", "wrong-passcode"]);
    assert_eq!(burst(&url, &id, 1, "0000", &[ip]).await, ["locked-out"]);
    server.shutdown().await;
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    kb * 1024
}

/// The real binary in a process of its own, so its memory is its own.
struct Process {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Process {
    fn start() -> Process {
        use std::io::BufRead;
        let dir = std::env::temp_dir().join(format!(
            "convene-abuse-{}",
            convene_storage::new_meeting_id()
        ));
        let mut child = common::binary::convene()
            .args(["--listen", "127.0.0.1:0", "--log", "warn", "--data-dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Log lines may come first (the log goes to standard output too).
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let url = loop {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("the server stopped before it was running");
            }
            if let Some(url) = line.trim().strip_prefix("Convene is running at http://") {
                break url.trim_end_matches('/').to_string();
            }
        };
        // Keep reading, so the server never writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let addr = url.parse().unwrap();
        Process { child, addr }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hashing_burst_keeps_memory_bounded_and_says_busy_when_full() {
    let server = Process::start();
    let pid = server.child.id();
    let before = rss_bytes(pid);
    // 200 meetings with passcodes created at once: 200 Argon2 hashes of
    // 19 MiB each, were they all run together.
    // (From 200 addresses: one address may create only 60 at once.)
    let creations = (0..200).map(|i| {
        let addr = server.addr;
        tokio::spawn(async move {
            let body = json!({ "title": format!("Burst {i}"), "passcode": "4711 blue" }).to_string();
            let mut s = connect_from(&format!("127.0.3.{}", i + 1), addr).await.unwrap();
            let req = format!(
                "POST /api/meetings HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            out.get(9..12).and_then(|c| c.parse::<u16>().ok()).unwrap_or(0)
        })
    });
    let handles: Vec<_> = creations.collect();
    let mut most = before;
    let watch = async {
        loop {
            most = most.max(rss_bytes(pid));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let mut statuses = Vec::new();
    let all = async {
        for h in handles {
            statuses.push(h.await.unwrap());
        }
    };
    tokio::select! {
        _ = all => {}
        _ = watch => unreachable!(),
    }
    let created = statuses.iter().filter(|s| **s == 201).count();
    let busy = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(created + busy, 200, "{statuses:?}");
    assert!(created > 0);
    let grown = most.saturating_sub(before);
    // The hashing threads' working memory plus slack: not 200 × 19 MiB.
    assert!(
        grown < 120 * 1024 * 1024,
        "memory grew by {} MiB",
        grown / (1024 * 1024)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_lockouts_follow_the_real_client() {
    let server = common::server_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let m = create(
        &server,
        json!({ "title": "Proxied", "passcode": "4711 blue" }),
    )
    .await;
    let id = m["id"].as_str().unwrap().to_string();
    // Everyone arrives from the proxy (127.0.0.1), each named by X-Forwarded-For.
    let (server_ref, id_ref) = (&server, &id);
    let guess = |client: &'static str, passcode: &'static str| async move {
        let join = json!({"type": "join", "protocol": 1, "name": "P", "passcode": passcode});
        let headers = [("x-forwarded-for", client)];
        raw_join(server_ref, id_ref, "127.0.0.1", &headers, join).await
    };
    for _ in 0..5 {
        assert_eq!(guess("203.0.113.66", "0000").await, "wrong-passcode");
    }
    assert_eq!(guess("203.0.113.66", "4711 blue").await, "locked-out");
    // Another client behind the same proxy is not locked out.
    assert_eq!(guess("198.51.100.7", "4711 blue").await, "welcome");
    // A client cannot escape its lockout by naming a made-up first hop.
    assert_eq!(
        guess("6.6.6.6, 203.0.113.66", "4711 blue").await,
        "locked-out"
    );
    server.shutdown().await;
}

/// A raw join on its own socket from `ip` with extra headers; the first reply's
/// type, or its error code.
async fn raw_join(
    server: &convene_server::RunningServer,
    id: &str,
    ip: &str,
    headers: &[(&'static str, &str)],
    join: Value,
) -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let mut req = format!("ws://{}/api/meetings/{id}/ws", server.addr)
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    let stream = connect_from(ip, server.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    ws.send(Message::Text(join.to_string().into()))
        .await
        .unwrap();
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            return match v["type"].as_str() {
                Some("error") => v["code"].as_str().unwrap().to_string(),
                Some(t) => t.to_string(),
                None => "?".into(),
            };
        }
    }
    "closed".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_forwarding_header_is_believed() {
    // The default: the proxy appends to X-Forwarded-For; a Forwarded header
    // is the client's own words and is ignored.
    let server = common::server_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let m = create(
        &server,
        json!({ "title": "Proxied", "passcode": "4711 blue" }),
    )
    .await;
    let id = m["id"].as_str().unwrap().to_string();
    let join = |p: &str| json!({"type": "join", "protocol": 1, "name": "P", "passcode": p});
    for i in 0..6 {
        // A fresh made-up address in Forwarded each time: still one client.
        let fake = format!("for=198.51.100.{i}");
        let code = raw_join(
            &server,
            &id,
            "127.0.0.1",
            &[("x-forwarded-for", "203.0.113.70"), ("forwarded", &fake)],
            join("0000"),
        )
        .await;
        let expected = if i < 5 {
            "wrong-passcode"
        } else {
            "locked-out"
        };
        assert_eq!(code, expected, "try {i}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_keys_from_an_address_never_keep_its_real_host_out() {
    let server = common::server().await;
    let m = create(&server, json!({ "title": "Hosted" })).await;
    let id = m["id"].as_str().unwrap().to_string();
    let host_key = m["hostKey"].as_str().unwrap().to_string();
    let join = |key: &str| json!({"type": "join", "protocol": 1, "name": "H", "hostKey": key});
    let ip = "127.0.4.1";
    let mut codes = Vec::new();
    for _ in 0..40 {
        codes.push(raw_join(&server, &id, ip, &[], join("not-the-key")).await);
    }
    assert_eq!(
        codes.iter().filter(|c| *c == "forbidden").count(),
        30,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| *c == "rate-limited").count(),
        10,
        "{codes:?}"
    );
    // The same address (an office NAT) with the real host link gets in.
    assert_eq!(
        raw_join(&server, &id, ip, &[], join(&host_key)).await,
        "welcome"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_flooding_past_the_rate_limit_is_closed_and_told_once_a_second() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = common::server().await;
    let id = common::create_meeting(&server, "Flood").await;
    let url = format!("ws://{}/api/meetings/{id}/ws", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let join = json!({"type": "join", "protocol": 1, "name": "Flo"});
    ws.send(Message::Text(join.to_string().into()))
        .await
        .unwrap();
    // Valid pings, far over the rate: some are accepted, which must not
    // reset the count of refusals.
    let ping = json!({"type": "ping"}).to_string();
    for _ in 0..400 {
        if ws.send(Message::Text(ping.clone().into())).await.is_err() {
            break;
        }
    }
    let mut rate_limited = 0;
    let mut closed_with = None;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["code"] == "rate-limited" {
                    rate_limited += 1;
                }
            }
            Message::Close(frame) => {
                closed_with = frame.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(closed_with, Some(1008));
    assert!(rate_limited <= 2, "{rate_limited} rate-limited errors");
    server.shutdown().await;
}
