//! This node's view of whether Redis answers, shared by everything that talks to Redis: the lease
//! store (which switches to PostgreSQL leases while Redis is silent), the geo index, the replay
//! check of internal calls and the node's heartbeat, which probes Redis while it is silent.
//! See `lease::failover` for what a switch does to leases.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::RedisError;

use crate::redis_conn::means_unavailable;

/// This node's view of whether Redis answers. Shared by the lease store, the geo index and the
/// node's heartbeat, which probes Redis while it is silent.
#[derive(Debug)]
pub(crate) struct RedisHealth {
    node_id: String,
    ttl: Duration,
    silent_since: Mutex<Option<Instant>>,
    /// Set by the first command that showed Redis takes writes; never cleared.
    ever_answered: std::sync::atomic::AtomicBool,
}

impl RedisHealth {
    pub fn new(node_id: &str, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            node_id: node_id.to_owned(),
            ttl,
            silent_since: Mutex::new(None),
            ever_answered: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.silent_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node this view belongs to, for log lines.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The lease TTL: how long after Redis went silent every Redis lease has expired.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    pub(crate) fn is_silent(&self) -> bool {
        self.since().is_some()
    }

    /// `"redis"` or `"postgres"`: where new leases come from now.
    pub fn backend(&self) -> &'static str {
        if self.is_silent() {
            "postgres"
        } else {
            "redis"
        }
    }

    /// How long until PostgreSQL leases may be granted (zero: now); `None` while Redis answers.
    pub(crate) fn grants_in(&self) -> Option<Duration> {
        self.since()
            .map(|since| (since + self.ttl).saturating_duration_since(Instant::now()))
    }

    /// Records what the outcome of a command that writes a new key (`SET`: a lease grant, the
    /// membership announcement, the replay check) says about Redis: only such a command tells
    /// that Redis takes lease writes again. A replica still answers reads, and a full Redis
    /// still deletes and extends keys.
    pub(crate) fn observe<T>(&self, outcome: &Result<T, RedisError>) {
        match outcome {
            Ok(_) => self.answered(),
            Err(error) => self.observe_error(error),
        }
    }

    /// Records a failed Redis command of any kind; a success of a read, renewal or release says
    /// nothing (see [`Self::observe`]).
    pub(crate) fn observe_error(&self, error: &RedisError) {
        if means_unavailable(error) {
            self.silent(error);
        }
    }

    /// True until a command first showed that Redis takes writes: until then this node has
    /// taken no lease in Redis (grants go to Redis only while it answers).
    pub(crate) fn never_answered(&self) -> bool {
        !self.ever_answered.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Redis took a write: it answers (again).
    pub fn answered(&self) {
        self.ever_answered
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut since = self.since();
        if let Some(at) = since.take() {
            log::warn!(
                "lease backend switched node={} backend=redis silent_ms={}",
                self.node_id,
                at.elapsed().as_millis()
            );
        }
    }

    fn silent(&self, error: &RedisError) {
        let mut since = self.since();
        if since.is_none() {
            *since = Some(Instant::now());
            log::warn!(
                "lease backend switched node={} backend=postgres grants_in_ms={} error={error}",
                self.node_id,
                self.ttl.as_millis()
            );
        }
    }
}
