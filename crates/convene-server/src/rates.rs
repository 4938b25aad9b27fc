//! Token buckets per key (usually a client address): how often something may
//! happen, with a burst. Bounded in memory: idle keys are dropped, and past
//! [`MAX_KEYS`] an arbitrary key is forgotten to make room (a flood of fresh
//! addresses can then refill some old address's bucket early, but can neither
//! grow memory nor lock everyone else out).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::client_addr::address_group;

const MAX_KEYS: usize = 100_000;

#[derive(Debug)]
pub struct Rates<K> {
    per_sec: f64,
    burst: f64,
    buckets: HashMap<K, (f64, Instant)>,
    swept: Option<Instant>,
}

impl<K: Hash + Eq + Clone> Rates<K> {
    pub fn new(per_sec: f64, burst: f64) -> Self {
        Rates {
            per_sec,
            burst,
            buckets: HashMap::new(),
            swept: None,
        }
    }

    fn refill(&self, tokens: f64, at: Instant, now: Instant) -> f64 {
        (tokens + now.saturating_duration_since(at).as_secs_f64() * self.per_sec).min(self.burst)
    }

    /// Take one token for `key`; false if it has none left.
    pub fn allow(&mut self, now: Instant, key: &K) -> bool {
        self.sweep(now);
        if !self.buckets.contains_key(key) && self.buckets.len() >= MAX_KEYS {
            if let Some(victim) = self.buckets.keys().next().cloned() {
                self.buckets.remove(&victim);
            }
        }
        let burst = self.burst;
        let (tokens, at) = *self.buckets.get(key).unwrap_or(&(burst, now));
        let tokens = self.refill(tokens, at, now);
        let allowed = tokens >= 1.0;
        let left = if allowed { tokens - 1.0 } else { tokens };
        self.buckets.insert(key.clone(), (left, now));
        allowed
    }

    /// Give back one token taken from `key` (never past the burst).
    pub fn refund(&mut self, key: &K) {
        let burst = self.burst;
        if let Some((tokens, _)) = self.buckets.get_mut(key) {
            *tokens = (*tokens + 1.0).min(burst);
        }
    }

    /// Forget keys whose bucket has refilled (at most once a second).
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.swept = Some(now);
        let full = Duration::from_secs_f64(self.burst / self.per_sec);
        self.buckets
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < full);
    }
}

/// Token buckets per client, shared by the server's tasks: a client counts by
/// its address group (an IPv4 address, an IPv6 /64), so one IPv6 client cannot
/// pick a fresh address for each try.
#[derive(Debug)]
pub struct PerClient(Mutex<Rates<IpAddr>>);

impl PerClient {
    pub fn new(per_sec: f64, burst: f64) -> Self {
        PerClient(Mutex::new(Rates::new(per_sec, burst)))
    }

    /// Give back the token `allow` took for `client` (the try turned out
    /// not to count).
    pub fn refund(&self, client: IpAddr) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .refund(&address_group(client));
    }

    /// Take one token for `client` now; false if it has none left.
    pub fn allow(&self, client: IpAddr) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(Instant::now(), &address_group(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_one_client_across_its_64() {
        let r = PerClient::new(0.001, 2.0);
        assert!(r.allow("2001:db8::1".parse().unwrap()));
        assert!(r.allow("2001:db8::2".parse().unwrap()));
        assert!(!r.allow("2001:db8::ffff".parse().unwrap()));
        assert!(r.allow("2001:db8:0:1::1".parse().unwrap()));
    }

    #[test]
    fn a_burst_then_the_steady_rate() {
        let t0 = Instant::now();
        let mut r = Rates::new(2.0, 3.0);
        assert!((0..3).all(|_| r.allow(t0, &"a")));
        assert!(!r.allow(t0, &"a"));
        assert!(r.allow(t0, &"b"), "keys are apart");
        let t1 = t0 + Duration::from_millis(500);
        assert!(r.allow(t1, &"a"));
        r.refund(&"a");
        assert!(r.allow(t1, &"a"), "a refunded token can be taken again");
        assert!(!r.allow(t1, &"a"));
    }
}
