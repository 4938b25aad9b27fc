//! Meeting passcodes: stored only as Argon2 hashes, compared in constant time
//! (by the Argon2 verifier), and guessed at a bounded rate.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

/// Shortest and longest passcode accepted when a host sets one.
pub const MIN_CHARS: usize = 4;
pub const MAX_CHARS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasscodeError {
    #[error("a passcode has {MIN_CHARS} to {MAX_CHARS} characters")]
    Length,
    #[error("the passcode could not be stored")]
    Hash,
}

/// Hash a new passcode for storage (PHC string with its own salt and parameters).
pub fn hash(passcode: &str) -> Result<String, PasscodeError> {
    let n = passcode.chars().count();
    if !(MIN_CHARS..=MAX_CHARS).contains(&n) {
        return Err(PasscodeError::Length);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(passcode.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasscodeError::Hash)
}

/// Whether `attempt` matches the stored hash. Never panics on a bad hash.
pub fn verify(stored: &str, attempt: &str) -> bool {
    if attempt.len() > MAX_CHARS * 4 {
        return false;
    }
    match PasswordHash::new(stored) {
        Ok(h) => Argon2::default()
            .verify_password(attempt.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Free tries before waiting starts, and how waiting grows.
const FREE_TRIES: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Keys remembered at most; the oldest are forgotten first (bounds memory under attack).
const MAX_KEYS: usize = 100_000;

/// Wrong-guess accounting per key (for example client address and meeting).
/// After [`FREE_TRIES`] failures each further try must wait, doubling each time.
#[derive(Debug)]
pub struct Limiter<K> {
    entries: HashMap<K, Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

impl<K: Hash + Eq + Clone> Default for Limiter<K> {
    fn default() -> Self {
        Limiter {
            entries: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `Err(wait)` if `key` must wait before trying again.
    pub fn check(&self, now: Instant, key: &K) -> Result<(), Duration> {
        let Some(e) = self.entries.get(key) else {
            return Ok(());
        };
        if e.failures < FREE_TRIES {
            return Ok(());
        }
        let wait = FIRST_WAIT
            .saturating_mul(1 << (e.failures - FREE_TRIES).min(20))
            .min(MAX_WAIT);
        let ready = e.last + wait;
        if now >= ready {
            Ok(())
        } else {
            Err(ready - now)
        }
    }

    pub fn failed(&mut self, now: Instant, key: &K) {
        if self.entries.len() >= MAX_KEYS && !self.entries.contains_key(key) {
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        let e = self.entries.entry(key.clone()).or_insert(Entry {
            failures: 0,
            last: now,
        });
        e.failures += 1;
        e.last = now;
    }

    pub fn succeeded(&mut self, key: &K) {
        self.entries.remove(key);
    }

    pub fn failures(&self, key: &K) -> u32 {
        self.entries.get(key).map_or(0, |e| e.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_never_contain_the_passcode() {
        let h = hash("4711 blue").unwrap();
        assert!(h.starts_with("$argon2"));
        assert!(!h.contains("4711"));
        assert!(verify(&h, "4711 blue"));
        assert!(!verify(&h, "4711 Blue"));
        assert!(!verify("not a hash", "x"));
        assert_ne!(hash("4711 blue").unwrap(), h, "salted");
        assert_eq!(hash("123"), Err(PasscodeError::Length));
        assert_eq!(hash(&"x".repeat(129)), Err(PasscodeError::Length));
    }

    #[test]
    fn five_free_tries_then_doubling_waits() {
        let t0 = Instant::now();
        let mut l = Limiter::default();
        let key = ("10.0.0.1", "meeting");
        for _ in 0..5 {
            assert!(l.check(t0, &key).is_ok());
            l.failed(t0, &key);
        }
        assert_eq!(l.check(t0, &key), Err(Duration::from_secs(1)));
        assert!(l.check(t0 + Duration::from_secs(1), &key).is_ok());
        l.failed(t0 + Duration::from_secs(1), &key);
        assert_eq!(
            l.check(t0 + Duration::from_secs(1), &key),
            Err(Duration::from_secs(2))
        );
        // Another client is not affected, and success clears the count.
        assert!(l.check(t0, &("10.0.0.2", "meeting")).is_ok());
        l.succeeded(&key);
        assert!(l.check(t0, &key).is_ok());
    }

    #[test]
    fn waits_are_capped() {
        let t0 = Instant::now();
        let mut l = Limiter::default();
        for _ in 0..200 {
            l.failed(t0, &1u8);
        }
        assert_eq!(l.check(t0, &1u8), Err(MAX_WAIT));
    }
}
