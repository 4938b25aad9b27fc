//! A headless participant in an end-to-end encrypted meeting, for
//! tests/e2e/e2ee-rust-interop.test.mjs (a Rust client and Chromium in one
//! meeting on a real server):
//!
//! `e2ee-participant <server url> <meeting id> <name> <seconds>`
//!
//! joins with `e2ee`, publishes a synthetic microphone and camera (SFrame
//! sealed), and every 250 ms prints one JSON line: its epoch, verification
//! code, the group's members, frames decrypted and refused per (participant,
//! source), decrypted chat and warnings. A line `chat <text>` on stdin sends
//! encrypted chat. It leaves when stdin closes or the time is up.

use std::time::{Duration, Instant};

use convene_client::{Client, JoinOptions};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, meeting, name, seconds] = &args[..] else {
        eprintln!("usage: e2ee-participant <server url> <meeting id> <name> <seconds>");
        std::process::exit(2);
    };
    let end = Instant::now() + Duration::from_secs(seconds.parse().unwrap_or(30));
    let opts = JoinOptions {
        e2ee: true,
        ..JoinOptions::default()
    };
    let mut client = match Client::join_with(url, meeting, name, opts).await {
        Ok(c) => c,
        Err(e) => {
            println!("{}", json!({"error": e}));
            std::process::exit(1);
        }
    };
    client
        .publish("microphone", 0)
        .await
        .expect("publish microphone");
    client
        .publish_with("camera", 300, 15)
        .await
        .expect("publish camera");

    // stdin on a thread of its own: the client's loop must not block on it.
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    while Instant::now() < end {
        client
            .run_until(Duration::from_millis(250), |_| false)
            .await;
        loop {
            match lines.try_recv() {
                Ok(line) => {
                    if let Some(text) = line.strip_prefix("chat ") {
                        if let Err(e) = client.chat(text).await {
                            println!("{}", json!({"error": e}));
                        }
                    }
                }
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    client.leave().await;
                    return;
                }
            }
        }
        let e = client.e2ee.as_ref();
        let current = e.and_then(|e| e.current());
        let frames: serde_json::Map<String, serde_json::Value> = e
            .map(|e| {
                e.frames
                    .iter()
                    .map(|((p, s), c)| {
                        let v = json!({"decrypted": c.decrypted, "failed": c.failed, "incomplete": c.incomplete, "why": c.why});
                        (format!("{p}/{s}"), v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{}",
            json!({
                "participantId": client.participant_id,
                "epoch": current.map(|c| c.epoch),
                "digits": current.map(|c| c.code.digits.clone()),
                "emoji": current.map(|c| c.code.emoji),
                "members": current.map(|c| c.members.iter().map(|m| m.participant_id.clone()).collect::<Vec<_>>()),
                "frames": frames,
                "chat": e.map(|e| e.chat.clone()),
                "clearChat": client.chat.len(),
                "warnings": e.map(|e| e.warnings.iter().map(|w| format!("{}: {}", w.code, w.detail)).collect::<Vec<_>>()),
                "errors": client.errors,
            })
        );
    }
    client.leave().await;
}
