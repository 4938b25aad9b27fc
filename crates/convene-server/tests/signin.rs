//! Sign-in against real OpenID providers on loopback: two (or three) instances
//! of the certified `oidc-provider` package (tests/oidc/provider.mjs), each with
//! its own keys and users, playing the home organisation and a partner.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::oidc::{free_port, repo, user, Browser, Provider, Reply};
use convene_client::{Client, JoinOptions};
use serde_json::{json, Value};

/// The tests here start several processes each: one at a time keeps a small
/// machine from being swamped.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct World {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    server: convene_server::RunningServer,
    home: Provider,
    partner: Provider,
    url: String,
    _config: PathBuf,
}

async fn world() -> World {
    world_with_policy(None).await
}

async fn world_with_policy(policy: Option<&str>) -> World {
    world_with(policy, "").await
}

/// `home_provider` is more TOML for the home organisation's `[home.provider]`.
async fn world_with(policy: Option<&str>, home_provider: &str) -> World {
    let turn = ONE_AT_A_TIME.lock().await;
    let policy = policy.map(|p| repo().join(p));
    let convene_port = free_port();
    let home = Provider::start(
        free_port(),
        "home-1",
        "home",
        convene_port,
        json!([
            user("alice", "alice@home.example", "Alice Archer"),
            user("eve", "eve@elsewhere.example", "Eve Elsewhere"),
        ]),
    );
    let partner = Provider::start(
        free_port(),
        "partner-1",
        "partner-agency",
        convene_port,
        json!([user("pam", "pam@partner.example", "Pam Partner")]),
    );
    let config = std::env::temp_dir().join(format!(
        "convene-signin-{}.toml",
        convene_storage::new_meeting_id()
    ));
    std::fs::write(
        &config,
        format!(
            r#"
[home]
name = "Home Department"
domains = ["home.example"]
[home.provider]
issuer = "{}"
client_id = "convene"
client_secret = "secret-{}"
{}

[[partner]]
id = "partner-agency"
name = "Partner Agency"
domains = ["partner.example"]
[partner.provider]
issuer = "{}"
client_id = "convene"
client_secret = "secret-{}"
"#,
            home.issuer(),
            home.port,
            home_provider,
            partner.issuer(),
            partner.port
        ),
    )
    .unwrap();
    let path = config.clone();
    let server = common::server_with(move |c| {
        c.listen = format!("127.0.0.1:{convene_port}").parse().unwrap();
        c.config_file = Some(path);
        c.policy_file = policy;
    })
    .await;
    World {
        _turn: turn,
        url: server.url.clone(),
        server,
        home,
        partner,
        _config: config,
    }
}

