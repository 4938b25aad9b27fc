//! Raised hands and reactions over real sockets (protocol.md §4.15, §5.6a):
//! the messages as the server sends them, the host's right to lower another's
//! hand, the reaction limit, and a hand kept through a resume.

mod common;

use std::time::Duration;

use convene_client::{Client, JoinOptions};
use serde_json::{json, Value};

async fn both(a: &mut Client, b: &mut Client, secs: f64) {
    let d = Duration::from_secs_f64(secs);
    tokio::join!(a.run_until(d, |_| false), b.run_until(d, |_| false));
}

fn hand(c: &Client, of: &str) -> Value {
    c.participants[of]["hand"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hands_and_reactions_over_the_socket() {
    let server = common::server().await;
    let (status, text) = common::http(
        &server,
        "POST",
        "/api/meetings",
        Some(&json!({"title": "Hands"}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let made: Value = serde_json::from_str(&text).unwrap();
    let id = made["id"].as_str().unwrap();
    let key = made["hostKey"].as_str().unwrap();
    let url = server.url.clone();
    let mut host = Client::join_with(&url, id, "Hana", JoinOptions::host(key))
        .await
        .unwrap();
    let mut gus = Client::join(&url, id, "Gus", None).await.unwrap();
    let (hid, gid) = (host.participant_id.clone(), gus.participant_id.clone());
    both(&mut host, &mut gus, 0.5).await;
    assert_eq!(hand(&host, &gid), Value::Null, "documented: null when down");

    gus.send(json!({"type": "raise-hand"})).await.unwrap();
    both(&mut host, &mut gus, 0.5).await;
    assert!(hand(&host, &gid).is_u64(), "{}", host.participants[&gid]);
    assert_eq!(hand(&gus, &gid), hand(&host, &gid));

    // A guest may not lower the host's hand; the host may lower the guest's.
    host.send(json!({"type": "raise-hand"})).await.unwrap();
    gus.send(json!({"type": "lower-hand", "participantId": hid}))
        .await
        .unwrap();
    both(&mut host, &mut gus, 0.5).await;
    assert!(
        gus.errors.iter().any(|e| e["code"] == "forbidden"),
        "{:?}",
        gus.errors
    );
    assert!(hand(&host, &hid).as_u64() > hand(&host, &gid).as_u64());
    host.send(json!({"type": "lower-hand", "participantId": gid}))
        .await
        .unwrap();
    both(&mut host, &mut gus, 0.5).await;
    assert_eq!(hand(&gus, &gid), Value::Null);
    assert!(hand(&gus, &hid).is_u64());

    // Three reactions at once: one passes, to both; the rest are dropped quietly.
    let errors = gus.errors.len();
    for r in ["clap", "heart", "party"] {
        gus.send(json!({"type": "react", "reaction": r}))
            .await
            .unwrap();
    }
    both(&mut host, &mut gus, 0.5).await;
    let reactions = |c: &Client| -> Vec<Value> {
        c.log
            .iter()
            .filter(|m| m["type"] == "reaction")
            .cloned()
            .collect()
    };
    assert_eq!(
        reactions(&host),
        vec![json!({"type": "reaction", "participantId": gid, "reaction": "clap"})]
    );
    assert_eq!(reactions(&gus).len(), 1, "the sender sees their own");
    assert_eq!(gus.errors.len(), errors, "{:?}", gus.errors);

    // The host's hand is still up after their connection drops and they resume.
    let token = host.resume_token.clone();
    host.vanish();
    gus.run_until(Duration::from_secs(1), |_| false).await;
    let mut back = Client::join_with(
        &url,
        id,
        "Hana",
        JoinOptions {
            resume: Some(token),
            ..JoinOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(back.participant_id, hid);
    both(&mut back, &mut gus, 0.5).await;
    assert!(hand(&back, &hid).is_u64(), "{}", back.participants[&hid]);

    drop((back, gus));
    server.shutdown().await;
}
