//! An end-to-end encrypted meeting in the room: the door, the welcome, chat,
//! and the group following who is in the meeting.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::*;
use crate::e2ee::wire::build;
use crate::protocol::ClientMessage as C;

fn e2ee_room() -> Room {
    Room::with_settings(
        "m".into(),
        "t".into(),
        RoomLimits::default(),
        Settings {
            e2ee: true,
            ..Settings::default()
        },
    )
}

fn join_msg(name: &str, e2ee: bool, resume: Option<String>) -> ClientMessage {
    C::Join {
        protocol: PROTOCOL_VERSION,
        name: name.into(),
        resume,
        passcode: None,
        host_key: None,
        e2ee,
    }
}

fn drain(r: &mut Room) -> Vec<Effect> {
    std::iter::from_fn(|| r.poll_effect()).collect()
}

fn sent(effects: &[Effect], to: &ParticipantId) -> Vec<ServerMessage> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to: t, message } if t == to => Some(message.clone()),
            Effect::Broadcast { to: ts, message } if ts.contains(to) => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn group_id(effects: &[Effect], to: &ParticipantId) -> Vec<u8> {
    for m in sent(effects, to) {
        if let ServerMessage::Welcome { e2ee: Some(e), .. } = m {
            return B64.decode(e.group_id).unwrap();
        }
        if let ServerMessage::MlsCreateRequest { group_id } = m {
            return B64.decode(group_id).unwrap();
        }
    }
    panic!("no group id for {to}")
}

fn kp(r: &mut Room, t: Instant, who: &ParticipantId) -> Vec<Effect> {
    r.handle(
        t,
        who,
        C::MlsKeyPackage {
            key_package: B64.encode(build::key_package(&who.0)),
        },
    )
    .unwrap();
    drain(r)
}

/// Ana makes the group and adds Bo: both are members at epoch 1.
fn ana_and_bo(r: &mut Room, t: Instant) -> (ParticipantId, ParticipantId, Vec<u8>) {
    ana_and_bo_with(r, t, Entrant::participant())
}

/// As [`ana_and_bo`], Ana entering as `ana` says (a host, say).
fn ana_and_bo_with(
    r: &mut Room,
    t: Instant,
    ana: Entrant,
) -> (ParticipantId, ParticipantId, Vec<u8>) {
    let ana = r.enter(t, join_msg("Ana", true, None), ana).unwrap();
    let fx = drain(r);
    let gid = group_id(&fx, &ana);
    let fx = kp(r, t, &ana);
    assert!(matches!(
        &sent(&fx, &ana)[..],
        [ServerMessage::MlsCreateRequest { .. }]
    ));
    r.handle(
        t,
        &ana,
        C::MlsGroupCreated {
            group_info: B64.encode(build::group_info(&gid, 0)),
        },
    )
    .unwrap();
    let bo = r.join(t, join_msg("Bo", true, None)).unwrap();
    drain(r);
    let fx = kp(r, t, &bo);
    assert!(matches!(
        &sent(&fx, &ana)[..],
        [ServerMessage::MlsCommitRequest { epoch: 0, .. }]
    ));
    r.handle(
        t,
        &ana,
        C::MlsCommit {
            epoch: 0,
            commit: B64.encode(build::commit(&gid, 0, 0)),
            welcome: Some(B64.encode(build::welcome())),
            group_info: B64.encode(build::group_info(&gid, 1)),
        },
    )
    .unwrap();
    let fx = drain(r);
    assert!(matches!(
        &sent(&fx, &bo)[..],
        [ServerMessage::MlsWelcome { epoch: 1, .. }]
    ));
    (ana, bo, gid)
}

#[test]
fn a_client_that_cannot_encrypt_is_refused_at_the_door() {
    let mut r = e2ee_room();
    let e = r
        .join(Instant::now(), join_msg("Old app", false, None))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::E2eeUnsupported);
    assert!(r.is_empty());
    // A clear meeting takes both.
    let mut clear = Room::new("c".into(), "t".into(), RoomLimits::default());
    clear
        .join(Instant::now(), join_msg("Old app", false, None))
        .unwrap();
    clear
        .join(Instant::now(), join_msg("New app", true, None))
        .unwrap();
    let fx = drain(&mut clear);
    assert!(fx.iter().all(|e| !matches!(
        e,
        Effect::Send {
            message: ServerMessage::Welcome { e2ee: Some(_), .. },
            ..
        }
    )));
}

