//! Convene's storage. SQLite by default: one file in the data folder, schema
//! migrations embedded from `migrations/` and applied in order at open.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

use db::{p, Sql};
use pg::PgConn;

pub mod audit;
pub mod chat;
pub mod checkpoint;
mod db;
pub mod export;
mod pg;
mod pg_tls;
pub mod retention;
pub mod sessions;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use audit::{AuditBreak, AuditEvent, AuditHead, AuditRecord};
pub use chat::{ChatKey, KeptChat};
pub use checkpoint::{AuditKey, Checkpoint, CheckpointReport};
pub use export::{MeetingExport, MeetingFacts, Participation, PersonExport};
pub use pg::describe_database;
pub use pg_tls::security_of as database_security;
pub use retention::{PurgeReport, Retention};
pub use sessions::SharedSession;

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_meetings.sql"),
    include_str!("../migrations/0002_audit.sql"),
    include_str!("../migrations/0003_meeting_access.sql"),
    include_str!("../migrations/0004_meeting_end.sql"),
    include_str!("../migrations/0005_meeting_memory.sql"),
    include_str!("../migrations/0006_meeting_level.sql"),
    include_str!("../migrations/0007_meeting_returns.sql"),
    include_str!("../migrations/0008_retention.sql"),
    include_str!("../migrations/0009_meeting_chat.sql"),
    include_str!("../migrations/0010_sessions.sql"),
    include_str!("../migrations/0011_node_secrets.sql"),
];

/// How long a statement waits for another connection's lock (rusqlite's
/// default, kept explicit because the readiness probe lowers it for itself).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const PROBE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Meeting ids are the join link's secret for now: 60 random bits in a form that
/// is easy to read aloud (no 0/o, 1/l).
const ID_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("a stored value: {0}")]
    Column(String),
    #[error("export failed: {0}")]
    Export(String),
    #[error("could not create the data folder: {0}")]
    Io(#[from] std::io::Error),
    #[error("backup: {0}")]
    Backup(String),
    #[error(
        "the database was written by a newer Convene (schema {found}, this one knows {known})"
    )]
    TooNew { found: usize, known: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meeting {
    pub id: String,
    pub title: String,
    pub created_at: i64,
    /// SHA-256 (hex) of the host key.
    pub host_key_hash: String,
    /// Argon2 PHC string, when the meeting has a passcode.
    pub passcode_hash: Option<String>,
    /// The meeting's settings as JSON (the meeting domain defines them).
    pub settings: String,
    /// Set when a host ended the meeting.
    pub ended_at: Option<i64>,
    /// A host locked it: no new joins.
    pub locked: bool,
    /// Handling level id (empty: the policy's lowest).
    pub level: String,
}

/// What a backup holds (checked in the copy itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub schema: usize,
    pub meetings: u64,
    pub audit_rows: u64,
    pub bytes: u64,
}

/// Roles granted and people barred in one meeting, by person key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeetingPeople {
    /// (person key, role name)
    pub grants: Vec<(String, String)>,
    pub barred: Vec<String>,
}

impl Meeting {
    /// Whether `key` is this meeting's host key (compared in constant time).
    pub fn is_host_key(&self, key: &str) -> bool {
        use subtle::ConstantTimeEq;
        !self.host_key_hash.is_empty()
            && bool::from(
                sha256_hex(key)
                    .as_bytes()
                    .ct_eq(self.host_key_hash.as_bytes()),
            )
    }
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct Storage {
    conn: Mutex<Conn>,
    /// PostgreSQL's address, to connect again after the server went away.
    url: Option<String>,
    /// When connecting again last failed: calls in the next
    /// [`RECONNECT_PAUSE`] fail at once instead of each waiting to connect
    /// while holding the connection.
    reconnect_failed: Mutex<Option<std::time::Instant>>,
}

const RECONNECT_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// The engine a [`Storage`] runs on.
enum Conn {
    Sqlite(Connection),
    Postgres(PgConn),
}

impl Conn {
    fn sql(&self) -> &dyn Sql {
        match self {
            Conn::Sqlite(c) => c,
            Conn::Postgres(c) => c,
        }
    }
}

impl Storage {
    /// Open (creating if needed) `convene.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(data_dir)?;
        let conn = Connection::open(data_dir.join("convene.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A commit returns once it is on disk (the WAL is fsynced at every
        // commit): what the server acknowledges survives a crash or power cut.
        // Writers batch their changes into one transaction to share the fsync.
        conn.pragma_update(None, "synchronous", "FULL")?;
        Self::from_connection(conn)
    }

    /// Connect to PostgreSQL at `url` (`postgres://user@host/db`, or a
    /// socket folder: `postgres://user@%2Frun%2Fpostgresql/db`), bringing its
    /// schema to this version's.
    pub fn connect(url: &str) -> Result<Self, StorageError> {
        let conn = PgConn::connect(url)?;
        pg::migrate(&conn, MIGRATIONS.len())?;
        Ok(Storage {
            conn: Mutex::new(Conn::Postgres(conn)),
            url: Some(url.to_string()),
            reconnect_failed: Mutex::default(),
        })
    }

    /// Open what `database` names: a PostgreSQL address (`postgres://…` or
    /// `postgresql://…`), or, when none is given, SQLite in `data_dir`.
    pub fn open_or_connect(data_dir: &Path, database: Option<&str>) -> Result<Self, StorageError> {
        match database {
            Some(url) => Self::connect(url),
            None => Self::open(data_dir),
        }
    }

    /// Whether other processes write to this database as a matter of course
    /// (PostgreSQL, shared by the nodes of a cluster).
    pub fn is_shared(&self) -> bool {
        self.url.is_some()
    }

    /// Which engine this is, for messages: "sqlite" or "postgres".
    pub fn engine_name(&self) -> &'static str {
        match self.url {
            Some(_) => "postgres",
            None => "sqlite",
        }
    }

