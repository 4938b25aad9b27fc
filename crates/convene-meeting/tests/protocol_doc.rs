//! docs/protocol.md and the code say the same about messages and errors: every
//! client message type, server message type and error code in
//! `src/protocol.rs` is documented, and the document lists none the code lacks.
//!
//! The code's lists are read from `src/protocol.rs` itself (the `CLIENT_TYPES`
//! list and the `ServerMessage` and `ErrorCode` enums), so a new variant is
//! checked as soon as it is written, with nothing else to update.

use convene_meeting::protocol::{parse_client_message, ErrorCode, ServerMessage};

const DOC: &str = include_str!("../../../docs/protocol.md");
const SOURCE: &str = include_str!("../src/protocol.rs");

/// The string literals of `const CLIENT_TYPES: &[&str] = &[ … ];`.
fn client_types() -> Vec<String> {
    let start = SOURCE
        .find("const CLIENT_TYPES: &[&str] = &[")
        .expect("CLIENT_TYPES in protocol.rs");
    let body = &SOURCE[start..];
    let body = &body[body.find('[').unwrap() + 1..];
    let body = &body[body.find('[').unwrap() + 1..body.find("];").unwrap()];
    body.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The variants of `pub enum <name>`, as serde's `kebab-case` names them (or as a
/// variant's own `#[serde(rename = "…")]` does).
fn variants(name: &str) -> Vec<String> {
    let header = format!("pub enum {name} {{");
    let start = SOURCE
        .find(&header)
        .unwrap_or_else(|| panic!("`{header}` in protocol.rs"));
    let mut depth = 0usize;
    let mut rename = None;
    let mut out = Vec::new();
    for line in SOURCE[start..].lines() {
        let line = line.trim();
        if line.starts_with("//") {
            continue;
        }
        if depth == 1 {
            if let Some(attr) = line.strip_prefix("#[serde(") {
                if let Some(r) = attr.split("rename = \"").nth(1) {
                    rename = Some(r[..r.find('"').unwrap()].to_owned());
                }
                continue;
            }
            if line.starts_with(|c: char| c.is_ascii_uppercase()) {
                let ident: String = line
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                out.push(rename.take().unwrap_or_else(|| kebab(&ident)));
            }
        }
        depth += line.matches('{').count();
        depth -= line.matches('}').count();
        if depth == 0 && !out.is_empty() {
            break;
        }
    }
    out
}

fn kebab(ident: &str) -> String {
    let mut s = String::new();
    for (i, c) in ident.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                s.push('-');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

/// The backquoted names in `text`: "`a`, `b` and `c`" gives a, b, c.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The two columns of §1's table of message types: (client → server, server → client).
fn overview_table() -> (Vec<&'static str>, Vec<&'static str>) {
    let start = DOC
        .find("| Client → server | Server → client |")
        .expect("§1's table of message types");
    let (mut client, mut server) = (Vec::new(), Vec::new());
    for row in DOC[start..].lines().skip(2) {
        if !row.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = row.split('|').collect();
        client.extend(quoted(cells[1]));
        server.extend(quoted(cells[2]));
    }
    (client, server)
}

/// Headings (`### …`) of the section whose number starts with `number`, e.g. "4.".
fn headings(number: &str) -> Vec<&'static str> {
    let prefix = format!("### {number}");
    DOC.lines().filter(|l| l.starts_with(&prefix)).collect()
}

fn has_heading(headings: &[&str], name: &str) -> bool {
    let name = format!("`{name}`");
    headings.iter().any(|h| h.contains(&name))
}

/// The codes in the first column of §6's table.
fn error_table() -> Vec<&'static str> {
    let start = DOC.find("## 6. Errors").expect("§6 Errors");
    let end = start + DOC[start..].find("\n## 7.").expect("§7 after §6");
    DOC[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| quoted(l.split('|').nth(1)?).first().copied())
        .collect()
}

/// Fails with every problem found, one per line.
fn report(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "docs/protocol.md and crates/convene-meeting/src/protocol.rs disagree:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_code_is_read_as_the_server_sees_it() {
    // The lists read from the source are the ones the code uses.
    let clients = client_types();
    assert!(clients.len() >= 20, "{clients:?}");
    for t in &clients {
        let refused = parse_client_message(&format!(r#"{{"type":"{t}"}}"#)).err();
        assert!(
            !refused.is_some_and(|e| e.code == ErrorCode::UnknownType),
            "\"{t}\" is a client type"
        );
    }
    let servers = variants("ServerMessage");
    assert!(servers.len() >= 20, "{servers:?}");
    for (m, name) in [
        (ServerMessage::Pong { id: None }, "pong"),
        (
            ServerMessage::SettingsUpdated {
                settings: Default::default(),
            },
            "settings-updated",
        ),
        (
            ServerMessage::error(ErrorCode::UnsupportedProtocol, "x"),
            "error",
        ),
    ] {
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["type"], name);
        assert!(servers.iter().any(|s| s == name), "{name} in {servers:?}");
    }
    let codes = variants("ErrorCode");
    assert!(codes.len() >= 15, "{codes:?}");
    for (code, name) in [
        (ErrorCode::UnsupportedProtocol, "unsupported-protocol"),
        (ErrorCode::MfaRequired, "mfa-required"),
        (ErrorCode::BadSdp, "bad-sdp"),
    ] {
        assert_eq!(serde_json::to_value(code).unwrap(), name);
        assert!(codes.iter().any(|c| c == name), "{name} in {codes:?}");
    }
}

#[test]
fn every_client_message_type_is_documented_and_no_other() {
    let code = client_types();
    let (table, _) = overview_table();
    let sections = headings("4.");
    let mut problems = Vec::new();
    for t in &code {
        if !table.contains(&t.as_str()) {
            problems.push(format!(
                "client message `{t}` is missing from §1's table (Client → server column)"
            ));
        }
        if !has_heading(&sections, t) {
            problems.push(format!(
                "client message `{t}` has no §4 heading (### 4.x … `{t}`)"
            ));
        }
    }
    for t in table {
        if !code.iter().any(|c| c == t) {
            problems.push(format!(
                "§1's table lists client message `{t}`, which CLIENT_TYPES does not accept"
            ));
        }
    }
    report(problems);
}

#[test]
fn every_server_message_type_is_documented_and_no_other() {
    let code = variants("ServerMessage");
    let (_, table) = overview_table();
    let sections = headings("5.");
    let mut problems = Vec::new();
    for t in &code {
        if !table.contains(&t.as_str()) {
            problems.push(format!(
                "server message `{t}` is missing from §1's table (Server → client column)"
            ));
        }
        if !has_heading(&sections, t) {
            problems.push(format!(
                "server message `{t}` has no §5 heading (### 5.x … `{t}`)"
            ));
        }
    }
    for t in table {
        if !code.iter().any(|c| c == t) {
            problems.push(format!(
                "§1's table lists server message `{t}`, which ServerMessage does not have"
            ));
        }
    }
    report(problems);
}

#[test]
fn every_error_code_is_in_the_error_table_and_no_other() {
    let code = variants("ErrorCode");
    let table = error_table();
    let mut problems = Vec::new();
    for c in &code {
        if !table.contains(&c.as_str()) {
            problems.push(format!("error code `{c}` has no row in §6's table"));
        }
    }
    for c in table {
        if !code.iter().any(|k| k == c) {
            problems.push(format!(
                "§6's table has error code `{c}`, which ErrorCode does not have"
            ));
        }
    }
    report(problems);
}
