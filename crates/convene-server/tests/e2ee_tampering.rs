//! The Delivery Service over real sockets (docs/protocol.md §4.16), with a
//! member's commit tampered with on the way, in a WebSocket proxy between it
//! and the server (so the client and the server are the real ones):
//! - one byte of its signature: the server refuses it (`mls-bad-message`),
//!   it reaches nobody, and the joiner is added by an honest commit after;
//! - one byte of its membership tag, which only members can check: the
//!   server passes it on, the members refuse it, and the group heals (its
//!   committer joins again) into one group.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use convene_client::{Client, JoinOptions};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Where in a commit (a PublicMessage from a member, suite 1) to flip a
/// byte, counted from its end: it ends with the membership tag and the
/// confirmation tag (each a length byte and 32 bytes), after the signature
/// (a length byte and 64 bytes).
#[derive(Clone, Copy)]
enum Spoil {
    Signature,
    MembershipTag,
}

impl Spoil {
    fn offset_from_end(self) -> usize {
        match self {
            Spoil::MembershipTag => 10,
            Spoil::Signature => 33 + 33 + 20,
        }
    }
}

/// Proxies signalling sockets to the server at `server`, changing the first
/// `mls-commit` a client sends as `how` says. Counts the commits it spoiled.
// The handshake callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn tampering_proxy(server: std::net::SocketAddr, how: Spoil) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let spoiled = Arc::new(AtomicUsize::new(0));
    let count = spoiled.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut path = String::new();
                let callback =
                    |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                        path = req.uri().path().to_string();
                        Ok(resp)
                    };
                let Ok(client) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                let upstream = format!("ws://{server}{path}");
                let Ok((up, _)) = tokio_tungstenite::connect_async(upstream).await else {
                    return;
                };
                let (mut c_tx, mut c_rx) = client.split();
                let (mut u_tx, mut u_rx) = up.split();
                let to_server = async {
                    while let Some(Ok(m)) = c_rx.next().await {
                        let m = match m {
                            Message::Text(t) => Message::text(spoil(&t, how, &count)),
                            other => other,
                        };
                        if u_tx.send(m).await.is_err() {
                            break;
                        }
                    }
                };
                let to_client = async {
                    while let Some(Ok(m)) = u_rx.next().await {
                        if c_tx.send(m).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::select! { _ = to_server => {}, _ = to_client => {} }
            });
        }
    });
    (url, spoiled)
}

/// The message, with the first `mls-commit`'s commit spoiled.
fn spoil(text: &str, how: Spoil, count: &AtomicUsize) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(text) else {
        return text.to_string();
    };
    if v["type"] != "mls-commit" || count.load(Ordering::SeqCst) > 0 {
        return text.to_string();
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut bytes = b64.decode(v["commit"].as_str().unwrap()).unwrap();
    let at = bytes.len() - how.offset_from_end();
    bytes[at] ^= 0x5a;
    v["commit"] = json!(b64.encode(&bytes));
    count.fetch_add(1, Ordering::SeqCst);
    v.to_string()
}

async fn run(clients: &mut [&mut Client], secs: f64) {
    let d = Duration::from_secs_f64(secs);
    futures_util::future::join_all(clients.iter_mut().map(|c| c.run_until(d, |_| false))).await;
}

fn epoch(c: &Client) -> Option<u64> {
    c.e2ee
        .as_ref()
        .and_then(|e| e.epochs.last())
        .map(|e| e.epoch)
}

/// Bo (behind the proxy) makes the group and is asked to commit Ann's add;
/// his first commit is spoiled as `how` says. Returns when both are in one
/// epoch (or after 10 s).
async fn spoiled_add(how: Spoil) -> (convene_server::RunningServer, Client, Client, usize) {
    let server = common::server().await;
    let (status, text) = common::http(
        &server,
        "POST",
        "/api/meetings",
        Some(&json!({"title": "Sealed", "settings": {"e2ee": true}}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let made: Value = serde_json::from_str(&text).unwrap();
    let id = made["id"].as_str().unwrap();
    let (proxy, spoiled) = tampering_proxy(server.addr, how).await;
    let e2ee = || JoinOptions {
        e2ee: true,
        ..JoinOptions::default()
    };

    // Bo, behind the proxy, makes the group; he is its first member, so he
    // is asked to commit Ann's add.
    let mut bo = Client::join_with(&proxy, id, "Bo", e2ee()).await.unwrap();
    run(&mut [&mut bo], 1.5).await;
    assert_eq!(epoch(&bo), Some(0), "Bo made the group");
    let mut ann = Client::join_with(&server.url, id, "Ann", e2ee())
        .await
        .unwrap();
    for _ in 0..20 {
        run(&mut [&mut bo, &mut ann], 0.5).await;
        if epoch(&ann).is_some() && epoch(&ann) == epoch(&bo) {
            break;
        }
    }
    let spoiled = spoiled.load(Ordering::SeqCst);
    (server, ann, bo, spoiled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_a_bad_signature_is_refused_and_reaches_nobody() {
    let (server, ann, bo, spoiled) = spoiled_add(Spoil::Signature).await;
    assert_eq!(spoiled, 1, "one commit spoiled");
    assert!(
        bo.errors.iter().any(|e| e["code"] == "mls-bad-message"
            && e["message"].as_str().unwrap_or("").contains("refused")),
        "{:?}",
        bo.errors
    );
    // The spoiled commit reached nobody; an honest one added Ann after it.
    let commits: Vec<&Value> = ann
        .log
        .iter()
        .chain(bo.log.iter())
        .filter(|m| m["type"] == "mls-commit")
        .collect();
    assert_eq!(commits.len(), 1, "one commit fanned out: {commits:?}");
    assert_eq!(epoch(&bo), Some(1));
    assert_eq!(
        epoch(&ann),
        Some(1),
        "Ann joined from the honest commit's Welcome"
    );
    let (a, b) = (ann.e2ee.as_ref().unwrap(), bo.e2ee.as_ref().unwrap());
    assert_eq!(
        a.epochs.last().map(|e| e.sframe_secret.clone()),
        b.epochs.last().map(|e| e.sframe_secret.clone()),
        "one group: the same epoch secrets"
    );

    drop((ann, bo));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_a_bad_membership_tag_passes_the_server_and_the_group_heals() {
    let (server, ann, bo, spoiled) = spoiled_add(Spoil::MembershipTag).await;
    assert_eq!(spoiled, 1, "one commit spoiled");
    // The server cannot check the tag (docs/security.md): the commit went
    // out, and Ann joined from its Welcome. Bo could not apply his own
    // commit as it came back; he joined afresh, and Ann added him.
    let fanned = |c: &Client| c.log.iter().filter(|m| m["type"] == "mls-commit").count();
    assert!(fanned(&bo) >= 1, "the spoiled commit came back to Bo");
    assert!(
        bo.log.iter().any(|m| m["type"] == "mls-welcome"),
        "Bo joined again from a Welcome"
    );
    let (a, b) = (ann.e2ee.as_ref().unwrap(), bo.e2ee.as_ref().unwrap());
    assert_eq!(epoch(&ann), epoch(&bo), "one epoch");
    assert_eq!(
        a.epochs.last().map(|e| e.sframe_secret.clone()),
        b.epochs.last().map(|e| e.sframe_secret.clone()),
        "one group: the same epoch secrets"
    );
    drop((ann, bo));
    server.shutdown().await;
}
