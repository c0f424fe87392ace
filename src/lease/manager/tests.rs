//! The manager against an in-memory lease store that can be told to fail or be robbed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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

    fn release(&self, key: String, value: String) -> BoxFuture<'static, Result<bool, LeaseError>> {
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
        wait_replicas: 0,
        wait_timeout_ms: 50,
    };
    let manager = LeaseManager::new(
        "node-a".to_owned(),
        store.clone(),
        settings,
        Arc::new(LeaseMetrics::new().unwrap()),
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
