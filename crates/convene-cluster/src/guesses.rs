//! Passcode guesses counted for the whole cluster (docs/cluster-design.md,
//! decision 2): every node, the edges of a cascaded webinar included, draws
//! on one budget per meeting and per client address group, as one node does
//! with its in-memory limiter. A try is charged before its slow check, with
//! a lease: a try its node never settled (the node died, or lost Redis)
//! counts as wrong once the lease runs out. Redis's own clock times it all.
//!
//! Keys sit under the meeting's hash: `…:guesses` (per meeting) and
//! `…:guesses:{tag}` (per address group), each a hash of failures and the
//! last failure's time, beside a sorted set of the tries in flight. The tag
//! is a keyed hash of the meeting and the address (the nodes' shared secret,
//! which Redis does not hold): Redis holds no address, and an address
//! cannot be followed from one meeting to another.

use std::net::IpAddr;
use std::time::Duration;

use crate::{meeting_prefix, Cluster, ClusterError};

/// How long a charged try may go unsettled before it counts as wrong.
pub const LEASE: Duration = Duration::from_secs(30);

/// How one budget slows guessing down (as convene-meeting's passcode `Rules`).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub free_tries: u32,
    pub first_wait: Duration,
    pub max_wait: Duration,
    pub forget_after: Duration,
}

/// A try at a meeting's passcode: charged to both budgets by
/// [`Cluster::reserve`], then settled with [`Cluster::settle_guess`]
/// (settling one never charged does nothing: a caller that gave up waiting
/// for its charge settles it anyway).
#[derive(Debug)]
pub struct Guess {
    keys: [String; 4],
    token: String,
    budgets: [Backoff; 2],
}

/// Which budget makes a try wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    Address(Duration),
    Meeting(Duration),
}

static RESERVE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local T = redis.call('TIME'); local now = T[1] * 1000 + math.floor(T[2] / 1000)
          local lease = tonumber(ARGV[2])
          local function wait(h, z, free, first, maxw, forget)
            -- Tries no node settled count as wrong, dated when their lease ran out.
            local lapsed = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'WITHSCORES')
            if #lapsed > 0 then
              redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
              local at = tonumber(lapsed[#lapsed])
              local was = tonumber(redis.call('HGET', h, 't') or '-1')
              redis.call('HINCRBY', h, 'f', #lapsed / 2); redis.call('HSET', h, 't', math.max(at, was))
              redis.call('PEXPIRE', h, forget)
            end
            local inf = redis.call('ZCARD', z)
            local f = tonumber(redis.call('HGET', h, 'f') or '0')
            local last = tonumber(redis.call('HGET', h, 't') or '-1')
            if inf == 0 and (last < 0 or now - last >= forget) then redis.call('DEL', h); return 0 end
            if f + inf < free then return 0 end
            if inf > 0 then return math.max(first, 1) end
            if last < 0 then return 0 end
            local ready = last + math.min(first * 2 ^ math.min(f - free, 20), maxw)
            if now >= ready then return 0 end
            return math.max(math.floor(ready - now), 1)
          end
          local a = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])}
          local m = {tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])}
          local w = wait(KEYS[1], KEYS[2], a[1], a[2], a[3], a[4]); if w > 0 then return {1, w} end
          w = wait(KEYS[3], KEYS[4], m[1], m[2], m[3], m[4]); if w > 0 then return {2, w} end
          for _, p in ipairs({{1, a[4]}, {3, m[4]}}) do
            local h, z = KEYS[p[1]], KEYS[p[1] + 1]
            redis.call('ZADD', z, now + lease, ARGV[1]); redis.call('PEXPIRE', z, math.max(p[2], lease))
            local ttl = redis.call('PTTL', h)
            if ttl >= 0 and ttl < lease then redis.call('PEXPIRE', h, lease) end
          end
          return {0, 0}",
    )
});

static SETTLE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local T = redis.call('TIME'); local now = T[1] * 1000 + math.floor(T[2] / 1000)
          for i, h in ipairs({KEYS[1], KEYS[3]}) do
            local held = redis.call('ZREM', KEYS[i * 2], ARGV[1])
            if ARGV[2] == '1' and held == 1 then
              redis.call('HINCRBY', h, 'f', 1); redis.call('HSET', h, 't', now)
              redis.call('PEXPIRE', h, ARGV[2 + i])
            end
          end
          return 0",
    )
});

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

impl Cluster {
    /// Charge a try at `meeting`'s passcode from address group `group` to
    /// both budgets, or say which one makes it wait and how long. Needs the
    /// nodes' secret ([`Cluster::with_message_key`]).
    pub async fn reserve_guess(
        &self,
        meeting: &str,
        group: IpAddr,
        per_address: &Backoff,
        per_meeting: &Backoff,
    ) -> Result<Result<Guess, Waiting>, ClusterError> {
        let guess = self.guess(meeting, group, per_address, per_meeting)?;
        Ok(match self.reserve(&guess).await? {
            None => Ok(guess),
            Some(waiting) => Err(waiting),
        })
    }

    /// A try from address group `group` at `meeting`'s passcode, not yet
    /// charged. Needs the nodes' secret ([`Cluster::with_message_key`]).
    pub fn guess(
        &self,
        meeting: &str,
        group: IpAddr,
        per_address: &Backoff,
        per_meeting: &Backoff,
    ) -> Result<Guess, ClusterError> {
        let key = self.guesses.as_ref().ok_or(ClusterError::NoMessageKey)?;
        let mut tagged = meeting.as_bytes().to_vec();
        tagged.push(0);
        match group {
            IpAddr::V4(a) => tagged.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => tagged.extend_from_slice(&a.octets()),
        }
        let tag = ring::hmac::sign(key, &tagged);
        let tag: String = tag.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let p = meeting_prefix(meeting);
        Ok(Guess {
            keys: [
                format!("{p}:guesses:{tag}"),
                format!("{p}:guesses:{tag}:tries"),
                format!("{p}:guesses"),
                format!("{p}:guesses:tries"),
            ],
            token: (0..16)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect(),
            budgets: [*per_address, *per_meeting],
        })
    }

    /// Charge `guess` to both budgets, or say which one makes it wait and
    /// how long (`Some`).
    pub async fn reserve(&self, guess: &Guess) -> Result<Option<Waiting>, ClusterError> {
        let mut call = RESERVE.prepare_invoke();
        for k in &guess.keys {
            call.key(k);
        }
        call.arg(&guess.token).arg(ms(LEASE));
        for b in &guess.budgets {
            call.arg(b.free_tries)
                .arg(ms(b.first_wait))
                .arg(ms(b.max_wait))
                .arg(ms(b.forget_after));
        }
        let mut redis = self.redis.clone();
        let (which, wait): (u8, u64) = call.invoke_async(&mut redis).await?;
        let wait = Duration::from_millis(wait);
        Ok(match which {
            1 => Some(Waiting::Address(wait)),
            2 => Some(Waiting::Meeting(wait)),
            _ => None,
        })
    }

    /// The try was wrong (its charge stays, as a failure now) or right, or
    /// never checked (taken back).
    pub async fn settle_guess(&self, guess: Guess, wrong: bool) -> Result<(), ClusterError> {
        let mut call = SETTLE.prepare_invoke();
        for k in &guess.keys {
            call.key(k);
        }
        call.arg(&guess.token)
            .arg(if wrong { "1" } else { "0" })
            .arg(ms(guess.budgets[0].forget_after))
            .arg(ms(guess.budgets[1].forget_after));
        let mut redis = self.redis.clone();
        let _: i64 = call.invoke_async(&mut redis).await?;
        Ok(())
    }
}
