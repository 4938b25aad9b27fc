//! Meeting passcodes: stored only as Argon2 hashes, compared in constant time
//! (by the Argon2 verifier), and guessed at a bounded rate.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Shortest and longest passcode accepted when a host sets one.
pub const MIN_CHARS: usize = 4;
pub const MAX_CHARS: usize = 128;
/// Largest Argon2 memory cost (KiB) a stored hash may ask for: a hash is only
/// ever made here with the default (19 MiB), and a forged or corrupt row must
/// not make one check allocate gigabytes.
const MAX_M_COST: u32 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasscodeError {
    #[error("a passcode has {MIN_CHARS} to {MAX_CHARS} characters")]
    Length,
    #[error("the passcode could not be stored")]
    Hash,
}

/// Argon2's working memory (19 MiB with the default parameters), kept by each
/// hashing thread and reused for every hash it makes, so a burst of checks
/// costs no allocations and the server's memory stays what it was. Taken at
/// the first hash, not before: a server without passcodes never holds it.
#[derive(Default)]
pub struct Scratch {
    blocks: Vec<Block>,
}

impl Scratch {
    fn blocks(&mut self, params: &Params) -> &mut [Block] {
        let n = params.block_count();
        if self.blocks.len() < n {
            self.blocks.resize(n, Block::new());
        }
        &mut self.blocks[..n]
    }
}

/// Hash a new passcode for storage (PHC string with its own salt and parameters).
pub fn hash(passcode: &str) -> Result<String, PasscodeError> {
    hash_with(&mut Scratch::default(), passcode)
}

/// [`hash`] in the given working memory.
pub fn hash_with(scratch: &mut Scratch, passcode: &str) -> Result<String, PasscodeError> {
    let n = passcode.chars().count();
    if !(MIN_CHARS..=MAX_CHARS).contains(&n) {
        return Err(PasscodeError::Length);
    }
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|_| PasscodeError::Hash)?;
    let params = Params::DEFAULT;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon
        .hash_password_into_with_memory(
            passcode.as_bytes(),
            raw_salt,
            &mut out,
            scratch.blocks(&params),
        )
        .map_err(|_| PasscodeError::Hash)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|_| PasscodeError::Hash)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|_| PasscodeError::Hash)?),
    };
    Ok(phc.to_string())
}

/// Whether `attempt` matches the stored hash. Never panics on a bad hash.
pub fn verify(stored: &str, attempt: &str) -> bool {
    verify_with(&mut Scratch::default(), stored, attempt)
}

/// [`verify`] in the given working memory. The comparison is constant-time
/// (`Output`'s equality).
pub fn verify_with(scratch: &mut Scratch, stored: &str, attempt: &str) -> bool {
    if attempt.len() > MAX_CHARS * 4 {
        return false;
    }
    let Ok(h) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(h.algorithm) else {
        return false;
    };
    let version = match h.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&h) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(raw_salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    let argon = Argon2::new(algorithm, version, params.clone());
    if argon
        .hash_password_into_with_memory(attempt.as_bytes(), raw_salt, out, scratch.blocks(&params))
        .is_err()
    {
        return false;
    }
    Output::new(out).is_ok_and(|o| o == expected)
}

/// How a [`Limiter`] slows guessing down.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Tries charged before waiting starts.
    pub free_tries: u32,
    /// The first wait; each further charged try doubles it.
    pub first_wait: Duration,
    pub max_wait: Duration,
    /// A key with nothing in flight is forgotten this long after its last try.
    pub forget_after: Duration,
}

impl Rules {
    /// These rules, with keys forgotten `after` their last wrong try (the
    /// deployment's retention of back-off records); never before the longest
    /// wait is over, or forgetting would cut a wait short.
    pub fn forgetting_after(self, after: Duration) -> Rules {
        Rules {
            forget_after: after.max(self.max_wait),
            ..self
        }
    }

