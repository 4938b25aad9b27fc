//! Messages between nodes: Redis pub/sub, one channel per node
//! (`convene:node:{id}:inbox`). Cascading needs it: an edge's attendees'
//! room messages go to the meeting's node and its answers come back
//! (docs/cluster-design.md, step 5). At most once and in order from one
//! sender, as Redis delivers them: a message sent while the receiver is
//! reconnecting is lost. Signalling already lives with that (a socket can
//! drop any time; a resume puts a client back in step).

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
        let mut redis = self.redis.clone();
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(inbox_channel(to))
            .arg(message)
            .query_async(&mut redis)
            .await?;
        Ok(receivers > 0)
    }

    /// This node's inbox, on a connection of its own (a subscribed
    /// connection does nothing else), subscribed again whenever Redis comes
    /// back. Fails when Redis does not answer now.
    pub async fn inbox(&self) -> Result<Inbox, ClusterError> {
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
                        let payload: Vec<u8> = m.get_payload_bytes().to_vec();
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
