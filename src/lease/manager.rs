//! The per-node lease manager. One actor holds every lease this node owns, renews them all on one
//! heartbeat (a single pipelined round trip, never a timer per lease) and tells the holder with
//! [`LeaseLost`] as soon as a renewal fails or a lease's local deadline passes unconfirmed, so the
//! booking actor stops before another node could acquire.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::store::LeaseStore;
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
/// Answers `true` if it was, `false` if the lease had been lost (or given back) before.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Release {
    pub key: Arc<str>,
    pub value: Arc<str>,
}

/// Sent to a holder whose lease could not be renewed in time. The holder must stop writing.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct LeaseLost {
    pub key: Arc<str>,
}

/// A granted lease. Its key and value are the very strings the manager holds (one allocation
/// each per lease, however many hold them): a node may hold a lease per live booking.
#[derive(Debug, Clone)]
pub struct Grant {
    pub key: Arc<str>,
    /// `<node_id>:<uuid>`: proves ownership to the renew and release scripts.
    pub value: Arc<str>,
    /// Until when the lease is surely ours; the manager moves it on each confirmed renewal.
    pub deadline: Deadline,
}

/// A lease's local deadline, shared by the manager, which extends it on every confirmed renewal,
/// and the holder, which checks it before every write. The check matters after a process pause:
/// a woken holder can be handed a message before the manager's heartbeat has run and found the
/// lease expired; the holder then steps down on its own instead of acting on stale ownership.
#[derive(Debug, Clone)]
pub struct Deadline(Arc<AtomicU64>);

impl Deadline {
    fn base() -> Instant {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(Instant::now)
    }

    fn new(at: Instant) -> Self {
        let deadline = Self(Arc::new(AtomicU64::new(0)));
        deadline.set(at);
        deadline
    }

    fn set(&self, at: Instant) {
        let micros = at.saturating_duration_since(Self::base()).as_micros();
        self.0
            .store(u64::try_from(micros).unwrap_or(u64::MAX), Ordering::Release);
    }

    pub fn get(&self) -> Instant {
        Self::base() + Duration::from_micros(self.0.load(Ordering::Acquire))
    }

    /// True once the lease may have expired in the store.
    pub fn passed(&self) -> bool {
        self.get() <= Instant::now()
    }

    /// The lease is gone (lost or given back): any check from now on fails, even one made by a
    /// holder that has not yet read its `LeaseLost`.
    fn expire(&self) {
        self.0.store(0, Ordering::Release);
    }
}

struct Held {
    value: Arc<str>,
    /// Counted from when the last successful SET or renewal was *sent*, minus the drift margin.
    valid_until: Deadline,
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

#[derive(Debug, Clone, Copy, Default, serde::Serialize, utoipa::ToSchema)]
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
    store: Arc<dyn LeaseStore>,
    settings: LeaseSettings,
    held: HashMap<Arc<str>, Held>,
    metrics: Arc<LeaseMetrics>,
    /// True while a heartbeat's renewal is in flight, so a slow Redis never stacks heartbeats.
    renewing: bool,
    /// Set by [`ReleaseAll`] (shutdown): no lease is granted any more.
    closing: bool,
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
                    bump(&metrics.released, 1);
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
            .store(self.held.len() as u64, Ordering::Relaxed);
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
            bump(&self.metrics.lost, 1);
            if expired {
                bump(&self.metrics.expired, 1);
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
                                bump(&act.metrics.renewal_failures, 1);
                                act.lose(&key, true, ctx);
                            }
                            Some(true) => {
                                renewed += 1;
                                held.valid_until.set(act.deadline(sent_at));
                            }
                            Some(false) => {
                                bump(&act.metrics.renewal_failures, 1);
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
                    bump(&act.metrics.renewed, renewed);
                    if unanswered > 0 {
                        bump(&act.metrics.renewal_failures, 1);
                    }
                    log::debug!(
                        "leases renewed node={} leases={renewed} unanswered={unanswered} req=- outcome=ok handled_us={}",
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
                    bump(&act.metrics.acquired, 1);
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
                }
                Err(LeaseError::Held(_)) => bump(&act.metrics.contested, 1),
                // Redis went silent (on this very SET, maybe, whose reply then never came: if
                // it landed, the key expires by TTL, since Redis cannot be asked to delete it).
                Err(LeaseError::NotYet(_)) => {}
                Err(_) => {
                    bump(&act.metrics.timeouts, 1);
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
pub struct ReleaseAll;

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
            bump(&metrics.released, released as u64);
            Ok(released)
        })
    }
}

