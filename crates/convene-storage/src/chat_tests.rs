//! Kept chat is sealed at rest, opens only with its key in its place, and
//! goes at its time.

use std::collections::HashSet;

use super::*;

const T0: i64 = 1_767_225_600_000;
const DAY: i64 = 24 * 60 * 60 * 1000;

fn key(b: u8) -> ChatKey {
    ChatKey::from_bytes(&[b; 32]).unwrap()
}

#[test]
fn chat_is_sealed_at_rest_and_opens_only_with_its_key_in_its_place() {
    each_engine(chat_is_sealed_at_rest_and_opens_only_with_its_key_in_its_place_on)
}

fn chat_is_sealed_at_rest_and_opens_only_with_its_key_in_its_place_on(s: Storage) {
    let (m, _) = s.create_meeting("Board", None, "{}").unwrap();
    let text = br#"{"text":"the budget is 4.2 million"}"#;
    s.write_batch(|b| b.keep_chat(&key(1), &m.id, 1, T0, T0 + DAY, text))
        .unwrap()
        .unwrap();
    // Nothing readable in the table.
    let sealed: Vec<u8> = s
        .with(|c| c.row("SELECT sealed FROM meeting_chat", &[]))
        .unwrap()
        .unwrap()
        .blob(0)
        .unwrap();
    assert!(!sealed.windows(6).any(|w| w == b"budget"));
    let (kept, bad) = s.kept_chat(&key(1), &m.id, T0, None).unwrap();
    assert_eq!((kept.len(), bad), (1, 0));
    assert_eq!(kept[0].message, text);
    // Another key opens nothing.
    assert_eq!(s.kept_chat(&key(2), &m.id, T0, None).unwrap(), (vec![], 1));
    // Moved to another message number (or meeting), it no longer opens.
    s.raw_exec("UPDATE meeting_chat SET id = 2", &[]).unwrap();
    assert_eq!(s.kept_chat(&key(1), &m.id, T0, None).unwrap().1, 1);
    assert!(key(1).open("other-meeting", 1, &sealed).is_none());
    assert!(key(1).open(&m.id, 1, &sealed).is_some());
    assert!(key(1).open(&m.id, 1, &sealed[..5]).is_none());
}

#[test]
fn kept_chat_goes_at_its_time_and_not_before() {
    each_engine(kept_chat_goes_at_its_time_and_not_before_on)
}

fn kept_chat_goes_at_its_time_and_not_before_on(s: Storage) {
    let (m, _) = s.create_meeting("Board", None, "{}").unwrap();
    for (id, until) in [(1, T0 + 30 * DAY), (2, T0 + 31 * DAY)] {
        s.write_batch(|b| b.keep_chat(&key(1), &m.id, id, T0, until, b"{}"))
            .unwrap()
            .unwrap();
    }
    let none = HashSet::new();
    let keep_all = Retention::default();
    let r = s
        .purge(&keep_all, T0 + 30 * DAY - 1, &none, None, false)
        .unwrap();
    assert_eq!(r.chat_messages, 0);
    assert_eq!(
        s.kept_chat(&key(1), &m.id, T0 + 30 * DAY - 1, None)
            .unwrap()
            .0
            .len(),
        2
    );
    let r = s
        .purge(&keep_all, T0 + 30 * DAY, &none, None, true)
        .unwrap();
    assert_eq!(r.chat_messages, 1, "a dry run counts");
    let r = s
        .purge(&keep_all, T0 + 30 * DAY, &none, None, false)
        .unwrap();
    assert_eq!(r.chat_messages, 1);
    let left = s.raw_int("SELECT count(*) FROM meeting_chat", &[]).unwrap();
    assert_eq!(left, 1);
    // And with its meeting.
    s.raw_exec("DELETE FROM meetings WHERE id = ?1", db::p![&m.id])
        .unwrap();
    let left = s.raw_int("SELECT count(*) FROM meeting_chat", &[]).unwrap();
    assert_eq!(left, 0);
}

