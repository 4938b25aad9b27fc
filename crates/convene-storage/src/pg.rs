//! PostgreSQL, for nodes that share their state (`--database postgres://…`).
//!
//! tokio-postgres drives the socket on a thread of its own (a one-thread
//! runtime per connection); callers wait on its answers with a plain
//! executor. Storage is called from blocking code and from async tasks
//! alike, as with SQLite: a plain wait works in both, where a runtime's
//! `block_on` inside another runtime would panic.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::error::Error as _;
use std::time::Duration;

use futures_executor::block_on;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, Statement};

use crate::db::{Engine, Param, Row, Sql, Value};
use crate::pg_tls;
use crate::StorageError;

/// The schema PostgreSQL starts at: SQLite's migrations 1 to 9 in one.
const BASE_VERSION: usize = 9;
const BASE_SCHEMA: &str = include_str!("../migrations/postgres/0009_schema.sql");
/// The versions after [`BASE_VERSION`], one file each, as SQLite's.
const LATER: &[&str] = &[
    include_str!("../migrations/postgres/0010_sessions.sql"),
    include_str!("../migrations/postgres/0011_node_secrets.sql"),
];

/// Held while migrating, so that nodes starting together migrate once.
const MIGRATION_LOCK: i64 = 0x636f_6e76_656e_6501;
/// Held by a transaction that appends to the audit log (SQLite's `BEGIN
/// IMMEDIATE`): appends from every process go one at a time.
pub(crate) const WRITE_LOCK: i64 = 0x636f_6e76_656e_6502;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole of connecting (TCP, TLS, start-up and authentication): a
/// server that accepts the connection and then says nothing is not waited
/// for longer, while the caller holds the storage.
const CONNECT_DEADLINE: Duration = Duration::from_secs(8);
/// Migrating may take long (a big table), and may wait for another node's
/// migration: its own, longer bound.
const MIGRATION_DEADLINE: Duration = Duration::from_secs(600);

/// The longest a call waits for PostgreSQL's answer. The server's own
/// limits (`statement_timeout`, `lock_timeout`) answer sooner; this is for a
/// server that is there but says nothing (stopped, or a network that
/// swallows packets while the kernel still acknowledges them).
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

pub(crate) struct PgConn {
    client: Client,
    /// How the connection was secured; a cancel request goes the same way.
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// The connection thread's runtime: its timers bound each wait. It runs
    /// until `_stop` is dropped with this connection.
    runtime: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
    /// A wait ran out: what the connection is in the middle of is unknown,
    /// so it is not used again.
    dead: Cell<bool>,
    /// How long a call waits ([`DEADLINE`], but for migrations).
    deadline: Cell<Duration>,
    /// Statements prepared on this connection, by their SQLite text.
    statements: RefCell<HashMap<String, Statement>>,
    /// Inside [`crate::Storage::write_batch`]: each statement gets a savepoint
    /// of its own, so one that fails fails alone, as in SQLite.
    savepoints: Cell<bool>,
    /// A savepoint is set in this transaction (released by the next one).
    savepoint_set: Cell<bool>,
    /// Inside a transaction: an error PostgreSQL did not undo to a savepoint
    /// leaves the whole transaction aborted, and its COMMIT would quietly
    /// roll back. The first such error, so that the commit fails instead.
    in_tx: Cell<bool>,
    broken: RefCell<Option<String>>,
}

