//! Shared sessions: kept, read until they end, ended for every node at
//! sign-out; one-time codes work once and in time.

use super::*;

fn session(family: &str, expires_at: i64) -> SharedSession {
    SharedSession {
        family: family.into(),
        data: "{\"key\":\"account:1\"}".into(),
        expires_at,
    }
}

#[test]
fn a_session_lasts_its_time_and_ends_everywhere_at_sign_out() {
    each_engine(a_session_lasts_its_time_and_ends_everywhere_at_sign_out_on)
}

fn a_session_lasts_its_time_and_ends_everywhere_at_sign_out_on(s: Storage) {
    let t = 1_000_000;
    s.save_session("h1", &session("h1", t + 100), t).unwrap();
    // The same sign-in's cookie on another node's name.
    s.save_session("h2", &session("h1", t + 100), t).unwrap();
    s.save_session("h3", &session("h3", t + 100), t).unwrap();
    assert_eq!(s.session("h1", t).unwrap(), Some(session("h1", t + 100)));
    assert_eq!(s.session("h1", t + 100).unwrap(), None, "ended by time");
    assert_eq!(s.session("nope", t).unwrap(), None);
    s.end_sessions("h1").unwrap();
    assert_eq!(s.session("h1", t).unwrap(), None);
    assert_eq!(s.session("h2", t).unwrap(), None, "every node's cookie");
    assert!(
        s.session("h3", t).unwrap().is_some(),
        "another sign-in stays"
    );
    // Saving a session sweeps those past their time.
    s.save_session("h4", &session("h4", t + 500), t + 200)
        .unwrap();
    assert_eq!(
        s.raw_int("SELECT count(*) FROM sessions", &[]),
        Some(1),
        "h3 ended at t + 100"
    );
}

#[test]
fn a_code_carries_a_session_once_and_only_in_time() {
    each_engine(a_code_carries_a_session_once_and_only_in_time_on)
}

fn a_code_carries_a_session_once_and_only_in_time_on(s: Storage) {
    let t = 1_000_000;
    s.save_session("h1", &session("h1", t + 10_000), t).unwrap();
    s.hold_handoff("c1", "h1", t + 60).unwrap();
    assert_eq!(
        s.take_handoff("c1", t).unwrap(),
        Some(session("h1", t + 10_000))
    );
    assert_eq!(s.take_handoff("c1", t).unwrap(), None, "once");
    s.hold_handoff("c2", "h1", t + 60).unwrap();
    assert_eq!(s.take_handoff("c2", t + 60).unwrap(), None, "too late");
    // A code for a sign-in that has ended carries nothing.
    s.hold_handoff("c3", "h1", t + 60).unwrap();
    s.end_sessions("h1").unwrap();
    assert_eq!(s.take_handoff("c3", t).unwrap(), None);
}

#[test]
fn two_nodes_taking_the_same_codes_at_once_each_code_goes_to_one() {
    let url = crate::testing::postgres_url();
    let a = std::sync::Arc::new(Storage::connect(&url).unwrap());
    let b = std::sync::Arc::new(Storage::connect(&url).unwrap());
    let t = crate::unix_millis();
    a.save_session("h1", &session("h1", t + 600_000), t)
        .unwrap();
    let codes: Vec<String> = (0..200).map(|i| format!("code{i}")).collect();
    for c in &codes {
        a.hold_handoff(c, "h1", t + 60_000).unwrap();
    }
    let take = |s: std::sync::Arc<Storage>, codes: Vec<String>| {
        std::thread::spawn(move || {
            codes
                .iter()
                .filter(|c| s.take_handoff(c, t).unwrap().is_some())
                .count()
        })
    };
    let (x, y) = (take(a, codes.clone()), take(b, codes));
    let taken = x.join().unwrap() + y.join().unwrap();
    assert_eq!(taken, 200, "every code taken once, none twice");
}

#[test]
fn a_node_secret_is_made_once_and_the_same_for_every_node() {
    each_engine(a_node_secret_is_made_once_and_the_same_for_every_node_on)
}

fn a_node_secret_is_made_once_and_the_same_for_every_node_on(s: Storage) {
    let first = s.node_secret("session-cookies").unwrap();
    assert_eq!(first.len(), 64);
    assert_eq!(s.node_secret("session-cookies").unwrap(), first, "kept");
    assert_ne!(s.node_secret("other").unwrap(), first, "one per name");
}

#[test]
fn two_nodes_asking_for_a_new_secret_at_once_get_the_same_one() {
    let url = crate::testing::postgres_url();
    let name = format!("race-{}", crate::new_meeting_id());
    let ask = |name: String| {
        let s = Storage::connect(&url).unwrap();
        std::thread::spawn(move || s.node_secret(&name).unwrap())
    };
    let (x, y) = (ask(name.clone()), ask(name));
    assert_eq!(x.join().unwrap(), y.join().unwrap());
}
