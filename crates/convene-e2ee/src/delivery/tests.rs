//! The server's check with real members (the Rust member speaks exactly what
//! browsers do; e2e tests put ts-mls commits through it too): honest commits
//! pass and move the epoch; a tampered, replayed, misattributed or
//! disobedient commit is refused and changes nothing.

use std::time::Instant;

use serde_json::{json, Value};

use super::*;
use crate::mls::{Event, Member};

const GROUP: &str = "bWVldGluZy0xMjM0"; // "meeting-1234"

fn sends(events: Vec<Event>) -> Vec<Value> {
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn start(pid: &str) -> (Member, String) {
    let (m, events) = Member::start(Claims::guest(pid, pid), Instant::now()).unwrap();
    let kp = sends(events)[0]["keyPackage"].as_str().unwrap().to_string();
    (m, kp)
}

fn handle(m: &mut Member, msg: Value) -> Vec<Value> {
    sends(m.handle(&msg, &|_: &str, _: &Claims| true, Instant::now()))
}

fn bytes(b64: &Value) -> Vec<u8> {
    B64.decode(b64.as_str().unwrap()).unwrap()
}

/// A group made by `a`, checked from its creation.
fn made() -> (CommitCheck, Member) {
    let (mut a, kp_a) = start("a");
    let created = handle(
        &mut a,
        json!({"type": "mls-create-request", "groupId": GROUP}),
    );
    assert_eq!(created[0]["type"], "mls-group-created");
    let mut check = CommitCheck::new();
    check
        .created(
            &bytes(&created[0]["groupInfo"]),
            b"meeting-1234",
            "a",
            &B64.decode(kp_a).unwrap(),
        )
        .unwrap();
    assert_eq!(check.epoch(), Some(0));
    (check, a)
}

#[test]
fn a_new_group_is_taken_only_from_its_one_member_for_this_meeting() {
    let (mut a, kp_a) = start("a");
    let kp_a = B64.decode(kp_a).unwrap();
    let created = handle(
        &mut a,
        json!({"type": "mls-create-request", "groupId": GROUP}),
    );
    let gi = bytes(&created[0]["groupInfo"]);
    let mut check = CommitCheck::new();
    let g = b"meeting-1234";
    assert!(
        check.created(&gi, g, "b", &kp_a).is_err(),
        "made by a, not b"
    );
    assert!(check.created(&gi, b"another-group", "a", &kp_a).is_err());
    let mut bent = gi.clone();
    let at = bent.len() - 10; // in the signature
    bent[at] ^= 1;
    assert!(
        check.created(&bent, g, "a", &kp_a).is_err(),
        "a bad signature"
    );
    assert!(check.created(b"junk", g, "a", &kp_a).is_err());
    // The member's credential must be the one the server checked in a's key
    // package (here: a's other key package names another display name).
    let (_, other) = Member::start(Claims::guest("a", "Someone else"), Instant::now()).unwrap();
    let other = B64
        .decode(sends(other)[0]["keyPackage"].as_str().unwrap())
        .unwrap();
    let why = check.created(&gi, g, "a", &other).unwrap_err().0;
    assert!(why.contains("another credential"), "{why}");
    assert_eq!(check.epoch(), None, "nothing taken");
    check.created(&gi, g, "a", &kp_a).unwrap();
}

#[test]
fn an_honest_commit_passes_and_anything_else_is_refused_without_moving_the_epoch() {
    let (mut check, mut a) = made();
    let (mut b, kp_b) = start("b");
    let kp_b_bytes = B64.decode(&kp_b).unwrap();
    let asked = json!({"type": "mls-commit-request", "epoch": 0,
        "add": [{"participantId": "b", "keyPackage": kp_b}], "remove": [], "deadlineMs": 2000});
    let out = handle(&mut a, asked);
    assert_eq!(out[0]["type"], "mls-commit");
    let commit = bytes(&out[0]["commit"]);
    let add = [("b", kp_b_bytes.as_slice())];

    let refused = |check: &mut CommitCheck,
                   c: &[u8],
                   sender: &str,
                   add: &[(&str, &[u8])],
                   remove: &[&str]| {
        let r = check.commit(c, sender, add, remove);
        assert!(r.is_err(), "{r:?}");
        assert_eq!(check.epoch(), Some(0), "a refused commit moves nothing");
        r.unwrap_err().0
    };
    // Sent by someone else than its signer.
    let why = refused(&mut check, &commit, "b", &add, &[]);
    assert!(why.contains("not the sender's"), "{why}");
    // Adding someone the server did not ask for (here: b, when nobody was asked).
    let why = refused(&mut check, &commit, "a", &[], &[]);
    assert!(why.contains("unexpected-add"), "{why}");
    // Not removing someone it was asked to remove.
    let why = refused(&mut check, &commit, "a", &add, &["a"]);
    assert!(why.contains("removes leaves"), "{why}");
    // Any byte changed in the middle (the update path, under the signature).
    let mut bent = commit.clone();
    let at = bent.len() / 2;
    bent[at] ^= 0x40;
    refused(&mut check, &bent, "a", &add, &[]);
    refused(&mut check, b"\x00\x01junk", "a", &add, &[]);

    check.commit(&commit, "a", &add, &[]).unwrap();
    assert_eq!(check.epoch(), Some(1));
    // The same commit again is for an epoch gone.
    assert!(check.commit(&commit, "a", &add, &[]).is_err());
    assert_eq!(check.epoch(), Some(1));

    // The members follow (a merges its own, b joins by Welcome), and a
    // removal the server asks for passes only when it removes b.
    handle(
        &mut a,
        json!({"type": "mls-commit", "epoch": 0, "commit": out[0]["commit"], "from": "a",
        "adds": [{"participantId": "b", "keyPackageSha256": B64.encode(Sha256::digest(&kp_b_bytes))}]}),
    );
    handle(
        &mut b,
        json!({"type": "mls-welcome", "welcome": out[0]["welcome"], "epoch": 1}),
    );
    assert_eq!(b.epoch(), Some(1));
    let out = handle(
        &mut a,
        json!({"type": "mls-commit-request", "epoch": 1, "add": [], "remove": ["b"], "deadlineMs": 1000}),
    );
    let removal = bytes(&out[0]["commit"]);
    let why = check.commit(&removal, "a", &[], &[]).unwrap_err().0;
    assert!(why.contains("removes leaves"), "{why}");
    assert_eq!(check.epoch(), Some(1));
    check.commit(&removal, "a", &[], &["b"]).unwrap();
    assert_eq!(check.epoch(), Some(2));
}

#[test]
fn a_commit_proposing_more_than_adds_and_removes_is_refused() {
    use openmls_basic_credential::SignatureKeyPair;
    // A committer of its own making (raw openmls): a new group context
    // extension is valid MLS, but not what the server asked for.
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap();
    signer.store(provider.storage()).unwrap();
    let me = CredentialWithKey {
        credential: BasicCredential::new(Claims::guest("a", "a").to_identity()).into(),
        signature_key: signer.public().into(),
    };
    let kp = KeyPackage::builder()
        .build(CIPHERSUITE, &provider, &signer, me.clone())
        .unwrap();
    let kp = MlsMessageOut::from(kp.key_package().clone())
        .to_bytes()
        .unwrap();
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .build();
    let mut group = MlsGroup::new_with_group_id(
        &provider,
        &signer,
        &config,
        GroupId::from_slice(b"meeting-1234"),
        me,
    )
    .unwrap();
    let gi = group
        .export_group_info(provider.crypto(), &signer, true)
        .unwrap()
        .to_bytes()
        .unwrap();
    let mut check = CommitCheck::new();
    check.created(&gi, b"meeting-1234", "a", &kp).unwrap();
    let bundle = group
        .commit_builder()
        .propose_group_context_extensions(Extensions::empty())
        .unwrap()
        .load_psks(provider.storage())
        .unwrap()
        .build(provider.rand(), provider.crypto(), &signer, |_| true)
        .unwrap()
        .stage_commit(&provider)
        .unwrap();
    let commit = bundle.into_commit().to_bytes().unwrap();
    let why = check.commit(&commit, "a", &[], &[]).unwrap_err().0;
    assert!(why.contains("only adds and removes"), "{why}");
    assert_eq!(check.epoch(), Some(0));
}
