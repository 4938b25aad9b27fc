//! The engines a cluster shares go away under a running meeting and come
//! back (issue 20, "Bad input"): Redis, then PostgreSQL, each stopped and
//! started again under two real nodes. The meeting goes on; a join that
//! needs what is gone gets "try again" (503 with Retry-After); once it is
//! back, joins are routed as before and nothing acknowledged is lost.
//!
//! A test binary of its own: it stops the test process's PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{create, http, socket_node, start_node, wait_for_nodes};
use convene_client::{Client, JoinOptions};
use convene_cluster::testing::Redis;
use convene_cluster::Cluster;
use convene_storage::testing::{start_postgres_again, stop_postgres};
use serde_json::{json, Value};

/// What `node` answers for the meeting now: its status, and where it says
/// the meeting's socket is.
async fn ask(node: &str, meeting: &str) -> (u16, Option<String>, bool) {
    let r = http()
        .get(format!("{node}/api/meetings/{meeting}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry_after = r.headers().contains_key("retry-after");
    let v: Value = r.json().await.unwrap_or(Value::Null);
    let at = v["node"].as_str().map(str::to_string);
    (
        status,
        at.or((status == 200).then(|| node.to_string())),
        retry_after,
    )
}

/// Until `node` answers 200 for the meeting (503 meanwhile), at most
/// `within`: where it sends joins.
async fn until_answered(node: &str, meeting: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (status, at, _) = ask(node, meeting).await;
        if status == 200 {
            return at.unwrap();
        }
        assert_eq!(status, 503, "only 'try again' meanwhile");
        assert!(Instant::now() < deadline, "{node} still cannot answer");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn locked_seen(c: &Client, locked: bool) -> bool {
    c.log
        .iter()
        .any(|m| m["type"] == "meeting-updated" && m["meeting"]["locked"] == locked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_outlives_redis_and_postgres_going_away_and_coming_back() {
    let mut redis = Redis::start();
    let database = convene_storage::testing::postgres_url();
    let dir = std::env::temp_dir().join(format!(
        "convene-outage-{}",
        convene_storage::new_meeting_id()
    ));
    let nodes: Vec<_> = (1..=2)
        .map(|n| start_node(n, &dir, &database, &redis.url()))
        .collect();
    {
        let observer = Cluster::connect(&redis.url(), "observer", "http://observer")
            .await
            .unwrap();
        wait_for_nodes(&observer, Duration::from_secs(5), |ids| ids.len() == 2).await;
    }
    let (m, key) = create(&nodes[0], "Board").await;
    let host = socket_node(&nodes[0].url, &m).await;
    let other = nodes
        .iter()
        .map(|n| n.url.clone())
        .find(|u| *u != host)
        .unwrap();
    let mut ann = Client::join_with(&host, &m, "Ann", JoinOptions::host(key))
        .await
        .unwrap();
    let mut bob = Client::join(&host, &m, "Bob", None).await.unwrap();
    let bob_id = bob.participant_id.clone();
    assert!(
        ann.run_until(Duration::from_secs(5), |c| c
            .participants
            .contains_key(&bob_id))
            .await
    );

    // Redis goes away. The meeting goes on; a join through the other node
    // cannot be routed, and is told to try again.
    redis.stop();
    ann.chat("Redis is away").await.unwrap();
    assert!(
        bob.run_until(Duration::from_secs(5), |c| c
            .chat
            .iter()
            .any(|x| x["text"] == "Redis is away"))
            .await,
        "the meeting goes on without Redis"
    );
    let (status, _, retry_after) = ask(&other, &m).await;
    assert_eq!((status, retry_after), (503, true), "try again, and when");
    // Someone opening the meeting's page is told so in words, in their
    // language, and the page tries again by itself.
    let page = http()
        .get(format!("{other}/m/{m}"))
        .header("accept-language", "nl")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503);
    let refresh: u32 = page.headers()["refresh"].to_str().unwrap().parse().unwrap();
    assert!(
        (3..=10).contains(&refresh),
        "loaded again in a moment: {refresh} s"
    );
    assert_eq!(page.headers()["retry-after"], refresh.to_string().as_str());
    let said = page.text().await.unwrap();
    assert!(
        said.contains("<html lang=\"nl\"") && said.contains("De vergadering is nu niet bereikbaar"),
        "a page in Dutch, not an API's JSON: {said}"
    );
    // Once the others can no longer know it is alive, a node says it is
    // not ready (load balancers stop sending people to it).
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let r = http().get(format!("{other}/readyz")).send().await.unwrap();
        if r.status() == 503 {
            let why = r.text().await.unwrap();
            assert!(why.contains("Redis has not answered"), "{why}");
            break;
        }
        assert!(Instant::now() < deadline, "still ready without Redis");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Redis comes back, empty. The nodes say who they are again and the
    // host takes its meeting back: the other node sends joins to it, not
    // to a new copy of the meeting somewhere else.
    redis.start_again();
    let routed = until_answered(&other, &m, Duration::from_secs(10)).await;
    assert_eq!(routed, host, "the meeting stays where it runs");
    // Ready again once its next beat has reached Redis (within a second or two).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http().get(format!("{other}/readyz")).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "ready again: {}", r.status());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut cat = Client::join(&routed, &m, "Cat", None).await.unwrap();
    let (ann_id, cat_id) = (ann.participant_id.clone(), cat.participant_id.clone());
    assert!(
        cat.run_until(Duration::from_secs(5), |c| {
            c.participants.contains_key(&ann_id) && c.participants.contains_key(&bob_id)
        })
        .await,
        "Cat, routed after Redis came back, meets Ann and Bob"
    );

    // PostgreSQL goes away. The meeting goes on, a host's lock included;
    // a new join is told to try again.
    stop_postgres();
    ann.send(json!({"type": "lock", "locked": true}))
        .await
        .unwrap();
    assert!(
        bob.run_until(Duration::from_secs(5), |c| locked_seen(c, true))
            .await,
        "the lock takes effect without the database"
    );
    ann.chat("PostgreSQL is away").await.unwrap();
    assert!(
        cat.run_until(Duration::from_secs(5), |c| c
            .chat
            .iter()
            .any(|x| x["text"] == "PostgreSQL is away"))
            .await
    );
    let (status, _, retry_after) = ask(&host, &m).await;
    assert_eq!((status, retry_after), (503, true), "a new join: try again");

    // PostgreSQL comes back: joins are answered again, and what was done
    // while it was away is stored, in order.
    start_postgres_again();
    until_answered(&host, &m, Duration::from_secs(10)).await;
    ann.send(json!({"type": "lock", "locked": false}))
        .await
        .unwrap();
    assert!(
        bob.run_until(Duration::from_secs(5), |c| locked_seen(c, false))
            .await
    );
    let dan = Client::join(&host, &m, "Dan", None).await.unwrap();
    assert!(!dan.participant_id.is_empty());
    let storage = convene_storage::Storage::connect(&database).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let locks = loop {
        let locks: Vec<(String, String)> = storage
            .audit_records(Some(&m))
            .unwrap()
            .into_iter()
            .filter(|r| r.event == "lock")
            .map(|r| (r.outcome, r.detail))
            .collect();
        if locks.len() >= 2 || Instant::now() > deadline {
            break locks;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let outcomes: Vec<&str> = locks.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        outcomes,
        ["locked", "unlocked"],
        "the lock made while PostgreSQL was away is stored, in order"
    );
    assert!(
        locks[0].1.contains("stored later (the database was away)"),
        "it says when it happened: {:?}",
        locks[0].1
    );
    assert!(!storage.meeting(&m).unwrap().unwrap().locked);
    assert!(
        storage
            .audit_records(Some(&m))
            .unwrap()
            .iter()
            .any(|r| r.event == "join" && r.subject == cat_id),
        "Cat's join is stored"
    );
    assert!(storage.verify_audit().unwrap().is_ok());
    drop((ann, bob, cat, dan));
    drop(nodes);
    std::fs::remove_dir_all(dir).ok();
}
