//! Webinars: the audience is counted, not announced; a join costs the same
//! whatever the audience's size; hosts page through it, bring attendees on
//! stage and take them off.

use std::time::Instant;

use super::super::testkit::*;
use super::super::*;
use super::{ATTENDEES_PAGE, AUDIENCE_EVERY};
use crate::protocol::ClientMessage as C;

/// A webinar with a host (publishing a camera) and `attendees` attendees.
fn webinar(now: Instant, attendees: usize) -> (Room, ParticipantId, Vec<ParticipantId>) {
    let limits = RoomLimits {
        max_participants: 5000,
        ..RoomLimits::default()
    };
    let settings = Settings {
        webinar: true,
        max_participants: 5000,
        ..Settings::default()
    };
    let mut r = Room::with_settings("w".into(), "Town hall".into(), limits, settings);
    let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
    let camera = C::Publish {
        source: Source::Camera,
    };
    r.handle(now, &host, camera).unwrap();
    let people = (0..attendees)
        .map(|i| r.join(now, join_msg(&format!("A{i}"))).unwrap())
        .collect();
    drain(&mut r);
    (r, host, people)
}

/// Messages (sends and broadcasts) among `fx`, and the copies they make.
fn counts(fx: &[Effect]) -> (usize, usize) {
    fx.iter().fold((0, 0), |(m, c), e| match e {
        Effect::Send { .. } => (m + 1, c + 1),
        Effect::Broadcast { to, .. } => (m + 1, c + to.len()),
        _ => (m, c),
    })
}

#[test]
fn an_attendee_sees_the_stage_and_the_count_and_nobody_hears_of_their_join() {
    let now = Instant::now();
    let (mut r, host, people) = webinar(now, 3);
    let late = r.join(now, join_msg("Late")).unwrap();
    let fx = drain(&mut r);
    let to_late = sent_to(&fx, &late);
    let ServerMessage::Welcome {
        participants,
        permissions,
        ..
    } = &to_late[0]
    else {
        panic!("welcome first, got {:?}", to_late[0])
    };
    let listed: Vec<&str> = participants.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(listed, ["Late", "Host"], "themselves and the stage");
    assert!(permissions.camera.as_deref().unwrap().contains("webinar"));
    assert_eq!(to_late[1], ServerMessage::Audience { attendees: 4 });
    for other in people.iter().chain([&host]) {
        assert!(
            sent_to(&fx, other).is_empty(),
            "{other} was told of the join: {:?}",
            sent_to(&fx, other)
        );
    }
    assert!(media(&fx).contains(&MediaAction::Subscribe {
        who: late.clone(),
        publisher: host.clone(),
        source: Source::Camera
    }));
    // An attendee publishes nothing.
    let refused = r
        .handle(
            now,
            &late,
            C::Publish {
                source: Source::Microphone,
            },
        )
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden);
}

#[test]
fn a_join_costs_the_same_with_ten_attendees_or_a_thousand() {
    let now = Instant::now();
    let cost = |attendees: usize| {
        let (mut r, _, _) = webinar(now, attendees);
        let who = r.join(now, join_msg("One more")).unwrap();
        let joined = counts(&drain(&mut r));
        r.handle(now, &who, C::Leave {}).unwrap();
        let left = counts(&drain(&mut r));
        (joined, left)
    };
    let small = cost(10);
    assert_eq!(small, cost(1000));
    // A welcome and the count for the joiner; the leave goes to the host alone.
    assert_eq!(small, ((2, 2), (1, 1)));
}

