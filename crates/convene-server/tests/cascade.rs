//! A webinar cascaded over two nodes (docs/cluster-design.md, step 5), each
//! the real binary, sharing a real PostgreSQL and Redis: once the audience
//! on the meeting's node reaches `--cascade-after`, newcomers are sent to the
//! other node, which receives the stage once over a relay from the meeting's
//! SFU and serves them; their room messages reach the room on the meeting's
//! node, and its answers reach them.

mod common;

use std::time::Duration;

use common::binary::Process;
use common::cluster::{http, socket_node, start_node_with, wait_for_nodes};
use convene_client::{Client, JoinOptions};
use convene_cluster::testing::Redis;
use convene_cluster::Cluster;
use serde_json::{json, Value};

async fn run(clients: &mut [&mut Client], secs: f64) {
    let d = Duration::from_secs_f64(secs);
    futures_util::future::join_all(clients.iter_mut().map(|c| c.run_until(d, |_| false))).await;
}

fn of_type<'a>(c: &'a Client, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    c.log.iter().filter(move |m| m["type"] == kind)
}

/// A Redis, and two nodes on it and the shared PostgreSQL (ids n1 and n2,
/// each with its flags), both seen alive.
async fn two_nodes(n1: &[&str], n2: &[&str]) -> (Redis, Process, Process) {
    let redis = Redis::start();
    let database = convene_storage::testing::postgres_url();
    let dir = std::env::temp_dir().join(format!(
        "convene-cascade-{}",
        convene_storage::new_meeting_id()
    ));
    let a = start_node_with(1, &dir, &database, &redis.url(), n1);
    let b = start_node_with(2, &dir, &database, &redis.url(), n2);
    let observer = Cluster::connect(&redis.url(), "observer", "http://observer")
        .await
        .unwrap();
    wait_for_nodes(&observer, Duration::from_secs(5), |ids| ids.len() == 2).await;
    (redis, a, b)
}

