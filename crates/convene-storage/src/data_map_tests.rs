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
    let (tables, columns) = match storage.is_shared() {
        false => (
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            "SELECT name FROM pragma_table_info(?1)",
        ),
        // Convene's own bookkeeping (the schema version) is not data.
        true => (
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name <> 'convene_schema'",
            "SELECT CAST(column_name AS TEXT) FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = ?1",
        ),
    };
    storage
        .with(|c| {
            let mut out = Tables::new();
            for t in c.rows(tables, &[])? {
                let t = t.text(0)?;
                let cols = c
                    .rows(columns, db::p![&t])?
                    .iter()
                    .map(|r| r.text(0))
                    .collect::<Result<BTreeSet<String>, _>>()?;
                out.insert(t, cols);
            }
            Ok(out)
        })
        .unwrap()
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

/// PostgreSQL's schema has the same tables and columns as SQLite's: the
/// map, and everything else, holds for both.
#[test]
fn postgres_has_the_tables_and_columns_sqlite_has() {
    let sqlite = schema(&Storage::in_memory().unwrap());
    let postgres = schema(&Storage::connect(&crate::testing::postgres_url()).unwrap());
    assert_eq!(postgres, sqlite);
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