    /// One client address guessing at one meeting.
    pub const PER_ADDRESS: Rules = Rules {
        free_tries: 5,
        first_wait: Duration::from_secs(1),
        max_wait: Duration::from_secs(15 * 60),
        forget_after: Duration::from_secs(60 * 60),
    };
    /// Everyone guessing at one meeting, however many addresses they use. Higher
    /// and shorter than per address: a crowd of addresses can make the people
    /// who know the passcode wait, but never longer than `max_wait` at a time.
    pub const PER_MEETING: Rules = Rules {
        free_tries: 30,
        first_wait: Duration::from_secs(1),
        max_wait: Duration::from_secs(5 * 60),
        forget_after: Duration::from_secs(60 * 60),
    };
}

/// Keys remembered at most; the oldest are forgotten first (bounds memory under attack).
const MAX_KEYS: usize = 100_000;

/// Wrong-guess accounting per key (a client address and meeting, or a meeting).
///
/// A try is *reserved* before the slow check and counts as a failure until it
/// is proven right, so a burst of simultaneous guesses gets no more checks than
/// sequential ones would: after `free_tries` charged tries each further try
/// must wait, doubling each time. A right guess takes back its own charge and
/// nothing else: it does not reset what earlier wrong guesses cost.
#[derive(Debug)]
pub struct Limiter<K> {
    rules: Rules,
    entries: HashMap<K, Entry>,
    calls: u32,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    in_flight: u32,
    /// When the newest failure was recorded. Waits count from here, and only
    /// from here: a try taken back (right, or never checked) leaves no trace,
    /// so it cannot be used to keep a key waiting.
    last_failure: Option<Instant>,
}

impl Entry {
    fn charged(&self) -> u32 {
        self.failures + self.in_flight
    }

    fn forgotten(&self, now: Instant, rules: &Rules) -> bool {
        self.in_flight == 0
            && self
                .last_failure
                .is_none_or(|t| now.saturating_duration_since(t) >= rules.forget_after)
    }
}

