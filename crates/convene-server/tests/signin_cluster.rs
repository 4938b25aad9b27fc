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

/// One browser on two nodes (each a name of its own, with its own cookies):
/// follows redirects from `url`; each address it asked for and the answer.
async fn follow(
    on_a: &mut Browser,
    a: &str,
    on_b: &mut Browser,
    b: &str,
    url: &str,
) -> Vec<(String, common::oidc::Reply)> {
    let mut steps = Vec::new();
    let mut url = url.to_string();
    for _ in 0..8 {
        let on_a_now = url.starts_with(a);
        let r = if on_a_now {
            on_a.get(&url).await
        } else {
            assert!(url.starts_with(b), "{url}");
            on_b.get(&url).await
        };
        let next = r.location.clone();
        steps.push((url.clone(), r));
        match next {
            Some(next) if next.starts_with('/') => {
                url = format!("{}{next}", if on_a_now { a } else { b })
            }
            Some(next) => url = next,
            None => break,
        }
    }
    steps
}

/// A code Mallory (signed in on A) makes for herself, in the address B
/// would take it from, as she could lead others to.
async fn bait(
    mallory_a: &mut Browser,
    a: &str,
    mallory_b: &mut Browser,
    b: &str,
    meeting: &str,
) -> String {
    let r = mallory_a.get(&format!("{a}/m/{meeting}")).await;
    let r = mallory_b.get(&r.location.unwrap()).await;
    let r = mallory_a.get(&r.location.unwrap()).await;
    let code = r.location.unwrap();
    assert!(
        code.starts_with(&format!("{b}/m/{meeting}?signin=")),
        "{code}"
    );
    code
}

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
    let node = |n: usize, port: u16, proxies: Vec<ipnet::IpNet>| {
        let (config, database, redis) = (config.clone(), database.clone(), redis.url());
        common::server_with(move |c| {
            c.listen = format!("127.0.0.1:{port}").parse().unwrap();
            c.config_file = Some(config);
            c.database = Some(database);
            c.cluster = true;
            c.redis = Some(redis);
            c.node_id = Some(format!("n{n}"));
            c.trusted_proxies = proxies;
        })
    };
    let a = node(1, port_a, Vec::new()).await;
    // B believes X-Forwarded-For from loopback, so that the test can speak
    // as several clients.
    let b = node(2, free_port(), vec!["127.0.0.1/32".parse().unwrap()]).await;
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

    // Opened on A, the meeting's page sends Alice to B, marked as signed in
    // on A: no code in an address yet.
    let r = on_a.get(&format!("{}/m/{meeting}?lang=nl", a.url)).await;
    assert_eq!(r.status, 307, "{}", r.body);
    assert_eq!(
        r.cache_control.as_deref(),
        Some("no-store"),
        "kept by no cache"
    );
    let to = r.location.unwrap();
    assert_eq!(
        to,
        format!("{}/m/{meeting}?lang=nl&signin-from={}", b.url, a.url)
    );
    // B is another name to a browser: none of A's cookies go there. B gives
    // her browser a nonce and sends it back to A for a code bound to it; A
    // sends her on to B with the code; B signs her in.
    let mut on_b = Browser::new();
    let steps = follow(&mut on_a, &a.url, &mut on_b, &b.url, &to).await;
    let hops: Vec<String> = steps
        .iter()
        .map(|(u, r)| format!("{u} {}", r.status))
        .collect();
    assert_eq!(steps.len(), 4, "{hops:?}");
    let nonce = steps[0].1.location.as_deref().unwrap();
    assert!(
        nonce.starts_with(&format!("{}/auth/handoff/{meeting}?lang=nl&nonce=", a.url)),
        "{hops:?}"
    );
    let nonce = nonce.rsplit("nonce=").next().unwrap().to_string();
    let with_code = steps[1].1.location.clone().unwrap();
    assert!(
        with_code.starts_with(&format!("{}/m/{meeting}?lang=nl&signin=", b.url)),
        "{hops:?}"
    );
    assert_eq!(
        steps[2].1.location.as_deref(),
        Some(format!("/m/{meeting}?lang=nl").as_str()),
        "the code is gone from the address"
    );
    assert_eq!(steps[3].1.status, 200);
    for (url, r) in &steps[..3] {
        assert_eq!(r.status, 303, "{url}");
        assert_eq!(r.cache_control.as_deref(), Some("no-store"), "{url}");
    }
    assert!(
        !on_b.jar.contains_key("convene_handoff"),
        "the nonce is spent"
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

    // The code works once, even with the nonce it was bound to.
    let mut thief = Browser::new();
    thief.jar.insert("convene_handoff".into(), nonce);
    let r = thief.get(&with_code).await;
    assert_eq!(r.status, 303);
    assert!(
        !thief.jar.contains_key("convene_session"),
        "{:?}",
        thief.jar
    );
    assert!(thief.session(&b.url).await["signedIn"].is_null());

    // Someone else signed in makes a code of their own and leads browsers
    // to it (a login CSRF): the code is bound to their own browser's nonce,
    // so it signs in no other browser, one that holds a nonce of its own
    // included; a browser signed in on B stays as it is.
    let mut mallory_a = Browser::new();
    mallory_a.sign_in(&a.url, "home", "mallory", false).await;
    let mut mallory_b = Browser::new();
    let lure = bait(&mut mallory_a, &a.url, &mut mallory_b, &b.url, &meeting).await;
    let mut fresh = Browser::new();
    assert_eq!(fresh.get(&lure).await.status, 303);
    assert!(
        fresh.session(&b.url).await["signedIn"].is_null(),
        "no nonce"
    );
    let mut with_own_nonce = Browser::new();
    let r = with_own_nonce.get(&to).await;
    assert!(r.location.unwrap().contains("/auth/handoff/"));
    assert!(with_own_nonce.jar.contains_key("convene_handoff"));
    assert_eq!(with_own_nonce.get(&lure).await.status, 303);
    assert!(
        with_own_nonce.session(&b.url).await["signedIn"].is_null(),
        "another browser's nonce"
    );
    assert_eq!(on_b.get(&lure).await.status, 303);
    assert_eq!(
        on_b.session(&b.url).await["signedIn"]["name"],
        "Alice Archer",
        "a code does not replace a sign-in"
    );
    // The lure was a working code all along: in Mallory's own browser it
    // signs her in.
    assert_eq!(mallory_b.get(&lure).await.status, 303);
    assert_eq!(
        mallory_b.session(&b.url).await["signedIn"]["name"],
        "Mallory Mole"
    );
    // An address with two codes (a page that added one to a link that had
    // one) takes neither.
    let mut mallory_b = Browser::new();
    let first = bait(&mut mallory_a, &a.url, &mut mallory_b, &b.url, &meeting).await;
    let second = bait(&mut mallory_a, &a.url, &mut mallory_b, &b.url, &meeting).await;
    let code = second.split("signin=").nth(1).unwrap();
    let r = mallory_b.get(&format!("{first}&signin={code}")).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location.unwrap(), format!("/m/{meeting}"));
    assert!(mallory_b.session(&b.url).await["signedIn"].is_null());
    // A code added to an address on A is not passed on.
    let r = Browser::new()
        .get(&format!("{}/m/{meeting}?signin={code}", a.url))
        .await;
    assert!(!r.location.unwrap().contains(code));
    // Nobody signed in: no mark, and A makes no code.
    let r = Browser::new().get(&format!("{}/m/{meeting}", a.url)).await;
    assert_eq!(r.status, 307);
    assert!(!r.location.unwrap().contains("signin"));
    let r = Browser::new()
        .get(&format!(
            "{}/auth/handoff/{meeting}?nonce={}",
            a.url,
            "a".repeat(64)
        ))
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location.unwrap(), format!("{}/m/{meeting}", b.url));

    // Cookies no node made (made up, from however many addresses) fail their
    // tag: signed out at once, without a read of the database.
    let http = reqwest::Client::new();
    let via = |client: &'static str, cookie: String| {
        let (http, url) = (http.clone(), b.url.clone());
        async move {
            let r = http
                .get(format!("{url}/api/session"))
                .header("x-forwarded-for", client)
                .header("cookie", format!("convene_session={cookie}"))
                .send()
                .await
                .unwrap();
            let retry = r.headers().get("retry-after").is_some();
            (r.status().as_u16(), retry, r.text().await.unwrap())
        }
    };
    for i in 0..1_200 {
        let (status, _, body) = via("192.0.2.55", format!("{i:064x}")).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"signedIn\":null"), "{body}");
    }
    // Cookies with a good tag but no session here (as only a holder of the
    // deployment's key could make: the test reads it from the database) are
    // read, at most a client's share: past it, try again.
    let key = hex_bytes(&storage.node_secret("session-cookies").unwrap());
    let tagged = |i: usize| {
        use hmac::{Mac, SimpleHmac};
        let body = format!("{i:048x}");
        let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(b"cookie\0");
        mac.update(body.as_bytes());
        let tag: String = mac.finalize().into_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        body + &tag
    };
    let mut refused = 0;
    let flood = Instant::now();
    for i in 0..300 {
        let (status, retry, _) = via("192.0.2.66", tagged(i)).await;
        if status == 503 {
            assert!(retry, "with Retry-After");
            refused += 1;
        } else {
            assert_eq!(status, 200);
        }
    }
    // Its own share: a burst of 100, then 20 a second.
    let granted = 300 - refused;
    let share = 100.0 + 20.0 * flood.elapsed().as_secs_f64() + 1.0;
    assert!(
        refused > 0 && f64::from(granted) <= share,
        "the flooder's own share ran out: {granted} read, at most {share}"
    );
    // Someone else whose session B never read (as after a failover) is still
    // signed in there.
    let alice_on_a = on_a.jar["convene_session"].clone();
    let (status, _, body) = via("192.0.2.77", alice_on_a.clone()).await;
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["signedIn"]["name"], "Alice Archer", "{seen}");

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

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}
