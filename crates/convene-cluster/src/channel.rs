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
//! Each names its receiver (a message for one node is refused by another)
//! and when it was sealed (one older than [`FRESH_FOR`] is refused, which
//! bounds a replay).

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{Cluster, ClusterError};

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
const VERSION: u8 = 1;
const NONCE: usize = 12;

/// The key messages are sealed with.
pub(crate) struct MessageKey {
    key: ring::aead::LessSafeKey,
    rng: ring::rand::SystemRandom,
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
        h.update(b"convene cluster messages v1\0");
        h.update(secret);
        let derived = h.finalize();
        let key = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &derived)
            .map_err(|_| ClusterError::NoMessageKey)?;
        Ok(MessageKey {
            key: ring::aead::LessSafeKey::new(key),
            rng: ring::rand::SystemRandom::new(),
        })
    }

    fn aad(to: &str) -> ring::aead::Aad<Vec<u8>> {
        ring::aead::Aad::from([b"convene:node:".as_slice(), to.as_bytes()].concat())
    }

    fn seal(&self, to: &str, message: &[u8]) -> Result<Vec<u8>, ClusterError> {
        self.seal_at(to, message, unix_millis())
    }

    fn seal_at(&self, to: &str, message: &[u8], at: u64) -> Result<Vec<u8>, ClusterError> {
        use ring::rand::SecureRandom;
        let mut nonce = [0u8; NONCE];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| ClusterError::NoMessageKey)?;
        let mut body = Vec::with_capacity(8 + message.len() + 16);
        body.extend_from_slice(&at.to_be_bytes());
        body.extend_from_slice(message);
        self.key
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                Self::aad(to),
                &mut body,
            )
            .map_err(|_| ClusterError::NoMessageKey)?;
        let mut out = Vec::with_capacity(1 + NONCE + body.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
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

    /// The message in `sealed` if it was sealed for `to` with this key,
    /// recently.
    fn open(&self, to: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = sealed.split_first()?;
        if version != VERSION || rest.len() < NONCE + 8 {
            return None;
        }
        let (nonce, body) = rest.split_at(NONCE);
        let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Self::aad(to), &mut body)
            .ok()?;
        let (at, message) = plain.split_at_checked(8)?;
        let at = u64::from_be_bytes(at.try_into().ok()?);
        let fresh = FRESH_FOR.as_millis() as u64;
        if unix_millis().abs_diff(at) > fresh {
            return None;
        }
        Some(message.to_vec())
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

    /// This node's inbox, on a connection of its own (a subscribed
    /// connection does nothing else), subscribed again whenever Redis comes
    /// back. Fails when Redis does not answer now.
    pub async fn inbox(&self) -> Result<Inbox, ClusterError> {
        let key = self.messages.clone().ok_or(ClusterError::NoMessageKey)?;
        let me = self.id.clone();
        let client = redis::Client::open(self.redis_url.as_str())?;
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
                        let Some(payload) = key.open(&me, sealed) else {
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
