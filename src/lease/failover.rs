//! Leases from Redis while it answers, from PostgreSQL while it is silent ([`RedisHealth`], in
//! `crate::redis_health`, says which). A lease already held is carried over to PostgreSQL on the
//! next heartbeat; a new one is granted there only a full TTL after Redis went silent, so the two
//! stores never cover one booking at once. Leases taken in PostgreSQL stay there until released.
//! docs/architecture.md ("Redis silent: leases from PostgreSQL") gives the whole argument,
//! including a node cut off from Redis alone (the activation defers to PostgreSQL leases:
//! [`crate::lease::postgres::activate`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use redis::RedisError;

use super::postgres::PgLeases;
use super::redis::{LeaseRecord, RedisLeases};
use super::store::LeaseStore;
use super::unreachable::UnreachableKeys;
use super::{LeaseError, LeaseOwner};
use crate::redis_health::RedisHealth;

/// Records what a lease command's outcome says about Redis: a grant (or a refusal because the
/// key is held) shows Redis takes writes; an unavailable store is observed as an error.
fn observe_lease<T>(health: &RedisHealth, outcome: &Result<T, LeaseError>, grant: bool) {
    match outcome {
        Ok(_) | Err(LeaseError::Held(_)) if grant => health.answered(),
        Err(LeaseError::Unavailable(error)) => {
            if let Some(error) = error.downcast_ref::<RedisError>() {
                health.observe_error(error);
            }
        }
        _ => {}
    }
}

/// A page of live leases: see [`Leases::page`].
#[derive(Debug)]
pub(crate) struct LeasePage {
    /// Live leases in all, on every page.
    pub total: usize,
    /// This page's, ordered by key (a lease that expired since it was counted is left out).
    pub records: Vec<LeaseRecord>,
    /// The key to ask for the next page after; `None` on the last page.
    pub next: Option<String>,
}

/// The lease store the manager uses: Redis and PostgreSQL behind [`RedisHealth`]. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Leases {
    inner: Arc<Inner>,
}

struct Inner {
    redis: RedisLeases,
    pg: PgLeases,
    health: Arc<RedisHealth>,
    /// Leases this node holds in PostgreSQL, key to value; every other held lease is in Redis.
    in_pg: Mutex<HashMap<String, String>>,
    /// On Redis Cluster: keys whose shard does not answer, each waiting its own TTL.
    unreachable: Option<UnreachableKeys>,
}

impl Leases {
    pub fn new(redis: RedisLeases, pg: PgLeases, health: Arc<RedisHealth>) -> Self {
        let unreachable = redis
            .is_sharded()
            .then(|| UnreachableKeys::new(health.ttl()));
        Self {
            inner: Arc::new(Inner {
                redis,
                pg,
                health,
                in_pg: Mutex::new(HashMap::new()),
                unreachable,
            }),
        }
    }

    pub fn health(&self) -> &Arc<RedisHealth> {
        &self.inner.health
    }

    pub fn postgres(&self) -> &PgLeases {
        &self.inner.pg
    }

    /// Who holds `key` now: a PostgreSQL lease first (it wins), else the Redis key.
    pub async fn holder(&self, key: &str) -> Result<Option<LeaseOwner>, LeaseError> {
        let inner = &self.inner;
        let in_pg = inner.pg.holder(key).await;
        if let Ok(Some(owner)) = in_pg {
            return Ok(Some(owner));
        }
        if inner.health.is_silent() {
            return in_pg;
        }
        let in_redis = inner.redis.holder(key).await;
        observe_lease(&inner.health, &in_redis, false);
        in_redis
    }

    /// One page of the live leases under `prefix`, from both stores, ordered by key: the first
    /// `limit` whose key sorts after `after`, and how many there are in all. Only the page's
    /// values are read from Redis (all keys are listed by SCAN, to count them).
    pub async fn page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<LeasePage, LeaseError> {
        let inner = &self.inner;
        let in_pg = inner.pg.list(prefix).await;
        let in_redis = if inner.health.is_silent() {
            Ok(Vec::new())
        } else {
            let keys = inner.redis.keys(prefix).await;
            observe_lease(&inner.health, &keys, false);
            keys
        };
        let (in_pg, in_redis) = match (in_pg, in_redis) {
            (Err(error), Err(_)) => return Err(error),
            (in_pg, in_redis) => (in_pg.unwrap_or_default(), in_redis.unwrap_or_default()),
        };
        let mut keys: std::collections::BTreeSet<&str> =
            in_redis.iter().map(String::as_str).collect();
        keys.extend(in_pg.iter().map(|r| r.key.as_str()));
        let total = keys.len();
        let wanted: Vec<&str> = match after {
            Some(after) => keys
                .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                .take(limit)
                .copied()
                .collect(),
            None => keys.iter().take(limit).copied().collect(),
        };
        let more =
            wanted.len() == limit && keys.last().is_some_and(|last| wanted.last() != Some(last));
        let pg_keys: std::collections::HashSet<&str> =
            in_pg.iter().map(|r| r.key.as_str()).collect();
        let wanted_keys: std::collections::HashSet<&str> = wanted.iter().copied().collect();
        let from_redis: Vec<String> = wanted
            .iter()
            .filter(|key| !pg_keys.contains(**key))
            .map(|key| (*key).to_owned())
            .collect();
        let mut records: Vec<LeaseRecord> = in_pg
            .iter()
            .filter(|r| wanted_keys.contains(r.key.as_str()))
            .cloned()
            .collect();
        if !from_redis.is_empty() {
            let read = inner.redis.records(from_redis).await;
            observe_lease(&inner.health, &read, false);
            records.extend(read.unwrap_or_default());
        }
        records.sort_by(|a, b| a.key.cmp(&b.key));
        let next = more
            .then(|| wanted.last().map(|key| (*key).to_owned()))
            .flatten();
        Ok(LeasePage {
            total,
            records,
            next,
        })
    }