#[test]
fn a_chat_key_file_is_made_once_readable_by_its_owner_only() {
    let dir = std::env::temp_dir().join(format!("convene-chat-key-{}", new_meeting_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chat.key");
    let a = ChatKey::load_or_create(&path).unwrap();
    let sealed = a.seal("m", 1, b"hello");
    let b = ChatKey::load_or_create(&path).unwrap();
    assert_eq!(
        b.open("m", 1, &sealed).unwrap(),
        b"hello",
        "the same key again"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    std::fs::write(&path, b"short").unwrap();
    let e = ChatKey::from_file(&path).unwrap_err();
    assert!(e.contains("32 bytes") && !e.contains("short"), "{e}");
    // 64 hex digits are the same 32 bytes; 33 raw bytes are refused, not cut.
    std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
    let hex = ChatKey::from_file(&path).unwrap();
    let sealed = ChatKey::from_bytes(&[0xab; 32]).unwrap().seal("m", 1, b"x");
    assert_eq!(hex.open("m", 1, &sealed).unwrap(), b"x");
    assert!(ChatKey::from_bytes(&[1u8; 33]).is_err());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn only_the_newest_are_read_when_asked() {
    each_engine(only_the_newest_are_read_when_asked_on)
}

fn only_the_newest_are_read_when_asked_on(s: Storage) {
    let (m, _) = s.create_meeting("Board", None, "{}").unwrap();
    for id in 1..=5 {
        s.write_batch(|b| b.keep_chat(&key(1), &m.id, id, T0, T0 + DAY, b"{}"))
            .unwrap()
            .unwrap();
    }
    let (kept, _) = s.kept_chat(&key(1), &m.id, T0, Some(2)).unwrap();
    assert_eq!(kept.iter().map(|k| k.id).collect::<Vec<_>>(), vec![4, 5]);
}

/// A meeting keeps at most [`chat::MAX_KEPT_PER_MEETING`] messages: each new
/// one past that pushes out its oldest, other meetings untouched; and the
/// number the next message takes is past every stored one.
#[test]
fn a_meeting_keeps_a_bounded_number_of_messages() {
    each_engine(a_meeting_keeps_a_bounded_number_of_messages_on)
}

fn a_meeting_keeps_a_bounded_number_of_messages_on(s: Storage) {
    use crate::chat::MAX_KEPT_PER_MEETING as MAX;
    let (m, _) = s.create_meeting("Long", None, "{}").unwrap();
    let (other, _) = s.create_meeting("Other", None, "{}").unwrap();
    assert_eq!(s.last_chat_id(&m.id).unwrap(), None);
    s.write_batch(|b| b.keep_chat(&key(1), &other.id, 1, T0, T0 + DAY, b"{}"))
        .unwrap()
        .unwrap();
    s.write_batch(|b| {
        for id in 1..=MAX + 5 {
            b.keep_chat(&key(1), &m.id, id, T0, T0 + DAY, b"{}")?;
        }
        Ok::<(), StorageError>(())
    })
    .unwrap()
    .unwrap();
    let (kept, _) = s.kept_chat(&key(1), &m.id, T0, None).unwrap();
    assert_eq!(kept.len() as i64, MAX);
    assert_eq!(kept.first().map(|k| k.id), Some(6), "the oldest went");
    assert_eq!(s.last_chat_id(&m.id).unwrap(), Some(MAX + 5));
    assert_eq!(
        s.kept_chat(&key(1), &other.id, T0, None).unwrap().0.len(),
        1
    );
}

/// The highest participant number the audit log names in a meeting, for
/// numbering newcomers after a restart.
#[test]
fn the_highest_participant_number_comes_from_the_audit_log() {
    each_engine(the_highest_participant_number_comes_from_the_audit_log_on)
}

fn the_highest_participant_number_comes_from_the_audit_log_on(s: Storage) {
    let (m, _) = s.create_meeting("Ids", None, "{}").unwrap();
    assert_eq!(s.highest_participant(&m.id).unwrap(), None);
    for (actor, subject) in [("p2", "p2"), ("p3", "p11"), ("client", "p4"), ("p9", "")] {
        s.audit(crate::audit::AuditEvent {
            meeting: &m.id,
            actor,
            subject,
            event: "join",
            outcome: "admitted",
            detail: "",
        })
        .unwrap();
    }
    assert_eq!(s.highest_participant(&m.id).unwrap(), Some(11));
}
