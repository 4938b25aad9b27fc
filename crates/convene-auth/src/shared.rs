//! Sessions shared by the nodes of a deployment (a database they all use):
//! a person stays signed in whichever node serves the page, through a
//! node's restart, and across the redirect to the node that hosts a meeting
//! (a one-time code, since a cookie only goes to the name that set it).
//!
//! Memory stays in front: a session read from the store is trusted for
//! [`RECHECK`], so a sign-out on one node holds on every node within that.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use convene_meeting::identity::Identity;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::store::{random_hex, sha256_hex, Session, Sessions, TOKEN_BYTES};

/// How long a node trusts what it read of a session.
pub const RECHECK: Duration = Duration::from_secs(10);
/// How long a one-time code carries a sign-in to another node (it is made
/// and taken within one chain of redirects).
pub const CODE_TTL: Duration = Duration::from_secs(30);

/// Where a code is kept: under its hash with what it is bound to (the
/// browser's nonce and the meeting), so that it signs in only the browser
/// that asked for it, and only on the way to that meeting.
fn code_key(code: &str, binding: &str) -> String {
    sha256_hex(&format!("{code}\n{binding}"))
}

/// A session as the store keeps it: its family, what it holds (JSON), and
/// when it ends (milliseconds since the Unix epoch).
#[derive(Debug, Clone)]
pub struct Stored {
    pub family: String,
    pub data: String,
    pub expires_at: i64,
}

/// Where sessions are kept for every node. Calls may block on a database:
/// the implementation must not stall an async runtime.
pub trait SessionBackend: Send + Sync {
    fn save(&self, hash: &str, session: &Stored) -> Result<(), String>;
    fn load(&self, hash: &str) -> Result<Option<Stored>, String>;
    /// Sign-out: every cookie of the sign-in `family`, and its codes.
    fn end(&self, family: &str) -> Result<(), String>;
    fn hold_code(&self, hash: &str, family: &str, expires_at: i64) -> Result<(), String>;
    /// The session a code stands for, once.
    fn take_code(&self, hash: &str) -> Result<Option<Stored>, String>;
}

#[derive(Serialize, Deserialize)]
struct Data {
    identity: Identity,
    key: String,
    csrf: String,
}

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn store(session: &Session, now: Instant) -> Stored {
    let data = Data {
        identity: session.identity.clone(),
        key: session.key.clone(),
        csrf: session.csrf.clone(),
    };
    Stored {
        family: session.family.clone(),
        data: serde_json::to_string(&data).unwrap_or_default(),
        expires_at: unix_ms() + session.expires.saturating_duration_since(now).as_millis() as i64,
    }
}

fn load(stored: Stored, now: Instant) -> Option<Session> {
    let data: Data = serde_json::from_str(&stored.data).ok()?;
    let left = stored.expires_at - unix_ms();
    (left > 0).then(|| Session {
        identity: data.identity,
        key: data.key,
        csrf: data.csrf,
        expires: now + Duration::from_millis(left as u64),
        family: stored.family,
    })
}

/// How long a cookie the store does not know is not asked about again: a
/// browser that still sends an ended session's cookie costs one read per
/// this, not one per request.
const MISS_TTL: Duration = Duration::from_secs(10);
const MAX_MISSES: usize = 10_000;
/// After the store failed, unknown cookies are not read for this long: a
/// database that is away is not asked once per request.
const BREAK: Duration = Duration::from_secs(2);
/// Reads of cookies this node holds no copy of, per second, with a burst of
/// [`READ_BURST`]: a flood of made-up cookies (each new, so never a
/// remembered miss) costs the database at most this. Past it, such a
/// cookie "cannot be checked" (a request needing it is asked to try again);
/// sessions this node holds are re-read as usual.
const READS_PER_SEC: f64 = 200.0;
const READ_BURST: f64 = 1_000.0;
/// The share of those one client (an address group) may take: a flood from
/// one client empties its own budget, not everyone's. After a failover,
/// when everyone arrives with a cookie this node never read, each page load
/// and socket of a person costs a read or two.
const CLIENT_READS_PER_SEC: f64 = 20.0;
const CLIENT_READ_BURST: f64 = 100.0;
/// Clients whose budget is remembered; past it, those whose budget is full
/// again are forgotten (they lose nothing), then the longest unseen half.
const MAX_CLIENTS: usize = 10_000;
/// While the store does not answer, a session this node read is honoured
/// this long after it was read, no longer: it may have ended elsewhere.
pub const STALE_LIMIT: Duration = Duration::from_secs(2 * RECHECK.as_secs());