    /// Copy the database in `data_dir` to `dest`, online: SQLite's `VACUUM
    /// INTO` reads one consistent snapshot while a running server goes on
    /// writing (WAL mode: readers do not block writers). The source is opened
    /// read-only and never migrated, so a backup taken before an upgrade is
    /// the old schema. `dest` must not exist. The copy is checked
    /// (`integrity_check`, and the audit chain) before this returns.
    pub fn backup(data_dir: &Path, dest: &Path) -> Result<BackupReport, StorageError> {
        use rusqlite::OpenFlags;
        if dest.exists() {
            return Err(StorageError::Backup(format!(
                "{} exists: give a new file",
                dest.display()
            )));
        }
        let db = data_dir.join("convene.db");
        if !db.exists() {
            return Err(StorageError::Backup(format!(
                "no database at {}",
                db.display()
            )));
        }
        // Made first, empty, owner-only and exclusively (never through a
        // symlink or over a file someone else made): the copy holds passcode
        // hashes and the audit log. SQLite then writes into the empty file.
        {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options
                .open(dest)
                .map_err(|e| StorageError::Backup(format!("{}: {e}", dest.display())))?;
        }
        let source = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        source.busy_timeout(BUSY_TIMEOUT)?;
        let target = dest
            .to_str()
            .ok_or_else(|| StorageError::Backup("the file name is not UTF-8".into()))?;
        source.execute("VACUUM INTO ?1", rusqlite::params![target])?;
        drop(source);
        let copy = Connection::open_with_flags(dest, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let integrity: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if integrity != "ok" {
            return Err(StorageError::Backup(format!(
                "the copy fails its integrity check: {integrity}"
            )));
        }
        let schema: i64 = copy.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let count = |table: &str| -> Result<u64, StorageError> {
            if !copy.has_table(table)? {
                return Ok(0);
            }
            Ok(copy
                .int(&format!("SELECT count(*) FROM {table}"), &[])?
                .unwrap_or(0) as u64)
        };
        let audit_rows = count("audit_log")?;
        if audit_rows > 0 {
            if let Err(b) = audit::verify(&copy, &Default::default(), i64::MAX)?.chain {
                return Err(StorageError::Backup(format!(
                    "the copy's audit chain is broken: {b:?}"
                )));
            }
        }
        Ok(BackupReport {
            schema: schema as usize,
            meetings: count("meetings")?,
            audit_rows,
            bytes: std::fs::metadata(dest)?.len(),
        })
    }

    pub fn in_memory() -> Result<Self, StorageError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(mut conn: Connection) -> Result<Self, StorageError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Storage {
            conn: Mutex::new(Conn::Sqlite(conn)),
            url: None,
            reconnect_failed: Mutex::default(),
        })
    }

    /// The connection, connected again first if PostgreSQL went away (a
    /// restart of the database server costs the calls made while it was
    /// down, not the rest of the node's life).
    fn conn(&self) -> Result<MutexGuard<'_, Conn>, StorageError> {
        let mut conn = match self.conn.lock() {
            Ok(c) => c,
            // A caller panicked holding the connection. SQLite's transaction
            // rolled back as it unwound; PostgreSQL's is still open on the
            // server: end it, or the next calls would run inside it.
            Err(poisoned) => {
                let c = poisoned.into_inner();
                if let Conn::Postgres(pg) = &*c {
                    pg.set_savepoints(false);
                    pg.set_in_tx(false);
                    let _ = pg.batch("ROLLBACK");
                }
                self.conn.clear_poison();
                c
            }
        };
        if let (Conn::Postgres(pg), Some(url)) = (&*conn, &self.url) {
            if pg.is_closed() {
                let mut failed = self
                    .reconnect_failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if failed.is_some_and(|at| at.elapsed() < RECONNECT_PAUSE) {
                    return Err(StorageError::Postgres(
                        "the database is away; connecting again in a moment".into(),
                    ));
                }
                match PgConn::connect(url) {
                    Ok(c) => {
                        *conn = Conn::Postgres(c);
                        *failed = None;
                    }
                    Err(e) => {
                        *failed = Some(std::time::Instant::now());
                        return Err(e);
                    }
                }
            }
        }
        Ok(conn)
    }

    /// Run `f` on the connection.
    fn with<R>(
        &self,
        f: impl FnOnce(&dyn Sql) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        f(self.conn()?.sql())
    }

    /// Run `f` on one view of the database: reads that page through the
    /// audit log see it as of one moment, not half before and half after
    /// another node's purge or append.
    fn snapshot<R>(
        &self,
        f: impl FnOnce(&dyn Sql) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let mut conn = self.conn()?;
        match &mut *conn {
            // Deferred: the first read fixes what the transaction sees (WAL).
            Conn::Sqlite(c) => {
                let tx = c.transaction()?;
                let out = f(&*tx)?;
                tx.commit()?;
                Ok(out)
            }
            Conn::Postgres(pg) => {
                pg.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
                pg.set_in_tx(true);
                let out = f(pg);
                pg.set_in_tx(false);
                let end = pg.batch(if out.is_ok() { "COMMIT" } else { "ROLLBACK" });
                let out = out?;
                end?;
                Ok(out)
            }
        }
    }

    /// Run `f` in one transaction, committed if it returns `Ok`. A `write`
    /// transaction takes the write lock first (SQLite's `BEGIN IMMEDIATE`,
    /// an advisory lock in PostgreSQL), as an audit append must: it reads
    /// the log's head and writes after it. In a `batch`, a statement that
    /// fails fails alone (SQLite undoes that statement only) and `f`
    /// decides: PostgreSQL would abort the whole transaction, so a batch in
    /// which a statement failed is run again with a savepoint per statement.
    /// (Not always: each savepoint that writes takes a subtransaction, and
    /// past 64 in one transaction every other session's snapshots slow down.)
    fn tx<R>(
        &self,
        write: bool,
        batch: bool,
        f: impl Fn(&dyn Sql) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let mut conn = self.conn()?;
        match &mut *conn {
            Conn::Sqlite(c) => {
                let tx = c.transaction_with_behavior(if write {
                    rusqlite::TransactionBehavior::Immediate
                } else {
                    rusqlite::TransactionBehavior::Deferred
                })?;
                let out = f(&*tx)?;
                tx.commit()?;
                Ok(out)
            }
            Conn::Postgres(pg) => match pg_tx(pg, write, false, &f) {
                Err(PgTxError::Broken(_)) if batch => match pg_tx(pg, write, true, &f) {
                    Ok(out) => Ok(out),
                    Err(PgTxError::Broken(e) | PgTxError::Failed(e)) => Err(e),
                },
                Ok(out) => Ok(out),
                Err(PgTxError::Broken(e) | PgTxError::Failed(e)) => Err(e),
            },
        }
    }

    /// Whether a write would succeed now (readiness checks): takes the write
    /// lock and writes, then rolls back, leaving nothing behind. Fails on a
    /// read-only file or folder, a database another process holds locked,
    /// or a PostgreSQL that is down or read-only (a standby).
    pub fn check_writable(&self) -> Result<(), StorageError> {
        let mut conn = self.conn()?;
        match &mut *conn {
            Conn::Sqlite(conn) => {
                // A probe answers within a second (load balancers give up after a
                // few); other work keeps the usual wait for a lock.
                conn.busy_timeout(PROBE_BUSY_TIMEOUT)?;
                let result = (|| {
                    let tx =
                        conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    // A write that changes nothing, yet needs a writable file (a
                    // read-only one refuses it) and no schema change (which would
                    // make every prepared statement of this connection start over).
                    tx.execute("DELETE FROM meetings WHERE 1 = 0", [])?;
                    tx.rollback()
                })();
                conn.busy_timeout(BUSY_TIMEOUT)?;
                Ok(result?)
            }
            Conn::Postgres(pg) => {
                pg.batch("BEGIN")?;
                let result = pg.exec("DELETE FROM meetings WHERE 1 = 0", &[]);
                pg.batch("ROLLBACK")?;
                result.map(|_| ())
            }
        }
    }

    /// Create a meeting; returns it and its host key (kept only as a hash, so
    /// this is the one time it can be shown).
    pub fn create_meeting(
        &self,
        title: &str,
        passcode_hash: Option<&str>,
        settings: &str,
    ) -> Result<(Meeting, String), StorageError> {
        self.create_meeting_at(title, passcode_hash, settings, "")
    }

    /// Create a meeting at a handling level.
    pub fn create_meeting_at(
        &self,
        title: &str,
        passcode_hash: Option<&str>,
        settings: &str,
        level: &str,
    ) -> Result<(Meeting, String), StorageError> {
        let key_bytes: [u8; 16] = rand::random();
        let host_key: String = key_bytes.iter().map(|b| format!("{b:02x}")).collect();
        let meeting = Meeting {
            id: new_meeting_id(),
            title: title.to_string(),
            created_at: unix_secs(),
            host_key_hash: sha256_hex(&host_key),
            passcode_hash: passcode_hash.map(str::to_string),
            settings: settings.to_string(),
            ended_at: None,
            locked: false,
            level: level.to_string(),
        };
        self.with(|c| {
            c.exec(
                "INSERT INTO meetings (id, title, created_at, host_key_hash, passcode_hash, settings, level)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                p![
                    &meeting.id,
                    &meeting.title,
                    meeting.created_at,
                    &meeting.host_key_hash,
                    meeting.passcode_hash.as_deref(),
                    &meeting.settings,
                    &meeting.level
                ],
            )
        })?;
        Ok((meeting, host_key))
    }

    pub fn meeting(&self, id: &str) -> Result<Option<Meeting>, StorageError> {
        let row = self.with(|c| {
            c.row(
                "SELECT id, title, created_at, host_key_hash, passcode_hash, settings, ended_at,
                        locked, level
                 FROM meetings WHERE id = ?1",
                p![id],
            )
        })?;
        row.map(|r| {
            Ok(Meeting {
                id: r.text(0)?,
                title: r.text(1)?,
                created_at: r.int(2)?,
                host_key_hash: r.text(3)?,
                passcode_hash: r.opt_text(4)?,
                settings: r.text(5)?,
                ended_at: r.opt_int(6)?,
                locked: r.int(7)? != 0,
                level: r.text(8)?,
            })
        })
        .transpose()
    }
}

