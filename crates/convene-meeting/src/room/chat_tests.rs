//! Chat is kept (for later joiners, and stored) only where the meeting's
//! level keeps it, from the moment the level says so.

use std::sync::Arc;

use super::*;
use crate::identity::{Identity, Level};
use crate::policy::Policy;
use crate::protocol::ClientMessage as C;

fn room_at(level: &str, chat: Vec<ChatMessage>) -> Room {
    Room::restore(
        "m".into(),
        "t".into(),
        RoomLimits {
            policy: Arc::new(Policy::parse(crate::policy::UK_POLICY).unwrap()),
            sign_in_available: true,
            ..RoomLimits::default()
        },
        RoomState {
            level: level.into(),
            has_passcode: true,
            chat,
            ..RoomState::default()
        },
    )
}

fn member() -> Identity {
    Identity {
        level: Level::Member,
        organisation: Some("Dept".into()),
        name: None,
        mfa: true,
        subject: Some("hana@dept.example".into()),
    }
}

fn come(r: &mut Room, name: &str, role: Role) -> ParticipantId {
    r.enter(
        Instant::now(),
        super::testkit::join_msg(name),
        Entrant {
            role,
            key: None,
            identity: member(),
            address: None,
        },
    )
    .unwrap()
}

fn say(r: &mut Room, who: &ParticipantId, text: &str) {
    r.handle(Instant::now(), who, C::Chat { text: text.into() })
        .unwrap();
}

fn drain(r: &mut Room) -> Vec<Effect> {
    std::iter::from_fn(|| r.poll_effect()).collect()
}

fn kept(fx: &[Effect]) -> Vec<(String, u32)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Persist(Change::Chat { message, days }) => Some((message.text.clone(), *days)),
            _ => None,
        })
        .collect()
}

fn welcome_chat(fx: &[Effect], who: &ParticipantId) -> Vec<String> {
    fx.iter()
        .find_map(|e| match e {
            Effect::Send {
                to,
                message: ServerMessage::Welcome { chat, .. },
            } if to == who => Some(chat.iter().map(|m| m.text.clone()).collect()),
            _ => None,
        })
        .expect("a welcome")
}

#[test]
fn where_the_level_keeps_chat_it_is_stored_and_later_joiners_see_it() {
    let mut r = room_at("official", vec![]);
    let hana = come(&mut r, "Hana", Role::Host);
    say(&mut r, &hana, "Agenda: the budget");
    let fx = drain(&mut r);
    assert_eq!(kept(&fx), vec![("Agenda: the budget".into(), 30)]);
    let bob = come(&mut r, "Bob", Role::Participant);
    assert_eq!(
        welcome_chat(&drain(&mut r), &bob),
        vec!["Agenda: the budget"]
    );
}

#[test]
fn where_the_level_keeps_none_the_server_relays_chat_and_keeps_nothing() {
    let mut r = room_at("official-sensitive", vec![]);
    let hana = come(&mut r, "Hana", Role::Host);
    let ann = come(&mut r, "Ann", Role::Participant);
    drain(&mut r);
    say(&mut r, &hana, "Not for the record");
    let fx = drain(&mut r);
    assert!(kept(&fx).is_empty(), "nothing stored");
    assert!(
        fx.iter().any(|e| matches!(e,
            Effect::Broadcast { to, message: ServerMessage::Chat { message } }
                if to.contains(&ann) && message.text == "Not for the record")),
        "but relayed to those present"
    );
    let bob = come(&mut r, "Bob", Role::Participant);
    assert!(
        welcome_chat(&drain(&mut r), &bob).is_empty(),
        "a later joiner sees none"
    );
}

#[test]
fn a_level_change_applies_to_chat_from_that_moment_and_is_audited() {
    let mut r = room_at("official", vec![]);
    let hana = come(&mut r, "Hana", Role::Host);
    say(&mut r, &hana, "Kept one");
    drain(&mut r);
    r.handle(
        Instant::now(),
        &hana,
        C::SetLevel {
            level: "official-sensitive".into(),
            raise: true,
            confirm: false,
        },
    )
    .unwrap();
    let fx = drain(&mut r);
    assert!(
        fx.iter().any(|e| matches!(e, Effect::Audit(f)
            if f.event == "chat-retention" && f.outcome == "not kept" && f.detail.starts_with("30 -> 0"))),
        "{fx:?}"
    );
    say(&mut r, &hana, "Said after");
    assert!(kept(&drain(&mut r)).is_empty());
    // Bob waits in the lobby (the new level has one); Hana admits him.
    let bob = come(&mut r, "Bob", Role::Participant);
    r.handle(
        Instant::now(),
        &hana,
        C::Admit {
            participant_id: bob.0.clone(),
        },
    )
    .unwrap();
    assert!(
        welcome_chat(&drain(&mut r), &bob).is_empty(),
        "from that moment the meeting keeps no chat for later joiners"
    );
}

#[test]
fn kept_chat_comes_back_after_a_restart_and_numbering_goes_on() {
    let old = ChatMessage {
        id: 7,
        participant_id: "p1".into(),
        name: "Hana".into(),
        text: "Before the restart".into(),
        sent_at: 1,
        identity: crate::identity::Verification::of(&member()).public(),
    };
    let mut r = room_at("official", vec![old]);
    let bob = come(&mut r, "Bob", Role::Participant);
    assert_eq!(
        welcome_chat(&drain(&mut r), &bob),
        vec!["Before the restart"]
    );
    say(&mut r, &bob, "After");
    let fx = drain(&mut r);
    let id = fx
        .iter()
        .find_map(|e| match e {
            Effect::Persist(Change::Chat { message, .. }) => Some(message.id),
            _ => None,
        })
        .unwrap();
    assert_eq!(id, 8);
    // A logged change never shows the text.
    for e in &fx {
        if let Effect::Persist(c) = e {
            assert!(!format!("{c:?}").contains("After"), "{c:?}");
        }
    }
}

/// After a restart where the shown history is shorter than what is stored
/// (or empty, the level then keeping none), a new message takes a number
/// past every stored one, never a kept message's place; and a newcomer an id
/// past every one used before.
#[test]
fn new_messages_are_numbered_past_every_stored_one() {
    let mut r = Room::restore(
        "m".into(),
        "t".into(),
        RoomLimits {
            policy: Arc::new(Policy::parse(crate::policy::UK_POLICY).unwrap()),
            sign_in_available: true,
            ..RoomLimits::default()
        },
        RoomState {
            level: "official".into(),
            has_passcode: true,
            next_chat: 57,
            next_participant: 12,
            ..RoomState::default()
        },
    );
    let hana = come(&mut r, "Hana", Role::Host);
    assert_eq!(hana.0, "p12", "numbered past every id the meeting used");
    say(&mut r, &hana, "after the restart");
    let ids: Vec<u64> = drain(&mut r)
        .iter()
        .filter_map(|e| match e {
            Effect::Persist(Change::Chat { message, .. }) => Some(message.id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, [57]);
}
