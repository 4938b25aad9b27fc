//! Exports hold exactly the rows they should: a meeting's own, or those
//! about one person, and never the secrets' hashes.

use super::*;

fn add(
    s: &Storage,
    meeting: &str,
    actor: &str,
    subject: &str,
    event: &str,
    outcome: &str,
    detail: &str,
) -> i64 {
    s.audit(AuditEvent {
        meeting,
        actor,
        subject,
        event,
        outcome,
        detail,
    })
    .unwrap()
    .seq
}

const ANN: &str = "name: Ann Smith; identity: member of Dept: ann@dept.example, multi-factor";
const BOB: &str = "name: Bob; identity: guest (unverified)";

/// Meeting A is stored; meeting B was purged and only its rows are left.
/// Returns (A's id, the seqs of A's rows, of B's rows).
fn two_meetings(s: &Storage) -> (String, Vec<i64>, Vec<i64>) {
    let (a, _) = s
        .create_meeting(
            "Budget; round 2",
            Some("$argon2id$secret-hash"),
            "{\"lobby\":true}",
        )
        .unwrap();
    let a = a.id;
    let b = "zzzz-zzzz-zzzz";
    let mut in_a = vec![add(
        s,
        &a,
        "ann@dept.example",
        "-",
        "create",
        "created",
        "level: official",
    )];
    in_a.push(add(s, &a, "p1", "p1", "join", "admitted", ANN));
    in_a.push(add(
        s,
        &a,
        "client 192.0.2.7",
        "-",
        "join",
        "refused: wrong-passcode",
        "wrong passcode",
    ));
    in_a.push(add(s, &a, "p2", "p2", "join", "waiting in lobby", BOB));
    let mut in_b = vec![add(s, b, "p1", "p1", "join", "admitted", BOB)];
    in_a.push(add(s, &a, "p1", "p2", "admit", "admitted", ""));
    in_b.push(add(
        s,
        b,
        "p2",
        "p2",
        "join",
        "admitted",
        "name: Bobby; identity: guest (unverified)",
    ));
    in_a.push(add(s, &a, "p1", "p2", "remove", "removed", "barred"));
    in_a.push(add(s, &a, "p2", "p2", "leave", "removed", ""));
    in_b.push(add(s, b, "p1", "p1", "leave", "left", ""));
    in_a.push(add(s, &a, "p1", "p1", "leave", "left", ""));
    (a, in_a, in_b)
}

fn seqs(rows: &[AuditRecord]) -> Vec<i64> {
    rows.iter().map(|r| r.seq).collect()
}

#[test]
fn a_meeting_export_holds_its_facts_its_people_and_exactly_its_rows() {
    each_engine(a_meeting_export_holds_its_facts_its_people_and_exactly_its_rows_on)
}

fn a_meeting_export_holds_its_facts_its_people_and_exactly_its_rows_on(s: Storage) {
    let (a, in_a, in_b) = two_meetings(&s);
    let e = s.export_meeting(&a).unwrap().unwrap();
    let m = e.meeting.as_ref().unwrap();
    assert_eq!(
        (m.title.as_str(), m.has_passcode),
        ("Budget; round 2", true)
    );
    assert_eq!(m.settings["lobby"], true);
    assert_eq!(seqs(&e.audit), in_a);
    let people: Vec<(&str, &str, &str, Option<&str>)> = e
        .participants
        .iter()
        .map(|p| {
            (
                p.participant.as_str(),
                p.name.as_str(),
                p.identity.as_str(),
                p.left_as.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        people,
        vec![
            (
                "p1",
                "Ann Smith",
                "member of Dept: ann@dept.example, multi-factor",
                Some("left")
            ),
            ("p2", "Bob", "guest (unverified)", Some("removed")),
        ]
    );
    let json = serde_json::to_string(&e).unwrap();
    assert!(!json.contains("argon2"), "no passcode hash: {json}");
    assert!(!json.contains(&s.meeting(&a).unwrap().unwrap().host_key_hash));

    // Purged meeting: its rows and people are still there, its facts not.
    let b = s.export_meeting("zzzz-zzzz-zzzz").unwrap().unwrap();
    assert!(b.meeting.is_none());
    assert_eq!(seqs(&b.audit), in_b);
    assert_eq!(b.participants.len(), 2);
    // Nothing kept at all: none.
    assert!(s.export_meeting("aaaa-bbbb-cccc").unwrap().is_none());
}

#[test]
fn a_person_export_holds_every_row_about_them_and_no_one_elses() {
    each_engine(a_person_export_holds_every_row_about_them_and_no_one_elses_on)
}

fn a_person_export_holds_every_row_about_them_and_no_one_elses_on(s: Storage) {
    let (a, in_a, in_b) = two_meetings(&s);
    // By verified email (any case): Ann's joins, her host actions, her
    // leaving, and the meeting she created; not Bob's own rows.
    let ann = s.export_person("  ANN@dept.example ").unwrap();
    assert_eq!(ann.participations.len(), 1);
    assert_eq!(
        seqs(&ann.audit),
        vec![in_a[0], in_a[1], in_a[4], in_a[5], in_a[7]],
        "create, join, admit, remove, leave"
    );
    assert_eq!(ann.meetings.len(), 1);
    assert_eq!(ann.meetings[0].id, a);
    // By name: the same person.
    assert_eq!(
        seqs(&s.export_person("ann smith").unwrap().audit),
        seqs(&ann.audit)
    );
    // A name is matched whole: "Ann" is not "Ann Smith".
    assert!(s.export_person("Ann").unwrap().audit.is_empty());

    // Bob, in both meetings (the purged one has no facts left), not Bobby.
    let bob = s.export_person("bob").unwrap();
    let places: Vec<(&str, &str)> = bob
        .participations
        .iter()
        .map(|p| (p.meeting.as_str(), p.participant.as_str()))
        .collect();
    assert_eq!(places, vec![(a.as_str(), "p2"), ("zzzz-zzzz-zzzz", "p1")]);
    let mut want = vec![in_a[3], in_a[4], in_a[5], in_a[6], in_b[0], in_b[2]];
    want.sort();
    assert_eq!(seqs(&bob.audit), want);
    assert_eq!(bob.meetings.len(), 1);
    // Nobody: an empty export, not an error.
    let none = s.export_person("nobody@example.org").unwrap();
    assert!(none.audit.is_empty() && none.meetings.is_empty());
}

#[test]
fn names_are_matched_ignoring_case_beyond_ascii() {
    each_engine(names_are_matched_ignoring_case_beyond_ascii_on)
}

fn names_are_matched_ignoring_case_beyond_ascii_on(s: Storage) {
    add(
        &s,
        "m-1",
        "p1",
        "p1",
        "join",
        "admitted",
        "name: Émile Łukasz; identity: guest (unverified)",
    );
    let e = s.export_person("ÉMILE ŁUKASZ").unwrap();
    assert_eq!(e.participations.len(), 1);
    assert_eq!(e.audit.len(), 1);
}
