use super::testkit::*;
use super::*;
use crate::protocol::{ClientMessage as C, ErrorCode};

fn room() -> Room {
    Room::new("m1".into(), "Budget".into(), RoomLimits::default())
}

#[test]
fn a_joiner_is_welcomed_announced_and_subscribed_to_what_exists() {
    let now = Instant::now();
    let mut r = room();
    let ann = r.join(now, join_msg("Ann")).unwrap();
    r.handle(
        now,
        &ann,
        C::Publish {
            source: Source::Camera,
        },
    )
    .unwrap();
    drain(&mut r);
    let bob = r.join(now, join_msg("  Bob \n Smith ")).unwrap();
    let fx = drain(&mut r);
    let ServerMessage::Welcome {
        participants,
        meeting,
        ..
    } = &sent_to(&fx, &bob)[0]
    else {
        panic!("first message to a joiner is welcome")
    };
    assert_eq!(meeting.title, "Budget");
    assert_eq!(participants.len(), 2);
    assert!(participants.iter().any(|p| p.name == "Bob Smith"));
    assert!(
        matches!(&sent_to(&fx, &ann)[0], ServerMessage::ParticipantJoined { participant } if participant.name == "Bob Smith")
    );
    assert_eq!(
        media(&fx),
        vec![
            MediaAction::Connect(bob.clone()),
            MediaAction::Subscribe {
                who: bob.clone(),
                publisher: ann.clone(),
                source: Source::Camera
            }
        ]
    );
}

#[test]
fn publishing_subscribes_everyone_else() {
    let now = Instant::now();
    let mut r = room();
    let a = r.join(now, join_msg("A")).unwrap();
    let b = r.join(now, join_msg("B")).unwrap();
    let c = r.join(now, join_msg("C")).unwrap();
    drain(&mut r);
    r.handle(
        now,
        &b,
        C::Publish {
            source: Source::Screen,
        },
    )
    .unwrap();
    let m = media(&drain(&mut r));
    assert!(m.contains(&MediaAction::Publish {
        who: b.clone(),
        source: Source::Screen
    }));
    assert!(m.contains(&MediaAction::Subscribe {
        who: a.clone(),
        publisher: b.clone(),
        source: Source::Screen
    }));
    assert!(m.contains(&MediaAction::Subscribe {
        who: c,
        publisher: b.clone(),
        source: Source::Screen
    }));
    assert!(!m
        .iter()
        .any(|x| matches!(x, MediaAction::Subscribe { who, .. } if *who == b)));
}

#[test]
fn chat_reaches_everyone_and_is_kept_for_later_joiners() {
    let now = Instant::now();
    let mut r = room();
    let a = r.join(now, join_msg("A")).unwrap();
    let b = r.join(now, join_msg("B")).unwrap();
    drain(&mut r);
    r.handle(
        now,
        &a,
        C::Chat {
            text: " hello ".into(),
        },
    )
    .unwrap();
    let fx = drain(&mut r);
    for who in [&a, &b] {
        assert!(
            matches!(&sent_to(&fx, who)[0], ServerMessage::Chat { message } if message.text == "hello" && message.name == "A")
        );
    }
    let c = r.join(now, join_msg("C")).unwrap();
    let fx = drain(&mut r);
    let ServerMessage::Welcome { chat, .. } = &sent_to(&fx, &c)[0] else {
        panic!()
    };
    assert_eq!(chat.len(), 1);
    assert_eq!(
        r.handle(now, &a, C::Chat { text: "  ".into() })
            .unwrap_err()
            .code,
        ErrorCode::Invalid
    );
    assert_eq!(
        r.handle(
            now,
            &a,
            C::Chat {
                text: "x".repeat(2001)
            }
        )
        .unwrap_err()
        .code,
        ErrorCode::Invalid
    );
}

#[test]
fn wrong_state_and_bad_joins_are_refused() {
    let now = Instant::now();
    let mut r = room();
    assert_eq!(
        r.join(now, C::Leave {}).unwrap_err().code,
        ErrorCode::WrongState
    );
    assert_eq!(
        r.join(
            now,
            C::Join {
                protocol: 9,
                name: "A".into(),
                resume: None,
                passcode: None,
                host_key: None,
                e2ee: false,
            }
        )
        .unwrap_err()
        .code,
        ErrorCode::UnsupportedProtocol
    );
    assert_eq!(
        r.join(now, join_msg(" \u{7} ")).unwrap_err().code,
        ErrorCode::Invalid
    );
    assert_eq!(
        r.join(now, join_msg(&"n".repeat(65))).unwrap_err().code,
        ErrorCode::Invalid
    );
    let a = r.join(now, join_msg("A")).unwrap();
    assert_eq!(
        r.handle(now, &a, join_msg("A")).unwrap_err().code,
        ErrorCode::WrongState
    );
    assert_eq!(
        r.handle(
            now,
            &a,
            C::Unpublish {
                source: Source::Camera
            }
        )
        .unwrap_err()
        .code,
        ErrorCode::WrongState
    );
}

#[test]
fn meeting_full() {
    let now = Instant::now();
    let mut r = Room::new(
        "m".into(),
        "t".into(),
        RoomLimits {
            max_participants: 2,
            ..Default::default()
        },
    );
    r.join(now, join_msg("A")).unwrap();
    r.join(now, join_msg("B")).unwrap();
    assert_eq!(
        r.join(now, join_msg("C")).unwrap_err().code,
        ErrorCode::MeetingFull
    );
}

#[test]
fn leaving_unpublishes_and_tells_the_others() {
    let now = Instant::now();
    let mut r = room();
    let a = r.join(now, join_msg("A")).unwrap();
    let b = r.join(now, join_msg("B")).unwrap();
    r.handle(
        now,
        &a,
        C::Publish {
            source: Source::Microphone,
        },
    )
    .unwrap();
    drain(&mut r);
    r.handle(now, &a, C::Leave {}).unwrap();
    let fx = drain(&mut r);
    assert!(fx.contains(&Effect::Close { who: a.clone() }));
    assert!(media(&fx).contains(&MediaAction::Unpublish {
        who: a.clone(),
        source: Source::Microphone
    }));
    assert_eq!(
        sent_to(&fx, &b),
        vec![ServerMessage::ParticipantLeft {
            participant_id: a.0.clone(),
            reason: LeaveReason::Left
        }]
    );
    assert_eq!(r.participant_count(), 1);
}

#[test]
fn a_lost_connection_can_resume_within_grace_without_a_leave() {
    let t0 = Instant::now();
    let mut r = room();
    let a = r.join(t0, join_msg("A")).unwrap();
    let b = r.join(t0, join_msg("B")).unwrap();
    r.handle(
        t0,
        &a,
        C::Publish {
            source: Source::Camera,
        },
    )
    .unwrap();
    let fx = drain(&mut r);
    let ServerMessage::Welcome { resume_token, .. } = &sent_to(&fx, &a)[0] else {
        panic!()
    };
    let token = resume_token.clone();
    r.connection_lost(t0, &a);
    let fx = drain(&mut r);
    assert!(media(&fx).contains(&MediaAction::Disconnect(a.clone())));
    assert!(
        matches!(&sent_to(&fx, &b)[0], ServerMessage::ParticipantUpdated { participant } if !participant.connected)
    );
    r.tick(t0 + Duration::from_secs(3));
    let back = r
        .join(
            t0 + Duration::from_secs(3),
            C::Join {
                protocol: 1,
                name: "ignored".into(),
                resume: Some(token),
                passcode: None,
                host_key: None,
                e2ee: false,
            },
        )
        .unwrap();
    assert_eq!(back, a);
    let fx = drain(&mut r);
    assert!(!sent_to(&fx, &b)
        .iter()
        .any(|m| matches!(m, ServerMessage::ParticipantLeft { .. })));
    assert!(media(&fx).contains(&MediaAction::Connect(a.clone())));
    // Republishing the same source moves the track rather than adding one.
    r.handle(
        t0,
        &a,
        C::Publish {
            source: Source::Camera,
        },
    )
    .unwrap();
    let fx = drain(&mut r);
    assert_eq!(
        media(&fx),
        vec![MediaAction::Publish {
            who: a.clone(),
            source: Source::Camera
        }]
    );
}

#[test]
fn away_past_grace_means_gone() {
    let t0 = Instant::now();
    let mut r = room();
    let a = r.join(t0, join_msg("A")).unwrap();
    let b = r.join(t0, join_msg("B")).unwrap();
    drain(&mut r);
    r.connection_lost(t0, &a);
    drain(&mut r);
    r.tick(t0 + Duration::from_secs(6));
    let fx = drain(&mut r);
    assert_eq!(
        sent_to(&fx, &b),
        vec![ServerMessage::ParticipantLeft {
            participant_id: a.0.clone(),
            reason: LeaveReason::Disconnected
        }]
    );
    let resume = C::Join {
        protocol: 1,
        name: "A".into(),
        resume: Some("0".repeat(32)),
        passcode: None,
        host_key: None,
        e2ee: false,
    };
    assert_eq!(r.join(t0, resume).unwrap_err().code, ErrorCode::NotFound);
}

#[test]
fn joins_resumes_and_leaves_are_audit_facts() {
    let t0 = Instant::now();
    let mut r = room();
    let a = r.join(t0, join_msg("Ann")).unwrap();
    let fx = drain(&mut r);
    let audits: Vec<&AuditFact> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Audit(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(audits.len(), 1);
    assert_eq!(
        (
            audits[0].event,
            audits[0].outcome.as_str(),
            audits[0].subject.as_str()
        ),
        ("join", "admitted", "p1")
    );
    assert!(audits[0].detail.contains("Ann"));
    r.handle(t0, &a, C::Leave {}).unwrap();
    let fx = drain(&mut r);
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Audit(f) if f.event == "leave" && f.outcome == "left")));
}

