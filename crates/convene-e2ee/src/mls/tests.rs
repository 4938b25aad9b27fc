//! Rust members with a small relay playing the server's Delivery Service
//! (protocol.md §5.24), as tests/e2e/mls-relay.mjs does for browsers: create,
//! adds, equal codes and SFrame secrets, chat, a removal after which the one
//! removed reads nothing, a ghost add refused, a replayed chat refused.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sha2::{Digest, Sha256};

use super::*;

struct Relay {
    people: BTreeMap<String, Person>,
    roster: BTreeSet<String>,
    epoch: Option<u64>,
    members: Vec<String>,
    waiting: Vec<Value>,
    last_remove: Vec<String>,
    last_add: Vec<Value>,
    /// A relay that lies about whom the commit adds (for a test).
    lie_adds: Option<Vec<Value>>,
    sent: Vec<(String, Value)>,
}

struct Person {
    member: Member,
    inbox: VecDeque<Value>,
    epochs: Vec<EpochChange>,
    chats: Vec<(String, String)>,
    warnings: Vec<Warning>,
}

const GROUP: &str = "bWVldGluZy0xMjM0"; // "meeting-1234"

impl Relay {
    fn new(roster: &[&str]) -> Self {
        Relay {
            people: BTreeMap::new(),
            roster: roster.iter().map(|s| s.to_string()).collect(),
            epoch: None,
            members: Vec::new(),
            waiting: Vec::new(),
            last_remove: Vec::new(),
            last_add: Vec::new(),
            lie_adds: None,
            sent: Vec::new(),
        }
    }

    fn join(&mut self, pid: &str) {
        let (member, events) =
            Member::start(Claims::guest(pid, &pid.to_uppercase()), Instant::now()).unwrap();
        self.people.insert(
            pid.into(),
            Person {
                member,
                inbox: VecDeque::new(),
                epochs: vec![],
                chats: vec![],
                warnings: vec![],
            },
        );
        self.take(pid, events);
    }

    fn deliver(&mut self, pid: &str, msg: Value) {
        self.people.get_mut(pid).unwrap().inbox.push_back(msg);
    }

    fn take(&mut self, pid: &str, events: Vec<Event>) {
        for e in events {
            let p = self.people.get_mut(pid).unwrap();
            match e {
                Event::Send(m) => self.on_client(pid, m),
                Event::Epoch(x) => p.epochs.push(x),
                Event::Chat { from, text } => p.chats.push((from, text)),
                Event::Warning(w) => p.warnings.push(w),
            }
        }
    }

