//! Host controls over real sockets and real media: stopping someone's camera or
//! screen, changing settings mid-meeting, removing with a bar, and a meeting
//! remembering its lock, roles and bars across a server restart.

mod common;

use std::time::Duration;

use convene_client::{Client, JoinOptions};
use serde_json::{json, Value};

async fn create(server: &convene_server::RunningServer, body: Value) -> (String, String) {
    let (status, text) =
        common::http(server, "POST", "/api/meetings", Some(&body.to_string())).await;
    assert_eq!(status, 201, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    (
        v["id"].as_str().unwrap().to_string(),
        v["hostKey"].as_str().unwrap().to_string(),
    )
}

fn device(n: u8) -> String {
    format!("convene_device={}", format!("{n:02x}").repeat(16))
}

fn as_device(n: u8) -> JoinOptions {
    JoinOptions {
        cookie: Some(device(n)),
        ..JoinOptions::default()
    }
}

fn as_host(key: &str, n: u8) -> JoinOptions {
    JoinOptions {
        host_key: Some(key.to_string()),
        ..as_device(n)
    }
}

/// Run all three clients for `secs`.
async fn run(a: &mut Client, b: &mut Client, c: &mut Client, secs: f64) {
    let d = Duration::from_secs_f64(secs);
    tokio::join!(
        a.run_until(d, |_| false),
        b.run_until(d, |_| false),
        c.run_until(d, |_| false)
    );
}

fn got(c: &Client, t: &str) -> Vec<Value> {
    c.log.iter().filter(|m| m["type"] == t).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_cameras_and_screens_are_no_longer_forwarded() {
    let server = common::server().await;
    let (id, key) = create(&server, json!({"title": "Review"})).await;
    let url = server.url.clone();
    let mut host = Client::join_with(&url, &id, "Hana", as_host(&key, 1))
        .await
        .unwrap();
    let mut guest = Client::join_with(&url, &id, "Gus", as_device(2))
        .await
        .unwrap();
    let mut watcher = Client::join_with(&url, &id, "Wes", as_device(3))
        .await
        .unwrap();
    guest.publish("camera", 300).await.unwrap();
    guest.publish("screen", 300).await.unwrap();
    let gid = guest.participant_id.clone();
    run(&mut host, &mut guest, &mut watcher, 3.0).await;
    assert!(watcher.received_from(&gid, "camera").packets > 20);
    assert!(watcher.received_from(&gid, "screen").packets > 20);

    host.send(json!({"type": "stop-source", "participantId": gid, "source": "camera"}))
        .await
        .unwrap();
    run(&mut host, &mut guest, &mut watcher, 1.0).await;
    let camera_then = watcher.received_from(&gid, "camera").packets;
    let screen_then = watcher.received_from(&gid, "screen").packets;
    // The guest's client ignores the stop and keeps sending its camera.
    run(&mut host, &mut guest, &mut watcher, 2.0).await;
    assert!(
        watcher.received_from(&gid, "camera").packets <= camera_then + 2,
        "a stopped camera is not forwarded"
    );
    assert!(
        watcher.received_from(&gid, "screen").packets > screen_then + 20,
        "the screen share goes on"
    );
    assert_eq!(
        got(&guest, "source-stopped")[0],
        json!({"type": "source-stopped", "source": "camera", "by": "Hana"})
    );
    assert_eq!(watcher.participants[&gid]["sources"], json!(["screen"]));

    // Now the host restricts screens, cameras and chat to hosts and presenters.
    host.send(json!({"type": "update-settings", "settings": {
        "lobby": false, "screenShare": "hosts-and-presenters", "unmute": "everyone",
        "chat": "hosts-and-presenters", "guestCameras": false, "maxParticipants": 50
    }}))
    .await
    .unwrap();
    run(&mut host, &mut guest, &mut watcher, 1.0).await;
    let screen_then = watcher.received_from(&gid, "screen").packets;
    run(&mut host, &mut guest, &mut watcher, 2.0).await;
    assert!(
        watcher.received_from(&gid, "screen").packets <= screen_then + 2,
        "a screen share the new settings forbid stops at once"
    );
    assert_eq!(
        got(&guest, "settings-updated")[0]["settings"]["chat"],
        "hosts-and-presenters"
    );
    let perms = got(&guest, "permissions").last().unwrap()["permissions"].clone();
    for control in ["camera", "screenShare", "chat"] {
        assert!(perms[control].is_string(), "{control} is off: {perms}");
    }
    assert_eq!(perms["unmute"], Value::Null);
    assert_eq!(perms["host"], false);

    guest.errors.clear();
    guest.chat("hello?").await.unwrap();
    guest.publish("camera", 300).await.unwrap();
    assert!(
        guest
            .run_until(Duration::from_secs(3), |c| c.errors.len() >= 2)
            .await
    );
    assert!(guest.errors.iter().all(|e| e["code"] == "forbidden"));
    // A guest cannot change settings.
    guest
        .send(json!({"type": "update-settings", "settings": {"lobby": true}}))
        .await
        .unwrap();
    assert!(
        guest
            .run_until(Duration::from_secs(3), |c| c.errors.len() >= 3)
            .await
    );
    assert_eq!(guest.errors[2]["code"], "forbidden");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.state.storage.audit_records(Some(&id)).unwrap();
    assert!(log
        .iter()
        .any(|r| r.event == "stop-source" && r.detail == "source: camera"));
    assert!(log
        .iter()
        .any(|r| r.event == "settings" && r.detail.contains("guestCameras: true -> false")));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barred_browser_cannot_rejoin_and_pages_give_browsers_a_device_cookie() {
    let server = common::server().await;
    let (id, key) = create(&server, json!({"title": "Open day"})).await;
    let url = server.url.clone();

    // The page sets an HttpOnly device cookie; the API does not.
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(format!("GET /m/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).await.unwrap();
    let set_cookie = page
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a device cookie");
    assert!(set_cookie.contains("convene_device=") && set_cookie.contains("HttpOnly"));
    assert!(set_cookie.contains("SameSite=Lax"));

    let mut host = Client::join_with(&url, &id, "Hana", as_host(&key, 1))
        .await
        .unwrap();
    let troll = Client::join_with(&url, &id, "Troll", as_device(9))
        .await
        .unwrap();
    let tid = troll.participant_id.clone();
    // Wait until the host knows the troll, then see them leave because of the
    // removal (an empty list would pass before the remove was even read).
    assert!(
        host.run_until(Duration::from_secs(3), |c| c
            .participants
            .contains_key(&tid))
            .await
    );
    host.send(json!({"type": "remove", "participantId": tid, "bar": true}))
        .await
        .unwrap();
    assert!(
        host.run_until(Duration::from_secs(3), |c| !c
            .participants
            .contains_key(&tid)
            && c.left.iter().any(|(who, _)| *who == tid))
            .await
    );
    let again = Client::join_with(&url, &id, "A new name", as_device(9)).await;
    let e = again.err().expect("refused");
    assert!(e.contains("barred"), "{e}");
    // Someone else from the same address is welcome.
    assert!(Client::join_with(&url, &id, "Neighbour", as_device(10))
        .await
        .is_ok());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.state.storage.audit_records(Some(&id)).unwrap();
    assert!(log
        .iter()
        .any(|r| r.event == "remove" && r.outcome == "removed and barred"));
    assert!(log
        .iter()
        .any(|r| r.event == "join" && r.outcome == "refused: barred"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_lock_settings_roles_and_bars() {
    let dir = std::env::temp_dir().join(format!(
        "convene-restart-{}",
        convene_storage::new_meeting_id()
    ));
    let server = common::server_with(|c| c.data_dir = dir.clone()).await;
    let (id, key) = create(&server, json!({"title": "Standing"})).await;
    let url = server.url.clone();
    let mut host = Client::join_with(&url, &id, "Hana", as_host(&key, 1))
        .await
        .unwrap();
    let pat = Client::join_with(&url, &id, "Pat", as_device(2))
        .await
        .unwrap();
    let troll = Client::join_with(&url, &id, "Troll", as_device(3))
        .await
        .unwrap();
    let (pid, tid) = (pat.participant_id.clone(), troll.participant_id.clone());
    for msg in [
        json!({"type": "set-role", "participantId": pid, "role": "co-host"}),
        json!({"type": "remove", "participantId": tid, "bar": true}),
        json!({"type": "update-settings", "settings": {
            "lobby": true, "screenShare": "hosts", "unmute": "everyone",
            "chat": "everyone", "guestCameras": true, "maxParticipants": 20}}),
        json!({"type": "lock", "locked": true}),
    ] {
        host.send(msg).await.unwrap();
    }
    assert!(
        host.run_until(Duration::from_secs(3), |c| c
            .log
            .iter()
            .any(|m| m["type"] == "meeting-updated"))
            .await
    );
    host.leave().await;
    pat.leave().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.shutdown().await;

    let server = common::server_with(|c| c.data_dir = dir.clone()).await;
    let url = server.url.clone();
    let (_, view) = common::http(&server, "GET", &format!("/api/meetings/{id}"), None).await;
    assert!(view.contains(r#""screenShare":"hosts""#), "{view}");
    let refused = |r: Result<Client, String>| r.err().expect("refused");
    assert!(
        refused(Client::join_with(&url, &id, "Newcomer", as_device(4)).await).contains("locked")
    );
    assert!(refused(Client::join_with(&url, &id, "Troll", as_device(3)).await).contains("barred"));
    // The co-host comes back as co-host (into the locked meeting, past the lobby).
    let pat = Client::join_with(&url, &id, "Pat", as_device(2))
        .await
        .unwrap();
    assert_eq!(pat.participants[&pat.participant_id]["role"], "co-host");
    let host = Client::join_with(&url, &id, "Hana", as_host(&key, 1))
        .await
        .unwrap();
    assert_eq!(host.participants[&host.participant_id]["role"], "host");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_requests_get_errors_and_their_media_reaches_no_one() {
    let server = common::server().await;
    let (id, key) = create(
        &server,
        json!({"title": "Strict", "settings": {"lobby": true, "unmute": "hosts"}}),
    )
    .await;
    let url = server.url.clone();
    let mut host = Client::join_with(&url, &id, "Hana", as_host(&key, 1))
        .await
        .unwrap();
    host.publish("microphone", 0).await.unwrap();
    host.publish("camera", 300).await.unwrap();

    // Someone waiting in the lobby may not publish, chat or act, and sees nothing.
    let mut waiter = Client::join_with(&url, &id, "Wes", as_device(2))
        .await
        .unwrap();
    assert!(waiter.in_lobby);
    for msg in [
        json!({"type": "publish", "source": "camera"}),
        json!({"type": "chat", "text": "let me in"}),
        json!({"type": "admit", "participantId": "p2"}),
        json!({"type": "lock", "locked": true}),
    ] {
        waiter.send(msg).await.unwrap();
    }
    host.chat("agenda item 1").await.unwrap();
    let d = Duration::from_secs(2);
    tokio::join!(
        host.run_until(d, |_| false),
        waiter.run_until(d, |c| c.errors.len() >= 4)
    );
    assert_eq!(waiter.errors.len(), 4, "{:?}", waiter.errors);
    assert!(waiter
        .errors
        .iter()
        .all(|e| e["code"] == "wrong-state" && e["message"] == "you are waiting in the lobby"));
    assert!(waiter.participants.is_empty() && waiter.chat.is_empty());
    assert_eq!(waiter.offers, 0, "no media connection while waiting");

    // An admitted guest whom the host mutes may not unmute (only hosts may here),
    // and may not act as a host.
    let mut gus = Client::join_with(&url, &id, "Gus", as_device(3))
        .await
        .unwrap();
    assert!(
        host.run_until(Duration::from_secs(3), |c| c.log.iter().any(|m| m["type"]
            == "lobby-updated"
            && m["waiting"].as_array().unwrap().len() == 2))
            .await
    );
    let gus_id = host
        .log
        .iter()
        .rev()
        .find(|m| m["type"] == "lobby-updated")
        .and_then(|m| {
            m["waiting"]
                .as_array()
                .unwrap()
                .iter()
                .find(|w| w["name"] == "Gus")
                .map(|w| w["id"].as_str().unwrap().to_string())
        })
        .unwrap();
    host.send(json!({"type": "admit", "participantId": gus_id}))
        .await
        .unwrap();
    assert!(
        gus.run_until(Duration::from_secs(3), |c| !c.participant_id.is_empty())
            .await
    );
    gus.publish("microphone", 0).await.unwrap();
    let audio = |c: &Client| c.received_from(&gus_id, "microphone").packets;
    let d = Duration::from_secs(2);
    tokio::join!(gus.run_until(d, |_| false), host.run_until(d, |_| false));
    assert!(audio(&host) > 20, "the guest is heard before the mute");
    host.send(json!({"type": "mute-participant", "participantId": gus_id}))
        .await
        .unwrap();
    assert!(
        gus.run_until(Duration::from_secs(3), |c| c
            .log
            .iter()
            .any(|m| m["type"] == "muted-by-host" && m["mayUnmute"] == false))
            .await
    );
    gus.errors.clear();
    for msg in [
        json!({"type": "mute", "source": "microphone", "muted": false}),
        json!({"type": "remove", "participantId": host.participant_id}),
        json!({"type": "lock", "locked": true}),
        json!({"type": "mute-all"}),
        json!({"type": "set-role", "participantId": gus_id, "role": "host"}),
        json!({"type": "end"}),
    ] {
        gus.send(msg).await.unwrap();
    }
    let d = Duration::from_secs(1);
    tokio::join!(
        gus.run_until(d, |c| c.errors.len() >= 6),
        host.run_until(d, |_| false)
    );
    assert_eq!(gus.errors.len(), 6, "{:?}", gus.errors);
    assert!(gus.errors.iter().all(|e| e["code"] == "forbidden"));
    assert!(gus.errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("ask a host to unmute you"));
    // Gus's client keeps sending audio regardless: none of it is forwarded.
    let at_mute = audio(&host);
    let d = Duration::from_secs(2);
    tokio::join!(gus.run_until(d, |_| false), host.run_until(d, |_| false));
    assert!(audio(&host) <= at_mute + 2, "{at_mute} -> {}", audio(&host));
    // Nothing changed: the host is still here, the meeting open, the waiter waiting.
    assert_eq!(gus.participants.len(), 2);
    assert!(!host.log.iter().any(|m| m["type"] == "meeting-updated"));
    assert_eq!(gus.participants[&gus_id]["role"], "participant");
    waiter
        .run_until(Duration::from_millis(200), |_| false)
        .await;
    assert!(waiter.received.is_empty() && waiter.participants.is_empty());
    server.shutdown().await;
}