/// Cookies and codes on shared sessions end in a tag of this many hex
/// digits: HMAC-SHA-256 of the rest under a key every node reads from the
/// database. A value no node made is refused without a read of the store,
/// so made-up cookies (from however many addresses) cost it nothing.
const TAG_HEX: usize = 16;

/// What a tagged value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A session cookie's value.
    Cookie,
    /// A one-time code that carries a sign-in to another node.
    Code,
}

impl Kind {
    fn label(self) -> &'static [u8] {
        match self {
            Kind::Cookie => b"cookie\0",
            Kind::Code => b"code\0",
        }
    }
}

/// The shared store, and what this node remembers of its answers.
pub(crate) struct Shared {
    pub(crate) backend: std::sync::Arc<dyn SessionBackend>,
    /// The tags' key.
    key: Vec<u8>,
    misses: Mutex<HashMap<String, Instant>>,
    failed_at: Mutex<Option<Instant>>,
    /// Reads of unknown cookies left, in all and per client.
    reads: Mutex<Reads>,
}

/// A token bucket: reads left, and when that was counted.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    left: f64,
    at: Instant,
}

impl Bucket {
    /// The reads left at `now`, refilled at `rate` up to `burst`.
    fn refilled(self, now: Instant, rate: f64, burst: f64) -> f64 {
        (self.left + now.saturating_duration_since(self.at).as_secs_f64() * rate).min(burst)
    }
}

struct Reads {
    all: Bucket,
    by_client: HashMap<IpAddr, Bucket>,
}

impl Reads {
    /// Take one read for `client` if both its budget and everyone's allow.
    fn take(&mut self, client: IpAddr, now: Instant) -> bool {
        if !self.by_client.contains_key(&client) && self.by_client.len() >= MAX_CLIENTS {
            self.by_client.retain(|_, b| {
                b.refilled(now, CLIENT_READS_PER_SEC, CLIENT_READ_BURST) < CLIENT_READ_BURST
            });
            if self.by_client.len() >= MAX_CLIENTS {
                let mut seen: Vec<Instant> = self.by_client.values().map(|b| b.at).collect();
                seen.sort_unstable();
                let cut = seen[seen.len() / 2];
                self.by_client.retain(|_, b| b.at > cut);
            }
        }
        let mine = self.by_client.entry(client).or_insert(Bucket {
            left: CLIENT_READ_BURST,
            at: now,
        });
        let own = mine.refilled(now, CLIENT_READS_PER_SEC, CLIENT_READ_BURST);
        let all = self.all.refilled(now, READS_PER_SEC, READ_BURST);
        let granted = own >= 1.0 && all >= 1.0;
        let spent = if granted { 1.0 } else { 0.0 };
        *mine = Bucket {
            left: own - spent,
            at: now,
        };
        self.all = Bucket {
            left: all - spent,
            at: now,
        };
        granted
    }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a session lookup could not say.
pub const UNCHECKED: &str = "sign-in sessions cannot be checked just now";

impl Shared {
    pub(crate) fn new(backend: std::sync::Arc<dyn SessionBackend>, key: Vec<u8>) -> Shared {
        Shared {
            backend,
            key,
            misses: Mutex::default(),
            failed_at: Mutex::default(),
            reads: Mutex::new(Reads {
                all: Bucket {
                    left: READ_BURST,
                    at: Instant::now(),
                },
                by_client: HashMap::new(),
            }),
        }
    }

    /// A new cookie value or code (`kind`): random, then its tag.
    pub(crate) fn new_token(&self, kind: Kind) -> String {
        let body = random_hex(TOKEN_BYTES - TAG_HEX / 2);
        let tag = self.tag(kind, &body);
        body + &tag
    }

