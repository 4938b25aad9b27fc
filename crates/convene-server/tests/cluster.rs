//! Three nodes of a cluster on loopback, each the real binary, sharing a real
//! PostgreSQL and a real Redis the test starts (docs/cluster-design.md):
//! a meeting is placed on one node and every node sends its joins there; a
//! new meeting goes to a less loaded node; a node killed with kill -9 drops
//! out within seconds and its meeting is taken up by another, from the
//! shared database.

mod common;

use std::time::{Duration, Instant};

use common::binary::Process;
use common::cluster::{create, http, socket_node, start_node, wait_for_nodes};
use convene_client::{Client, JoinOptions};
use convene_cluster::testing::Redis;
use convene_cluster::Cluster;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_place_route_and_take_over_a_lost_nodes_meeting() {
    let redis = Redis::start();
    let database = convene_storage::testing::postgres_url();
    let dir = std::env::temp_dir().join(format!(
        "convene-cluster-{}",
        convene_storage::new_meeting_id()
    ));
    let mut nodes: Vec<Option<Process>> = (1..=3)
        .map(|n| Some(start_node(n, &dir, &database, &redis.url())))
        .collect();
    let node = |nodes: &Vec<Option<Process>>, i: usize| -> String {
        nodes[i].as_ref().unwrap().url.clone()
    };
    let observer = Cluster::connect(&redis.url(), "observer", "http://observer")
        .await
        .unwrap();
    wait_for_nodes(&observer, Duration::from_secs(5), |ids| ids.len() == 3).await;

    // A meeting made on one node: every node sends its joins to the same one.
    let (m1, key) = create(nodes[1].as_ref().unwrap(), "Board").await;
    let mut hosts = Vec::new();
    for n in nodes.iter().flatten() {
        hosts.push(socket_node(&n.url, &m1).await);
    }
    assert!(hosts.windows(2).all(|w| w[0] == w[1]), "{hosts:?}");
    let host = hosts[0].clone();
    let host_i = (0..3).find(|&i| node(&nodes, i) == host).unwrap();
    let other_i = (host_i + 1) % 3;

    // Joined through two other nodes, two people meet on the host.
    let mut ann = Client::join_with(
        &socket_node(&node(&nodes, other_i), &m1).await,
        &m1,
        "Ann",
        JoinOptions::host(key),
    )
    .await
    .unwrap();
    let mut bob = Client::join(
        &socket_node(&node(&nodes, (host_i + 2) % 3), &m1).await,
        &m1,
        "Bob",
        None,
    )
    .await
    .unwrap();
    let bob_id = bob.participant_id.clone();
    assert!(
        ann.run_until(Duration::from_secs(5), |c| c
            .participants
            .contains_key(&bob_id))
            .await,
        "Ann hears of Bob"
    );
    let _ = bob.run_until(Duration::from_millis(100), |_| false).await;

    // A socket opened on another node is refused with where to go (421),
    // and the page there is sent to the host (307), query kept.
    let other = node(&nodes, other_i);
    let ws = format!("{}/api/meetings/{m1}/ws", other.replace("http://", "ws://"));
    match tokio_tungstenite::connect_async(&ws).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 421);
            let body: Value = serde_json::from_slice(r.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["node"], host.as_str());
        }
        other => panic!("expected 421, got {other:?}"),
    }
    let page = http()
        .get(format!("{other}/m/{m1}?lang=nl"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 307);
    assert_eq!(
        page.headers()["location"].to_str().unwrap(),
        format!("{host}/m/{m1}?lang=nl")
    );

    // The host now carries two connections: after its next heartbeats, a
    // new meeting goes to a node with fewer.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (m2, _) = create(nodes[host_i].as_ref().unwrap(), "Other").await;
    let placed = socket_node(&node(&nodes, host_i), &m2).await;
    assert_ne!(placed, host, "placed by load, away from the busy node");

    // The host is killed: it drops out within a few seconds, and the meeting
    // goes on on another node, read from the shared database; the people
    // in it come back as themselves, with their roles.
    let ann_back = (ann.participant_id.clone(), ann.resume_token.clone());
    let bob_back = (bob.participant_id.clone(), bob.resume_token.clone());
    let killed = Instant::now();
    drop(nodes[host_i].take()); // kill -9 (SIGKILL) and reap
    drop(ann);
    drop(bob);
    let lost = format!("n{}", host_i + 1);
    wait_for_nodes(&observer, Duration::from_secs(6), |ids| {
        ids.len() == 2 && !ids.contains(&lost)
    })
    .await;
    let survivor = nodes[other_i].as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(6);
    let new_host = loop {
        let r = http()
            .get(format!("{}/api/meetings/{m1}", survivor.url))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let v: Value = r.json().await.unwrap();
            break v["node"].as_str().unwrap_or(&survivor.url).to_string();
        }
        // 503 "try again" while the lost node's hold on it runs out.
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "the meeting stays unreachable");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(new_host, host);
    let ann = Client::join(&new_host, &m1, "Ann", Some(&ann_back.1))
        .await
        .unwrap();
    println!(
        "the meeting was back on {new_host}, Ann in it as herself, {:?} after its node was killed",
        killed.elapsed()
    );
    assert_eq!(ann.meeting_title, "Board");
    assert_eq!(ann.participant_id, ann_back.0, "the same participant");
    let bob = Client::join(&new_host, &m1, "Bob", Some(&bob_back.1))
        .await
        .unwrap();
    assert_eq!(bob.participant_id, bob_back.0);
    let mut cat = Client::join(&new_host, &m1, "Cat", None).await.unwrap();
    assert!(
        cat.run_until(Duration::from_secs(3), |c| {
            c.participants
                .get(&ann_back.0)
                .is_some_and(|p| p["role"] == "host")
                && c.participants.contains_key(&bob_back.0)
        })
        .await,
        "a newcomer sees Ann, host again, and Bob: {:?}",
        cat.participants
    );
    assert!(
        cat.participant_id != ann_back.0 && cat.participant_id != bob_back.0,
        "a newcomer takes a new id"
    );
    // Every row of the audit log still chains.
    let storage = convene_storage::Storage::connect(&database).unwrap();
    assert!(storage.verify_audit().unwrap().is_ok());
    drop((ann, bob, cat));
    drop(nodes);
    std::fs::remove_dir_all(dir).ok();
}