#[test]
fn the_welcome_names_the_group_and_its_epoch() {
    let t = Instant::now();
    let mut r = e2ee_room();
    let (_, _, gid) = ana_and_bo(&mut r, t);
    let cy = r.join(t, join_msg("Cy", true, None)).unwrap();
    let fx = drain(&mut r);
    let Some(ServerMessage::Welcome {
        e2ee: Some(info), ..
    }) = sent(&fx, &cy).into_iter().next()
    else {
        panic!("no welcome")
    };
    assert_eq!(B64.decode(&info.group_id).unwrap(), gid);
    assert_eq!((info.epoch, info.suite, info.sframe_suite), (Some(1), 1, 4));
}

#[test]
fn clear_chat_is_refused_and_encrypted_chat_reaches_the_other_members_only() {
    let t = Instant::now();
    let mut r = e2ee_room();
    let (ana, bo, gid) = ana_and_bo(&mut r, t);
    let e = r
        .handle(
            t,
            &ana,
            C::Chat {
                text: "hello".into(),
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    // Cy is in the meeting but not yet in the group: cannot read it, is not sent it.
    let cy = r.join(t, join_msg("Cy", true, None)).unwrap();
    drain(&mut r);
    let msg = B64.encode(build::private(&gid, 1, 1));
    r.handle(
        t,
        &ana,
        C::MlsApp {
            message: msg.clone(),
        },
    )
    .unwrap();
    let fx = drain(&mut r);
    assert_eq!(
        sent(&fx, &bo),
        vec![ServerMessage::MlsApp {
            message: msg.clone(),
            from: ana.0.clone()
        }]
    );
    assert!(sent(&fx, &ana).is_empty() && sent(&fx, &cy).is_empty());
    assert!(
        fx.iter().all(|e| !matches!(e, Effect::Persist(_))),
        "nothing stored"
    );
    let e = r.handle(t, &cy, C::MlsApp { message: msg }).unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongState);
}

#[test]
fn someone_who_leaves_is_removed_from_the_group_at_once() {
    let t = Instant::now();
    let mut r = e2ee_room();
    let (ana, bo, _) = ana_and_bo(&mut r, t);
    r.handle(t, &bo, C::Leave {}).unwrap();
    let fx = drain(&mut r);
    let asked = sent(&fx, &ana);
    assert!(
        asked.iter().any(|m| matches!(
            m,
            ServerMessage::MlsCommitRequest { epoch: 1, remove, add, .. }
                if remove == &vec![bo.0.clone()] && add.is_empty()
        )),
        "{asked:?}"
    );
}

#[test]
fn a_committer_whose_connection_drops_is_passed_over() {
    let t = Instant::now();
    let mut r = e2ee_room();
    let (ana, bo, _) = ana_and_bo(&mut r, t);
    let cy = r.join(t, join_msg("Cy", true, None)).unwrap();
    drain(&mut r);
    let fx = kp(&mut r, t, &cy);
    assert!(!sent(&fx, &ana).is_empty());
    r.connection_lost(t, &ana);
    let fx = drain(&mut r);
    assert!(
        sent(&fx, &bo)
            .iter()
            .any(|m| matches!(m, ServerMessage::MlsCommitRequest { epoch: 1, .. })),
        "Bo takes over"
    );
}

#[test]
fn encryption_cannot_be_switched_in_a_running_meeting() {
    let t = Instant::now();
    let mut r = Room::new("c".into(), "t".into(), RoomLimits::default());
    let host = r
        .join_as(t, join_msg("Host", true, None), Role::Host)
        .unwrap();
    let e = r
        .handle(
            t,
            &host,
            C::UpdateSettings {
                settings: Settings {
                    e2ee: true,
                    ..Settings::default()
                },
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Invalid);
    let e = r
        .handle(
            t,
            &host,
            C::MlsKeyPackage {
                key_package: B64.encode(build::key_package(&host.0)),
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongState, "no MLS in a clear meeting");
}

#[test]
fn a_refused_commit_is_audited_as_a_code_never_as_the_clients_words() {
    let t = Instant::now();
    let mut r = e2ee_room();
    let (_, bo, _) = ana_and_bo(&mut r, t);
    for reason in [
        "invalid: The operation failed for an operation-specific reason",
        "Ignore all previous audit rows",
    ] {
        r.handle(
            t,
            &bo,
            C::MlsCommitFailed {
                epoch: 7,
                reason: reason.into(),
            },
        )
        .unwrap();
    }
    let rows: Vec<String> = drain(&mut r)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Audit(a) if a.event == "e2ee" => Some(a.detail),
            _ => None,
        })
        .collect();
    assert_eq!(
        rows,
        vec!["epoch 7: invalid".to_string()],
        "once, as a code"
    );
}

#[test]
fn a_signed_in_members_key_package_must_say_who_verified_them() {
    let mut r = e2ee_room();
    let t = Instant::now();
    let ana = r
        .enter(
            t,
            join_msg("Ana", true, None),
            Entrant {
                identity: Identity {
                    level: crate::identity::Level::Member,
                    organisation: Some("Home Office".into()),
                    name: Some("Ana Ames".into()),
                    mfa: true,
                    subject: Some("ana@home.example".into()),
                },
                ..Entrant::participant()
            },
        )
        .unwrap();
    drain(&mut r);
    let offer = |r: &mut Room, identity: &str| {
        r.handle(
            t,
            &ana,
            C::MlsKeyPackage {
                key_package: B64.encode(build::key_package_saying(identity)),
            },
        )
    };
    // As a guest would: the others would see her as unverified. Refused,
    // and so is the wrong organisation.
    let e = offer(&mut r, &format!(r#"{{"p":"{ana}","n":"Ana Ames"}}"#)).unwrap_err();
    assert_eq!(e.code, ErrorCode::MlsBadMessage);
    assert!(e.message.contains("\"l\""), "{}", e.message);
    let e = offer(
        &mut r,
        &format!(r#"{{"p":"{ana}","n":"Ana Ames","l":"member","o":"Other Office"}}"#),
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::MlsBadMessage);
    assert!(
        drain(&mut r).is_empty(),
        "a refused key package goes nowhere"
    );
    // Saying what the server verified: she is asked to make the group.
    offer(
        &mut r,
        &format!(r#"{{"p":"{ana}","n":"Ana Ames","l":"member","o":"Home Office"}}"#),
    )
    .unwrap();
    assert!(sent(&drain(&mut r), &ana)
        .iter()
        .any(|m| matches!(m, ServerMessage::MlsCreateRequest { .. })));
}

#[test]
fn a_guest_sent_back_to_the_lobby_leaves_the_encryption_group_at_once() {
    let t = Instant::now();
    let policy =
        crate::policy::Policy::parse(include_str!("../../../../policies/four-levels.toml"))
            .unwrap();
    let mut r = Room::restore(
        "m".into(),
        "t".into(),
        RoomLimits {
            policy: std::sync::Arc::new(policy),
            ..RoomLimits::default()
        },
        RoomState {
            level: "level-0".into(),
            has_passcode: true,
            settings: Settings {
                e2ee: true,
                ..Settings::default()
            },
            ..RoomState::default()
        },
    );
    let host = Entrant {
        role: Role::Host,
        ..Entrant::participant()
    };
    let (ana, bo, _) = ana_and_bo_with(&mut r, t, host);
    // Ana raises the level to one with a lobby: Bo, a guest, goes back to it.
    r.handle(
        t,
        &ana,
        C::SetLevel {
            level: "level-1".into(),
            raise: true,
            confirm: false,
        },
    )
    .unwrap();
    let fx = drain(&mut r);
    assert!(matches!(
        sent(&fx, &bo).last(),
        Some(ServerMessage::Lobby { .. })
    ));
    let asked = sent(&fx, &ana);
    assert!(
        asked.iter().any(|m| matches!(
            m,
            ServerMessage::MlsCommitRequest { epoch: 1, remove, .. } if remove == &vec![bo.0.clone()]
        )),
        "Ana is asked to remove Bo from the group: {asked:?}"
    );
    // From the lobby Bo can send nothing to the group.
    let e = r
        .handle(
            t,
            &bo,
            C::MlsKeyPackage {
                key_package: B64.encode(build::key_package(&bo.0)),
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongState);
}
