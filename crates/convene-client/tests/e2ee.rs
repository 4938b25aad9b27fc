//! Rust clients in an end-to-end encrypted meeting on a real server: the MLS
//! group forms through the server's Delivery Service, every member shows one
//! verification code, media goes as SFrame and decrypts at the other end per
//! sender, chat goes as MLS application messages, and joins and leaves move
//! everyone to a new epoch with media still flowing. (Rust with browsers:
//! tests/e2e/e2ee-rust-interop.test.mjs.)

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use convene_client::{Client, JoinOptions};
use convene_server::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn server() -> convene_server::RunningServer {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir =
        std::env::temp_dir().join(format!("convene-client-e2ee-{}-{n}", std::process::id()));
    config.log = "warn".into();
    convene_server::start(config).await.expect("server starts")
}

/// An encrypted meeting (settings.e2ee), by the HTTP API; returns its id.
async fn encrypted_meeting(server: &convene_server::RunningServer) -> String {
    let body = r#"{"title":"Sealed","settings":{"e2ee":true}}"#;
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let req = format!(
        "POST /api/meetings HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 201"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap();
    json["id"].as_str().unwrap().to_string()
}

async fn join(server: &convene_server::RunningServer, meeting: &str, name: &str) -> Client {
    let opts = JoinOptions {
        e2ee: true,
        ..JoinOptions::default()
    };
    Client::join_with(&server.url, meeting, name, opts)
        .await
        .expect("joins")
}

/// Runs every client at once until `done` holds for each (or the timeout).
async fn run_all(
    clients: &mut [&mut Client],
    timeout: Duration,
    done: impl Fn(usize, &Client) -> bool,
) -> Vec<bool> {
    let flags: Vec<AtomicBool> = clients.iter().map(|_| AtomicBool::new(false)).collect();
    let all = |flags: &[AtomicBool]| flags.iter().all(|f| f.load(SeqCst));
    let runs = clients.iter_mut().enumerate().map(|(i, c)| {
        let (flags, done) = (&flags, &done);
        async move {
            c.run_until(timeout, |c| {
                if done(i, c) {
                    flags[i].store(true, SeqCst);
                }
                all(flags)
            })
            .await
        }
    });
    futures_util::future::join_all(runs).await;
    flags.iter().map(|f| f.load(SeqCst)).collect()
}

fn epoch(c: &Client) -> Option<u64> {
    c.e2ee.as_ref()?.current().map(|e| e.epoch)
}

fn digits(c: &Client) -> String {
    c.e2ee
        .as_ref()
        .and_then(|e| e.current())
        .map(|e| e.code.digits.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_clients_meet_end_to_end_encrypted() {
    let server = server().await;
    let meeting = encrypted_meeting(&server).await;

    // A client that does not encrypt is refused: it would send in the clear.
    let clear = Client::join(&server.url, &meeting, "Clear", None).await;
    assert!(clear.err().is_some_and(|e| e.contains("e2ee-unsupported")));

    let mut ana = join(&server, &meeting, "Ana").await;
    let mut bo = join(&server, &meeting, "Bo").await;
    let (a_id, b_id) = (ana.participant_id.clone(), bo.participant_id.clone());
    for c in [&mut ana, &mut bo] {
        c.publish("microphone", 0).await.unwrap();
        c.publish_with("camera", 300, 15).await.unwrap();
    }
    let flowing = |me: &Client, other: &str, at_least: u64| {
        me.frames_from(other, "camera").decrypted >= at_least
            && me.frames_from(other, "microphone").decrypted >= at_least
    };
    let ok = run_all(&mut [&mut ana, &mut bo], Duration::from_secs(20), |i, c| {
        epoch(c) == Some(1) && flowing(c, if i == 0 { &b_id } else { &a_id }, 20)
    })
    .await;
    assert_eq!(
        ok,
        vec![true, true],
        "ana {:?} / bo {:?}; warnings {:?} {:?}",
        ana.frames_from(&b_id, "camera"),
        bo.frames_from(&a_id, "camera"),
        ana.e2ee.as_ref().map(|e| &e.warnings),
        bo.e2ee.as_ref().map(|e| &e.warnings)
    );
    assert_eq!(digits(&ana), digits(&bo), "one verification code");
    assert_eq!(digits(&ana).len(), 17);
    let members: Vec<String> = ana
        .e2ee
        .as_ref()
        .unwrap()
        .current()
        .unwrap()
        .members
        .iter()
        .map(|m| m.participant_id.clone())
        .collect();
    assert_eq!(members, vec![a_id.clone(), b_id.clone()]);
    // What the SFU forwarded was sealed: the frames decrypted under the sender's key.
    let cam = bo.frames_from(&a_id, "camera");
    // Only frames in flight while keys changed may be refused (unknown KID).
    assert!(cam.failed < 15, "{cam:?}");

    // Chat, both ways, as MLS application messages.
    ana.chat("hello, Bo").await.unwrap();
    bo.chat("hello, Ana").await.unwrap();
    let ok = run_all(&mut [&mut ana, &mut bo], Duration::from_secs(5), |_, c| {
        !c.e2ee.as_ref().unwrap().chat.is_empty()
    })
    .await;
    assert_eq!(ok, vec![true, true]);
    assert_eq!(
        bo.e2ee.as_ref().unwrap().chat,
        vec![(a_id.clone(), "hello, Bo".to_string())]
    );
    assert_eq!(
        ana.e2ee.as_ref().unwrap().chat,
        vec![(b_id.clone(), "hello, Ana".to_string())]
    );
    assert!(bo.chat.is_empty() && ana.chat.is_empty(), "no clear chat");

    // Cy joins (epoch 2) and leaves (epoch 3): everyone follows, media goes on.
    let mut cy = join(&server, &meeting, "Cy").await;
    let ok = run_all(
        &mut [&mut ana, &mut bo, &mut cy],
        Duration::from_secs(10),
        |_, c| epoch(c) == Some(2),
    )
    .await;
    assert_eq!(ok, vec![true, true, true]);
    assert_eq!(digits(&cy), digits(&ana));
    assert_eq!(digits(&bo), digits(&ana));
    cy.leave().await;
    let before = bo.frames_from(&a_id, "camera").decrypted;
    let ok = run_all(&mut [&mut ana, &mut bo], Duration::from_secs(10), |i, c| {
        epoch(c) == Some(3) && (i == 0 || c.frames_from(&a_id, "camera").decrypted > before + 10)
    })
    .await;
    assert_eq!(
        ok,
        vec![true, true],
        "bo {:?}",
        bo.frames_from(&a_id, "camera")
    );
    assert_eq!(digits(&ana), digits(&bo));
    assert_eq!(
        ana.e2ee.as_ref().unwrap().current().unwrap().removed.len(),
        1
    );

    // Bo's connection drops and he resumes as a fresh client (a reload): his
    // new key package has the group remove and add him afresh in one commit.
    let token = bo.resume_token.clone();
    bo.vanish();
    let opts = JoinOptions {
        e2ee: true,
        resume: Some(token),
        ..JoinOptions::default()
    };
    let mut bo = Client::join_with(&server.url, &meeting, "Bo", opts)
        .await
        .expect("resumes");
    assert_eq!(bo.participant_id, b_id);
    bo.publish_with("camera", 300, 15).await.unwrap();
    let t0 = std::time::Instant::now();
    let ok = run_all(&mut [&mut ana, &mut bo], Duration::from_secs(15), |i, c| {
        epoch(c) == Some(4)
            && c.frames_from(if i == 0 { &b_id } else { &a_id }, "camera")
                .decrypted
                >= 10
    })
    .await;
    assert_eq!(
        ok,
        vec![true, true],
        "ana {:?} bo {:?} {:?}",
        epoch(&ana),
        epoch(&bo),
        bo.e2ee.as_ref().map(|e| &e.warnings)
    );
    assert_eq!(digits(&ana), digits(&bo));
    // The resume came within 5 s of the join, so the server refused the first
    // key package (rate-limited); the next went as soon as it could.
    assert!(t0.elapsed() < Duration::from_secs(9), "{:?}", t0.elapsed());
}
