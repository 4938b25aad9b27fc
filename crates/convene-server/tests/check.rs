//! The connectivity check's server side (docs/protocol.md §10) and its bounds:
//! the socket's pings and probes, probe connections removed from the SFU when
//! the browser leaves and when the check's lifetime ends, the per-address
//! rate limit, the cap on checks at once, the upload's size, the origin rule,
//! and messages that break the rules. A real server on loopback, driven with
//! raw HTTP and real WebSocket clients from chosen loopback addresses.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use convene_server::RunningServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

async fn connect_from(ip: &str, server: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    sock.connect(server).await.unwrap()
}

/// A whole HTTP/1.1 exchange from `ip`: (status, head, body).
async fn request_from(
    ip: &str,
    server: &RunningServer,
    head: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let s = connect_from(ip, server.addr).await;
    let (mut read, mut write) = s.into_split();
    let req = format!("{head}Host: {}\r\nConnection: close\r\n\r\n", server.addr);
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    // Written while the answer is read: the server may answer (and close)
    // before the whole body is sent.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&bytes).await;
        write
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut out)).await;
    drop(writer.await);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an answer");
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head[9..12].parse().unwrap();
    (status, head, out[split + 4..].to_vec())
}

async fn upload_from(ip: &str, server: &RunningServer, body: &[u8]) -> (u16, String, Vec<u8>) {
    let head = format!(
        "POST /api/check/upload HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n",
        body.len()
    );
    request_from(ip, server, &head, body).await
}

/// Open the check's socket from `ip`: the socket, or the HTTP status it was refused with.
async fn open_from(
    ip: &str,
    server: &RunningServer,
    origin: Option<&str>,
) -> Result<Ws, (u16, String)> {
    let mut req = format!("ws://{}/api/check/ws", server.addr)
        .into_client_request()
        .unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    let stream = connect_from(ip, server.addr).await;
    match tokio_tungstenite::client_async(req, stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            let retry = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            Err((res.status().as_u16(), retry))
        }
        Err(e) => panic!("{e}"),
    }
}