/// A node `id` at `url` that exists only in Redis (alive, idle) and holds
/// `meeting`: a Convene node would send that meeting's people there.
async fn node_that_holds(redis: &str, id: &str, url: &str, meeting: &str) -> Cluster {
    let node = Cluster::connect(redis, id, url).await.unwrap();
    let idle = convene_cluster::Load {
        busy: 0.0,
        connections: 0,
        meetings: 0,
    };
    node.heartbeat(idle, false, &[], &[]).await.unwrap();
    assert_eq!(
        node.claim(meeting).await.unwrap(),
        None,
        "{id} holds {meeting}"
    );
    node
}

/// Whoever can write to Redis could name any URL as a meeting's node: a node
/// sends people only to URLs --node-urls allows (by default its own scheme
/// and domain, here 127.0.0.1), and refuses the rest with "try again".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_node_in_redis_gets_no_one() {
    let redis = Redis::start();
    let database = convene_storage::testing::postgres_url();
    let dir = std::env::temp_dir().join(format!(
        "convene-cluster-forged-{}",
        convene_storage::new_meeting_id()
    ));
    let node = start_node(1, &dir, &database, &redis.url());
    let (m, _) = create(&node, "Board").await;
    let _forger = node_that_holds(&redis.url(), "n9", "https://evil.example", &m).await;
    let r = http()
        .get(format!("{}/api/meetings/{m}", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let page = http()
        .get(format!("{}/m/{m}", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503, "no redirect to the forged node");
    assert!(page.headers().get("location").is_none());
    drop(node);
    std::fs::remove_dir_all(dir).ok();
}

/// A redirect keeps the address's fragment, where a host key or a page's
/// resume token travels: a meeting page is sent on with it only to a node
/// trusted with a sign-in. To a node the defaults merely allow (the rest of
/// this node's domain) the redirect carries an empty fragment, which
/// replaces the browser's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_follows_a_meeting_page_only_to_a_node_trusted_with_a_sign_in() {
    let redis = Redis::start();
    let database = convene_storage::testing::postgres_url();
    let port = common::oidc::free_port();
    let (db, url) = (database.clone(), redis.url());
    let node = common::server_with(move |c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.public_url = Some(format!("http://n1.convene.test:{port}"));
        c.database = Some(db);
        c.cluster = true;
        c.redis = Some(url);
        c.node_id = Some("n1".into());
    })
    .await;
    let storage = convene_storage::Storage::connect(&database).unwrap();
    let m = storage.create_meeting("Board", None, "{}").unwrap().0.id;
    // In the domain, so allowed by default; not this node, so not trusted
    // with a sign-in.
    let _other = node_that_holds(&redis.url(), "n9", "http://n9.convene.test:1", &m).await;
    let (status, head, _) =
        common::http_full(&node, "GET", &format!("/m/{m}?lang=nl"), None, "").await;
    assert_eq!(status, 307, "{head}");
    assert!(
        head.contains(&format!(
            "location: http://n9.convene.test:1/m/{m}?lang=nl#\r\n"
        )),
        "an empty fragment: {head}"
    );
    node.shutdown().await;
}