#[test]
fn settings_and_roles_are_enforced_on_messages() {
    use crate::access::{Role, Settings, Who};
    let now = Instant::now();
    let settings = Settings {
        screen_share: Who::HostsAndPresenters,
        chat: Who::Hosts,
        ..Settings::default()
    };
    let mut r = Room::with_settings("m".into(), "t".into(), RoomLimits::default(), settings);
    let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
    let guest = r.join(now, join_msg("Guest")).unwrap();
    let fx = drain(&mut r);
    let ServerMessage::Welcome { participants, .. } = &sent_to(&fx, &guest)[0] else {
        panic!()
    };
    assert!(participants
        .iter()
        .any(|p| p.name == "Host" && p.role == Role::Host));
    assert!(participants
        .iter()
        .any(|p| p.name == "Guest" && p.role == Role::Participant));

    let e = r
        .handle(
            now,
            &guest,
            C::Publish {
                source: Source::Screen,
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(
        drain(&mut r).iter().all(|e| !matches!(e, Effect::Media(_))),
        "nothing reaches the SFU"
    );
    assert_eq!(
        r.handle(now, &guest, C::Chat { text: "hi".into() })
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
    assert!(r
        .handle(
            now,
            &guest,
            C::Publish {
                source: Source::Camera
            }
        )
        .is_ok());
    assert!(r
        .handle(
            now,
            &host,
            C::Publish {
                source: Source::Screen
            }
        )
        .is_ok());
    assert!(r.handle(now, &host, C::Chat { text: "hi".into() }).is_ok());
}

#[test]
fn the_settings_cap_on_participants_applies() {
    let now = Instant::now();
    let settings = crate::access::Settings {
        max_participants: 1,
        ..Default::default()
    };
    let mut r = Room::with_settings("m".into(), "t".into(), RoomLimits::default(), settings);
    r.join(now, join_msg("A")).unwrap();
    assert_eq!(
        r.join(now, join_msg("B")).unwrap_err().code,
        ErrorCode::MeetingFull
    );
}

mod host_actions {
    use super::*;
    use crate::access::Role;

    fn meeting() -> (Room, ParticipantId, ParticipantId, ParticipantId) {
        let now = Instant::now();
        let mut r = room();
        let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
        let a = r.join(now, join_msg("A")).unwrap();
        let b = r.join(now, join_msg("B")).unwrap();
        drain(&mut r);
        (r, host, a, b)
    }

    #[test]
    fn only_hosts_act_as_hosts() {
        let now = Instant::now();
        let (mut r, host, a, b) = meeting();
        for msg in [
            C::Remove {
                participant_id: b.0.clone(),
                bar: false,
            },
            C::Lock { locked: true },
            C::End {},
            C::SetRole {
                participant_id: a.0.clone(),
                role: Role::Host,
            },
        ] {
            assert_eq!(
                r.handle(now, &a, msg).unwrap_err().code,
                ErrorCode::Forbidden
            );
        }
        assert_eq!(r.participant_count(), 3);
        assert!(r.handle(now, &host, C::Lock { locked: true }).is_ok());
    }

    #[test]
    fn a_removed_person_is_told_and_the_others_see_them_go() {
        let now = Instant::now();
        let (mut r, host, a, b) = meeting();
        r.handle(
            now,
            &host,
            C::Remove {
                participant_id: b.0.clone(),
                bar: false,
            },
        )
        .unwrap();
        let fx = drain(&mut r);
        assert!(
            matches!(&sent_to(&fx, &b)[0], ServerMessage::Removed { by, barred: false, .. } if by == "Host")
        );
        assert!(fx.contains(&Effect::Close { who: b.clone() }));
        assert!(sent_to(&fx, &a).contains(&ServerMessage::ParticipantLeft {
            participant_id: b.0.clone(),
            reason: LeaveReason::Removed
        }));
        assert!(fx
            .iter()
            .any(|e| matches!(e, Effect::Audit(f) if f.event == "remove" && f.subject == b.0)));
    }

    #[test]
    fn a_locked_meeting_takes_no_one_new_but_hosts() {
        let now = Instant::now();
        let (mut r, host, a, _) = meeting();
        r.handle(now, &host, C::Lock { locked: true }).unwrap();
        let fx = drain(&mut r);
        assert!(
            matches!(&sent_to(&fx, &a)[0], ServerMessage::MeetingUpdated { meeting } if meeting.locked)
        );
        assert_eq!(
            r.join(now, join_msg("Late")).unwrap_err().code,
            ErrorCode::Locked
        );
        assert!(r.join_as(now, join_msg("Co-organiser"), Role::Host).is_ok());
        r.handle(now, &host, C::Lock { locked: false }).unwrap();
        assert!(r.join(now, join_msg("Late")).is_ok());
    }

    #[test]
    fn ending_closes_everyone_and_refuses_joins() {
        let now = Instant::now();
        let (mut r, host, a, b) = meeting();
        r.handle(now, &host, C::End {}).unwrap();
        let fx = drain(&mut r);
        for who in [&host, &a, &b] {
            assert!(sent_to(&fx, who)
                .iter()
                .any(|m| matches!(m, ServerMessage::Ended { .. })));
            assert!(fx.contains(&Effect::Close { who: who.clone() }));
        }
        assert!(fx.contains(&Effect::Ended));
        assert!(r.is_empty());
        assert_eq!(
            r.join(now, join_msg("Late")).unwrap_err().code,
            ErrorCode::Ended
        );
    }

    #[test]
    fn roles_change_but_a_meeting_keeps_a_host() {
        let now = Instant::now();
        let (mut r, host, a, b) = meeting();
        r.handle(
            now,
            &host,
            C::SetRole {
                participant_id: a.0.clone(),
                role: Role::CoHost,
            },
        )
        .unwrap();
        let fx = drain(&mut r);
        assert!(
            matches!(&sent_to(&fx, &b)[0], ServerMessage::ParticipantUpdated { participant } if participant.role == Role::CoHost)
        );
        // A co-host may act as a host now.
        assert!(r
            .handle(
                now,
                &a,
                C::Remove {
                    participant_id: b.0.clone(),
                    bar: false,
                }
            )
            .is_ok());
        let e = r
            .handle(
                now,
                &host,
                C::SetRole {
                    participant_id: host.0.clone(),
                    role: Role::Participant,
                },
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Invalid);
    }
}

mod lobby {
    use super::*;
    use crate::access::{Role, Settings};

    fn lobby_room() -> Room {
        Room::with_settings(
            "m".into(),
            "Board".into(),
            RoomLimits::default(),
            Settings {
                lobby: true,
                ..Settings::default()
            },
        )
    }

    fn lobby_msgs(fx: &[Effect], who: &ParticipantId) -> Vec<bool> {
        sent_to(fx, who)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::Lobby { host_present, .. } => Some(host_present),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_waiting_guest_gets_nothing_of_the_meeting_until_admitted() {
        let now = Instant::now();
        let mut r = lobby_room();
        let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
        r.handle(
            now,
            &host,
            C::Publish {
                source: Source::Camera,
            },
        )
        .unwrap();
        drain(&mut r);
        let guest = r.join(now, join_msg("Guest")).unwrap();
        let fx = drain(&mut r);
        assert_eq!(
            lobby_msgs(&fx, &guest),
            vec![true],
            "told to wait, and that a host is here"
        );
        assert!(
            sent_to(&fx, &guest)
                .iter()
                .all(|m| matches!(m, ServerMessage::Lobby { .. })),
            "no welcome, no list"
        );
        assert!(
            media(&fx).is_empty(),
            "no media connection, no subscriptions"
        );
        assert!(
            matches!(&sent_to(&fx, &host)[0], ServerMessage::LobbyUpdated { waiting } if waiting[0].name == "Guest")
        );
        assert!(!sent_to(&fx, &host)
            .iter()
            .any(|m| matches!(m, ServerMessage::ParticipantJoined { .. })));

        // Chat and roster changes do not reach the lobby; the guest cannot act.
        r.handle(
            now,
            &host,
            C::Chat {
                text: "private".into(),
            },
        )
        .unwrap();
        assert!(sent_to(&drain(&mut r), &guest).is_empty());
        assert_eq!(
            r.handle(now, &guest, C::Chat { text: "hi".into() })
                .unwrap_err()
                .code,
            ErrorCode::WrongState
        );
        assert_eq!(
            r.handle(
                now,
                &guest,
                C::Publish {
                    source: Source::Camera
                }
            )
            .unwrap_err()
            .code,
            ErrorCode::WrongState
        );

        r.handle(
            now,
            &host,
            C::Admit {
                participant_id: guest.0.clone(),
            },
        )
        .unwrap();
        let fx = drain(&mut r);
        assert!(matches!(
            &sent_to(&fx, &guest)[0],
            ServerMessage::Welcome { .. }
        ));
        assert!(media(&fx).contains(&MediaAction::Subscribe {
            who: guest.clone(),
            publisher: host.clone(),
            source: Source::Camera
        }));
        assert!(sent_to(&fx, &host)
            .iter()
            .any(|m| matches!(m, ServerMessage::ParticipantJoined { .. })));
        assert!(sent_to(&fx, &host).contains(&ServerMessage::LobbyUpdated { waiting: vec![] }));
    }

    #[test]
    fn ending_tells_the_lobby_before_closing_it() {
        let now = Instant::now();
        let mut r = lobby_room();
        let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
        let a = r.join(now, join_msg("A")).unwrap();
        let b = r.join(now, join_msg("B")).unwrap();
        drain(&mut r);
        r.handle(now, &host, C::End {}).unwrap();
        let fx = drain(&mut r);
        for who in [&a, &b] {
            assert_eq!(
                sent_to(&fx, who),
                vec![ServerMessage::Ended { by: "Host".into() }],
                "told the meeting ended, and nothing else (no lobby update)"
            );
            let told = fx
                .iter()
                .position(|e| sent_to(std::slice::from_ref(e), who).len() == 1)
                .unwrap();
            let closed = fx
                .iter()
                .position(|e| *e == Effect::Close { who: who.clone() })
                .expect("their socket closes");
            assert!(told < closed, "told before the socket closes");
        }
        assert!(r.is_empty());
    }

    #[test]
    fn without_a_host_people_wait_and_learn_when_one_arrives() {
        let now = Instant::now();
        let mut r = lobby_room();
        let a = r.join(now, join_msg("A")).unwrap();
        assert_eq!(lobby_msgs(&drain(&mut r), &a), vec![false]);
        let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
        let fx = drain(&mut r);
        assert_eq!(lobby_msgs(&fx, &a), vec![true]);
        assert!(sent_to(&fx, &host)
            .iter()
            .any(|m| matches!(m, ServerMessage::LobbyUpdated { waiting } if waiting.len() == 1)));
    }

    #[test]
    fn denied_people_are_told_and_gone_admit_all_lets_everyone_in() {
        let now = Instant::now();
        let mut r = lobby_room();
        let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
        let a = r.join(now, join_msg("A")).unwrap();
        let b = r.join(now, join_msg("B")).unwrap();
        let c = r.join(now, join_msg("C")).unwrap();
        drain(&mut r);
        assert_eq!(
            r.handle(
                now,
                &a,
                C::Admit {
                    participant_id: b.0.clone()
                }
            )
            .unwrap_err()
            .code,
            ErrorCode::WrongState
        );
        r.handle(
            now,
            &host,
            C::Deny {
                participant_id: a.0.clone(),
            },
        )
        .unwrap();
        let fx = drain(&mut r);
        assert_eq!(sent_to(&fx, &a), vec![ServerMessage::Denied {}]);
        assert!(fx.contains(&Effect::Close { who: a.clone() }));
        r.handle(now, &host, C::AdmitAll {}).unwrap();
        let fx = drain(&mut r);
        for who in [&b, &c] {
            assert!(matches!(
                &sent_to(&fx, who)[0],
                ServerMessage::Welcome { .. }
            ));
        }
        // The host sees both arrive.
        let joined = sent_to(&fx, &host)
            .iter()
            .filter(|m| matches!(m, ServerMessage::ParticipantJoined { .. }))
            .count();
        assert_eq!(joined, 2);
        assert_eq!(r.participant_count(), 3);
    }
}

mod host_mute {
    use super::*;
    use crate::access::{Role, Settings, Who};

    fn setup(settings: Settings) -> (Room, ParticipantId, ParticipantId) {
        let now = Instant::now();
        let mut r = Room::with_settings("m".into(), "t".into(), RoomLimits::default(), settings);
        let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
        let guest = r.join(now, join_msg("Guest")).unwrap();
        r.handle(
            now,
            &guest,
            C::Publish {
                source: Source::Microphone,
            },
        )
        .unwrap();
        drain(&mut r);
        (r, host, guest)
    }

    #[test]
    fn a_host_mute_stops_forwarding_and_the_guest_may_unmute_by_default() {
        let now = Instant::now();
        let (mut r, host, guest) = setup(Settings::default());
        assert_eq!(
            r.handle(
                now,
                &guest,
                C::MuteParticipant {
                    participant_id: host.0.clone()
                }
            )
            .unwrap_err()
            .code,
            ErrorCode::Forbidden
        );
        r.handle(
            now,
            &host,
            C::MuteParticipant {
                participant_id: guest.0.clone(),
            },
        )
        .unwrap();
        let fx = drain(&mut r);
        assert!(media(&fx).contains(&MediaAction::Pause {
            who: guest.clone(),
            source: Source::Microphone,
            paused: true
        }));
        assert!(matches!(
            &sent_to(&fx, &guest)[0],
            ServerMessage::MutedByHost {
                may_unmute: true,
                ..
            }
        ));
        assert!(sent_to(&fx, &host).iter().any(|m| matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.muted.contains(&Source::Microphone))));
        r.handle(
            now,
            &guest,
            C::Mute {
                source: Source::Microphone,
                muted: false,
            },
        )
        .unwrap();
        assert!(media(&drain(&mut r)).contains(&MediaAction::Pause {
            who: guest.clone(),
            source: Source::Microphone,
            paused: false
        }));
    }

    #[test]
    fn when_only_hosts_may_unmute_the_mute_holds() {
        let now = Instant::now();
        let (mut r, host, guest) = setup(Settings {
            unmute: Who::Hosts,
            ..Settings::default()
        });
        r.handle(now, &host, C::MuteAll {}).unwrap();
        let fx = drain(&mut r);
        assert!(matches!(
            &sent_to(&fx, &guest)[0],
            ServerMessage::MutedByHost {
                may_unmute: false,
                ..
            }
        ));
        assert!(
            !media(&fx)
                .iter()
                .any(|m| matches!(m, MediaAction::Pause { who, .. } if *who == host)),
            "mute all spares hosts"
        );
        let e = r
            .handle(
                now,
                &guest,
                C::Mute {
                    source: Source::Microphone,
                    muted: false,
                },
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        // Nor can the microphone come back as a new publication.
        r.handle(
            now,
            &guest,
            C::Unpublish {
                source: Source::Microphone,
            },
        )
        .unwrap();
        let e = r
            .handle(
                now,
                &guest,
                C::Publish {
                    source: Source::Microphone,
                },
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(!media(&drain(&mut r))
            .iter()
            .any(|m| matches!(m, MediaAction::Pause { paused: false, .. })));
    }
}

mod host_controls {
    use super::*;
    use crate::access::{Role, Settings, Who};

    fn key(s: &str) -> Option<String> {
        Some(format!("device:{s}"))
    }

    fn enter(r: &mut Room, name: &str, role: Role, k: &str) -> Result<ParticipantId, RoomError> {
        r.enter(
            Instant::now(),
            join_msg(name),
            Entrant {
                role,
                key: key(k),
                identity: crate::identity::Identity::guest(),
                address: None,
            },
        )
    }

    fn persisted(fx: &[Effect]) -> Vec<Change> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Persist(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    fn publish(r: &mut Room, who: &ParticipantId, source: Source) {
        r.handle(Instant::now(), who, C::Publish { source })
            .unwrap();
    }

    #[test]
    fn a_barred_person_cannot_come_back_but_others_can() {
        let now = Instant::now();
        let mut r = room();
        let host = enter(&mut r, "Host", Role::Host, "h").unwrap();
        let troll = enter(&mut r, "Troll", Role::Participant, "t").unwrap();
        drain(&mut r);
        r.handle(
            now,
            &host,
            C::Remove {
                participant_id: troll.0.clone(),
                bar: true,
            },
        )
        .unwrap();
        let fx = drain(&mut r);
        assert_eq!(
            sent_to(&fx, &troll)[0],
            ServerMessage::Removed {
                by: "Host".into(),
                barred: true,
                reason: None,
                about: None,
            }
        );
        assert_eq!(
            persisted(&fx),
            vec![Change::Bar {
                key: "device:t".into()
            }]
        );
        assert!(fx.iter().any(
            |e| matches!(e, Effect::Audit(f) if f.event == "remove" && f.outcome == "removed and barred")
        ));
        // Under any name: the key, not the name, is barred.
        let e = enter(&mut r, "Someone Else", Role::Participant, "t").unwrap_err();
        assert_eq!(e.code, ErrorCode::Barred);
        assert!(enter(&mut r, "Troll", Role::Participant, "other").is_ok());
        // A restored meeting remembers the bar.
        let mut again = Room::restore(
            "m1".into(),
            "Budget".into(),
            RoomLimits::default(),
            RoomState {
                barred: ["device:t".to_string()].into(),
                ..RoomState::default()
            },
        );
        assert_eq!(
            enter(&mut again, "Troll", Role::Participant, "t")
                .unwrap_err()
                .code,
            ErrorCode::Barred
        );
    }

    #[test]
    fn removing_without_bar_lets_them_rejoin_and_a_keyless_bar_is_reported() {
        let now = Instant::now();
        let mut r = room();
        let host = enter(&mut r, "Host", Role::Host, "h").unwrap();
        let a = enter(&mut r, "A", Role::Participant, "a").unwrap();
        let raw = r.join(now, join_msg("Raw")).unwrap();
        r.handle(
            now,
            &host,
            C::Remove {
                participant_id: a.0.clone(),
                bar: false,
            },
        )
        .unwrap();
        assert!(enter(&mut r, "A", Role::Participant, "a").is_ok());
        drain(&mut r);
        r.handle(
            now,
            &host,
            C::Remove {
                participant_id: raw.0.clone(),
                bar: true,
            },
        )
        .unwrap();
        let fx = drain(&mut r);
        assert!(matches!(
            &sent_to(&fx, &host)[0],
            ServerMessage::Error { code: ErrorCode::Invalid, message } if message.contains("could not be barred")
        ));
        assert!(matches!(
            &sent_to(&fx, &raw)[0],
            ServerMessage::Removed { barred: false, .. }
        ));
        assert!(persisted(&fx).is_empty());
    }

    #[test]
    fn co_hosts_cannot_act_on_the_host() {
        let now = Instant::now();
        let mut r = room();
        let host = enter(&mut r, "Host", Role::Host, "h").unwrap();
        let co = enter(&mut r, "Co", Role::Participant, "c").unwrap();
        r.handle(
            now,
            &host,
            C::SetRole {
                participant_id: co.0.clone(),
                role: Role::CoHost,
            },
        )
        .unwrap();
        publish(&mut r, &host, Source::Camera);
        for msg in [
            C::Remove {
                participant_id: host.0.clone(),
                bar: true,
            },
            C::MuteParticipant {
                participant_id: host.0.clone(),
            },
            C::StopSource {
                participant_id: host.0.clone(),
                source: Source::Camera,
            },
            C::SetRole {
                participant_id: host.0.clone(),
                role: Role::Participant,
            },
            C::SetRole {
                participant_id: co.0.clone(),
                role: Role::Host,
            },
        ] {
            assert_eq!(
                r.handle(now, &co, msg.clone()).unwrap_err().code,
                ErrorCode::Forbidden,
                "{msg:?}"
            );
        }
    }

    #[test]
    fn granted_roles_come_back_with_the_person() {
        let now = Instant::now();
        let mut r = room();
        let host = enter(&mut r, "Host", Role::Host, "h").unwrap();
        let p = enter(&mut r, "Pat", Role::Participant, "p").unwrap();
        drain(&mut r);
        r.handle(
            now,
            &host,
            C::SetRole {
                participant_id: p.0.clone(),
                role: Role::Presenter,
            },
        )
        .unwrap();
        let fx = drain(&mut r);
        assert_eq!(
            persisted(&fx),
            vec![Change::Grant {
                key: "device:p".into(),
                role: Role::Presenter
            }]
        );
        assert!(sent_to(&fx, &p)
            .iter()
            .any(|m| matches!(m, ServerMessage::Permissions { .. })));
        r.handle(now, &p, C::Leave {}).unwrap();
        let back = enter(&mut r, "Pat", Role::Participant, "p").unwrap();
        let fx = drain(&mut r);
        let ServerMessage::Welcome { participants, .. } = &sent_to(&fx, &back)[0] else {
            panic!("welcome")
        };
        assert_eq!(
            participants.iter().find(|x| x.id == back.0).unwrap().role,
            Role::Presenter
        );
        // A grant never lowers what credentials give: a host key stays host.
        let mut state = RoomState::default();
        state.grants.insert("device:h".into(), Role::Presenter);
        let mut restored = Room::restore("m".into(), "t".into(), RoomLimits::default(), state);
        let h = enter(&mut restored, "Host", Role::Host, "h").unwrap();
        let fx = drain(&mut restored);
        let ServerMessage::Welcome { permissions, .. } = &sent_to(&fx, &h)[0] else {
            panic!("welcome")
        };
        assert!(permissions.host);
    }

    #[test]
    fn a_host_stops_a_camera_or_a_screen_share() {
        let now = Instant::now();
        let mut r = room();
        let host = enter(&mut r, "Host", Role::Host, "h").unwrap();
        let g = enter(&mut r, "Guest", Role::Participant, "g").unwrap();
        for s in [Source::Camera, Source::Screen, Source::ScreenAudio] {
            publish(&mut r, &g, s);
        }
        drain(&mut r);
        r.handle(
            now,
            &host,
            C::StopSource {
                participant_id: g.0.clone(),
                source: Source::Screen,
            },
        )
        .unwrap();
        let fx = drain(&mut r);
        assert_eq!(
            media(&fx),
            vec![
                MediaAction::Unpublish {
                    who: g.clone(),
                    source: Source::Screen
                },
                MediaAction::Unpublish {
                    who: g.clone(),
                    source: Source::ScreenAudio
                },
            ]
        );
        assert!(sent_to(&fx, &g).contains(&ServerMessage::SourceStopped {
            source: Source::Screen,
            by: "Host".into()
        }));
        assert!(sent_to(&fx, &host).iter().any(|m| matches!(
            m,
            ServerMessage::ParticipantUpdated { participant } if participant.sources == vec![Source::Camera]
        )));
        assert!(fx.iter().any(
            |e| matches!(e, Effect::Audit(f) if f.event == "stop-source" && f.detail == "source: screen")
        ));
        // Not a microphone (that is a mute), not something not sent, not by a guest.
        for (who, source, code) in [
            (&host, Source::Microphone, ErrorCode::Invalid),
            (&host, Source::Screen, ErrorCode::WrongState),
            (&g, Source::Camera, ErrorCode::Forbidden),
        ] {
            let target = if who == &g { &host } else { &g };
            assert_eq!(
                r.handle(
                    now,
                    who,
                    C::StopSource {
                        participant_id: target.0.clone(),
                        source
                    }
                )
                .unwrap_err()
                .code,
                code
            );
        }
    }

    #[test]
    fn settings_changes_apply_at_once_and_are_remembered() {
        let now = Instant::now();
        let mut r = room();
        let host = enter(&mut r, "Host", Role::Host, "h").unwrap();
        let g = enter(&mut r, "Guest", Role::Participant, "g").unwrap();
        publish(&mut r, &g, Source::Camera);
        publish(&mut r, &g, Source::Screen);
        drain(&mut r);
        let strict = Settings {
            lobby: true,
            screen_share: Who::HostsAndPresenters,
            chat: Who::Hosts,
            guest_cameras: false,
            ..Settings::default()
        };
        assert_eq!(
            r.handle(
                now,
                &g,
                C::UpdateSettings {
                    settings: strict.clone()
                }
            )
            .unwrap_err()
            .code,
            ErrorCode::Forbidden
        );
        r.handle(
            now,
            &host,
            C::UpdateSettings {
                settings: strict.clone(),
            },
        )
        .unwrap();
        let fx = drain(&mut r);
        assert_eq!(persisted(&fx), vec![Change::Settings(strict.clone())]);
        let to_guest = sent_to(&fx, &g);
        assert!(to_guest.contains(&ServerMessage::SettingsUpdated {
            settings: strict.clone()
        }));
        // Their camera and screen stop now; they are told why they cannot restart them.
        assert_eq!(media(&fx).len(), 2, "{:?}", media(&fx));
        let Some(ServerMessage::Permissions { permissions }) = to_guest
            .iter()
            .rev()
            .find(|m| matches!(m, ServerMessage::Permissions { .. }))
        else {
            panic!("permissions")
        };
        assert!(permissions.camera.is_some() && permissions.chat.is_some());
        let audit = fx
            .iter()
            .find_map(|e| match e {
                Effect::Audit(f) if f.event == "settings" => Some(f.detail.clone()),
                _ => None,
            })
            .unwrap();
        assert!(audit.contains("lobby: false -> true"), "{audit}");
        assert!(audit.contains("chat: \"everyone\" -> \"hosts\""), "{audit}");
        assert_eq!(
            r.handle(now, &g, C::Chat { text: "hi".into() })
                .unwrap_err()
                .code,
            ErrorCode::Forbidden
        );
        // The lobby applies to newcomers; switching it off lets them all in.
        let w = enter(&mut r, "Waiting", Role::Participant, "w").unwrap();
        drain(&mut r);
        r.handle(
            now,
            &host,
            C::UpdateSettings {
                settings: Settings {
                    lobby: false,
                    ..strict.clone()
                },
            },
        )
        .unwrap();
        let fx = drain(&mut r);
        assert!(matches!(
            &sent_to(&fx, &w)[0],
            ServerMessage::Welcome { .. }
        ));
        // Nonsense limits are refused.
        assert_eq!(
            r.handle(
                now,
                &host,
                C::UpdateSettings {
                    settings: Settings {
                        max_participants: 0,
                        ..strict
                    }
                }
            )
            .unwrap_err()
            .code,
            ErrorCode::Invalid
        );
    }

    #[test]
    fn lock_is_remembered() {
        let now = Instant::now();
        let mut r = room();
        let host = enter(&mut r, "Host", Role::Host, "h").unwrap();
        drain(&mut r);
        r.handle(now, &host, C::Lock { locked: true }).unwrap();
        assert_eq!(persisted(&drain(&mut r)), vec![Change::Locked(true)]);
        let mut restored = Room::restore(
            "m".into(),
            "t".into(),
            RoomLimits::default(),
            RoomState {
                locked: true,
                ..RoomState::default()
            },
        );
        assert_eq!(
            enter(&mut restored, "New", Role::Participant, "n")
                .unwrap_err()
                .code,
            ErrorCode::Locked
        );
        assert!(enter(&mut restored, "Host", Role::Host, "h").is_ok());
    }
}

mod identities {
    use super::*;
    use crate::access::{Role, Settings};
    use crate::identity::{Identity, Level, LobbyBypass};

    fn verified(level: Level, org: &str, name: &str, mfa: bool) -> Identity {
        Identity {
            level,
            organisation: Some(org.into()),
            name: Some(name.into()),
            mfa,
            subject: Some(format!("{}@{}", name.to_lowercase(), org.to_lowercase())),
        }
    }

    fn come(r: &mut Room, typed: &str, identity: Identity) -> Result<ParticipantId, RoomError> {
        r.enter(
            Instant::now(),
            join_msg(typed),
            Entrant {
                role: Role::Participant,
                key: None,
                identity,
                address: None,
            },
        )
    }

    fn with(settings: Settings) -> (Room, ParticipantId) {
        let mut r = Room::with_settings("m".into(), "t".into(), RoomLimits::default(), settings);
        let host = r
            .join_as(Instant::now(), join_msg("Host"), Role::Host)
            .unwrap();
        drain(&mut r);
        (r, host)
    }

    #[test]
    fn roster_pages_show_mfa_to_hosts_only() {
        let (mut r, _) = with(Settings::default());
        for i in 0..80 {
            come(&mut r, &format!("G{i}"), Identity::guest()).unwrap();
        }
        come(&mut r, "x", verified(Level::Partner, "Other", "Pam", true)).unwrap();
        drain(&mut r);
        // Pam (the 82nd id) is beyond the welcome's first page.
        let pam_in_roster = |msgs: Vec<ServerMessage>| {
            msgs.into_iter().find_map(|m| match m {
                ServerMessage::Roster { participants } => participants
                    .into_iter()
                    .find(|p| p.name == "Pam")
                    .map(|p| p.identity.mfa),
                _ => None,
            })
        };
        let guest = come(&mut r, "Late", Identity::guest()).unwrap();
        assert_eq!(pam_in_roster(sent_to(&drain(&mut r), &guest)), Some(None));
        let host = r
            .join_as(Instant::now(), join_msg("Second host"), Role::Host)
            .unwrap();
        assert_eq!(
            pam_in_roster(sent_to(&drain(&mut r), &host)),
            Some(Some(true))
        );
    }

    #[test]
    fn guests_may_be_kept_out_and_mfa_required_of_verified_people() {
        let (mut r, _) = with(Settings {
            guests_allowed: false,
            require_mfa: true,
            ..Settings::default()
        });
        assert_eq!(
            come(&mut r, "Gail", Identity::guest()).unwrap_err().code,
            ErrorCode::VerificationRequired
        );
        assert_eq!(
            come(&mut r, "x", verified(Level::Partner, "Other", "Pam", false))
                .unwrap_err()
                .code,
            ErrorCode::MfaRequired
        );
        assert!(come(&mut r, "x", verified(Level::Partner, "Other", "Pam", true)).is_ok());
        // The host key holder is not held to these rules.
        assert!(r
            .join_as(Instant::now(), join_msg("Second host"), Role::Host)
            .is_ok());
    }

    #[test]
    fn verified_people_skip_the_lobby_by_rule_and_go_by_their_verified_name() {
        let (mut r, host) = with(Settings {
            lobby: true,
            lobby_bypass: LobbyBypass::Members,
            ..Settings::default()
        });
        let m = come(
            &mut r,
            "typed",
            verified(Level::Member, "Home", "Alice", true),
        )
        .unwrap();
        let p = come(
            &mut r,
            "typed",
            verified(Level::Partner, "Other", "Pam", false),
        )
        .unwrap();
        let g = come(&mut r, "Gail", Identity::guest()).unwrap();
        let fx = drain(&mut r);
        let ServerMessage::Welcome { participants, .. } = &sent_to(&fx, &m)[0] else {
            panic!("the member goes straight in")
        };
        let me = participants.iter().find(|x| x.id == m.0).unwrap();
        assert_eq!(me.name, "Alice");
        assert_eq!(me.identity.level, Level::Member);
        assert_eq!(me.identity.mfa, None, "only hosts see the MFA flag");
        assert!(matches!(sent_to(&fx, &p)[0], ServerMessage::Lobby { .. }));
        assert!(matches!(sent_to(&fx, &g)[0], ServerMessage::Lobby { .. }));
        // The host sees, in the lobby list, who is verified by whom, and MFA.
        let Some(ServerMessage::LobbyUpdated { waiting }) = sent_to(&fx, &host)
            .into_iter()
            .rfind(|m| matches!(m, ServerMessage::LobbyUpdated { .. }))
        else {
            panic!("lobby list")
        };
        assert_eq!(waiting.len(), 2);
        assert_eq!(waiting[0].identity.organisation.as_deref(), Some("Other"));
        assert_eq!(waiting[0].identity.mfa, Some(false));
        assert_eq!(waiting[1].identity.level, Level::Guest);
        assert!(sent_to(&fx, &host).iter().any(|msg| matches!(
            msg,
            ServerMessage::ParticipantJoined { participant } if participant.identity.mfa == Some(true)
        )));
        // Widening the bypass lets the partner in; the guest still waits.
        r.handle(
            Instant::now(),
            &host,
            C::UpdateSettings {
                settings: Settings {
                    lobby: true,
                    lobby_bypass: LobbyBypass::MembersAndPartners,
                    ..Settings::default()
                },
            },
        )
        .unwrap();
        let fx = drain(&mut r);
        assert!(matches!(sent_to(&fx, &p)[0], ServerMessage::Welcome { .. }));
        assert!(sent_to(&fx, &g).is_empty());
        // Everyone is told; only the host's copy says whether the partner used MFA.
        let joined = |who: &ParticipantId| {
            sent_to(&fx, who).into_iter().find_map(|msg| match msg {
                ServerMessage::ParticipantJoined { participant } if participant.id == p.0 => {
                    Some(participant.identity.mfa)
                }
                _ => None,
            })
        };
        assert_eq!(joined(&host), Some(Some(false)));
        assert_eq!(joined(&m), Some(None));
        // The audit log says who was verified by whom.
        let _ = fx;
        r.handle(Instant::now(), &m, C::Chat { text: "hi".into() })
            .unwrap();
        let fx = drain(&mut r);
        let Some(ServerMessage::Chat { message }) = sent_to(&fx, &host).pop() else {
            panic!("chat")
        };
        assert_eq!(message.identity.level, Level::Member);
        assert_eq!(message.identity.mfa, None);
    }

    #[test]
    fn the_audit_log_records_the_identity() {
        let mut r = room();
        come(
            &mut r,
            "typed",
            verified(Level::Member, "Home", "Alice", true),
        )
        .unwrap();
        come(&mut r, "Gail", Identity::guest()).unwrap();
        let details: Vec<String> = drain(&mut r)
            .into_iter()
            .filter_map(|e| match e {
                Effect::Audit(f) if f.event == "join" => Some(f.detail),
                _ => None,
            })
            .collect();
        assert_eq!(
            details,
            vec![
                "name: Alice; identity: member of Home: alice@home, multi-factor".to_string(),
                "name: Gail; identity: guest (unverified)".to_string()
            ]
        );
    }
}

mod levels {
    use super::*;
    use crate::access::{Role, Settings};
    use crate::identity::{Identity, Level};
    use crate::policy::Policy;
    use proptest::prelude::*;
    use std::sync::Arc;

    const FOUR: &str = include_str!("../../../../policies/four-levels.toml");

    fn limits() -> RoomLimits {
        RoomLimits {
            policy: Arc::new(Policy::parse(FOUR).unwrap()),
            sign_in_available: true,
            ..RoomLimits::default()
        }
    }

    fn person(level: Level, mfa: bool) -> Identity {
        match level {
            Level::Guest => Identity::guest(),
            _ => Identity {
                level,
                organisation: Some("Org".into()),
                name: None,
                mfa,
                subject: Some("x@org.example".into()),
            },
        }
    }

    fn room_at(level: &str) -> Room {
        Room::restore(
            "m".into(),
            "t".into(),
            limits(),
            RoomState {
                level: level.into(),
                has_passcode: true,
                ..RoomState::default()
            },
        )
    }

    fn come(
        r: &mut Room,
        name: &str,
        role: Role,
        identity: Identity,
    ) -> Result<ParticipantId, RoomError> {
        r.enter(
            Instant::now(),
            join_msg(name),
            Entrant {
                role,
                key: None,
                identity,
                address: None,
            },
        )
    }

    fn set_level(
        r: &mut Room,
        host: &ParticipantId,
        level: &str,
        raise: bool,
        confirm: bool,
    ) -> Result<(), RoomError> {
        r.handle(
            Instant::now(),
            host,
            C::SetLevel {
                level: level.into(),
                raise,
                confirm,
            },
        )
    }

    #[test]
    fn raising_moves_guests_to_the_lobby_then_out_and_tells_the_hosts() {
        let mut r = room_at("level-0");
        let host = come(&mut r, "Host", Role::Host, person(Level::Member, true)).unwrap();
        let guest = come(&mut r, "Gail", Role::Participant, Identity::guest()).unwrap();
        let partner = come(
            &mut r,
            "Pam",
            Role::Participant,
            person(Level::Partner, false),
        )
        .unwrap();
        r.handle(
            Instant::now(),
            &guest,
            C::Publish {
                source: Source::Camera,
            },
        )
        .unwrap();
        drain(&mut r);
        // Without raising, the settings fall short: every shortfall is named.
        let e = set_level(&mut r, &host, "level-1", false, false).unwrap_err();
        assert_eq!(e.code, ErrorCode::Policy);
        assert!(e.message.contains("requires the lobby"), "{e}");
        set_level(&mut r, &host, "level-1", true, false).unwrap();
        let fx = drain(&mut r);
        assert!(sent_to(&fx, &partner).iter().any(|m| matches!(
            m,
            ServerMessage::MeetingUpdated { meeting } if meeting.level.name == "Protection level 1"
        )));
        // The guest goes back to the lobby; their camera stops.
        assert!(matches!(
            sent_to(&fx, &guest).last(),
            Some(ServerMessage::Lobby { .. })
        ));
        assert!(media(&fx).contains(&MediaAction::Unpublish {
            who: guest.clone(),
            source: Source::Camera
        }));
        assert!(
            sent_to(&fx, &partner).contains(&ServerMessage::ParticipantLeft {
                participant_id: guest.0.clone(),
                reason: LeaveReason::Lobby
            })
        );
        assert!(sent_to(&fx, &host).iter().any(|m| matches!(
            m,
            ServerMessage::Notice { text, about: Some(NoticeAbout::LevelChanged { removed, to_lobby, .. }) }
                if text.contains("Gail wait there") && removed.is_empty() && to_lobby == &["Gail".to_string()]
        )));
        assert!(fx
            .iter()
            .any(|e| matches!(e, Effect::Persist(Change::Level(l)) if l == "level-1")));
        // Level 2 admits no guests and needs MFA: both the guest and the partner go.
        set_level(&mut r, &host, "level-2", true, false).unwrap();
        let fx = drain(&mut r);
        // Each is told why in words and by a code a client words itself.
        for (who, about) in [
            (
                &guest,
                RemovedAbout::LevelVerified {
                    level: "level-2".into(),
                },
            ),
            (
                &partner,
                RemovedAbout::LevelMfa {
                    level: "level-2".into(),
                },
            ),
        ] {
            assert!(
                sent_to(&fx, who).iter().any(|m| matches!(
                    m,
                    ServerMessage::Removed {
                        reason: Some(_),
                        about: Some(a),
                        ..
                    } if *a == about
                )),
                "{who}"
            );
        }
        assert_eq!(r.participant_count(), 1);
        let audit: Vec<(String, String)> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::Audit(f) => Some((f.event.to_string(), f.outcome.clone())),
                _ => None,
            })
            .collect();
        assert!(audit.contains(&("level".into(), "raised".into())));
        assert!(audit.contains(&("remove".into(), "removed by level".into())));
        // Lowering must be confirmed, and is audited.
        let e = set_level(&mut r, &host, "level-0", false, false).unwrap_err();
        assert!(e.message.contains("must be confirmed"));
        set_level(&mut r, &host, "level-0", false, true).unwrap();
        assert!(drain(&mut r).iter().any(
            |e| matches!(e, Effect::Audit(f) if f.event == "level" && f.outcome == "lowered" && f.detail == "Protection level 2 -> Protection level 0")
        ));
        // A level that needs what Convene lacks cannot be chosen.
        let e = set_level(&mut r, &host, "level-3", true, false).unwrap_err();
        assert!(e.message.contains("end-to-end encryption"), "{e}");
    }

    #[test]
    fn admission_and_settings_follow_the_level() {
        let mut r = room_at("level-2");
        // Host key or not, an unverified person cannot join a level-2 meeting.
        let e = come(&mut r, "Hana", Role::Host, Identity::guest()).unwrap_err();
        assert_eq!(e.code, ErrorCode::VerificationRequired);
        assert!(e.message.contains("Protection level 2"));
        let e = come(
            &mut r,
            "Pam",
            Role::Participant,
            person(Level::Partner, false),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::MfaRequired);
        let host = come(&mut r, "Hana", Role::Host, person(Level::Member, true)).unwrap();
        let e = r
            .handle(
                Instant::now(),
                &host,
                C::UpdateSettings {
                    settings: Settings::default(),
                },
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Policy);
        assert!(
            e.message.contains("does not allow unverified guests"),
            "{e}"
        );
    }

    fn arb_identity() -> impl Strategy<Value = Identity> {
        (0..3usize, any::<bool>())
            .prop_map(|(l, mfa)| person([Level::Member, Level::Partner, Level::Guest][l], mfa))
    }

    proptest! {
        /// Raising a level never leaves anyone in the meeting (or its lobby) whom
        /// the higher level forbids, and guests are never left in a meeting whose
        /// new level newly requires the lobby.
        #[test]
        fn raising_never_keeps_someone_the_level_forbids(
            people in proptest::collection::vec((arb_identity(), any::<bool>()), 0..8),
            target in 1..3usize,
        ) {
            let mut r = room_at("level-0");
            let host = come(&mut r, "Host", Role::Host, person(Level::Member, true)).unwrap();
            for (i, (identity, co_host)) in people.iter().enumerate() {
                let id = come(&mut r, &format!("P{i}"), Role::Participant, identity.clone()).unwrap();
                if *co_host {
                    r.handle(Instant::now(), &host, C::SetRole { participant_id: id.0.clone(), role: Role::CoHost }).unwrap();
                }
            }
            let level_id = format!("level-{target}");
            set_level(&mut r, &host, &level_id, true, false).unwrap();
            let policy = Policy::parse(FOUR).unwrap();
            let level = policy.level(&level_id).unwrap();
            for p in r.participants.values() {
                prop_assert!(level.admits(&p.identity).is_ok(), "{:?} stayed", p.identity);
                if level.lobby_required && p.identity.level == Level::Guest && !p.role.is_host() {
                    prop_assert!(!p.admitted, "a guest stayed in past a new lobby");
                }
            }
        }
    }
}

mod review_fixes {
    use super::*;
    use crate::access::{Role, Settings};
    use crate::identity::Identity;

    #[test]
    fn resuming_while_waiting_stays_in_the_lobby() {
        let now = Instant::now();
        let mut r = Room::with_settings(
            "m".into(),
            "t".into(),
            RoomLimits::default(),
            Settings {
                lobby: true,
                ..Settings::default()
            },
        );
        let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
        let _ = host;
        let waiting = r.join(now, join_msg("Wes")).unwrap();
        drain(&mut r);
        let token = r.participants[&waiting].resume_token.clone();
        let back = r
            .join(
                now,
                C::Join {
                    protocol: PROTOCOL_VERSION,
                    name: "Wes".into(),
                    resume: Some(token),
                    passcode: None,
                    host_key: None,
                    e2ee: false,
                },
            )
            .unwrap();
        let fx = drain(&mut r);
        assert_eq!(back, waiting);
        assert!(matches!(
            &sent_to(&fx, &waiting)[..],
            [ServerMessage::Lobby { .. }]
        ));
        assert!(media(&fx).is_empty(), "no media for someone waiting");
    }

    #[test]
    fn turning_the_lobby_off_does_not_let_in_those_the_rules_keep_out() {
        let now = Instant::now();
        let mut r = Room::with_settings(
            "m".into(),
            "t".into(),
            RoomLimits::default(),
            Settings {
                lobby: true,
                ..Settings::default()
            },
        );
        let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
        let guest = r
            .enter(now, join_msg("Gail"), Entrant::participant())
            .unwrap();
        let _ = Identity::guest();
        drain(&mut r);
        r.handle(
            now,
            &host,
            C::UpdateSettings {
                settings: Settings {
                    lobby: false,
                    guests_allowed: false,
                    ..Settings::default()
                },
            },
        )
        .unwrap();
        let fx = drain(&mut r);
        assert!(sent_to(&fx, &guest).contains(&ServerMessage::Denied {}));
        assert_eq!(r.participant_count(), 1);
    }
}

/// A room of 500 places with `people` in it, named P0, P1, …
fn large_meeting(now: Instant, people: usize) -> (Room, Vec<ParticipantId>) {
    let limits = RoomLimits {
        max_participants: 500,
        ..RoomLimits::default()
    };
    let settings = crate::access::Settings {
        max_participants: 500,
        ..Default::default()
    };
    let mut r = Room::with_settings("m1".into(), "Large".into(), limits, settings);
    let people = (0..people)
        .map(|i| r.join(now, join_msg(&format!("P{i}"))).unwrap())
        .collect();
    (r, people)
}

#[test]
fn a_large_meeting_is_described_to_a_joiner_in_pages() {
    let now = Instant::now();
    let (mut r, people) = large_meeting(now, 120);
    for (i, who) in people.iter().take(25).enumerate() {
        let text = format!("message {i}");
        r.handle(now, who, C::Chat { text }).unwrap();
    }
    drain(&mut r);
    let late = r.join(now, join_msg("Late")).unwrap();
    let to_late = sent_to(&drain(&mut r), &late);

    let ServerMessage::Welcome {
        participants, chat, ..
    } = &to_late[0]
    else {
        panic!("welcome first, got {:?}", to_late[0])
    };
    assert_eq!(participants.len(), 50);
    assert_eq!(participants[0].id, late.0, "the receiver comes first");
    let mut everyone: Vec<String> = participants.iter().map(|p| p.id.clone()).collect();
    let mut texts: Vec<String> = chat.iter().map(|m| m.text.clone()).collect();
    let mut page_sizes = Vec::new();
    for m in &to_late[1..] {
        match m {
            ServerMessage::Roster { participants } => {
                page_sizes.push(participants.len());
                everyone.extend(participants.iter().map(|p| p.id.clone()));
            }
            ServerMessage::ChatHistory { messages } => {
                texts.extend(messages.iter().map(|m| m.text.clone()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(page_sizes, vec![50, 21]);
    assert_eq!(
        to_late.len() + 1 + questions::MOST_PAGES,
        crate::welcome_messages(121, 25),
        "the edge sizes its queues by this (with a webinar's most besides)"
    );
    everyone.sort();
    everyone.dedup();
    assert_eq!(everyone.len(), 121, "everyone once, the receiver included");
    let expected: Vec<String> = (0..25).map(|i| format!("message {i}")).collect();
    assert_eq!(texts, expected, "all the chat, oldest first");
}

#[test]
fn a_change_is_queued_once_for_everyone_not_once_per_person() {
    let now = Instant::now();
    let (mut r, people) = large_meeting(now, 200);
    drain(&mut r);
    r.connection_lost(now, &people[0]);
    let fx = drain(&mut r);
    let messages = fx
        .iter()
        .filter(|e| matches!(e, Effect::Send { .. } | Effect::Broadcast { .. }))
        .count();
    assert_eq!(messages, 1, "one message for all 199 others");
    for who in &people[1..] {
        assert!(sent_to(&fx, who).iter().any(|m| matches!(
            m,
            ServerMessage::ParticipantUpdated { participant }
                if participant.id == people[0].0 && !participant.connected
        )));
    }
}

/// The lobby has seats of its own: waiting takes no seat in the meeting, one
/// address cannot fill it, nobody waits for ever, and those who run the
/// meeting always get in.
mod lobby_seats {
    use super::*;
    use crate::access::{Role, Settings};

    fn limits(max_participants: usize) -> RoomLimits {
        RoomLimits {
            max_participants,
            max_waiting: 6,
            max_waiting_per_address: 3,
            ..RoomLimits::default()
        }
    }

    fn lobby_room(max_participants: usize) -> Room {
        Room::with_settings(
            "m".into(),
            "t".into(),
            limits(max_participants),
            Settings {
                lobby: true,
                ..Settings::default()
            },
        )
    }

    fn from(r: &mut Room, now: Instant, name: &str, ip: &str) -> Result<ParticipantId, RoomError> {
        r.enter(
            now,
            join_msg(name),
            Entrant {
                address: Some(ip.parse().unwrap()),
                ..Entrant::participant()
            },
        )
    }

    fn waiting(fx: &[Effect], host: &ParticipantId) -> Option<usize> {
        sent_to(fx, host).iter().rev().find_map(|m| match m {
            ServerMessage::LobbyUpdated { waiting } => Some(waiting.len()),
            _ => None,
        })
    }

    #[test]
    fn people_waiting_take_no_seat_and_cannot_keep_the_host_out() {
        let now = Instant::now();
        let mut r = lobby_room(3);
        for i in 0..5 {
            from(&mut r, now, &format!("W{i}"), &format!("10.0.0.{i}")).unwrap();
        }
        drain(&mut r);
        let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
        let fx = drain(&mut r);
        assert!(matches!(
            &sent_to(&fx, &host)[0],
            ServerMessage::Welcome { .. }
        ));
        assert_eq!(waiting(&fx, &host), Some(5));
        // People the lobby lets straight in still find seats: the host and two.
        let mut r2 = Room::new("m".into(), "t".into(), limits(3));
        r2.join_as(now, join_msg("Host"), Role::Host).unwrap();
        r2.join(now, join_msg("A")).unwrap();
        r2.join(now, join_msg("B")).unwrap();
        assert_eq!(
            r2.join(now, join_msg("C")).unwrap_err().code,
            ErrorCode::MeetingFull
        );
    }

    #[test]
    fn hosts_and_co_hosts_get_into_a_full_meeting() {
        let now = Instant::now();
        let mut state = RoomState::default();
        state.grants.insert("device:co".into(), Role::CoHost);
        let mut r = Room::restore("m".into(), "t".into(), limits(2), state);
        let a = r.join(now, join_msg("A")).unwrap();
        r.join(now, join_msg("B")).unwrap();
        assert_eq!(
            r.join(now, join_msg("C")).unwrap_err().code,
            ErrorCode::MeetingFull
        );
        r.join_as(now, join_msg("Host"), Role::Host).unwrap();
        let co = r
            .enter(
                now,
                join_msg("Co"),
                Entrant {
                    key: Some("device:co".into()),
                    ..Entrant::participant()
                },
            )
            .unwrap();
        assert_eq!(r.participant_info(&co).role, Role::CoHost);
        assert_eq!(r.participant_count(), 4);
        // Hosts count: with one participant gone, three are still in, over the limit.
        r.handle(now, &a, C::Leave {}).unwrap();
        assert_eq!(
            r.join(now, join_msg("C")).unwrap_err().code,
            ErrorCode::MeetingFull
        );
    }

    #[test]
    fn the_lobby_is_capped_in_all_and_per_address() {
        let now = Instant::now();
        let mut r = lobby_room(100);
        for i in 0..3 {
            from(&mut r, now, &format!("A{i}"), "192.0.2.1").unwrap();
        }
        let e = from(&mut r, now, "A3", "192.0.2.1").unwrap_err();
        assert_eq!(e.code, ErrorCode::LobbyFull);
        assert!(e.message.contains("your network address"), "{e}");
        // The same address written as IPv4-mapped IPv6 is the same address.
        assert_eq!(
            from(&mut r, now, "A4", "::ffff:192.0.2.1")
                .unwrap_err()
                .code,
            ErrorCode::LobbyFull
        );
        // Another address still waits; an IPv6 client is counted by its /64.
        let b = from(&mut r, now, "B", "192.0.2.2").unwrap();
        from(&mut r, now, "V0", "2001:db8:1:2::1").unwrap();
        from(&mut r, now, "V1", "2001:db8:1:2:aaaa::9").unwrap();
        assert_eq!(r.participant_count(), 6);
        // Six wait: the lobby is full for everyone, known address or not.
        let e = from(&mut r, now, "C", "192.0.2.3").unwrap_err();
        assert_eq!(e.code, ErrorCode::LobbyFull);
        assert!(e.message.contains("lobby of this meeting is full"), "{e}");
        assert_eq!(
            r.join(now, join_msg("D")).unwrap_err().code,
            ErrorCode::LobbyFull
        );
        // The host is not kept out, and someone leaving frees a place.
        r.join_as(now, join_msg("Host"), Role::Host).unwrap();
        r.connection_lost(now, &b);
        from(&mut r, now, "C", "192.0.2.3").unwrap();
        assert_eq!(
            from(&mut r, now, "E", "192.0.2.4").unwrap_err().code,
            ErrorCode::LobbyFull
        );
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_network() {
        let now = Instant::now();
        let mut r = lobby_room(100);
        for ip in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"] {
            from(&mut r, now, "V", ip).unwrap();
        }
        assert_eq!(
            from(&mut r, now, "V", "2001:db8:1:2:abcd:1:2:3")
                .unwrap_err()
                .code,
            ErrorCode::LobbyFull
        );
        from(&mut r, now, "W", "2001:db8:1:3::1").unwrap();
    }

    #[test]
    fn admit_all_lets_in_the_longest_waiting_first() {
        let t0 = Instant::now();
        let mut r = Room::with_settings(
            "m".into(),
            "t".into(),
            RoomLimits {
                max_participants: 3,
                ..RoomLimits::default()
            },
            Settings {
                lobby: true,
                ..Settings::default()
            },
        );
        let host = r.join_as(t0, join_msg("Host"), Role::Host).unwrap();
        // Eleven wait, one a second: p2 first, p12 last ("p10" sorts before "p2").
        let w: Vec<ParticipantId> = (0..11)
            .map(|i| {
                r.join(t0 + Duration::from_secs(i), join_msg(&format!("W{i}")))
                    .unwrap()
            })
            .collect();
        drain(&mut r);
        r.handle(t0, &host, C::AdmitAll {}).unwrap_err();
        let fx = drain(&mut r);
        let welcomed: Vec<&ParticipantId> = w
            .iter()
            .filter(|id| {
                sent_to(&fx, id)
                    .iter()
                    .any(|m| matches!(m, ServerMessage::Welcome { .. }))
            })
            .collect();
        assert_eq!(welcomed, vec![&w[0], &w[1]]);
    }

    #[test]
    fn admitting_needs_a_seat_but_a_co_host_always_has_one() {
        let now = Instant::now();
        // The host and two more.
        let mut r = lobby_room(3);
        let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
        let w: Vec<ParticipantId> = (0..5)
            .map(|i| from(&mut r, now, &format!("W{i}"), &format!("10.0.1.{i}")).unwrap())
            .collect();
        r.handle(
            now,
            &host,
            C::Admit {
                participant_id: w[0].0.clone(),
            },
        )
        .unwrap();
        drain(&mut r);
        // Admit all: as many as fit, longest waiting first; the rest wait on.
        let e = r.handle(now, &host, C::AdmitAll {}).unwrap_err();
        assert_eq!(e.code, ErrorCode::Invalid);
        assert!(e.message.contains("full"), "{e}");
        let fx = drain(&mut r);
        assert!(matches!(
            &sent_to(&fx, &w[1])[0],
            ServerMessage::Welcome { .. }
        ));
        assert!(sent_to(&fx, &w[2]).is_empty());
        assert_eq!(waiting(&fx, &host), Some(3));
        assert_eq!(
            r.handle(
                now,
                &host,
                C::Admit {
                    participant_id: w[2].0.clone()
                }
            )
            .unwrap_err()
            .code,
            ErrorCode::Invalid
        );
        // Made co-host while waiting, they come in all the same.
        r.handle(
            now,
            &host,
            C::SetRole {
                participant_id: w[2].0.clone(),
                role: Role::CoHost,
            },
        )
        .unwrap();
        r.handle(
            now,
            &host,
            C::Admit {
                participant_id: w[2].0.clone(),
            },
        )
        .unwrap();
        drain(&mut r);
        // Turning the lobby off lets in whoever fits (no one): the others
        // wait on, and the hosts are told.
        r.handle(
            now,
            &host,
            C::UpdateSettings {
                settings: Settings::default(),
            },
        )
        .unwrap();
        let fx = drain(&mut r);
        assert!(sent_to(&fx, &host)
            .iter()
            .any(|m| matches!(m, ServerMessage::Notice { text, about: Some(NoticeAbout::MeetingFull { waiting: 2 }) } if text.contains("2 still wait"))));
        assert!(sent_to(&fx, &w[3])
            .iter()
            .all(|m| !matches!(m, ServerMessage::Welcome { .. })));
        assert_eq!(r.participant_count(), 6);
    }

    #[test]
    fn waiting_too_long_ends_with_a_reason() {
        let t0 = Instant::now();
        let mut r = lobby_room(100);
        let w = from(&mut r, t0, "W", "10.0.0.1").unwrap();
        let host = r.join_as(t0, join_msg("Host"), Role::Host).unwrap();
        let later = t0 + Duration::from_secs(10 * 60);
        let w2 = from(&mut r, later, "W2", "10.0.0.2").unwrap();
        drain(&mut r);
        r.tick(t0 + RoomLimits::DEFAULT_LOBBY_TIMEOUT - Duration::from_secs(1));
        assert!(drain(&mut r).is_empty(), "nobody has waited too long yet");
        r.tick(t0 + RoomLimits::DEFAULT_LOBBY_TIMEOUT);
        let fx = drain(&mut r);
        let told = sent_to(&fx, &w);
        assert!(
            matches!(&told[..], [ServerMessage::Error { code: ErrorCode::LobbyTimeout, message }] if message.contains("30 minutes")),
            "{told:?}"
        );
        let close = fx
            .iter()
            .position(|e| *e == Effect::Close { who: w.clone() });
        let error = fx
            .iter()
            .position(|e| matches!(e, Effect::Send { to, .. } if *to == w));
        assert!(
            error < close && close.is_some(),
            "told before the socket closes"
        );
        assert!(fx.iter().any(|e| matches!(e, Effect::Audit(f)
            if f.event == "leave" && f.subject == w.0 && f.outcome == "lobby timed out")));
        assert_eq!(waiting(&fx, &host), Some(1));
        assert!(sent_to(&fx, &w2).is_empty());
        // The host, admitted, stays; the later arrival waits the full time too.
        assert_eq!(r.participant_count(), 2);
        r.tick(later + RoomLimits::DEFAULT_LOBBY_TIMEOUT);
        assert!(drain(&mut r).contains(&Effect::Close { who: w2 }));
        assert_eq!(r.participant_count(), 1);
    }

    #[test]
    fn admitted_people_are_not_timed_out() {
        let t0 = Instant::now();
        let mut r = lobby_room(100);
        let host = r.join_as(t0, join_msg("Host"), Role::Host).unwrap();
        let w = from(&mut r, t0, "W", "10.0.0.1").unwrap();
        r.handle(
            t0,
            &host,
            C::Admit {
                participant_id: w.0.clone(),
            },
        )
        .unwrap();
        drain(&mut r);
        r.tick(t0 + 2 * RoomLimits::DEFAULT_LOBBY_TIMEOUT);
        assert!(drain(&mut r).is_empty());
        assert_eq!(r.participant_count(), 2);
    }
}

/// Names and chat cannot pass for a role or turn text around.
mod spoofing {
    use super::*;

    #[test]
    fn a_name_imitating_a_role_is_refused_with_a_reason() {
        let now = Instant::now();
        let mut r = room();
        for name in ["Someone (host)", "Someone [Co-Host]", "Sam (ho\u{200B}st)"] {
            let e = r.join(now, join_msg(name)).unwrap_err();
            assert_eq!(e.code, ErrorCode::Invalid, "{name:?}");
            assert!(e.message.contains("roles"), "{e}");
        }
        assert!(r.is_empty());
    }

    #[test]
    fn names_lose_hidden_and_direction_characters() {
        let now = Instant::now();
        let mut r = room();
        let a = r
            .join(now, join_msg("Bob\u{202E}nimda\u{200B}\u{FEFF}"))
            .unwrap();
        let b = r.join(now, join_msg("Ame\u{301}lie")).unwrap();
        assert_eq!(r.participant_info(&a).name, "Bobnimda");
        assert_eq!(r.participant_info(&b).name, "Am\u{E9}lie");
    }

    #[test]
    fn chat_cannot_reverse_what_follows() {
        let now = Instant::now();
        let mut r = room();
        let a = r.join(now, join_msg("A")).unwrap();
        drain(&mut r);
        r.handle(
            now,
            &a,
            C::Chat {
                text: "file\u{202E}gpj.exe \u{2067}x\u{2069}".into(),
            },
        )
        .unwrap();
        let fx = drain(&mut r);
        assert!(
            matches!(&sent_to(&fx, &a)[0], ServerMessage::Chat { message } if message.text == "filegpj.exe x"),
            "{fx:?}"
        );
        // Nothing but direction marks: nothing to send.
        assert_eq!(
            r.handle(
                now,
                &a,
                C::Chat {
                    text: " \u{202E}\u{200F} ".into()
                }
            )
            .unwrap_err()
            .code,
            ErrorCode::Invalid
        );
    }
}

mod media_connection {
    use super::*;
    use crate::access::Role;
    use crate::protocol::MediaPath;

    #[test]
    fn an_ice_restart_is_asked_of_the_media_layer_at_most_every_two_seconds() {
        let now = Instant::now();
        let mut r = room();
        let ann = r.join(now, join_msg("Ann")).unwrap();
        drain(&mut r);
        r.handle(now, &ann, C::RestartIce {}).unwrap();
        assert_eq!(
            media(&drain(&mut r)),
            vec![MediaAction::RestartIce { who: ann.clone() }]
        );
        let again = r.handle(now + Duration::from_millis(500), &ann, C::RestartIce {});
        assert_eq!(again.unwrap_err().code, ErrorCode::RateLimited);
        assert!(media(&drain(&mut r)).is_empty());
        r.handle(now + Duration::from_secs(2), &ann, C::RestartIce {})
            .unwrap();
        assert_eq!(media(&drain(&mut r)).len(), 1);
    }

    #[test]
    fn a_media_path_is_shown_to_hosts_only_and_only_when_it_changes() {
        let now = Instant::now();
        let mut r = room();
        let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
        let guest = r.join(now, join_msg("Guest")).unwrap();
        drain(&mut r);
        let path = C::MediaPath {
            path: MediaPath::Relay,
        };
        r.handle(now, &guest, path.clone()).unwrap();
        let fx = drain(&mut r);
        let seen = |who: &ParticipantId| {
            sent_to(&fx, who).into_iter().find_map(|m| match m {
                ServerMessage::ParticipantUpdated { participant } => Some(participant.media_path),
                _ => None,
            })
        };
        assert_eq!(
            seen(&host),
            Some(Some(MediaPath::Relay)),
            "the host sees the relay"
        );
        assert_eq!(seen(&guest), None, "others are not told");
        r.handle(now, &guest, path).unwrap();
        assert!(drain(&mut r).is_empty(), "the same path again says nothing");
    }
}

/// Issue 17, bug 11: a host sets, changes or removes the passcode during the meeting.
mod set_passcode {
    use super::*;
    use crate::access::Role;

    fn set(r: &mut Room, who: &ParticipantId, passcode: Option<&str>) -> Result<(), RoomError> {
        r.handle(
            Instant::now(),
            who,
            C::SetPasscode {
                passcode: passcode.map(str::to_string),
            },
        )
    }

    fn audited(fx: &[Effect]) -> Vec<String> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Audit(f) if f.event == "passcode" => Some(f.outcome.clone()),
                _ => None,
            })
            .collect()
    }

    fn raise_to_sensitive(r: &mut Room, host: &ParticipantId) -> Result<(), RoomError> {
        r.handle(
            Instant::now(),
            host,
            C::SetLevel {
                level: "official-sensitive".into(),
                raise: true,
                confirm: false,
            },
        )
    }

    #[test]
    fn a_host_adds_a_passcode_and_can_then_raise_the_level() {
        let now = Instant::now();
        let mut r = room();
        let host = r.join_as(now, join_msg("Hana"), Role::Host).unwrap();
        let gus = r.join(now, join_msg("Gus")).unwrap();
        drain(&mut r);
        // Without a passcode, OFFICIAL-SENSITIVE is out of reach.
        let refused = raise_to_sensitive(&mut r, &host).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Policy);
        assert!(refused.message.contains("requires a passcode"), "{refused}");
        drain(&mut r);

        // Only hosts may; and a passcode has 4 to 128 characters.
        assert_eq!(
            set(&mut r, &gus, Some("4711 blue")).unwrap_err().code,
            ErrorCode::Forbidden
        );
        assert_eq!(
            set(&mut r, &host, Some("123")).unwrap_err().code,
            ErrorCode::Invalid
        );
        assert!(drain(&mut r).is_empty(), "nothing happens for a refusal");

        // The room asks for a hash; nothing changes until it comes.
        set(&mut r, &host, Some("4711 blue")).unwrap();
        let fx = drain(&mut r);
        assert!(
            matches!(&fx[..], [Effect::HashPasscode { by, passcode }] if by == &host && passcode == "4711 blue"),
            "{fx:?}"
        );
        assert!(!r.info().passcode);

        r.passcode_hashed(&host, "$argon2id$hash".into());
        let fx = drain(&mut r);
        assert!(fx.iter().any(
            |e| matches!(e, Effect::Persist(Change::Passcode(Some(h))) if h == "$argon2id$hash")
        ));
        assert_eq!(audited(&fx), ["set"]);
        assert!(sent_to(&fx, &gus)
            .iter()
            .any(|m| matches!(m, ServerMessage::MeetingUpdated { meeting } if meeting.passcode)));
        assert!(
            !format!("{fx:?}").contains("4711"),
            "the passcode itself is in no message, record or audit entry"
        );

        raise_to_sensitive(&mut r, &host).unwrap();
        assert_eq!(r.level().id, "official-sensitive");
        drain(&mut r);

        // Changed: audited as such. Removed: refused, the level requires one.
        set(&mut r, &host, Some("new phrase")).unwrap();
        drain(&mut r);
        r.passcode_hashed(&host, "$argon2id$other".into());
        assert_eq!(audited(&drain(&mut r)), ["changed"]);
        let refused = set(&mut r, &host, None).unwrap_err();
        assert_eq!(refused.code, ErrorCode::PasscodeKept);
        assert!(r.info().passcode);
    }

    #[test]
    fn one_passcode_hash_at_a_time_and_the_hash_never_in_a_debug_print() {
        // Hashing threads are the server's: a host flooding set-passcode
        // gets busy while one is being hashed, removal included, so the
        // last request is the one applied.
        let now = Instant::now();
        let mut r = room();
        let host = r.join_as(now, join_msg("Hana"), Role::Host).unwrap();
        drain(&mut r);
        set(&mut r, &host, Some("first phrase")).unwrap();
        for again in [Some("second phrase"), None] {
            assert_eq!(set(&mut r, &host, again).unwrap_err().code, ErrorCode::Busy);
        }
        let fx = drain(&mut r);
        assert_eq!(
            fx.iter()
                .filter(|e| matches!(e, Effect::HashPasscode { .. }))
                .count(),
            1,
            "one hash asked for"
        );
        r.passcode_hashed(&host, "$argon2id$secret".into());
        let fx = drain(&mut r);
        assert!(!format!("{fx:?}").contains("argon2id"), "{fx:?}");
        // Applied: another change may follow; a failed hash frees it too.
        set(&mut r, &host, Some("third phrase")).unwrap();
        r.passcode_hash_failed();
        set(&mut r, &host, Some("fourth phrase")).unwrap();
    }

    #[test]
    fn a_host_removes_a_passcode_the_level_does_not_need() {
        let now = Instant::now();
        let mut r = Room::restore(
            "m".into(),
            "t".into(),
            RoomLimits::default(),
            RoomState {
                has_passcode: true,
                ..RoomState::default()
            },
        );
        let host = r.join_as(now, join_msg("Hana"), Role::Host).unwrap();
        drain(&mut r);
        set(&mut r, &host, Some("")).unwrap();
        let fx = drain(&mut r);
        assert!(fx
            .iter()
            .any(|e| matches!(e, Effect::Persist(Change::Passcode(None)))));
        assert_eq!(audited(&fx), ["removed"]);
        assert!(!r.info().passcode);
    }

    #[test]
    fn a_hash_for_someone_no_longer_a_host_changes_nothing() {
        let now = Instant::now();
        let mut r = room();
        let host = r.join_as(now, join_msg("Hana"), Role::Host).unwrap();
        let other = r.join_as(now, join_msg("Olga"), Role::Host).unwrap();
        set(&mut r, &host, Some("4711 blue")).unwrap();
        r.handle(
            now,
            &other,
            C::SetRole {
                participant_id: host.0.clone(),
                role: Role::Participant,
            },
        )
        .unwrap();
        drain(&mut r);
        r.passcode_hashed(&host, "$argon2id$hash".into());
        assert!(audited(&drain(&mut r)).is_empty());
        assert!(!r.info().passcode);
    }
}
