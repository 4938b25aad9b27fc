//! A webinar over real sockets and real media (protocol.md §4.18, §5.25): the
//! audience is counted, not announced, and receives the stage; a host pages
//! through it, answers its questions, and brings one attendee on stage, whose
//! media then reaches the rest, and takes them off again.

mod common;

use std::time::Duration;

use convene_client::{Client, JoinOptions};
use serde_json::{json, Value};

async fn run(clients: &mut [&mut Client], secs: f64) {
    let d = Duration::from_secs_f64(secs);
    futures_util::future::join_all(clients.iter_mut().map(|c| c.run_until(d, |_| false))).await;
}

fn of_type<'a>(c: &'a Client, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    c.log.iter().filter(move |m| m["type"] == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webinar_over_the_socket() {
    let server = common::server().await;
    let url = server.url.clone();
    let (status, text) = common::http(
        &server,
        "POST",
        "/api/meetings",
        Some(&json!({"title": "Both", "settings": {"webinar": true, "e2ee": true}}).to_string()),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("webinar cannot be end-to-end encrypted"),
        "{text}"
    );
    let (status, text) = common::http(
        &server,
        "POST",
        "/api/meetings",
        Some(&json!({"title": "Town hall", "settings": {"webinar": true}}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let made: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(made["settings"]["webinar"], true);
    let id = made["id"].as_str().unwrap();
    let key = made["hostKey"].as_str().unwrap();

    let host_opts = JoinOptions::host(key);
    let mut host = Client::join_with(&url, id, "Hana", host_opts)
        .await
        .unwrap();
    host.publish("camera", 300).await.unwrap();
    host.publish("microphone", 0).await.unwrap();
    let mut ann = Client::join(&url, id, "Ann", None).await.unwrap();
    let mut bo = Client::join(&url, id, "Bo", None).await.unwrap();
    let mut cy = Client::join(&url, id, "Cy", None).await.unwrap();
    let hid = host.participant_id.clone();
    let aid = ann.participant_id.clone();
    run(&mut [&mut host, &mut ann, &mut bo, &mut cy], 2.5).await;

    // The audience sees the stage and the count, not each other.
    for c in [&ann, &bo, &cy] {
        let listed: Vec<&str> = c.participants.keys().map(String::as_str).collect();
        let mut expected = vec![c.participant_id.as_str(), hid.as_str()];
        expected.sort();
        assert_eq!(listed, expected, "themselves and the stage");
        assert_eq!(
            of_type(c, "audience")
                .last()
                .map(|m| m["attendees"].clone()),
            Some(json!(3)),
            "{}",
            c.participant_id
        );
        assert!(
            c.received_from(&hid, "camera").packets > 20,
            "{} receives the stage's camera",
            c.participant_id
        );
        assert!(c.received_from(&hid, "microphone").packets > 20);
    }
    assert_eq!(
        of_type(&ann, "participant-joined").count(),
        0,
        "nobody announced"
    );
    assert_eq!(
        of_type(&host, "participant-joined").count(),
        0,
        "not even to the host"
    );

    // An attendee publishes nothing.
    ann.send(json!({"type": "publish", "source": "camera"}))
        .await
        .unwrap();
    run(&mut [&mut ann], 0.3).await;
    assert!(
        ann.errors.iter().any(|e| e["code"] == "forbidden"),
        "{:?}",
        ann.errors
    );

    // The host pages through the audience.
    host.send(json!({"type": "attendees"})).await.unwrap();
    run(&mut [&mut host], 0.3).await;
    let page = of_type(&host, "attendees").last().cloned().unwrap();
    assert_eq!(page["total"], 3);
    let names: Vec<&str> = page["attendees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Ann", "Bo", "Cy"]);
    assert!(page.get("next").is_none(), "one page");

    // Q&A: the host sees a question, the rest of the audience only once answered.
    bo.send(json!({"type": "ask", "text": "Slides?"}))
        .await
        .unwrap();
    run(&mut [&mut host, &mut ann, &mut bo], 0.4).await;
    let q = of_type(&host, "question").last().cloned().unwrap();
    assert_eq!(
        (
            q["question"]["text"].as_str(),
            q["question"]["name"].as_str()
        ),
        (Some("Slides?"), Some("Bo"))
    );
    assert_eq!(of_type(&ann, "question").count(), 0);
    let qid = q["question"]["id"].clone();
    host.send(json!({"type": "mark-answered", "id": qid}))
        .await
        .unwrap();
    run(&mut [&mut host, &mut ann, &mut bo], 0.4).await;
    assert_eq!(
        of_type(&ann, "question")
            .last()
            .map(|m| m["question"]["answered"].clone()),
        Some(json!(true))
    );

    // On stage: everyone meets Ann, and her camera reaches Bo.
    host.send(json!({"type": "set-role", "participantId": aid, "role": "presenter"}))
        .await
        .unwrap();
    run(&mut [&mut host, &mut ann, &mut bo, &mut cy], 0.5).await;
    assert!(of_type(&bo, "participant-joined").any(|m| m["participant"]["id"] == json!(aid)));
    ann.publish("camera", 300).await.unwrap();
    run(&mut [&mut host, &mut ann, &mut bo, &mut cy], 2.5).await;
    assert!(
        bo.received_from(&aid, "camera").packets > 20,
        "{:?}",
        bo.received_from(&aid, "camera")
    );

    // Off stage: she leaves the others' lists and her camera stops reaching them.
    host.send(json!({"type": "set-role", "participantId": aid, "role": "participant"}))
        .await
        .unwrap();
    run(&mut [&mut host, &mut ann, &mut bo, &mut cy], 0.8).await;
    assert!(of_type(&bo, "participant-left")
        .any(|m| m["participantId"] == json!(aid) && m["reason"] == "off-stage"));
    let before = bo.received_from(&aid, "camera").packets;
    run(&mut [&mut host, &mut ann, &mut bo, &mut cy], 1.0).await;
    assert!(
        bo.received_from(&aid, "camera").packets <= before + 2,
        "{before} then {:?}",
        bo.received_from(&aid, "camera")
    );

    drop((host, ann, bo, cy));
    server.shutdown().await;
}
