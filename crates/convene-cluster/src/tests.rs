//! Against a real Redis: liveness, holding a meeting, and routing.

use super::*;
use crate::testing::Redis;
use std::time::Duration;

const SHARED: &[u8] = b"the nodes' shared secret";

async fn node(redis: &Redis, id: &str) -> Cluster {
    Cluster::connect(&redis.url(), id, &format!("https://{id}.example/"))
        .await
        .unwrap()
        .with_message_key(SHARED)
        .unwrap()
}

fn idle() -> Load {
    Load::default()
}

#[tokio::test]
async fn a_node_is_alive_while_it_beats_and_gone_three_seconds_after() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a").await, node(&redis, "b").await);
    assert_eq!(a.nodes().await.unwrap(), []);
    a.heartbeat(idle(), false, &[], &[]).await.unwrap();
    b.heartbeat(idle(), true, &[], &[]).await.unwrap();
    let seen = b.nodes().await.unwrap();
    assert_eq!(
        seen.iter()
            .map(|n| (n.id.as_str(), n.url.as_str(), n.draining))
            .collect::<Vec<_>>(),
        [
            ("a", "https://a.example", false),
            ("b", "https://b.example", true)
        ]
    );
    // b goes on beating; a stops (as a killed node does).
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        b.heartbeat(idle(), false, &[], &[]).await.unwrap();
    }
    let seen = b.nodes().await.unwrap();
    assert_eq!(
        seen.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
}

#[tokio::test]
async fn one_node_holds_a_meeting_and_only_it_keeps_or_gives_it_back() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a").await, node(&redis, "b").await);
    assert_eq!(a.claim("m1").await.unwrap(), None);
    assert_eq!(a.claim("m1").await.unwrap(), None, "already ours");
    assert_eq!(b.claim("m1").await.unwrap(), Some("a".into()));
    assert_eq!(b.owner("m1").await.unwrap(), Some("a".into()));
    // Redis holds no meeting id (the join secret), only a hash of it.
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.iter().all(|k| !k.contains("m1")), "{keys:?}");
    assert!(
        keys.iter().any(|k| k.starts_with("convene:meeting:")),
        "{keys:?}"
    );
    // b can neither give back nor keep what a holds: its beat says it is a's.
    b.release("m1").await.unwrap();
    assert_eq!(
        b.heartbeat(idle(), false, &["m0".into(), "m1".into()], &[])
            .await
            .unwrap(),
        ["m1"],
        "held by another node"
    );
    assert_eq!(a.owner("m1").await.unwrap(), Some("a".into()));
    // a keeps it past the hold's life by beating, and gives it back at the end.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        a.heartbeat(idle(), false, &["m1".into()], &[])
            .await
            .unwrap();
    }
    assert_eq!(b.owner("m1").await.unwrap(), Some("a".into()));
    a.heartbeat(idle(), false, &[], &["m1".into()])
        .await
        .unwrap();
    assert_eq!(b.owner("m1").await.unwrap(), None);
    assert_eq!(b.claim("m1").await.unwrap(), None);
}

#[tokio::test]
async fn a_join_goes_to_the_host_or_else_to_the_least_loaded_node() {
    let redis = Redis::start();
    let (a, b, c) = (
        node(&redis, "a").await,
        node(&redis, "b").await,
        node(&redis, "c").await,
    );
    let busy = |connections| Load {
        busy: 0.0,
        connections,
        meetings: 1,
    };
    a.heartbeat(busy(40), false, &[], &[]).await.unwrap();
    b.heartbeat(busy(2), false, &[], &[]).await.unwrap();
    c.heartbeat(busy(0), true, &[], &[]).await.unwrap();
    // Nobody hosts m1: b is the least loaded of those not draining. Asked on
    // a, the join is sent to b; b takes it when the join arrives.
    assert_eq!(
        a.route("m1").await.unwrap(),
        Route::There("https://b.example".into())
    );
    assert_eq!(b.route("m1").await.unwrap(), Route::Here);
    assert_eq!(
        a.route("m1").await.unwrap(),
        Route::There("https://b.example".into())
    );
    assert_eq!(
        c.route("m1").await.unwrap(),
        Route::There("https://b.example".into())
    );
    // Every node draining: no place for a new meeting, a clear error.
    b.heartbeat(busy(2), true, &["m1".into()], &[])
        .await
        .unwrap();
    a.heartbeat(busy(40), true, &[], &[]).await.unwrap();
    assert!(matches!(a.route("m2").await, Err(ClusterError::NoNode)));
    // A running meeting stays where it is while its node drains.
    assert_eq!(
        a.route("m1").await.unwrap(),
        Route::There("https://b.example".into())
    );
}