impl Storage {
    /// A host ended the meeting: no one joins it again.
    pub fn end_meeting(&self, id: &str) -> Result<(), StorageError> {
        self.with(|c| writes::end_meeting(c, id))
    }

    pub fn update_settings(&self, id: &str, settings: &str) -> Result<(), StorageError> {
        self.with(|c| writes::update_settings(c, id, settings))
    }

    pub fn set_level(&self, id: &str, level: &str) -> Result<(), StorageError> {
        self.with(|c| writes::set_level(c, id, level))
    }

    pub fn set_locked(&self, id: &str, locked: bool) -> Result<(), StorageError> {
        self.with(|c| writes::set_locked(c, id, locked))
    }

    /// The person known by `person` gets `role` when they join; `None` withdraws it.
    pub fn set_grant(
        &self,
        id: &str,
        person: &str,
        role: Option<&str>,
    ) -> Result<(), StorageError> {
        self.with(|c| writes::set_grant(c, id, person, role))
    }

    pub fn bar(&self, id: &str, person: &str) -> Result<(), StorageError> {
        self.with(|c| writes::bar(c, id, person))
    }

    /// Run `f` in one transaction and commit it: with [`Storage::open`]'s
    /// `synchronous=FULL` (and PostgreSQL's default `synchronous_commit`),
    /// everything `f` wrote is on disk when this returns `Ok`. One commit
    /// (one fsync) covers the whole batch, which is how the server's writer
    /// shares the cost of durability between many changes. A statement that
    /// fails inside the batch fails alone; `f` sees its error and the rest
    /// still commits.
    ///
    /// `f` may run twice (PostgreSQL, when a statement failed the first
    /// time: see [`Storage::tx`]); only what the run that commits wrote is
    /// stored.
    pub fn write_batch<R>(&self, f: impl Fn(&mut Batch<'_>) -> R) -> Result<R, StorageError> {
        self.tx(true, true, |tx| {
            let mut batch = Batch { tx, head: None };
            Ok(f(&mut batch))
        })
    }

    /// The highest participant number (`pN`) the audit log names in
    /// `meeting`: a meeting started again numbers newcomers past it, so an
    /// id never stands for two people.
    pub fn highest_participant(&self, meeting: &str) -> Result<Option<u64>, StorageError> {
        // Ids are `p` and digits; anything else an actor or subject holds
        // ("system", "-", a person key) is not a participant number.
        let rows = self.with(|c| {
            c.rows(
                "SELECT actor FROM audit_log WHERE meeting = ?1 AND actor LIKE 'p%'
                 UNION
                 SELECT subject FROM audit_log WHERE meeting = ?1 AND subject LIKE 'p%'",
                p![meeting],
            )
        })?;
        let mut highest = None;
        for r in rows {
            let id = r.text(0)?;
            // SQLite's LIKE ignores case: "P7" is not a participant.
            let Some(digits) = id.strip_prefix('p') else {
                continue;
            };
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(n) = digits.parse::<u64>() {
                    highest = highest.max(Some(n));
                }
            }
        }
        Ok(highest)
    }