/// The next text message as JSON; None when the socket closes.
async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
        {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// How the server closed the socket: its close frame's code and reason.
async fn close_of(ws: &mut Ws, within: Duration) -> Option<(CloseCode, String)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.ok()? {
            Some(Ok(Message::Close(Some(f)))) => return Some((f.code, f.reason.to_string())),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

async fn send(ws: &mut Ws, msg: Value) {
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
}

/// Wait until the SFU holds `connections` connections and `tracks` tracks.
async fn media_settles(
    server: &RunningServer,
    connections: usize,
    tracks: usize,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let s = server.state.sfu.stats();
        if s.connections == connections && s.tracks == tracks {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the SFU has {} connections and {} tracks, expected {connections} and {tracks}",
            s.connections,
            s.tracks
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ask for a probe and return its offer's SDP.
async fn probe(ws: &mut Ws, path: &str) -> String {
    send(ws, json!({"type": "probe", "path": path})).await;
    let offer = next(ws).await.expect("an offer");
    assert_eq!(offer["type"], "offer", "{offer}");
    assert_eq!(offer["path"], path);
    offer["sdp"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_answered_and_probes_go_when_the_browser_leaves() {
    let server = common::server().await;
    let mut ws = open_from("127.0.0.1", &server, Some(server.url.trim_end_matches('/')))
        .await
        .unwrap();
    let hello = next(&mut ws).await.unwrap();
    assert_eq!(hello, json!({"type": "hello", "seconds": 20}));
    for n in 1..=3 {
        send(&mut ws, json!({"type": "ping", "n": n})).await;
        assert_eq!(
            next(&mut ws).await.unwrap(),
            json!({"type": "pong", "n": n})
        );
    }
    let sdp = probe(&mut ws, "udp").await;
    assert!(sdp.contains("m=audio"), "{sdp}");
    assert!(sdp.contains("a=recvonly"), "the SFU receives: {sdp}");
    assert!(sdp.contains("a=candidate:"), "{sdp}");
    probe(&mut ws, "relay").await;
    media_settles(&server, 2, 2, Duration::from_secs(2)).await;
    assert_eq!(server.state.checks.running(), 1);

    // The browser leaves: its probes go at once, not at the end of the lifetime.
    ws.close(None).await.unwrap();
    drop(ws);
    media_settles(&server, 0, 0, Duration::from_secs(2)).await;
    for _ in 0..40 {
        if server.state.checks.running() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.state.checks.running(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_and_its_probes_end_after_its_lifetime() {
    let server = common::server().await;
    server.state.checks.set_lifetime(Duration::from_secs(2));
    let mut ws = open_from("127.0.0.1", &server, None).await.unwrap();
    assert_eq!(next(&mut ws).await.unwrap()["seconds"], 2);
    probe(&mut ws, "udp").await;
    probe(&mut ws, "tcp").await;
    media_settles(&server, 2, 2, Duration::from_secs(1)).await;
    // A browser that stays silent (and keeps the socket open) is closed.
    let (code, reason) = close_of(&mut ws, Duration::from_secs(4))
        .await
        .expect("a close frame at the end of the lifetime");
    assert_eq!(code, CloseCode::Normal);
    assert_eq!(reason, "the check's time is up");
    media_settles(&server, 0, 0, Duration::from_secs(1)).await;
    assert_eq!(server.state.checks.running(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_break_the_rules_close_the_socket() {
    let server = common::server().await;
    let cases: Vec<(Vec<Value>, &str)> = vec![
        (vec![json!("nonsense")], "not a connectivity check message"),
        (
            vec![json!({"type": "ping", "n": 1, "extra": true})],
            "not a connectivity check message",
        ),
        (
            vec![json!({"type": "probe", "path": "carrier-pigeon"})],
            "not a connectivity check message",
        ),
        (
            vec![
                json!({"type": "probe", "path": "udp"}),
                json!({"type": "probe", "path": "udp"}),
            ],
            "each path is probed once per check",
        ),
        (
            vec![json!({"type": "answer", "path": "tcp", "sdp": "v=0"})],
            "no probe on that path",
        ),
        (
            (1..=33).map(|n| json!({"type": "ping", "n": n})).collect(),
            "too many messages",
        ),
    ];
    for (i, (messages, why)) in cases.into_iter().enumerate() {
        // One address per case: the per-address limit is tested on its own.
        let ip = format!("127.0.1.{}", i + 1);
        let mut ws = open_from(&ip, &server, None).await.unwrap();
        next(&mut ws).await.unwrap();
        for m in messages {
            let text = match &m {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = ws.send(Message::Text(text.into())).await;
        }
        let (code, reason) = close_of(&mut ws, Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("closed for {why}"));
        assert_eq!((code, reason.as_str()), (CloseCode::Policy, why));
    }
    media_settles(&server, 0, 0, Duration::from_secs(2)).await;

    // A frame over 32 KiB is refused by the WebSocket layer itself.
    let mut ws = open_from("127.0.2.1", &server, None).await.unwrap();
    next(&mut ws).await.unwrap();
    let big = json!({"type": "answer", "path": "udp", "sdp": "x".repeat(40_000)});
    let _ = ws.send(Message::Text(big.to_string().into())).await;
    assert!(
        next(&mut ws).await.is_none(),
        "the socket closes on an oversized frame"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_limited_per_address() {
    let server = common::server().await;
    // Six checks of three requests each, at once; then a request must wait.
    for i in 0..18 {
        let (status, _, _) = upload_from("127.0.0.7", &server, b"x").await;
        assert_eq!(status, 200, "request {i}");
    }
    let (status, head, _) = upload_from("127.0.0.7", &server, b"x").await;
    assert_eq!(status, 429);
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 10"),
        "{head}"
    );
    let (status, _, _) = request_from(
        "127.0.0.7",
        &server,
        "GET /api/check/download HTTP/1.1\r\n",
        b"",
    )
    .await;
    assert_eq!(status, 429, "the download shares the limit");
    assert_eq!(
        open_from("127.0.0.7", &server, None).await.err(),
        Some((429, "10".into())),
        "so does the socket"
    );
    // Another address is not held up.
    assert!(open_from("127.0.0.8", &server, None).await.is_ok());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_running_at_once_are_capped() {
    let server = common::server().await;
    let mut open = Vec::new();
    for i in 0..64 {
        // Sixteen from each of four addresses, within each one's limit.
        let ip = format!("127.0.3.{}", i / 16 + 1);
        let mut ws = open_from(&ip, &server, None)
            .await
            .unwrap_or_else(|e| panic!("check {i}: {e:?}"));
        next(&mut ws).await.unwrap();
        open.push(ws);
    }
    assert_eq!(server.state.checks.running(), 64);
    assert_eq!(
        open_from("127.0.3.9", &server, None).await.err(),
        Some((503, "10".into()))
    );
    // A plain GET (what the page asks when its socket would not open) says the same.
    let (status, _, _) =
        request_from("127.0.3.9", &server, "GET /api/check/ws HTTP/1.1\r\n", b"").await;
    assert_eq!(status, 503);
    // One leaves: a place is free again.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    drop(first);
    let mut reopened = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(ws) = open_from("127.0.3.10", &server, None).await {
            reopened = Some(ws);
            break;
        }
    }
    assert!(reopened.is_some(), "a place freed when a check ended");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_and_uploads_are_fixed_in_size() {
    let server = common::server().await;
    let (status, head, body) = request_from(
        "127.0.0.1",
        &server,
        "GET /api/check/download HTTP/1.1\r\n",
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let head = head.to_ascii_lowercase();
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(
        head.contains("content-type: application/octet-stream"),
        "{head}"
    );
    assert!(!head.contains("content-encoding"), "{head}");
    assert_eq!(body.len(), 2 << 20);
    let distinct: std::collections::BTreeSet<&[u8]> = body.chunks(8).take(10_000).collect();
    assert!(distinct.len() > 9_990, "noise, not a pattern");

    // Up to 1 MiB is read and discarded (well past the API's 16 KiB bodies).
    let mib = vec![7u8; 1 << 20];
    let (status, _, body) = upload_from("127.0.0.1", &server, &mib).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["received"], 1 << 20);

    // One byte more, declared: refused before it is read.
    let mut over = mib.clone();
    over.push(0);
    let (status, head, _) = upload_from("127.0.0.2", &server, &over).await;
    assert_eq!(status, 413, "{head}");
    // ...or sent in chunks without a length: refused as it passes the limit.
    let mut chunked = Vec::new();
    for _ in 0..24 {
        let chunk = vec![1u8; 64 * 1024];
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, _, _) = request_from(
        "127.0.0.3",
        &server,
        "POST /api/check/upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n",
        &chunked,
    )
    .await;
    assert_eq!(status, 413);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sites_cannot_run_checks() {
    let server = common::server().await;
    assert_eq!(
        open_from("127.0.0.1", &server, Some("http://evil.example"))
            .await
            .err()
            .map(|(s, _)| s),
        Some(403)
    );
    let (status, _, _) = request_from(
        "127.0.0.1",
        &server,
        "POST /api/check/upload HTTP/1.1\r\nOrigin: http://evil.example\r\nContent-Length: 1\r\n",
        b"x",
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        open_from("127.0.0.1", &server, Some(server.url.trim_end_matches('/')))
            .await
            .is_ok()
    );
    // The page itself is served.
    let (status, _, body) =
        request_from("127.0.0.1", &server, "GET /check HTTP/1.1\r\n", b"").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("/assets/check.js"));
    server.shutdown().await;
}
