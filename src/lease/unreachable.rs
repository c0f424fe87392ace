//! Keys whose Redis Cluster shard does not answer. In a cluster one primary can die while the
//! others serve: this node's [`crate::redis_health::RedisHealth`] then flips between silent (a
//! command on the dead shard failed) and answering (one on a live shard succeeded), so its
//! silence never lasts the TTL after which PostgreSQL may grant, and a booking on the dead shard
//! waits for the cluster's own failover (detection, election, the client finding the new
//! primary: seconds more, and a CLUSTERDOWN for every key in between). Counting the TTL per key
//! instead lets that booking's lease come from PostgreSQL a TTL after its grant first failed,
//! while grants of keys on live shards keep going to Redis.
//!
//! The argument is the whole-Redis one (docs/architecture.md, "Redis silent"), key by key: a
//! Redis lease on the key, anyone's, was last renewed before its shard stopped answering, so a
//! TTL of continuous failures later it has expired; and a node that still reaches that shard
//! defers to the PostgreSQL holder at activation, with the fencing token keeping either way safe.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures of one key's grants: since when, and the latest.
#[derive(Debug, Clone, Copy)]
struct Failing {
    since: Instant,
    last: Instant,
}

/// Keys whose grant failed because their shard was unreachable, with since when. Failures count
/// as continuous while no more than two TTLs pass between two of them: a request told to wait
/// the TTL asks again a little after it, and that must find its first failure still counted.
/// (Should the shard have come back and gone again in between, a Redis lease taken meanwhile can
/// overlap the PostgreSQL one: activations defer to the PostgreSQL holder, and the fencing token
/// keeps the booking to one writer whatever the stores say.)
#[derive(Debug)]
pub(crate) struct UnreachableKeys {
    ttl: Duration,
    keys: Mutex<HashMap<String, Failing>>,
}

impl UnreachableKeys {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failing>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long until `key` may be granted from PostgreSQL (zero: now); `None` when its grants
    /// have not been failing.
    pub fn grants_in(&self, key: &str, now: Instant) -> Option<Duration> {
        let keys = self.keys();
        let failing = keys.get(key).filter(|f| self.continuous(f, now))?;
        Some((failing.since + self.ttl).saturating_duration_since(now))
    }

    /// Records a grant of `key` that failed for want of its shard; answers how long until it may
    /// come from PostgreSQL. Entries whose failures stopped are dropped meanwhile.
    pub fn failed(&self, key: &str, now: Instant) -> Duration {
        let mut keys = self.keys();
        keys.retain(|_, failing| self.continuous(failing, now));
        let failing = keys.entry(key.to_owned()).or_insert(Failing {
            since: now,
            last: now,
        });
        failing.last = now;
        (failing.since + self.ttl).saturating_duration_since(now)
    }

    /// `key` was granted (or found held): its shard answers.
    pub fn answered(&self, key: &str) {
        let mut keys = self.keys();
        if !keys.is_empty() {
            keys.remove(key);
        }
    }

    fn continuous(&self, failing: &Failing, now: Instant) -> bool {
        now.saturating_duration_since(failing.last) <= 2 * self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(2);

    #[test]
    fn a_key_is_granted_from_postgres_a_ttl_after_its_first_failure() {
        let keys = UnreachableKeys::new(TTL);
        let t0 = Instant::now();
        assert_eq!(keys.grants_in("a", t0), None);
        assert_eq!(keys.failed("a", t0), TTL);
        let later = t0 + Duration::from_millis(1500);
        assert_eq!(keys.failed("a", later), Duration::from_millis(500));
        assert_eq!(keys.grants_in("a", t0 + TTL), Some(Duration::ZERO));
        // Another key counts from its own first failure.
        assert_eq!(keys.failed("b", later), TTL);
    }

    #[test]
    fn an_answer_or_a_pause_in_the_failures_starts_the_count_again() {
        let keys = UnreachableKeys::new(TTL);
        let t0 = Instant::now();
        keys.failed("a", t0);
        keys.answered("a");
        assert_eq!(keys.grants_in("a", t0 + TTL), None);

        keys.failed("b", t0);
        // Asked again a little after the TTL it was told to wait: still the same failure.
        let retry = t0 + TTL + Duration::from_millis(30);
        assert_eq!(keys.grants_in("b", retry), Some(Duration::ZERO));
        let after_pause = t0 + 2 * TTL + Duration::from_millis(1);
        assert_eq!(keys.grants_in("b", after_pause), None);
        assert_eq!(keys.failed("b", after_pause), TTL);
    }
}
