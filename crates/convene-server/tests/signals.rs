//! The real binary and the signals an operations team sends it: SIGHUP
//! (`systemctl reload`) never stops it, with or without TLS; SIGTERM
//! (`systemctl stop`) stops it gracefully, so the audit log ends on a
//! checkpoint that covers every row.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::binary;

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

fn http(addr: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn sighup_keeps_the_server_and_sigterm_stops_it_with_a_last_checkpoint() {
    let dir = std::env::temp_dir().join(format!(
        "convene-signals-{}",
        convene_storage::new_meeting_id()
    ));
    let mut server = binary::start(&[
        "--listen",
        "127.0.0.1:0",
        "--media-workers",
        "1",
        "--log",
        "info",
        "--data-dir",
        &dir.display().to_string(),
    ]);
    // Keep reading the log so the server never blocks on a full pipe.
    let log = server.log();
    let (url, child) = (server.url.clone(), &mut server.child);
    let addr = url.trim_start_matches("http://").to_string();
    let body = r#"{"title":"Signals"}"#;
    let created = http(
        &addr,
        &format!(
            "POST /api/meetings HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");

    signal(child.id(), "HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP did not stop the server"
    );
    let health = http(
        &addr,
        &format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    signal(child.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "SIGTERM stops the server");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "a graceful stop exits 0: {status}");
    let log = log.join().unwrap();
    assert!(log.iter().any(|l| l.contains("SIGTERM")), "{log:?}");

    // The last checkpoint covers the creation's row: nothing left uncovered.
    let text = binary::audit_verifies(&dir);
    assert!(!text.contains("not covered"), "{text}");
    std::fs::remove_dir_all(dir).ok();
}