#[tokio::test]
async fn without_redis_a_node_does_not_start_and_a_route_fails_clearly() {
    let mut redis = Redis::start();
    let url = redis.url();
    let a = node(&redis, "a").await;
    a.heartbeat(idle(), false, &[], &[]).await.unwrap();
    assert_eq!(a.claim("m2").await.unwrap(), None);
    redis.stop();
    let e = Cluster::connect(&url, "b", "https://b.example")
        .await
        .err()
        .unwrap();
    assert!(e.to_string().starts_with("Redis: "), "{e}");
    let t = std::time::Instant::now();
    assert!(a.route("m1").await.is_err());
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // Back (empty): the node says it is alive again at its next beat, and
    // takes back the meeting it still runs, so that no other node starts it
    // anew.
    redis.start_again();
    let mut back = false;
    for _ in 0..20 {
        if a.heartbeat(idle(), false, &["m2".into()], &[])
            .await
            .is_ok()
        {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(back, "the node reaches Redis again");
    let b = node(&redis, "b").await;
    // Until the nodes have had time to say what they host, a meeting held
    // by no one is not placed (it may be running on a node yet to beat).
    assert!(matches!(b.route("m1").await, Err(ClusterError::Settling)));
    let t = std::time::Instant::now();
    let placed = loop {
        a.heartbeat(idle(), false, &["m2".into()], &[])
            .await
            .unwrap();
        match b.route("m1").await {
            Err(ClusterError::Settling) => {
                assert!(t.elapsed() < SETTLE + Duration::from_secs(2));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(placed, Route::There("https://a.example".into()));
    a.heartbeat(idle(), false, &["m2".into()], &[])
        .await
        .unwrap();
    b.heartbeat(idle(), false, &[], &[]).await.unwrap();
    assert_eq!(
        b.route("m2").await.unwrap(),
        Route::There("https://a.example".into())
    );
}

/// Redis emptied without a restart (FLUSHALL; a failover to a replica that
/// had not caught up): its uptime says nothing, yet the holds are gone. New
/// placements wait until the nodes have said what they run.
#[tokio::test]
async fn after_redis_forgot_everything_no_meeting_is_placed_until_the_nodes_have_beaten() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a").await, node(&redis, "b").await);
    a.heartbeat(idle(), false, &[], &[]).await.unwrap();
    assert_eq!(a.claim("m1").await.unwrap(), None);
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    b.heartbeat(idle(), false, &[], &[]).await.unwrap();
    assert!(matches!(b.route("m1").await, Err(ClusterError::Settling)));
    // a's beat takes m1 back; once settled, joins go to a.
    a.heartbeat(idle(), false, &["m1".into()], &[])
        .await
        .unwrap();
    tokio::time::sleep(SETTLE).await;
    a.heartbeat(idle(), false, &["m1".into()], &[])
        .await
        .unwrap();
    assert_eq!(
        b.route("m1").await.unwrap(),
        Route::There("https://a.example".into())
    );
}

/// The next message in `inbox`, waiting at most `secs`.
async fn next(inbox: &mut Inbox, secs: u64) -> Option<Vec<u8>> {
    tokio::time::timeout(Duration::from_secs(secs), inbox.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn a_message_reaches_the_node_it_is_sent_to_in_order_and_no_other() {
    let redis = Redis::start();
    let (a, b, c) = (
        node(&redis, "n1").await,
        node(&redis, "n2").await,
        node(&redis, "n3").await,
    );
    let mut to_b = b.inbox().await.unwrap();
    let mut to_c = c.inbox().await.unwrap();
    assert!(a.send_to("n2", b"hello").await.unwrap(), "n2 listens");
    assert_eq!(next(&mut to_b, 5).await.as_deref(), Some(&b"hello"[..]));
    for i in 0..200 {
        a.send_to("n2", format!("{i}").as_bytes()).await.unwrap();
    }
    for i in 0..200 {
        let got = next(&mut to_b, 5).await.expect("every message arrives");
        assert_eq!(got, format!("{i}").into_bytes(), "in order");
    }
    assert_eq!(next(&mut to_c, 1).await, None, "n3 got none of them");
    // Many at once, in one round trip: each to its node, in order.
    let batch: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| {
            (
                if i % 3 == 0 { "n3" } else { "n2" }.to_string(),
                format!("b{i}").into_bytes(),
            )
        })
        .collect();
    assert_eq!(
        a.send_many(&batch).await.unwrap(),
        0,
        "every one listened for"
    );
    for (to, inbox) in [("n2", &mut to_b), ("n3", &mut to_c)] {
        for (_, m) in batch.iter().filter(|(t, _)| t == to) {
            assert_eq!(next(inbox, 5).await.as_deref(), Some(m.as_slice()));
        }
    }
    assert!(
        !a.send_to("n9", b"anyone?").await.unwrap(),
        "no node listens"
    );
    let big = vec![b'x'; MAX_MESSAGE + 1];
    assert!(matches!(
        a.send_to("n2", &big).await,
        Err(ClusterError::TooLarge(_))
    ));
}

#[tokio::test]
async fn an_inbox_listens_again_once_redis_is_back() {
    let mut redis = Redis::start();
    let (a, b) = (node(&redis, "n1").await, node(&redis, "n2").await);
    let mut inbox = b.inbox().await.unwrap();
    redis.stop();
    redis.start_again();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !a.send_to("n2", b"again").await.unwrap_or(false) {
        assert!(std::time::Instant::now() < deadline, "n2 listens again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(next(&mut inbox, 5).await.as_deref(), Some(&b"again"[..]));
}

#[tokio::test]
async fn a_message_not_sealed_for_its_receiver_with_the_nodes_key_is_dropped() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "n1").await, node(&redis, "n2").await);
    let mut to_b = b.inbox().await.unwrap();
    // Whoever can write to Redis but has not the key: plain text, a
    // forgery under another key, a message sealed for another node
    // published on this one's channel, and one with a flipped bit.
    let mut raw = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let publish = |bytes: Vec<u8>| {
        let mut raw = raw.clone();
        async move {
            let _: i64 = redis::cmd("PUBLISH")
                .arg("convene:node:n2:inbox")
                .arg(bytes)
                .query_async(&mut raw)
                .await
                .unwrap();
        }
    };
    publish(br#"{"kind":"join"}"#.to_vec()).await;
    let other = channel::MessageKey::new(b"another deployment's secret").unwrap();
    publish(other.seal_for_test("n2", b"forged")).await;
    let ours = channel::MessageKey::new(SHARED).unwrap();
    publish(ours.seal_for_test("n3", b"for n3")).await;
    let mut flipped = ours.seal_for_test("n2", b"tampered");
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    publish(flipped).await;
    // And a replay of one sealed longer ago than messages stay fresh.
    publish(ours.seal_earlier_for_test("n2", b"stale", FRESH_FOR + Duration::from_secs(1))).await;
    assert_eq!(next(&mut to_b, 1).await, None, "none of them arrives");
    // (A sender's first message: no count of it was taken yet.)
    let another_run = channel::MessageKey::new(SHARED).unwrap();
    publish(another_run.seal_earlier_for_test("n2", b"recent", Duration::from_secs(2))).await;
    assert_eq!(next(&mut to_b, 5).await.as_deref(), Some(&b"recent"[..]));
    // The real thing does, once: the same message again (a replay) is
    // refused, and so is one sealed before it that comes after it.
    let first = ours.seal_for_test("n2", b"first");
    let second = ours.seal_for_test("n2", b"second");
    publish(second.clone()).await;
    publish(second).await;
    publish(first).await;
    assert_eq!(next(&mut to_b, 5).await.as_deref(), Some(&b"second"[..]));
    assert!(a.send_to("n2", b"hello").await.unwrap());
    assert_eq!(next(&mut to_b, 5).await.as_deref(), Some(&b"hello"[..]));
    assert_eq!(next(&mut to_b, 1).await, None, "nothing else");
    let _ = &mut raw;
    // Without the key, a node neither sends nor listens.
    let keyless = Cluster::connect(&redis.url(), "n4", "https://n4.example/")
        .await
        .unwrap();
    assert!(matches!(
        keyless.send_to("n2", b"hi").await,
        Err(ClusterError::NoMessageKey)
    ));
    assert!(matches!(
        keyless.inbox().await,
        Err(ClusterError::NoMessageKey)
    ));
}

#[tokio::test]
async fn passcode_guesses_on_two_nodes_draw_on_one_budget() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "n1").await, node(&redis, "n2").await);
    let rules = |free| Backoff {
        free_tries: free,
        first_wait: Duration::from_millis(400),
        max_wait: Duration::from_secs(2),
        forget_after: Duration::from_secs(60),
    };
    let (per_address, per_meeting) = (rules(3), rules(6));
    let one: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let meeting = "m-guessed-at";
    // Three wrong tries, on either node: the fourth waits, on both.
    for node in [&a, &b, &a] {
        let g = node
            .reserve_guess(meeting, one, &per_address, &per_meeting)
            .await
            .unwrap()
            .expect("a free try");
        node.settle_guess(g, true).await.unwrap();
    }
    for node in [&a, &b] {
        let waiting = node
            .reserve_guess(meeting, one, &per_address, &per_meeting)
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(waiting, Waiting::Address(w) if w > Duration::ZERO && w <= Duration::from_millis(400)),
            "{waiting:?}"
        );
    }
    // A right try takes back its own charge only.
    let other: std::net::IpAddr = "192.0.2.8".parse().unwrap();
    let g = b
        .reserve_guess(meeting, other, &per_address, &per_meeting)
        .await
        .unwrap()
        .unwrap();
    b.settle_guess(g, false).await.unwrap();
    // Simultaneous tries from many addresses, split over both nodes, are
    // charged before they are checked: the meeting's budget (6, of which 3
    // are spent) lets exactly 3 through.
    let tries = (0..20).map(|i| {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            let ip: std::net::IpAddr = format!("198.51.100.{i}").parse().unwrap();
            node.reserve_guess(meeting, ip, &per_address, &per_meeting)
                .await
                .unwrap()
        }
    });
    let results = futures_util::future::join_all(tries).await;
    let through = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(through, 3, "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|w| matches!(w, Waiting::Meeting(_))));
    // Redis holds neither the meeting's id nor an address, and every key
    // goes away by itself.
    let mut raw = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*guesses*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(
            !k.contains(meeting) && !k.contains("192.0.2") && !k.contains("198.51"),
            "{k}"
        );
        let ttl: i64 = redis::cmd("PTTL")
            .arg(k)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 60_000, "{k} expires: {ttl}");
    }
    // One try at a time once waits apply, even with no wait to count.
    let eager = Backoff {
        free_tries: 1,
        first_wait: Duration::ZERO,
        ..rules(1)
    };
    let third: std::net::IpAddr = "192.0.2.9".parse().unwrap();
    let held = a
        .reserve_guess("m-eager", third, &eager, &eager)
        .await
        .unwrap()
        .expect("the free try");
    assert!(b
        .reserve_guess("m-eager", third, &eager, &eager)
        .await
        .unwrap()
        .is_err());
    a.settle_guess(held, false).await.unwrap();
    // Settling a try that was never charged (its caller gave up waiting
    // before Redis ran the charge) changes nothing.
    let never = a.guess("m-eager", third, &eager, &eager).unwrap();
    a.settle_guess(never, true).await.unwrap();
    let again = b
        .reserve_guess("m-eager", third, &eager, &eager)
        .await
        .unwrap();
    assert!(again.is_ok(), "no failure was counted: {again:?}");
    // After the wait, the first address may try again.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(a
        .reserve_guess(meeting, one, &per_address, &rules(100))
        .await
        .unwrap()
        .is_ok());
}