#[test]
fn everyone_is_told_the_count_once_a_second_when_it_changed() {
    let t0 = Instant::now();
    let (mut r, host, people) = webinar(t0, 100);
    r.tick(t0);
    let fx = drain(&mut r);
    assert_eq!(
        sent_to(&fx, &people[7]),
        [ServerMessage::Audience { attendees: 100 }]
    );
    assert_eq!(
        sent_to(&fx, &host),
        [ServerMessage::Audience { attendees: 100 }]
    );
    // Fifty more within the second: nothing until it is over, then one count.
    for i in 0..50 {
        r.join(t0, join_msg(&format!("B{i}"))).unwrap();
    }
    drain(&mut r);
    r.tick(t0 + AUDIENCE_EVERY / 2);
    assert!(sent_to(&drain(&mut r), &host).is_empty());
    r.tick(t0 + AUDIENCE_EVERY);
    assert_eq!(
        sent_to(&drain(&mut r), &host),
        [ServerMessage::Audience { attendees: 150 }]
    );
    r.tick(t0 + AUDIENCE_EVERY * 3);
    assert!(sent_to(&drain(&mut r), &host).is_empty(), "unchanged");
}

#[test]
fn hosts_page_through_the_audience_and_nobody_else_may() {
    let now = Instant::now();
    let (mut r, host, people) = webinar(now, ATTENDEES_PAGE * 2 + 7);
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        r.handle(now, &host, C::Attendees { after }).unwrap();
        let fx = drain(&mut r);
        let to_host = sent_to(&fx, &host);
        let [ServerMessage::Attendees {
            total,
            attendees,
            next,
        }] = to_host.as_slice()
        else {
            panic!("one page: {fx:?}")
        };
        assert_eq!(*total, people.len());
        assert!(attendees.len() <= ATTENDEES_PAGE);
        seen.extend(attendees.iter().map(|a| a.id.clone()));
        pages += 1;
        after = next.clone();
        if after.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    let mut expected: Vec<String> = people.iter().map(|p| p.0.clone()).collect();
    expected.sort();
    assert_eq!(seen, expected, "each attendee once, in the order of ids");
    assert!(!seen.contains(&host.0), "the stage is not the audience");

    let refused = r
        .handle(now, &people[0], C::Attendees { after: None })
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden);
}

#[test]
fn a_raised_hand_reaches_the_hosts_and_not_the_audience() {
    let now = Instant::now();
    let (mut r, host, people) = webinar(now, 5);
    r.handle(now, &people[2], C::RaiseHand {}).unwrap();
    let fx = drain(&mut r);
    let to_host = sent_to(&fx, &host);
    assert!(matches!(
        to_host.as_slice(),
        [ServerMessage::ParticipantUpdated { participant }]
            if participant.id == people[2].0 && participant.hand.is_some()
    ));
    assert_eq!(
        sent_to(&fx, &people[2]).len(),
        1,
        "the attendee sees their own hand"
    );
    assert!(sent_to(&fx, &people[0]).is_empty());
    assert_eq!(r.hand_queue(), vec![people[2].clone()]);
}

