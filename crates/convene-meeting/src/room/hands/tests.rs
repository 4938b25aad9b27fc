//! Raised hands and reactions: the queue's order, who may lower whose hand,
//! what a leave, a resume or the lobby does to a hand, and the reactions'
//! rate limit and chat rule.

use std::time::{Duration, Instant};

use super::super::testkit::*;
use super::super::*;
use crate::access::Who;
use crate::protocol::{ClientMessage as C, ErrorCode, Reaction};

/// A host and two guests.
fn meeting() -> (Room, ParticipantId, ParticipantId, ParticipantId) {
    let now = Instant::now();
    let mut r = Room::new("m1".into(), "Budget".into(), RoomLimits::default());
    let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
    let ann = r.join(now, join_msg("Ann")).unwrap();
    let bob = r.join(now, join_msg("Bob")).unwrap();
    drain(&mut r);
    (r, host, ann, bob)
}

fn raise(r: &mut Room, who: &ParticipantId) {
    r.handle(Instant::now(), who, C::RaiseHand {}).unwrap();
}

fn lower(
    r: &mut Room,
    who: &ParticipantId,
    target: Option<&ParticipantId>,
) -> Result<(), RoomError> {
    r.handle(
        Instant::now(),
        who,
        C::LowerHand {
            participant_id: target.map(|t| t.0.clone()),
        },
    )
}

fn hand_seen_by(fx: &[Effect], viewer: &ParticipantId, of: &ParticipantId) -> Option<Option<u64>> {
    sent_to(fx, viewer).iter().rev().find_map(|m| match m {
        ServerMessage::ParticipantUpdated { participant } if participant.id == of.0 => {
            Some(participant.hand)
        }
        _ => None,
    })
}

#[test]
fn hands_queue_in_the_order_they_were_raised_and_everyone_sees_them() {
    let (mut r, host, ann, bob) = meeting();
    raise(&mut r, &bob);
    let fx = drain(&mut r);
    let first = hand_seen_by(&fx, &host, &bob)
        .expect("the host is told")
        .unwrap();
    assert_eq!(
        hand_seen_by(&fx, &ann, &bob),
        Some(Some(first)),
        "so is everyone"
    );
    assert_eq!(
        hand_seen_by(&fx, &bob, &bob),
        Some(Some(first)),
        "and the raiser"
    );
    raise(&mut r, &ann);
    let fx = drain(&mut r);
    let second = hand_seen_by(&fx, &host, &ann).unwrap().unwrap();
    assert!(second > first);
    assert_eq!(r.hand_queue(), vec![bob.clone(), ann.clone()]);

    // Raising again keeps one's place, and tells nobody anything.
    raise(&mut r, &bob);
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.hand_queue(), vec![bob.clone(), ann.clone()]);

    // Lowered and raised again: to the end of the queue.
    lower(&mut r, &bob, None).unwrap();
    assert_eq!(hand_seen_by(&drain(&mut r), &host, &bob), Some(None));
    raise(&mut r, &bob);
    drain(&mut r);
    assert_eq!(r.hand_queue(), vec![ann.clone(), bob.clone()]);

    // The welcome of a later joiner carries the hands.
    let cleo = r.join(Instant::now(), join_msg("Cleo")).unwrap();
    let fx = drain(&mut r);
    let ServerMessage::Welcome { participants, .. } = &sent_to(&fx, &cleo)[0] else {
        panic!("a welcome first")
    };
    let hand = |id: &ParticipantId| participants.iter().find(|p| p.id == id.0).unwrap().hand;
    assert!(hand(&ann).unwrap() < hand(&bob).unwrap());
    assert_eq!(hand(&host), None);
}

#[test]
fn a_host_lowers_anyone_s_hand_but_a_participant_only_their_own() {
    let (mut r, host, ann, bob) = meeting();
    raise(&mut r, &ann);
    raise(&mut r, &bob);
    drain(&mut r);
    let e = lower(&mut r, &bob, Some(&ann)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.hand_queue(), vec![ann.clone(), bob.clone()]);

    lower(&mut r, &host, Some(&ann)).unwrap();
    let fx = drain(&mut r);
    assert_eq!(hand_seen_by(&fx, &ann, &ann), Some(None), "Ann is told");
    assert_eq!(hand_seen_by(&fx, &bob, &ann), Some(None));
    assert_eq!(r.hand_queue(), vec![bob.clone()]);

    // Naming oneself is lowering one's own.
    lower(&mut r, &bob, Some(&bob)).unwrap();
    assert!(r.hand_queue().is_empty());
    // Nothing to lower: nothing happens.
    drain(&mut r);
    lower(&mut r, &host, Some(&bob)).unwrap();
    assert!(drain(&mut r).is_empty());
    // Nobody by that id.
    let e = lower(&mut r, &host, Some(&ParticipantId("p99".into()))).unwrap_err();
    assert_eq!(e.code, ErrorCode::Invalid);
}

#[test]
fn a_hand_goes_when_its_owner_leaves_or_is_moved_to_the_lobby() {
    let (mut r, host, ann, bob) = meeting();
    raise(&mut r, &ann);
    raise(&mut r, &bob);
    r.handle(Instant::now(), &ann, C::Leave {}).unwrap();
    drain(&mut r);
    assert_eq!(r.hand_queue(), vec![bob.clone()]);
    r.handle(
        Instant::now(),
        &host,
        C::Remove {
            participant_id: bob.0.clone(),
            bar: false,
        },
    )
    .unwrap();
    assert!(r.hand_queue().is_empty());

    // Sent back to the lobby by a level change: admitted again, no hand.
    let cleo = r.join(Instant::now(), join_msg("Cleo")).unwrap();
    raise(&mut r, &cleo);
    r.move_to_lobby(Instant::now(), &cleo);
    assert!(r.hand_queue().is_empty());
    assert_eq!(r.participants[&cleo].hand, None);
}