    fn tag(&self, kind: Kind, body: &str) -> String {
        use hmac::{Mac, SimpleHmac};
        let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        // Each kind its own tags: a code (which anyone signed in can have
        // made) does not pass for a cookie.
        mac.update(kind.label());
        mac.update(body.as_bytes());
        mac.finalize().into_bytes()[..TAG_HEX / 2]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether a node of this deployment made `token` as a `kind` (of the
    /// form [`crate::store::well_formed`] checks).
    pub(crate) fn made_here(&self, kind: Kind, token: &str) -> bool {
        let Some((body, tag)) = token.split_at_checked(token.len().saturating_sub(TAG_HEX)) else {
            return false;
        };
        let want = self.tag(kind, body);
        // Compared in constant time: the tag is what a forger must guess.
        want.len() == tag.len()
            && want
                .bytes()
                .zip(tag.bytes())
                .fold(0u8, |d, (a, b)| d | (a ^ b))
                == 0
    }

    /// Whether a cookie this node holds no copy of may be read now, for
    /// `client` (its address; counted by address group).
    fn may_read_unknown(&self, client: IpAddr, now: Instant) -> bool {
        // Grouped here, not by callers: one that forgot would give each
        // IPv6 address of a client its own share.
        locked(&self.reads).take(convene_meeting::address::address_group(client), now)
    }

    fn missed_recently(&self, hash: &str, now: Instant) -> bool {
        locked(&self.misses)
            .get(hash)
            .is_some_and(|at| now.saturating_duration_since(*at) < MISS_TTL)
    }

    fn missed(&self, hash: &str, now: Instant) {
        let mut misses = locked(&self.misses);
        if misses.len() >= MAX_MISSES {
            misses.retain(|_, at| now.saturating_duration_since(*at) < MISS_TTL);
            if misses.len() >= MAX_MISSES {
                // Still full of fresh misses: the newer half stays.
                let mut ages: Vec<Instant> = misses.values().copied().collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                misses.retain(|_, at| *at > cut);
            }
        }
        misses.insert(hash.to_string(), now);
    }

    fn broken(&self, now: Instant) -> bool {
        locked(&self.failed_at).is_some_and(|at| now.saturating_duration_since(at) < BREAK)
    }

    /// The session under cookie hash `hash`, sent by `client` (its
    /// address): from memory while fresh, else from the store (kept in memory
    /// again). While the store does not answer, what this node read of it in
    /// the last [`STALE_LIMIT`]; an error when not even that, or when the
    /// cookie is unknown here and `client` has used up its reads.
    pub(crate) fn session(
        &self,
        memory: &Mutex<Sessions>,
        hash: &str,
        client: IpAddr,
    ) -> Result<Option<Session>, &'static str> {
        let now = Instant::now();
        let known = locked(memory).by_cookie_hash(hash, now);
        let stale = |known: Option<(Session, Instant)>| match known {
            Some((s, checked)) if now.saturating_duration_since(checked) < STALE_LIMIT => {
                Ok(Some(s))
            }
            _ => Err(UNCHECKED),
        };
        match &known {
            Some((s, checked)) if now.saturating_duration_since(*checked) < RECHECK => {
                return Ok(Some(s.clone()))
            }
            None if self.missed_recently(hash, now) => return Ok(None),
            _ => {}
        }
        if self.broken(now) || (known.is_none() && !self.may_read_unknown(client, now)) {
            return stale(known);
        }
        match self.backend.load(hash) {
            // Unknown, ended, or unreadable: not signed in.
            Ok(found) => match found.and_then(|stored| load(stored, now)) {
                Some(s) => {
                    locked(memory).put(hash.to_string(), s.clone(), now);
                    Ok(Some(s))
                }
                None => {
                    locked(memory).forget(hash);
                    self.missed(hash, now);
                    Ok(None)
                }
            },
            Err(e) => {
                warn!("sessions: the shared store did not answer: {e}");
                *locked(&self.failed_at) = Some(now);
                stale(known)
            }
        }
    }
}

impl Shared {
    /// A one-time code that carries the sign-in of `session` to another
    /// node, taken there only with the same `binding`.
    pub(crate) fn handoff(&self, session: &Session, binding: &str) -> Result<String, &'static str> {
        let code = self.new_token(Kind::Code);
        let expires_at = unix_ms() + CODE_TTL.as_millis() as i64;
        match self
            .backend
            .hold_code(&code_key(&code, binding), &session.family, expires_at)
        {
            Ok(()) => Ok(code),
            Err(e) => {
                warn!("sessions: could not keep a code for another node: {e}");
                Err(UNCHECKED)
            }
        }
    }

