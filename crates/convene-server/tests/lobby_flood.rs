//! The lobby over real sockets: a flood of people waiting cannot keep the host
//! out of their own meeting, and one address that has filled its share of the
//! lobby does not keep anyone else from waiting.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A meeting with the lobby on; returns its id and host key.
async fn create(server: &convene_server::RunningServer) -> (String, String) {
    let body = json!({"title": "Lobby", "settings": {"lobby": true}});
    let (status, text) =
        common::http(server, "POST", "/api/meetings", Some(&body.to_string())).await;
    assert_eq!(status, 201, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    (
        v["id"].as_str().unwrap().to_string(),
        v["hostKey"].as_str().unwrap().to_string(),
    )
}

/// A signalling socket opened from `ip` (any 127.x.y.z is this machine).
async fn socket_from(server: &convene_server::RunningServer, meeting: &str, ip: &str) -> Ws {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(ip.parse().unwrap(), 0)).unwrap();
    let stream = sock.connect(server.addr).await.unwrap();
    let url = format!("ws://{}/api/meetings/{meeting}/ws", server.addr);
    tokio_tungstenite::client_async(url, stream)
        .await
        .unwrap()
        .0
}

async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer in time")
            .expect("the socket stays open")
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// Send "join"; the answer: "lobby", "welcome" or an "error".
async fn join(ws: &mut Ws, name: &str, host_key: Option<&str>) -> Value {
    let mut join = json!({"type": "join", "protocol": 1, "name": name});
    if let Some(k) = host_key {
        join["hostKey"] = json!(k);
    }
    ws.send(Message::text(join.to_string())).await.unwrap();
    next(ws).await
}

/// Open a socket from `ip` and join as a guest: kept if it waits, else the error.
async fn wait_from(
    server: &convene_server::RunningServer,
    meeting: &str,
    ip: &str,
) -> Result<Ws, Value> {
    let mut ws = socket_from(server, meeting, ip).await;
    let answer = join(&mut ws, "Visitor", None).await;
    match answer["type"].as_str() {
        Some("lobby") => Ok(ws),
        _ => Err(answer),
    }
}

/// The lobby list the host was last sent, after their welcome.
async fn lobby_list(host: &mut Ws) -> usize {
    loop {
        let m = next(host).await;
        if m["type"] == "lobby-updated" {
            return m["waiting"].as_array().unwrap().len();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lobby_flood_cannot_keep_the_host_out() {
    // Ten seats; sixty sockets from six addresses try to wait.
    let server = common::server_with(|c| c.max_participants = 10).await;
    let (meeting, key) = create(&server).await;
    let mut waiting = Vec::new();
    let mut refused = Vec::new();
    for a in 0..6 {
        for _ in 0..10 {
            match wait_from(&server, &meeting, &format!("127.0.0.{}", 10 + a)).await {
                Ok(ws) => waiting.push(ws),
                Err(e) => refused.push(e),
            }
        }
    }
    assert!(
        waiting.len() >= 10,
        "as many wait as the meeting has seats, or more"
    );
    let mut host = socket_from(&server, &meeting, "127.0.0.1").await;
    let answer = join(&mut host, "Hana", Some(&key)).await;
    assert_eq!(answer["type"], "welcome", "{answer}");
    assert_eq!(lobby_list(&mut host).await, waiting.len());
    // The lobby took its 50 and turned the rest away, saying why.
    assert_eq!(waiting.len(), 50);
    assert_eq!(refused.len(), 10);
    for e in &refused {
        assert_eq!(e["code"], "lobby-full", "{e}");
    }
    // Until someone leaves, one more finds the lobby full.
    let mut guest = socket_from(&server, &meeting, "127.0.0.2").await;
    let answer = join(&mut guest, "Gus", None).await;
    assert_eq!(
        answer["code"], "lobby-full",
        "the lobby is still full: {answer}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lobby_full_for_one_address_lets_another_address_wait() {
    let server = common::server().await;
    let (meeting, key) = create(&server).await;
    let mut waiting = Vec::new();
    for _ in 0..10 {
        waiting.push(wait_from(&server, &meeting, "127.0.0.20").await.unwrap());
    }
    let Err(e) = wait_from(&server, &meeting, "127.0.0.20").await else {
        panic!("the eleventh from one address waits too");
    };
    assert_eq!(e["code"], "lobby-full", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("your network address"),
        "{e}"
    );
    waiting.push(
        wait_from(&server, &meeting, "127.0.0.21")
            .await
            .expect("another address still waits"),
    );
    let mut host = socket_from(&server, &meeting, "127.0.0.20").await;
    let answer = join(&mut host, "Hana", Some(&key)).await;
    assert_eq!(answer["type"], "welcome", "{answer}");
    assert_eq!(lobby_list(&mut host).await, 11);
    server.shutdown().await;
}