#[test]
fn a_hand_stays_raised_through_a_lost_connection_and_a_resume() {
    let t0 = Instant::now();
    let (mut r, host, ann, bob) = meeting();
    // Ann's resume token, from a fresh welcome.
    let dan = r.join(t0, join_msg("Dan")).unwrap();
    let fx = drain(&mut r);
    let ServerMessage::Welcome { resume_token, .. } = &sent_to(&fx, &dan)[0] else {
        panic!()
    };
    let token = resume_token.clone();
    raise(&mut r, &bob);
    raise(&mut r, &dan);
    raise(&mut r, &ann);
    drain(&mut r);
    r.connection_lost(t0, &dan);
    drain(&mut r);
    assert_eq!(
        r.hand_queue(),
        vec![bob.clone(), dan.clone(), ann.clone()],
        "away, still in the queue"
    );
    let back = r
        .join(
            t0 + Duration::from_secs(3),
            C::Join {
                protocol: 1,
                name: "Dan".into(),
                resume: Some(token),
                passcode: None,
                host_key: None,
                e2ee: false,
            },
        )
        .unwrap();
    assert_eq!(back, dan);
    let fx = drain(&mut r);
    assert_eq!(r.hand_queue(), vec![bob.clone(), dan.clone(), ann.clone()]);
    let ServerMessage::Welcome { participants, .. } = &sent_to(&fx, &dan)[0] else {
        panic!("a welcome on resume")
    };
    assert!(participants
        .iter()
        .find(|p| p.id == dan.0)
        .unwrap()
        .hand
        .is_some());
    assert_eq!(
        hand_seen_by(&fx, &host, &dan).map(|h| h.is_some()),
        Some(true)
    );
}

fn reactions_seen_by(fx: &[Effect], viewer: &ParticipantId) -> Vec<(String, Reaction)> {
    sent_to(fx, viewer)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::Reaction {
                participant_id,
                reaction,
            } => Some((participant_id, reaction)),
            _ => None,
        })
        .collect()
}

#[test]
fn reactions_reach_everyone_at_most_one_a_second_per_person() {
    let (mut r, host, ann, bob) = meeting();
    let t0 = Instant::now();
    let react = |r: &mut Room, who: &ParticipantId, at: Duration, reaction| {
        r.handle(t0 + at, who, C::React { reaction }).unwrap();
    };
    react(&mut r, &ann, Duration::ZERO, Reaction::Clap);
    let fx = drain(&mut r);
    for viewer in [&host, &ann, &bob] {
        assert_eq!(
            reactions_seen_by(&fx, viewer),
            vec![(ann.0.clone(), Reaction::Clap)],
            "{viewer}"
        );
    }
    // Faster than one a second: dropped, without an error.
    react(&mut r, &ann, Duration::from_millis(300), Reaction::Heart);
    react(&mut r, &ann, Duration::from_millis(900), Reaction::Heart);
    assert!(drain(&mut r).is_empty());
    // Someone else's are their own.
    react(&mut r, &bob, Duration::from_millis(900), Reaction::Party);
    assert_eq!(
        reactions_seen_by(&drain(&mut r), &host),
        vec![(bob.0.clone(), Reaction::Party)]
    );
    react(
        &mut r,
        &ann,
        Duration::from_millis(1000),
        Reaction::ThumbsUp,
    );
    assert_eq!(
        reactions_seen_by(&drain(&mut r), &bob),
        vec![(ann.0.clone(), Reaction::ThumbsUp)]
    );
}

#[test]
fn reactions_follow_the_chat_setting_and_hands_do_not() {
    let (mut r, host, ann, _bob) = meeting();
    let mut settings = r.settings.clone();
    settings.chat = Who::Hosts;
    r.handle(Instant::now(), &host, C::UpdateSettings { settings })
        .unwrap();
    drain(&mut r);
    let e = r
        .handle(
            Instant::now(),
            &ann,
            C::React {
                reaction: Reaction::Laugh,
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(drain(&mut r).is_empty());
    // The hand is how to ask to speak when chat is closed.
    raise(&mut r, &ann);
    assert_eq!(r.hand_queue(), vec![ann.clone()]);
    r.handle(
        Instant::now(),
        &host,
        C::React {
            reaction: Reaction::Laugh,
        },
    )
    .unwrap();
}

#[test]
fn the_messages_parse_and_serialise_as_documented() {
    use crate::protocol::parse_client_message as parse;
    assert_eq!(parse(r#"{"type":"raise-hand"}"#).unwrap(), C::RaiseHand {});
    assert_eq!(
        parse(r#"{"type":"lower-hand"}"#).unwrap(),
        C::LowerHand {
            participant_id: None
        }
    );
    assert_eq!(
        parse(r#"{"type":"lower-hand","participantId":"p2"}"#).unwrap(),
        C::LowerHand {
            participant_id: Some("p2".into())
        }
    );
    assert_eq!(
        parse(r#"{"type":"react","reaction":"thumbs-up"}"#).unwrap(),
        C::React {
            reaction: Reaction::ThumbsUp
        }
    );
    for bad in [
        r#"{"type":"react","reaction":"raised-hand"}"#,
        r#"{"type":"react"}"#,
        r#"{"type":"raise-hand","participantId":"p2"}"#,
    ] {
        assert_eq!(parse(bad).unwrap_err().code, ErrorCode::Invalid, "{bad}");
    }
    assert_eq!(
        serde_json::to_string(&ServerMessage::Reaction {
            participant_id: "p2".into(),
            reaction: Reaction::Party
        })
        .unwrap(),
        r#"{"type":"reaction","participantId":"p2","reaction":"party"}"#
    );
}
