//! Who gets in and what they may do: host links, passcodes with back-off, and
//! settings enforced by the server.

mod common;

use std::time::Duration;

use convene_client::{Client, JoinOptions};
use serde_json::{json, Value};

async fn create(server: &convene_server::RunningServer, body: Value) -> Value {
    let (status, text) =
        common::http(server, "POST", "/api/meetings", Some(&body.to_string())).await;
    assert_eq!(status, 201, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn opts(passcode: Option<&str>, from: Option<&str>) -> JoinOptions {
    JoinOptions {
        passcode: passcode.map(str::to_string),
        local_ip: from.map(|ip| ip.parse().unwrap()),
        ..JoinOptions::default()
    }
}

#[track_caller]
fn error_code(result: Result<Client, String>) -> String {
    let e = result.err().expect("join refused");
    ["wrong-passcode", "locked-out", "forbidden"]
        .iter()
        .find(|c| e.contains(*c))
        .unwrap_or(&"other")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passcodes_are_checked_slowed_and_locked_out_per_client() {
    let server = common::server().await;
    let m = create(
        &server,
        json!({"title": "Sensitive", "passcode": "4711 blue"}),
    )
    .await;
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["passcodeRequired"], true);
    assert!(
        !m["joinUrl"].as_str().unwrap().contains("4711"),
        "the passcode is never in the link"
    );
    let (_, public) = common::http(&server, "GET", &format!("/api/meetings/{id}"), None).await;
    let public: Value = serde_json::from_str(&public).unwrap();
    assert_eq!(public["passcodeRequired"], true);
    assert!(
        public.get("hostKey").is_none(),
        "the host key is shown only once"
    );

    let url = server.url.clone();
    assert_eq!(
        error_code(Client::join_with(&url, &id, "Eve", opts(None, None)).await),
        "wrong-passcode"
    );
    // Giving none is not a guess; five wrong guesses are.
    for _ in 0..5 {
        assert_eq!(
            error_code(Client::join_with(&url, &id, "Eve", opts(Some("0000"), None)).await),
            "wrong-passcode"
        );
    }
    // Five wrong: now even the right passcode must wait, from this address.
    assert_eq!(
        error_code(Client::join_with(&url, &id, "Eve", opts(Some("4711 blue"), None)).await),
        "locked-out"
    );
    // Someone else, from another address, gets in with the right passcode.
    let ann = Client::join_with(&url, &id, "Ann", opts(Some("4711 blue"), Some("127.0.0.2")))
        .await
        .unwrap();
    assert_eq!(ann.meeting_title, "Sensitive");
    // After the wait, the first address may try again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let eve = Client::join_with(&url, &id, "Eve", opts(Some("4711 blue"), None))
        .await
        .unwrap();
    // Resuming needs no passcode: the token proves the earlier admission.
    let token = eve.resume_token.clone();
    eve.vanish();
    let back = Client::join_with(
        &url,
        &id,
        "Eve",
        JoinOptions {
            resume: Some(token),
            ..Default::default()
        },
    )
    .await;
    assert!(back.is_ok(), "{:?}", back.err());

    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, log) = common::http_with(
        &server,
        "GET",
        &format!("/api/admin/audit?meeting={id}"),
        None,
        "Authorization: Bearer test-admin-token\r\n",
    )
    .await;
    assert!(log.contains("refused: wrong passcode"));
    assert!(log.contains("refused: locked out"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_link_makes_a_host_and_settings_bind_participants() {
    let server = common::server().await;
    let m = create(
        &server,
        json!({"title": "Briefing", "settings": {
            "lobby": false, "screenShare": "hosts-and-presenters", "unmute": "everyone",
            "chat": "hosts", "guestCameras": true, "maxParticipants": 10
        }}),
    )
    .await;
    let id = m["id"].as_str().unwrap().to_string();
    let host_key = m["hostKey"].as_str().unwrap().to_string();
    assert!(
        m["hostUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("#host={host_key}")),
        "key in the fragment only"
    );
    let url = server.url.clone();

    let bad = JoinOptions::host("f".repeat(32));
    assert_eq!(
        error_code(Client::join_with(&url, &id, "Mallory", bad).await),
        "forbidden"
    );

    let host_opts = JoinOptions::host(host_key);
    let mut host = Client::join_with(&url, &id, "Hana", host_opts)
        .await
        .unwrap();
    let mut guest = Client::join(&url, &id, "Gus", None).await.unwrap();
    let host_id = host.participant_id.clone();
    assert_eq!(guest.participants[&host_id]["role"], "host");
    assert_eq!(
        guest.participants[&guest.participant_id]["role"],
        "participant"
    );

    guest.publish("screen", 300).await.unwrap();
    guest.chat("can I talk?").await.unwrap();
    assert!(
        guest
            .run_until(Duration::from_secs(5), |c| c.errors.len() >= 2)
            .await
    );
    assert!(
        guest.errors.iter().all(|e| e["code"] == "forbidden"),
        "{:?}",
        guest.errors
    );
    assert!(guest.participants[&guest.participant_id]["sources"]
        .as_array()
        .unwrap()
        .is_empty());

    host.publish("screen", 300).await.unwrap();
    let gid = guest.participant_id.clone();
    let hid = host_id.clone();
    let (_, got) = tokio::join!(
        host.run_until(Duration::from_secs(4), |_| false),
        guest.run_until(Duration::from_secs(4), |c| c
            .received_from(&hid, "screen")
            .packets
            > 20)
    );
    assert!(got, "the host's screen reaches the guest");
    // The guest's refused screen never reached the host.
    assert_eq!(host.received_from(&gid, "screen").packets, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_mute_is_enforced_by_the_sfu() {
    let server = common::server().await;
    let m = create(&server, json!({"title": "Muting"})).await;
    let id = m["id"].as_str().unwrap().to_string();
    let host_opts = JoinOptions::host(m["hostKey"].as_str().unwrap());
    let url = server.url.clone();
    let mut host = Client::join_with(&url, &id, "Hana", host_opts)
        .await
        .unwrap();
    let mut guest = Client::join(&url, &id, "Gus", None).await.unwrap();
    guest.publish("microphone", 0).await.unwrap();
    let gid = guest.participant_id.clone();
    let audio = |c: &Client| c.received_from(&gid, "microphone").packets;

    let (_, got) = tokio::join!(
        guest.run_until(Duration::from_secs(3), |_| false),
        host.run_until(Duration::from_secs(3), |c| audio(c) > 20)
    );
    assert!(got);
    host.send(json!({"type": "mute-participant", "participantId": gid}))
        .await
        .unwrap();
    // The guest keeps sending (a client that ignores the mute): nothing more arrives.
    tokio::join!(
        guest.run_until(Duration::from_secs(1), |_| false),
        host.run_until(Duration::from_secs(1), |_| false)
    );
    let at_mute = audio(&host);
    tokio::join!(
        guest.run_until(Duration::from_secs(2), |_| false),
        host.run_until(Duration::from_secs(2), |_| false)
    );
    assert!(
        audio(&host) <= at_mute + 2,
        "muted audio is not forwarded: {} -> {}",
        at_mute,
        audio(&host)
    );
    assert!(guest
        .log
        .iter()
        .any(|m| m["type"] == "muted-by-host" && m["mayUnmute"] == true));

    // The guest may unmute (the default setting): audio flows again.
    guest
        .send(json!({"type": "mute", "source": "microphone", "muted": false}))
        .await
        .unwrap();
    let before = audio(&host);
    let (_, resumed) = tokio::join!(
        guest.run_until(Duration::from_secs(3), |_| false),
        host.run_until(Duration::from_secs(3), |c| audio(c) > before + 20)
    );
    assert!(resumed, "audio resumes after unmuting");
    server.shutdown().await;
}

/// Issue 17, bug 11: a host adds a passcode to a meeting created without one;
/// joins then need it, the API says so, a level that requires one can be
/// reached, and the change is audited without the passcode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_sets_a_passcode_during_the_meeting() {
    let server = common::server().await;
    let m = create(&server, json!({"title": "Open at first"})).await;
    let id = m["id"].as_str().unwrap().to_string();
    let key = m["hostKey"].as_str().unwrap().to_string();
    let url = server.url.clone();
    let host_opts = JoinOptions::host(key.clone());
    let mut host = Client::join_with(&url, &id, "Hana", host_opts)
        .await
        .unwrap();
    let mut guest = Client::join_with(&url, &id, "Gus", opts(None, Some("127.0.0.3")))
        .await
        .unwrap();

    // A socket opened before the passcode is set, joining after: it is
    // checked against the meeting as it is when it joins.
    let ws_url = format!("{}/api/meetings/{id}/ws", url.replacen("http", "ws", 1));
    let (mut early, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();

    // A guest may not; the host may.
    guest
        .send(json!({"type": "set-passcode", "passcode": "guess me"}))
        .await
        .unwrap();
    assert!(
        guest
            .run_until(Duration::from_secs(5), |c| !c.errors.is_empty())
            .await
    );
    assert_eq!(guest.errors[0]["code"], "forbidden");
    host.send(json!({"type": "set-passcode", "passcode": "4711 blue"}))
        .await
        .unwrap();
    let updated = |c: &Client| {
        c.log
            .iter()
            .any(|m| m["type"] == "meeting-updated" && m["meeting"]["passcode"] == true)
    };
    assert!(host.run_until(Duration::from_secs(10), updated).await);
    assert!(guest.run_until(Duration::from_secs(5), updated).await);
    {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let join = json!({"type": "join", "protocol": 1, "name": "Early"}).to_string();
        early.send(Message::text(join)).await.unwrap();
        let answer = loop {
            match tokio::time::timeout(Duration::from_secs(5), early.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => break serde_json::from_str::<Value>(&t).unwrap(),
                Ok(Some(Ok(_))) => continue,
                other => panic!("no answer to the early socket's join: {other:?}"),
            }
        };
        assert_eq!(
            answer["code"], "wrong-passcode",
            "a socket opened before the passcode was set still needs it: {answer}"
        );
    }

    let (_, public) = common::http(&server, "GET", &format!("/api/meetings/{id}"), None).await;
    let public: Value = serde_json::from_str(&public).unwrap();
    assert_eq!(public["passcodeRequired"], true);
    assert_eq!(
        error_code(Client::join_with(&url, &id, "Eve", opts(None, Some("127.0.0.4"))).await),
        "wrong-passcode"
    );
    Client::join_with(&url, &id, "Ann", opts(Some("4711 blue"), Some("127.0.0.5")))
        .await
        .expect("the new passcode lets people in");

    // OFFICIAL-SENSITIVE needs a passcode: now the meeting has one.
    host.send(json!({"type": "set-level", "level": "official-sensitive", "raise": true}))
        .await
        .unwrap();
    let raised = |c: &Client| {
        c.log.iter().any(|m| {
            m["type"] == "meeting-updated" && m["meeting"]["level"]["id"] == "official-sensitive"
        })
    };
    assert!(
        host.run_until(Duration::from_secs(5), raised).await,
        "{:?}",
        host.errors
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.state.storage.audit_records(Some(&id)).unwrap();
    assert!(log
        .iter()
        .any(|r| r.event == "passcode" && r.outcome == "set"));
    // Its words, not its hashes (hex, where "4711" turns up by chance).
    assert!(log.iter().all(|r| {
        ![&r.actor, &r.subject, &r.event, &r.outcome, &r.detail]
            .iter()
            .any(|f| f.contains("4711"))
    }));
}
