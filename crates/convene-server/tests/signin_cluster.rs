//! Sign-in on a cluster: two nodes sharing a real PostgreSQL and Redis, and
//! a real OpenID provider. A person signed in on one node who opens a
//! meeting hosted by the other is sent there still signed in (a one-time
//! code in the redirect: a cookie only goes to the name that set it);
//! signing out on either node ends the sign-in on both.

mod common;

use std::time::{Duration, Instant};

use common::cluster::socket_node;
use common::oidc::{free_port, user, Browser, Provider};
use convene_client::Client;
use convene_cluster::testing::Redis;
use convene_cluster::Cluster;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_person_stays_signed_in_on_the_node_that_hosts_the_meeting() {
    let redis = Redis::start();
    let database = convene_storage::testing::postgres_url();
    let port_a = free_port();
    let _home = Provider::start(
        free_port(),
        "home-1",
        "home",
        port_a,
        json!([
            user("alice", "alice@home.example", "Alice Archer"),
            user("mallory", "mallory@home.example", "Mallory Mole")
        ]),
    );
    let config = std::env::temp_dir().join(format!(
        "convene-signin-cluster-{}.toml",
        convene_storage::new_meeting_id()
    ));
    std::fs::write(
        &config,
        format!(
            "[home]\nname = \"Home Department\"\ndomains = [\"home.example\"]\n\
             [home.provider]\nissuer = \"{}\"\nclient_id = \"convene\"\nclient_secret = \"secret-{}\"\n",
            _home.issuer(),
            _home.port
        ),
    )
    .unwrap();
    let node = |n: usize, port: u16| {
        let (config, database, redis) = (config.clone(), database.clone(), redis.url());
        common::server_with(move |c| {
            c.listen = format!("127.0.0.1:{port}").parse().unwrap();
            c.config_file = Some(config);
            c.database = Some(database);
            c.cluster = true;
            c.redis = Some(redis);
            c.node_id = Some(format!("n{n}"));
        })
    };
    let a = node(1, port_a).await;
    let b = node(2, free_port()).await;
    let observer = Cluster::connect(&redis.url(), "observer", "http://observer")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while observer.nodes().await.unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "both nodes beat");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Alice signs in on A.
    let mut on_a = Browser::new();
    on_a.sign_in(&a.url, "home", "alice", false).await;

    // A meeting hosted on B: while A is the less busy, new meetings go to
    // A; a person in one of them makes A the busier.
    let storage = convene_storage::Storage::connect(&database).unwrap();
    let mut fillers = Vec::new();
    let meeting = loop {
        let (m, _) = storage.create_meeting("Board", None, "{}").unwrap();
        let host = socket_node(&a.url, &m.id).await;
        if host == b.url {
            break m.id;
        }
        assert!(fillers.len() < 5, "no meeting went to B");
        fillers.push(Client::join(&host, &m.id, "Filler", None).await.unwrap());
        tokio::time::sleep(Duration::from_millis(2200)).await;
    };

    // Opened on A, the meeting's page sends Alice to B with a one-time code.
    let r = on_a.get(&format!("{}/m/{meeting}?lang=nl", a.url)).await;
    assert_eq!(r.status, 307, "{}", r.body);
    assert_eq!(
        r.cache_control.as_deref(),
        Some("no-store"),
        "kept by no cache"
    );
    let to = r.location.unwrap();
    assert!(
        to.starts_with(&format!("{}/m/{meeting}?lang=nl&signin=", b.url)),
        "{to}"
    );
    // B is another name to a browser: none of A's cookies go there.
    let mut on_b = Browser::new();
    let r = on_b.get(&to).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.cache_control.as_deref(), Some("no-store"));
    assert_eq!(
        r.location.unwrap(),
        format!("/m/{meeting}?lang=nl"),
        "the code is gone from the address"
    );
    let me = on_b.session(&b.url).await;
    assert_eq!(me["signedIn"]["name"], "Alice Archer", "{me}");
    assert_eq!(me["signedIn"]["level"], "member");
    // And she joins there as herself.
    let alice = Client::join_with(&b.url, &meeting, "Alice", on_b.join_options())
        .await
        .unwrap();
    let shown = &alice.participants[&alice.participant_id];
    assert_eq!(shown["identity"]["level"], "member", "{shown}");

    // The code works once.
    let mut thief = Browser::new();
    let r = thief.get(&to).await;
    assert_eq!(r.status, 303);
    assert!(
        !thief.jar.contains_key("convene_session"),
        "{:?}",
        thief.jar
    );
    assert!(thief.session(&b.url).await["signedIn"].is_null());
    // Someone else signed in makes a code of their own and leads browsers
    // to it: one signed in on B stays as it is; an address with two codes
    // (a page that added one to a link that had one) takes neither.
    let mut mallory = Browser::new();
    mallory.sign_in(&a.url, "home", "mallory", false).await;
    let lure = |r: common::oidc::Reply| r.location.unwrap();
    let bait = lure(mallory.get(&format!("{}/m/{meeting}", a.url)).await);
    assert_eq!(on_b.get(&bait).await.status, 303);
    assert_eq!(
        on_b.session(&b.url).await["signedIn"]["name"],
        "Alice Archer",
        "a code does not replace a sign-in"
    );
    let second = lure(mallory.get(&format!("{}/m/{meeting}", a.url)).await);
    let code = second.split("signin=").nth(1).unwrap();
    let mut fresh = Browser::new();
    let r = fresh.get(&format!("{bait}&signin={code}")).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location.unwrap(), format!("/m/{meeting}"));
    assert!(fresh.session(&b.url).await["signedIn"].is_null());
    // A code added to an address on A (which made none of its own for
    // someone not signed in there) is not passed on.
    let r = Browser::new()
        .get(&format!("{}/m/{meeting}?signin={code}", a.url))
        .await;
    assert!(!r.location.unwrap().contains(code));
    // Nobody signed in: no code.
    let r = Browser::new().get(&format!("{}/m/{meeting}", a.url)).await;
    assert_eq!(r.status, 307);
    assert!(!r.location.unwrap().contains("signin="));

    // Signing out on B ends the sign-in on A too.
    let csrf = me["csrfToken"].as_str().unwrap().to_string();
    let req = on_b
        .http
        .post(format!("{}/auth/logout", b.url))
        .header("x-csrf-token", csrf);
    assert_eq!(on_b.send(req).await.status, 204);
    assert!(on_b.session(&b.url).await["signedIn"].is_null());
    let deadline = Instant::now() + convene_auth::shared::RECHECK + Duration::from_secs(3);
    loop {
        if on_a.session(&a.url).await["signedIn"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "still signed in on A");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop((alice, fillers));
    a.shutdown().await;
    b.shutdown().await;
    std::fs::remove_file(config).ok();
}
