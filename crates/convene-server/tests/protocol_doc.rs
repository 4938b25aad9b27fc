//! The meeting object the HTTP API really sends is the one docs/protocol.md §2.1
//! describes: every field in its table, every setting named there, and its
//! example with the same fields; nor does the document describe fields the server
//! does not send. Likewise the `welcome` (§5.1) and the TURN servers in it and in
//! `ice-servers` and the check's `GET /api/check/ice-servers` (§5.22, §2.1).

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
        // Rows that say they are for a cluster only: a single node never sends them.
        let cluster_only: BTreeSet<&str> = table
            .iter()
            .filter(|(_, meaning)| meaning.trim_start().starts_with("Only in a cluster"))
            .flat_map(|(n, _)| n.iter().copied())
            .collect();
        for f in documented.difference(&cluster_only) {
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

/// The first ```json block after `heading`, parsed.
fn example_after(heading: &str) -> Value {
    let start = DOC
        .find(heading)
        .unwrap_or_else(|| panic!("{heading} in protocol.md"));
    let block = &DOC[start..];
    let block = &block[block.find("```json\n").expect("an example") + 8..];
    let block = &block[..block.find("```").expect("the example ends")];
    serde_json::from_str(block)
        .unwrap_or_else(|e| panic!("the example after {heading} is not JSON: {e}"))
}

/// The first-column names of the table with header row `header` after `heading`.
fn table_after(heading: &str, header: &str) -> BTreeSet<String> {
    let start = DOC
        .find(heading)
        .unwrap_or_else(|| panic!("{heading} in protocol.md"));
    let table = &DOC[start..];
    let table = &table[table
        .find(header)
        .unwrap_or_else(|| panic!("{header} after {heading}"))..];
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .flat_map(|row| quoted(row.split('|').nth(1).unwrap_or("")))
        .map(str::to_owned)
        .collect()
}

fn keys_but_type(v: &Value) -> BTreeSet<String> {
    keys(v).into_iter().filter(|k| k != "type").collect()
}

/// `welcome` (§5.1), its ICE servers and `ice-servers` (§5.22), and the
/// check's `GET /api/check/ice-servers` (§2.1), as a server with TURN sends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_welcome_and_its_ice_servers_are_the_ones_documented() {
    let file = common::deployment_with_turn(
        &["turn:127.0.0.1:3478?transport=udp"],
        "0123456789abcdef0123456789abcdef",
    );
    let server = common::server_with(|c| {
        c.config_file = Some(file);
        c.turn_ttl_override = Some(std::time::Duration::from_secs(2));
    })
    .await;
    let id = common::create_meeting(&server, "Budget review").await;
    let mut ann = convene_client::Client::join(&server.url, &id, "Ann", None)
        .await
        .unwrap();
    let refreshed = ann
        .run_until(std::time::Duration::from_secs(5), |c| {
            c.log.iter().any(|m| m["type"] == "ice-servers")
        })
        .await;
    assert!(refreshed, "an ice-servers message within 5 s");
    let welcome = ann.log.iter().find(|m| m["type"] == "welcome").unwrap();
    let refresh = ann.log.iter().find(|m| m["type"] == "ice-servers").unwrap();
    let (status, body) = common::http(&server, "GET", "/api/check/ice-servers", None).await;
    assert_eq!(status, 200, "{body}");
    let check: Value = serde_json::from_str(&body).unwrap();

    let mut problems = Vec::new();
    let mut compare = |what: &str, sent: BTreeSet<String>, documented: BTreeSet<String>| {
        for f in sent.difference(&documented) {
            problems.push(format!("{what}: the server sends `{f}`, not documented"));
        }
        for f in documented.difference(&sent) {
            problems.push(format!(
                "{what}: documents `{f}`, which the server does not send"
            ));
        }
    };
    let welcome_heading = "### 5.1 `welcome`";
    compare(
        "§5.1's table",
        keys_but_type(welcome),
        table_after(welcome_heading, "| Field | Type | Meaning |"),
    );
    compare(
        "§5.1's example",
        keys(welcome),
        keys(&example_after(welcome_heading)),
    );
    let ice_heading = "### 5.22 `ice-servers`";
    let ice_table = table_after(ice_heading, "| Field | Type | Meaning |");
    for (what, list) in [
        ("welcome.iceServers", &welcome["iceServers"]),
        ("ice-servers", &refresh["iceServers"]),
        ("GET /api/check/ice-servers", &check["iceServers"]),
        (
            "§5.1's example iceServers",
            &example_after(welcome_heading)["iceServers"],
        ),
        ("§5.22's example", &example_after(ice_heading)["iceServers"]),
    ] {
        let list = list
            .as_array()
            .unwrap_or_else(|| panic!("{what}: an array"));
        assert!(!list.is_empty(), "{what}");
        for server in list {
            compare(
                &format!("§5.22's ICE server table, {what}"),
                keys(server),
                ice_table.clone(),
            );
        }
    }
    compare(
        "§5.22's example",
        keys(refresh),
        keys(&example_after(ice_heading)),
    );
    let row = section_2_1()
        .lines()
        .find(|l| l.starts_with("| `GET /api/check/ice-servers`"))
        .expect("§2.1 lists GET /api/check/ice-servers");
    assert!(row.contains(r#"`{"iceServers":[…]}`"#), "{row}");
    assert_eq!(keys(&check), BTreeSet::from(["iceServers".to_string()]));

    drop(ann);
    server.shutdown().await;
    assert!(
        problems.is_empty(),
        "docs/protocol.md and what the server sends disagree:\n  {}",
        problems.join("\n  ")
    );
}
