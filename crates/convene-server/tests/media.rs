//! Headless str0m participants join through the documented protocol, publish
//! synthetic media through the real SFU, and receive each other's.

mod common;

use std::time::Duration;

use common::run_pair;
use convene_client::Client;

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_exchange_media_chat_and_speaking() {
    let server = common::server().await;
    let url = server.url.clone();
    let meeting = common::create_meeting(&server, "Media check").await;

    let mut ann = Client::join(&url, &meeting, "Ann", None).await.unwrap();
    assert_eq!(ann.meeting_title, "Media check");
    ann.publish("camera", 500).await.unwrap();
    ann.publish("microphone", 0).await.unwrap();
    let mut bob = Client::join(&url, &meeting, "Bob", None).await.unwrap();
    bob.publish("microphone", 0).await.unwrap();
    let ann_id = ann.participant_id.clone();
    let bob_id = bob.participant_id.clone();

    // Both run at once: each has to answer offers and send media.
    let (ann_ok, bob_ok) = run_pair(
        &mut ann,
        &mut bob,
        T,
        |c| c.received_from(&bob_id, "microphone").packets > 50,
        |c| {
            let v = c.received_from(&ann_id, "camera");
            v.keyframes > 0
                && v.packets > 100
                && c.received_from(&ann_id, "microphone").packets > 50
        },
    )
    .await;
    assert!(ann_ok, "Ann receives Bob's audio: {:?}", ann.received);
    assert!(
        bob_ok,
        "Bob receives Ann's video and audio: {:?}",
        bob.received
    );
    let cam = bob.received_from(&ann_id, "camera");
    assert_eq!(cam.gaps, 0, "no loss on loopback");

    // An operator sees the load, with the admin token only.
    let path = "/api/admin/stats";
    assert_eq!(common::http(&server, "GET", path, None).await.0, 401);
    let token = "Authorization: Bearer test-admin-token\r\n";
    let (status, body) = common::http_with(&server, "GET", path, None, token).await;
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["meetingsRunning"], 1, "{stats}");
    assert_eq!(stats["media"]["connections"], 2, "{stats}");
    assert_eq!(stats["media"]["tracks"], 3, "{stats}");
    let forwarded = stats["media"]["rtpForwarded"].as_u64().unwrap();
    assert!(forwarded >= cam.packets, "{stats}");
    assert!(stats["media"]["rtpDroppedLate"].is_u64(), "{stats}");
    // Both WebSockets (and this request) are open connections; the joins'
    // audit rows were committed.
    assert!(
        stats["connections"]["open"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    assert!(stats["audit"]["commits"].as_u64().unwrap() >= 1, "{stats}");

    // Speaking indicator from the audio-level extension.
    let (_, spoke) = run_pair(
        &mut ann,
        &mut bob,
        T,
        |_| true,
        |c| c.speaking.get(&ann_id) == Some(&true),
    )
    .await;
    assert!(spoke, "Bob sees Ann speaking");

    bob.chat("hello from Bob").await.unwrap();
    let (got, _) = run_pair(
        &mut ann,
        &mut bob,
        T,
        |c| {
            c.chat
                .iter()
                .any(|m| m["text"] == "hello from Bob" && m["name"] == "Bob")
        },
        |c| c.chat.iter().any(|m| m["text"] == "hello from Bob"),
    )
    .await;
    assert!(got, "chat reaches Ann");

    ann.leave().await;
    assert!(
        bob.run_until(T, |c| c
            .left
            .iter()
            .any(|(id, why)| *id == ann_id && why == "left"))
            .await,
        "Bob sees Ann leave"
    );
    assert_eq!(bob.participants.len(), 1);
    bob.leave().await;

    // Nothing is left behind in the SFU once everyone has gone.
    let sfu = server.state.sfu.clone();
    let mut clean = false;
    for _ in 0..50 {
        let s = sfu.stats();
        if s.connections == 0 && s.tracks == 0 {
            clean = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(clean, "SFU still holds {:?}", sfu.stats());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_reconnects_keeps_its_place_and_the_stream_stays_continuous() {
    let server = common::server_with(|c| c.reconnect_grace = 5).await;
    let url = server.url.clone();
    let meeting = common::create_meeting(&server, "Reconnect").await;
    let mut ann = Client::join(&url, &meeting, "Ann", None).await.unwrap();
    ann.publish("camera", 300).await.unwrap();
    let mut bob = Client::join(&url, &meeting, "Bob", None).await.unwrap();
    let ann_id = ann.participant_id.clone();
    let (_, ok) = run_pair(
        &mut ann,
        &mut bob,
        T,
        |_| true,
        |c| c.received_from(&ann_id, "camera").packets > 50,
    )
    .await;
    assert!(ok);
    let before = bob.received_from(&ann_id, "camera");
    let offers_before = bob.offers;

    // Ann's network drops: both her sockets vanish without a goodbye.
    let token = ann.resume_token.clone();
    ann.vanish();
    assert!(
        bob.run_until(T, |c| c
            .participants
            .get(&ann_id)
            .is_some_and(|p| p["connected"] == false))
            .await,
        "Bob sees Ann reconnecting"
    );
    let mut ann = Client::join(&url, &meeting, "Ann", Some(&token))
        .await
        .unwrap();
    assert_eq!(ann.participant_id, ann_id, "same participant after resume");
    ann.publish("camera", 300).await.unwrap();
    let (_, ok) = run_pair(
        &mut ann,
        &mut bob,
        T,
        |_| true,
        |c| c.received_from(&ann_id, "camera").packets > before.packets + 100,
    )
    .await;
    assert!(ok, "media resumes: {:?}", bob.received);
    let after = bob.received_from(&ann_id, "camera");
    assert_eq!(
        after.gaps, 0,
        "the outgoing stream continues without a sequence jump"
    );
    assert!(
        after.keyframes > before.keyframes,
        "the new source starts at a keyframe"
    );
    assert!(bob.left.is_empty(), "no one left");
    assert_eq!(
        bob.offers, offers_before,
        "Bob's media was not renegotiated"
    );
    assert!(bob.participants[&ann_id]["connected"] == true);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_participant_is_removed_after_the_grace_period() {
    let server = common::server_with(|c| c.reconnect_grace = 1).await;
    let url = server.url.clone();
    let meeting = common::create_meeting(&server, "Vanish").await;
    let ann = Client::join(&url, &meeting, "Ann", None).await.unwrap();
    let mut bob = Client::join(&url, &meeting, "Bob", None).await.unwrap();
    let ann_id = ann.participant_id.clone();
    ann.vanish();
    assert!(
        bob.run_until(Duration::from_secs(5), |c| c
            .left
            .iter()
            .any(|(id, why)| *id == ann_id && why == "disconnected"))
            .await
    );
    assert!(!bob.participants.contains_key(&ann_id));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_video_packets_are_retransmitted_by_the_sfu() {
    let server = common::server().await;
    let url = server.url.clone();
    let meeting = common::create_meeting(&server, "Lossy").await;
    let mut ann = Client::join(&url, &meeting, "Ann", None).await.unwrap();
    ann.publish("camera", 500).await.unwrap();
    let mut bob = Client::join(&url, &meeting, "Bob", None).await.unwrap();
    // Bob's network loses one RTP datagram in 15; his str0m sends NACKs and the
    // SFU answers from its send cache.
    bob.drop_rtp_every = Some(15);
    let ann_id = ann.participant_id.clone();
    let (_, ok) = run_pair(
        &mut ann,
        &mut bob,
        T,
        |_| true,
        |c| c.received_from(&ann_id, "camera").packets > 400,
    )
    .await;
    assert!(ok, "{:?}", bob.received);
    let cam = bob.received_from(&ann_id, "camera");
    assert!(cam.gaps > 10, "packets were lost: {cam:?}");
    // Let the last retransmissions arrive.
    run_pair(
        &mut ann,
        &mut bob,
        Duration::from_millis(500),
        |_| false,
        |_| false,
    )
    .await;
    let cam = bob.received_from(&ann_id, "camera");
    let recovered = cam.gaps - cam.missing.len() as u64;
    assert!(
        recovered * 10 >= cam.gaps * 9,
        "at least 90% of lost packets come back: {} of {} ({:?} still missing)",
        recovered,
        cam.gaps,
        cam.missing
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_subscriber_gets_a_keyframe_requested_from_the_publisher() {
    let server = common::server().await;
    let url = server.url.clone();
    let meeting = common::create_meeting(&server, "Keyframes").await;
    let mut ann = Client::join(&url, &meeting, "Ann", None).await.unwrap();
    let mut cat = Client::join(&url, &meeting, "Cat", None).await.unwrap();
    ann.publish("camera", 300).await.unwrap();
    // Ann's encoder would send its next keyframe only in a minute.
    ann.set_keyframe_interval("camera", Duration::from_secs(60));
    let ann_id = ann.participant_id.clone();
    let (_, ok) = run_pair(
        &mut ann,
        &mut cat,
        T,
        |_| true,
        |c| c.received_from(&ann_id, "camera").packets > 50,
    )
    .await;
    assert!(ok);
    let asked_before = ann.keyframe_requests;

    // Bob arrives mid-stream: the SFU asks Ann for a keyframe, and Bob's stream starts with it.
    let mut bob = Client::join(&url, &meeting, "Bob", None).await.unwrap();
    let (_, ok) = run_pair(
        &mut ann,
        &mut bob,
        T,
        |_| true,
        |c| c.received_from(&ann_id, "camera").packets > 20,
    )
    .await;
    assert!(
        ok,
        "Bob receives video well before Ann's next scheduled keyframe"
    );
    assert!(
        ann.keyframe_requests > asked_before,
        "the SFU sent Ann a keyframe request"
    );
    let got = bob.received_from(&ann_id, "camera");
    assert!(got.keyframes >= 1 && got.gaps == 0, "{got:?}");
    server.shutdown().await;
}

/// With two media workers, two meetings land on different workers (each its own
/// thread and UDP port) and media flows in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meetings_are_spread_over_media_workers() {
    let server = common::server_with(|c| c.media_workers = Some(2)).await;
    let url = server.url.clone();
    let mut pairs = Vec::new();
    for title in ["First", "Second"] {
        let meeting = common::create_meeting(&server, title).await;
        let mut ann = Client::join(&url, &meeting, "Ann", None).await.unwrap();
        ann.publish("camera", 300).await.unwrap();
        let bob = Client::join(&url, &meeting, "Bob", None).await.unwrap();
        pairs.push((ann, bob));
    }
    let [(a1, b1), (a2, b2)] = &mut pairs[..] else {
        unreachable!()
    };
    let (id1, id2) = (a1.participant_id.clone(), a2.participant_id.clone());
    let (r1, r2) = tokio::join!(
        run_pair(
            a1,
            b1,
            T,
            |_| true,
            |c| c.received_from(&id1, "camera").packets > 30
        ),
        run_pair(
            a2,
            b2,
            T,
            |_| true,
            |c| c.received_from(&id2, "camera").packets > 30
        ),
    );
    assert!(r1.1, "video reaches Bob in the first meeting");
    assert!(r2.1, "video reaches Bob in the second meeting");
    let per_worker: Vec<(u16, usize)> = server
        .state
        .sfu
        .handles()
        .map(|h| (h.local_addr().port(), h.stats().connections))
        .collect();
    assert_eq!(per_worker.len(), 2);
    assert_ne!(per_worker[0].0, per_worker[1].0, "one port per worker");
    assert!(
        per_worker.iter().all(|&(_, conns)| conns == 2),
        "each worker carries one meeting's two connections: {per_worker:?}"
    );
    server.shutdown().await;
}

/// Run every client at once for `d`.
async fn run_all(clients: &mut [Client], d: Duration) {
    futures_util::future::join_all(clients.iter_mut().map(|c| c.run_until(d, |_| false))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_hears_three_talkers_on_voice_slots_and_a_fourth_when_one_stops() {
    let server = common::server().await;
    let url = server.url.clone();
    let meeting = common::create_meeting(&server, "Voices").await;
    let mut people = Vec::new();
    for name in ["Ann", "Bob", "Cy", "Di"] {
        let mut c = Client::join(&url, &meeting, name, None).await.unwrap();
        c.publish("microphone", 0).await.unwrap();
        people.push(c);
    }
    // Lee only listens. The synthetic microphones all talk all the time.
    people.push(Client::join(&url, &meeting, "Lee", None).await.unwrap());
    run_all(&mut people, Duration::from_secs(3)).await;

    let lee = &people[4];
    let offer = lee.log.iter().rev().find(|m| m["type"] == "offer").unwrap();
    let tracks = offer["tracks"].as_array().unwrap();
    assert_eq!(
        tracks.len(),
        3,
        "three m-lines for four microphones: {tracks:?}"
    );
    assert!(tracks
        .iter()
        .all(|t| t["voice"] == true && t["kind"] == "audio"));
    let ids: Vec<String> = people[..4]
        .iter()
        .map(|c| c.participant_id.clone())
        .collect();
    let heard: Vec<usize> = (0..4)
        .filter(|&i| lee.received_from(&ids[i], "microphone").packets > 50)
        .collect();
    assert_eq!(heard.len(), 3, "three talkers heard at once: {heard:?}");
    // The voice-slot messages named exactly those three.
    let named: std::collections::BTreeSet<&str> = lee
        .log
        .iter()
        .filter(|m| m["type"] == "voice-slot")
        .filter_map(|m| m["participantId"].as_str())
        .collect();
    let heard_ids: std::collections::BTreeSet<&str> = heard.iter().map(|&i| &*ids[i]).collect();
    assert_eq!(named, heard_ids);
    let waiting = (0..4).find(|i| !heard.contains(i)).unwrap();
    assert_eq!(lee.received_from(&ids[waiting], "microphone").packets, 0);

    // One of the three stops their microphone: the fourth is heard in their slot.
    let stopping = heard[0];
    people[stopping]
        .send(serde_json::json!({"type": "unpublish", "source": "microphone"}))
        .await
        .unwrap();
    run_all(&mut people, Duration::from_secs(2)).await;
    let lee = &people[4];
    assert!(lee.received_from(&ids[waiting], "microphone").packets > 30);
    let last_named = lee
        .log
        .iter()
        .rev()
        .find(|m| m["type"] == "voice-slot")
        .unwrap();
    assert_eq!(last_named["participantId"], ids[waiting].as_str());
}
