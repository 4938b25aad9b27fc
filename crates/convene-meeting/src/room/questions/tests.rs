//! Q&A: who sees a question when, what hosts may do with it, and its limits.

use std::time::Instant;

use super::super::testkit::*;
use super::super::*;
use super::{MAX_OPEN_PER_ASKER, MAX_QUESTIONS, QUESTION_INTERVAL};
use crate::access::Who;
use crate::protocol::{ClientMessage as C, Question};

/// A webinar with a host, a presenter and three attendees.
fn webinar(now: Instant, chat: Who) -> (Room, ParticipantId, ParticipantId, Vec<ParticipantId>) {
    let settings = Settings {
        webinar: true,
        chat,
        max_participants: 1000,
        ..Settings::default()
    };
    let limits = RoomLimits {
        max_participants: 1000,
        ..RoomLimits::default()
    };
    let mut r = Room::with_settings("w".into(), "Q&A".into(), limits, settings);
    let host = r.join_as(now, join_msg("Host"), Role::Host).unwrap();
    let speaker = r
        .join_as(now, join_msg("Speaker"), Role::Presenter)
        .unwrap();
    let audience = (0..3)
        .map(|i| r.join(now, join_msg(&format!("A{i}"))).unwrap())
        .collect();
    drain(&mut r);
    (r, host, speaker, audience)
}

fn questions_to(fx: &[Effect], who: &ParticipantId) -> Vec<Question> {
    sent_to(fx, who)
        .into_iter()
        .flat_map(|m| match m {
            ServerMessage::Question { question } => vec![question],
            ServerMessage::Questions { questions } => questions,
            _ => vec![],
        })
        .collect()
}

