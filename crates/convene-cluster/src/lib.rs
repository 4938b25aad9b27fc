//! Convene nodes that share PostgreSQL coordinate through Redis (docs/
//! cluster-design.md): which nodes are alive and how loaded, and which node
//! hosts each running meeting. Keys with an expiry, no protocol of our own:
//!
//! - `convene:node:{id}` → the node's [`Node`] (JSON), set every second
//!   and expiring after [`LIVENESS`]: a node is alive while its key exists.
//!   `convene:nodes` is the set of ids ever seen (pruned when a key is gone).
//! - `convene:meeting:{hash}:node` → the id of the node that hosts it, taken
//!   with `SET NX` (one node wins), kept alive by its heartbeat, given back
//!   when the meeting ends there (or expiring with the node).
//! - `convene:meeting:{hash}:edges` → the nodes the host sends part of a
//!   webinar's audience to (cascading: edges.rs).
//!
//! - `convene:since` → when (Redis's clock, seconds) Redis last found itself
//!   without this key: started empty, flushed, failed over to a replica
//!   that lacked it, or evicted it. Holds may be gone with it: see [`SETTLE`].
//!
//! - `convene:node:{id}:inbox` → a pub/sub channel: messages other nodes send
//!   this one ([`Cluster::send_to`], [`Cluster::inbox`]).
//!
//! A meeting runs on one node; a join that reaches another is sent there
//! ([`Route::There`]).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

mod channel;
mod edges;
mod guesses;
mod place;
pub use channel::{Inbox, FRESH_FOR, MAX_MESSAGE};
pub use guesses::{Backoff, Guess, Waiting, LEASE as GUESS_LEASE};
pub use place::place;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

/// A node is alive while its key is: three missed heartbeats.
pub const LIVENESS: Duration = Duration::from_secs(3);
/// How often each node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A Redis call that takes longer fails (the caller says "try again").
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

const NODES: &str = "convene:nodes";
/// See the module's documentation.
pub const SINCE: &str = "convene:since";

fn node_key(id: &str) -> String {
    format!("convene:node:{id}")
}

/// Keyed by a hash of the meeting id: the id is the join secret, and Redis
/// need not hold it (security.md, cluster mode).
fn meeting_key(meeting: &str) -> String {
    format!("{}:node", meeting_prefix(meeting))
}

fn meeting_prefix(meeting: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(meeting.as_bytes());
    let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("convene:meeting:{hex}")
}

/// What a node tells the others about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    /// Where people reach it (its `--public-url`).
    pub url: String,
    pub load: Load,
    /// Takes no new meetings (an upgrade is waiting for it).
    pub draining: bool,
}

/// How busy a node is, from its own counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Busy share (0 to 1) of its least busy media worker over the last
    /// heartbeat: where a new meeting's media would go.
    pub busy: f64,
    /// Signalling connections open.
    pub connections: u64,
    /// Meetings running.
    pub meetings: u64,
}

/// Where a join for a meeting goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This node hosts it (now, if it was just placed here).
    Here,
    /// Another node does, or is to: its URL.
    There(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("a node's record in Redis: {0}")]
    Record(#[from] serde_json::Error),
    #[error("no live node takes new meetings")]
    NoNode,
    #[error("Redis started moments ago: the nodes are still saying which meetings they host")]
    Settling,
    #[error("a message of {0} bytes to another node: more than it takes")]
    TooLarge(usize),
    #[error("messages between nodes need the nodes' shared key (at least 16 bytes)")]
    NoMessageKey,
    #[error("a certificate authority for Redis is for a rediss:// (TLS) address")]
    CaWithoutTls,
    #[error("the certificate authority for Redis holds no certificate (PEM)")]
    NoCertificate,
    #[error("a Redis address that turns off the check of its certificate (#insecure): name its authority with --redis-ca instead")]
    UncheckedTls,
}

/// Redis restarted empty (or flushed, or failed over to a replica that had
/// not caught up) holds no meeting: until every live node has beaten (and
/// taken back the meetings it runs), a meeting held by no one may be running
/// somewhere all the same. New placements wait this long after Redis starts
/// (its uptime, where `INFO` may be read) and after [`SINCE`] was found
/// missing.
pub const SETTLE: Duration = Duration::from_secs(5);

/// A client for Redis at `url`. Over TLS (`rediss://`, however spelled)
/// the server's certificate must come from `ca` (PEM) when given, else
/// from an authority the system trusts, and name the host connected to;
/// there is no way to turn that check off (`#insecure` is refused).
fn open_client(url: &str, ca: Option<&[u8]>) -> Result<redis::Client, ClusterError> {
    // The redis crate builds its TLS set-up with the process's provider:
    // the server's own (it may already be set, which is as good).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let info = redis::IntoConnectionInfo::into_connection_info(url)?;
    let tls = match info.addr() {
        redis::ConnectionAddr::TcpTls { insecure: true, .. } => {
            return Err(ClusterError::UncheckedTls)
        }
        redis::ConnectionAddr::TcpTls { .. } => true,
        _ => false,
    };
    Ok(match ca {
        Some(_) if !tls => return Err(ClusterError::CaWithoutTls),
        Some(pem) => {
            use rustls::pki_types::{pem::PemObject, CertificateDer};
            if !CertificateDer::pem_slice_iter(pem).any(|c| c.is_ok()) {
                return Err(ClusterError::NoCertificate);
            }
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                },
            )?
        }
        None => redis::Client::open(info)?,
    })
}

