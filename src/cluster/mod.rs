//! Cluster membership: every node announces itself in Redis under `{prefix}node:<id>`, a JSON
//! value with its address and figures, set with the lease TTL and refreshed on the lease
//! heartbeat's period. A node that stops cleanly withdraws its key at once; one that crashed
//! drops out when the TTL runs out. `GET /api/cluster/nodes` lists the keys alive now.
//!
//! [`forward`] sends a booking action to the node that holds the booking's lease, at the address
//! that node announced here; [`auth`] signs and verifies those node-to-node calls.

pub mod auth;
pub(crate) mod drain;
pub(crate) mod forward;
pub(crate) mod headers;
pub(crate) mod heartbeat;
pub(crate) mod inbound;
mod lease_watch;
pub(crate) mod offers;
pub(crate) mod relay;
pub(crate) mod router;

use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::redis_conn::RedisConn;

/// One live node, as it last announced itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub(crate) struct NodeInfo {
    pub id: String,
    /// Where other nodes reach this one (`node.advertise_url`).
    pub address: String,
    pub started_at: DateTime<Utc>,
    pub active_actors: usize,
    pub held_leases: u64,
    /// When this announcement was made.
    pub seen_at: DateTime<Utc>,
}

pub(crate) fn node_key(prefix: &str, node_id: &str) -> String {
    format!("{prefix}node:{node_id}")
}

/// This node's announcements.
#[derive(Clone)]
pub(crate) struct Membership {
    redis: RedisConn,
    key: String,
    ttl: Duration,
}

impl Membership {
    pub fn new(redis: RedisConn, prefix: &str, node_id: &str, ttl: Duration) -> Self {
        Self {
            redis,
            key: node_key(prefix, node_id),
            ttl,
        }
    }

    /// Sets (or refreshes) this node's key for one TTL.
    pub(crate) async fn announce(&self, info: &NodeInfo) -> Result<(), redis::RedisError> {
        // Plain strings, numbers and dates: serializing cannot fail.
        let value = serde_json::to_string(info).unwrap_or_default();
        let mut conn = self.redis.clone();
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        conn.pset_ex(&self.key, value, ttl_ms).await
    }

    /// Removes this node's key (clean shutdown).
    pub(crate) async fn withdraw(&self) -> anyhow::Result<()> {
        let mut conn = self.redis.clone();
        let _: i64 = conn.del(&self.key).await?;
        Ok(())
    }
}

/// Every node whose key is alive, by id. Keys are found with SCAN, never KEYS.
pub(crate) async fn live_nodes(redis: &RedisConn, prefix: &str) -> anyhow::Result<Vec<NodeInfo>> {
    let keys = redis.scan_match(&format!("{prefix}node:*")).await?;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    // MGET spelled out: the typed helper sends a plain GET for a single key, whose reply is not
    // a list. A cluster client splits it by slot.
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut redis.clone())
        .await?;
    let mut nodes: Vec<NodeInfo> = values
        .into_iter()
        .flatten()
        .filter_map(|json| serde_json::from_str(&json).ok())
        .collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(nodes)
}