#[cfg(test)]
mod tests {
    //! The manager against an in-memory lease store that can be told to fail or be robbed.

    use std::sync::atomic::AtomicBool;

    use futures::future::{ready, BoxFuture};

    use super::*;

    #[derive(Default)]
    struct MemoryLeases {
        keys: Mutex<HashMap<String, String>>,
        unreachable: AtomicBool,
        /// Keys a renewal cannot say anything about (their half of the store is silent).
        unanswered: Mutex<std::collections::HashSet<String>>,

        /// Every key a renewal extended, in order.
        renewals: Mutex<Vec<String>>,
    }

    impl MemoryLeases {
        fn down() -> LeaseError {
            LeaseError::unavailable(anyhow::anyhow!("in-memory store told to fail"))
        }

        fn steal(&self, key: &str) {
            self.keys
                .lock()
                .unwrap()
                .insert(key.to_owned(), "thief:1".to_owned());
        }

        fn renewals_of(&self, key: &str) -> usize {
            self.renewals
                .lock()
                .unwrap()
                .iter()
                .filter(|k| *k == key)
                .count()
        }
    }

    impl LeaseStore for MemoryLeases {
        fn acquire(
            &self,
            key: String,
            value: String,
            _ttl: Duration,
        ) -> BoxFuture<'static, Result<(), LeaseError>> {
            if self.unreachable.load(Ordering::SeqCst) {
                return Box::pin(ready(Err(Self::down())));
            }
            let mut keys = self.keys.lock().unwrap();
            let result = match keys.get(&key) {
                Some(holder) if *holder != value => Err(LeaseError::Held(
                    super::super::LeaseOwner::from_value(holder.clone(), Duration::from_secs(1)),
                )),
                _ => {
                    keys.insert(key, value);
                    Ok(())
                }
            };
            Box::pin(ready(result))
        }

