//! Messages between nodes: Redis pub/sub, one channel per node
//! (`convene:node:{id}:inbox`). Cascading needs it: an edge's attendees'
//! room messages go to the meeting's node and its answers come back
//! (docs/cluster-design.md, step 5). At most once and in order from one
//! sender, as Redis delivers them: a message sent while the receiver is
//! reconnecting is lost. Signalling already lives with that (a socket can
//! drop any time; a resume puts a client back in step).
//!
//! Sealed (AES-256-GCM) with a key the nodes share and Redis does not hold
//! (the caller's [`Cluster::with_message_key`], from the shared database):
//! the messages carry resume tokens and say who joins with which role, so
//! whoever can read or write Redis must neither learn them nor forge them.
//! Each names its receiver (a message for one node is refused by another),
//! its sender's run and its count there (a count an inbox has taken, or
//! passed, is refused: no replay, no reordering), and when it was sealed
//! (one older than [`FRESH_FOR`] is refused, which bounds what a node that
//! has not heard from a sender yet, after its own restart, can be made to
//! take again: the last 30 s of that sender's messages to it, once).

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{open_client, Cluster, ClusterError};

/// Larger messages are refused when sent and dropped when received: a
/// signalling message is far smaller (the server's own frame limit).
pub const MAX_MESSAGE: usize = 256 * 1024;
/// Messages waiting to be taken from an inbox; past it, new ones are dropped
/// (a receiver that does not keep up must not grow without bound).
const INBOX_QUEUE: usize = 4096;
/// Between tries to subscribe again after the connection was lost.
const RESUBSCRIBE: Duration = Duration::from_millis(500);
/// A message sealed longer ago (or further ahead, clocks apart) is refused.
pub const FRESH_FOR: Duration = Duration::from_secs(30);
const VERSION: u8 = 2;
/// Version, the sender's boot number, the message's count.
const HEADER: usize = 1 + 8 + 8;
const TAG: usize = 16;
/// Senders whose last count an inbox keeps (each a node's run: only
/// authentic ones get in).
const SENDERS_KEPT: usize = 1024;

/// Keys for a sender's messages: one per sender's run ("boot", a random
/// number), derived from the nodes' secret, with the message's count as
/// its nonce. No nonce repeats under a key however many messages go (a
/// random nonce under one long-lived key would, in time), and a receiver
/// refuses a count it has seen (a replay) or one below it (reordered).
pub(crate) struct MessageKey {
    base: [u8; 32],
    boot: u64,
    key: ring::aead::LessSafeKey,
    sent: std::sync::atomic::AtomicU64,
}

fn boot_key(base: &[u8; 32], boot: u64) -> ring::aead::LessSafeKey {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"convene cluster messages: a sender's run\0");
    h.update(base);
    h.update(boot.to_be_bytes());
    let key = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &h.finalize())
        .expect("a 32-byte key");
    ring::aead::LessSafeKey::new(key)
}

fn nonce(count: u64) -> ring::aead::Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&count.to_be_bytes());
    ring::aead::Nonce::assume_unique_for_key(n)
}

fn aad(header: &[u8], to: &str) -> ring::aead::Aad<Vec<u8>> {
    ring::aead::Aad::from([header, b"convene:node:", to.as_bytes()].concat())
}

