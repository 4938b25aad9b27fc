//! The Delivery Service with MLS-shaped messages: real headers, opaque bodies.

use super::wire::build;
use super::*;
use std::collections::BTreeSet;

fn id(s: &str) -> ParticipantId {
    ParticipantId(s.into())
}

fn guest() -> crate::identity::Identity {
    crate::identity::Identity::guest()
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The DS and who is connected.
struct Fx {
    g: Group,
    here: BTreeSet<String>,
    t: Instant,
}

impl Fx {
    fn new() -> Self {
        Fx {
            g: Group::new(),
            here: BTreeSet::new(),
            t: Instant::now(),
        }
    }
    fn live(&self) -> impl Fn(&ParticipantId) -> bool {
        let here = self.here.clone();
        move |p: &ParticipantId| here.contains(&p.0)
    }
    fn gid(&self) -> Vec<u8> {
        self.g.group_id.clone()
    }
    fn kp(&mut self, who: &str) -> Outgoing {
        self.here.insert(who.into());
        let here = self.here.clone();
        let live = move |p: &ParticipantId| here.contains(&p.0);
        self.g
            .key_package(
                self.t,
                &id(who),
                &guest(),
                &b64(&build::key_package(who)),
                &live,
            )
            .unwrap()
    }
    fn create(&mut self, who: &str) -> Outgoing {
        let gi = b64(&build::group_info(&self.gid(), 0));
        let here = self.here.clone();
        let live = move |p: &ParticipantId| here.contains(&p.0);
        self.g.group_created(self.t, &id(who), &gi, &live).unwrap()
    }
    /// A well-formed commit from `who` at the group's epoch, with a Welcome
    /// when `adds`.
    fn commit(&mut self, who: &str, adds: bool) -> Result<Outgoing, Refused> {
        let e = self.g.epoch().unwrap();
        let c = b64(&build::commit(&self.gid(), e, 0));
        let gi = b64(&build::group_info(&self.gid(), e + 1));
        let w = adds.then(|| b64(&build::welcome()));
        let here = self.here.clone();
        let live = move |p: &ParticipantId| here.contains(&p.0);
        self.g
            .commit(self.t, &id(who), e, &c, w.as_deref(), &gi, &live)
    }
    fn leave(&mut self, who: &str) -> Outgoing {
        self.here.remove(who);
        let here = self.here.clone();
        let live = move |p: &ParticipantId| here.contains(&p.0);
        self.g.left(self.t, &id(who), &live)
    }
    fn later(&mut self, d: Duration) -> Outgoing {
        self.t += d;
        let here = self.here.clone();
        let live = move |p: &ParticipantId| here.contains(&p.0);
        self.g.tick(self.t, &live)
    }
    fn members(&self) -> Vec<String> {
        self.g.members().iter().map(|m| m.0.clone()).collect()
    }
}

/// The one request in `out`: (to, epoch, add, remove).
fn request(out: &Outgoing) -> (String, u64, Vec<String>, Vec<String>) {
    let reqs: Vec<_> = out
        .iter()
        .filter_map(|(to, m)| match m {
            ServerMessage::MlsCommitRequest {
                epoch, add, remove, ..
            } => Some((
                to.0.clone(),
                *epoch,
                add.iter().map(|a| a.participant_id.clone()).collect(),
                remove.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(reqs.len(), 1, "one commit request in {out:?}");
    reqs.into_iter().next().unwrap()
}

/// A group of `names`, each added by the first.
fn group_of(names: &[&str]) -> Fx {
    let mut fx = Fx::new();
    let out = fx.kp(names[0]);
    assert!(matches!(
        &out[..],
        [(to, ServerMessage::MlsCreateRequest { .. })] if to.0 == names[0]
    ));
    assert!(fx.create(names[0]).is_empty());
    for n in &names[1..] {
        let out = fx.kp(n);
        assert_eq!(request(&out).2, vec![n.to_string()]);
        fx.commit(names[0], true).unwrap();
    }
    fx
}

#[test]
fn the_first_makes_the_group_and_commits_the_next() {
    let mut fx = Fx::new();
    assert_eq!(fx.g.epoch(), None);
    fx.kp("p1");
    fx.create("p1");
    assert_eq!(
        (fx.g.epoch(), fx.members()),
        (Some(0), vec!["p1".to_string()])
    );
    let out = fx.kp("p2");
    assert_eq!(
        request(&out),
        ("p1".into(), 0, vec!["p2".into()], Vec::<String>::new())
    );
    let out = fx.commit("p1", true).unwrap();
    assert_eq!(fx.g.epoch(), Some(1));
    assert_eq!(fx.members(), vec!["p1", "p2"]);
    // The committer hears its commit won; the joiner gets the Welcome.
    assert!(
        matches!(&out[0], (to, ServerMessage::MlsCommit { epoch: 0, from, .. }) if to.0 == "p1" && from == "p1")
    );
    assert!(matches!(&out[1], (to, ServerMessage::MlsWelcome { epoch: 1, .. }) if to.0 == "p2"));
    assert_eq!(out.len(), 2);
    // The members are told exactly whom it adds, by the KeyPackage p2 sent:
    // they refuse a commit that adds anyone else.
    let ServerMessage::MlsCommit { adds, .. } = &out[0].1 else {
        unreachable!()
    };
    use sha2::{Digest, Sha256};
    assert_eq!(
        adds,
        &vec![crate::protocol::MlsAdded {
            participant_id: "p2".into(),
            key_package_sha256: B64.encode(Sha256::digest(build::key_package("p2"))),
        }]
    );
}

#[test]
fn joiners_who_come_while_a_commit_is_out_are_added_by_the_next() {
    let mut fx = group_of(&["p1", "p2"]);
    let out = fx.kp("p3");
    assert_eq!(request(&out).2, vec!["p3"]);
    assert!(fx.kp("p4").is_empty(), "one request at a time");
    assert!(fx.kp("p5").is_empty());
    let out = fx.commit("p1", true).unwrap();
    // p1 and p2 get the commit, p3 its Welcome, and p1 the next request with both others.
    assert_eq!(
        request(&out),
        ("p1".into(), 2, vec!["p4".into(), "p5".into()], vec![])
    );
    let commits = out
        .iter()
        .filter(|(_, m)| matches!(m, ServerMessage::MlsCommit { .. }))
        .count();
    assert_eq!(commits, 2);
}

#[test]
fn the_first_commit_for_an_epoch_wins_and_a_late_one_is_stale() {
    let mut fx = group_of(&["p1", "p2", "p3"]);
    let out = fx.kp("p4");
    assert_eq!(request(&out).0, "p1");
    // p1 does not answer in time: p2 is asked the same.
    let out = fx.later(COMMIT_DEADLINE);
    assert_eq!(request(&out), ("p2".into(), 2, vec!["p4".into()], vec![]));
    fx.commit("p2", true).unwrap();
    assert_eq!(fx.g.epoch(), Some(3));
    // p1's commit arrives after all, made at epoch 2: refused, nothing changes.
    let c = b64(&build::commit(&fx.gid(), 2, 0));
    let gi = b64(&build::group_info(&fx.gid(), 3));
    let w = b64(&build::welcome());
    let live = fx.live();
    let e =
        fx.g.commit(fx.t, &id("p1"), 2, &c, Some(&w), &gi, &live)
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::MlsStaleEpoch);
    assert_eq!(fx.g.epoch(), Some(3));
    assert_eq!(fx.members(), vec!["p1", "p2", "p3", "p4"]);
}

#[test]
fn a_commit_nobody_asked_for_or_replayed_is_stale() {
    let mut fx = group_of(&["p1", "p2"]);
    // Nothing pending: p2 commits on its own.
    let e = fx.commit("p2", false).unwrap_err();
    assert_eq!(e.code, ErrorCode::MlsStaleEpoch);
    fx.kp("p3");
    // p2 was not asked; p1 was.
    assert_eq!(
        fx.commit("p2", true).unwrap_err().code,
        ErrorCode::MlsStaleEpoch
    );
    let c = b64(&build::commit(&fx.gid(), 1, 0));
    let gi = b64(&build::group_info(&fx.gid(), 2));
    let w = b64(&build::welcome());
    let live = fx.live();
    fx.g.commit(fx.t, &id("p1"), 1, &c, Some(&w), &gi, &live)
        .unwrap();
    // The same commit again.
    let e =
        fx.g.commit(fx.t, &id("p1"), 1, &c, Some(&w), &gi, &live)
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::MlsStaleEpoch);
    assert_eq!(fx.g.epoch(), Some(2));
}

#[test]
fn a_committer_who_is_gone_is_passed_over_at_once() {
    let mut fx = group_of(&["p1", "p2", "p3"]);
    fx.here.remove("p1"); // p1's connection dropped (still a member, may come back)
    let out = fx.kp("p4");
    assert_eq!(request(&out).0, "p2");
    // p1 comes back and is first again for the next request (it answered before).
    fx.commit("p2", true).unwrap();
    fx.here.insert("p1".into());
    let out = fx.kp("p5");
    assert_eq!(request(&out).0, "p1");
}

#[test]
fn a_committer_who_leaves_mid_request_hands_it_on_with_their_removal() {
    let mut fx = group_of(&["p1", "p2"]);
    assert_eq!(request(&fx.kp("p3")).0, "p1");
    let out = fx.leave("p1");
    assert_eq!(
        request(&out),
        ("p2".into(), 1, vec!["p3".into()], vec!["p1".into()])
    );
    let out = fx.commit("p2", true).unwrap();
    assert_eq!(fx.members(), vec!["p2", "p3"]);
    // The one removed is not sent the commit.
    assert!(out.iter().all(|(to, _)| to.0 != "p1"));
}

#[test]
fn leaving_is_committed_at_once() {
    let mut fx = group_of(&["p1", "p2", "p3"]);
    let out = fx.leave("p3");
    assert_eq!(request(&out), ("p1".into(), 2, vec![], vec!["p3".into()]));
    let out = fx.commit("p1", false).unwrap();
    assert_eq!(fx.members(), vec!["p1", "p2"]);
    assert_eq!(out.len(), 2, "the commit to p1 and p2: {out:?}");
}

#[test]
fn someone_who_leaves_while_being_added_is_removed_next() {
    let mut fx = group_of(&["p1", "p2"]);
    fx.kp("p3");
    let out = fx.leave("p3");
    assert!(out.is_empty(), "the request out stays: {out:?}");
    let out = fx.commit("p1", true).unwrap();
    assert_eq!(request(&out), ("p1".into(), 2, vec![], vec!["p3".into()]));
    fx.commit("p1", false).unwrap();
    assert_eq!(fx.members(), vec!["p1", "p2"]);
}

#[test]
fn a_member_who_lost_their_state_is_removed_and_added_in_one_commit() {
    let mut fx = group_of(&["p1", "p2"]);
    fx.t += KEY_PACKAGE_INTERVAL;
    let out = fx.kp("p2");
    assert_eq!(
        request(&out),
        ("p1".into(), 1, vec!["p2".into()], vec!["p2".into()])
    );
    let out = fx.commit("p1", true).unwrap();
    assert_eq!(fx.members(), vec!["p1", "p2"]);
    // p2 gets only the Welcome, not the commit that removed its old self.
    let to_p2: Vec<_> = out.iter().filter(|(to, _)| to.0 == "p2").collect();
    assert!(matches!(
        &to_p2[..],
        [(_, ServerMessage::MlsWelcome { .. })]
    ));
}

#[test]
fn when_everyone_has_left_the_next_joiner_starts_a_new_group() {
    let mut fx = group_of(&["p1", "p2"]);
    let old = fx.gid();
    fx.leave("p2");
    fx.leave("p1");
    let out = fx.kp("p3");
    let ServerMessage::MlsCreateRequest { group_id } = &out[0].1 else {
        panic!("{out:?}")
    };
    assert_ne!(B64.decode(group_id).unwrap(), old, "a new group id");
    assert_eq!(fx.g.epoch(), None);
    fx.create("p3");
    assert_eq!(fx.members(), vec!["p3"]);
}

#[test]
fn a_joiner_finding_no_member_connected_starts_a_new_group_the_members_join_on_return() {
    let mut fx = group_of(&["p1", "p2"]);
    let old = fx.gid();
    // Both members lose their connection (they may still come back).
    fx.here.remove("p1");
    fx.here.remove("p2");
    assert!(fx.later(COMMIT_DEADLINE).is_empty());
    // p3 joins: nobody can add them. After as long as a committer would be
    // given, p3 makes a new group.
    assert!(fx.kp("p3").is_empty());
    let out = fx.later(COMMIT_DEADLINE);
    let [(to, ServerMessage::MlsCreateRequest { group_id })] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(to.0, "p3");
    assert_ne!(B64.decode(group_id).unwrap(), old, "a new group id");
    assert!(fx.create("p3").is_empty());
    assert_eq!(fx.members(), vec!["p3"]);
    // p1 comes back a while later and asks in, like anyone: p3 adds them.
    assert!(fx.later(KEY_PACKAGE_INTERVAL).is_empty());
    let out = fx.kp("p1");
    assert_eq!(request(&out), ("p3".into(), 0, vec!["p1".into()], vec![]));
    fx.commit("p3", true).unwrap();
    assert_eq!(fx.members(), vec!["p3", "p1"]);
}

#[test]
fn a_member_back_within_the_deadline_adds_the_joiner_to_the_same_group() {
    let mut fx = group_of(&["p1", "p2"]);
    let old = fx.gid();
    fx.here.remove("p1");
    fx.here.remove("p2");
    assert!(fx.kp("p3").is_empty());
    // p1's connection blinked: back a second later, and asked to add p3.
    fx.here.insert("p1".into());
    let out = fx.later(Duration::from_secs(1));
    assert_eq!(request(&out), ("p1".into(), 1, vec!["p3".into()], vec![]));
    assert_eq!(fx.gid(), old, "the same group");
}

#[test]
fn a_joiner_whose_creator_is_late_is_asked_next() {
    let mut fx = Fx::new();
    fx.kp("p1");
    let out = fx.kp("p2");
    assert!(out.is_empty());
    let out = fx.later(COMMIT_DEADLINE);
    assert!(
        matches!(&out[..], [(to, ServerMessage::MlsCreateRequest { .. })] if to.0 == "p2"),
        "{out:?}"
    );
    // p2 makes it; p1 is then added by p2.
    let out = fx.create("p2");
    assert_eq!(request(&out), ("p2".into(), 0, vec!["p1".into()], vec![]));
    // p1's own late creation is refused.
    let gi = b64(&build::group_info(&fx.gid(), 0));
    let live = fx.live();
    assert_eq!(
        fx.g.group_created(fx.t, &id("p1"), &gi, &live)
            .unwrap_err()
            .code,
        ErrorCode::MlsStaleEpoch
    );
}

#[test]
fn bad_messages_change_nothing() {
    let mut fx = group_of(&["p1", "p2"]);
    fx.kp("p3");
    let gid = fx.gid();
    let ok_gi = b64(&build::group_info(&gid, 2));
    let ok_c = b64(&build::commit(&gid, 1, 0));
    let w = b64(&build::welcome());
    let cases: Vec<(&str, String, Option<String>, String)> = vec![
        ("not base64", "!!!".into(), Some(w.clone()), ok_gi.clone()),
        (
            "another group",
            b64(&build::commit(b"other-group-id!!", 1, 0)),
            Some(w.clone()),
            ok_gi.clone(),
        ),
        (
            "header epoch differs",
            b64(&build::commit(&gid, 0, 0)),
            Some(w.clone()),
            ok_gi.clone(),
        ),
        (
            "not a commit",
            b64(&build::private(&gid, 1, 1)),
            Some(w.clone()),
            ok_gi.clone(),
        ),
        ("no welcome for an add", ok_c.clone(), None, ok_gi.clone()),
        (
            "welcome is not one",
            ok_c.clone(),
            Some(ok_gi.clone()),
            ok_gi.clone(),
        ),
        (
            "group info for the old epoch",
            ok_c.clone(),
            Some(w.clone()),
            b64(&build::group_info(&gid, 1)),
        ),
        (
            "oversized",
            b64(&vec![0u8; MAX_HANDSHAKE + 10]),
            Some(w.clone()),
            ok_gi.clone(),
        ),
        (
            "truncated",
            b64(&build::commit(&gid, 1, 0)[..10]),
            Some(w.clone()),
            ok_gi.clone(),
        ),
    ];
    for (what, c, w, gi) in cases {
        let live = fx.live();
        let e =
            fx.g.commit(fx.t, &id("p1"), 1, &c, w.as_deref(), &gi, &live)
                .unwrap_err();
        assert_eq!(e.code, ErrorCode::MlsBadMessage, "{what}: {e}");
        assert_eq!(fx.g.epoch(), Some(1), "{what}");
        assert_eq!(fx.members(), vec!["p1", "p2"], "{what}");
    }
    // The request is still out, and a good commit still lands.
    fx.commit("p1", true).unwrap();
    assert_eq!(fx.members(), vec!["p1", "p2", "p3"]);
}

#[test]
fn key_packages_must_name_their_sender() {
    let mut fx = Fx::new();
    let live = |_: &ParticipantId| true;
    let someone_else = b64(&build::key_package("p9"));
    let e =
        fx.g.key_package(fx.t, &id("p1"), &guest(), &someone_else, &live)
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::MlsBadMessage);
    let big = b64(&vec![0u8; MAX_KEY_PACKAGE + 1]);
    assert!(fx
        .g
        .key_package(fx.t, &id("p1"), &guest(), &big, &live)
        .is_err());
    let not_kp = b64(&build::welcome());
    assert!(fx
        .g
        .key_package(fx.t, &id("p1"), &guest(), &not_kp, &live)
        .is_err());
    assert_eq!(fx.g.epoch(), None);
    assert!(fx.g.joining.is_empty());
}

#[test]
fn application_messages_are_checked_for_group_and_epoch() {
    let fx = group_of(&["p1", "p2"]);
    let gid = fx.gid();
    assert!(check_application(&fx.g, &b64(&build::private(&gid, 1, 1))).is_ok());
    // One epoch behind: sent just as a commit landed.
    assert!(check_application(&fx.g, &b64(&build::private(&gid, 0, 1))).is_ok());
    let e = check_application(&fx.g, &b64(&build::private(&gid, 2, 1))).unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::MlsStaleEpoch,
        "not from an epoch to come"
    );
    for bad_one in [
        build::private(b"another-group!!!", 1, 1),
        build::private(&gid, 1, 3),
        build::commit(&gid, 1, 0),
        vec![0; MAX_APPLICATION + 1],
    ] {
        let e = check_application(&fx.g, &b64(&bad_one)).unwrap_err();
        assert_eq!(e.code, ErrorCode::MlsBadMessage);
    }
}

#[test]
fn a_member_cannot_keep_the_group_rekeying_with_key_packages() {
    let mut fx = group_of(&["p1", "p2"]);
    fx.t += KEY_PACKAGE_INTERVAL;
    // p2 asks to be added afresh (a reload): taken.
    assert_eq!(request(&fx.kp("p2")).3, vec!["p2"]);
    fx.commit("p1", true).unwrap();
    // Again at once: refused, and the group is left alone.
    let live = fx.live();
    let again = b64(&build::key_package("p2"));
    let e =
        fx.g.key_package(fx.t, &id("p2"), &guest(), &again, &live)
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::RateLimited);
    assert!(fx.g.request.is_none());
    // After the interval, it is taken again.
    let later = fx.t + KEY_PACKAGE_INTERVAL;
    assert!(!fx
        .g
        .key_package(later, &id("p2"), &guest(), &again, &live)
        .unwrap()
        .is_empty());
}