#[test]
fn a_question_reaches_the_stage_and_its_asker_and_answered_everyone() {
    let now = Instant::now();
    let (mut r, host, speaker, a) = webinar(now, Who::Everyone);
    r.handle(
        now,
        &a[0],
        C::Ask {
            text: "  Budget for 2027? ".into(),
        },
    )
    .unwrap();
    let fx = drain(&mut r);
    for who in [&host, &speaker, &a[0]] {
        let q = questions_to(&fx, who);
        assert_eq!(q.len(), 1, "{who}");
        assert_eq!(
            (q[0].text.as_str(), q[0].name.as_deref().unwrap()),
            ("Budget for 2027?", "A0")
        );
        assert!(!q[0].answered);
    }
    assert!(
        questions_to(&fx, &a[1]).is_empty(),
        "not the rest of the audience"
    );
    let id = questions_to(&fx, &host)[0].id;

    // A host joining now, and an attendee, see what they may.
    let late_host = r.join_as(now, join_msg("Late host"), Role::CoHost).unwrap();
    let late = r.join(now, join_msg("Late")).unwrap();
    let fx = drain(&mut r);
    assert_eq!(questions_to(&fx, &late_host).len(), 1);
    assert!(questions_to(&fx, &late).is_empty());

    assert_eq!(
        r.handle(now, &a[1], C::MarkAnswered { id })
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
    r.handle(now, &host, C::MarkAnswered { id }).unwrap();
    let fx = drain(&mut r);
    for who in [&a[1], &late, &speaker, &a[0]] {
        assert!(questions_to(&fx, who)[0].answered, "{who}");
    }
    // The rest of the audience sees what was asked, not who asked.
    assert_eq!(questions_to(&fx, &a[1])[0].name, None);
    assert_eq!(questions_to(&fx, &a[1])[0].participant_id, None);
    assert_eq!(questions_to(&fx, &a[0])[0].name.as_deref(), Some("A0"));
    assert_eq!(questions_to(&fx, &speaker)[0].name.as_deref(), Some("A0"));
    let later = r.join(now, join_msg("Later")).unwrap();
    assert_eq!(
        questions_to(&drain(&mut r), &later).len(),
        1,
        "answered: for all"
    );
}

#[test]
fn a_dismissed_question_goes_from_whoever_had_it() {
    let now = Instant::now();
    let (mut r, host, speaker, a) = webinar(now, Who::Everyone);
    r.handle(
        now,
        &a[2],
        C::Ask {
            text: "Off topic".into(),
        },
    )
    .unwrap();
    let id = questions_to(&drain(&mut r), &host)[0].id;
    r.handle(now, &host, C::DismissQuestion { id }).unwrap();
    let fx = drain(&mut r);
    let removed = ServerMessage::QuestionRemoved { id };
    for who in [&host, &speaker, &a[2]] {
        assert!(sent_to(&fx, who).contains(&removed), "{who}");
    }
    assert!(!sent_to(&fx, &a[0]).contains(&removed));
    assert_eq!(
        r.handle(now, &host, C::DismissQuestion { id })
            .unwrap_err()
            .code,
        ErrorCode::Invalid
    );
}

#[test]
fn questions_are_limited_in_rate_size_number_and_where_they_are_allowed() {
    let t0 = Instant::now();
    let (mut r, host, _, a) = webinar(t0, Who::HostsAndPresenters);
    // Chat kept to the stage still lets the audience ask.
    r.handle(t0, &a[0], C::Ask { text: "One".into() }).unwrap();
    let again = r.handle(t0, &a[0], C::Ask { text: "Two".into() });
    assert_eq!(again.unwrap_err().code, ErrorCode::RateLimited);
    r.handle(t0 + QUESTION_INTERVAL, &a[0], C::Ask { text: "Two".into() })
        .unwrap();
    let empty = r.handle(
        t0,
        &a[1],
        C::Ask {
            text: " \u{202e} ".into(),
        },
    );
    assert_eq!(empty.unwrap_err().code, ErrorCode::Invalid);
    let long = "x".repeat(RoomLimits::default().max_chat_chars + 1);
    let too_long = r.handle(t0, &a[2], C::Ask { text: long });
    assert_eq!(too_long.unwrap_err().code, ErrorCode::Invalid);

    // Five waiting at most per person.
    let mut at = t0 + QUESTION_INTERVAL * 2;
    for i in 0..MAX_OPEN_PER_ASKER - 2 {
        r.handle(
            at,
            &a[0],
            C::Ask {
                text: format!("More {i}"),
            },
        )
        .unwrap();
        at += QUESTION_INTERVAL;
    }
    let sixth = r.handle(
        at,
        &a[0],
        C::Ask {
            text: "Sixth".into(),
        },
    );
    assert_eq!(sixth.unwrap_err().code, ErrorCode::RateLimited);

    // Beyond the most held, the oldest answered goes first, from everyone.
    let first = questions_to(&drain(&mut r), &host)[0].id;
    r.handle(t0, &host, C::MarkAnswered { id: first }).unwrap();
    // Five held already: one more than the most, so one goes.
    let more = MAX_QUESTIONS - 4;
    for i in 0..more.div_ceil(MAX_OPEN_PER_ASKER) {
        let p = r.join(t0, join_msg(&format!("C{i}"))).unwrap();
        for k in 0..MAX_OPEN_PER_ASKER.min(more - i * MAX_OPEN_PER_ASKER) {
            let at = t0 + QUESTION_INTERVAL * (k as u32 + 1);
            r.handle(
                at,
                &p,
                C::Ask {
                    text: format!("Q{i}.{k}"),
                },
            )
            .unwrap();
        }
    }
    let fx = drain(&mut r);
    let removed = ServerMessage::QuestionRemoved { id: first };
    assert!(
        sent_to(&fx, &a[2]).contains(&removed),
        "answered: gone from all"
    );
    let late = r.join_as(t0, join_msg("Late"), Role::CoHost).unwrap();
    let held = questions_to(&drain(&mut r), &late);
    assert_eq!(held.len(), MAX_QUESTIONS);
    assert!(held.iter().all(|q| q.id != first));
    assert_eq!(held[0].text, "Two", "the unanswered stay, oldest first");

    // Nobody may write: no questions either; and none outside a webinar.
    let (mut quiet, _, _, a) = webinar(t0, Who::Nobody);
    let refused = quiet.handle(
        t0,
        &a[0],
        C::Ask {
            text: "Hello?".into(),
        },
    );
    assert_eq!(refused.unwrap_err().code, ErrorCode::Forbidden);
    let mut meeting = Room::new("m".into(), "Plain".into(), RoomLimits::default());
    let p = meeting.join(t0, join_msg("P")).unwrap();
    let refused = meeting.handle(
        t0,
        &p,
        C::Ask {
            text: "Hello?".into(),
        },
    );
    assert_eq!(refused.unwrap_err().code, ErrorCode::WrongState);
}

#[test]
fn brought_on_stage_one_sees_every_question() {
    let now = Instant::now();
    let (mut r, host, _, a) = webinar(now, Who::Everyone);
    r.handle(
        now,
        &a[0],
        C::Ask {
            text: "First".into(),
        },
    )
    .unwrap();
    drain(&mut r);
    let on = C::SetRole {
        participant_id: a[1].0.clone(),
        role: Role::Presenter,
    };
    r.handle(now, &host, on).unwrap();
    let q = questions_to(&drain(&mut r), &a[1]);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].text, "First");
}

#[test]
fn control_characters_are_taken_out_of_a_question() {
    let now = Instant::now();
    let (mut r, host, _, a) = webinar(now, Who::Everyone);
    let text = "Line one\nline\u{0}two\u{7}\u{1b}[31m".to_string();
    r.handle(now, &a[0], C::Ask { text }).unwrap();
    let q = questions_to(&drain(&mut r), &host);
    assert_eq!(q[0].text, "Line one\nlinetwo[31m");
}
