//! The per-node lease manager. One actor holds every lease this node owns, renews them all on one
//! heartbeat (a single pipelined round trip, never a timer per lease) and tells the holder with
//! [`LeaseLost`] as soon as a renewal fails or a lease's local deadline passes unconfirmed, so the
//! booking actor stops before another node could acquire.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::redis::RedisLeases;
use super::{lease_value, LeaseError};
use crate::config::LeaseSettings;
use crate::telemetry;

/// Asks for the lease `key` on behalf of `holder`, which is told if the lease is lost later.
#[derive(Message)]
#[rtype(result = "Result<Grant, LeaseError>")]
pub struct Acquire {
    pub key: String,
    pub holder: Recipient<LeaseLost>,
}

/// Gives a lease back: renewal stops at once, then the key is deleted if it is still ours.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release {
    pub key: String,
    pub value: String,
}

/// Sent to a holder whose lease could not be renewed in time. The holder must stop writing.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct LeaseLost {
    pub key: String,
}

/// A granted lease.
#[derive(Debug, Clone)]
pub struct Grant {
    pub key: String,
    /// `<node_id>:<uuid>`: proves ownership to the renew and release scripts.
    pub value: String,
}

struct Held {
    value: String,
    /// Counted from when the last successful SET or renewal was *sent*, minus the drift margin.
    valid_until: Instant,
    holder: Recipient<LeaseLost>,
}

/// Lease counters and acquisition latencies, shared with the stats endpoint.
#[derive(Default)]
pub struct LeaseMetrics {
    pub acquired: AtomicU64,
    pub released: AtomicU64,
    pub expired: AtomicU64,
    pub contested: AtomicU64,
    pub renewed: AtomicU64,
    pub renewal_failures: AtomicU64,
    pub lost: AtomicU64,
    pub timeouts: AtomicU64,
    acquisition_us: Mutex<VecDeque<u64>>,
    held: AtomicU64,
}