#[test]
fn brought_on_stage_an_attendee_is_announced_and_publishes_then_taken_off_stops() {
    let now = Instant::now();
    let (mut r, host, people) = webinar(now, 4);
    let guest = people[1].clone();
    r.handle(now, &guest, C::RaiseHand {}).unwrap();
    drain(&mut r);
    let on = C::SetRole {
        participant_id: guest.0.clone(),
        role: Role::Presenter,
    };
    r.handle(now, &host, on).unwrap();
    let fx = drain(&mut r);
    assert!(sent_to(&fx, &people[0]).iter().any(|m| matches!(
        m,
        ServerMessage::ParticipantJoined { participant }
            if participant.id == guest.0 && participant.hand.is_none()
    )));
    assert!(sent_to(&fx, &guest).iter().any(
        |m| matches!(m, ServerMessage::Permissions { permissions } if permissions.camera.is_none())
    ));
    assert!(r.hand_queue().is_empty(), "their hand has been answered");
    r.handle(
        now,
        &guest,
        C::Publish {
            source: Source::Microphone,
        },
    )
    .unwrap();
    let fx = drain(&mut r);
    assert!(media(&fx).contains(&MediaAction::Subscribe {
        who: people[3].clone(),
        publisher: guest.clone(),
        source: Source::Microphone
    }));
    // Somebody in the audience joining now sees them on stage.
    let late = r.join(now, join_msg("Late")).unwrap();
    let fx = drain(&mut r);
    let ServerMessage::Welcome { participants, .. } = &sent_to(&fx, &late)[0] else {
        panic!("welcome")
    };
    assert!(participants.iter().any(|p| p.id == guest.0));

    let off = C::SetRole {
        participant_id: guest.0.clone(),
        role: Role::Participant,
    };
    r.handle(now, &host, off).unwrap();
    let fx = drain(&mut r);
    assert!(media(&fx).contains(&MediaAction::Unpublish {
        who: guest.clone(),
        source: Source::Microphone
    }));
    assert!(
        sent_to(&fx, &people[0]).contains(&ServerMessage::ParticipantLeft {
            participant_id: guest.0.clone(),
            reason: LeaveReason::OffStage,
        })
    );
    assert!(sent_to(&fx, &host).iter().any(|m| matches!(
        m,
        ServerMessage::ParticipantUpdated { participant }
            if participant.id == guest.0 && participant.role == Role::Participant
    )));
    let again = C::Publish {
        source: Source::Camera,
    };
    assert_eq!(
        r.handle(now, &guest, again).unwrap_err().code,
        ErrorCode::Forbidden
    );
}

#[test]
fn an_attendees_connection_quality_goes_to_the_hosts_and_to_them() {
    use crate::protocol::{ParticipantQuality, Quality};
    let now = Instant::now();
    let (mut r, host, people) = webinar(now, 3);
    let q = |who: &ParticipantId| ParticipantQuality {
        participant_id: who.0.clone(),
        quality: Quality::Poor,
        video_paused: false,
    };
    r.connection_quality(vec![q(&host), q(&people[0])]);
    let fx = drain(&mut r);
    let ids = |who: &ParticipantId| -> Vec<String> {
        sent_to(&fx, who)
            .iter()
            .flat_map(|m| match m {
                ServerMessage::ConnectionQuality { participants } => participants
                    .iter()
                    .map(|p| p.participant_id.clone())
                    .collect(),
                _ => vec![],
            })
            .collect()
    };
    assert_eq!(ids(&people[1]), std::slice::from_ref(&host.0));
    assert_eq!(ids(&people[0]), [host.0.clone(), people[0].0.clone()]);
    assert_eq!(ids(&host), [host.0.clone(), people[0].0.clone()]);
    assert!(r.sees(&host, &people[0]) && !r.sees(&people[1], &people[0]));
}

#[test]
fn a_webinar_stays_a_webinar() {
    let now = Instant::now();
    let (mut r, host, _) = webinar(now, 1);
    let plain = Settings {
        webinar: false,
        max_participants: 2000,
        ..Settings::default()
    };
    let e = r
        .handle(now, &host, C::UpdateSettings { settings: plain })
        .unwrap_err();
    assert!(e.message.contains("webinar"), "{e}");
}

#[test]
fn an_attendees_chat_and_reactions_reach_the_stage_not_the_audience() {
    use crate::protocol::Reaction;
    let now = Instant::now();
    let (mut r, host, people) = webinar(now, 3);
    r.handle(
        now,
        &people[0],
        C::Chat {
            text: "Hello".into(),
        },
    )
    .unwrap();
    r.handle(
        now,
        &people[0],
        C::React {
            reaction: Reaction::Clap,
        },
    )
    .unwrap();
    let fx = drain(&mut r);
    for who in [&host, &people[0]] {
        let got = sent_to(&fx, who);
        assert!(
            got.iter().any(|m| matches!(m, ServerMessage::Chat { .. })),
            "{who}"
        );
        assert!(
            got.iter()
                .any(|m| matches!(m, ServerMessage::Reaction { .. })),
            "{who}"
        );
    }
    assert!(
        sent_to(&fx, &people[1]).is_empty(),
        "{:?}",
        sent_to(&fx, &people[1])
    );
    // The stage's chat reaches everyone.
    r.handle(
        now,
        &host,
        C::Chat {
            text: "Welcome".into(),
        },
    )
    .unwrap();
    let fx = drain(&mut r);
    assert!(matches!(
        sent_to(&fx, &people[2]).as_slice(),
        [ServerMessage::Chat { .. }]
    ));
}