        fn renew_all(
            &self,
            leases: Vec<(String, String)>,
            _ttl: Duration,
        ) -> BoxFuture<'static, Result<Vec<Option<bool>>, LeaseError>> {
            if self.unreachable.load(Ordering::SeqCst) {
                return Box::pin(ready(Err(Self::down())));
            }
            let keys = self.keys.lock().unwrap();
            let mut renewals = self.renewals.lock().unwrap();
            let unanswered = self.unanswered.lock().unwrap();
            let flags = leases
                .into_iter()
                .map(|(key, value)| {
                    if unanswered.contains(&key) {
                        return None;
                    }
                    let ours = keys.get(&key) == Some(&value);
                    if ours {
                        renewals.push(key);
                    }
                    Some(ours)
                })
                .collect();
            Box::pin(ready(Ok(flags)))
        }

        fn release(
            &self,
            key: String,
            value: String,
        ) -> BoxFuture<'static, Result<bool, LeaseError>> {
            let mut keys = self.keys.lock().unwrap();
            let ours = keys.get(&key) == Some(&value);
            if ours {
                keys.remove(&key);
            }
            Box::pin(ready(Ok(ours)))
        }

        fn release_all(
            &self,
            leases: Vec<(String, String)>,
        ) -> BoxFuture<'static, Result<usize, LeaseError>> {
            if self.unreachable.load(Ordering::SeqCst) {
                return Box::pin(ready(Err(Self::down())));
            }
            let mut keys = self.keys.lock().unwrap();
            let mut released = 0;
            for (key, value) in leases {
                if keys.get(&key) == Some(&value) {
                    keys.remove(&key);
                    released += 1;
                }
            }
            Box::pin(ready(Ok(released)))
        }
    }

    /// Stands in for a booking actor: records `LeaseLost` and stops, as a booking actor does.
    struct Holder {
        lost: Arc<Mutex<Vec<(String, Instant)>>>,
    }

    impl Actor for Holder {
        type Context = Context<Self>;
    }

    impl Handler<LeaseLost> for Holder {
        type Result = ();

        fn handle(&mut self, msg: LeaseLost, ctx: &mut Self::Context) {
            self.lost
                .lock()
                .unwrap()
                .push((msg.key.to_string(), Instant::now()));
            ctx.stop();
        }
    }

    // A wide drift margin (it must stay under TTL / 3) leaves room for a loaded test machine
    // between the manager's local deadline and the store's expiry.
    const TTL: Duration = Duration::from_millis(3000);
    const DRIFT: Duration = Duration::from_millis(900);
    const RENEW_EVERY: Duration = Duration::from_millis(100);

    struct Setup {
        store: Arc<MemoryLeases>,
        manager: Addr<LeaseManager>,
        holder: Addr<Holder>,
        lost: Arc<Mutex<Vec<(String, Instant)>>>,
    }

    fn setup() -> Setup {
        let store = Arc::new(MemoryLeases::default());
        let settings = LeaseSettings {
            ttl_ms: TTL.as_millis() as u64,
            renew_every_ms: RENEW_EVERY.as_millis() as u64,
            drift_ms: DRIFT.as_millis() as u64,
        };
        let manager = LeaseManager::new(
            "node-a".to_owned(),
            store.clone(),
            settings,
            Arc::new(LeaseMetrics::default()),
        )
        .start();
        let lost = Arc::new(Mutex::new(Vec::new()));
        let holder = Holder { lost: lost.clone() }.start();
        Setup {
            store,
            manager,
            holder,
            lost,
        }
    }

    async fn acquire(s: &Setup, key: &str) -> (Grant, Instant) {
        let at = Instant::now();
        let grant = s
            .manager
            .send(Acquire {
                key: key.to_owned(),
                holder: s.holder.clone().recipient(),
            })
            .await
            .unwrap()
            .unwrap();
        (grant, at)
    }

    async fn release(s: &Setup, grant: &Grant) -> bool {
        s.manager
            .send(Release {
                key: grant.key.clone(),
                value: grant.value.clone(),
            })
            .await
            .unwrap()
    }

    /// Waits until `done` holds, for at most twice the TTL.
    async fn until(mut done: impl FnMut() -> bool) -> bool {
        for _ in 0..(TTL * 2).as_millis() / 10 {
            if done() {
                return true;
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        done()
    }

    #[actix_rt::test]
    async fn a_renewal_the_store_refuses_stops_the_holder_at_once() {
        let s = setup();
        let (grant, _) = acquire(&s, "lock:booking:1").await;

        s.store.steal(&grant.key);

        assert!(until(|| !s.lost.lock().unwrap().is_empty()).await);
        assert_eq!(s.lost.lock().unwrap()[0].0, "lock:booking:1");
        assert!(until(|| !s.holder.connected()).await, "the holder stopped");
    }

    #[actix_rt::test]
    async fn an_unreachable_store_stops_the_holder_before_its_lease_could_expire() {
        let s = setup();
        let (_, acquired_at) = acquire(&s, "lock:booking:2").await;

        s.store.unreachable.store(true, Ordering::SeqCst);

        assert!(until(|| !s.lost.lock().unwrap().is_empty()).await);
        let told_at = s.lost.lock().unwrap()[0].1;
        // Renewals fail from the first heartbeat on. The manager keeps the lease while its local
        // deadline (TTL minus drift, from when the SET was sent) is more than a heartbeat away,
        // then tells the holder: before the store could let the key expire and another node
        // take it, not whenever the store answers again.
        let told_after = told_at - acquired_at;
        assert!(told_after < TTL, "told {told_after:?} after acquiring");
        assert!(
            told_after >= TTL - DRIFT - RENEW_EVERY * 2,
            "told {told_after:?}: too early"
        );
    }

    #[actix_rt::test]
    async fn a_release_after_the_lease_was_lost_says_so() {
        let s = setup();
        let (grant, _) = acquire(&s, "lock:booking:3").await;
        s.store.steal(&grant.key);
        assert!(until(|| !s.lost.lock().unwrap().is_empty()).await);

        let released = release(&s, &grant).await;

        assert!(!released, "a lost lease cannot be released");
        assert_eq!(
            s.store
                .keys
                .lock()
                .unwrap()
                .get(&*grant.key)
                .map(String::as_str),
            Some("thief:1"),
            "the new holder's key is untouched"
        );
    }

    #[actix_rt::test]
    async fn no_renewal_outlives_a_release() {
        let s = setup();
        let (grant, _) = acquire(&s, "lock:booking:4").await;
        assert!(until(|| s.store.renewals_of(&grant.key) >= 2).await);

        let released = release(&s, &grant).await;
        let renewed_before = s.store.renewals_of(&grant.key);
        actix_rt::time::sleep(RENEW_EVERY * 5).await;

        assert!(released);
        assert_eq!(s.store.renewals_of(&grant.key), renewed_before);
        assert!(!s.store.keys.lock().unwrap().contains_key(&*grant.key));
        assert!(s.lost.lock().unwrap().is_empty(), "a release is not a loss");
    }

    #[actix_rt::test]
    async fn release_all_tells_the_holders_stops_renewal_and_deletes_only_our_keys() {
        let s = setup();
        let (ours, _) = acquire(&s, "lock:booking:5").await;
        let (stolen, _) = acquire(&s, "lock:booking:6").await;
        s.store.steal(&stolen.key);

        let released = s.manager.send(ReleaseAll).await.unwrap().unwrap();
        let renewed_before = s.store.renewals_of(&ours.key);
        actix_rt::time::sleep(RENEW_EVERY * 5).await;

        assert_eq!(released, 1, "only the key still carrying our value");
        let keys = s.store.keys.lock().unwrap().clone();
        assert!(!keys.contains_key(&*ours.key));
        assert_eq!(keys.get(&*stolen.key).map(String::as_str), Some("thief:1"));
        assert_eq!(s.store.renewals_of(&ours.key), renewed_before);
        assert!(!s.lost.lock().unwrap().is_empty(), "the holder was told");
        assert!(!release(&s, &ours).await, "nothing left to give back");
    }

    #[actix_rt::test]
    async fn the_holder_s_deadline_moves_with_renewals_and_passes_when_the_lease_is_lost() {
        let s = setup();
        let (grant, _) = acquire(&s, "lock:booking:7").await;
        let first = grant.deadline.get();
        assert!(
            until(|| grant.deadline.get() > first).await,
            "renewals move it"
        );
        assert!(!grant.deadline.passed());

        s.store.steal(&grant.key);

        // Passed as soon as the manager saw the loss, long before the TTL would run out.
        let seen = Instant::now();
        assert!(until(|| grant.deadline.passed()).await);
        assert!(seen.elapsed() < TTL / 2, "{:?}", seen.elapsed());
    }

    #[actix_rt::test]
    async fn a_lease_the_store_cannot_answer_for_is_kept_until_its_deadline_and_no_longer() {
        let s = setup();
        let (silent, acquired_at) = acquire(&s, "lock:booking:8").await;
        let (answered, _) = acquire(&s, "lock:booking:9").await;

        s.store
            .unanswered
            .lock()
            .unwrap()
            .insert(silent.key.to_string());

        // The unanswered lease goes when its deadline comes within a heartbeat, not at once and
        // not later; the answered one is renewed all along.
        assert!(until(|| !s.lost.lock().unwrap().is_empty()).await);
        let (key, told_at) = s.lost.lock().unwrap()[0].clone();
        assert_eq!(*key, *silent.key);
        let told_after = told_at - acquired_at;
        assert!(told_after < TTL, "told {told_after:?} after acquiring");
        assert!(
            told_after >= TTL - DRIFT - RENEW_EVERY * 2,
            "told {told_after:?}: too early"
        );
        assert!(silent.deadline.passed());
        assert!(!answered.deadline.passed(), "the answered lease is kept");
        assert!(s.store.renewals_of(&answered.key) > 10);
    }
}
