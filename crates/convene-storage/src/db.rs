//! One way to run SQL on either engine. Statements are written once, with
//! `?1`, `?2`… placeholders (SQLite's numbered form; PostgreSQL's `$1` is made
//! from it) and in the SQL both engines understand; the few that differ ask
//! [`Sql::engine`]. Values cross as [`Param`] and come back as [`Row`]s of
//! integers, text and bytes: the only types the schema uses.

use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::StorageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    Sqlite,
    Postgres,
}

/// A statement's parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}
impl From<bool> for Param<'_> {
    fn from(v: bool) -> Self {
        Param::Int(v as i64)
    }
}
impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(v)
    }
}
impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(v)
    }
}
impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Param::Blob(v)
    }
}
impl<'a> From<&'a Vec<u8>> for Param<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Param::Blob(v)
    }
}
impl<'a, T: Into<Param<'a>>> From<Option<T>> for Param<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Param::Null, Into::into)
    }
}

/// `p![a, b]`: a statement's parameters.
macro_rules! p {
    ($($x:expr),* $(,)?) => { &[$($crate::db::Param::from($x)),*][..] };
}
pub(crate) use p;

/// A column's value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// One row of a result.
#[derive(Debug, Clone)]
pub(crate) struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value, StorageError> {
        self.0
            .get(i)
            .ok_or_else(|| StorageError::Column(format!("no column {i}")))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StorageError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            v => Err(StorageError::Column(format!(
                "column {i}: {v:?} is not a number"
            ))),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, StorageError> {
        self.opt_int(i)?
            .ok_or_else(|| StorageError::Column(format!("column {i} is empty")))
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StorageError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            v => Err(StorageError::Column(format!(
                "column {i}: {v:?} is not text"
            ))),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, StorageError> {
        self.opt_text(i)?
            .ok_or_else(|| StorageError::Column(format!("column {i} is empty")))
    }

    pub fn blob(&self, i: usize) -> Result<Vec<u8>, StorageError> {
        match self.at(i)? {
            Value::Blob(v) => Ok(v.clone()),
            v => Err(StorageError::Column(format!(
                "column {i}: {v:?} is not bytes"
            ))),
        }
    }
}

/// A connection, or a transaction on one.
pub(crate) trait Sql {
    fn engine(&self) -> Engine;
    /// Run a statement; how many rows it changed.
    fn exec(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StorageError>;
    fn rows(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StorageError>;

    /// The first row, if any.
    fn row(&self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>, StorageError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }

    /// The first column of the first row (`count`, `max`…): `None` for no
    /// row or a NULL.
    fn int(&self, sql: &str, params: &[Param<'_>]) -> Result<Option<i64>, StorageError> {
        match self.row(sql, params)? {
            Some(r) => r.opt_int(0),
            None => Ok(None),
        }
    }

    /// Whether the database has `table` (an older schema, e.g. a backup
    /// being checked, may lack it).
    fn has_table(&self, table: &str) -> Result<bool, StorageError> {
        let sql = match self.engine() {
            Engine::Sqlite => {
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1"
            }
            Engine::Postgres => {
                "SELECT count(*) FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name = ?1"
            }
        };
        Ok(self.int(sql, p![table])?.unwrap_or(0) > 0)
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Param::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Param::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(v)),
            Param::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Param::Blob(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

impl Sql for rusqlite::Connection {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn exec(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StorageError> {
        let mut stmt = self.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params))? as u64)
    }

    fn rows(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StorageError> {
        let mut stmt = self.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                values.push(match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                    ValueRef::Real(f) => {
                        return Err(StorageError::Column(format!("column {i}: a real ({f})")))
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }
}