impl PgConn {
    /// Connect to `url` (`postgres://user@host/db` or key=value form).
    pub fn connect(url: &str) -> Result<PgConn, StorageError> {
        let address = pg_tls::parse(url)?;
        let tls = pg_tls::connector(&address)?;
        let mut config = address.config;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("convene");
        // A call never waits forever: a database that went away is noticed
        // by TCP (keepalives, and unacknowledged data for 10 s), and one that
        // is there but stuck ends a statement after 15 s and a wait for a
        // lock after 10 s. The caller gets an error; the connection is
        // opened again at the next call.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.tcp_user_timeout(Duration::from_secs(10));
        // And a transaction left open by a client that went quiet (its
        // wait ran out, or the network between froze) ends after 30 s, and
        // with it any lock it held (the audit log's write lock).
        let limits = "-c statement_timeout=15000 -c lock_timeout=10000 \
                      -c idle_in_transaction_session_timeout=30000";
        let options = match config.get_options() {
            Some(given) => format!("{limits} {given}"),
            None => limits.to_string(),
        };
        config.options(options);
        let (tx, rx) = std::sync::mpsc::channel();
        let cancel_tls = tls.clone();
        std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(StorageError::Io(e)));
                        return;
                    }
                };
                let runtime = rt.handle().clone();
                rt.block_on(async move {
                    let connecting = tokio::time::timeout(CONNECT_DEADLINE, config.connect(tls));
                    match connecting.await {
                        Err(_) => {
                            let _ = tx.send(Err(StorageError::Postgres(format!(
                                "the database did not finish connecting in {} s",
                                CONNECT_DEADLINE.as_secs()
                            ))));
                        }
                        Ok(Ok((client, connection))) => {
                            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                            let _ = tx.send(Ok((client, runtime, stop)));
                            // Ends when the client is dropped or the server
                            // goes; the runtime stays for the timers until
                            // the PgConn goes.
                            let _ = connection.await;
                            let _ = stopped.await;
                        }
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(pg_tls::explained(pg_error(e))));
                        }
                    }
                });
            })?;
        let (client, runtime, stop) = rx
            .recv_timeout(CONNECT_DEADLINE + Duration::from_secs(1))
            .map_err(|_| StorageError::Postgres("the connection thread stopped".into()))??;
        Ok(PgConn {
            client,
            tls: cancel_tls,
            runtime,
            _stop: stop,
            dead: Cell::new(false),
            deadline: Cell::new(DEADLINE),
            statements: RefCell::default(),
            savepoints: Cell::new(false),
            savepoint_set: Cell::new(false),
            in_tx: Cell::new(false),
            broken: RefCell::new(None),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.dead.get() || self.client.is_closed()
    }

    /// Wait for `work`, at most [`DEADLINE`]. When that runs out, the
    /// server is asked to cancel what it runs (on a connection of its own),
    /// so that it does not go on holding locks for a client that left.
    fn wait_any<T>(&self, work: impl std::future::Future<Output = T>) -> Result<T, StorageError> {
        let deadline = self.deadline.get();
        let gone = || {
            StorageError::Postgres(format!(
                "no answer from the database in {} s; the connection is closed and opened again at the next call",
                deadline.as_secs()
            ))
        };
        if self.dead.get() {
            return Err(gone());
        }
        let _timers = self.runtime.enter();
        block_on(tokio::time::timeout(deadline, work)).map_err(|_| {
            self.dead.set(true);
            let cancel = self.client.cancel_token();
            let tls = self.tls.clone();
            self.runtime.spawn(async move {
                let _ = tokio::time::timeout(CONNECT_DEADLINE, cancel.cancel_query(tls)).await;
            });
            gone()
        })
    }

    fn wait<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StorageError> {
        self.wait_any(work)?.map_err(pg_error)
    }

    /// Several statements, no parameters (transaction control, schema).
    pub fn batch(&self, sql: &str) -> Result<(), StorageError> {
        self.wait(self.client.batch_execute(sql))
            .map_err(|e| self.failed(e))
    }

    /// A transaction begins (`BEGIN` was sent) or ends.
    pub fn set_in_tx(&self, on: bool) {
        self.in_tx.set(on);
        self.broken.replace(None);
    }

    /// The error that aborted this transaction, if one did: it must be
    /// rolled back, not committed.
    pub fn take_broken(&self) -> Option<String> {
        self.broken.take()
    }

    pub fn set_savepoints(&self, on: bool) {
        self.savepoints.set(on);
        self.savepoint_set.set(false);
    }

    /// `e` happened and was not undone to a savepoint: inside a transaction,
    /// the transaction is now aborted.
    fn failed(&self, e: StorageError) -> StorageError {
        if self.in_tx.get() && self.broken.borrow().is_none() {
            self.broken.replace(Some(e.to_string()));
        }
        e
    }

    fn cached(&self, sql: &str) -> Option<Statement> {
        self.statements.borrow().get(sql).cloned()
    }

    fn prepared(
        &self,
        sql: &str,
        s: Result<Statement, tokio_postgres::Error>,
    ) -> Result<Statement, StorageError> {
        let s = s.map_err(pg_error)?;
        self.statements
            .borrow_mut()
            .insert(sql.to_string(), s.clone());
        Ok(s)
    }

    /// Run `sql` with `run`; in a batch, under a savepoint of its own, sent
    /// in the same round trip as the statement (a pipeline: the savepoint
    /// costs no wait), and rolled back to if the statement fails. A
    /// statement not yet prepared is prepared under the savepoint too: a
    /// failed prepare (a wait for a lock that timed out) fails alone.
    fn run<'a, R, F, Fut>(&'a self, sql: &str, run: F) -> Result<R, StorageError>
    where
        F: FnOnce(Statement) -> Fut,
        Fut: std::future::Future<Output = Result<R, tokio_postgres::Error>> + 'a,
    {
        if !self.savepoints.get() {
            let stmt = match self.cached(sql) {
                Some(s) => s,
                None => {
                    let s = self.wait_any(self.client.prepare(&dollar_params(sql)));
                    s.and_then(|s| self.prepared(sql, s))
                        .map_err(|e| self.failed(e))?
                }
            };
            return self.wait(run(stmt)).map_err(|e| self.failed(e));
        }
        let mark = if self.savepoint_set.replace(true) {
            "RELEASE SAVEPOINT statement; SAVEPOINT statement"
        } else {
            "SAVEPOINT statement"
        };
        let out = match self.cached(sql) {
            Some(stmt) => {
                let (marked, out) = self
                    .wait_any(futures_util::future::join(
                        self.client.batch_execute(mark),
                        run(stmt),
                    ))
                    .map_err(|e| self.failed(e))?;
                marked.map_err(|e| self.failed(pg_error(e)))?;
                out.map_err(pg_error)
            }
            None => {
                let dollars = dollar_params(sql);
                let (marked, prepared) = self
                    .wait_any(futures_util::future::join(
                        self.client.batch_execute(mark),
                        self.client.prepare(&dollars),
                    ))
                    .map_err(|e| self.failed(e))?;
                marked.map_err(|e| self.failed(pg_error(e)))?;
                match self.prepared(sql, prepared) {
                    Ok(stmt) => self.wait(run(stmt)),
                    Err(e) => Err(e),
                }
            }
        };
        match out {
            Ok(r) => Ok(r),
            Err(e) => {
                if let Err(undo) = self.batch("ROLLBACK TO SAVEPOINT statement") {
                    self.failed(undo);
                }
                Err(e)
            }
        }
    }
}