/// This node's view of the cluster.
#[derive(Clone)]
pub struct Cluster {
    redis: ConnectionManager,
    /// Where Redis is, and the authority its certificate must come from
    /// (the inbox opens a connection of its own).
    redis_url: String,
    redis_ca: Option<Vec<u8>>,
    id: String,
    url: String,
    /// Seals messages between nodes (channel.rs); none until given.
    messages: Option<std::sync::Arc<channel::MessageKey>>,
    /// Tags client addresses in guess counters (guesses.rs); from the same
    /// secret.
    guesses: Option<ring::hmac::Key>,
}

impl Cluster {
    /// Messages to and from other nodes are sealed with a key derived from
    /// `secret`, which every node has and Redis does not (channel.rs).
    pub fn with_message_key(mut self, secret: &[u8]) -> Result<Cluster, ClusterError> {
        self.messages = Some(std::sync::Arc::new(channel::MessageKey::new(secret)?));
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"convene cluster guesses v1\0");
        h.update(secret);
        self.guesses = Some(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &h.finalize()));
        Ok(self)
    }

    /// Connect to Redis at `url` (`redis://host:port/db`, `rediss://…` for
    /// TLS, or `redis+unix:///path/to/socket`) as node `id`, reached at
    /// `public_url`. Fails when Redis does not answer: a node does not start
    /// without it.
    pub async fn connect(url: &str, id: &str, public_url: &str) -> Result<Cluster, ClusterError> {
        Self::connect_checked(url, None, id, public_url).await
    }

    /// [`Cluster::connect`], where Redis's certificate (`rediss://`) must
    /// come from the authority in `ca` (PEM) rather than from one the
    /// system trusts.
    pub async fn connect_checked(
        url: &str,
        ca: Option<Vec<u8>>,
        id: &str,
        public_url: &str,
    ) -> Result<Cluster, ClusterError> {
        let client = open_client(url, ca.as_deref())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let mut redis = client.get_connection_manager_with_config(config).await?;
        let _: String = redis::cmd("PING").query_async(&mut redis).await?;
        Ok(Cluster {
            redis,
            redis_url: url.to_string(),
            redis_ca: ca,
            id: id.to_string(),
            url: public_url.trim_end_matches('/').to_string(),
            messages: None,
            guesses: None,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Say this node is alive, with its load; keep the meetings it hosts
    /// (`hosting`) its own for another [`LIVENESS`], and give back those it
    /// held and no longer hosts (`ended`). Returns the meetings of `hosting`
    /// another node holds now: this one's hold ran out (it did not reach
    /// Redis in time) and the meeting was started there.
    pub async fn heartbeat(
        &self,
        load: Load,
        draining: bool,
        hosting: &[String],
        ended: &[String],
    ) -> Result<Vec<String>, ClusterError> {
        let me = Node {
            id: self.id.clone(),
            url: self.url.clone(),
            load,
            draining,
        };
        let ttl = LIVENESS.as_millis() as u64;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(node_key(&self.id))
            .arg(serde_json::to_string(&me)?)
            .arg("PX")
            .arg(ttl)
            .ignore();
        pipe.cmd("SADD").arg(NODES).arg(&self.id).ignore();
        let mut redis = self.redis.clone();
        pipe.query_async::<()>(&mut redis).await?;
        self.settled_for().await?;
        // Only those still ours or held by no one: a node that lost a
        // meeting (its hold expired and another took it) must not take it
        // back. One call per few hundred meetings, not one per meeting.
        let mut lost = Vec::new();
        for chunk in hosting.chunks(KEEP_CHUNK) {
            let mut keep = KEEP.prepare_invoke();
            for m in chunk {
                keep.key(meeting_key(m));
            }
            let others: Vec<usize> = keep.arg(&self.id).arg(ttl).invoke_async(&mut redis).await?;
            lost.extend(
                others
                    .into_iter()
                    .filter_map(|i| chunk.get(i.checked_sub(1)?).cloned()),
            );
        }
        for m in ended {
            self.release(m).await?;
        }
        Ok(lost)
    }

    /// How long Redis has had [`SINCE`] (set now if it was missing).
    async fn settled_for(&self) -> Result<Duration, ClusterError> {
        let mut redis = self.redis.clone();
        let secs: i64 = SINCE_SCRIPT.key(SINCE).invoke_async(&mut redis).await?;
        Ok(Duration::from_secs(secs.max(0) as u64))
    }

    /// The nodes alive now.
    pub async fn nodes(&self) -> Result<Vec<Node>, ClusterError> {
        let mut redis = self.redis.clone();
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(NODES)
            .query_async(&mut redis)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|i| node_key(i)).collect();
        let records: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut redis)
            .await?;
        let mut nodes = Vec::new();
        for (id, record) in ids.iter().zip(records) {
            match record {
                Some(r) => nodes.push(serde_json::from_str::<Node>(&r)?),
                // Gone: forget it (it is added again if it comes back).
                None => {
                    let _: i64 = redis::cmd("SREM")
                        .arg(NODES)
                        .arg(id)
                        .query_async(&mut redis)
                        .await?;
                }
            }
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }

    /// Whether new placements must wait ([`SETTLE`]). Redis's uptime is
    /// read where `INFO` is allowed (an ACL may not allow it: then only
    /// [`SINCE`] says).
    async fn settling(&self) -> Result<bool, ClusterError> {
        if self.settled_for().await? < SETTLE {
            return Ok(true);
        }
        Ok(self.redis_uptime().await.is_ok_and(|up| up < SETTLE))
    }

    /// How long Redis has run (`INFO server`).
    async fn redis_uptime(&self) -> Result<Duration, ClusterError> {
        let mut redis = self.redis.clone();
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut redis)
            .await?;
        let secs = info
            .lines()
            .find_map(|l| l.strip_prefix("uptime_in_seconds:"))
            .and_then(|v| v.trim().parse().ok())
            // Not said: take it as long up rather than refuse every new meeting.
            .unwrap_or(u64::MAX);
        Ok(Duration::from_secs(secs))
    }

    /// The node that hosts `meeting`, if one does.
    pub async fn owner(&self, meeting: &str) -> Result<Option<String>, ClusterError> {
        let mut redis = self.redis.clone();
        Ok(redis::cmd("GET")
            .arg(meeting_key(meeting))
            .query_async(&mut redis)
            .await?)
    }

    /// Take `meeting` for this node unless another holds it: `None` when it
    /// is ours now (or already was), the holder's id otherwise.
    pub async fn claim(&self, meeting: &str) -> Result<Option<String>, ClusterError> {
        let mut redis = self.redis.clone();
        let holder: String = CLAIM
            .key(meeting_key(meeting))
            .arg(&self.id)
            .arg(LIVENESS.as_millis() as u64)
            .invoke_async(&mut redis)
            .await?;
        Ok((holder != self.id).then_some(holder))
    }

    /// Give `meeting` back, if this node holds it.
    pub async fn release(&self, meeting: &str) -> Result<(), ClusterError> {
        let mut redis = self.redis.clone();
        let _: i64 = RELEASE
            .key(meeting_key(meeting))
            .arg(&self.id)
            .invoke_async(&mut redis)
            .await?;
        Ok(())
    }

    /// Where a join for `meeting` goes: the node that hosts it; or, when
    /// none does, the least loaded live node ([`place`]), which is this one
    /// only if it wins the meeting.
    pub async fn route(&self, meeting: &str) -> Result<Route, ClusterError> {
        let nodes = self.nodes().await?;
        let url_of = |id: &str| nodes.iter().find(|n| n.id == id).map(|n| n.url.clone());
        if let Some(owner) = self.owner(meeting).await? {
            if owner == self.id {
                return Ok(Route::Here);
            }
            if let Some(url) = url_of(&owner) {
                return Ok(Route::There(url));
            }
            // Held by a node that is gone: its hold expires with it (at
            // most LIVENESS); until then, say so.
            return Err(ClusterError::NoNode);
        }
        if self.settling().await? {
            return Err(ClusterError::Settling);
        }
        let chosen = place(&nodes).ok_or(ClusterError::NoNode)?;
        if chosen.id != self.id {
            return Ok(Route::There(chosen.url.clone()));
        }
        match self.claim(meeting).await? {
            None => Ok(Route::Here),
            Some(winner) => url_of(&winner)
                .map(Route::There)
                .ok_or(ClusterError::NoNode),
        }
    }
}