    pub fn meeting_people(&self, id: &str) -> Result<MeetingPeople, StorageError> {
        self.with(|c| {
            let mut people = MeetingPeople::default();
            for r in c.rows(
                "SELECT person, role FROM meeting_grants WHERE meeting = ?1 ORDER BY person",
                p![id],
            )? {
                people.grants.push((r.text(0)?, r.text(1)?));
            }
            for r in c.rows(
                "SELECT person FROM meeting_bars WHERE meeting = ?1 ORDER BY person",
                p![id],
            )? {
                people.barred.push(r.text(0)?);
            }
            Ok(people)
        })
    }

    /// Keep who is in a meeting across a restart: (participant id, JSON)
    /// each, replacing what was kept for the meeting before.
    pub fn hold_returns(
        &self,
        meeting: &str,
        people: &[(String, String)],
    ) -> Result<(), StorageError> {
        self.tx(false, false, |tx| {
            tx.exec(
                "DELETE FROM meeting_returns WHERE meeting = ?1",
                p![meeting],
            )?;
            let at = unix_millis();
            for (participant, data) in people {
                tx.exec(
                    "INSERT INTO meeting_returns (meeting, participant, held_at, data) VALUES (?1, ?2, ?3, ?4)",
                    p![meeting, participant, at, data],
                )?;
            }
            Ok(())
        })
    }

    /// What was kept for a meeting across a restart, at most `max_age_ms`
    /// old; read once: everything kept for it (and anything older than that
    /// for any meeting) is deleted.
    pub fn take_returns(
        &self,
        meeting: &str,
        max_age_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.tx(false, false, |tx| {
            let oldest = unix_millis() - max_age_ms;
            let found = tx
                .rows(
                    "SELECT data FROM meeting_returns WHERE meeting = ?1 AND held_at >= ?2 ORDER BY participant",
                    p![meeting, oldest],
                )?
                .iter()
                .map(|r| r.text(0))
                .collect::<Result<Vec<_>, _>>()?;
            tx.exec(
                "DELETE FROM meeting_returns WHERE meeting = ?1 OR held_at < ?2",
                p![meeting, oldest],
            )?;
            Ok(found)
        })
    }

    /// Delete every place held before `before_ms` (those not back in time).
    pub fn forget_returns_before(&self, before_ms: i64) -> Result<usize, StorageError> {
        self.with(|c| {
            c.exec(
                "DELETE FROM meeting_returns WHERE held_at < ?1",
                p![before_ms],
            )
        })
        .map(|n| n as usize)
    }

    /// Append an event to the audit log.
    pub fn audit(&self, event: AuditEvent<'_>) -> Result<AuditRecord, StorageError> {
        let at = unix_millis();
        self.tx(true, false, |tx| {
            let head = audit::head(tx)?;
            audit::insert(tx, &head, event, at)
        })
    }

    /// The audit log, all of it or one meeting's, in order.
    pub fn audit_records(&self, meeting: Option<&str>) -> Result<Vec<AuditRecord>, StorageError> {
        self.snapshot(|c| audit::records(c, meeting))
    }

    /// Check the audit log's hash chain from its first row to its last.
    pub fn verify_audit(&self) -> Result<Result<AuditHead, AuditBreak>, StorageError> {
        self.snapshot(|c| audit::verify(c, &Default::default(), i64::MAX).map(|v| v.chain))
    }

    /// The newest row's number and hash, without checking the chain.
    pub fn audit_head(&self) -> Result<AuditHead, StorageError> {
        self.with(audit::head)
    }

    /// The stored hash of row `seq`, if there is such a row.
    pub fn audit_row_hash(&self, seq: i64) -> Result<Option<String>, StorageError> {
        self.with(|c| {
            c.row("SELECT hash FROM audit_log WHERE seq = ?1", p![seq])?
                .map(|r| r.text(0))
                .transpose()
        })
    }

    /// Check the chain, then check it against `checkpoints` (see
    /// [`checkpoint::check`]); `key` verifies the checkpoints' MACs.
    pub fn verify_audit_against(
        &self,
        checkpoints: &[Checkpoint],
        key: Option<&AuditKey>,
    ) -> Result<CheckpointReport, StorageError> {
        self.snapshot(|c| checkpoint::check(c, checkpoints, key))
    }
}

/// Writes inside one transaction of [`Storage::write_batch`].
pub struct Batch<'t> {
    tx: &'t dyn Sql,
    /// The audit log's head as of this batch's last append.
    head: Option<AuditHead>,
}

