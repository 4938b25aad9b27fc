//! Server-side state of sign-in: logins in progress (until the provider sends
//! the person back) and sessions (until they expire or the person signs out).
//! Memory only, bounded in size; pure, with the clock passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use convene_meeting::identity::Identity;
use openidconnect::{Nonce, PkceCodeVerifier};
use sha2::{Digest, Sha256};

/// A login waits this long for the provider to send the person back.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// At most this many logins in progress (oldest dropped), and sessions.
const MAX_PENDING: usize = 10_000;
const MAX_SESSIONS: usize = 100_000;

/// Session cookies and one-time codes: this many random bytes, in hex.
pub const TOKEN_BYTES: usize = 32;

/// Whether `token` has the shape of a cookie or code this server makes: any
/// other is refused before it costs a hash or a database read.
pub fn well_formed(token: &str) -> bool {
    token.len() == 2 * TOKEN_BYTES
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn same(a: &str, b: &str) -> bool {
    use sha2::digest::generic_array::GenericArray;
    // Compare digests, so timing says nothing about the secret.
    let (x, y): (GenericArray<u8, _>, GenericArray<u8, _>) =
        (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x == y
}

pub struct Pending {
    pub org: String,
    pub nonce: Nonce,
    pub verifier: PkceCodeVerifier,
    /// The value of the browser's login cookie: the callback must come from
    /// the browser that started the login.
    pub binding: String,
    pub return_to: String,
    pub at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PendingError {
    #[error("this sign-in is unknown or was already used; please sign in again")]
    Unknown,
    #[error("this sign-in was started in another browser; please sign in again")]
    OtherBrowser,
    #[error("this sign-in took too long; please sign in again")]
    Expired,
}

#[derive(Default)]
pub struct PendingLogins {
    by_state: HashMap<String, Pending>,
}

impl PendingLogins {
    pub fn insert(&mut self, state: String, pending: Pending) {
        let now = pending.at;
        self.by_state
            .retain(|_, p| now.saturating_duration_since(p.at) < LOGIN_TTL);
        if self.by_state.len() >= MAX_PENDING {
            if let Some(oldest) = self
                .by_state
                .iter()
                .min_by_key(|(_, p)| p.at)
                .map(|(k, _)| k.clone())
            {
                self.by_state.remove(&oldest);
            }
        }
        self.by_state.insert(state, pending);
    }

    /// The login `state` names, once: a second callback with it is refused.
    pub fn take(
        &mut self,
        state: &str,
        binding: Option<&str>,
        now: Instant,
    ) -> Result<Pending, PendingError> {
        let pending = self.by_state.remove(state).ok_or(PendingError::Unknown)?;
        if !binding.is_some_and(|b| same(b, &pending.binding)) {
            return Err(PendingError::OtherBrowser);
        }
        if now.saturating_duration_since(pending.at) >= LOGIN_TTL {
            return Err(PendingError::Expired);
        }
        Ok(pending)
    }

    pub fn len(&self) -> usize {
        self.by_state.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_state.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub identity: Identity,
    /// What meetings know this account by (hashed issuer and subject).
    pub key: String,
    /// Sent back in a header on every state-changing request.
    pub csrf: String,
    pub expires: Instant,
    /// The hash of the sign-in's first cookie: with sessions shared between
    /// nodes, every node's cookie for one sign-in (ended together).
    pub family: String,
}

pub struct Sessions {
    /// By the SHA-256 of the cookie's value: a leaked memory dump holds no
    /// usable session cookies. With each, when it was last read from the
    /// shared store (when there is one).
    by_hash: HashMap<String, (Session, Instant)>,
    lifetime: Duration,
}

impl Sessions {
    pub fn new(lifetime: Duration) -> Self {
        Sessions {
            by_hash: HashMap::new(),
            lifetime,
        }
    }

    /// A new session; returns the cookie value, and the session.
    pub fn create(&mut self, identity: Identity, key: String, now: Instant) -> (String, Session) {
        let token = random_hex(TOKEN_BYTES);
        let session = self.create_as(&token, identity, key, now);
        (token, session)
    }

    /// A new session under the cookie value `token`.
    pub fn create_as(
        &mut self,
        token: &str,
        identity: Identity,
        key: String,
        now: Instant,
    ) -> Session {
        let hash = sha256_hex(token);
        let session = Session {
            identity,
            key,
            csrf: random_hex(16),
            expires: now + self.lifetime,
            family: hash.clone(),
        };
        self.put(hash, session.clone(), now);
        session
    }

    /// Keep `session` under the cookie hash `hash`, as read or written at `now`.
    pub fn put(&mut self, hash: String, session: Session, now: Instant) {
        self.by_hash.retain(|_, (s, _)| s.expires > now);
        if self.by_hash.len() >= MAX_SESSIONS {
            if let Some(first) = self
                .by_hash
                .iter()
                .min_by_key(|(_, (s, _))| s.expires)
                .map(|(k, _)| k.clone())
            {
                self.by_hash.remove(&first);
            }
        }
        self.by_hash.insert(hash, (session, now));
    }

    pub fn get(&mut self, token: &str, now: Instant) -> Option<Session> {
        self.by_cookie_hash(&sha256_hex(token), now).map(|(s, _)| s)
    }

    /// The session under the cookie hash `hash`, and when it was last read
    /// from the shared store.
    pub fn by_cookie_hash(&mut self, hash: &str, now: Instant) -> Option<(Session, Instant)> {
        match self.by_hash.get(hash) {
            Some((s, checked)) if s.expires > now => Some((s.clone(), *checked)),
            Some(_) => {
                self.by_hash.remove(hash);
                None
            }
            None => None,
        }
    }

    pub fn remove(&mut self, token: &str) {
        self.forget(&sha256_hex(token));
    }

    pub fn forget(&mut self, hash: &str) {
        self.by_hash.remove(hash);
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(binding: &str, at: Instant) -> Pending {
        Pending {
            org: "home".into(),
            nonce: Nonce::new("n".into()),
            verifier: PkceCodeVerifier::new("v".repeat(43)),
            binding: binding.into(),
            return_to: "/".into(),
            at,
        }
    }

    #[test]
    fn a_login_completes_once_in_the_browser_that_started_it_and_in_time() {
        let t0 = Instant::now();
        let mut p = PendingLogins::default();
        p.insert("s1".into(), pending("b1", t0));
        assert_eq!(
            p.take("s1", Some("b2"), t0).err(),
            Some(PendingError::OtherBrowser)
        );
        p.insert("s1".into(), pending("b1", t0));
        assert!(p.take("s1", Some("b1"), t0).is_ok());
        assert_eq!(
            p.take("s1", Some("b1"), t0).err(),
            Some(PendingError::Unknown),
            "no replay"
        );
        p.insert("s2".into(), pending("b1", t0));
        assert_eq!(
            p.take("s2", Some("b1"), t0 + LOGIN_TTL).err(),
            Some(PendingError::Expired)
        );
        p.insert("s3".into(), pending("b1", t0));
        assert_eq!(
            p.take("s3", None, t0).err(),
            Some(PendingError::OtherBrowser)
        );
    }

    #[test]
    fn sessions_expire_and_end_on_sign_out() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(60));
        let (token, _) = s.create(Identity::guest(), "k".into(), t0);
        assert!(s.get(&token, t0 + Duration::from_secs(59)).is_some());
        assert!(s.get(&token, t0 + Duration::from_secs(60)).is_none());
        let (token, _) = s.create(Identity::guest(), "k".into(), t0);
        s.remove(&token);
        assert!(s.get(&token, t0).is_none());
        assert!(s.get("made-up", t0).is_none());
    }
}