/// A certificate authority of the test's own, and a certificate for
/// `names` it signed: (authority PEM, certificate PEM, key PEM).
fn pki(names: &[&str]) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Test Redis CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

#[tokio::test]
async fn over_tls_redis_is_checked_against_its_authority_and_its_name() {
    let (ca, cert, key) = pki(&["localhost"]);
    let redis = Redis::start_over_tls(&cert, &key);
    let port = redis.tls_port().unwrap();
    let at = |host: &str| format!("rediss://{host}:{port}/");
    async fn connect(url: String, ca: Option<&str>) -> Result<Cluster, ClusterError> {
        let ca = ca.map(|c| c.as_bytes().to_vec());
        Cluster::connect_checked(&url, ca, "n1", "https://n1.example")
            .await
            .map(|c| c.with_message_key(SHARED).unwrap())
    }

    // Its own authority, its own name: the node works, its inbox too (a
    // connection of its own, opened the same way).
    let a = connect(at("localhost"), Some(&ca)).await.unwrap();
    a.heartbeat(idle(), false, &[], &[]).await.unwrap();
    let mut inbox = a.inbox().await.unwrap();
    assert!(a.send_to("n1", b"over TLS").await.unwrap());
    assert_eq!(next(&mut inbox, 5).await.as_deref(), Some(&b"over TLS"[..]));
    // What the node wrote is there for a node on the Unix socket: one Redis.
    let b = node(&redis, "n2").await;
    assert_eq!(b.nodes().await.unwrap()[0].id, "n1");

    // Anything a machine in the middle could be is refused: a certificate
    // from another authority, one the system's roots do not vouch for, one
    // for another name.
    let (other_ca, _, _) = pki(&["localhost"]);
    for (url, ca, why) in [
        (
            at("localhost"),
            Some(other_ca.as_str()),
            "another authority",
        ),
        (at("localhost"), None, "the system's roots"),
        (at("127.0.0.1"), Some(ca.as_str()), "another name"),
    ] {
        let e = connect(url, ca)
            .await
            .err()
            .unwrap_or_else(|| panic!("{why}: connected"));
        assert!(
            matches!(e, ClusterError::Redis(_))
                && e.to_string().contains("invalid peer certificate"),
            "{why}: {e}"
        );
    }
    // No way to turn the check off, and an authority without TLS is a
    // mistake said at once.
    assert!(connect(format!("{}#insecure", at("localhost")), None)
        .await
        .is_err());
    // Any spelling of the TLS scheme is TLS, its authority taken.
    let a = connect(format!("REDISS://localhost:{port}/"), Some(&ca))
        .await
        .unwrap();
    a.heartbeat(idle(), false, &[], &[]).await.unwrap();
    assert!(matches!(
        connect(at("localhost"), Some("not a certificate")).await,
        Err(ClusterError::NoCertificate)
    ));
    assert!(matches!(
        connect(redis.url(), Some(&ca)).await,
        Err(ClusterError::CaWithoutTls)
    ));
}