/// A point-in-time copy of [`LeaseMetrics`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct MetricsSnapshot {
    pub acquired: u64,
    pub released: u64,
    pub expired: u64,
    pub contested: u64,
    pub renewed: u64,
    pub renewal_failures: u64,
    pub lost: u64,
    pub timeouts: u64,
    pub held: u64,
    pub acquisition_ms: Percentiles,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl LeaseMetrics {
    /// Latest acquisition latencies kept for the percentiles.
    const WINDOW: usize = 4096;

    fn record_acquisition(&self, took: Duration) {
        let mut samples = self
            .acquisition_us
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if samples.len() == Self::WINDOW {
            samples.pop_front();
        }
        samples.push_back(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut samples: Vec<u64> = self
            .acquisition_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(i).map_or(0.0, |us| *us as f64 / 1000.0)
        };
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            acquired: load(&self.acquired),
            released: load(&self.released),
            expired: load(&self.expired),
            contested: load(&self.contested),
            renewed: load(&self.renewed),
            renewal_failures: load(&self.renewal_failures),
            lost: load(&self.lost),
            timeouts: load(&self.timeouts),
            held: load(&self.held),
            acquisition_ms: Percentiles {
                p50: at(0.5),
                p99: at(0.99),
                max: at(1.0),
            },
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

pub struct LeaseManager {
    node_id: String,
    store: RedisLeases,
    settings: LeaseSettings,
    held: HashMap<String, Held>,
    metrics: Arc<LeaseMetrics>,
    /// True while a heartbeat's renewal is in flight, so a slow Redis never stacks heartbeats.
    renewing: bool,
}

impl LeaseManager {
    pub fn new(
        node_id: String,
        store: RedisLeases,
        settings: LeaseSettings,
        metrics: Arc<LeaseMetrics>,
    ) -> Self {
        Self {
            node_id,
            store,
            settings,
            held: HashMap::new(),
            metrics,
            renewing: false,
        }
    }

    /// Check-and-delete in Redis, counted and logged; the script deletes only our own value.
    fn delete(
        &self,
        key: String,
        value: String,
    ) -> impl std::future::Future<Output = ()> + 'static {
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let node_id = self.node_id.clone();
        async move {
            match store.release(&key, &value).await {
                Ok(true) => bump(&metrics.released, 1),
                Ok(false) => {}
                Err(_) => {
                    telemetry::lease_event(&node_id, &key, "release_failed", "err:unavailable")
                }
            }
        }
    }

    fn deadline(&self, sent_at: Instant) -> Instant {
        sent_at + self.settings.ttl() - self.settings.drift()
    }

    fn publish_held(&self) {
        self.metrics
            .held
            .store(self.held.len() as u64, Ordering::Relaxed);
    }

    /// Drops `key` and tells its holder. `expired`: the deadline passed without a renewal answer.
    /// The key is still deleted if it carries our value (a renewal that failed on a timeout may
    /// have left it), so the booking does not wait out the TTL against its own old lease.
    fn lose(&mut self, key: &str, expired: bool, ctx: &mut Context<Self>) {
        if let Some(held) = self.held.remove(key) {
            ctx.spawn(
                self.delete(key.to_owned(), held.value.clone())
                    .into_actor(self),
            );
            bump(&self.metrics.lost, 1);
            if expired {
                bump(&self.metrics.expired, 1);
            }
            telemetry::lease_event(
                &self.node_id,
                key,
                "lease_lost",
                if expired {
                    "err:expired"
                } else {
                    "err:not_ours"
                },
            );
            // A notice, not a request: if the holder already stopped there is nobody to tell.
            held.holder.do_send(LeaseLost {
                key: key.to_owned(),
            });
        }
        self.publish_held();
    }

    /// Drops every lease matching `doomed`, telling its holder.
    fn lose_where(
        &mut self,
        expired: bool,
        ctx: &mut Context<Self>,
        doomed: impl Fn(&Held) -> bool,
    ) {
        let keys: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| doomed(h))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.lose(&key, expired, ctx);
        }
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        // Checked even while a slow renewal is in flight: an unconfirmed lease past its deadline
        // is lost now, before another node could acquire it.
        self.lose_where(true, ctx, |held| held.valid_until <= now);
        // A holder that is gone (stopped without releasing) must not keep a lease alive.
        let orphans: Vec<(String, String)> = self
            .held
            .iter()
            .filter(|(_, h)| !h.holder.connected())
            .map(|(k, h)| (k.clone(), h.value.clone()))
            .collect();
        for (key, value) in orphans {
            self.held.remove(&key);
            ctx.spawn(self.delete(key, value).into_actor(self));
        }
        self.publish_held();
        if self.renewing {
            return;
        }
        let sent_at = now;
        let batch: Vec<(String, String)> = self
            .held
            .iter()
            .map(|(k, h)| (k.clone(), h.value.clone()))
            .collect();
        if batch.is_empty() {
            return;
        }
        self.renewing = true;
        let store = self.store.clone();
        let ttl = self.settings.ttl();
        let renewal = async move {
            let result = store.renew_all(&batch, ttl).await;
            (batch, result)
        };
        ctx.spawn(renewal.into_actor(self).map(move |(batch, result), act, ctx| {
            act.renewing = false;
            let handled = sent_at.elapsed();
            match result {
                Ok(flags) => {
                    let mut renewed = 0;
                    for ((key, value), ok) in batch.into_iter().zip(flags) {
                        // Released meanwhile, or re-acquired with a new value: not this renewal's business.
                        let current = act.held.get(&key).is_some_and(|h| h.value == value);
                        if !current {
                            continue;
                        }
                        if ok {
                            renewed += 1;
                            let deadline = act.deadline(sent_at);
                            if let Some(held) = act.held.get_mut(&key) {
                                held.valid_until = deadline;
                            }
                        } else {
                            bump(&act.metrics.renewal_failures, 1);
                            act.lose(&key, false, ctx);
                        }
                    }
                    bump(&act.metrics.renewed, renewed);
                    log::debug!(
                        "leases renewed node={} leases={renewed} req=- outcome=ok handled_us={}",
                        act.node_id,
                        handled.as_micros()
                    );
                }
                Err(error) => {
                    bump(&act.metrics.renewal_failures, 1);
                    log::warn!(
                        "lease renewal failed node={} leases={} req=- outcome=err:unavailable handled_us={} error={error}",
                        act.node_id,
                        act.held.len(),
                        handled.as_micros()
                    );
                    // Whatever would expire before the next heartbeat is lost now, not later.
                    let horizon = Instant::now() + act.settings.renew_every();
                    act.lose_where(true, ctx, |held| held.valid_until <= horizon);
                }
            }
        }));
    }
}