async fn create(b: &mut Browser, url: &str, settings: Value) -> Reply {
    let csrf = b.session(url).await["csrfToken"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let req = b
        .http
        .post(format!("{url}/api/meetings"))
        .header("x-csrf-token", csrf)
        .json(&json!({"title": "Joint planning", "settings": settings}));
    b.send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_and_partners_are_verified_and_shown_guests_wait() {
    let w = world().await;
    let url = w.url.clone();

    // Nobody signed in: the page says who hosts, and creating needs a member.
    let mut anon = Browser::new();
    let s = anon.session(&url).await;
    assert_eq!(s["hostedBy"], "Home Department");
    assert_eq!(s["server"], url);
    assert_eq!(s["mayCreateMeetings"], false);
    assert_eq!(
        s["signIn"],
        json!([{"id": "home", "name": "Home Department", "home": true},
               {"id": "partner-agency", "name": "Partner Agency", "home": false}])
    );
    assert_eq!(create(&mut anon, &url, json!({})).await.status, 401);

    let mut alice = Browser::new();
    alice.sign_in(&url, "home", "alice", true).await;
    let s = alice.session(&url).await;
    assert_eq!(
        s["signedIn"],
        json!({"name": "Alice Archer", "level": "member", "organisation": "Home Department", "mfa": true})
    );
    assert_eq!(s["mayCreateMeetings"], true);
    let r = create(
        &mut alice,
        &url,
        json!({"lobby": true, "lobbyBypass": "members-and-partners"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let m: Value = serde_json::from_str(&r.body).unwrap();
    let (id, host_key) = (
        m["id"].as_str().unwrap().to_string(),
        m["hostKey"].as_str().unwrap().to_string(),
    );
    assert_eq!(m["hostedBy"], "Home Department");

    let mut pam = Browser::new();
    pam.sign_in(&url, "partner-agency", "pam", false).await;
    assert_eq!(
        pam.session(&url).await["signedIn"],
        json!({"name": "Pam Partner", "level": "partner", "organisation": "Partner Agency", "mfa": false})
    );
    // Eve signs in with the home provider, but her address is not the home
    // organisation's: she is a guest.
    let mut eve = Browser::new();
    eve.sign_in(&url, "home", "eve", false).await;
    assert_eq!(eve.session(&url).await["signedIn"]["level"], "guest");
    assert_eq!(eve.session(&url).await["mayCreateMeetings"], false);

    // In the meeting: the member (host) and the partner go straight in and see
    // each other's verification; the guests wait, marked as guests.
    let mut host = Client::join_with(
        &url,
        &id,
        "typed name ignored",
        JoinOptions {
            host_key: Some(host_key),
            ..alice.join_options()
        },
    )
    .await
    .unwrap();
    let partner = Client::join_with(&url, &id, "x", pam.join_options())
        .await
        .unwrap();
    assert!(!partner.in_lobby);
    let me = &partner.participants[&partner.participant_id];
    assert_eq!(me["name"], "Pam Partner");
    assert_eq!(
        me["identity"],
        json!({"level": "partner", "organisation": "Partner Agency"})
    );
    let host_seen = partner
        .participants
        .values()
        .find(|p| p["role"] == "host")
        .unwrap();
    assert_eq!(
        host_seen["identity"],
        json!({"level": "member", "organisation": "Home Department"}),
        "no MFA flag for non-hosts"
    );
    // Signed in, the creator is a host from the plain join link too.
    let again = Client::join_with(&url, &id, "x", alice.join_options())
        .await
        .unwrap();
    assert_eq!(again.participants[&again.participant_id]["role"], "host");
    again.leave().await;
    let guest = Client::join_with(&url, &id, "Gail", JoinOptions::default())
        .await
        .unwrap();
    let signed_in_guest = Client::join_with(&url, &id, "Eve", eve.join_options())
        .await
        .unwrap();
    assert!(guest.in_lobby && signed_in_guest.in_lobby);
    assert!(
        host.run_until(Duration::from_secs(3), |c| c.log.iter().any(|m| m["type"]
            == "lobby-updated"
            && m["waiting"].as_array().unwrap().len() == 2))
            .await
    );
    let waiting = host
        .log
        .iter()
        .rev()
        .find(|m| m["type"] == "lobby-updated")
        .unwrap()["waiting"]
        .clone();
    assert!(waiting
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["identity"] == json!({"level": "guest"})));
    let pid = partner.participant_id.clone();
    assert!(
        host.run_until(Duration::from_secs(2), |c| c
            .participants
            .contains_key(&pid))
            .await
    );
    assert_eq!(
        host.participants[&pid]["identity"],
        json!({"level": "partner", "organisation": "Partner Agency", "mfa": false}),
        "hosts see whether a sign-in used MFA"
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = w.server.state.storage.audit_records(Some(&id)).unwrap();
    assert!(log.iter().any(|r| r.event == "join"
        && r.detail
            .contains("partner of Partner Agency: pam@partner.example, single-factor")));
    assert!(log.iter().any(|r| r.event == "join"
        && r.detail
            .contains("member of Home Department: alice@home.example, multi-factor")));
    drop((w.home, w.partner));
    w.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_cross_browser_sign_ins_are_refused() {
    let w = world().await;
    let url = w.url.clone();

    // An organisation this server does not trust.
    let mut b = Browser::new();
    let r = b.get(&format!("{url}/auth/login?org=rogue")).await;
    assert_eq!(r.status, 404);

    // Replay: the same callback twice.
    let mut a = Browser::new();
    let callback = a.sign_in_at_provider(&url, "home", "alice", false).await;
    assert_eq!(a.get(&callback).await.status, 303);
    let again = a.get(&callback).await;
    assert_eq!(again.status, 400);
    assert!(again.body.contains("already used"), "{}", again.body);

    // State from another browser: a callback finished in a browser that did not
    // start it (login CSRF) is refused.
    let mut victim = Browser::new();
    let mut attacker = Browser::new();
    let attackers_callback = attacker
        .sign_in_at_provider(&url, "home", "eve", false)
        .await;
    let r = victim.get(&attackers_callback).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("another browser"), "{}", r.body);
    assert!(!victim.jar.contains_key("convene_session"));

    // Code injection: browser A's own state with browser B's code. The code was
    // issued against B's PKCE challenge, so the provider refuses A's verifier.
    let mut one = Browser::new();
    let mut two = Browser::new();
    let cb_one = one.sign_in_at_provider(&url, "home", "alice", false).await;
    let cb_two = two.sign_in_at_provider(&url, "home", "eve", false).await;
    let param = |u: &str, k: &str| {
        u.split(['?', '&'])
            .find_map(|p| p.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let injected = format!(
        "{url}/auth/callback/home?code={}&state={}",
        param(&cb_two, "code"),
        param(&cb_one, "state")
    );
    let r = one.get(&injected).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("refused"), "{}", r.body);
    assert!(!one.jar.contains_key("convene_session"));

    // A callback naming another issuer (mix-up) is refused.
    let mut c = Browser::new();
    let cb = c.sign_in_at_provider(&url, "home", "alice", false).await;
    let mixed = cb.replace(
        &format!("iss={}", urlencode(&w.home.issuer())),
        &format!("iss={}", urlencode(&w.partner.issuer())),
    );
    assert_ne!(cb, mixed, "the provider sends iss");
    let r = c.get(&mixed).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("another issuer"), "{}", r.body);

    // The provider's own refusal is passed on.
    let r = b
        .get(&format!(
            "{url}/auth/callback/home?error=access_denied&error_description=Call+0800+now"
        ))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("declined the sign-in"));
    assert!(
        !r.body.contains("0800"),
        "no text from the query on our page"
    );

    // A response brought back to another organisation's callback (mix-up) is refused.
    let mut d = Browser::new();
    let cb = d.sign_in_at_provider(&url, "home", "alice", false).await;
    let r = d
        .get(&cb.replace("/auth/callback/home?", "/auth/callback/partner-agency?"))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("another organisation"), "{}", r.body);
    w.server.shutdown().await;
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('/', "%2F")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_rotating_its_keys_is_followed() {
    let mut w = world().await;
    let url = w.url.clone();
    let mut a = Browser::new();
    a.sign_in(&url, "home", "alice", false).await;
    // The home provider restarts with a new signing key (the old one is gone).
    let port = w.home.port;
    let _ = w.home.child.kill();
    let _ = w.home.child.wait();
    w.home = Provider::start(
        port,
        "home-2",
        "home",
        w.server.addr.port(),
        json!([user("alice", "alice@home.example", "Alice Archer")]),
    );
    tokio::time::sleep(Duration::from_millis(2100)).await; // past the refresh limit
    let mut b = Browser::new();
    b.sign_in(&url, "home", "alice", false).await;
    assert_eq!(b.session(&url).await["signedIn"]["level"], "member");
    w.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meeting_rules_on_identity_and_csrf_on_every_change() {
    let w = world().await;
    let url = w.url.clone();
    let mut alice = Browser::new();
    alice.sign_in(&url, "home", "alice", false).await;

    // A state-changing request riding on the session cookie needs the CSRF
    // token; one from another site's page is refused whatever it carries.
    let req = alice
        .http
        .post(format!("{url}/api/meetings"))
        .json(&json!({"title": "No token"}));
    assert_eq!(alice.send(req).await.status, 403);
    let csrf = alice.session(&url).await["csrfToken"]
        .as_str()
        .unwrap()
        .to_string();
    let req = alice
        .http
        .post(format!("{url}/api/meetings"))
        .header("x-csrf-token", &csrf)
        .header("origin", "https://evil.example")
        .json(&json!({"title": "Cross-site"}));
    assert_eq!(alice.send(req).await.status, 403);

    let r = create(
        &mut alice,
        &url,
        json!({"guestsAllowed": false, "requireMfa": true}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = serde_json::from_str::<Value>(&r.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = |r: Result<Client, String>| r.err().expect("refused");
    assert!(
        refused(Client::join_with(&url, &id, "Gail", JoinOptions::default()).await)
            .contains("verification-required")
    );
    // Alice signed in with a password only: not enough here.
    assert!(
        refused(Client::join_with(&url, &id, "Alice", alice.join_options()).await)
            .contains("mfa-required")
    );
    let mut strong = Browser::new();
    strong.sign_in(&url, "home", "alice", true).await;
    assert!(Client::join_with(&url, &id, "Alice", strong.join_options())
        .await
        .is_ok());

    // Signing out needs the token too, and ends the session.
    let req = alice.http.post(format!("{url}/auth/logout"));
    assert_eq!(alice.send(req).await.status, 403);
    let req = alice
        .http
        .post(format!("{url}/auth/logout"))
        .header("x-csrf-token", &csrf);
    assert_eq!(alice.send(req).await.status, 204);
    assert_eq!(alice.session(&url).await["signedIn"], Value::Null);
    w.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_level_moves_guests_out_and_admission_follows_it() {
    let w = world_with_policy(Some("policies/four-levels.toml")).await;
    let url = w.url.clone();
    let mut alice = Browser::new();
    alice.sign_in(&url, "home", "alice", true).await;
    let csrf = alice.session(&url).await["csrfToken"]
        .as_str()
        .unwrap()
        .to_string();
    // A level the settings fall short of is refused, naming each shortfall.
    let req = alice
        .http
        .post(format!("{url}/api/meetings"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"title": "Review", "level": "level-2"}));
    let r = alice.send(req).await;
    assert_eq!(r.status, 400);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["unmet"]
        .as_array()
        .unwrap()
        .contains(&json!("Protection level 2 requires a passcode")));
    let req = alice
        .http
        .post(format!("{url}/api/meetings"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"title": "Review", "level": "level-0", "passcode": "4711 blue"}));
    let r = alice.send(req).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let m: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(m["level"]["name"], "Protection level 0");
    let id = m["id"].as_str().unwrap().to_string();
    let mut host = Client::join_with(
        &url,
        &id,
        "x",
        JoinOptions {
            host_key: Some(m["hostKey"].as_str().unwrap().to_string()),
            ..alice.join_options()
        },
    )
    .await
    .unwrap();
    let with_passcode = |o: JoinOptions| JoinOptions {
        passcode: Some("4711 blue".into()),
        ..o
    };
    let mut gail = Client::join_with(&url, &id, "Gail", with_passcode(JoinOptions::default()))
        .await
        .unwrap();
    let mut pam_browser = Browser::new();
    pam_browser
        .sign_in(&url, "partner-agency", "pam", false)
        .await;
    let mut pam = Client::join_with(&url, &id, "x", with_passcode(pam_browser.join_options()))
        .await
        .unwrap();
    assert!(!gail.in_lobby && !pam.in_lobby);

    // Level 1 requires the lobby: the guest goes back to it.
    host.send(json!({"type": "set-level", "level": "level-1", "raise": true}))
        .await
        .unwrap();
    let d = Duration::from_secs(2);
    tokio::join!(
        host.run_until(d, |c| c.log.iter().any(|m| m["type"] == "notice")),
        gail.run_until(d, |c| c.in_lobby),
        pam.run_until(d, |_| false)
    );
    assert!(gail.in_lobby, "the guest is back in the lobby");
    assert!(pam
        .log
        .iter()
        .any(|m| m["type"] == "meeting-updated"
            && m["meeting"]["level"]["name"] == "Protection level 1"));
    assert!(pam
        .left
        .contains(&(gail.participant_id.clone(), "lobby".into())));

    // Level 2 admits only verified people with a second factor: the guest and
    // the partner (signed in with a password only) are removed, and told why.
    host.send(json!({"type": "set-level", "level": "level-2", "raise": true}))
        .await
        .unwrap();
    tokio::join!(
        host.run_until(d, |_| false),
        gail.run_until(d, |c| c.log.iter().any(|m| m["type"] == "removed")),
        pam.run_until(d, |c| c.log.iter().any(|m| m["type"] == "removed"))
    );
    for (c, why) in [(&gail, "only people verified"), (&pam, "second factor")] {
        let removed = c.log.iter().find(|m| m["type"] == "removed").unwrap();
        assert!(
            removed["reason"].as_str().unwrap().contains(why),
            "{removed}"
        );
    }
    assert_eq!(host.participants.len(), 1);
    // Newcomers meet the level at the door.
    let e = Client::join_with(&url, &id, "Gus", with_passcode(JoinOptions::default()))
        .await
        .err()
        .unwrap();
    assert!(
        e.contains("verification-required") && e.contains("Protection level 2"),
        "{e}"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = w.server.state.storage.audit_records(Some(&id)).unwrap();
    let has =
        |event: &str, outcome: &str| log.iter().any(|r| r.event == event && r.outcome == outcome);
    assert!(has("create", "created"));
    assert!(has("level", "raised"));
    assert!(has("lobby", "moved to lobby by level"));
    assert!(has("remove", "removed by level"));
    assert!(log
        .iter()
        .any(|r| r.event == "join" && r.outcome == "refused: verification-required"));
    assert!(log
        .iter()
        .any(|r| r.event == "level" && r.detail == "Protection level 1 -> Protection level 2"));
    w.server.shutdown().await;
}

/// Issue 17, bug 10: signing in again because a meeting needs a second factor
/// (`/auth/login?…&mfa=1`) asks the provider for what it is configured to be
/// asked then (`acr_values`, `prompt=login`); nothing of it otherwise, nor from
/// a provider configured without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_again_for_a_second_factor_asks_the_provider_for_one() {
    let w = world_with(
        None,
        "step_up_acr_values = [\"urn:convene:mfa\", \"phr\"]\nstep_up_prompt_login = true",
    )
    .await;
    let url = w.url.clone();
    let query = |location: &str| -> BTreeMap<String, String> {
        reqwest::Url::parse(location)
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    };
    let mut b = Browser::new();
    let again = b
        .get(&format!("{url}/auth/login?org=home&return=/m/abc&mfa=1"))
        .await;
    assert_eq!(again.status, 303);
    let asked = query(again.location.as_deref().unwrap());
    assert!(asked["redirect_uri"].ends_with("/auth/callback/home"));
    assert_eq!(
        asked.get("acr_values").map(String::as_str),
        Some("urn:convene:mfa phr")
    );
    assert_eq!(asked.get("prompt").map(String::as_str), Some("login"));

    let first = b
        .get(&format!("{url}/auth/login?org=home&return=/m/abc"))
        .await;
    let asked = query(first.location.as_deref().unwrap());
    assert!(!asked.contains_key("acr_values") && !asked.contains_key("prompt"));

    // The partner's provider is configured without it: the same request as ever.
    let partner = b
        .get(&format!(
            "{url}/auth/login?org=partner-agency&return=/m/abc&mfa=1"
        ))
        .await;
    let asked = query(partner.location.as_deref().unwrap());
    assert!(!asked.contains_key("acr_values") && !asked.contains_key("prompt"));
}
