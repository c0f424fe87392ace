//! The Redis side of leases. Every command is a single-key operation, so the same code works
//! against Redis Cluster or a Sentinel-managed primary; batches go through `RedisConn::batch`,
//! which keeps a cluster's pipelines within one slot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Script;

use super::LeaseError;
use crate::redis_conn::RedisConn;

/// Extends a lease only if it still carries our value.
const RENEW: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
else
  return 0
end
"#;

/// Leases renewed (or released) per pipeline: about 6 ms of Redis time each
/// (docs/benchmarks-history.md).
const RENEW_CHUNK: usize = 1000;

/// Deletes a lease only if it still carries our value (the tutorial's check-and-delete).
const RELEASE: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
else
  return 0
end
"#;

/// One lease key as seen in Redis.
#[derive(Debug, Clone)]
pub struct LeaseRecord {
    pub key: String,
    pub value: String,
    pub remaining: Duration,
}

/// Lease commands on one multiplexed Redis connection (cheap to clone).
#[derive(Clone)]
pub struct RedisLeases {
    conn: RedisConn,
    release: Script,
    wait: Option<ReplicaWait>,
}

/// `WAIT` after a grant (`lease.wait_replicas`), and the grants that reached fewer replicas.
#[derive(Clone)]
struct ReplicaWait {
    replicas: u32,
    timeout: Duration,
    short: Arc<ShortWaits>,
}

/// Grants that reached fewer replicas than asked in time, logged at most once a second.
#[derive(Default)]
struct ShortWaits {
    count: AtomicU64,
    logged_at: Mutex<Option<Instant>>,
}

impl RedisLeases {
    pub fn new(conn: RedisConn) -> Self {
        Self {
            conn,
            release: Script::new(RELEASE),
            wait: None,
        }
    }

    /// True on Redis Cluster, whose primaries fail one at a time.
    pub(crate) fn is_sharded(&self) -> bool {
        self.conn.is_sharded()
    }