async fn media_stats(node: &str) -> Value {
    let v: Value = http()
        .get(format!("{node}/api/admin/stats"))
        .bearer_auth("cascade-admin-token-0123")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["media"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webinar_audience_over_two_nodes_gets_the_stage_once_per_node() {
    let flags = [
        "--cascade-after",
        "1",
        "--admin-token",
        "cascade-admin-token-0123",
    ];
    let (redis, n1, n2) = two_nodes(&flags, &flags).await;
    let nodes = vec![n1, n2];

    let (id, key) = create(&nodes[0].url, true).await;
    let host_url = socket_node(&nodes[0].url, &id).await;
    let edge_url = nodes
        .iter()
        .map(|n| n.url.clone())
        .find(|u| *u != host_url)
        .unwrap();

    // The stage and the first attendee on the meeting's node.
    let mut hana = Client::join_with(&host_url, &id, "Hana", JoinOptions::host(key))
        .await
        .unwrap();
    hana.publish("camera", 300).await.unwrap();
    hana.publish("microphone", 0).await.unwrap();
    let hid = hana.participant_id.clone();
    let mut ann = Client::join(&host_url, &id, "Ann", None).await.unwrap();
    // The meeting counts its audience every half second.
    run(&mut [&mut hana, &mut ann], 1.2).await;

    // The audience here has reached --cascade-after: newcomers' pages go to
    // the other node (307). A socket or a lookup comes from a page already
    // placed (a host's, maybe): it stays, as does a page for the stage.
    assert_eq!(socket_node(&host_url, &id).await, host_url);
    let stage_page = http()
        .get(format!("{host_url}/m/{id}?stage=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(stage_page.status(), 200);
    let page = http()
        .get(format!("{host_url}/m/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 307);
    assert_eq!(
        page.headers()["location"].to_str().unwrap(),
        format!("{edge_url}/m/{id}")
    );
    // The edge serves them itself: its page and lookup keep them there,
    // the lookup naming the meeting's node for a host's page.
    assert_eq!(socket_node(&edge_url, &id).await, edge_url);
    let looked: Value = http()
        .get(format!("{edge_url}/api/meetings/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(looked["edgeOf"], host_url.as_str());
    let page = http()
        .get(format!("{edge_url}/m/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);

    let mut bo = Client::join(&edge_url, &id, "Bo", None).await.unwrap();
    let mut cy = Client::join(&edge_url, &id, "Cy", None).await.unwrap();
    let relayed_before = media_stats(&host_url).await["rtpRelayed"].as_u64().unwrap();
    run(&mut [&mut hana, &mut ann, &mut bo, &mut cy], 3.0).await;

    // The edge's audience is in the room: counted, listed to the host, and
    // sees the stage (not each other), as the audience on the host does.
    for c in [&ann, &bo, &cy] {
        let mut listed: Vec<&str> = c.participants.keys().map(String::as_str).collect();
        listed.sort();
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
        let camera = c.received_from(&hid, "camera");
        assert!(
            camera.packets > 30 && camera.keyframes > 0,
            "{} sees the stage's camera: {camera:?}",
            c.participant_id,
        );
        assert!(c.received_from(&hid, "microphone").packets > 30);
    }
    hana.send(json!({"type": "attendees"})).await.unwrap();
    run(&mut [&mut hana], 0.3).await;
    let page = of_type(&hana, "attendees").last().cloned().unwrap();
    assert_eq!(page["total"], 3);

    // The stage crossed once for the two on the edge: the meeting's node
    // relayed about what the stage sent it in that time, not twice that.
    let host_media = media_stats(&host_url).await;
    let relayed = host_media["rtpRelayed"].as_u64().unwrap() - relayed_before;
    let from_stage =
        bo.received_from(&hid, "camera").packets + bo.received_from(&hid, "microphone").packets;
    assert!(relayed > 0, "the stage is relayed");
    assert!(
        relayed < from_stage * 3 / 2 + 200,
        "relayed {relayed}, one attendee received {from_stage}"
    );
    let edge_media = media_stats(&edge_url).await;
    let (edge_in, edge_out) = (
        edge_media["rtpIn"].as_u64().unwrap(),
        edge_media["rtpForwarded"].as_u64().unwrap(),
    );
    assert!(
        edge_in <= host_media["rtpRelayed"].as_u64().unwrap() && edge_out >= edge_in * 3 / 2,
        "what crossed once, the edge forwards to each of its two: {edge_media}"
    );

    // A question asked on the edge reaches the host; the host's answer
    // reaches the edge's audience.
    bo.send(json!({"type": "ask", "text": "Slides?"}))
        .await
        .unwrap();
    run(&mut [&mut hana, &mut bo], 0.5).await;
    let q = of_type(&hana, "question")
        .last()
        .cloned()
        .expect("the host sees the question");
    assert_eq!(q["question"]["name"], "Bo");
    hana.send(json!({"type": "mark-answered", "id": q["question"]["id"]}))
        .await
        .unwrap();
    run(&mut [&mut hana, &mut cy], 0.5).await;
    assert!(
        of_type(&cy, "question").any(|m| m["question"]["text"] == "Slides?"),
        "the answered question reaches the edge's audience"
    );

    // An attendee on the edge who leaves is gone from the room.
    cy.leave().await;
    run(&mut [&mut hana, &mut bo], 1.5).await;
    assert_eq!(
        of_type(&bo, "audience")
            .last()
            .map(|m| m["attendees"].clone()),
        Some(json!(2))
    );

    // The camera stops: the edge lets go of it, and its audience is told.
    hana.send(json!({"type": "unpublish", "source": "camera"}))
        .await
        .unwrap();
    run(&mut [&mut hana, &mut bo], 1.0).await;
    let packets = bo.received_from(&hid, "camera").packets;
    run(&mut [&mut hana, &mut bo], 1.0).await;
    assert_eq!(
        bo.received_from(&hid, "camera").packets,
        packets,
        "no more camera"
    );
    assert!(bo.received_from(&hid, "microphone").packets > 0);

    // The edge dies (kill -9): its attendees are gone from the room within
    // seconds (it drops out of Redis after 3 s; then the 5 s a dropped
    // socket has to come back).
    let mut nodes = nodes;
    let edge_i = nodes.iter().position(|n| n.url == edge_url).unwrap();
    drop(nodes.remove(edge_i));
    drop(bo);
    assert!(
        ann.run_until(Duration::from_secs(15), |c| of_type(c, "audience")
            .last()
            .is_some_and(|m| m["attendees"] == 1))
            .await,
        "the edge's attendee is gone: {:?}",
        of_type(&ann, "audience").last()
    );
    drop(redis);
}

/// A node `id` at `url` that exists only to claim `meeting` in Redis for
/// the real node of that id: its first arrival there starts it there.
async fn claim_for(redis: &str, id: &str, meeting: &str) {
    let node = Cluster::connect(redis, id, "http://unused").await.unwrap();
    assert_eq!(node.claim(meeting).await.unwrap(), None, "{id} holds it");
}

async fn create(node: &str, webinar: bool) -> (String, String) {
    let made: Value = http()
        .post(format!("{node}/api/meetings"))
        .json(&json!({"title": "Town hall", "settings": {"webinar": webinar}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        made["id"].as_str().unwrap().to_string(),
        made["hostKey"].as_str().unwrap().to_string(),
    )
}

/// Two webinars on the same media worker of one node, both cascading to
/// the same other node: each edge's relay comes from that one worker, and
/// two connections between the same two sockets cannot be told apart, so
/// the edge serves them on two different workers of its own, even where
/// its least busy worker is the one the first relay already goes to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cascaded_webinars_from_one_worker_reach_their_audiences_on_one_edge() {
    let (redis, host, edge) = two_nodes(
        &["--cascade-after", "1", "--media-workers", "1"],
        &["--cascade-after", "1", "--media-workers", "2"],
    )
    .await;

    // A meeting of the edge's own, on its first worker, with three people:
    // that worker is the busier one from then on.
    let (own, _) = create(&edge.url, false).await;
    claim_for(&redis.url(), "n2", &own).await;
    let mut locals = Vec::new();
    for name in ["Xi", "Yu", "Zo"] {
        locals.push(Client::join(&edge.url, &own, name, None).await.unwrap());
    }
    for c in &mut locals {
        let _ = c.run_until(Duration::from_millis(300), |_| false).await;
    }

    let mut audiences = Vec::new();
    let mut stages = Vec::new();
    for _ in 0..2 {
        let (id, key) = create(&host.url, true).await;
        claim_for(&redis.url(), "n1", &id).await;
        let mut hana = Client::join_with(&host.url, &id, "Hana", JoinOptions::host(key))
            .await
            .unwrap();
        hana.publish("camera", 300).await.unwrap();
        let mut ann = Client::join(&host.url, &id, "Ann", None).await.unwrap();
        run(&mut [&mut hana, &mut ann], 1.2).await;
        let page = http()
            .get(format!("{}/m/{id}", host.url))
            .send()
            .await
            .unwrap();
        assert_eq!(
            page.headers()["location"].to_str().unwrap(),
            format!("{}/m/{id}", edge.url)
        );
        let bo = Client::join(&edge.url, &id, "Bo", None).await.unwrap();
        stages.push((hana, ann));
        audiences.push(bo);
    }
    {
        let mut all: Vec<&mut Client> = audiences.iter_mut().collect();
        for (h, a) in &mut stages {
            all.push(h);
            all.push(a);
        }
        all.extend(locals.iter_mut());
        run(&mut all, 3.0).await;
    }
    for (bo, (hana, _)) in audiences.iter().zip(&stages) {
        let camera = bo.received_from(&hana.participant_id, "camera");
        assert!(
            camera.packets > 30 && camera.keyframes > 0,
            "each webinar's attendee on the edge sees its stage: {camera:?}"
        );
    }
    drop(redis);
}

/// Figures for BENCHMARKS.md, not a test (run with `--ignored`): joins
/// through the meeting's node and through an edge, one at a time, from the
/// socket's opening to the welcome and to the stage's first video packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn figures_join_through_an_edge() {
    let flags = ["--cascade-after", "1"];
    let (redis, host, edge) = two_nodes(&flags, &flags).await;
    let (id, key) = create(&host.url, true).await;
    claim_for(&redis.url(), "n1", &id).await;
    let mut hana = Client::join_with(&host.url, &id, "Hana", JoinOptions::host(key))
        .await
        .unwrap();
    hana.publish("camera", 300).await.unwrap();
    hana.set_keyframe_interval("camera", Duration::from_millis(500));
    let hid = hana.participant_id.clone();
    let mut kept = Vec::new();
    for (label, url) in [("meeting's node", &host.url), ("edge", &edge.url)] {
        if *url == edge.url {
            // A page loaded on the meeting's node names the edge.
            let page = http()
                .get(format!("{}/m/{id}", host.url))
                .send()
                .await
                .unwrap();
            assert_eq!(page.status(), 307);
        }
        let mut welcome = Vec::new();
        let mut first = Vec::new();
        for i in 0..10 {
            let start = std::time::Instant::now();
            let mut c = Client::join(url, &id, &format!("A{i}"), None)
                .await
                .unwrap();
            welcome.push(start.elapsed());
            // The stage keeps sending while the newcomer waits for it.
            let got = tokio::select! {
                got = c.run_until(Duration::from_secs(5), |c| c.received_from(&hid, "camera").packets > 0) => got,
                _ = hana.run_until(Duration::from_secs(5), |_| false) => false,
            };
            assert!(got, "{label}: the stage arrives");
            first.push(start.elapsed());
            kept.push(c);
        }
        welcome.sort();
        first.sort();
        println!(
            "# figure: join through the {label}: welcome median {:.1} ms (max {:.1}), first stage video packet median {:.1} ms (max {:.1}), 10 joins",
            welcome[5].as_secs_f64() * 1e3,
            welcome[9].as_secs_f64() * 1e3,
            first[5].as_secs_f64() * 1e3,
            first[9].as_secs_f64() * 1e3
        );
    }
    drop(redis);
}

fn join_code(result: &Result<Client, String>) -> &'static str {
    match result {
        Ok(_) => "joined",
        Err(e) => ["wrong-passcode", "locked-out", "rate-limited", "busy"]
            .into_iter()
            .find(|c| e.contains(c))
            .unwrap_or("other"),
    }
}

/// Every node checks a joiner's passcode itself (an edge of a cascaded
/// webinar too), and all draw on one count of wrong guesses, in Redis:
/// guesses on the edge count with those on the meeting's node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passcodes_on_the_meeting_node_and_its_edge_count_together() {
    let flags = ["--cascade-after", "1"];
    let (redis, host, edge) = two_nodes(&flags, &flags).await;
    let made: Value = http()
        .post(format!("{}/api/meetings", host.url))
        .json(&json!({"title": "Guarded", "passcode": "4711 blue", "settings": {"webinar": true}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = made["id"].as_str().unwrap().to_string();
    let key = made["hostKey"].as_str().unwrap().to_string();
    claim_for(&redis.url(), "n1", &id).await;
    let mut hana = Client::join_with(&host.url, &id, "Hana", JoinOptions::host(key))
        .await
        .unwrap();
    let with = |passcode: &str, ip: &str| JoinOptions {
        passcode: Some(passcode.into()),
        local_ip: Some(ip.parse().unwrap()),
        ..JoinOptions::default()
    };
    let mut ann = Client::join_with(&host.url, &id, "Ann", with("4711 blue", "127.0.0.1"))
        .await
        .unwrap();
    run(&mut [&mut hana, &mut ann], 1.2).await;
    let page = http()
        .get(format!("{}/m/{id}", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 307, "the edge is named");

    // Five wrong guesses from one address, three on the meeting's node and
    // two on the edge (five are free): then even the right passcode waits,
    // on either node.
    for url in [&host.url, &host.url, &host.url, &edge.url, &edge.url] {
        let r = Client::join_with(url, &id, "Guess", with("nope", "127.0.5.1")).await;
        assert_eq!(join_code(&r), "wrong-passcode");
    }
    for url in [&edge.url, &host.url] {
        let r = Client::join_with(url, &id, "Guess", with("4711 blue", "127.0.5.1")).await;
        assert_eq!(join_code(&r), "locked-out", "on {url}");
    }
    // Another address is not held up, on the edge.
    let r = Client::join_with(&edge.url, &id, "Bo", with("4711 blue", "127.0.5.2")).await;
    assert_eq!(join_code(&r), "joined");
    drop(redis);
}

/// A broadcast crosses to an edge once, not once per attendee there: the
/// host locks the meeting and every attendee on the edge is told, through
/// a handful of messages on the edge's inbox (counted off Redis), not one
/// each. (Someone speaking is such a broadcast, several a second.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_crosses_to_an_edge_once_for_its_whole_audience() {
    const ON_EDGE: usize = 24;
    let (redis, n1, n2) = two_nodes(&["--cascade-after", "1"], &["--cascade-after", "1"]).await;
    let (id, key) = create(&n1.url, true).await;
    let host_url = socket_node(&n1.url, &id).await;
    let (edge_url, edge_id) = if host_url == n1.url {
        (n2.url.clone(), "n2")
    } else {
        (n1.url.clone(), "n1")
    };
    let mut hana = Client::join_with(&host_url, &id, "Hana", JoinOptions::host(key))
        .await
        .unwrap();
    let mut ann = Client::join(&host_url, &id, "Ann", None).await.unwrap();
    run(&mut [&mut hana, &mut ann], 1.2).await;
    // A newcomer's page is sent to the edge (which names it the edge).
    let page = http()
        .get(format!("{host_url}/m/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 307);
    let mut audience = Vec::new();
    for i in 0..ON_EDGE {
        audience.push(
            Client::join(&edge_url, &id, &format!("Guest {i}"), None)
                .await
                .unwrap(),
        );
    }
    // Count what reaches the edge's inbox from now on.
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut pubsub = redis::Client::open(redis.url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub
        .subscribe(format!("convene:node:{edge_id}:inbox"))
        .await
        .unwrap();
    let count = counted.clone();
    let listener = tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut messages = pubsub.on_message();
        while messages.next().await.is_some() {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    {
        let mut everyone: Vec<&mut Client> = audience.iter_mut().collect();
        run(&mut everyone, 1.0).await;
    }
    let before = counted.load(std::sync::atomic::Ordering::Relaxed);
    hana.send(json!({"type": "lock", "locked": true}))
        .await
        .unwrap();
    let told = futures_util::future::join_all(audience.iter_mut().map(|c| {
        c.run_until(Duration::from_secs(5), |c| {
            c.log
                .iter()
                .any(|m| m["type"] == "meeting-updated" && m["meeting"]["locked"] == true)
        })
    }))
    .await;
    assert!(
        told.iter().all(|&t| t),
        "every attendee on the edge is told"
    );
    let crossed = counted.load(std::sync::atomic::Ordering::Relaxed) - before;
    listener.abort();
    assert!(
        crossed <= ON_EDGE / 3,
        "{crossed} messages crossed for {ON_EDGE} attendees on the edge"
    );
}
