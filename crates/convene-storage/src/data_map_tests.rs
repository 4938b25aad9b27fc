//! docs/data.md names every table and column of the schema: a freshly
//! migrated database is listed (sqlite_master, pragma table_info) and
//! compared with the map's ``### table `name` `` sections, whose rows begin
//! with a column in backticks. A new migration that adds a column fails here
//! until the map says what the column holds, why, and for how long.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

const MAP: &str = include_str!("../../../docs/data.md");

type Tables = BTreeMap<String, BTreeSet<String>>;

/// The tables and columns the map lists, by its convention.
fn mapped(doc: &str) -> Tables {
    let mut map = Tables::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            current = line
                .strip_prefix("### ")
                .filter(|h| h.to_ascii_lowercase().starts_with("table `"))
                .and_then(|h| h["table `".len()..].split_once('`'))
                .map(|(name, _)| name.to_string());
            if let Some(t) = &current {
                map.entry(t.clone()).or_default();
            }
            continue;
        }
        let (Some(table), Some(row)) = (&current, line.strip_prefix("| `")) else {
            continue;
        };
        if let Some((column, _)) = row.split_once('`') {
            map.get_mut(table).unwrap().insert(column.to_string());
        }
    }
    map
}

/// The tables and columns of a new database.
fn schema(storage: &Storage) -> Tables {
    let conn = storage.conn();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap();
    let tables: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables
        .into_iter()
        .map(|t| {
            let columns = conn
                .prepare("SELECT name FROM pragma_table_info(?1)")
                .unwrap()
                .query_map([&t], |r| r.get(0))
                .unwrap()
                .collect::<Result<BTreeSet<String>, _>>()
                .unwrap();
            (t, columns)
        })
        .collect()
}

/// What `have` has and `named` does not name.
fn missing(have: &Tables, named: &Tables) -> Vec<String> {
    let mut out = Vec::new();
    for (table, columns) in have {
        match named.get(table) {
            None => out.push(format!("table {table}")),
            Some(n) => out.extend(columns.difference(n).map(|c| format!("column {table}.{c}"))),
        }
    }
    out
}

#[test]
fn data_map_names_every_table_and_column() {
    let schema = schema(&Storage::in_memory().unwrap());
    assert!(schema["meetings"].contains("passcode_hash"));
    let unnamed = missing(&schema, &mapped(MAP));
    assert!(
        unnamed.is_empty(),
        "docs/data.md does not name: {} (add a row | `column` | ... | under ### table `name`)",
        unnamed.join(", ")
    );
    // And names nothing the schema lacks (a renamed or dropped column).
    let stale = missing(&mapped(MAP), &schema);
    assert!(
        stale.is_empty(),
        "docs/data.md names what the schema lacks: {}",
        stale.join(", ")
    );
}

#[test]
fn the_check_sees_a_row_or_a_table_taken_out_of_the_map() {
    let schema = schema(&Storage::in_memory().unwrap());
    let without_row = MAP.replace("| `keep_until` |", "| keep_until |");
    assert_eq!(
        missing(&schema, &mapped(&without_row)),
        ["column meeting_chat.keep_until"]
    );
    let without_table = MAP.replace("### table `meeting_bars`", "### Bars");
    assert_eq!(
        missing(&schema, &mapped(&without_table)),
        ["table meeting_bars"]
    );
}
