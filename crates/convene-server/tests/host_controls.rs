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
    host.send(json!({"type": "remove", "participantId": tid, "bar": true}))
        .await
        .unwrap();
    assert!(
        host.run_until(Duration::from_secs(3), |c| !c
            .participants
            .contains_key(&tid))
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
