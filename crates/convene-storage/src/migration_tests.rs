//! Upgrades: a database left by every earlier schema version Convene shipped
//! (0 = new) opens with this version, keeps what the old version stored, and
//! then works like a new one. Each version's rows are written with the
//! columns that version had, as its code wrote them.

use rusqlite::params;

use super::*;

/// What a server at schema `version` had stored: one meeting (with the
/// fields that version knew) and, from version 2, two audit rows.
fn seed(conn: &mut Connection, version: usize) {
    for (i, sql) in MIGRATIONS.iter().take(version).enumerate() {
        conn.execute_batch(sql).unwrap();
        conn.pragma_update(None, "user_version", (i + 1) as i64)
            .unwrap();
    }
    if version == 0 {
        return;
    }
    conn.execute(
        "INSERT INTO meetings (id, title, created_at) VALUES ('abcd-efgh-jkmn', 'Old board', 1700000000)",
        [],
    )
    .unwrap();
    if version >= 3 {
        conn.execute(
            "UPDATE meetings SET host_key_hash = ?1, passcode_hash = '$argon2id$old', settings = '{\"lobby\":true}'",
            params![sha256_hex("old-host-key")],
        )
        .unwrap();
    }
    if version >= 4 {
        conn.execute("UPDATE meetings SET ended_at = 1700000500000", [])
            .unwrap();
    }
    if version >= 5 {
        conn.execute("UPDATE meetings SET locked = 1", []).unwrap();
        conn.execute(
            "INSERT INTO meeting_grants (meeting, person, role) VALUES ('abcd-efgh-jkmn', 'p1', 'co-host')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO meeting_bars (meeting, person, barred_at) VALUES ('abcd-efgh-jkmn', 'p2', 1700000100000)",
            [],
        )
        .unwrap();
    }
    if version >= 6 {
        conn.execute("UPDATE meetings SET level = 'official-sensitive'", [])
            .unwrap();
    }
    if version >= 2 {
        for (event, at) in [("create", 1_700_000_000_000), ("join", 1_700_000_001_000)] {
            let head = audit::head(&*conn).unwrap();
            audit::insert(
                &*conn,
                &head,
                AuditEvent {
                    meeting: "abcd-efgh-jkmn",
                    actor: "system",
                    subject: "-",
                    event,
                    outcome: "ok",
                    detail: "",
                },
                at,
            )
            .unwrap();
        }
    }
}

#[test]
fn every_earlier_schema_upgrades_keeping_what_it_stored() {
    for version in 0..=MIGRATIONS.len() {
        let dir =
            std::env::temp_dir().join(format!("convene-migrate-{version}-{}", new_meeting_id()));
        std::fs::create_dir_all(&dir).unwrap();
        seed(
            &mut Connection::open(dir.join("convene.db")).unwrap(),
            version,
        );
        let s = Storage::open(&dir).unwrap_or_else(|e| panic!("from version {version}: {e}"));
        let now: i64 = s
            .raw_sqlite(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
            .unwrap();
        assert_eq!(now as usize, MIGRATIONS.len(), "from version {version}");
        if version >= 1 {
            let m = s
                .meeting("abcd-efgh-jkmn")
                .unwrap()
                .expect("the old meeting");
            assert_eq!(
                (m.title.as_str(), m.created_at),
                ("Old board", 1_700_000_000),
                "from {version}"
            );
            // What the version knew is kept; what it did not know takes the default.
            assert_eq!(
                m.is_host_key("old-host-key"),
                version >= 3,
                "from {version}"
            );
            assert_eq!(m.passcode_hash.is_some(), version >= 3, "from {version}");
            assert_eq!(
                m.settings,
                if version >= 3 {
                    "{\"lobby\":true}"
                } else {
                    "{}"
                }
            );
            assert_eq!(m.ended_at.is_some(), version >= 4, "from {version}");
            assert_eq!(m.locked, version >= 5, "from {version}");
            assert_eq!(
                m.level,
                if version >= 6 {
                    "official-sensitive"
                } else {
                    ""
                }
            );
            let people = s.meeting_people("abcd-efgh-jkmn").unwrap();
            assert_eq!(
                people.grants.len(),
                usize::from(version >= 5),
                "from {version}"
            );
            assert_eq!(
                people.barred.len(),
                usize::from(version >= 5),
                "from {version}"
            );
        }
        let rows = s.audit_records(None).unwrap().len();
        assert_eq!(rows, if version >= 2 { 2 } else { 0 }, "from {version}");
        // And it works as a new one: the chain goes on from the old rows.
        let (m, _) = s.create_meeting("New", None, "{}").unwrap();
        s.audit(AuditEvent {
            meeting: &m.id,
            actor: "system",
            subject: "-",
            event: "create",
            outcome: "ok",
            detail: "",
        })
        .unwrap();
        let head = s
            .verify_audit()
            .unwrap()
            .unwrap_or_else(|b| panic!("from {version}: {b:?}"));
        assert_eq!(head.rows as usize, rows + 1, "from {version}");
        drop(s);
        // Opening again changes nothing.
        let again = Storage::open(&dir).unwrap();
        assert_eq!(again.audit_records(None).unwrap().len(), rows + 1);
        std::fs::remove_dir_all(dir).ok();
    }
}

#[test]
fn a_database_from_a_newer_convene_is_refused_untouched() {
    let dir = std::env::temp_dir().join(format!("convene-migrate-new-{}", new_meeting_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut conn = Connection::open(dir.join("convene.db")).unwrap();
    seed(&mut conn, MIGRATIONS.len());
    conn.pragma_update(None, "user_version", (MIGRATIONS.len() + 1) as i64)
        .unwrap();
    drop(conn);
    let e = Storage::open(&dir).err().expect("refused");
    assert!(matches!(e, StorageError::TooNew { .. }), "{e}");
    std::fs::remove_dir_all(dir).ok();
}

/// PostgreSQL left at an earlier schema (each version Convene shipped for
/// it) is brought up to this one, keeping what it held, once.
#[test]
fn a_postgres_database_from_every_earlier_version_is_migrated() {
    for version in 9..MIGRATIONS.len() {
        let url = crate::testing::postgres_url();
        let conn = pg::PgConn::connect(&url).unwrap();
        pg::migrate(&conn, version).unwrap();
        drop(conn);
        let s = Storage::connect(&url).unwrap();
        assert_eq!(
            s.raw_int("SELECT max(version) FROM convene_schema", &[]),
            Some(MIGRATIONS.len() as i64),
            "from {version}"
        );
        let (m, _) = s.create_meeting("Board", None, "{}").unwrap();
        s.save_session(
            "h",
            &SharedSession {
                family: "h".into(),
                data: "{}".into(),
                expires_at: i64::MAX,
            },
            0,
        )
        .unwrap();
        drop(s);
        let again = Storage::connect(&url).unwrap();
        assert!(again.meeting(&m.id).unwrap().is_some());
        assert_eq!(
            again.raw_int("SELECT count(*) FROM convene_schema", &[]),
            Some(if version < MIGRATIONS.len() { 2 } else { 1 })
        );
    }
}
