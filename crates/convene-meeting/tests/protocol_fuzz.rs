//! Property-based fuzzing of the signalling parser: whatever text a socket
//! sends, `parse_client_message` returns (never panics), and every refusal
//! carries one of the parse-level codes docs/protocol.md §6 documents, the one
//! that fits the input: `bad-json` for text that is not JSON, `unknown-type` for
//! an object whose string `type` is no client message, `invalid` for the rest.
//!
//! Inputs: arbitrary strings, JSON-looking noise, arbitrary JSON values, and
//! near-valid messages made from the documented examples (every client
//! message in the protocol document) with fields removed, added, or given
//! values of the wrong type, huge numbers, deep nesting, unicode and very long
//! strings. The same seeds are the cargo-fuzz corpus (fuzz/corpus/signalling).

use convene_meeting::protocol::{parse_client_message, ClientMessage, ErrorCode};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const DOC: &str = include_str!("../../../docs/protocol.md");

/// The client message types (docs/protocol.md §1's table).
const CLIENT_TYPES: &[&str] = &[
    "join",
    "publish",
    "unpublish",
    "mute",
    "answer",
    "chat",
    "ping",
    "leave",
    "remove",
    "set-role",
    "lock",
    "end",
    "admit",
    "deny",
    "admit-all",
    "mute-participant",
    "mute-all",
    "stop-source",
    "update-settings",
    "set-level",
    "video-sizes",
    "raise-hand",
    "lower-hand",
    "react",
];

/// Field names the client messages use, for adding fields where they do not belong.
const FIELDS: &[&str] = &[
    "type",
    "protocol",
    "name",
    "resume",
    "passcode",
    "hostKey",
    "source",
    "muted",
    "sdp",
    "text",
    "id",
    "participantId",
    "bar",
    "settings",
    "level",
    "reaction",
    "raise",
    "confirm",
    "role",
    "locked",
    "sizes",
    "width",
    "height",
    // Settings from here on.
    "lobby",
    "screenShare",
    "unmute",
    "chat",
    "guestCameras",
    "maxParticipants",
    "lobbyBypass",
    "guestsAllowed",
    "requireMfa",
];

/// The longest error message the parser may send back. The server echoes it to
/// the sender, so it must not grow with what the sender sent.
const MAX_ERROR_MESSAGE: usize = 400;

/// Every client message in the protocol document's JSON examples (§4).
fn documented_messages() -> Vec<Value> {
    let start = DOC.find("\n## 4. ").expect("§4 in protocol.md");
    let end = DOC.find("\n## 5. ").expect("§5 in protocol.md");
    let mut out = Vec::new();
    let mut in_json = false;
    for line in DOC[start..end].lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_json = t == "```json";
            continue;
        }
        if !in_json {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<Value>(t) {
            if v.get("type")
                .and_then(Value::as_str)
                .is_some_and(|k| CLIENT_TYPES.contains(&k))
            {
                out.push(v);
            }
        }
    }
    out
}

/// Parse `text` and check the outcome against what the protocol document says
/// about it. Returns the outcome for further checks.
fn check(text: &str) -> Result<ClientMessage, ErrorCode> {
    let result = parse_client_message(text);
    let value = serde_json::from_str::<Value>(text);
    let kind = value
        .as_ref()
        .ok()
        .and_then(|v| v.get("type"))
        .and_then(Value::as_str);
    match &result {
        Ok(m) => {
            assert_eq!(
                Some(m.kind()),
                kind,
                "a message parses as its own type: {}",
                shown(text)
            );
        }
        Err(e) => {
            let expected = match (&value, kind) {
                (Err(_), _) => ErrorCode::BadJson,
                (Ok(_), None) => ErrorCode::Invalid,
                (Ok(_), Some(k)) if !CLIENT_TYPES.contains(&k) => ErrorCode::UnknownType,
                (Ok(_), Some(_)) => ErrorCode::Invalid,
            };
            assert_eq!(e.code, expected, "{} -> {e:?}", shown(text));
            assert!(
                e.message.chars().count() <= MAX_ERROR_MESSAGE,
                "an error message of {} characters for {}",
                e.message.chars().count(),
                shown(text)
            );
            assert!(!e.message.is_empty());
        }
    }
    result.map_err(|e| e.code)
}

