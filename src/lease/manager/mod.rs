//! The per-node lease manager. One actor holds every lease this node owns, renews them all on one
//! heartbeat (a single pipelined round trip, never a timer per lease) and tells the holder with
//! [`LeaseLost`] as soon as a renewal fails or a lease's local deadline passes unconfirmed, so the
//! booking actor stops before another node could acquire.
//!
//! The manager's messages and the actor are here; the deadline it shares with each holder is in
//! `deadline.rs`, its counters in `metrics.rs` (both re-exported: paths stay `lease::manager::…`).

mod deadline;
mod metrics;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

pub(crate) use deadline::Deadline;
pub(crate) use metrics::{LeaseMetrics, Percentiles};

use super::events::{LeaseChange, LeaseEvents, SeenHeld};
use super::store::LeaseStore;
use super::{lease_value, LeaseError};
use crate::config::LeaseSettings;
use crate::telemetry;

/// Asks for the lease `key` on behalf of `holder`, which is told if the lease is lost later.
#[derive(Message)]
#[rtype(result = "Result<Grant, LeaseError>")]
pub(crate) struct Acquire {
    pub key: String,
    pub holder: Recipient<LeaseLost>,
}

/// Gives a lease back: renewal stops at once, then the key is deleted if it is still ours.
/// Answers `true` if it was, `false` if the lease had been lost (or given back) before.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Release {
    pub key: Arc<str>,
    pub value: Arc<str>,
}

/// Sent to a holder whose lease could not be renewed in time. The holder must stop writing.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub(crate) struct LeaseLost {
    /// Which lease: a booking actor holds one, so only the manager's tests read it.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "a booking actor holds one lease")
    )]
    pub key: Arc<str>,
}

/// A granted lease. Its key and value are the very strings the manager holds (one allocation
/// each per lease, however many hold them): a node may hold a lease per live booking.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub key: Arc<str>,
    /// `<node_id>:<uuid>`: proves ownership to the renew and release scripts.
    pub value: Arc<str>,
    /// Until when the lease is surely ours; the manager moves it on each confirmed renewal.
    pub deadline: Deadline,
}

struct Held {
    value: Arc<str>,
    /// Counted from when the last successful SET or renewal was *sent*, minus the drift margin.
    valid_until: Deadline,
    holder: Recipient<LeaseLost>,
}

pub(crate) struct LeaseManager {
    node_id: String,
    store: Arc<dyn LeaseStore>,
    settings: LeaseSettings,
    held: HashMap<Arc<str>, Held>,
    metrics: Arc<LeaseMetrics>,
    /// True while a heartbeat's renewal is in flight, so a slow Redis never stacks heartbeats.
    renewing: bool,
    /// Set by [`ReleaseAll`] (shutdown): no lease is granted any more.
    closing: bool,
    /// Where grants, refusals and losses are told (the ops stream), if anywhere.
    events: Option<LeaseEvents>,
    seen_held: SeenHeld,
}