impl Batch<'_> {
    /// Append to the audit log, stamped `at` (ms since the Unix epoch).
    pub fn audit(&mut self, event: AuditEvent<'_>, at: i64) -> Result<AuditRecord, StorageError> {
        let head = match self.head.take() {
            Some(h) => h,
            None => audit::head(self.tx)?,
        };
        let rec = audit::insert(self.tx, &head, event, at);
        if let Ok(rec) = &rec {
            self.head = Some(AuditHead {
                rows: rec.seq,
                hash: rec.hash.clone(),
            });
        } else {
            self.head = Some(head);
        }
        rec
    }

    /// Whether the log still holds `earlier` (the same row with the same
    /// hash, or purged by retention since), whatever was appended after it:
    /// on a database that several nodes share, the others append too.
    pub fn audit_continues(&mut self, earlier: &AuditHead) -> Result<bool, StorageError> {
        let row = self.tx.row(
            "SELECT hash FROM audit_log WHERE seq = ?1",
            p![earlier.rows],
        )?;
        Ok(match row {
            Some(r) => r.text(0)? == earlier.hash,
            None => audit::start(self.tx)?.rows >= earlier.rows,
        })
    }

    /// The audit log's newest row as this transaction sees it.
    pub fn audit_head(&mut self) -> Result<AuditHead, StorageError> {
        if let Some(h) = &self.head {
            return Ok(h.clone());
        }
        let h = audit::head(self.tx)?;
        self.head = Some(h.clone());
        Ok(h)
    }

    pub fn end_meeting(&self, id: &str) -> Result<(), StorageError> {
        writes::end_meeting(self.tx, id)
    }

    pub fn update_settings(&self, id: &str, settings: &str) -> Result<(), StorageError> {
        writes::update_settings(self.tx, id, settings)
    }

    pub fn set_level(&self, id: &str, level: &str) -> Result<(), StorageError> {
        writes::set_level(self.tx, id, level)
    }

    pub fn set_locked(&self, id: &str, locked: bool) -> Result<(), StorageError> {
        writes::set_locked(self.tx, id, locked)
    }

    /// The meeting's passcode hash (Argon2 PHC string), or none.
    pub fn set_passcode_hash(&self, id: &str, hash: Option<&str>) -> Result<(), StorageError> {
        writes::set_passcode_hash(self.tx, id, hash)
    }

    pub fn set_grant(
        &self,
        id: &str,
        person: &str,
        role: Option<&str>,
    ) -> Result<(), StorageError> {
        writes::set_grant(self.tx, id, person, role)
    }

    pub fn bar(&self, id: &str, person: &str) -> Result<(), StorageError> {
        writes::bar(self.tx, id, person)
    }

    /// Hold `participant`'s place in `meeting` (JSON, as [`Storage::hold_returns`]
    /// keeps it), replacing what was held for them: written as people join
    /// and change, so that a crash, not only a graceful stop, leaves who was
    /// in the meeting for whoever starts it again.
    pub fn hold_place(
        &self,
        meeting: &str,
        participant: &str,
        data: &str,
        at: i64,
    ) -> Result<(), StorageError> {
        self.tx.exec(
            "INSERT INTO meeting_returns (meeting, participant, held_at, data) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (meeting, participant) DO UPDATE SET held_at = excluded.held_at, data = excluded.data",
            p![meeting, participant, at, data],
        )?;
        Ok(())
    }

    /// `participant` left `meeting`: no place is held for them.
    pub fn forget_place(&self, meeting: &str, participant: &str) -> Result<(), StorageError> {
        self.tx.exec(
            "DELETE FROM meeting_returns WHERE meeting = ?1 AND participant = ?2",
            p![meeting, participant],
        )?;
        Ok(())
    }

    /// The places held in `meeting` are current as of `at` (a running
    /// meeting says so now and then: what a crash leaves is then recent).
    pub fn places_current(&self, meeting: &str, at: i64) -> Result<(), StorageError> {
        self.tx.exec(
            "UPDATE meeting_returns SET held_at = ?2 WHERE meeting = ?1",
            p![meeting, at],
        )?;
        Ok(())
    }
}

/// Each write once, for both a lone call and a batch.
mod writes {
    use super::*;

    pub fn end_meeting(c: &dyn Sql, id: &str) -> Result<(), StorageError> {
        c.exec(
            "UPDATE meetings SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
            p![id, unix_millis()],
        )?;
        Ok(())
    }

    pub fn update_settings(c: &dyn Sql, id: &str, settings: &str) -> Result<(), StorageError> {
        c.exec(
            "UPDATE meetings SET settings = ?2 WHERE id = ?1",
            p![id, settings],
        )?;
        Ok(())
    }

    pub fn set_level(c: &dyn Sql, id: &str, level: &str) -> Result<(), StorageError> {
        c.exec(
            "UPDATE meetings SET level = ?2 WHERE id = ?1",
            p![id, level],
        )?;
        Ok(())
    }

    pub fn set_passcode_hash(
        c: &dyn Sql,
        id: &str,
        hash: Option<&str>,
    ) -> Result<(), StorageError> {
        c.exec(
            "UPDATE meetings SET passcode_hash = ?2 WHERE id = ?1",
            p![id, hash],
        )?;
        Ok(())
    }

    pub fn set_locked(c: &dyn Sql, id: &str, locked: bool) -> Result<(), StorageError> {
        c.exec(
            "UPDATE meetings SET locked = ?2 WHERE id = ?1",
            p![id, locked],
        )?;
        Ok(())
    }

    pub fn set_grant(
        c: &dyn Sql,
        id: &str,
        person: &str,
        role: Option<&str>,
    ) -> Result<(), StorageError> {
        match role {
            Some(role) => c.exec(
                "INSERT INTO meeting_grants (meeting, person, role) VALUES (?1, ?2, ?3)
                 ON CONFLICT (meeting, person) DO UPDATE SET role = excluded.role",
                p![id, person, role],
            )?,
            None => c.exec(
                "DELETE FROM meeting_grants WHERE meeting = ?1 AND person = ?2",
                p![id, person],
            )?,
        };
        Ok(())
    }