    fn on_client(&mut self, pid: &str, msg: Value) {
        self.sent.push((pid.into(), msg.clone()));
        match msg["type"].as_str().unwrap() {
            "mls-key-package" => {
                if self.epoch.is_none() && self.members.is_empty() {
                    self.members.push(pid.into());
                    self.deliver(pid, json!({"type": "mls-create-request", "groupId": GROUP}));
                } else {
                    self.waiting
                        .push(json!({"participantId": pid, "keyPackage": msg["keyPackage"]}));
                }
            }
            "mls-group-created" => self.epoch = Some(0),
            "mls-commit" => {
                let e = msg["epoch"].as_u64().unwrap();
                if Some(e) != self.epoch {
                    self.deliver(pid, json!({"type": "error", "code": "mls-stale-epoch"}));
                    return;
                }
                self.epoch = Some(e + 1);
                let removed = std::mem::take(&mut self.last_remove);
                // As the server: whom it asked to add, by their KeyPackage's SHA-256.
                let adds: Vec<Value> = std::mem::take(&mut self.last_add)
                    .iter()
                    .map(|a| {
                        let kp = B64.decode(a["keyPackage"].as_str().unwrap()).unwrap();
                        json!({"participantId": a["participantId"], "keyPackageSha256": B64.encode(Sha256::digest(&kp))})
                    })
                    .collect();
                let adds = self.lie_adds.take().unwrap_or(adds);
                for m in self.members.clone() {
                    if !removed.contains(&m) {
                        self.deliver(&m, json!({"type": "mls-commit", "epoch": e, "commit": msg["commit"], "from": pid, "adds": adds}));
                    }
                }
                self.members.retain(|m| !removed.contains(m));
                if let Some(w) = msg["welcome"].as_str() {
                    for a in std::mem::take(&mut self.waiting) {
                        let who = a["participantId"].as_str().unwrap().to_string();
                        self.members.push(who.clone());
                        self.deliver(
                            &who,
                            json!({"type": "mls-welcome", "welcome": w, "epoch": e + 1}),
                        );
                    }
                }
            }
            "mls-app" => {
                for m in self.members.clone() {
                    if m != pid {
                        self.deliver(
                            &m,
                            json!({"type": "mls-app", "message": msg["message"], "from": pid}),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// Asks `to` to commit everyone waiting and the removal of `remove`.
    fn request(&mut self, to: &str, remove: &[&str]) {
        self.last_remove = remove.iter().map(|s| s.to_string()).collect();
        let add = self.waiting.clone();
        self.last_add = add.clone();
        let m = json!({"type": "mls-commit-request", "epoch": self.epoch, "add": add, "remove": remove, "deadlineMs": 2000});
        self.deliver(to, m);
    }

    fn settle(&mut self) {
        loop {
            let Some(pid) = self
                .people
                .iter()
                .find(|(_, p)| !p.inbox.is_empty())
                .map(|(k, _)| k.clone())
            else {
                return;
            };
            let msg = self
                .people
                .get_mut(&pid)
                .unwrap()
                .inbox
                .pop_front()
                .unwrap();
            let roster = self.roster.clone();
            let has = move |p: &str, c: &Claims| roster.contains(p) && c.l.is_none();
            let events =
                self.people
                    .get_mut(&pid)
                    .unwrap()
                    .member
                    .handle(&msg, &has, Instant::now());
            self.take(&pid, events);
        }
    }

    fn last(&self, pid: &str) -> &EpochChange {
        self.people[pid].epochs.last().unwrap()
    }

    fn chat(&mut self, pid: &str, text: &str) {
        let m = self
            .people
            .get_mut(pid)
            .unwrap()
            .member
            .send_chat(text)
            .unwrap();
        self.on_client(pid, m);
    }
}

#[test]
fn three_members_agree_chat_and_a_removed_one_reads_nothing() {
    let mut r = Relay::new(&["a", "b", "c"]);
    r.join("a");
    r.settle();
    assert_eq!(r.last("a").epoch, 0);
    assert_eq!(r.last("a").added, vec!["a".to_string()]);
    r.join("b");
    r.join("c");
    r.request("a", &[]);
    r.settle();
    for p in ["a", "b", "c"] {
        assert_eq!(r.last(p).epoch, 1, "{p}");
        assert_eq!(r.last(p).code, r.last("a").code);
        assert_eq!(r.last(p).sframe_secret, r.last("a").sframe_secret);
    }
    assert_eq!(r.last("a").added, vec!["b".to_string(), "c".to_string()]);
    assert_eq!(r.last("a").sframe_secret.len(), 16);
    assert_ne!(
        r.people["a"].epochs[0].code,
        r.last("a").code,
        "the code changes with the epoch"
    );
    let leaves: BTreeSet<u32> = ["a", "b", "c"].iter().map(|p| r.last(p).own_leaf).collect();
    assert_eq!(leaves, BTreeSet::from([0, 1, 2]));
    let names: Vec<(u32, String, String)> = r
        .last("b")
        .members
        .iter()
        .map(|m| (m.leaf, m.participant_id.clone(), m.name.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            (0, "a".into(), "A".into()),
            (1, "b".into(), "B".into()),
            (2, "c".into(), "C".into())
        ]
    );

    // Chat: encrypted on the wire, the sender from the MLS leaf.
    r.chat("b", "hello, encrypted");
    r.settle();
    assert_eq!(
        r.people["a"].chats,
        vec![("b".into(), "hello, encrypted".into())]
    );
    assert_eq!(
        r.people["c"].chats,
        vec![("b".into(), "hello, encrypted".into())]
    );
    let wire = r
        .sent
        .iter()
        .rev()
        .find(|(_, m)| m["type"] == "mls-app")
        .unwrap()
        .1
        .clone();
    let bytes = B64.decode(wire["message"].as_str().unwrap()).unwrap();
    assert!(
        !bytes.windows(5).any(|w| w == b"hello"),
        "chat travels encrypted"
    );
    // A replay: its key generation is spent.
    r.deliver(
        "a",
        json!({"type": "mls-app", "message": wire["message"], "from": "b"}),
    );
    r.settle();
    assert_eq!(r.people["a"].warnings.last().unwrap().code, "undecryptable");
    assert_eq!(r.people["a"].chats.len(), 1);
    // The relay names the wrong sender: the leaf wins, with a warning.
    let m = r
        .people
        .get_mut("c")
        .unwrap()
        .member
        .send_chat("who sent this?")
        .unwrap();
    r.deliver(
        "a",
        json!({"type": "mls-app", "message": m["message"], "from": "b"}),
    );
    r.settle();
    assert_eq!(
        r.people["a"].warnings.last().unwrap().code,
        "sender-mismatch"
    );
    assert_eq!(
        r.people["a"].chats.last().unwrap(),
        &("c".to_string(), "who sent this?".to_string())
    );

    // c is removed by b's commit (any member may be asked).
    let c_before = r.people["c"].member.epoch();
    r.request("b", &["c"]);
    r.settle();
    assert_eq!(r.last("a").epoch, 2);
    assert_eq!(r.last("a").code, r.last("b").code);
    assert_eq!(r.last("a").removed, vec!["c".to_string()]);
    assert_eq!(
        r.people["c"].member.epoch(),
        c_before,
        "the removed one was not sent the commit"
    );
    // It still gets chat of the new epoch (a server that forwards anyway) and reads none.
    let m = r
        .people
        .get_mut("a")
        .unwrap()
        .member
        .send_chat("after c left")
        .unwrap();
    r.deliver(
        "c",
        json!({"type": "mls-app", "message": m["message"], "from": "a"}),
    );
    r.deliver(
        "b",
        json!({"type": "mls-app", "message": m["message"], "from": "a"}),
    );
    r.settle();
    assert_eq!(r.people["b"].chats.last().unwrap().1, "after c left");
    assert!(r.people["c"].chats.iter().all(|(_, t)| t != "after c left"));
    assert_eq!(r.people["c"].warnings.last().unwrap().code, "undecryptable");
}

#[test]
fn an_add_of_someone_not_on_the_roster_is_refused_by_committer_and_members() {
    let mut r = Relay::new(&["a", "b"]);
    r.join("a");
    r.settle();
    r.join("b");
    r.request("a", &[]);
    r.settle();
    assert_eq!(r.last("b").epoch, 1);
    // The committer refuses a key package for someone the roster does not have.
    r.join("ghost");
    r.request("a", &[]);
    r.settle();
    assert!(r.people["a"]
        .warnings
        .iter()
        .any(|w| w.code == "bad-key-package"));
    assert!(r
        .last("a")
        .members
        .iter()
        .all(|m| m.participant_id != "ghost"));
    // A key package whose credential names someone else than the request says.
    let (_, ev) = Member::start(Claims::guest("b", "B again"), Instant::now()).unwrap();
    let Event::Send(kp) = &ev[0] else { panic!() };
    let before = r.last("a").epoch;
    r.deliver("a", json!({"type": "mls-commit-request", "epoch": before, "add": [{"participantId": "a2", "keyPackage": kp["keyPackage"]}], "remove": []}));
    r.settle();
    assert_eq!(
        r.people["a"].warnings.last().unwrap().code,
        "bad-key-package"
    );

    // A member refuses a commit (from a committer the server trusted) that adds a ghost.
    let mut rogue = Relay::new(&["a", "b", "ghost"]);
    rogue.join("a");
    rogue.settle();
    rogue.join("b");
    rogue.request("a", &[]);
    rogue.settle();
    rogue.join("ghost");
    rogue.roster.remove("ghost"); // b's roster has no ghost; a's (below) does
    let epoch = rogue.epoch.unwrap();
    let add = rogue.waiting.clone();
    let ev = {
        let has = |_: &str, _: &Claims| true;
        let a = &mut rogue.people.get_mut("a").unwrap().member;
        a.handle(
            &json!({"type": "mls-commit-request", "epoch": epoch, "add": add, "remove": []}),
            &has,
            Instant::now(),
        )
    };
    let Some(Event::Send(commit)) = ev.into_iter().find(|e| matches!(e, Event::Send(_))) else {
        panic!()
    };
    rogue.deliver(
        "b",
        json!({"type": "mls-commit", "epoch": epoch, "commit": commit["commit"], "from": "a"}),
    );
    rogue.settle();
    let w = rogue.people["b"].warnings.last().unwrap();
    assert_eq!(
        (w.code, w.detail.as_str()),
        ("commit-refused", "unknown-participant ghost")
    );
    assert!(rogue
        .sent
        .iter()
        .any(|(p, m)| p == "b" && m["type"] == "mls-commit-failed"));
    assert_eq!(
        rogue.people["b"].member.epoch(),
        Some(epoch),
        "b keeps its state"
    );
}

#[test]
fn junk_from_the_server_gives_warnings_not_panics() {
    let (mut m, _) = Member::start(Claims::guest("a", "A"), Instant::now()).unwrap();
    let has = |_: &str, _: &Claims| true;
    let now = Instant::now();
    m.handle(
        &json!({"type": "mls-create-request", "groupId": GROUP}),
        &has,
        now,
    );
    for junk in [
        json!({"type": "mls-commit", "epoch": 0, "commit": "AAAA", "from": "x"}),
        json!({"type": "mls-commit", "epoch": 0, "commit": "not base64!", "from": "x"}),
        json!({"type": "mls-commit", "epoch": "zero"}),
        json!({"type": "mls-welcome", "welcome": "AAEAAw=="}),
        json!({"type": "mls-app", "message": "AAEAAg==", "from": "x"}),
        json!({"type": "mls-app", "message": 7}),
        json!({"type": "mls-commit-request", "epoch": 0, "add": [{"participantId": "b", "keyPackage": "AAEABQ=="}], "remove": ["nobody"]}),
        json!({"type": "mls-create-request"}),
        json!({"type": "error", "code": "mls-stale-epoch"}),
        json!(null),
    ] {
        let _ = m.handle(&junk, &has, now);
    }
}

#[test]
fn a_fresh_key_package_goes_when_no_welcome_comes() {
    let t0 = Instant::now();
    let (mut m, ev) = Member::start(Claims::guest("a", "A"), t0).unwrap();
    assert!(matches!(&ev[..], [Event::Send(v)] if v["type"] == "mls-key-package"));
    assert!(m.tick(t0 + Duration::from_secs(9)).is_empty());
    let again = m.tick(t0 + WELCOME_TIMEOUT);
    assert!(matches!(&again[..], [Event::Send(v)] if v["type"] == "mls-key-package"));
}

#[test]
fn a_key_package_refused_as_rate_limited_goes_again_once_the_server_takes_one() {
    let t0 = Instant::now();
    let (mut m, _) = Member::start(Claims::guest("a", "A"), t0).unwrap();
    let has = |_: &str, _: &Claims| true;
    m.handle(&json!({"type": "error", "code": "rate-limited"}), &has, t0);
    assert_eq!(m.next_timeout(), Some(t0 + KEY_PACKAGE_RETRY));
    assert!(m.tick(t0 + Duration::from_secs(5)).is_empty());
    let again = m.tick(t0 + KEY_PACKAGE_RETRY);
    assert!(matches!(&again[..], [Event::Send(v)] if v["type"] == "mls-key-package"));
    assert_eq!(
        m.next_timeout(),
        Some(t0 + KEY_PACKAGE_RETRY + WELCOME_TIMEOUT)
    );
}

#[test]
fn a_commit_that_adds_other_key_packages_than_the_server_asked_for_is_refused() {
    let mut r = Relay::new(&["a", "b", "c"]);
    r.join("a");
    r.settle();
    r.join("b");
    r.request("a", &[]);
    r.settle();
    assert_eq!(
        r.last("b").epoch,
        1,
        "the true adds pass: {:?}",
        r.people["b"].warnings
    );
    // c is added, but the server says it asked for another key package of c's.
    r.join("c");
    r.lie_adds = Some(vec![
        json!({"participantId": "c", "keyPackageSha256": B64.encode([0u8; 32])}),
    ]);
    r.request("a", &[]);
    r.settle();
    let w = r.people["b"].warnings.last().unwrap();
    assert_eq!(
        (w.code, w.detail.as_str()),
        ("commit-refused", "unexpected-add c")
    );
    assert_eq!(r.people["b"].member.epoch(), Some(1), "b keeps its state");
}

#[test]
fn a_commit_that_changes_the_credential_of_a_member_who_stays_is_refused() {
    let mut r = Relay::new(&["a", "b"]);
    r.join("a");
    r.settle();
    r.join("b");
    r.request("a", &[]);
    r.settle();
    let epoch = r.epoch.unwrap();
    // a commits an update path whose leaf takes b's name.
    let commit = {
        let a = &mut r.people.get_mut("a").unwrap().member;
        let cwk = CredentialWithKey {
            credential: BasicCredential::new(Claims::guest("b", "B").to_identity()).into(),
            signature_key: a.signer.public().into(),
        };
        let group = a.group.as_mut().unwrap();
        let bundle = group
            .commit_builder()
            .force_self_update(true)
            .leaf_node_parameters(
                LeafNodeParameters::builder()
                    .with_credential_with_key(cwk)
                    .build(),
            )
            .load_psks(a.provider.storage())
            .unwrap()
            .build(a.provider.rand(), a.provider.crypto(), &a.signer, |_| true)
            .unwrap()
            .stage_commit(&a.provider)
            .unwrap();
        encode(bundle.commit()).unwrap()
    };
    r.deliver(
        "b",
        json!({"type": "mls-commit", "epoch": epoch, "commit": commit, "from": "a", "adds": []}),
    );
    r.settle();
    let w = r.people["b"].warnings.last().unwrap();
    assert_eq!(
        (w.code, w.detail.as_str()),
        ("commit-refused", "credential-changed leaf 0")
    );
    assert_eq!(
        r.people["b"].member.epoch(),
        Some(epoch),
        "b keeps its state"
    );
}
