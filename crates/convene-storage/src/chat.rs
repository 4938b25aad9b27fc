//! Chat kept at rest, where a meeting's handling level keeps it: each
//! message sealed with the deployment's chat key (AES-256-GCM, a random
//! 96-bit nonce per message; the meeting id and message number are the
//! associated data, so a sealed row cannot be moved to another meeting or
//! place and still open). The storage never sees a message in the clear
//! outside these calls, and never logs one.

use std::io::Write;
use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

use crate::db::p;
use crate::{Batch, Storage, StorageError};

/// The key chat is sealed with. Its bytes are never printed.
pub struct ChatKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for ChatKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChatKey(…)")
    }
}

impl ChatKey {
    /// A key of exactly 32 bytes, given raw or as 64 hex digits (a trailing
    /// newline allowed): anything else is refused rather than cut or
    /// stretched (a hex file read raw would give half the strength).
    pub fn from_bytes(bytes: &[u8]) -> Result<ChatKey, String> {
        let text = std::str::from_utf8(bytes).ok().map(str::trim);
        let raw: Vec<u8> = match text {
            Some(t) if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) => (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect(),
            _ if bytes.len() == 32 => bytes.to_vec(),
            _ => {
                return Err(format!(
                    "a chat key is 32 bytes (raw, or 64 hex digits); this file has {} bytes",
                    bytes.len()
                ))
            }
        };
        let key = UnboundKey::new(&AES_256_GCM, &raw)
            .map_err(|_| "the chat key was refused".to_string())?;
        Ok(ChatKey {
            key: LessSafeKey::new(key),
        })
    }

    /// The key in the file at `path`; errors name the file, never the key.
    pub fn from_file(path: &Path) -> Result<ChatKey, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("chat key {}: {e}", path.display()))?;
        Self::from_bytes(&bytes).map_err(|e| format!("chat key {}: {e}", path.display()))
    }

    /// The key at `path`, made first (32 random bytes, readable by the owner
    /// only) if there is no file there yet.
    pub fn load_or_create(path: &Path) -> Result<ChatKey, String> {
        if !path.exists() {
            // Written whole beside it, then linked into place: a crash never
            // leaves an empty or partial key, and a key another process made
            // meanwhile wins.
            let bytes: [u8; 32] = rand::random();
            let temp = path.with_extension(format!("new-{}", std::process::id()));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let made = options
                .open(&temp)
                .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
                .and_then(|()| std::fs::hard_link(&temp, path));
            let _ = std::fs::remove_file(&temp);
            match made {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("chat key {}: {e}", path.display())),
            }
        }
        Self::from_file(path)
    }

    fn aad(meeting: &str, id: i64) -> Vec<u8> {
        format!("convene-chat/1\n{meeting}\n{id}").into_bytes()
    }

    /// `plain` sealed for message `id` of `meeting`: nonce, then ciphertext and tag.
    pub fn seal(&self, meeting: &str, id: i64, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut out = plain.to_vec();
        // Sealing in memory cannot fail for inputs this small.
        let _ = self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(Self::aad(meeting, id)),
            &mut out,
        );
        let mut sealed = nonce.to_vec();
        sealed.extend(out);
        sealed
    }

    /// What [`ChatKey::seal`] sealed, if this key sealed it for this place.
    pub fn open(&self, meeting: &str, id: i64, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(Self::aad(meeting, id)), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// A kept message, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptChat {
    pub id: i64,
    pub sent_at: i64,
    /// What the meeting stored (the message as JSON).
    pub message: Vec<u8>,
}

/// Messages kept per meeting at most: past it, each new one pushes out the
/// oldest (a long, busy meeting cannot fill the disk; the bound is about
/// 40 MB a meeting at the longest messages).
pub const MAX_KEPT_PER_MEETING: i64 = 10_000;

impl Batch<'_> {
    /// Keep message `id` of `meeting` until `keep_until` (ms), sealed with
    /// `key`; at [`MAX_KEPT_PER_MEETING`], the oldest of the meeting goes.
    pub fn keep_chat(
        &self,
        key: &ChatKey,
        meeting: &str,
        id: i64,
        sent_at: i64,
        keep_until: i64,
        message: &[u8],
    ) -> Result<(), StorageError> {
        let sealed = key.seal(meeting, id, message);
        self.tx.exec(
            // A number already kept is never overwritten (records stay as
            // they were written).
            "INSERT INTO meeting_chat (meeting, id, sent_at, keep_until, sealed)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (meeting, id) DO NOTHING",
            p![meeting, id, sent_at, keep_until, &sealed],
        )?;
        // Numbers rise within a meeting: the newest MAX are those above this.
        self.tx.exec(
            "DELETE FROM meeting_chat WHERE meeting = ?1 AND id <= ?2",
            p![meeting, id - MAX_KEPT_PER_MEETING],
        )?;
        Ok(())
    }
}

impl Storage {
    /// The highest message number stored for `meeting`, if any.
    pub fn last_chat_id(&self, meeting: &str) -> Result<Option<i64>, StorageError> {
        self.with(|c| {
            c.int(
                "SELECT max(id) FROM meeting_chat WHERE meeting = ?1",
                p![meeting],
            )
        })
    }

    /// The messages of `meeting` still kept at `now_ms` (only the `newest`
    /// so many, if given), oldest first, and how many could not be opened
    /// with `key` (another key, or damaged).
    pub fn kept_chat(
        &self,
        key: &ChatKey,
        meeting: &str,
        now_ms: i64,
        newest: Option<usize>,
    ) -> Result<(Vec<KeptChat>, usize), StorageError> {
        let limit = newest.map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let rows = self.with(|c| {
            c.rows(
                "SELECT id, sent_at, sealed FROM (
                     SELECT id, sent_at, sealed FROM meeting_chat
                     WHERE meeting = ?1 AND keep_until > ?2 ORDER BY id DESC LIMIT ?3
                 ) AS newest ORDER BY id",
                p![meeting, now_ms, limit],
            )
        })?;
        let (mut kept, mut unreadable) = (Vec::new(), 0);
        for row in rows {
            let (id, sent_at, sealed) = (row.int(0)?, row.int(1)?, row.blob(2)?);
            match key.open(meeting, id, &sealed) {
                Some(message) => kept.push(KeptChat {
                    id,
                    sent_at,
                    message,
                }),
                None => unreadable += 1,
            }
        }
        Ok((kept, unreadable))
    }
}
