//! Bad input gets a clear error, and the meeting carries on for everyone else.

mod common;

use std::time::Duration;

use convene_client::Client;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw(url: &str, meeting: &str) -> Ws {
    let ws_url = format!(
        "{}/api/meetings/{meeting}/ws",
        url.replacen("http", "ws", 1)
    );
    tokio_tungstenite::connect_async(&ws_url).await.unwrap().0
}

/// The next JSON message, skipping pings.
async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

async fn next_error(ws: &mut Ws) -> String {
    next_error_keeping(ws, &mut Vec::new()).await
}

/// Like `next_error`, keeping the other messages that arrive meanwhile.
async fn next_error_keeping(ws: &mut Ws, seen: &mut Vec<Value>) -> String {
    loop {
        let v = next(ws).await.expect("an error message");
        if v["type"] != "error" {
            seen.push(v);
            continue;
        }
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        return v["code"].as_str().unwrap().to_string();
    }
}

async fn send(ws: &mut Ws, text: impl Into<String>) {
    ws.send(Message::text(text.into())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_before_join() {
    let server = common::server().await;
    let meeting = common::create_meeting(&server, "Errors").await;
    let mut ws = raw(&server.url, &meeting).await;
    send(&mut ws, "{not json").await;
    assert_eq!(next_error(&mut ws).await, "bad-json");
    send(&mut ws, r#"{"type":"teleport"}"#).await;
    assert_eq!(next_error(&mut ws).await, "unknown-type");
    send(&mut ws, r#"{"type":"chat","text":"hi"}"#).await;
    assert_eq!(next_error(&mut ws).await, "wrong-state");
    send(&mut ws, r#"{"type":"join","protocol":2,"name":"A"}"#).await;
    assert_eq!(next_error(&mut ws).await, "unsupported-protocol");
    send(&mut ws, r#"{"type":"join","protocol":1}"#).await;
    assert_eq!(next_error(&mut ws).await, "invalid");
    send(
        &mut ws,
        format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(300 * 1024)),
    )
    .await;
    assert_eq!(next_error(&mut ws).await, "too-large");
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(next_error(&mut ws).await, "bad-json");
    // Still usable: a correct join works on the same socket.
    send(&mut ws, r#"{"type":"join","protocol":1,"name":"Finally"}"#).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "welcome");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_in_a_meeting_do_not_disturb_the_others() {
    let server = common::server().await;
    let meeting = common::create_meeting(&server, "Disturb").await;
    let mut ann = Client::join(&server.url, &meeting, "Ann", None)
        .await
        .unwrap();
    ann.publish("camera", 300).await.unwrap();
    let ann_id = ann.participant_id.clone();

    let mut eve = raw(&server.url, &meeting).await;
    let mut seen = Vec::new();
    send(&mut eve, r#"{"type":"join","protocol":1,"name":"Eve"}"#).await;
    assert_eq!(next(&mut eve).await.unwrap()["type"], "welcome");
    // An answer with no offer outstanding (Eve has no media yet) and broken SDP.
    send(
        &mut eve,
        json!({"type": "answer", "sdp": "v=0 garbage"}).to_string(),
    )
    .await;
    let code = next_error_keeping(&mut eve, &mut seen).await;
    assert!(code == "bad-sdp" || code == "wrong-state", "{code}");
    send(&mut eve, r#"{"type":"join","protocol":1,"name":"Again"}"#).await;
    assert_eq!(next_error_keeping(&mut eve, &mut seen).await, "wrong-state");
    send(&mut eve, r#"{"type":"publish","source":"hologram"}"#).await;
    assert_eq!(next_error_keeping(&mut eve, &mut seen).await, "invalid");
    send(&mut eve, r#"{"type":"unpublish","source":"camera"}"#).await;
    assert_eq!(next_error_keeping(&mut eve, &mut seen).await, "wrong-state");
    send(&mut eve, r#"{"type":"chat","text":"   "}"#).await;
    assert_eq!(next_error_keeping(&mut eve, &mut seen).await, "invalid");

    // Eve now receives Ann's camera, so an offer is waiting: answer it with junk.
    let offer = match seen.iter().find(|v| v["type"] == "offer") {
        Some(v) => v.clone(),
        None => loop {
            let v = next(&mut eve).await.expect("an offer");
            if v["type"] == "offer" {
                break v;
            }
        },
    };
    assert!(offer["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["participantId"] == ann_id.as_str()));
    send(
        &mut eve,
        json!({"type": "answer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"}).to_string(),
    )
    .await;
    assert_eq!(next_error_keeping(&mut eve, &mut seen).await, "bad-sdp");
    // Not SDP at all: a fixed sentence, never the parser's internals (which
    // named a heap address).
    send(
        &mut eve,
        json!({"type": "answer", "sdp": "this is not sdp"}).to_string(),
    )
    .await;
    let refusal = loop {
        let v = next(&mut eve).await.expect("an error message");
        if v["type"] == "error" {
            break v;
        }
        seen.push(v);
    };
    assert_eq!(refusal["code"], "bad-sdp", "{refusal}");
    assert_eq!(
        refusal["message"], "the answer is not SDP this server can use",
        "{refusal}"
    );

    // Flooding is refused with rate-limited, not by dropping the meeting.
    for _ in 0..80 {
        send(&mut eve, r#"{"type":"ping"}"#).await;
    }
    assert_eq!(
        next_error_keeping(&mut eve, &mut seen).await,
        "rate-limited"
    );

    // Meanwhile a well-behaved participant is unaffected.
    let mut bob = Client::join(&server.url, &meeting, "Bob", None)
        .await
        .unwrap();
    let ok = tokio::join!(
        ann.run_until(Duration::from_secs(10), |_| false),
        bob.run_until(Duration::from_secs(10), |c| c
            .received_from(&ann_id, "camera")
            .packets
            > 50)
    )
    .1;
    assert!(ok, "Bob still gets Ann's video");
    assert!(bob.participants.values().any(|p| p["name"] == "Eve"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_validates_and_unknown_meetings_are_404() {
    let server = common::server().await;
    let (status, body) =
        common::http(&server, "POST", "/api/meetings", Some("{\"title\":\"\"}")).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = common::http(&server, "POST", "/api/meetings", Some("nonsense")).await;
    assert_eq!(status, 400);
    let long = json!({ "title": "t".repeat(121) }).to_string();
    assert_eq!(
        common::http(&server, "POST", "/api/meetings", Some(&long))
            .await
            .0,
        400
    );
    let id = common::create_meeting(&server, "  Spaced   title ").await;
    let (status, body) = common::http(&server, "GET", &format!("/api/meetings/{id}"), None).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["title"], "Spaced title");
    assert!(v["joinUrl"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/m/{id}")));
    assert_eq!(
        common::http(&server, "GET", "/api/meetings/aaaa-bbbb-cccc", None)
            .await
            .0,
        404
    );
    assert_eq!(
        common::http(&server, "GET", "/m/aaaa-bbbb-cccc", None)
            .await
            .0,
        404
    );
    assert_eq!(
        common::http(&server, "GET", &format!("/m/{id}"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        common::http(&server, "GET", "/api/meetings/..%2f..%2fetc", None)
            .await
            .0,
        404
    );
    assert_eq!(
        common::http(&server, "GET", "/assets/..%2fCargo.toml", None)
            .await
            .0,
        404
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meetings_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!(
        "convene-restart-{}",
        convene_storage::new_meeting_id()
    ));
    let d = dir.clone();
    let server = common::server_with(|c| c.data_dir = d).await;
    let id = common::create_meeting(&server, "Persistent").await;
    server.shutdown().await;
    let d = dir.clone();
    let server = common::server_with(|c| c.data_dir = d).await;
    let mut ann = Client::join(&server.url, &id, "Ann", None).await.unwrap();
    assert_eq!(ann.meeting_title, "Persistent");
    ann.run_until(Duration::from_millis(10), |_| false).await;
    server.shutdown().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalling_from_another_site_is_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = common::server().await;
    let meeting = common::create_meeting(&server, "Origin").await;
    let url = format!(
        "{}/api/meetings/{meeting}/ws",
        server.url.replacen("http", "ws", 1)
    );
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", "https://evil.example".parse().unwrap());
    assert!(
        tokio_tungstenite::connect_async(req).await.is_err(),
        "a foreign origin is refused"
    );
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", server.url.parse().unwrap());
    assert!(
        tokio_tungstenite::connect_async(req).await.is_ok(),
        "the server's own origin is fine"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_joins_is_closed_even_if_it_keeps_talking() {
    let server = common::server().await;
    let meeting = common::create_meeting(&server, "Lurker").await;
    let mut ws = raw(&server.url, &meeting).await;
    let start = std::time::Instant::now();
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(14) {
        if ws.send(Message::text("{bad")).await.is_err() {
            closed = true;
            break;
        }
        if next(&mut ws).await.is_none() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(closed, "closed after the join deadline");
    server.shutdown().await;
}