/// A node cut off long enough for another to take its meeting finds out at
/// its next beat: its people are told the meeting restarts, its lookup
/// names the other node, and they meet the others there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_meeting_to_another_sends_its_people_there() {
    let redis = Redis::start();
    let database = convene_storage::testing::postgres_url();
    let dir = std::env::temp_dir().join(format!(
        "convene-cluster-moved-{}",
        convene_storage::new_meeting_id()
    ));
    let nodes = [
        start_node(1, &dir, &database, &redis.url()),
        start_node(2, &dir, &database, &redis.url()),
    ];
    let observer = Cluster::connect(&redis.url(), "observer", "http://observer")
        .await
        .unwrap();
    wait_for_nodes(&observer, Duration::from_secs(5), |ids| ids.len() == 2).await;
    let (m, key) = create(&nodes[0], "Board").await;
    let first = socket_node(&nodes[0].url, &m).await;
    let (first_i, other_i) = if first == nodes[0].url {
        (0, 1)
    } else {
        (1, 0)
    };
    let mut ann = Client::join_with(&first, &m, "Ann", JoinOptions::host(key))
        .await
        .unwrap();
    // The other node took the meeting (as if the first had not reached
    // Redis for a while) and someone arrives there at once.
    convene_cluster::testing::hand_hold_to(&redis.url(), &m, &format!("n{}", other_i + 1)).await;
    let other = nodes[other_i].url.clone();
    assert_eq!(socket_node(&other, &m).await, other);
    let mut bob = Client::join(&other, &m, "Bob", None).await.unwrap();
    assert!(
        ann.run_until(Duration::from_secs(5), |c| c
            .log
            .iter()
            .any(|v| v["type"] == "restarting"))
            .await,
        "Ann is told the meeting restarts"
    );
    assert_eq!(
        socket_node(&nodes[first_i].url, &m).await,
        other,
        "the first node names the other"
    );
    // Ann's client comes back where the meeting is, and meets Bob there.
    let ann_back = Client::join(&other, &m, "Ann", Some(&ann.resume_token)).await;
    let mut ann = match ann_back {
        Ok(a) => a,
        // Her session was on the first node's copy: she joins afresh.
        Err(_) => Client::join(&other, &m, "Ann", None).await.unwrap(),
    };
    let bob_id = bob.participant_id.clone();
    assert!(
        ann.run_until(Duration::from_secs(5), |c| c
            .participants
            .contains_key(&bob_id))
            .await,
        "Ann meets Bob on the node that has the meeting"
    );
    let _ = bob.run_until(Duration::from_millis(100), |_| false).await;
    // The first node gave it up for good: the hold stays the other's.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(socket_node(&nodes[first_i].url, &m).await, other);
    drop((ann, bob));
    drop(nodes);
    std::fs::remove_dir_all(dir).ok();
}

/// A node reaches PostgreSQL and Redis over the network over TLS, each
/// server's certificate checked against the authority the operator names
/// (`sslrootcert` in --database, --redis-ca): it serves meetings. Without
/// the authority, the same servers are what a machine in the middle would
/// be, and the node does not start, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_its_database_and_redis_over_tls_and_checks_both() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let ca = {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let (cert, key) = (cert.pem(), key.serialize_pem());
    let dir = std::env::temp_dir().join(format!(
        "convene-cluster-tls-{}",
        convene_storage::new_meeting_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let ca_path = ca_file.to_str().unwrap();

    let pg_port = convene_storage::testing::postgres_over_tls(&cert, &key);
    let redis = Redis::start_over_tls(&cert, &key);
    let database = |root: &str| {
        format!("postgres://convene@localhost:{pg_port}/convene?sslmode=verify-full{root}")
    };
    let checked = database(&format!("&sslrootcert={ca_path}"));
    let rediss = format!("rediss://localhost:{}/", redis.tls_port().unwrap());

    let node =
        common::cluster::start_node_with(1, &dir, &checked, &rediss, &["--redis-ca", ca_path]);
    let (m, _) = create(&node, "Over TLS").await;
    let observer = Cluster::connect(&redis.url(), "observer", "http://observer")
        .await
        .unwrap();
    wait_for_nodes(&observer, Duration::from_secs(5), |ids| ids == ["n1"]).await;
    let ann = Client::join(&node.url, &m, "Ann", None).await.unwrap();
    assert!(
        !ann.participant_id.is_empty(),
        "a join is stored and answered"
    );
    drop(ann);

    // The system's roots do not hold the test's authority.
    for (db, redis_ca, what, remedy) in [
        (checked.clone(), None, "Redis", "--redis-ca"),
        (database(""), Some(ca_path), "database", "sslrootcert"),
    ] {
        let mut args = common::cluster::node_args(2, &dir, &db, &rediss);
        if let Some(ca) = redis_ca {
            args.extend(["--redis-ca".to_string(), ca.to_string()]);
        }
        let mut child = common::binary::convene()
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{what} unchecked: the node started");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = child.wait_with_output().unwrap();
        let said = common::binary::text(&out);
        assert!(!status.success(), "{what}: {said}");
        assert!(
            said.contains("invalid peer certificate") && said.contains(remedy),
            "{what}: the node says why it stopped, and what to do: {said}"
        );
    }
    drop(node);
    std::fs::remove_dir_all(dir).ok();
}