impl LeaseManager {
    pub fn new(
        node_id: String,
        store: Arc<dyn LeaseStore>,
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
            closing: false,
            events: None,
            seen_held: SeenHeld::default(),
        }
    }

    /// Tells `events` of every grant, refusal and loss.
    pub fn telling(mut self, events: LeaseEvents) -> Self {
        self.events = Some(events);
        self
    }

    fn tell(&self, change: LeaseChange, key: &Arc<str>, other: Option<String>) {
        if let Some(events) = &self.events {
            events.tell(change, key, other);
        }
    }

    /// Check-and-delete in the store, counted and logged; deletes only our own value. `true` if
    /// the key still carried it.
    fn delete(
        &self,
        key: Arc<str>,
        value: Arc<str>,
    ) -> impl std::future::Future<Output = bool> + 'static {
        let release = self.store.release(key.to_string(), value.to_string());
        let metrics = self.metrics.clone();
        let node_id = self.node_id.clone();
        async move {
            match release.await {
                Ok(true) => {
                    metrics.released.inc();
                    true
                }
                Ok(false) => false,
                Err(_) => {
                    telemetry::lease_event(&node_id, &key, "release_failed", "err:unavailable");
                    false
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
            .set(i64::try_from(self.held.len()).unwrap_or(i64::MAX));
    }

    /// Drops `key` and tells its holder. `expired`: the deadline passed without a renewal answer.
    /// The key is still deleted if it carries our value (a renewal that failed on a timeout may
    /// have left it), so the booking does not wait out the TTL against its own old lease.
    fn lose(&mut self, key: &str, expired: bool, ctx: &mut Context<Self>) {
        if let Some((key, held)) = self.held.remove_entry(key) {
            held.valid_until.expire();
            ctx.spawn(
                self.delete(key.clone(), held.value.clone())
                    .into_actor(self)
                    .map(|_, _, _| ()),
            );
            self.metrics.lost.inc();
            if expired {
                self.metrics.expired.inc();
            }
            telemetry::lease_event(
                &self.node_id,
                &key,
                "lease_lost",
                if expired {
                    "err:expired"
                } else {
                    "err:not_ours"
                },
            );
            self.tell(LeaseChange::Lost, &key, None);
            // A notice, not a request: if the holder already stopped there is nobody to tell.
            held.holder.do_send(LeaseLost { key });
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
        let keys: Vec<Arc<str>> = self
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
        self.lose_where(true, ctx, |held| held.valid_until.get() <= now);
        // A holder that is gone (stopped without releasing) must not keep a lease alive.
        let orphans: Vec<(Arc<str>, Arc<str>)> = self
            .held
            .iter()
            .filter(|(_, h)| !h.holder.connected())
            .map(|(k, h)| (k.clone(), h.value.clone()))
            .collect();
        for (key, value) in orphans {
            self.held.remove(&key);
            ctx.spawn(self.delete(key, value).into_actor(self).map(|_, _, _| ()));
        }
        self.publish_held();
        if self.renewing {
            return;
        }
        let sent_at = now;
        let batch: Vec<(Arc<str>, Arc<str>)> = self
            .held
            .iter()
            .map(|(k, h)| (k.clone(), h.value.clone()))
            .collect();
        if batch.is_empty() {
            return;
        }
        self.renewing = true;
        let renew = self.store.renew_all(
            batch
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            self.settings.ttl(),
        );
        let renewal = async move { (batch, renew.await) };
        ctx.spawn(renewal.into_actor(self).map(move |(batch, result), act, ctx| {
            act.renewing = false;
            let handled = sent_at.elapsed();
            // Whatever would expire before the next heartbeat without a confirmed renewal is
            // lost now, not later.
            let horizon = Instant::now() + act.settings.renew_every();
            match result {
                Ok(flags) => {
                    let (mut renewed, mut unanswered) = (0, 0);
                    for ((key, value), outcome) in batch.into_iter().zip(flags) {
                        // Released or lost meanwhile (or re-acquired with a new value). A renewal
                        // that carried the lease over to PostgreSQL may have written it back just
                        // now: delete it again (check-and-delete: only this value goes).
                        let Some(held) = act.held.get(&key).filter(|h| h.value == value) else {
                            if outcome == Some(true) {
                                ctx.spawn(act.delete(key, value).into_actor(act).map(|_, _, _| ()));
                            }
                            continue;
                        };
                        match outcome {
                            // Confirmed only after the deadline passed: the lease may have been
                            // free for a moment, and taken. It is lost, not extended.
                            Some(true) if held.valid_until.passed() => {
                                act.metrics.renewal_failures.inc();
                                act.lose(&key, true, ctx);
                            }
                            Some(true) => {
                                renewed += 1;
                                held.valid_until.set(act.deadline(sent_at));
                            }
                            Some(false) => {
                                act.metrics.renewal_failures.inc();
                                act.lose(&key, false, ctx);
                            }
                            None => {
                                unanswered += 1;
                                if held.valid_until.get() <= horizon {
                                    act.lose(&key, true, ctx);
                                }
                            }
                        }
                    }
                    act.metrics.renewed.inc_by(renewed);
                    if unanswered > 0 {
                        act.metrics.renewal_failures.inc();
                    }
                    log::debug!(
                        "leases renewed node={} leases={renewed} unanswered={unanswered} req=- outcome=ok handled_us={}",
                        act.node_id,
                        handled.as_micros()
                    );
                }
                Err(error) => {
                    act.metrics.renewal_failures.inc();
                    log::warn!(
                        "lease renewal failed node={} leases={} req=- outcome=err:unavailable handled_us={} error={error}",
                        act.node_id,
                        act.held.len(),
                        handled.as_micros()
                    );
                    act.lose_where(true, ctx, |held| held.valid_until.get() <= horizon);
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
        if self.closing {
            return Box::pin(fut::ready(Err(LeaseError::ManagerGone)));
        }
        let value: Arc<str> = lease_value(&self.node_id).into();
        let sent_at = Instant::now();
        let key: Arc<str> = msg.key.into();
        let attempt = self
            .store
            .acquire(key.to_string(), value.to_string(), self.settings.ttl());
        Box::pin(attempt.into_actor(self).map(move |result, act, ctx| {
            let valid_until = Deadline::new(act.deadline(sent_at));
            if act.closing {
                // Shutdown began while the SET was in flight: give it straight back.
                if result.is_ok() {
                    ctx.spawn(act.delete(key, value).into_actor(act).map(|_, _, _| ()));
                }
                return Err(LeaseError::ManagerGone);
            }
            match &result {
                Ok(()) => {
                    act.metrics.acquired.inc();
                    act.metrics.record_acquisition(sent_at.elapsed());
                    act.held.insert(
                        key.clone(),
                        Held {
                            value: value.clone(),
                            valid_until: valid_until.clone(),
                            holder: msg.holder,
                        },
                    );
                    act.publish_held();
                    let (change, from) = act.seen_held.granted(&key, Instant::now());
                    act.tell(change, &key, from);
                }
                Err(LeaseError::Held(owner)) => {
                    act.metrics.contested.inc();
                    if owner.node != act.node_id {
                        act.seen_held
                            .held(&key, &owner.node, owner.remaining, Instant::now());
                    }
                    act.tell(LeaseChange::Contended, &key, Some(owner.node.clone()));
                }
                // Redis went silent (on this very SET, maybe, whose reply then never came: if
                // it landed, the key expires by TTL, since Redis cannot be asked to delete it).
                Err(LeaseError::NotYet(_)) => {}
                Err(_) => {
                    act.metrics.timeouts.inc();
                    // The SET may have landed with its reply lost: delete it if it carries our
                    // value, or this node would wait a TTL for a lease nobody here holds.
                    ctx.spawn(
                        act.delete(key.clone(), value.clone())
                            .into_actor(act)
                            .map(|_, _, _| ()),
                    );
                }
            }
            result.map(|()| Grant {
                key,
                value,
                deadline: valid_until,
            })
        }))
    }
}

impl Handler<Release> for LeaseManager {
    // Not atomic: releases proceed concurrently. The reply comes after Redis answered, so a
    // holder that `send`s (rather than `do_send`s) knows the key is gone.
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, msg: Release, _ctx: &mut Self::Context) -> Self::Result {
        // Stop renewing first, so a release can never be undone by a renewal in flight. A lease
        // that is no longer held was lost (and its key deleted if still ours) or already released.
        if self.held.get(&msg.key).is_none_or(|h| h.value != msg.value) {
            return Box::pin(fut::ready(false));
        }
        if let Some(held) = self.held.remove(&msg.key) {
            held.valid_until.expire();
        }
        self.publish_held();
        Box::pin(self.delete(msg.key, msg.value).into_actor(self))
    }
}

/// Shutdown: gives back every held lease at once. Renewal stops first; every holder is told its
/// lease is gone (so it writes nothing more), then the keys still carrying our values are
/// deleted in pipelined batches. Answers how many were deleted.
#[derive(Message)]
#[rtype(result = "Result<usize, LeaseError>")]
pub(crate) struct ReleaseAll;

impl Handler<ReleaseAll> for LeaseManager {
    type Result = ResponseFuture<Result<usize, LeaseError>>;

    fn handle(&mut self, _msg: ReleaseAll, _ctx: &mut Self::Context) -> Self::Result {
        self.closing = true;
        let leases: Vec<(String, String)> = self
            .held
            .drain()
            .map(|(key, held)| {
                held.valid_until.expire();
                let lease = (key.to_string(), held.value.to_string());
                held.holder.do_send(LeaseLost { key });
                lease
            })
            .collect();
        self.publish_held();
        let release = self.store.release_all(leases);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let released = release.await?;
            metrics.released.inc_by(released as u64);
            Ok(released)
        })
    }
}
