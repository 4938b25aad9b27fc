//! Sign-in sessions shared by the nodes of a cluster, and the one-time codes
//! that carry a session from one node's name to another's (a cookie is only
//! ever sent to the name that set it). What a session holds is the sign-in
//! crate's business: here it is JSON.

use crate::db::{p, Sql};
use crate::{Storage, StorageError};

/// A session as stored: its family (every node's cookie for one sign-in),
/// what it holds, and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSession {
    pub family: String,
    pub data: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
}

impl Storage {
    /// Keep the session whose cookie hashes to `hash`; sessions and codes
    /// past their time go at the same time.
    pub fn save_session(
        &self,
        hash: &str,
        session: &SharedSession,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        self.tx(false, false, |c| {
            forget_expired(c, now_ms)?;
            c.exec(
                "INSERT INTO sessions (hash, family, data, expires_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (hash) DO UPDATE SET family = excluded.family,
                     data = excluded.data, expires_at = excluded.expires_at",
                p![hash, &session.family, &session.data, session.expires_at],
            )?;
            Ok(())
        })
    }

    /// The session whose cookie hashes to `hash`, unless it ended.
    pub fn session(&self, hash: &str, now_ms: i64) -> Result<Option<SharedSession>, StorageError> {
        self.with(|c| live(c, hash, now_ms))
    }

    /// Sign-out: every cookie of the sign-in, on every node, and its codes.
    pub fn end_sessions(&self, family: &str) -> Result<(), StorageError> {
        self.tx(false, false, |c| {
            c.exec("DELETE FROM sessions WHERE family = ?1", p![family])?;
            c.exec("DELETE FROM session_handoffs WHERE family = ?1", p![family])?;
            Ok(())
        })
    }

    /// Keep a one-time code (by its hash) for the sign-in `family`.
    pub fn hold_handoff(
        &self,
        hash: &str,
        family: &str,
        expires_at: i64,
    ) -> Result<(), StorageError> {
        self.with(|c| {
            c.exec(
                "INSERT INTO session_handoffs (hash, family, expires_at) VALUES (?1, ?2, ?3)",
                p![hash, family, expires_at],
            )?;
            Ok(())
        })
    }

    /// The session a one-time code stands for, once: the code is gone after.
    pub fn take_handoff(
        &self,
        hash: &str,
        now_ms: i64,
    ) -> Result<Option<SharedSession>, StorageError> {
        self.tx(false, false, |c| {
            // One statement that takes the code and says what it was: of
            // two nodes taking one code at once, one gets it (a read and a
            // delete would let both read it first).
            let taken = c.row(
                "DELETE FROM session_handoffs WHERE hash = ?1 RETURNING family, expires_at",
                p![hash],
            )?;
            let Some(taken) = taken else {
                return Ok(None);
            };
            if taken.int(1)? <= now_ms {
                return Ok(None);
            }
            let family = taken.text(0)?;
            // The sign-in's first cookie holds it (its hash is the family's).
            live(c, &family, now_ms)
        })
    }
}

impl Storage {
    /// The secret called `name` that every node sharing this database holds
    /// alike (hex): made (32 random bytes) by the first node that asks.
    pub fn node_secret(&self, name: &str) -> Result<String, StorageError> {
        let made: [u8; 32] = rand::random();
        let made: String = made.iter().map(|b| format!("{b:02x}")).collect();
        // A writing transaction (SQLite's BEGIN IMMEDIATE, the advisory
        // lock on PostgreSQL): two nodes starting at once on an empty table
        // queue, and the second reads what the first made.
        self.tx(true, false, |c| {
            c.exec(
                "INSERT INTO node_secrets (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO NOTHING",
                p![name, &made],
            )?;
            c.row("SELECT value FROM node_secrets WHERE name = ?1", p![name])?
                .ok_or_else(|| StorageError::Column("a node secret vanished".into()))?
                .text(0)
        })
    }
}

/// The session under cookie hash `hash`, unless it ended by `now_ms`.
fn live(c: &dyn Sql, hash: &str, now_ms: i64) -> Result<Option<SharedSession>, StorageError> {
    c.row(
        "SELECT family, data, expires_at FROM sessions WHERE hash = ?1 AND expires_at > ?2",
        p![hash, now_ms],
    )?
    .map(|r| {
        Ok(SharedSession {
            family: r.text(0)?,
            data: r.text(1)?,
            expires_at: r.int(2)?,
        })
    })
    .transpose()
}

fn forget_expired(c: &dyn Sql, now_ms: i64) -> Result<(), StorageError> {
    c.exec("DELETE FROM sessions WHERE expires_at <= ?1", p![now_ms])?;
    c.exec(
        "DELETE FROM session_handoffs WHERE expires_at <= ?1",
        p![now_ms],
    )?;
    Ok(())
}