impl Sql for PgConn {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn exec(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StorageError> {
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        self.run(sql, |stmt| async move {
            self.client.execute(&stmt, &params).await
        })
    }

    fn rows(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StorageError> {
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = self.run(sql, |stmt| async move {
            self.client.query(&stmt, &params).await
        })?;
        rows.iter().map(row).collect()
    }
}

fn row(r: &tokio_postgres::Row) -> Result<Row, StorageError> {
    let mut values = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let get_err = |e: tokio_postgres::Error| StorageError::Column(format!("column {i}: {e}"));
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)
                .map_err(get_err)?
                .map(Value::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)
                .map_err(get_err)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)
                .map_err(get_err)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)
                .map_err(get_err)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i)
                .map_err(get_err)?
                .map(Value::Blob)
        } else {
            r.try_get::<_, Option<String>>(i)
                .map_err(get_err)?
                .map(Value::Text)
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(v) if *ty == Type::INT8 => v.to_sql(ty, out),
            Param::Int(v) if *ty == Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
            Param::Int(v) if *ty == Type::BOOL => (v != 0).to_sql(ty, out),
            Param::Text(v) => v.to_sql(ty, out),
            Param::Blob(v) => v.to_sql(ty, out),
            Param::Int(v) => Err(format!("{v} for a column of type {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Checked per value in `to_sql`.
        true
    }

    to_sql_checked!();
}

/// The database `url` names, for messages: user, hosts, port and database,
/// read from the parsed address, so that no form of password (in the URL,
/// `?password=`, quoted key=value) can reach a log.
pub fn describe_database(url: &str) -> String {
    let Ok(pg_tls::Address { config, .. }) = pg_tls::parse(url) else {
        return "a PostgreSQL address that does not parse".into();
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{}:{port}/{db}", hosts.join(","))
}

/// `?1` → `$1`: the statements are written with SQLite's numbered
/// placeholders. (No statement has a `?` inside a string.)
fn dollar_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// A PostgreSQL error with what the server said (its message, detail and
/// code), not only "db error".
pub(crate) fn pg_error(e: tokio_postgres::Error) -> StorageError {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} ({})", db.message(), db.code().code());
        if let Some(d) = db.detail() {
            s.push_str(": ");
            s.push_str(d);
        }
        return StorageError::Postgres(s);
    }
    match e.source() {
        Some(cause) => StorageError::Postgres(format!("{e}: {cause}")),
        None => StorageError::Postgres(e.to_string()),
    }
}

/// Bring the schema to this version's, in one transaction that holds a
/// lock while it migrates: nodes starting together migrate once, and the
/// lock goes with the transaction, whatever happens to it.
pub(crate) fn migrate(conn: &PgConn, known: usize) -> Result<(), StorageError> {
    conn.deadline.set(MIGRATION_DEADLINE);
    let migrated = migrate_once(conn, known);
    conn.deadline.set(DEADLINE);
    migrated
}

fn migrate_once(conn: &PgConn, known: usize) -> Result<(), StorageError> {
    conn.batch("BEGIN")?;
    let result = (|| {
        // The connection's limits are for a meeting's calls: a migration
        // may wait for another node's, and may take long on a big table.
        conn.batch("SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0")?;
        conn.exec(
            "SELECT pg_advisory_xact_lock(?1)",
            &[Param::Int(MIGRATION_LOCK)],
        )?;
        conn.batch("CREATE TABLE IF NOT EXISTS convene_schema (version BIGINT NOT NULL)")?;
        let found = conn
            .int("SELECT max(version) FROM convene_schema", &[])?
            .unwrap_or(0) as usize;
        if found > known {
            return Err(StorageError::TooNew { found, known });
        }
        let mut at = found;
        if at == 0 {
            conn.batch(BASE_SCHEMA)?;
            at = BASE_VERSION;
        }
        for (i, sql) in LATER.iter().enumerate() {
            let version = BASE_VERSION + 1 + i;
            if version > at && version <= known {
                conn.batch(sql)?;
                at = version;
            }
        }
        if at != found {
            conn.exec(
                "INSERT INTO convene_schema (version) VALUES (?1)",
                &[Param::Int(at as i64)],
            )?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.batch("COMMIT"),
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_become_dollars() {
        assert_eq!(
            super::dollar_params("SELECT a FROM t WHERE b = ?1 AND c = ?12 OR ?2 IS NULL"),
            "SELECT a FROM t WHERE b = $1 AND c = $12 OR $2 IS NULL"
        );
    }
}