    pub fn bar(c: &dyn Sql, id: &str, person: &str) -> Result<(), StorageError> {
        c.exec(
            "INSERT INTO meeting_bars (meeting, person, barred_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (meeting, person) DO NOTHING",
            p![id, person, unix_millis()],
        )?;
        Ok(())
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    let version: usize =
        conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    if version > MIGRATIONS.len() {
        return Err(StorageError::TooNew {
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

pub fn new_meeting_id() -> String {
    let mut id = String::with_capacity(14);
    for i in 0..12 {
        if i > 0 && i % 4 == 0 {
            id.push('-');
        }
        id.push(ID_ALPHABET[rand::random_range(0..ID_ALPHABET.len())] as char);
    }
    id
}

/// Whether `s` has the shape of a meeting id (checked before any lookup).
pub fn is_meeting_id(s: &str) -> bool {
    s.len() == 14
        && s.bytes().enumerate().all(|(i, b)| {
            if i % 5 == 4 {
                b == b'-'
            } else {
                ID_ALPHABET.contains(&b)
            }
        })
}

pub fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

enum PgTxError {
    /// A statement failed and PostgreSQL aborted the transaction.
    Broken(StorageError),
    /// `f` or the commit failed.
    Failed(StorageError),
}

/// One PostgreSQL transaction for [`Storage::tx`], rolled back if `f` fails
/// or a failure `f` let pass aborted it (its COMMIT would roll back and say
/// nothing, and the caller would take unstored writes for stored).
fn pg_tx<R>(
    pg: &PgConn,
    write: bool,
    savepoints: bool,
    f: &impl Fn(&dyn Sql) -> Result<R, StorageError>,
) -> Result<R, PgTxError> {
    pg.batch("BEGIN").map_err(PgTxError::Failed)?;
    pg.set_in_tx(true);
    let out = (|| {
        if write {
            pg.exec(
                "SELECT pg_advisory_xact_lock(?1)",
                &[db::Param::Int(pg::WRITE_LOCK)],
            )?;
        }
        pg.set_savepoints(savepoints);
        let out = f(pg);
        pg.set_savepoints(false);
        out
    })();
    let broken = pg.take_broken();
    pg.set_in_tx(false);
    let out = match (out, broken) {
        (Ok(out), None) => pg.batch("COMMIT").map(|()| out).map_err(PgTxError::Failed),
        (Ok(_), Some(broken)) => Err(PgTxError::Broken(StorageError::Postgres(format!(
            "the transaction was rolled back: {broken}"
        )))),
        (Err(e), Some(_)) => Err(PgTxError::Broken(e)),
        (Err(e), None) => Err(PgTxError::Failed(e)),
    };
    if out.is_err() {
        let _ = pg.batch("ROLLBACK");
    }
    out
}

/// Raw access, for tests that play someone with the database in hand.
#[cfg(test)]
impl Storage {
    /// One statement, with `?N` parameters.
    pub(crate) fn raw_exec(
        &self,
        sql: &str,
        params: &[db::Param<'_>],
    ) -> Result<u64, StorageError> {
        self.with(|c| c.exec(sql, params))
    }

    /// The first column of the first row.
    pub(crate) fn raw_int(&self, sql: &str, params: &[db::Param<'_>]) -> Option<i64> {
        self.with(|c| c.int(sql, params)).unwrap()
    }

    /// Several statements, no parameters.
    pub(crate) fn raw_batch(&self, sql: &str) -> Result<(), StorageError> {
        match &*self.conn()? {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres(c) => c.batch(sql),
        }
    }

    /// The SQLite connection itself.
    pub(crate) fn raw_sqlite<R>(&self, f: impl FnOnce(&Connection) -> R) -> R {
        match &*self.conn().unwrap() {
            Conn::Sqlite(c) => f(c),
            Conn::Postgres(_) => panic!("not SQLite"),
        }
    }

    /// Take away the audit log's append-only triggers.
    pub(crate) fn raw_unguard(&self) {
        self.raw_batch(if self.is_shared() {
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"
        } else {
            "DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;"
        })
        .unwrap();
    }
}

/// Run `f` on SQLite, then on PostgreSQL: what the storage promises holds
/// on both.
#[cfg(test)]
pub(crate) fn each_engine(f: impl Fn(Storage)) {
    f(Storage::in_memory().unwrap());
    f(Storage::connect(&testing::postgres_url()).unwrap());
}

#[cfg(test)]
mod audit_tests;
#[cfg(test)]
mod pg_tls_tests;

#[cfg(test)]
mod checkpoint_tests;

#[cfg(test)]
mod migration_tests;

#[cfg(test)]
mod retention_tests;

#[cfg(test)]
mod export_tests;

#[cfg(test)]
mod chat_tests;

#[cfg(test)]
mod sessions_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_is_a_checked_snapshot_taken_while_the_database_is_in_use() {
        let dir = std::env::temp_dir().join(format!("convene-storage-{}", new_meeting_id()));
        let s = Storage::open(&dir).unwrap();
        let (kept, _) = s.create_meeting("Kept", None, "{}").unwrap();
        fn event(m: &str) -> AuditEvent<'_> {
            AuditEvent {
                meeting: m,
                actor: "system",
                subject: "-",
                event: "create",
                outcome: "ok",
                detail: "",
            }
        }
        s.audit(event(&kept.id)).unwrap();
        let copy = dir.join("copy.db");
        let report = Storage::backup(&dir, &copy).unwrap();
        assert_eq!(
            (report.schema, report.meetings, report.audit_rows),
            (MIGRATIONS.len(), 1, 1)
        );
        assert!(report.bytes > 0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "the copy is readable by its owner only");
            // Never through a symlink, even a dangling one.
            let link = dir.join("link.db");
            std::os::unix::fs::symlink(dir.join("elsewhere.db"), &link).unwrap();
            assert!(Storage::backup(&dir, &link).is_err());
            assert!(!dir.join("elsewhere.db").exists());
        }
        // Written after the snapshot: not in it.
        let (later, _) = s.create_meeting("Later", None, "{}").unwrap();
        s.audit(event(&later.id)).unwrap();
        // Never over an existing file.
        assert!(matches!(
            Storage::backup(&dir, &copy),
            Err(StorageError::Backup(_))
        ));
        // Restored: the copy is a data folder's database.
        let restored = dir.join("restored");
        std::fs::create_dir_all(&restored).unwrap();
        std::fs::copy(&copy, restored.join("convene.db")).unwrap();
        let r = Storage::open(&restored).unwrap();
        assert_eq!(
            r.meeting(&kept.id).unwrap().map(|m| m.title),
            Some("Kept".into())
        );
        assert_eq!(r.meeting(&later.id).unwrap(), None);
        assert_eq!(r.verify_audit().unwrap().unwrap().rows, 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The writer batches many people's changes into one transaction: one
    /// that fails (here a grant in a meeting that does not exist) must not
    /// take the others with it.
    #[test]
    fn a_failed_statement_in_a_batch_fails_alone() {
        each_engine(a_failed_statement_in_a_batch_fails_alone_on)
    }

    fn a_failed_statement_in_a_batch_fails_alone_on(s: Storage) {
        let (m, _) = s.create_meeting("Board", None, "{}").unwrap();
        let ev = AuditEvent {
            meeting: &m.id,
            actor: "p1",
            subject: "p1",
            event: "lock",
            outcome: "locked",
            detail: "",
        };
        let results = s
            .write_batch(|b| {
                (
                    b.set_grant("abcd-efgh-jkmn", "p9", Some("host")),
                    b.set_locked(&m.id, true),
                    b.audit(ev, 1),
                    b.bar("abcd-efgh-jkmn", "p9"),
                    b.audit(ev, 2),
                )
            })
            .unwrap();
        assert!(results.0.is_err(), "no such meeting");
        assert!(results.1.is_ok() && results.2.is_ok());
        assert!(results.3.is_err(), "no such meeting");
        assert_eq!(results.4.unwrap().seq, 2);
        assert!(s.meeting(&m.id).unwrap().unwrap().locked);
        assert_eq!(s.verify_audit().unwrap().unwrap().rows, 2);
        assert_eq!(
            s.meeting_people("abcd-efgh-jkmn").unwrap(),
            Default::default()
        );
    }

    /// A caller that panics inside a transaction leaves nothing half done,
    /// and the storage goes on working (on PostgreSQL the transaction is
    /// still open on the server when the panic unwinds).
    #[test]
    fn a_panic_inside_a_batch_commits_nothing_and_the_next_call_works() {
        each_engine(a_panic_inside_a_batch_commits_nothing_and_the_next_call_works_on)
    }

    fn a_panic_inside_a_batch_commits_nothing_and_the_next_call_works_on(s: Storage) {
        let (m, _) = s.create_meeting("Board", None, "{}").unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.write_batch(|b| {
                b.set_locked(&m.id, true).unwrap();
                panic!("a bug in the caller");
            })
        }));
        assert!(panicked.is_err());
        assert!(!s.meeting(&m.id).unwrap().unwrap().locked, "rolled back");
        s.set_locked(&m.id, true).unwrap();
        assert!(s.meeting(&m.id).unwrap().unwrap().locked);
        // Committed, not inside a transaction left open: another connection sees it.
        if s.is_shared() {
            let url = s.url.clone().unwrap();
            let other = Storage::connect(&url).unwrap();
            assert!(other.meeting(&m.id).unwrap().unwrap().locked);
        }
    }

    /// Places held one by one as people come, change and go are what a
    /// meeting started again after a crash reads; a meeting that says they
    /// are current keeps them fresh.
    #[test]
    fn places_held_as_people_come_and_go_are_read_after_a_crash() {
        each_engine(places_held_as_people_come_and_go_are_read_after_a_crash_on)
    }

    fn places_held_as_people_come_and_go_are_read_after_a_crash_on(s: Storage) {
        let (m, _) = s.create_meeting("A", None, "{}").unwrap();
        let old = unix_millis() - 120_000;
        s.write_batch(|b| {
            b.hold_place(&m.id, "p1", "{\"role\":\"host\"}", old)
                .unwrap();
            b.hold_place(&m.id, "p2", "{}", old).unwrap();
            b.hold_place(&m.id, "p3", "{}", old).unwrap();
        })
        .unwrap();
        s.write_batch(|b| {
            b.hold_place(&m.id, "p1", "{\"role\":\"co-host\"}", old)
                .unwrap();
            b.forget_place(&m.id, "p2").unwrap();
        })
        .unwrap();
        // Held two minutes ago and not said current since: too old to trust.
        s.write_batch(|b| b.places_current(&m.id, unix_millis()).unwrap())
            .unwrap();
        assert_eq!(
            s.take_returns(&m.id, 60_000).unwrap(),
            vec!["{\"role\":\"co-host\"}", "{}"]
        );
        s.write_batch(|b| b.hold_place(&m.id, "p4", "{}", old).unwrap())
            .unwrap();
        assert!(s.take_returns(&m.id, 60_000).unwrap().is_empty(), "stale");
    }

    #[test]
    fn what_a_transaction_acknowledges_is_stored_even_past_a_failed_statement() {
        each_engine(what_a_transaction_acknowledges_is_stored_even_past_a_failed_statement_on)
    }

    fn what_a_transaction_acknowledges_is_stored_even_past_a_failed_statement_on(s: Storage) {
        let (m, _) = s.create_meeting("Board", None, "{}").unwrap();
        let locked = |s: &Storage| s.meeting(&m.id).unwrap().unwrap().locked;
        // In a batch, a statement that cannot even be prepared fails alone
        // and the rest is stored (PostgreSQL: prepared under its savepoint).
        let r = s.tx(true, true, |tx| {
            assert!(tx.exec("UPDATE no_such_table SET x = 1", &[]).is_err());
            tx.exec("UPDATE meetings SET locked = 1 WHERE id = ?1", p![&m.id])
        });
        assert_eq!(r.unwrap(), 1);
        assert!(locked(&s));
        // Outside a batch, a failure the caller lets pass: PostgreSQL has
        // aborted the transaction, so it must not be acknowledged.
        let r = s.tx(true, false, |tx| {
            let _ = tx.exec("UPDATE no_such_table SET x = 1", &[]);
            tx.exec("UPDATE meetings SET locked = 0 WHERE id = ?1", p![&m.id])
                .ok();
            Ok(())
        });
        assert_eq!(r.is_ok(), !locked(&s), "acknowledged but not stored: {r:?}");
        assert_eq!(r.is_err(), s.is_shared());
        // The connection goes on.
        s.set_locked(&m.id, false).unwrap();
        assert!(!locked(&s));
    }

    /// A database that is there but says nothing (stopped, or a network
    /// that holds packets) costs a call [`pg::DEADLINE`], not the node: the
    /// call fails, and the next one, once the database answers, works on a
    /// new connection.
    #[test]
    fn a_database_that_stops_answering_fails_calls_and_is_used_again_when_it_answers() {
        use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
        use std::sync::Arc;
        let url = testing::postgres_url();
        let socket = url
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("host="))
            .map(|dir| std::path::Path::new(dir).join(".s.PGSQL.5432"))
            .unwrap();
        let db = url
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("dbname="))
            .unwrap()
            .to_string();
        // A TCP relay to the socket that can be told to hold everything.
        let frozen = Arc::new(AtomicBool::new(false));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let f = frozen.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let Ok(unix) = std::os::unix::net::UnixStream::connect(&socket) else {
                    continue;
                };
                let pipe = |mut from: Box<dyn std::io::Read + Send>,
                            mut to: Box<dyn std::io::Write + Send>,
                            frozen: Arc<AtomicBool>| {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            while frozen.load(Relaxed) {
                                std::thread::sleep(std::time::Duration::from_millis(20));
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                };
                pipe(
                    Box::new(tcp.try_clone().unwrap()),
                    Box::new(unix.try_clone().unwrap()),
                    f.clone(),
                );
                pipe(Box::new(unix), Box::new(tcp), f.clone());
            }
        });
        let s = Storage::connect(&format!(
            "host=127.0.0.1 port={port} user=convene dbname={db}"
        ))
        .unwrap();
        let (m, _) = s.create_meeting("Board", None, "{}").unwrap();
        frozen.store(true, Relaxed);
        let t = std::time::Instant::now();
        let e = s.set_locked(&m.id, true).unwrap_err();
        assert!(e.to_string().contains("no answer"), "{e}");
        assert!(t.elapsed() < pg::DEADLINE + std::time::Duration::from_secs(5));
        // (Whether that call's write happened is unknown to the caller, as
        // with any call cut off: the relay delivers it late.)
        frozen.store(false, Relaxed);
        let (after, _) = s.create_meeting("After", None, "{}").unwrap();
        assert_eq!(s.meeting(&after.id).unwrap().unwrap().title, "After");
    }

    /// A statement that waits on a lock another connection holds ends with
    /// an error, not never (PostgreSQL: `lock_timeout`, set at connect).
    #[test]
    fn a_write_stuck_behind_a_lock_fails_rather_than_waits_forever() {
        let url = testing::postgres_url();
        let s = Storage::connect(&url).unwrap();
        let (m, _) = s.create_meeting("Board", None, "{}").unwrap();
        let other = Storage::connect(&url).unwrap();
        other
            .raw_batch(&format!(
                "BEGIN; UPDATE meetings SET locked = 1 WHERE id = '{}'",
                m.id
            ))
            .unwrap();
        let t = std::time::Instant::now();
        let e = s.set_locked(&m.id, false).unwrap_err();
        assert!(e.to_string().contains("lock timeout"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(30));
        other.raw_batch("ROLLBACK").unwrap();
        s.set_locked(&m.id, true).unwrap();
    }

    #[test]
    fn returns_are_read_once_and_only_while_fresh() {
        each_engine(returns_are_read_once_and_only_while_fresh_on)
    }

    fn returns_are_read_once_and_only_while_fresh_on(s: Storage) {
        let (a, _) = s.create_meeting("A", None, "{}").unwrap();
        let (b, _) = s.create_meeting("B", None, "{}").unwrap();
        s.hold_returns(
            &a.id,
            &[
                ("p1".into(), "{\"x\":1}".into()),
                ("p2".into(), "{}".into()),
            ],
        )
        .unwrap();
        s.hold_returns(&b.id, &[("p1".into(), "{}".into())])
            .unwrap();
        assert_eq!(
            s.take_returns(&a.id, 60_000).unwrap(),
            vec!["{\"x\":1}", "{}"]
        );
        assert!(
            s.take_returns(&a.id, 60_000).unwrap().is_empty(),
            "read once"
        );
        // Too old: not given, and gone.
        assert!(s.take_returns(&b.id, -1).unwrap().is_empty());
        assert!(s.take_returns(&b.id, 60_000).unwrap().is_empty());
        // Places nobody came back for are forgotten after the restart.
        s.hold_returns(&b.id, &[("p1".into(), "{}".into())])
            .unwrap();
        assert_eq!(s.forget_returns_before(unix_millis() + 1).unwrap(), 1);
        assert!(s.take_returns(&b.id, 60_000).unwrap().is_empty());
    }

    #[test]
    fn writability_is_checked_without_leaving_anything_behind() {
        let dir = std::env::temp_dir().join(format!("convene-storage-{}", new_meeting_id()));
        let s = Storage::open(&dir).unwrap();
        let tables = |s: &Storage| -> i64 {
            s.raw_sqlite(|c| {
                c.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                    .unwrap()
            })
        };
        let before = tables(&s);
        s.check_writable().unwrap();
        s.check_writable().unwrap();
        assert_eq!(tables(&s), before, "the probe leaves no table");
        // Another process holding the write lock: not writable (after the
        // busy timeout), and writable again once it lets go.
        let other = Connection::open(dir.join("convene.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert!(s.check_writable().is_err());
        other.execute_batch("ROLLBACK").unwrap();
        s.check_writable().unwrap();
        // A database that takes no writes (as a read-only file would) fails too.
        s.raw_sqlite(|c| c.pragma_update(None, "query_only", true))
            .unwrap();
        assert!(s.check_writable().is_err());
        s.raw_sqlite(|c| c.pragma_update(None, "query_only", false))
            .unwrap();
        s.check_writable().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn meetings_survive_reopening_the_file() {
        let dir = std::env::temp_dir().join(format!("convene-storage-{}", new_meeting_id()));
        let (m, host_key) = Storage::open(&dir)
            .unwrap()
            .create_meeting("Weekly sync", Some("$argon2id$stub"), r#"{"lobby":true}"#)
            .unwrap();
        let s = Storage::open(&dir).unwrap();
        let found = s.meeting(&m.id).unwrap().unwrap();
        assert_eq!(found, m);
        assert_eq!(found.passcode_hash.as_deref(), Some("$argon2id$stub"));
        assert!(found.is_host_key(&host_key));
        assert!(!found.is_host_key("0123"));
        assert!(
            !found.host_key_hash.contains(&host_key),
            "only a hash is stored"
        );
        assert_eq!(s.meeting("nope-nope-nope").unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn lock_settings_grants_and_bars_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("convene-storage-{}", new_meeting_id()));
        let id = {
            let s = Storage::open(&dir).unwrap();
            let (m, _) = s.create_meeting("Board", None, "{}").unwrap();
            s.set_locked(&m.id, true).unwrap();
            s.set_level(&m.id, "official-sensitive").unwrap();
            s.update_settings(&m.id, r#"{"lobby":true}"#).unwrap();
            s.set_grant(&m.id, "device:a", Some("co-host")).unwrap();
            s.set_grant(&m.id, "device:a", Some("presenter")).unwrap();
            s.set_grant(&m.id, "device:b", Some("co-host")).unwrap();
            s.set_grant(&m.id, "device:b", None).unwrap();
            s.bar(&m.id, "device:t").unwrap();
            s.bar(&m.id, "device:t").unwrap();
            m.id
        };
        let s = Storage::open(&dir).unwrap();
        let m = s.meeting(&id).unwrap().unwrap();
        assert!(m.locked);
        assert_eq!(m.level, "official-sensitive");
        assert_eq!(m.settings, r#"{"lobby":true}"#);
        assert_eq!(
            s.meeting_people(&id).unwrap(),
            MeetingPeople {
                grants: vec![("device:a".into(), "presenter".into())],
                barred: vec!["device:t".into()],
            }
        );
        assert_eq!(s.meeting_people("other").unwrap(), MeetingPeople::default());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn ids_have_the_documented_shape() {
        for _ in 0..100 {
            let id = new_meeting_id();
            assert!(is_meeting_id(&id), "{id}");
        }
        assert!(!is_meeting_id("abcd-efgh-ijk1"));
        assert!(!is_meeting_id("../../etc/passwd"));
        assert!(!is_meeting_id(""));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            Storage::from_connection(conn),
            Err(StorageError::TooNew { .. })
        ));
    }
}

#[cfg(test)]
mod data_map_tests;