/// SET NX, or the holder: returns who holds the key after the call.
static CLAIM: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local held = redis.call('GET', KEYS[1])
          if held then return held end
          redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
          return ARGV[1]",
    )
});

/// Meetings kept per call of [`KEEP`].
const KEEP_CHUNK: usize = 500;

/// Extend each hold that is still ours, and take again each that is held
/// by no one (Redis was restarted, or lost it: the meeting still runs here,
/// and must not be started anew elsewhere); the positions (from 1) of those
/// another node holds.
static KEEP: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local lost = {}
          for i, key in ipairs(KEYS) do
            local held = redis.call('GET', key)
            if held == ARGV[1] then
              redis.call('PEXPIRE', key, ARGV[2])
            elseif not held then
              redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
            else
              table.insert(lost, i)
            end
          end
          return lost",
    )
});

/// Seconds (Redis's clock) since [`SINCE`] was set; set now, and 0, when
/// it is missing.
static SINCE_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local now = tonumber(redis.call('TIME')[1])
          local since = redis.call('GET', KEYS[1])
          if not since then
            redis.call('SET', KEYS[1], now)
            return 0
          end
          return now - tonumber(since)",
    )
});

/// Delete the hold only if it is ours.
static RELEASE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('DEL', KEYS[1])
          end
          return 0",
    )
});
