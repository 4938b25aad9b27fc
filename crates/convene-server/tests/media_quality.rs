//! Issue 15 through the real server: a camera is offered in simulcast layers,
//! `video-sizes` (checked, and coalesced when flooded) decide what a
//! subscriber receives, and `connection-quality` reaches everyone, a newcomer
//! right after its welcome. Headless str0m participants (convene-client).

mod common;

use std::time::Duration;

use common::run_pair;
use convene_client::Client;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(10);

/// The track slots of the last offer `c` received.
fn last_tracks(c: &Client) -> Vec<Value> {
    c.log
        .iter()
        .rev()
        .find(|m| m["type"] == "offer")
        .and_then(|m| m["tracks"].as_array().cloned())
        .unwrap_or_default()
}

fn slot<'a>(tracks: &'a [Value], direction: &str, source: &str) -> Option<&'a Value> {
    tracks
        .iter()
        .find(|t| t["direction"] == direction && t["source"] == source)
}

/// Whether `c` has been told about `whom`'s connection quality.
fn told_quality_of(c: &Client, whom: &str) -> bool {
    c.log.iter().any(|m| {
        m["type"] == "connection-quality"
            && m["participants"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["participantId"] == whom))
    })
}

fn errors(c: &Client, code: &str) -> Vec<String> {
    c.errors
        .iter()
        .filter(|e| e["code"] == code)
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_is_offered_in_layers_and_everyone_is_told_connection_quality() {
    let server = common::server().await;
    let url = server.url.clone();
    let meeting = common::create_meeting(&server, "Layers").await;

    let mut ann = Client::join(&url, &meeting, "Ann", None).await.unwrap();
    ann.publish("camera", 300).await.unwrap();
    ann.publish("microphone", 0).await.unwrap();
    let ok = ann
        .run_until(T, |c| {
            let t = last_tracks(c);
            slot(&t, "send", "camera").is_some() && slot(&t, "send", "microphone").is_some()
        })
        .await;
    assert!(ok, "Ann gets an offer for her camera: {:?}", ann.log);
    let tracks = last_tracks(&ann);
    assert_eq!(
        slot(&tracks, "send", "camera").unwrap()["layers"],
        json!(["l", "m", "h"]),
        "a camera is asked for in three layers, lowest first: {tracks:?}"
    );
    let mic = slot(&tracks, "send", "microphone").unwrap();
    assert!(mic.get("layers").is_none(), "audio has no layers: {mic}");
    let offer = ann.log.iter().rev().find(|m| m["type"] == "offer").unwrap();
    let sdp = offer["sdp"].as_str().unwrap();
    assert!(sdp.contains("a=simulcast:recv l;m;h"), "{sdp}");

    let mut bob = Client::join(&url, &meeting, "Bob", None).await.unwrap();
    bob.publish("microphone", 0).await.unwrap();
    let (ann_id, bob_id) = (ann.participant_id.clone(), bob.participant_id.clone());
    // Media flows both ways; each hears how the other's connection is (and
    // their own), once the SFU has measured them.
    let (ann_ok, bob_ok) = run_pair(
        &mut ann,
        &mut bob,
        T,
        |c| told_quality_of(c, &bob_id) && told_quality_of(c, &ann_id),
        |c| {
            c.received_from(&ann_id, "camera").packets > 20
                && told_quality_of(c, &ann_id)
                && told_quality_of(c, &bob_id)
        },
    )
    .await;
    assert!(ann_ok, "Ann is told connection quality: {:?}", ann.log);
    assert!(
        bob_ok,
        "Bob gets Ann's camera and connection quality: {:?} {:?}",
        bob.received, bob.log
    );
    // Her own, on loopback: good, and her camera arrives.
    let q = ann
        .log
        .iter()
        .filter(|m| m["type"] == "connection-quality")
        .flat_map(|m| m["participants"].as_array().cloned().unwrap_or_default())
        .rfind(|p| p["participantId"] == ann_id.as_str())
        .unwrap();
    assert_eq!(q["quality"], "good", "{q}");
    assert_eq!(q["videoPaused"], false, "{q}");
    let tracks = last_tracks(&bob);
    let cam = slot(&tracks, "receive", "camera").unwrap();
    assert!(
        cam.get("layers").is_none(),
        "receive slots have none: {cam}"
    );

    // A newcomer hears everyone's state right after its welcome.
    let mut cleo = Client::join(&url, &meeting, "Cleo", None).await.unwrap();
    let ok = cleo
        .run_until(Duration::from_secs(3), |c| told_quality_of(c, &ann_id))
        .await;
    assert!(ok, "Cleo is told the current state: {:?}", cleo.log);
    let types: Vec<&str> = cleo.log.iter().filter_map(|m| m["type"].as_str()).collect();
    let welcome = types.iter().position(|t| *t == "welcome").unwrap();
    assert_eq!(types[welcome + 1], "connection-quality", "{types:?}");
    let first = &cleo.log[welcome + 1]["participants"];
    for id in [&ann_id, &bob_id] {
        assert!(
            first
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["participantId"] == id.as_str()),
            "{id} in {first}"
        );
    }

    // Told at most every 2 s per meeting: over 5 s, at most 3 more.
    let before = ann
        .log
        .iter()
        .filter(|m| m["type"] == "connection-quality")
        .count();
    ann.run_until(Duration::from_secs(5), |_| false).await;
    let during = ann
        .log
        .iter()
        .filter(|m| m["type"] == "connection-quality")
        .count()
        - before;
    assert!(during <= 3, "{during} connection-quality messages in 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_sizes_decide_what_is_sent_and_bad_or_flooding_ones_do_no_harm() {
    let server = common::server().await;
    let url = server.url.clone();
    let meeting = common::create_meeting(&server, "Sizes").await;

    let mut ann = Client::join(&url, &meeting, "Ann", None).await.unwrap();
    let mut bob = Client::join(&url, &meeting, "Bob", None).await.unwrap();
    bob.publish("camera", 300).await.unwrap();
    bob.set_keyframe_interval("camera", Duration::from_secs(60));
    let bob_id = bob.participant_id.clone();
    let cam = |c: &Client| c.received_from(&bob_id, "camera");
    let (ok, _) = run_pair(&mut ann, &mut bob, T, |c| cam(c).packets > 20, |_| true).await;
    assert!(ok, "Ann receives Bob's camera: {:?}", ann.received);

    // Over the limits: refused, clearly, and nothing changes.
    let entry = |w: i64, h: i64| json!({"participantId": bob_id, "source": "camera", "width": w, "height": h});
    let too_many: Vec<Value> = (0..65).map(|_| entry(320, 180)).collect();
    for (sizes, words) in [
        (json!(too_many), "at most 64"),
        (json!([entry(16_385, 180)]), "16384"),
        (json!([entry(-1, 180)]), "invalid"),
        (
            json!([{"participantId": bob_id, "source": "microphone", "width": 1, "height": 1}]),
            "camera and screen",
        ),
    ] {
        let before = ann.errors.len();
        ann.send(json!({"type": "video-sizes", "sizes": sizes}))
            .await
            .unwrap();
        let ok = ann
            .run_until(Duration::from_secs(3), |c| c.errors.len() > before)
            .await;
        assert!(ok, "refused: {sizes}");
        let e = &ann.errors[before];
        assert_eq!(e["code"], "invalid", "{e}");
        assert!(
            e["message"].as_str().unwrap().contains(words),
            "{e} says {words}"
        );
    }
    let from = cam(&ann).packets;
    let (ok, _) = run_pair(
        &mut ann,
        &mut bob,
        Duration::from_secs(3),
        move |c| cam(c).packets > from + 10,
        |_| true,
    )
    .await;
    assert!(ok, "still received after the refusals");

    // A burst of lists, shown and hidden in turn, ending hidden: no error,
    // and the last one applies.
    let shown = json!({"type": "video-sizes", "sizes": [entry(320, 180)]});
    let hidden = json!({"type": "video-sizes", "sizes": []});
    for i in 0..39 {
        ann.send(if i % 2 == 0 {
            shown.clone()
        } else {
            hidden.clone()
        })
        .await
        .unwrap();
    }
    ann.send(hidden.clone()).await.unwrap();
    ann.send(json!({"type": "ping", "id": 1})).await.unwrap();
    let errors_before = ann.errors.len();
    // Settle: the last list waits for a token (at most ~0.5 s), then packets
    // in flight arrive.
    run_pair(
        &mut ann,
        &mut bob,
        Duration::from_millis(1500),
        |_| false,
        |_| false,
    )
    .await;
    assert!(
        ann.log.iter().any(|m| m["type"] == "pong" && m["id"] == 1),
        "the socket still answers"
    );
    assert_eq!(
        ann.errors.len(),
        errors_before,
        "a burst within the socket's rate is not refused: {:?}",
        ann.errors
    );
    let before = cam(&ann).packets;
    run_pair(
        &mut ann,
        &mut bob,
        Duration::from_secs(2),
        |_| false,
        |_| false,
    )
    .await;
    assert_eq!(cam(&ann).packets, before, "a video not listed is not sent");
    // Listed again: it comes back, from a keyframe the SFU asks for.
    let keyframes = cam(&ann).keyframes;
    ann.send(shown).await.unwrap();
    let (ok, _) = run_pair(
        &mut ann,
        &mut bob,
        T,
        move |c| cam(c).packets > before + 10 && cam(c).keyframes > keyframes,
        |_| true,
    )
    .await;
    assert!(ok, "shown again: {:?}", ann.received);
    assert!(errors(&ann, "rate-limited").is_empty());
}

/// `video-layers` tells a publisher what to send: the layer its one viewer
/// needs, nothing when that viewer stops showing it, and the layer again
/// when shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_camera_nobody_watches_is_paused_at_its_publisher() {
    let server = common::server().await;
    let url = server.url.clone();
    let meeting = common::create_meeting(&server, "Pause").await;
    let mut ann = Client::join(&url, &meeting, "Ann", None).await.unwrap();
    let mut bob = Client::join(&url, &meeting, "Bob", None).await.unwrap();
    bob.publish("camera", 300).await.unwrap();
    let bob_id = bob.participant_id.clone();
    let cam = |c: &Client| c.received_from(&bob_id, "camera");
    let (ok, told) = run_pair(
        &mut ann,
        &mut bob,
        T,
        |c| cam(c).packets > 20,
        |c| last_layers(c).is_some_and(|a| !a.is_empty()),
    )
    .await;
    assert!(
        ok && told,
        "Ann receives Bob's camera, Bob is told what to send: {:?}",
        bob.log
    );

    ann.send(json!({"type": "video-sizes", "sizes": []}))
        .await
        .unwrap();
    let (_, paused) = run_pair(
        &mut ann,
        &mut bob,
        T,
        |_| true,
        |c| last_layers(c).is_some_and(|a| a.is_empty()),
    )
    .await;
    assert!(
        paused,
        "nobody watches: Bob pauses every layer: {:?}",
        bob.log
    );

    let entry = json!({"participantId": bob_id, "source": "camera", "width": 320, "height": 180});
    ann.send(json!({"type": "video-sizes", "sizes": [entry]}))
        .await
        .unwrap();
    let (_, resumed) = run_pair(
        &mut ann,
        &mut bob,
        T,
        |_| true,
        |c| last_layers(c).is_some_and(|a| !a.is_empty()),
    )
    .await;
    assert!(resumed, "shown again: Bob sends a layer: {:?}", bob.log);
}

/// The layers of its camera `c` was last told to send.
fn last_layers(c: &Client) -> Option<Vec<Value>> {
    let m = c.log.iter().rev().find(|m| m["type"] == "video-layers")?;
    assert_eq!(m["source"], "camera", "{m}");
    m["active"].as_array().cloned()
}
