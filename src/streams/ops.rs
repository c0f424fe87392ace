//! The operations feed of the ops stream (and the dashboard): what each node does with leases,
//! its lease backend switches, and its figures once a second, from every node to every node.
//!
//! Each node gathers its own and announces them on a second PostgreSQL channel, in batches every
//! [`TICK`] (one `NOTIFY` per batch, not per lease); every node's listening connection hears
//! every node's, its own included, and hands them to its cluster streams. Unlike booking events
//! these are not in any trail: a stream gets them live, and one that was away gets the next
//! figures within a second. A batch that cannot be announced (PostgreSQL unavailable) is dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::lease::events::{LeaseChange, LeaseEvent};
use crate::redis_health::RedisHealth;
use crate::storage::{pool, PgPool};

/// The channel the operations feed is announced on.
pub const OPS_CHANNEL: &str = "ridelock_ops";
/// How often a node announces what it gathered.
const TICK: Duration = Duration::from_millis(100);
/// How often a node announces its figures.
const FIGURES_EVERY: Duration = Duration::from_secs(1);
/// Under PostgreSQL's 8,000-byte limit for one announcement, with room for the last event.
const PAYLOAD_MOST: usize = 7000;
/// Lease events announced per tick at most; the rest are counted in the node's figures.
const EVENTS_PER_TICK: usize = 500;

/// One item of the operations feed. Its `type` is the event name on the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OpsEvent {
    /// A lease changed on `node`.
    Lease {
        node: String,
        key: String,
        change: LeaseChange,
        /// The holder (`contended`) or the previous holder (`moved`, `taken_over`).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        other: Option<String>,
        at: DateTime<Utc>,
    },
    /// `node` now takes new leases from `backend` (`redis` or `postgres`).
    Backend {
        node: String,
        backend: String,
        at: DateTime<Utc>,
    },
    /// A node's figures, once a second.
    Node(NodeFigures),
}

impl OpsEvent {
    /// The event name on the stream.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Lease { .. } => "lease",
            Self::Backend { .. } => "backend",
            Self::Node(_) => "node",
        }
    }
}

/// A node's figures, as its dashboard row shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeFigures {
    pub node: String,
    /// Where the node serves.
    pub address: String,
    pub version: String,
    /// Live booking actors.
    pub actors: usize,
    /// Leases held.
    pub leases: usize,
    /// Where new leases come from: `redis` or `postgres`.
    pub backend: String,
    /// Streams open on the node.
    pub streams: usize,
    /// HTTP requests answered per second, over the last second.
    pub requests_per_s: f64,
    /// The upper bound of the latency bucket holding the 99th percentile of the last second's
    /// requests, ms; `None` without requests, or above the last bucket.
    pub p99_ms: Option<f64>,
    /// Bookings not yet finished, by status, in the whole database (from the node's last look).
    pub open_bookings: BTreeMap<String, i64>,
    /// Lease events not announced (the node produced them faster than it announces).
    pub lease_events_dropped: u64,
    pub at: DateTime<Utc>,
}

/// Requests a node answered so far: how many fell in each latency bucket (non-cumulative; the
/// last is above every bound).
#[derive(Debug, Clone, Default)]
pub struct Answered {
    /// Upper bounds of the buckets, seconds.
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
}

impl Answered {
    /// The requests answered since `before`, and the upper bound of the bucket their 99th
    /// percentile falls in, ms.
    fn since(&self, before: &Self) -> (u64, Option<f64>) {
        let delta: Vec<u64> = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(before.counts.get(i).copied().unwrap_or(0)))
            .collect();
        let total: u64 = delta.iter().sum();
        if total == 0 {
            return (0, None);
        }
        let wanted = (total * 99).div_ceil(100);
        let mut seen = 0;
        for (i, n) in delta.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                return (total, self.bounds.get(i).map(|s| s * 1000.0));
            }
        }
        (total, None)
    }
}

/// What the node reports of itself besides leases: read once a second.
pub(crate) struct Local {
    pub actors: usize,
    pub leases: usize,
    pub streams: usize,
    pub answered: Answered,
    pub lease_events_dropped: u64,
}

/// The node a publisher speaks for.
pub(crate) struct Publisher {
    pub node: String,
    pub address: String,
    pub pool: PgPool,
    pub health: Arc<RedisHealth>,
    pub lease_events: mpsc::Receiver<LeaseEvent>,
    /// Read once a second (wired at start-up from the actors, the lease manager, the metrics).
    pub local: Box<dyn Fn() -> Local + Send>,
}

