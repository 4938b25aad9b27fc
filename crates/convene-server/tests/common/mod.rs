#![allow(dead_code)]

pub mod binary;
pub mod cluster;
pub mod oidc;

use std::time::Duration;

use convene_server::config::Config;
use convene_server::RunningServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub async fn server() -> RunningServer {
    server_with(|_| {}).await
}

pub async fn server_with(tweak: impl FnOnce(&mut Config)) -> RunningServer {
    let dir = std::env::temp_dir().join(format!(
        "convene-test-{}",
        convene_storage::new_meeting_id()
    ));
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = dir;
    config.reconnect_grace = 2;
    config.admin_token = Some("test-admin-token".into());
    config.log = "warn".into();
    tweak(&mut config);
    convene_server::start(config).await.expect("server starts")
}

/// A bare HTTP/1.1 request on loopback; returns (status, body).
pub async fn http(
    server: &RunningServer,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    http_with(server, method, path, body, "").await
}

/// `extra_headers` are whole header lines, each ending in \r\n.
pub async fn http_with(
    server: &RunningServer,
    method: &str,
    path: &str,
    body: Option<&str>,
    extra_headers: &str,
) -> (u16, String) {
    let (status, _, body) = http_full(server, method, path, body, extra_headers).await;
    (status, body)
}

/// As [`http_with`], with the response's head (status line and headers).
pub async fn http_full(
    server: &RunningServer,
    method: &str,
    path: &str,
    body: Option<&str>,
    extra_headers: &str,
) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        server.addr,
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_string(), body.to_string())
}

pub async fn create_meeting(server: &RunningServer, title: &str) -> String {
    let (status, body) = http(
        server,
        "POST",
        "/api/meetings",
        Some(&serde_json::json!({ "title": title }).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// A deployment file whose `[turn]` lists `urls`, with `secret` in a secret
/// file beside it (readable by this user only); returns the file's path.
pub fn deployment_with_turn(urls: &[&str], secret: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!(
        "convene-turn-{}",
        convene_storage::new_meeting_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("turn.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let toml = format!(
        "[home]\nname = \"Test Department\"\n\n[turn]\nurls = {}\nsecret_file = \"turn.secret\"\n",
        serde_json::to_string(urls).unwrap()
    );
    let path = dir.join("convene.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// Run two clients at once (each must keep answering and sending) until both
/// conditions hold, or `timeout`. Returns whether each held.
pub async fn run_pair(
    a: &mut convene_client::Client,
    b: &mut convene_client::Client,
    timeout: Duration,
    cond_a: impl Fn(&convene_client::Client) -> bool,
    cond_b: impl Fn(&convene_client::Client) -> bool,
) -> (bool, bool) {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let (fa, fb) = (AtomicBool::new(false), AtomicBool::new(false));
    tokio::join!(
        a.run_until(timeout, |c| {
            if cond_a(c) {
                fa.store(true, SeqCst);
            }
            fa.load(SeqCst) && fb.load(SeqCst)
        }),
        b.run_until(timeout, |c| {
            if cond_b(c) {
                fb.store(true, SeqCst);
            }
            fa.load(SeqCst) && fb.load(SeqCst)
        })
    );
    (fa.load(SeqCst), fb.load(SeqCst))
}