fn shown(text: &str) -> String {
    let s: String = text.chars().take(200).collect();
    if s.len() < text.len() {
        format!("{s}… ({} bytes)", text.len())
    } else {
        s
    }
}

/// Numbers as JSON text, including ones no field can hold.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        Just("18446744073709551616".to_owned()),
        Just("4294967296".to_owned()),
        Just("-1".to_owned()),
        Just("-0".to_owned()),
        Just("1.0".to_owned()),
        Just("1e400".to_owned()),
        Just("-1e400".to_owned()),
        Just("1e-400".to_owned()),
        "[1-9][0-9]{20,400}",
        "-[1-9][0-9]{20,400}",
    ]
}

/// Strings a hostile client might send: any unicode, control and bidi
/// characters, lone-surrogate escapes, very long runs.
fn string_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        "[\u{0}-\u{1f}\u{202a}-\u{202e}\u{2066}-\u{2069}\u{200b}-\u{200f}\u{feff}a ]{0,20}",
        (any::<char>(), 1000usize..70_000).prop_map(|(c, n)| c.to_string().repeat(n)),
        Just("screen-audio".to_owned()),
        Just("camera".to_owned()),
        Just("co-host".to_owned()),
        Just("everyone".to_owned()),
        Just("official".to_owned()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![any::<String>(), "\\PC{0,40}"].prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec(("\\PC{0,12}|type|name|sdp|settings", inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A value nested `depth` deep, as JSON text (beyond what a parser's stack takes).
fn nested_text(depth: usize, object: bool) -> String {
    if object {
        format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
    } else {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Give a field (the message's own, or any) this value.
    Set(usize, Value),
    /// The same, with raw JSON text (numbers no type holds, deep nesting).
    SetRaw(usize, String),
    Remove(usize),
    /// Another client type, keeping the fields.
    Retype(usize),
    /// A field inside the settings object of update-settings.
    SetSetting(usize, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), json_value()).prop_map(|(i, v)| Mutation::Set(i, v)),
        (any::<usize>(), string_value().prop_map(Value::String))
            .prop_map(|(i, v)| Mutation::Set(i, v)),
        (any::<usize>(), number_text()).prop_map(|(i, n)| Mutation::SetRaw(i, n)),
        (any::<usize>(), 1usize..5000, any::<bool>())
            .prop_map(|(i, d, o)| Mutation::SetRaw(i, nested_text(d, o))),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Retype),
        (any::<usize>(), json_value()).prop_map(|(i, v)| Mutation::SetSetting(i, v)),
        (any::<usize>(), number_text().prop_map(|n| json!(n)))
            .prop_map(|(i, v)| Mutation::SetSetting(i, v)),
    ]
}

/// Apply `mutations` to a documented message; the result is JSON text (raw
/// values are spliced into the text, where `Value` could not hold them).
fn mutate(mut msg: Map<String, Value>, mutations: &[Mutation]) -> String {
    let mut raw: Vec<(String, String)> = Vec::new();
    for m in mutations {
        // Fields the message has, then every known field name.
        let keys: Vec<String> = msg
            .keys()
            .cloned()
            .chain(FIELDS.iter().map(|s| s.to_string()))
            .collect();
        match m {
            Mutation::Set(i, v) => {
                msg.insert(keys[i % keys.len()].clone(), v.clone());
            }
            Mutation::SetRaw(i, text) => {
                let key = keys[i % keys.len()].clone();
                let marker = format!("@@raw{}@@", raw.len());
                msg.insert(key, Value::String(marker.clone()));
                raw.push((format!("\"{marker}\""), text.clone()));
            }
            Mutation::Remove(i) => {
                let key = keys[i % keys.len()].clone();
                msg.remove(&key);
            }
            Mutation::Retype(i) => {
                msg.insert("type".into(), json!(CLIENT_TYPES[i % CLIENT_TYPES.len()]));
            }
            Mutation::SetSetting(i, v) => {
                let fields = &FIELDS[FIELDS.iter().position(|f| *f == "lobby").unwrap()..];
                let settings = msg.entry("settings").or_insert_with(|| json!({}));
                if let Value::Object(s) = settings {
                    s.insert(fields[i % fields.len()].to_string(), v.clone());
                } else {
                    *settings = json!({ fields[i % fields.len()]: v });
                }
            }
        }
    }
    let mut text = serde_json::to_string(&Value::Object(msg)).unwrap();
    for (marker, value) in raw {
        text = text.replace(&marker, &value);
    }
    text
}

#[test]
fn every_documented_client_message_parses() {
    let docs = documented_messages();
    let kinds: std::collections::BTreeSet<&str> =
        docs.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.len(),
        CLIENT_TYPES.len(),
        "the document shows an example of every client message: {kinds:?}"
    );
    for v in &docs {
        let text = v.to_string();
        assert!(check(&text).is_ok(), "{text}");
    }
}

#[test]
fn edge_cases_refused_with_the_right_code() {
    let cases: &[(&str, ErrorCode)] = &[
        ("", ErrorCode::BadJson),
        ("\u{feff}{\"type\":\"leave\"}", ErrorCode::BadJson),
        ("{\"type\":\"leave\"} x", ErrorCode::BadJson),
        ("null", ErrorCode::Invalid),
        ("\"leave\"", ErrorCode::Invalid),
        (r#"{"type":null}"#, ErrorCode::Invalid),
        (r#"{"type":["leave"]}"#, ErrorCode::Invalid),
        (r#"{"type":"Leave"}"#, ErrorCode::UnknownType),
        (r#"{"type":"offer","sdp":"v=0"}"#, ErrorCode::UnknownType),
        (r#"{"type":"ping","id":-1}"#, ErrorCode::Invalid),
        (
            r#"{"type":"ping","id":18446744073709551616}"#,
            ErrorCode::Invalid,
        ),
        (r#"{"type":"ping","id":1e400}"#, ErrorCode::BadJson),
        (r#"{"type":"ping","id":1.5}"#, ErrorCode::Invalid),
        (
            r#"{"type":"join","protocol":4294967296,"name":"a"}"#,
            ErrorCode::Invalid,
        ),
        (
            r#"{"type":"update-settings","settings":{"maxParticipants":-1}}"#,
            ErrorCode::Invalid,
        ),
        (r#"{"type":"chat","text":"\ud800"}"#, ErrorCode::BadJson),
    ];
    for (text, code) in cases {
        assert_eq!(check(text), Err(*code), "{text}");
    }
    // Nesting far deeper than any parser stack: refused, not a stack overflow.
    for depth in [127, 128, 129, 1000, 200_000] {
        for object in [false, true] {
            let text = format!(r#"{{"type":"chat","text":{}}}"#, nested_text(depth, object));
            assert!(check(&text).is_err());
        }
    }
    // Long strings where the parser names what it got, in every kind of field.
    let long = "x".repeat(200_000);
    for text in [
        format!(r#"{{"type":"{long}"}}"#),
        format!(r#"{{"type":"publish","source":"{long}"}}"#),
        format!(r#"{{"type":"leave","{long}":1}}"#),
        format!(r#"{{"type":"set-role","participantId":"p","role":"{long}"}}"#),
        format!(r#"{{"type":"update-settings","settings":{{"{long}":1}}}}"#),
        format!(r#"{{"type":"update-settings","settings":{{"chat":"{long}"}}}}"#),
    ] {
        assert!(check(&text).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(text in any::<String>()) {
        check(&text).ok();
    }

    #[test]
    fn json_looking_noise(text in "[{}\\[\\]\":,0-9a-z \\\\tnulfrue.e+-]{0,80}") {
        check(&text).ok();
    }

    #[test]
    fn arbitrary_json_values(v in json_value()) {
        check(&v.to_string()).ok();
        // The same fields under each client type.
        if let Value::Object(mut m) = v {
            for t in CLIENT_TYPES {
                m.insert("type".into(), json!(t));
                check(&Value::Object(m.clone()).to_string()).ok();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn near_valid_messages(
        pick in any::<usize>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let docs = documented_messages();
        let Value::Object(base) = docs[pick % docs.len()].clone() else { unreachable!() };
        let text = mutate(base, &mutations);
        check(&text).ok();
        // Cut short anywhere, it still parses or is refused properly.
        let cut = text.char_indices().nth(pick % text.chars().count().max(1)).map_or(0, |(i, _)| i);
        check(&text[..cut]).ok();
    }
}