impl MessageKey {
    /// From a secret the nodes share (at least 16 bytes; derived, so the
    /// secret may serve other ends too).
    pub(crate) fn new(secret: &[u8]) -> Result<MessageKey, ClusterError> {
        use sha2::Digest;
        if secret.len() < 16 {
            return Err(ClusterError::NoMessageKey);
        }
        let mut h = sha2::Sha256::new();
        h.update(b"convene cluster messages v2\0");
        h.update(secret);
        let base: [u8; 32] = h.finalize().into();
        let boot = rand::random::<u64>();
        Ok(MessageKey {
            key: boot_key(&base, boot),
            base,
            boot,
            sent: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn seal(&self, to: &str, message: &[u8]) -> Result<Vec<u8>, ClusterError> {
        self.seal_at(to, message, unix_millis())
    }

    fn seal_at(&self, to: &str, message: &[u8], at: u64) -> Result<Vec<u8>, ClusterError> {
        let count = self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut out = Vec::with_capacity(HEADER + 8 + message.len() + TAG);
        out.push(VERSION);
        out.extend_from_slice(&self.boot.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        let mut body = Vec::with_capacity(8 + message.len() + TAG);
        body.extend_from_slice(&at.to_be_bytes());
        body.extend_from_slice(message);
        self.key
            .seal_in_place_append_tag(nonce(count), aad(&out, to), &mut body)
            .map_err(|_| ClusterError::NoMessageKey)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    #[cfg(test)]
    pub(crate) fn seal_for_test(&self, to: &str, message: &[u8]) -> Vec<u8> {
        self.seal(to, message).unwrap()
    }

    /// Sealed `ago` before now.
    #[cfg(test)]
    pub(crate) fn seal_earlier_for_test(&self, to: &str, message: &[u8], ago: Duration) -> Vec<u8> {
        let at = unix_millis() - ago.as_millis() as u64;
        self.seal_at(to, message, at).unwrap()
    }
}

/// An inbox's side: what it has taken from each sender's run.
struct Opener {
    base: [u8; 32],
    /// By boot: its key, the last count taken, and when.
    senders: std::collections::HashMap<u64, (ring::aead::LessSafeKey, u64, std::time::Instant)>,
}

impl Opener {
    fn new(key: &MessageKey) -> Opener {
        Opener {
            base: key.base,
            senders: std::collections::HashMap::new(),
        }
    }

    /// The message in `sealed` if it was sealed for `to` with the nodes'
    /// key, recently, and after the last one taken from its sender.
    fn open(&mut self, to: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < HEADER + 8 + TAG || sealed.len() > HEADER + 8 + MAX_MESSAGE + TAG {
            return None;
        }
        let (header, body) = sealed.split_at(HEADER);
        if header[0] != VERSION {
            return None;
        }
        let boot = u64::from_be_bytes(header[1..9].try_into().ok()?);
        let count = u64::from_be_bytes(header[9..17].try_into().ok()?);
        let known = self.senders.get(&boot);
        if known.is_some_and(|(_, last, _)| count <= *last) {
            return None;
        }
        let mut fresh_key = None;
        let key = match known {
            Some((k, _, _)) => k,
            None => &*fresh_key.insert(boot_key(&self.base, boot)),
        };
        let mut body = body.to_vec();
        let plain = key
            .open_in_place(nonce(count), aad(header, to), &mut body)
            .ok()?;
        let (at, message) = plain.split_at_checked(8)?;
        let at = u64::from_be_bytes(at.try_into().ok()?);
        if unix_millis().abs_diff(at) > FRESH_FOR.as_millis() as u64 {
            return None;
        }
        let message = message.to_vec();
        let now = std::time::Instant::now();
        match self.senders.get_mut(&boot) {
            Some(entry) => {
                entry.1 = count;
                entry.2 = now;
            }
            None => {
                if self.senders.len() >= SENDERS_KEPT {
                    let oldest = self
                        .senders
                        .iter()
                        .min_by_key(|(_, e)| e.2)
                        .map(|(b, _)| *b);
                    if let Some(b) = oldest {
                        self.senders.remove(&b);
                    }
                }
                let key = fresh_key.unwrap_or_else(|| boot_key(&self.base, boot));
                self.senders.insert(boot, (key, count, now));
            }
        }
        Some(message)
    }
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn inbox_channel(node: &str) -> String {
    format!("convene:node:{node}:inbox")
}

/// What other nodes send this one, as they send it.
pub struct Inbox {
    rx: mpsc::Receiver<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

impl Inbox {
    /// The next message; `None` once the inbox is closed.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Cluster {
    /// Send `message` to node `to`. `Ok(false)` when no node listens on its
    /// inbox (it is gone, or reconnecting).
    pub async fn send_to(&self, to: &str, message: &[u8]) -> Result<bool, ClusterError> {
        if message.len() > MAX_MESSAGE {
            return Err(ClusterError::TooLarge(message.len()));
        }
        let key = self.messages.as_ref().ok_or(ClusterError::NoMessageKey)?;
        let sealed = key.seal(to, message)?;
        let mut redis = self.redis.clone();
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(inbox_channel(to))
            .arg(sealed)
            .query_async(&mut redis)
            .await?;
        Ok(receivers > 0)
    }

    /// Send each message to its node, in order, in one round trip to Redis
    /// (a pipeline). Messages too large are left out (and counted in the
    /// error when nothing else went); `Ok` says how many no node listened for.
    pub async fn send_many(&self, messages: &[(String, Vec<u8>)]) -> Result<usize, ClusterError> {
        let key = self.messages.as_ref().ok_or(ClusterError::NoMessageKey)?;
        let mut pipe = redis::pipe();
        let mut sent = 0;
        for (to, message) in messages {
            if message.len() > MAX_MESSAGE {
                warn!(to = %to, bytes = message.len(), "a message to another node too large to send: dropped");
                continue;
            }
            pipe.cmd("PUBLISH")
                .arg(inbox_channel(to))
                .arg(key.seal(to, message)?);
            sent += 1;
        }
        if sent == 0 {
            return match messages.first() {
                Some((_, m)) => Err(ClusterError::TooLarge(m.len())),
                None => Ok(0),
            };
        }
        let mut redis = self.redis.clone();
        let receivers: Vec<i64> = pipe.query_async(&mut redis).await?;
        Ok(receivers.iter().filter(|&&n| n == 0).count())
    }

    /// This node's inbox, on a connection of its own (a subscribed
    /// connection does nothing else), subscribed again whenever Redis comes
    /// back. Fails when Redis does not answer now.
    pub async fn inbox(&self) -> Result<Inbox, ClusterError> {
        let mut opener = Opener::new(self.messages.as_ref().ok_or(ClusterError::NoMessageKey)?);
        let me = self.id.clone();
        let client = open_client(&self.redis_url, self.redis_ca.as_deref())?;
        let channel = inbox_channel(&self.id);
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        let (tx, rx) = mpsc::channel(INBOX_QUEUE);
        let task = tokio::spawn(async move {
            loop {
                {
                    use futures_util::StreamExt;
                    let mut messages = pubsub.on_message();
                    while let Some(m) = messages.next().await {
                        let sealed = m.get_payload_bytes();
                        let Some(payload) = opener.open(&me, sealed) else {
                            warn!(
                                bytes = sealed.len(),
                                "cluster: a message not sealed for this node with the nodes' key (or too old), dropped"
                            );
                            continue;
                        };
                        if payload.len() > MAX_MESSAGE {
                            warn!(
                                bytes = payload.len(),
                                "cluster: a message too large, dropped"
                            );
                            continue;
                        }
                        if tx.try_send(payload).is_err() {
                            if tx.is_closed() {
                                return;
                            }
                            warn!("cluster: this node's inbox is full, a message dropped");
                        }
                    }
                }
                // The connection was lost: subscribe again once Redis answers.
                debug!("cluster: inbox connection lost; subscribing again");
                pubsub = loop {
                    if tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(RESUBSCRIBE).await;
                    let Ok(mut p) = client.get_async_pubsub().await else {
                        continue;
                    };
                    if p.subscribe(&channel).await.is_ok() {
                        break p;
                    }
                };
            }
        });
        Ok(Inbox { rx, task })
    }
}
