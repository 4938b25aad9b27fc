//! The meeting object the HTTP API really sends is the one docs/protocol.md §2.1
//! describes: every field in its table, every setting named there, and its
//! example with the same fields; nor does the document describe fields the server
//! does not send.

mod common;

use std::collections::BTreeSet;

use serde_json::Value;

const DOC: &str = include_str!("../../../docs/protocol.md");

/// §2.1, up to §2.2.
fn section_2_1() -> &'static str {
    let start = DOC.find("### 2.1 HTTP API").expect("§2.1 in protocol.md");
    let end = start + DOC[start..].find("### 2.2").expect("§2.2 after §2.1");
    &DOC[start..end]
}

/// The backquoted names in `text`.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The meeting object's field table: each row's names (first cell) and meaning.
fn field_table() -> Vec<(Vec<&'static str>, &'static str)> {
    let s = section_2_1();
    let start = s
        .find("| Field | Type | Meaning |")
        .expect("the meeting object's field table in §2.1");
    s[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').collect();
            (quoted(cells[1]), cells[3])
        })
        .collect()
}

/// The body of the documented `201 Created` answer.
fn documented_example() -> Value {
    let s = section_2_1();
    let start = s
        .find("HTTP/1.1 201 Created")
        .expect("the example answer to creating a meeting");
    let body = &s[start..];
    let body = &body[body.find("\n\n").expect("headers end") + 2..];
    let body = &body[..body.find("```").expect("example ends")];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("§2.1's example is not JSON: {e}"))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

/// Compares the fields the server sent with §2.1; returns every disagreement.
fn disagreements(sent: &Value, creating: bool) -> Vec<String> {
    let table = field_table();
    let documented: BTreeSet<&str> = table.iter().flat_map(|(n, _)| n.iter().copied()).collect();
    let mut problems = Vec::new();
    let fields = keys(sent);
    for f in &fields {
        if !documented.contains(f.as_str()) {
            problems.push(format!(
                "the meeting object's field `{f}` has no row in §2.1's table"
            ));
        }
    }
    if creating {
        for f in &documented {
            if !fields.contains(*f) {
                problems.push(format!(
                    "§2.1's table has field `{f}`, which the server does not send"
                ));
            }
        }
    }
    let settings_row = table
        .iter()
        .find(|(names, _)| names == &["settings"])
        .map(|(_, meaning)| quoted(meaning))
        .unwrap_or_default();
    let settings = keys(&sent["settings"]);
    for f in &settings {
        if !settings_row.contains(&f.as_str()) {
            problems.push(format!(
                "setting `{f}` is not named in the `settings` row of §2.1's table"
            ));
        }
    }
    if creating {
        let example = documented_example();
        for (what, got, shown) in [
            ("field", fields, keys(&example)),
            ("setting", settings, keys(&example["settings"])),
        ] {
            for f in got.difference(&shown) {
                problems.push(format!("§2.1's example answer lacks the {what} `{f}`"));
            }
            for f in shown.difference(&got) {
                problems.push(format!(
                    "§2.1's example answer has the {what} `{f}`, which the server does not send"
                ));
            }
        }
    }
    problems
}

#[tokio::test]
async fn the_meeting_object_is_the_one_documented() {
    let server = common::server().await;
    let (status, body) = common::http(
        &server,
        "POST",
        "/api/meetings",
        Some(r#"{"title":"Budget review"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let mut problems: Vec<String> = disagreements(&created, true)
        .into_iter()
        .map(|p| format!("POST /api/meetings: {p}"))
        .collect();

    let id = created["id"].as_str().unwrap();
    let (status, body) = common::http(&server, "GET", &format!("/api/meetings/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    let looked_up: Value = serde_json::from_str(&body).unwrap();
    problems.extend(
        disagreements(&looked_up, false)
            .into_iter()
            .map(|p| format!("GET /api/meetings/{{id}}: {p}")),
    );
    // Looking up gives the same object without the host key.
    let mut expected = created.clone();
    let obj = expected.as_object_mut().unwrap();
    obj.remove("hostKey");
    obj.remove("hostUrl");
    assert_eq!(looked_up, expected);

    server.shutdown().await;
    assert!(
        problems.is_empty(),
        "docs/protocol.md §2.1 and the server's meeting object disagree:\n  {}",
        problems.join("\n  ")
    );
}