    /// Take a code made by [`Shared::handoff`]: a new cookie value for this
    /// node, for the same sign-in (none for an unknown, used or expired
    /// code); an error when the store did not answer.
    pub(crate) fn take_handoff(
        &self,
        memory: &Mutex<Sessions>,
        code: &str,
        binding: &str,
    ) -> Result<Option<String>, &'static str> {
        let stored = match self.backend.take_code(&code_key(code, binding)) {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(None),
            Err(e) => {
                warn!("sessions: could not read a code from another node: {e}");
                return Err(UNCHECKED);
            }
        };
        let now = Instant::now();
        let Some(session) = load(stored.clone(), now) else {
            return Ok(None);
        };
        let token = self.new_token(Kind::Cookie);
        let hash = sha256_hex(&token);
        if let Err(e) = self.backend.save(&hash, &stored) {
            warn!("sessions: could not keep a session: {e}");
            return Err(UNCHECKED);
        }
        locked(memory).put(hash, session, now);
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    const ME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 1));
    const KEY: &[u8] = b"the nodes' key for this test";

    #[test]
    fn only_values_a_node_made_pass_the_tag() {
        let shared = Shared::new(Arc::new(Counting::default()), KEY.to_vec());
        let token = shared.new_token(Kind::Cookie);
        assert!(
            crate::store::well_formed(&token),
            "a cookie's form: {token}"
        );
        assert!(shared.made_here(Kind::Cookie, &token));
        let code = shared.new_token(Kind::Code);
        assert!(shared.made_here(Kind::Code, &code));
        assert!(
            !shared.made_here(Kind::Cookie, &code),
            "a code is no cookie"
        );
        assert!(!shared.made_here(Kind::Code, &token), "nor the other way");
        // One digit changed anywhere, made up, or made under another key.
        for i in [0, 30, 63] {
            let mut t = token.clone().into_bytes();
            t[i] = if t[i] == b'0' { b'1' } else { b'0' };
            let t = String::from_utf8(t).unwrap();
            assert!(!shared.made_here(Kind::Cookie, &t), "digit {i}");
        }
        assert!(!shared.made_here(Kind::Cookie, &random_hex(TOKEN_BYTES)));
        let other = Shared::new(Arc::new(Counting::default()), b"another key".to_vec());
        assert!(!other.made_here(Kind::Cookie, &token));
        assert!(!shared.made_here(Kind::Cookie, ""));
    }

    /// A store in memory that counts its reads and can be made to fail
    /// (the database's own behaviour is tested in convene-storage).
    #[derive(Default)]
    struct Counting {
        rows: Mutex<HashMap<String, Stored>>,
        loads: AtomicUsize,
        away: AtomicBool,
    }

    impl SessionBackend for Counting {
        fn save(&self, hash: &str, s: &Stored) -> Result<(), String> {
            locked(&self.rows).insert(hash.into(), s.clone());
            Ok(())
        }
        fn load(&self, hash: &str) -> Result<Option<Stored>, String> {
            self.loads.fetch_add(1, Ordering::Relaxed);
            if self.away.load(Ordering::Relaxed) {
                return Err("away".into());
            }
            Ok(locked(&self.rows).get(hash).cloned())
        }
        fn end(&self, family: &str) -> Result<(), String> {
            locked(&self.rows).retain(|_, s| s.family != family);
            Ok(())
        }
        fn hold_code(&self, _: &str, _: &str, _: i64) -> Result<(), String> {
            Ok(())
        }
        fn take_code(&self, _: &str) -> Result<Option<Stored>, String> {
            Ok(None)
        }
    }

    fn stored(family: &str) -> Stored {
        let data = Data {
            identity: Identity::guest(),
            key: "account:1".into(),
            csrf: "c".into(),
        };
        Stored {
            family: family.into(),
            data: serde_json::to_string(&data).unwrap(),
            expires_at: unix_ms() + 3_600_000,
        }
    }

    #[test]
    fn an_unknown_cookie_sent_again_and_again_is_read_once() {
        let backend = Arc::new(Counting::default());
        let shared = Shared::new(backend.clone(), KEY.to_vec());
        let memory = Mutex::new(Sessions::new(Duration::from_secs(3600)));
        for _ in 0..100 {
            assert_eq!(
                shared.session(&memory, "ended", ME).unwrap().map(|s| s.key),
                None
            );
        }
        assert_eq!(backend.loads.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn while_the_store_is_away_it_is_not_asked_per_request_and_unknown_cookies_are_unchecked() {
        let backend = Arc::new(Counting::default());
        backend.save("h1", &stored("h1")).unwrap();
        let shared = Shared::new(backend.clone(), KEY.to_vec());
        let memory = Mutex::new(Sessions::new(Duration::from_secs(3600)));
        assert!(shared.session(&memory, "h1", ME).unwrap().is_some());
        backend.away.store(true, Ordering::Relaxed);
        assert_eq!(shared.session(&memory, "h2", ME).err(), Some(UNCHECKED));
        for _ in 0..50 {
            assert_eq!(shared.session(&memory, "h3", ME).err(), Some(UNCHECKED));
        }
        assert_eq!(
            backend.loads.load(Ordering::Relaxed),
            2,
            "one read for h1, one failed read; the rest wait out the break"
        );
        // A session this node read recently is still honoured.
        assert!(shared.session(&memory, "h1", ME).unwrap().is_some());
    }

    /// `n` made-up cookies from `client`: how many could not be checked.
    fn flood(shared: &Shared, memory: &Mutex<Sessions>, client: IpAddr, n: usize) -> usize {
        (0..n)
            .filter(|i| {
                shared
                    .session(memory, &format!("made-up-{client}-{i}"), client)
                    .is_err()
            })
            .count()
    }

    #[test]
    fn one_client_flooding_made_up_cookies_spends_its_own_budget_not_everyones() {
        let backend = Arc::new(Counting::default());
        backend.save("h1", &stored("h1")).unwrap();
        let shared = Shared::new(backend.clone(), KEY.to_vec());
        let memory = Mutex::new(Sessions::new(Duration::from_secs(3600)));
        let start = Instant::now();
        let unchecked = flood(&shared, &memory, ME, 5_000);
        let bound = CLIENT_READ_BURST + start.elapsed().as_secs_f64() * CLIENT_READS_PER_SEC + 1.0;
        let reads = backend.loads.load(Ordering::Relaxed);
        assert!((reads as f64) <= bound, "{reads} reads, at most {bound}");
        assert_eq!(
            unchecked + reads,
            5_000,
            "past its budget: cannot be checked"
        );
        // Someone else, with a session this node never read (as after a
        // failover), is still signed in.
        let other: IpAddr = "192.0.2.7".parse().unwrap();
        let someone = shared.session(&memory, "h1", other);
        assert!(someone.unwrap().is_some(), "another client is not refused");
        // A session this node holds is re-read as usual, for the flooder too.
        let now = Instant::now();
        if let Some(read_at) = now.checked_sub(RECHECK + Duration::from_secs(1)) {
            locked(&memory).put("h1".into(), load(stored("h1"), now).unwrap(), read_at);
            let before = backend.loads.load(Ordering::Relaxed);
            assert!(shared.session(&memory, "h1", ME).unwrap().is_some());
            assert_eq!(backend.loads.load(Ordering::Relaxed), before + 1);
        }
    }

    #[test]
    fn many_clients_flooding_together_cost_the_store_a_bounded_number_of_reads() {
        let backend = Arc::new(Counting::default());
        let shared = Shared::new(backend.clone(), KEY.to_vec());
        let memory = Mutex::new(Sessions::new(Duration::from_secs(3600)));
        let start = Instant::now();
        let mut unchecked = 0;
        for c in 0..50u8 {
            unchecked += flood(&shared, &memory, IpAddr::from([198, 51, 100, c]), 100);
        }
        let bound = READ_BURST + start.elapsed().as_secs_f64() * READS_PER_SEC + 1.0;
        let reads = backend.loads.load(Ordering::Relaxed);
        assert!((reads as f64) <= bound, "{reads} reads, at most {bound}");
        assert_eq!(unchecked + reads, 5_000);
    }

    #[test]
    fn the_clients_remembered_are_bounded() {
        let mut reads = Reads {
            all: Bucket {
                left: READ_BURST,
                at: Instant::now(),
            },
            by_client: HashMap::new(),
        };
        let now = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 500) {
            reads.take(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(reads.by_client.len() <= MAX_CLIENTS);
    }

    #[test]
    fn a_copy_read_longer_ago_than_the_limit_is_not_honoured_while_the_store_is_away() {
        let backend = Arc::new(Counting::default());
        let shared = Shared::new(backend.clone(), KEY.to_vec());
        let memory = Mutex::new(Sessions::new(Duration::from_secs(3600)));
        let now = Instant::now();
        let session = load(stored("h1"), now).unwrap();
        // Read from the store longer ago than the limit.
        let Some(read_at) = now.checked_sub(STALE_LIMIT + Duration::from_secs(1)) else {
            return; // a machine up for less than that: nothing to test
        };
        locked(&memory).put("h1".into(), session, read_at);
        backend.away.store(true, Ordering::Relaxed);
        assert_eq!(shared.session(&memory, "h1", ME).err(), Some(UNCHECKED));
    }
}
