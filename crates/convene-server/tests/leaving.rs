//! How a socket ends: a `leave` is always a leave (never mistaken for a lost
//! connection), and a socket closed for flooding first gets what was already
//! queued for it, then a close frame that says why.

mod common;

use std::time::Duration;

use convene_client::Client;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_sent_right_after_a_message_is_still_a_leave() {
    // A long grace: were a leave handled as a lost connection, the others
    // would see "disconnected" only after it, not "left" at once.
    let server = common::server_with(|c| c.reconnect_grace = 30).await;
    let id = common::create_meeting(&server, "Churn").await;
    let mut ann = Client::join(&server.url, &id, "Ann", None).await.unwrap();
    let mut leavers = Vec::new();
    for i in 0..8 {
        leavers.push(
            Client::join(&server.url, &id, &format!("Leaver {i}"), None)
                .await
                .unwrap(),
        );
    }
    let ids: Vec<String> = leavers.iter().map(|c| c.participant_id.clone()).collect();
    // Each sends a chat message (whose echo the meeting sends back to them)
    // and leaves in the same breath, all together.
    let sends = leavers.into_iter().map(|mut c| async move {
        c.chat("bye").await.unwrap();
        c.leave().await;
    });
    futures_util::future::join_all(sends).await;
    let all_left = ann
        .run_until(Duration::from_secs(5), |a| {
            ids.iter().all(|id| a.left.iter().any(|(who, _)| who == id))
        })
        .await;
    assert!(all_left, "left so far: {:?}", ann.left);
    for (who, why) in &ann.left {
        assert_eq!(why, "left", "{who} left as {why}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_socket_gets_its_queued_replies_and_a_reason_before_it_closes() {
    let server = common::server().await;
    let id = common::create_meeting(&server, "Flood").await;
    let url = format!("ws://{}/api/meetings/{id}/ws", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let join = json!({"type": "join", "protocol": 1, "name": "Flo"});
    ws.send(Message::Text(join.to_string().into()))
        .await
        .unwrap();
    // 101 refused messages in a row (the rate limit lets 60 through at once,
    // so pace them), each answered with an error.
    for _ in 0..101 {
        ws.send(Message::Text("not json".into())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(55)).await;
    }
    let mut errors = 0;
    let mut close = None;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "error" && v["code"] == "bad-json" {
                    errors += 1;
                }
            }
            Message::Close(frame) => {
                close = frame;
                break;
            }
            _ => {}
        }
    }
    assert_eq!(errors, 100, "every refusal before the close is answered");
    let frame = close.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason.as_str(), "too many refused messages");
    server.shutdown().await;
}