impl<K: Hash + Eq + Clone> Default for Limiter<K> {
    fn default() -> Self {
        Limiter::new(Rules::PER_ADDRESS)
    }
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rules: Rules) -> Self {
        Limiter {
            rules,
            entries: HashMap::new(),
            calls: 0,
        }
    }

    /// `Err(wait)` if `key` must wait before trying again. Once waits apply,
    /// a key has one try in flight at a time.
    pub fn check(&self, now: Instant, key: &K) -> Result<(), Duration> {
        let Some(e) = self.entries.get(key) else {
            return Ok(());
        };
        let r = &self.rules;
        if e.forgotten(now, r) || e.charged() < r.free_tries {
            return Ok(());
        }
        if e.in_flight > 0 {
            return Err(r.first_wait);
        }
        let Some(last) = e.last_failure else {
            return Ok(());
        };
        let wait = r
            .first_wait
            .saturating_mul(1 << (e.failures - r.free_tries).min(20))
            .min(r.max_wait);
        let ready = last + wait;
        if now >= ready {
            Ok(())
        } else {
            Err(ready - now)
        }
    }

    /// Charge a try to `key` before checking it, or `Err(wait)` if it must
    /// wait. Every `Ok` must be followed by [`Limiter::failed`] or
    /// [`Limiter::succeeded`] for the same key.
    pub fn reserve(&mut self, now: Instant, key: &K) -> Result<(), Duration> {
        self.forget_old(now);
        self.check(now, key)?;
        self.make_room(key);
        let rules = self.rules;
        let e = self.entries.entry(key.clone()).or_insert(Entry {
            failures: 0,
            in_flight: 0,
            last_failure: None,
        });
        if e.forgotten(now, &rules) {
            e.failures = 0;
            e.last_failure = None;
        }
        e.in_flight += 1;
        Ok(())
    }

    /// The reserved try was wrong: its charge stays.
    pub fn failed(&mut self, now: Instant, key: &K) {
        self.make_room(key);
        let e = self.entries.entry(key.clone()).or_insert(Entry {
            failures: 0,
            in_flight: 1,
            last_failure: None,
        });
        e.in_flight = e.in_flight.saturating_sub(1);
        e.failures = e.failures.saturating_add(1);
        e.last_failure = Some(now);
    }

    /// The reserved try was right (or was never checked): its charge is taken
    /// back. Earlier failures stay until they are forgotten.
    pub fn succeeded(&mut self, key: &K) {
        if let Some(e) = self.entries.get_mut(key) {
            e.in_flight = e.in_flight.saturating_sub(1);
            if e.charged() == 0 {
                self.entries.remove(key);
            }
        }
    }

    /// The rules this limiter applies.
    pub fn rules(&self) -> Rules {
        self.rules
    }

    pub fn failures(&self, key: &K) -> u32 {
        self.entries.get(key).map_or(0, |e| e.failures)
    }

    /// At [`MAX_KEYS`], forget the forgettable first, else any key with no try
    /// in flight: memory stays bounded, at the price of a flood of new keys
    /// wiping out some old keys' waits.
    fn make_room(&mut self, key: &K) {
        if self.entries.len() < MAX_KEYS || self.entries.contains_key(key) {
            return;
        }
        self.sweep(Instant::now());
        if self.entries.len() < MAX_KEYS {
            return;
        }
        if let Some(victim) = self
            .entries
            .iter()
            .find(|(_, e)| e.in_flight == 0)
            .map(|(k, _)| k.clone())
        {
            self.entries.remove(&victim);
        }
    }

    /// Drop keys past `forget_after` (a sweep every 1024th try keeps this
    /// cheap; `check` ignores such keys in between).
    fn forget_old(&mut self, now: Instant) {
        self.calls = self.calls.wrapping_add(1);
        if self.calls.is_multiple_of(1024) {
            self.sweep(now);
        }
    }

    /// Drop every key past `forget_after` now: what retention calls, so a
    /// client's address is held no longer than its back-off needs it.
    pub fn sweep(&mut self, now: Instant) {
        let rules = self.rules;
        self.entries.retain(|_, e| !e.forgotten(now, &rules));
    }

    /// Keys held now (each names a client address, a meeting, or both).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_made_here_and_by_the_argon2_crate_are_interchangeable() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = hash("4711 blue").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"4711 blue", &parsed)
            .is_ok());
        // Hashes stored before working memory was reused still verify.
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"4711 blue", &salt)
            .unwrap()
            .to_string();
        let mut scratch = Scratch::default();
        assert!(verify_with(&mut scratch, &theirs, "4711 blue"));
        assert!(!verify_with(&mut scratch, &theirs, "4711 blu"));
    }

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
            assert!(l.reserve(t0, &key).is_ok());
            l.failed(t0, &key);
        }
        assert_eq!(l.check(t0, &key), Err(Duration::from_secs(1)));
        assert!(l.reserve(t0, &key).is_err());
        let t1 = t0 + Duration::from_secs(1);
        assert!(l.reserve(t1, &key).is_ok());
        l.failed(t1, &key);
        assert_eq!(l.check(t1, &key), Err(Duration::from_secs(2)));
        // Another client is not affected.
        assert!(l.check(t0, &("10.0.0.2", "meeting")).is_ok());
    }

    #[test]
    fn simultaneous_tries_are_charged_before_they_are_checked() {
        let t0 = Instant::now();
        let mut l = Limiter::default();
        let granted = (0..200).filter(|_| l.reserve(t0, &1u8).is_ok()).count();
        assert_eq!(granted, Rules::PER_ADDRESS.free_tries as usize);
        for _ in 0..granted {
            l.failed(t0, &1u8);
        }
        assert_eq!(l.failures(&1u8), 5);
    }

    #[test]
    fn a_right_guess_takes_back_its_own_charge_only() {
        let t0 = Instant::now();
        let mut l = Limiter::default();
        for _ in 0..4 {
            l.reserve(t0, &1u8).unwrap();
            l.failed(t0, &1u8);
        }
        // Right guesses, over and over: the four failures stay charged.
        for _ in 0..10 {
            l.reserve(t0, &1u8).unwrap();
            l.succeeded(&1u8);
        }
        assert_eq!(l.failures(&1u8), 4);
        l.reserve(t0, &1u8).unwrap();
        l.failed(t0, &1u8);
        assert!(l.reserve(t0, &1u8).is_err(), "the fifth failure counts");
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_hour() {
        let t0 = Instant::now();
        let mut l = Limiter::default();
        for _ in 0..5 {
            l.reserve(t0, &1u8).unwrap();
            l.failed(t0, &1u8);
        }
        assert!(l.check(t0 + Duration::from_millis(500), &1u8).is_err());
        let later = t0 + Rules::PER_ADDRESS.forget_after;
        assert!(l.reserve(later, &1u8).is_ok());
        assert_eq!(l.failures(&1u8), 0);
    }

    #[test]
    fn a_try_taken_back_does_not_restart_the_wait() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Rules::PER_MEETING);
        for _ in 0..30 {
            l.reserve(t0, &1u8).unwrap();
            l.failed(t0, &1u8);
        }
        // Ready again after 1 s. A try that is taken back (never checked)
        // at 1 s must not make the next one wait another second.
        let t1 = t0 + Duration::from_secs(1);
        l.reserve(t1, &1u8).unwrap();
        l.succeeded(&1u8);
        assert!(l.check(t1, &1u8).is_ok());
        assert!(l.check(t1 + Duration::from_millis(10), &1u8).is_ok());
    }

    #[test]
    fn once_waits_apply_one_try_at_a_time() {
        let t0 = Instant::now();
        let mut l = Limiter::default();
        for _ in 0..5 {
            l.reserve(t0, &1u8).unwrap();
            l.failed(t0, &1u8);
        }
        let later = t0 + Duration::from_secs(60);
        assert!(l.reserve(later, &1u8).is_ok());
        assert!(l.reserve(later, &1u8).is_err(), "a second try at once");
        l.failed(later, &1u8);
        assert_eq!(l.check(later, &1u8), Err(Duration::from_secs(2)));
    }

    #[test]
    fn waits_are_capped() {
        let t0 = Instant::now();
        let mut l = Limiter::default();
        for _ in 0..200 {
            l.failed(t0, &1u8);
        }
        assert_eq!(l.check(t0, &1u8), Err(Rules::PER_ADDRESS.max_wait));
    }

    #[test]
    fn a_stored_hash_asking_for_huge_memory_is_refused_not_run() {
        let h = hash("4711 blue").unwrap().replace("m=19456", "m=4000000");
        assert!(!verify(&h, "4711 blue"));
    }

    /// Back-off records go at the deployment's retention, measured from the
    /// last wrong try, and not a moment before.
    #[test]
    fn back_off_records_go_at_their_retention_and_not_before() {
        let rules = Rules::PER_ADDRESS.forgetting_after(Duration::from_secs(20 * 60));
        let mut l: Limiter<(&str, &str)> = Limiter::new(rules);
        let t0 = Instant::now();
        let key = ("203.0.113.7", "abcd-efgh-jkmn");
        for i in 0..3 {
            let t = t0 + Duration::from_secs(i);
            l.reserve(t, &key).unwrap();
            l.failed(t, &key);
        }
        let last = t0 + Duration::from_secs(2);
        l.sweep(last + Duration::from_secs(20 * 60) - Duration::from_millis(1));
        assert_eq!(l.len(), 1, "kept while the back-off may need it");
        assert_eq!(l.failures(&key), 3);
        l.sweep(last + Duration::from_secs(20 * 60));
        assert!(l.is_empty(), "gone at its time");
        // Never shorter than the longest wait.
        let short = Rules::PER_ADDRESS.forgetting_after(Duration::from_secs(60));
        assert_eq!(short.forget_after, Rules::PER_ADDRESS.max_wait);
        // A try in flight is never forgotten.
        let mut l: Limiter<&str> = Limiter::new(rules);
        l.reserve(t0, &"x").unwrap();
        l.sweep(t0 + Duration::from_secs(24 * 3600));
        assert_eq!(l.len(), 1);
    }
}