    /// Deletes the PostgreSQL leases naming `node_id`: a previous run of this node crashed
    /// holding them. How many. Only at start-up, before this run holds any.
    pub(crate) async fn clear_stale_in_postgres(
        &self,
        prefix: &str,
        node_id: &str,
    ) -> Result<usize, LeaseError> {
        let mine: Vec<(String, String)> = self
            .inner
            .pg
            .list(prefix)
            .await?
            .into_iter()
            .filter(|r| super::owner_node(&r.value) == node_id)
            .map(|r| (r.key, r.value))
            .collect();
        self.inner.pg.release_all(&mine).await
    }

    /// Deletes the Redis leases naming `node_id`, left by a previous run of this node. How many.
    /// Safe only while this run holds no Redis lease: at start-up, or while Redis has never
    /// answered a write since ([`RedisHealth::never_answered`]; no grant goes to Redis before).
    /// Lease values do not say which run took them, so this must never run later.
    pub(crate) async fn clear_stale_in_redis(
        &self,
        prefix: &str,
        node_id: &str,
    ) -> Result<usize, LeaseError> {
        let cleared = self.inner.redis.clear_node(prefix, node_id).await;
        observe_lease(&self.inner.health, &cleared, false);
        cleared
    }
}

impl Inner {
    fn held_in_pg(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.in_pg.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Splits `leases` into those held in PostgreSQL and those held in Redis, keeping the
    /// positions of each so answers can be put back in the caller's order.
    fn split(&self, leases: Vec<(String, String)>) -> (Part, Part) {
        let in_pg = self.held_in_pg();
        let (mut pg, mut redis) = (Part::default(), Part::default());
        for (i, lease) in leases.into_iter().enumerate() {
            let part = match in_pg.get(&lease.0) == Some(&lease.1) {
                true => &mut pg,
                false => &mut redis,
            };
            part.at.push(i);
            part.leases.push(lease);
        }
        (pg, redis)
    }

    /// How long until `key` may be granted from PostgreSQL (zero: now); `None`: ask Redis.
    fn pg_grants_in(&self, key: &str, now: Instant) -> Option<Duration> {
        let whole = self.health.grants_in();
        let Some(keys) = &self.unreachable else {
            return whole;
        };
        // A cluster: silent for one shard is not silent for this key's (`lease::unreachable`);
        // until its own TTL is over, the key is asked of Redis, which may have failed over.
        if whole.is_some_and(|wait| wait.is_zero()) {
            return whole;
        }
        keys.grants_in(key, now).filter(|wait| wait.is_zero())
    }

    async fn acquire(&self, key: String, value: String, ttl: Duration) -> Result<(), LeaseError> {
        match self.pg_grants_in(&key, Instant::now()) {
            Some(wait) if wait.is_zero() => {
                self.pg.acquire(&key, &value, ttl).await?;
                if let Some(keys) = &self.unreachable {
                    keys.answered(&key);
                }
                self.held_in_pg().insert(key, value);
                return Ok(());
            }
            Some(wait) => return Err(LeaseError::NotYet(wait)),
            None => {}
        }
        let granted = self.redis.acquire(&key, &value, ttl).await;
        observe_lease(&self.health, &granted, true);
        let Some(keys) = &self.unreachable else {
            return match granted {
                Err(LeaseError::Unavailable(_)) if self.health.is_silent() => Err(
                    LeaseError::NotYet(self.health.grants_in().unwrap_or_default()),
                ),
                other => other,
            };
        };
        match granted {
            // Counted from the failure's end: a holder may have renewed until the shard stopped.
            Err(LeaseError::Unavailable(_)) => {
                Err(LeaseError::NotYet(keys.failed(&key, Instant::now())))
            }
            answered => {
                keys.answered(&key);
                answered
            }
        }
    }

    async fn renew_all(
        &self,
        leases: Vec<(String, String)>,
        ttl: Duration,
    ) -> Result<Vec<Option<bool>>, LeaseError> {
        let total = leases.len();
        let (pg, mut redis) = self.split(leases);
        let mut answers: Vec<Option<bool>> = vec![None; total];
        let mut last_error = None;
        if !redis.leases.is_empty() && !self.health.is_silent() {
            let renewed = self.redis.renew_all(&redis.leases, ttl).await;
            observe_lease(&self.health, &renewed, false);
            match renewed {
                Ok(flags) => {
                    redis.answer(&mut answers, flags);
                    redis = Part::default();
                }
                Err(error) => last_error = Some(error),
            }
        }
        if !redis.leases.is_empty() && self.health.is_silent() {
            // Carried over while still ours: see the module documentation.
            match self.pg.take(&redis.leases, ttl).await {
                Ok(flags) => {
                    let mut in_pg = self.held_in_pg();
                    for ((key, value), taken) in redis.leases.iter().zip(&flags) {
                        if *taken {
                            in_pg.insert(key.clone(), value.clone());
                        }
                    }
                    drop(in_pg);
                    let carried = flags.iter().filter(|t| **t).count();
                    log::warn!(
                        "leases carried over to postgres node={} leases={carried} refused={}",
                        self.health.node_id(),
                        flags.len() - carried
                    );
                    redis.answer(&mut answers, flags);
                }
                Err(error) => last_error = Some(error),
            }
        }
        if !pg.leases.is_empty() {
            match self.pg.renew_all(&pg.leases, ttl).await {
                Ok(flags) => pg.answer(&mut answers, flags),
                Err(error) => last_error = Some(error),
            }
        }
        match last_error {
            Some(error) if answers.iter().all(Option::is_none) => Err(error),
            _ => Ok(answers),
        }
    }

    async fn release(&self, key: String, value: String) -> Result<bool, LeaseError> {
        let in_pg = {
            let mut held = self.held_in_pg();
            match held.get(&key) == Some(&value) {
                true => held.remove(&key).is_some(),
                false => false,
            }
        };
        if in_pg {
            let released = self.pg.release(&key, &value).await;
            self.forget_in_redis(std::slice::from_ref(&(key, value)))
                .await;
            return released;
        }
        let released = self.redis.release(&key, &value).await;
        observe_lease(&self.health, &released, false);
        released
    }

    async fn release_all(&self, leases: Vec<(String, String)>) -> Result<usize, LeaseError> {
        let (pg, redis) = self.split(leases);
        {
            let mut held = self.held_in_pg();
            for (key, _) in &pg.leases {
                held.remove(key);
            }
        }
        let from_pg = match pg.leases.is_empty() {
            true => Ok(0),
            false => self.pg.release_all(&pg.leases).await,
        };
        self.forget_in_redis(&pg.leases).await;
        // A silent Redis is not asked: its keys expire by TTL.
        let from_redis = match redis.leases.is_empty() || self.health.is_silent() {
            true => Ok(0),
            false => {
                let released = self.redis.release_all(&redis.leases).await;
                observe_lease(&self.health, &released, false);
                released
            }
        };
        match (from_pg, from_redis) {
            (Err(error), Err(_)) => Err(error),
            (pg, redis) => Ok(pg.unwrap_or(0) + redis.unwrap_or(0)),
        }
    }
}

impl Inner {
    /// Deletes the Redis keys that leases carried over to PostgreSQL left behind (they carry the
    /// same value), so that this node's next activation of those bookings does not wait for its
    /// own old key to expire. Check-and-delete, so a key someone else took since is left alone;
    /// best effort, as a key left behind still expires by TTL.
    async fn forget_in_redis(&self, leases: &[(String, String)]) {
        if leases.is_empty() || self.health.is_silent() {
            return;
        }
        let deleted = self.redis.release_all(leases).await;
        observe_lease(&self.health, &deleted, false);
        if let Err(error) = deleted {
            log::debug!(
                "stale redis keys of carried-over leases left to expire node={} error={error}",
                self.health.node_id()
            );
        }
    }
}

/// Some of a batch of leases, with their positions in the batch.
#[derive(Default)]
struct Part {
    at: Vec<usize>,
    leases: Vec<(String, String)>,
}

impl Part {
    fn answer(&self, answers: &mut [Option<bool>], flags: Vec<bool>) {
        for (i, flag) in self.at.iter().zip(flags) {
            if let Some(slot) = answers.get_mut(*i) {
                *slot = Some(flag);
            }
        }
    }
}

impl LeaseStore for Leases {
    fn acquire(
        &self,
        key: String,
        value: String,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), LeaseError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.acquire(key, value, ttl).await })
    }

    fn renew_all(
        &self,
        leases: Vec<(String, String)>,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<Vec<Option<bool>>, LeaseError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.renew_all(leases, ttl).await })
    }

    fn release(&self, key: String, value: String) -> BoxFuture<'static, Result<bool, LeaseError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.release(key, value).await })
    }

    fn release_all(
        &self,
        leases: Vec<(String, String)>,
    ) -> BoxFuture<'static, Result<usize, LeaseError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.release_all(leases).await })
    }
}
