//! A restart in the middle of a meeting (SIGTERM, then the same binary on the
//! same port and data folder): everyone is told, comes back as themselves
//! (same participant, same role) by resuming, the lock still holds, and the
//! audit log verifies. The same after `kill -9`, told nothing: the places
//! were written as people joined and changed.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use convene_client::{Client, JoinOptions};
use serde_json::{json, Value};

mod common;
use common::binary::{self, Process};

/// The binary on `port` and `data`, and its log (read until it ends).
fn start(port: u16, data: &Path) -> (Process, std::thread::JoinHandle<Vec<String>>) {
    let mut server = binary::start(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--media-workers",
        "1",
        "--log",
        "info",
        "--reconnect-grace",
        "2",
        "--data-dir",
        &data.display().to_string(),
    ]);
    let log = server.log();
    (server, log)
}

fn role_of(c: &Client, who: &str) -> String {
    let p = c.participants.get(who);
    p.and_then(|p| p["role"].as_str())
        .unwrap_or("?")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_survives_a_restart_with_the_same_people_roles_and_lock() {
    through_a_restart(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_survives_kill_9_with_the_same_people_roles_and_lock() {
    through_a_restart(true).await
}

async fn through_a_restart(kill: bool) {
    let dir = std::env::temp_dir().join(format!(
        "convene-restart-{}",
        convene_storage::new_meeting_id()
    ));
    let data = dir.join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (mut server, log) = start(port, &data);

    let created: Value = reqwest::Client::new()
        .post(format!("{url}/api/meetings"))
        .json(&json!({"title": "Through a restart"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let opts = |cookie: &str, host_key: Option<&str>, resume: Option<&str>| JoinOptions {
        host_key: host_key.map(str::to_string),
        resume: resume.map(str::to_string),
        cookie: Some(format!("convene_device={cookie}")),
        ..JoinOptions::default()
    };
    let mut hana = Client::join_with(
        &url,
        &id,
        "Hana",
        opts("hana-device-1", created["hostKey"].as_str(), None),
    )
    .await
    .unwrap();
    let mut gil = Client::join_with(&url, &id, "Gil", opts("gil-device-22", None, None))
        .await
        .unwrap();
    let mut ann = Client::join_with(&url, &id, "Ann", opts("ann-device-333", None, None))
        .await
        .unwrap();
    hana.send(json!({"type": "set-role", "participantId": gil.participant_id, "role": "co-host"}))
        .await
        .unwrap();
    hana.send(json!({"type": "lock", "locked": true}))
        .await
        .unwrap();
    let gil_id = gil.participant_id.clone();
    assert!(
        hana.run_until(Duration::from_secs(5), |c| role_of(c, &gil_id) == "co-host"
            && c.log.iter().any(
                |m| m["type"] == "meeting-updated" && m["meeting"]["locked"] == true
            ))
        .await,
        "{:?}",
        hana.log
    );
    let roles = ["host", "co-host", "participant"];
    assert_eq!(role_of(&ann, &hana.participant_id), roles[0]);
    let before: Vec<(String, String, String)> = [&hana, &gil, &ann]
        .iter()
        .zip(roles)
        .map(|(c, r)| {
            (
                c.participant_id.clone(),
                r.to_string(),
                c.resume_token.clone(),
            )
        })
        .collect();

    if kill {
        // kill -9: nobody is told, nothing is held at a stop.
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        drop(log.join());
    } else {
        // SIGTERM: everyone is told, and the process ends by itself.
        let stopped_at = Instant::now();
        assert!(Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status()
            .unwrap()
            .success());
        for c in [&mut hana, &mut gil, &mut ann] {
            assert!(
                c.run_until(Duration::from_secs(10), |c| c
                    .log
                    .iter()
                    .any(|m| m["type"] == "restarting"))
                    .await,
                "{} was told: {:?}",
                c.participant_id,
                c.log.iter().rev().take(3).collect::<Vec<_>>()
            );
        }
        let status = loop {
            if let Some(s) = server.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                stopped_at.elapsed() < Duration::from_secs(15),
                "stopped within the deadline"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status}");
        let first_log = log.join().unwrap();
        assert!(
            first_log
                .iter()
                .any(|l| l.contains("places held") && l.contains("people=3")),
            "{first_log:?}"
        );
    }
    drop((hana, gil, ann));

    // The same binary again: each comes back by resuming, as themselves.
    let (mut server, log) = start(port, &data);
    let names = ["Hana", "Gil", "Ann"];
    let cookies = ["hana-device-1", "gil-device-22", "ann-device-333"];
    let mut back = Vec::new();
    for (i, (who, role, token)) in before.iter().enumerate() {
        let c = Client::join_with(&url, &id, names[i], opts(cookies[i], None, Some(token)))
            .await
            .unwrap_or_else(|e| panic!("{} resumes: {e}", names[i]));
        assert_eq!(
            &c.participant_id, who,
            "{} is the same participant",
            names[i]
        );
        back.push((c, role.clone()));
    }
    let viewer = &mut back[2].0;
    let ids: Vec<String> = before.iter().map(|b| b.0.clone()).collect();
    assert!(
        viewer
            .run_until(Duration::from_secs(5), |c| ids.iter().all(|id| c
                .participants
                .get(id)
                .is_some_and(|p| p["connected"] == true)))
            .await,
        "everyone shown connected again: {:?}",
        viewer.participants
    );
    // Roles as before, as Ann sees Hana and Gil and Hana sees Ann.
    for (viewer, i) in [(2, 0), (2, 1), (0, 2)] {
        let (who, role, _) = &before[i];
        assert_eq!(&role_of(&back[viewer].0, who), role, "{who}'s role");
    }
    // The lock holds: someone new is still kept out.
    let e = Client::join_with(&url, &id, "Eve", opts("eve-device", None, None))
        .await
        .err()
        .expect("refused");
    assert!(e.contains("locked"), "{e}");

    assert!(Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(server.child.wait().unwrap().success());
    drop(log.join());
    binary::audit_verifies(&data);
    std::fs::remove_dir_all(dir).ok();
}