    /// Each grant then waits (`WAIT`) up to `timeout` for `replicas` replicas to have it.
    pub fn waiting_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = Some(ReplicaWait {
            replicas,
            timeout,
            short: Arc::default(),
        });
        self
    }

    /// `SET key value NX PX ttl` (with `WAIT` in the same pipeline if so configured, so that a
    /// cluster sends it to the key's primary); on contention, says who holds it and for how long.
    pub async fn acquire(&self, key: &str, value: &str, ttl: Duration) -> Result<(), LeaseError> {
        let mut conn = self.conn.clone();
        let mut set = redis::cmd("SET");
        set.arg(key).arg(value).arg("NX").arg("PX").arg(millis(ttl));
        let granted = match &self.wait {
            None => set
                .query_async::<Option<String>>(&mut conn)
                .await
                .map_err(LeaseError::unavailable)?
                .is_some(),
            Some(wait) => {
                let (granted, reached): (Option<String>, u32) = redis::pipe()
                    .add_command(set)
                    .cmd("WAIT")
                    .arg(wait.replicas)
                    .arg(millis(wait.timeout))
                    .query_async(&mut conn)
                    .await
                    .map_err(LeaseError::unavailable)?;
                if granted.is_some() && reached < wait.replicas {
                    wait.short.count(key, reached, wait.replicas);
                }
                granted.is_some()
            }
        };
        if granted {
            return Ok(());
        }
        let (holder, pttl): (Option<String>, i64) = redis::pipe()
            .get(key)
            .pttl(key)
            .query_async(&mut conn)
            .await
            .map_err(LeaseError::unavailable)?;
        // Our own value: an earlier attempt's SET landed but its reply was lost (then retried).
        if holder.as_deref() == Some(value) {
            return Ok(());
        }
        // Gone between the SET and the GET: report an empty holder, and the caller tries again.
        Err(LeaseError::Held(super::LeaseOwner::from_value(
            holder.unwrap_or_default(),
            Duration::from_millis(pttl.max(0).unsigned_abs()),
        )))
    }

    /// Renews every `(key, value)`, pipelined in chunks of [`RENEW_CHUNK`]; `true` where the lease
    /// was still ours.
    pub async fn renew_all(
        &self,
        leases: &[(String, String)],
        ttl: Duration,
    ) -> Result<Vec<bool>, LeaseError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        // EVAL rather than EVALSHA: a pipeline cannot recover from NOSCRIPT (after a Redis restart
        // or failover) mid-flight, and Redis caches the compiled script by its hash anyway.
        // Chunks, one after the other: each is one pipeline with its own response timeout, so a
        // node holding 100,000 leases renews them all without any single reply taking longer
        // than `redis.response_timeout_ms` (one pipeline of them took about 0.6 s).
        let mut renewed = Vec::with_capacity(leases.len());
        for chunk in leases.chunks(RENEW_CHUNK) {
            let commands = chunk
                .iter()
                .map(|(key, value)| {
                    let mut eval = redis::cmd("EVAL");
                    eval.arg(RENEW).arg(1).arg(key).arg(value).arg(millis(ttl));
                    eval
                })
                .collect();
            let answers = self.batch(commands).await?;
            renewed.extend(answers.into_iter().map(|n| n == 1));
        }
        Ok(renewed)
    }

    /// One reply per command, as integers (see `RedisConn::batch`).
    async fn batch(&self, commands: Vec<redis::Cmd>) -> Result<Vec<i64>, LeaseError> {
        let replies = self
            .conn
            .batch(commands, false)
            .await
            .map_err(LeaseError::unavailable)?;
        replies
            .into_iter()
            .map(redis::from_redis_value)
            .collect::<Result<_, _>>()
            .map_err(LeaseError::unavailable)
    }

    /// Check-and-delete; `true` if the lease was still ours.
    pub async fn release(&self, key: &str, value: &str) -> Result<bool, LeaseError> {
        let mut conn = self.conn.clone();
        let deleted: i64 = self
            .release
            .key(key)
            .arg(value)
            .invoke_async(&mut conn)
            .await
            .map_err(LeaseError::unavailable)?;
        Ok(deleted == 1)
    }

    /// Check-and-delete of many leases, pipelined in chunks of [`RENEW_CHUNK`]; how many were
    /// still ours. A node shutting down with 100,000 leases gives them back in 100 round trips.
    pub(crate) async fn release_all(
        &self,
        leases: &[(String, String)],
    ) -> Result<usize, LeaseError> {
        let mut released = 0;
        for chunk in leases.chunks(RENEW_CHUNK) {
            let commands = chunk
                .iter()
                .map(|(key, value)| {
                    let mut eval = redis::cmd("EVAL");
                    eval.arg(RELEASE).arg(1).arg(key).arg(value);
                    eval
                })
                .collect();
            let answers = self.batch(commands).await?;
            released += answers.into_iter().filter(|n| *n == 1).count();
        }
        Ok(released)
    }

    /// Who holds `key` now, if anyone.
    pub async fn holder(&self, key: &str) -> Result<Option<super::LeaseOwner>, LeaseError> {
        let mut conn = self.conn.clone();
        let (value, pttl): (Option<String>, i64) = redis::pipe()
            .get(key)
            .pttl(key)
            .query_async(&mut conn)
            .await
            .map_err(LeaseError::unavailable)?;
        Ok(value.map(|value| {
            super::LeaseOwner::from_value(value, Duration::from_millis(pttl.max(0).unsigned_abs()))
        }))
    }

    /// Every lease key under `prefix`, found with SCAN (never KEYS, which blocks Redis).
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, LeaseError> {
        self.conn
            .scan_match(&format!("{prefix}lock:*"))
            .await
            .map_err(LeaseError::unavailable)
    }

    /// The value and remaining time of each of `keys` that still exists, pipelined in chunks of
    /// [`RENEW_CHUNK`].
    pub(crate) async fn records(&self, keys: Vec<String>) -> Result<Vec<LeaseRecord>, LeaseError> {
        let mut records = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(RENEW_CHUNK) {
            // A key of another type under the pattern (another application's) fails its own
            // GET only: it is left out, and the rest of the page is read.
            let mut commands = Vec::with_capacity(chunk.len() * 2);
            for key in chunk {
                commands.push(redis::cmd("GET").arg(key).clone());
                commands.push(redis::cmd("PTTL").arg(key).clone());
            }
            let flat = self
                .conn
                .batch(commands, true)
                .await
                .map_err(LeaseError::unavailable)?;
            let replies = flat.chunks(2).map(|pair| {
                let value: Option<String> = pair
                    .first()
                    .and_then(|v| redis::from_redis_value(v.clone()).ok());
                let pttl: i64 = pair
                    .get(1)
                    .and_then(|v| redis::from_redis_value(v.clone()).ok())
                    .unwrap_or(-2);
                (value, pttl)
            });
            records.extend(
                chunk
                    .iter()
                    .zip(replies)
                    .filter_map(|(key, (value, pttl))| {
                        Some(LeaseRecord {
                            key: key.clone(),
                            value: value?,
                            remaining: Duration::from_millis(u64::try_from(pttl).ok()?),
                        })
                    }),
            );
        }
        Ok(records)
    }

    /// Every lease under `prefix` with its value and remaining time.
    pub async fn list(&self, prefix: &str) -> Result<Vec<LeaseRecord>, LeaseError> {
        let keys = self.keys(prefix).await?;
        self.records(keys).await
    }

    /// Deletes leases under `prefix` that name `node_id`: a previous run of this node crashed
    /// holding them, and this run will reactivate those bookings with new fencing tokens.
    pub(crate) async fn clear_node(
        &self,
        prefix: &str,
        node_id: &str,
    ) -> Result<usize, LeaseError> {
        let mut cleared = 0;
        for record in self.list(prefix).await? {
            if super::owner_node(&record.value) == node_id
                && self.release(&record.key, &record.value).await?
            {
                cleared += 1;
            }
        }
        Ok(cleared)
    }
}

impl ShortWaits {
    fn count(&self, key: &str, reached: u32, asked: u32) {
        let total = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let mut logged_at = self.logged_at.lock().unwrap_or_else(|p| p.into_inner());
        if logged_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            *logged_at = Some(Instant::now());
            log::warn!(
                "lease granted before its replicas had it key={key} replicas={reached} asked={asked} total={total}"
            );
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