#[test]
fn a_commit_failure_is_recorded_once_per_member_and_epoch() {
    let mut fx = group_of(&["p1", "p2"]);
    assert!(fx.g.first_failure_report(&id("p2"), 1));
    assert!(!fx.g.first_failure_report(&id("p2"), 1));
    assert!(fx.g.first_failure_report(&id("p2"), 2));
    assert!(
        !fx.g.first_failure_report(&id("p9"), 1),
        "not from a non-member"
    );
}

/// A checker (convene-e2ee's is tested with real members) that refuses p1's
/// commit adding p3, and takes anything else.
#[derive(Debug)]
struct RefusesP1AddingP3;

impl check::HandshakeCheck for RefusesP1AddingP3 {
    fn created(&mut self, _: &[u8], _: &[u8], _: &str, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn commit(
        &mut self,
        _: &[u8],
        sender: &str,
        add: &[(&str, &[u8])],
        _: &[&str],
    ) -> Result<(), String> {
        if sender == "p1" && add.iter().any(|(p, _)| *p == "p3") {
            return Err("signed by leaf 0, which is not the sender's".into());
        }
        Ok(())
    }
}

#[test]
fn a_commit_the_check_refuses_reaches_nobody_and_the_next_member_is_asked_at_once() {
    let mut fx = Fx::new();
    fx.g = Group::checked_by(Some(|| Box::new(RefusesP1AddingP3)));
    fx.kp("p1");
    fx.create("p1");
    fx.kp("p2");
    fx.commit("p1", true).unwrap();
    let out = fx.kp("p3");
    assert_eq!(request(&out).0, "p1");
    let refused = fx.commit("p1", true).unwrap_err();
    assert_eq!(refused.code, ErrorCode::MlsBadMessage);
    assert!(refused.message.contains("refused"), "{refused}");
    assert_eq!(fx.g.epoch(), Some(1), "the group did not move");
    assert_eq!(fx.members(), vec!["p1", "p2"]);
    // Trying again is not p1's to do (each try costs the server a check).
    let again = fx.commit("p1", true).unwrap_err();
    assert_eq!(again.code, ErrorCode::MlsStaleEpoch, "{again}");
    // No waiting for the deadline: the next tick asks p2.
    let out = fx.later(Duration::ZERO);
    assert_eq!(
        request(&out),
        ("p2".into(), 1, vec!["p3".into()], Vec::<String>::new())
    );
    fx.commit("p2", true).unwrap();
    assert_eq!(fx.g.epoch(), Some(2));
    assert_eq!(fx.members(), vec!["p1", "p2", "p3"]);
}