impl Publisher {
    /// Announces this node's operations feed for as long as the process runs.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backend = self.health.backend();
        let mut figures_at = Instant::now();
        let mut answered_before = (self.local)().answered;
        let mut open = BTreeMap::new();
        let mut unannounced = 0u64;
        loop {
            tick.tick().await;
            let mut batch = Vec::new();
            while batch.len() < EVENTS_PER_TICK {
                let Ok(event) = self.lease_events.try_recv() else {
                    break;
                };
                batch.push(OpsEvent::Lease {
                    node: self.node.clone(),
                    key: event.key.to_string(),
                    change: event.change,
                    other: event.other,
                    at: event.at,
                });
            }
            // Whatever did not fit this tick is counted, not carried: the queue stays short.
            while self.lease_events.try_recv().is_ok() {
                unannounced += 1;
            }
            let now_backend = self.health.backend();
            if now_backend != backend {
                backend = now_backend;
                batch.push(OpsEvent::Backend {
                    node: self.node.clone(),
                    backend: backend.to_owned(),
                    at: Utc::now(),
                });
            }
            if figures_at.elapsed() >= FIGURES_EVERY {
                let seconds = figures_at.elapsed().as_secs_f64();
                figures_at = Instant::now();
                let local = (self.local)();
                let (requests, p99_ms) = local.answered.since(&answered_before);
                answered_before = local.answered;
                if let Ok(counted) = self.open_bookings().await {
                    open = counted;
                }
                batch.push(OpsEvent::Node(NodeFigures {
                    node: self.node.clone(),
                    address: self.address.clone(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    actors: local.actors,
                    leases: local.leases,
                    backend: backend.to_owned(),
                    streams: local.streams,
                    requests_per_s: requests as f64 / seconds,
                    p99_ms,
                    open_bookings: open.clone(),
                    lease_events_dropped: local.lease_events_dropped + unannounced,
                    at: Utc::now(),
                }));
            }
            if !batch.is_empty() {
                if let Err(error) = self.announce(&batch).await {
                    log::debug!("ops feed: not announced node={} error={error}", self.node);
                }
            }
        }
    }

    /// Bookings not yet finished, by status: read from the small index of open bookings.
    async fn open_bookings(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            status: String,
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = pool::conn(&self.pool).await?;
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT status::text AS status, count(*) AS n FROM bookings \
             WHERE status IN ('pending', 'assigned', 'accepted') GROUP BY status",
        )
        .load(&mut conn)
        .await?;
        Ok(rows.into_iter().map(|r| (r.status, r.n)).collect())
    }

    async fn announce(&self, batch: &[OpsEvent]) -> anyhow::Result<()> {
        let mut conn = pool::conn(&self.pool).await?;
        for payload in payloads(batch) {
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<Text, _>(OPS_CHANNEL)
                .bind::<Text, _>(payload)
                .execute(&mut conn)
                .await?;
        }
        Ok(())
    }
}

/// `batch` as JSON arrays of at most [`PAYLOAD_MOST`] bytes each (an event alone is always
/// smaller: its fields are short).
fn payloads(batch: &[OpsEvent]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::from("[");
    for event in batch {
        let Ok(json) = serde_json::to_string(event) else {
            continue;
        };
        if current.len() > 1 && current.len() + json.len() + 2 > PAYLOAD_MOST {
            current.push(']');
            out.push(std::mem::replace(&mut current, String::from("[")));
        }
        if current.len() > 1 {
            current.push(',');
        }
        current.push_str(&json);
    }
    if current.len() > 1 {
        current.push(']');
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(i: usize) -> OpsEvent {
        OpsEvent::Lease {
            node: "n1".into(),
            key: format!("lock:booking:{i}"),
            change: LeaseChange::TakenOver,
            other: Some("n2".into()),
            at: Utc::now(),
        }
    }

    #[test]
    fn a_batch_is_split_into_announcements_that_read_back_whole() {
        let batch: Vec<OpsEvent> = (0..300).map(lease).collect();
        let payloads = payloads(&batch);
        assert!(payloads.len() > 1);
        let mut read = Vec::new();
        for payload in &payloads {
            assert!(payload.len() <= PAYLOAD_MOST, "{}", payload.len());
            read.extend(serde_json::from_str::<Vec<OpsEvent>>(payload).unwrap());
        }
        assert_eq!(read, batch);
        let json = serde_json::to_value(&batch[0]).unwrap();
        assert_eq!(json["type"], "lease");
        assert_eq!(json["change"], "taken_over");
        assert_eq!(batch[0].name(), "lease");
    }

    #[test]
    fn the_p99_is_the_bucket_bound_of_the_last_second_s_requests() {
        let bounds = vec![0.001, 0.01, 0.1];
        let before = Answered {
            bounds: bounds.clone(),
            counts: vec![10, 0, 0, 0],
        };
        let now = Answered {
            bounds,
            counts: vec![108, 1, 1, 0],
        };
        assert_eq!(now.since(&before), (100, Some(10.0)));
        assert_eq!(now.since(&now), (0, None));
        let slow = Answered {
            bounds: vec![0.001],
            counts: vec![0, 5],
        };
        assert_eq!(slow.since(&Answered::default()), (5, None));
    }
}