impl Actor for LeaseManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.settings.renew_every(), Self::heartbeat);
    }
}

impl Supervised for LeaseManager {
    /// A restarted manager cannot vouch for any lease it held: their holders must stop.
    fn restarting(&mut self, ctx: &mut Self::Context) {
        self.lose_where(false, ctx, |_| true);
        self.renewing = false;
    }
}

impl Handler<Acquire> for LeaseManager {
    // Not atomic: acquisitions for different bookings proceed concurrently; the map is only
    // touched in the completion closure, on the actor's own thread.
    type Result = ResponseActFuture<Self, Result<Grant, LeaseError>>;

    fn handle(&mut self, msg: Acquire, _ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let value = lease_value(&self.node_id);
        let ttl = self.settings.ttl();
        let sent_at = Instant::now();
        let key = msg.key;
        let attempt = {
            let (key, value) = (key.clone(), value.clone());
            async move { store.acquire(&key, &value, ttl).await }
        };
        Box::pin(attempt.into_actor(self).map(move |result, act, _ctx| {
            match &result {
                Ok(()) => {
                    bump(&act.metrics.acquired, 1);
                    act.metrics.record_acquisition(sent_at.elapsed());
                    let valid_until = act.deadline(sent_at);
                    act.held.insert(
                        key.clone(),
                        Held {
                            value: value.clone(),
                            valid_until,
                            holder: msg.holder,
                        },
                    );
                    act.publish_held();
                }
                Err(LeaseError::Held { .. }) => bump(&act.metrics.contested, 1),
                Err(_) => bump(&act.metrics.timeouts, 1),
            }
            result.map(|()| Grant { key, value })
        }))
    }
}

impl Handler<Release> for LeaseManager {
    // Not atomic: releases proceed concurrently. The reply comes after Redis answered, so a
    // holder that `send`s (rather than `do_send`s) knows the key is gone.
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Release, _ctx: &mut Self::Context) -> Self::Result {
        // Stop renewing first, so a release can never be undone by a renewal in flight. A lease
        // that is no longer held was lost (and its key deleted if still ours) or already released.
        if self.held.get(&msg.key).is_none_or(|h| h.value != msg.value) {
            return Box::pin(fut::ready(()));
        }
        self.held.remove(&msg.key);
        self.publish_held();
        Box::pin(self.delete(msg.key, msg.value).into_actor(self))
    }
}

/// Releases every held lease (shutdown); answers with how many were released.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ReleaseAll;

impl Handler<ReleaseAll> for LeaseManager {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _msg: ReleaseAll, _ctx: &mut Self::Context) -> Self::Result {
        let held: Vec<(String, String)> = self
            .held
            .drain()
            .map(|(key, held)| (key, held.value))
            .collect();
        self.publish_held();
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let releases = held.iter().map(|(key, value)| store.release(key, value));
            let released = futures::future::join_all(releases)
                .await
                .into_iter()
                .filter(|r| matches!(r, Ok(true)))
                .count();
            bump(&metrics.released, released as u64);
            released
        })
    }
}