#[test]
fn an_attendee_changes_their_hand_at_most_once_a_second() {
    use super::super::hands::HAND_TOGGLE_INTERVAL;
    let t0 = Instant::now();
    let (mut r, _, people) = webinar(t0, 2);
    let a = &people[0];
    r.handle(t0, a, C::RaiseHand {}).unwrap();
    let fast = r.handle(
        t0,
        a,
        C::LowerHand {
            participant_id: None,
        },
    );
    assert_eq!(fast.unwrap_err().code, ErrorCode::RateLimited);
    assert_eq!(r.hand_queue(), vec![a.clone()], "still up");
    r.handle(
        t0 + HAND_TOGGLE_INTERVAL,
        a,
        C::LowerHand {
            participant_id: None,
        },
    )
    .unwrap();
    assert!(r.hand_queue().is_empty());
}

#[test]
fn a_joiner_told_a_passing_count_is_put_right_at_the_next_tick() {
    let t0 = Instant::now();
    let (mut r, host, people) = webinar(t0, 5);
    r.tick(t0);
    drain(&mut r);
    let late = r.join(t0, join_msg("Late")).unwrap();
    r.handle(t0, &people[0], C::Leave {}).unwrap();
    let fx = drain(&mut r);
    assert!(sent_to(&fx, &late).contains(&ServerMessage::Audience { attendees: 6 }));
    // Five again, as last told to all: told again, or Late would keep 6.
    r.tick(t0 + AUDIENCE_EVERY);
    let fx = drain(&mut r);
    assert_eq!(
        sent_to(&fx, &late),
        [ServerMessage::Audience { attendees: 5 }]
    );
    assert_eq!(
        sent_to(&fx, &host),
        [ServerMessage::Audience { attendees: 5 }]
    );
}

#[test]
fn mute_all_leaves_the_audience_alone_and_a_lobby_role_is_not_announced() {
    let now = Instant::now();
    let limits = RoomLimits::default();
    let settings = Settings {
        webinar: true,
        lobby: true,
        ..Settings::default()
    };
    let mut r = Room::with_settings("w".into(), "t".into(), limits, settings);
    let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
    let waiting = r.join(now, join_msg("Waiting")).unwrap();
    let admitted = r.join(now, join_msg("In")).unwrap();
    r.handle(
        now,
        &host,
        C::Admit {
            participant_id: admitted.0.clone(),
        },
    )
    .unwrap();
    drain(&mut r);
    r.handle(now, &host, C::MuteAll {}).unwrap();
    let fx = drain(&mut r);
    assert!(sent_to(&fx, &admitted).is_empty(), "{fx:?}");
    let on = C::SetRole {
        participant_id: waiting.0.clone(),
        role: Role::Presenter,
    };
    r.handle(now, &host, on).unwrap();
    let fx = drain(&mut r);
    assert!(
        !sent_to(&fx, &admitted)
            .iter()
            .any(|m| matches!(m, ServerMessage::ParticipantJoined { .. })),
        "not on stage while in the lobby"
    );
    // Admitted, they join the stage, announced once.
    let admit = C::Admit {
        participant_id: waiting.0.clone(),
    };
    r.handle(now, &host, admit).unwrap();
    let fx = drain(&mut r);
    let joins = sent_to(&fx, &admitted)
        .iter()
        .filter(|m| matches!(m, ServerMessage::ParticipantJoined { .. }))
        .count();
    assert_eq!(joins, 1);
}
