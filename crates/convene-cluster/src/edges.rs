//! Cascading (docs/cluster-design.md, step 5): the nodes a meeting's host
//! sends part of a webinar's audience to. `convene:meeting:{hash}:edges` is
//! the set of their ids, added to by the host when it sends someone to one
//! and expiring [`EDGES_KEPT`] after the last addition. A node serves a
//! meeting it does not host as its edge only while it is in that set: a
//! node not named there answers as before (the socket goes to the host).

use std::time::Duration;

use crate::{meeting_prefix, place, Cluster, ClusterError, Node};

/// How long a node stays a meeting's edge after it was last named one. Past
/// it, a new socket there goes to the host, which names an edge again.
pub const EDGES_KEPT: Duration = Duration::from_secs(3600);

fn edges_key(meeting: &str) -> String {
    format!("{}:edges", meeting_prefix(meeting))
}

impl Cluster {
    /// The live node, not this one and not draining, that the next of
    /// `meeting`'s audience goes to (the least loaded, as for placement);
    /// recorded as its edge. `None` when there is no other node.
    pub async fn name_edge(&self, meeting: &str) -> Result<Option<Node>, ClusterError> {
        let others: Vec<Node> = self
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.id != self.id)
            .collect();
        let Some(edge) = place(&others).cloned() else {
            return Ok(None);
        };
        let mut redis = self.redis.clone();
        let key = edges_key(meeting);
        redis::pipe()
            .cmd("SADD")
            .arg(&key)
            .arg(&edge.id)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(EDGES_KEPT.as_millis() as u64)
            .ignore()
            .query_async::<()>(&mut redis)
            .await?;
        Ok(Some(edge))
    }

    /// Whether the host of `meeting` named this node one of its edges.
    pub async fn is_edge(&self, meeting: &str) -> Result<bool, ClusterError> {
        let mut redis = self.redis.clone();
        Ok(redis::cmd("SISMEMBER")
            .arg(edges_key(meeting))
            .arg(&self.id)
            .query_async(&mut redis)
            .await?)
    }
}
