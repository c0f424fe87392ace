//! The scenarios. Each sets up its own riders and drivers through the API around a random spot
//! (far from the seeded demo, so other data cannot take part), fires its requests released
//! together, then checks its invariants through the API and returns what broke.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::Barrier;

use super::client::{LoadClient, Reply};

/// What a scenario found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Broken invariants and unintended statuses; empty means the scenario passed.
    pub violations: Vec<String>,
    /// Completed create → assign → accept → complete cycles (lifecycle scenario).
    pub lifecycles: u64,
}

impl Outcome {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.violations.push(what());
        }
    }
}

/// A spot in open country with room for a few km of drivers around it.
pub fn random_center() -> (f64, f64) {
    let mut rng = rand::rng();
    (
        rng.random_range(-50.0..50.0),
        rng.random_range(-170.0..170.0),
    )
}

fn phone() -> String {
    format!(
        "+1 {}",
        rand::rng().random_range(1_000_000_000_u64..9_999_999_999)
    )
}

fn id_of(reply: &Reply) -> anyhow::Result<i64> {
    reply.data()["id"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("expected an id, got {} {}", reply.status, reply.body))
}

pub async fn rider(c: &LoadClient) -> anyhow::Result<i64> {
    let body = json!({ "name": "Load Rider", "phone": phone() });
    id_of(
        &c.call("POST /api/riders", Method::POST, "/api/riders", Some(&body))
            .await,
    )
}

/// A driver online at `(lat, lng)`.
pub async fn driver(c: &LoadClient, lat: f64, lng: f64) -> anyhow::Result<i64> {
    let body = json!({ "name": "Load Driver", "phone": phone() });
    let id = id_of(
        &c.call(
            "POST /api/drivers",
            Method::POST,
            "/api/drivers",
            Some(&body),
        )
        .await,
    )?;
    let at = json!({ "lat": lat, "lng": lng });
    let located = c
        .call(
            "POST /api/drivers/:id/location",
            Method::POST,
            &format!("/api/drivers/{id}/location"),
            Some(&at),
        )
        .await;
    anyhow::ensure!(
        located.status == 200,
        "driver location: {} {}",
        located.status,
        located.body
    );
    let online = json!({ "status": "online" });
    let went = c
        .call(
            "PATCH /api/drivers/:id/status",
            Method::PATCH,
            &format!("/api/drivers/{id}/status"),
            Some(&online),
        )
        .await;
    anyhow::ensure!(
        went.status == 200,
        "driver status: {} {}",
        went.status,
        went.body
    );
    Ok(id)
}

/// `n` online drivers between about 10 m and a kilometre from `center`.
pub async fn drivers(c: &LoadClient, center: (f64, f64), n: usize) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let offset = 0.0001 * (i % 100 + 1) as f64;
        ids.push(driver(c, center.0 + offset, center.1 + 0.0001 * (i / 100) as f64).await?);
    }
    Ok(ids)
}

pub async fn create_booking(c: &LoadClient, rider: i64, at: (f64, f64)) -> Reply {
    let body = json!({
        "rider_id": rider, "pickup_lat": at.0, "pickup_lng": at.1,
        "dropoff_lat": at.0 + 0.03, "dropoff_lng": at.1 + 0.03, "estimated_fare": 15.50
    });
    c.call(
        "POST /api/bookings",
        Method::POST,
        "/api/bookings",
        Some(&body),
    )
    .await
}

async fn post(c: &LoadClient, endpoint: &'static str, path: String, body: Value) -> Reply {
    c.call(endpoint, Method::POST, &path, Some(&body)).await
}

async fn get(c: &LoadClient, endpoint: &'static str, path: String) -> Reply {
    c.call(endpoint, Method::GET, &path, None).await
}

async fn assign(c: &LoadClient, booking: i64) -> Reply {
    post(
        c,
        "POST /api/bookings/:id/assign",
        format!("/api/bookings/{booking}/assign"),
        Value::Null,
    )
    .await
}

/// Runs `make(i)` for `i in 0..n` as separate tasks released at the same instant by a barrier.
async fn together<F, Fut, T>(n: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let gate = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (gate, work) = (gate.clone(), make(i));
            tokio::spawn(async move {
                gate.wait().await;
                work.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        if let Ok(value) = task.await {
            out.push(value);
        }
    }
    out
}

/// The tutorial's flow: 10 concurrent creates, 5 concurrent assigns of one booking, lock stats.
pub async fn tutorial(c: Arc<LoadClient>) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let center = random_center();
    let rider = rider(&c).await?;
    drivers(&c, center, 5).await?;
    let creates = together(10, |_| {
        let c = c.clone();
        async move { create_booking(&c, rider, center).await }
    })
    .await;
    let created = creates.iter().filter(|r| r.status == 201).count();
    out.check(created == 10, || {
        format!("10 creates: {created} answered 201")
    });
    let target = id_of(&creates[0])?;
    let assigns = together(5, |_| {
        let c = c.clone();
        async move { assign(&c, target).await }
    })
    .await;
    exactly_one_winner(
        &mut out,
        &assigns,
        "booking_not_pending",
        "5 assigns of one booking",
    );
    let stats = get(&c, "GET /api/locks/stats", "/api/locks/stats".into()).await;
    out.check(stats.status == 200, || {
        format!("lock stats: {}", stats.status)
    });
    Ok(out)
}

/// K concurrent assigns of one booking: exactly one wins.
pub async fn same_booking(c: Arc<LoadClient>, k: usize) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let center = random_center();
    let rider = rider(&c).await?;
    drivers(&c, center, 3).await?;
    let booking = id_of(&create_booking(&c, rider, center).await)?;
    // Open the k connections first (reported as `GET /api/health`), as clients with keep-alive
    // connections would have them: the assigns then measure the server, not k TCP handshakes.
    together(k, |_| {
        let c = c.clone();
        async move { get(&c, "GET /api/health", "/api/health".to_owned()).await }
    })
    .await;
    let assigns = together(k, |_| {
        let c = c.clone();
        async move { assign(&c, booking).await }
    })
    .await;
    exactly_one_winner(
        &mut out,
        &assigns,
        "booking_not_pending",
        &format!("{k} assigns of one booking"),
    );
    Ok(out)
}

fn exactly_one_winner(out: &mut Outcome, replies: &[Reply], loser_code: &str, what: &str) {
    let won = replies.iter().filter(|r| r.status == 200).count();
    out.check(won == 1, || {
        format!("{what}: {won} winners, expected exactly 1")
    });
    for r in replies.iter().filter(|r| r.status != 200) {
        out.check(r.status == 409 && r.error() == loser_code, || {
            format!(
                "{what}: a loser got {} {} (expected 409 {loser_code})",
                r.status,
                r.error()
            )
        });
    }
}

/// B bookings racing for D drivers: exactly D win, each on its own driver, and every winner's
/// driver says it holds that booking.
pub async fn driver_contention(
    c: Arc<LoadClient>,
    drivers_n: usize,
    bookings_n: usize,
) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let center = random_center();
    let rider = rider(&c).await?;
    drivers(&c, center, drivers_n).await?;
    let mut bookings = Vec::with_capacity(bookings_n);
    for _ in 0..bookings_n {
        bookings.push(id_of(&create_booking(&c, rider, center).await)?);
    }
    let ids = Arc::new(bookings);
    let replies = together(bookings_n, |i| {
        let (c, ids) = (c.clone(), ids.clone());
        async move { assign(&c, ids[i]).await }
    })
    .await;
    let mut winners: Vec<(i64, i64)> = Vec::new();
    for r in &replies {
        match r.status {
            200 => winners.push((
                r.data()["booking"]["id"].as_i64().unwrap_or(0),
                r.data()["driver"]["id"].as_i64().unwrap_or(0),
            )),
            409 if r.error() == "no_drivers_available" => {}
            other => out
                .violations
                .push(format!("assign answered {other} {}", r.error())),
        }
    }
    out.check(winners.len() == drivers_n, || {
        format!("{} winners for {drivers_n} drivers", winners.len())
    });
    let mut drivers_won: Vec<i64> = winners.iter().map(|(_, d)| *d).collect();
    drivers_won.sort_unstable();
    drivers_won.dedup();
    out.check(drivers_won.len() == winners.len(), || {
        "a driver won two bookings".into()
    });
    for (booking, driver) in winners {
        let row = get(&c, "GET /api/drivers/:id", format!("/api/drivers/{driver}")).await;
        let holds = row.data()["current_booking_id"].as_i64() == Some(booking)
            && row.data()["status"] == "busy";
        out.check(holds, || {
            format!(
                "driver {driver} does not hold booking {booking}: {}",
                row.data()
            )
        });
    }
    Ok(out)
}

/// Cancel (rider) racing complete (driver) on N accepted bookings: one winner each, the stored
/// status matches it, and the driver ends online.
pub async fn conflict(c: Arc<LoadClient>, n: usize) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let center = random_center();
    let rider = rider(&c).await?;
    drivers(&c, center, n).await?;
    let mut accepted = Vec::with_capacity(n);
    for _ in 0..n {
        let booking = id_of(&create_booking(&c, rider, center).await)?;
        let assigned = assign(&c, booking).await;
        let driver = assigned.data()["driver"]["id"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("assign: {} {}", assigned.status, assigned.body))?;
        let accept = post(
            &c,
            "POST /api/bookings/:id/accept",
            format!("/api/bookings/{booking}/accept"),
            json!({ "driver_id": driver }),
        )
        .await;
        anyhow::ensure!(
            accept.status == 200,
            "accept: {} {}",
            accept.status,
            accept.body
        );
        accepted.push((booking, driver));
    }
    let pairs = Arc::new(accepted);
    let races = together(2 * n, |i| {
        let (c, pairs) = (c.clone(), pairs.clone());
        async move {
            let (booking, driver) = pairs[i / 2];
            if i % 2 == 0 {
                let body = json!({ "reason": "race", "user_id": rider, "user_type": "rider" });
                (
                    "cancelled",
                    post(
                        &c,
                        "POST /api/bookings/:id/cancel",
                        format!("/api/bookings/{booking}/cancel"),
                        body,
                    )
                    .await,
                )
            } else {
                let body = json!({ "driver_id": driver, "actual_fare": 16.25 });
                (
                    "completed",
                    post(
                        &c,
                        "POST /api/bookings/:id/complete",
                        format!("/api/bookings/{booking}/complete"),
                        body,
                    )
                    .await,
                )
            }
        }
    })
    .await;
    for (k, pair) in races.chunks(2).enumerate() {
        let (booking, driver) = pairs[k];
        let winners: Vec<&str> = pair
            .iter()
            .filter(|(_, r)| r.status == 200)
            .map(|(s, _)| *s)
            .collect();
        out.check(winners.len() == 1, || {
            format!("booking {booking}: {} winners", winners.len())
        });
        for (_, r) in pair.iter().filter(|(_, r)| r.status != 200) {
            out.check(r.status == 409, || {
                format!("booking {booking}: loser got {} {}", r.status, r.error())
            });
        }
        let stored = get(
            &c,
            "GET /api/bookings/:id",
            format!("/api/bookings/{booking}"),
        )
        .await;
        let status = stored.data()["status"].as_str().unwrap_or("").to_owned();
        out.check(winners.first() == Some(&status.as_str()), || {
            format!("booking {booking}: stored {status}, winner {winners:?}")
        });
        let d = get(&c, "GET /api/drivers/:id", format!("/api/drivers/{driver}")).await;
        out.check(d.data()["status"] == "online", || {
            format!("driver {driver} ended {}", d.data()["status"])
        });
    }
    Ok(out)
}

/// `n` bookings, each created and then sent one command its actor refuses (an accept by a driver
/// it was never assigned to), by 64 concurrent workers. Each refusal needs the booking's actor
/// live, so afterwards the server holds `n` actors and leases until they idle out: `make bench`
/// runs it against a node with a long `booking.idle_stop_ms` and reads that node's memory.
/// Every booking must answer 201 and then 409 `booking_not_assigned`, and stay pending.
pub async fn actors(c: Arc<LoadClient>, n: usize) -> anyhow::Result<Outcome> {
    const WORKERS: usize = 64;
    // Bookings per rider: every booking stays pending, and a rider may hold only so many
    // active ones (`booking.max_active_per_rider`, 1,000 in the local profile).
    const PER_RIDER: usize = 500;
    let center = random_center();
    let stranger = driver(&c, center.0, center.1).await?;
    let workers = (0..WORKERS.min(n.max(1))).map(|w| {
        let c = c.clone();
        tokio::spawn(async move {
            let mut violations = Vec::new();
            let mut last = None;
            let mut current = None;
            for (i, _) in (w..n).step_by(WORKERS).enumerate() {
                let rider = match current {
                    Some(rider) if i % PER_RIDER != 0 => rider,
                    _ => match rider(&c).await {
                        Ok(rider) => *current.insert(rider),
                        Err(error) => {
                            violations.push(format!("rider: {error}"));
                            continue;
                        }
                    },
                };
                let created = create_booking(&c, rider, center).await;
                let Ok(booking) = id_of(&created) else {
                    violations.push(format!("create: {} {}", created.status, created.error()));
                    continue;
                };
                let refused = post(
                    &c,
                    "POST /api/bookings/:id/accept",
                    format!("/api/bookings/{booking}/accept"),
                    json!({ "driver_id": stranger }),
                )
                .await;
                if refused.status != 409 || refused.error() != "booking_not_assigned" {
                    violations.push(format!(
                        "booking {booking}: accept by a stranger answered {} {}",
                        refused.status,
                        refused.error()
                    ));
                }
                last = Some(booking);
            }
            (violations, last)
        })
    });
    let mut out = Outcome::default();
    for worker in futures::future::join_all(workers).await {
        let (violations, last) = worker?;
        out.violations.extend(violations);
        // The last booking of each worker must still be pending: refusals wrote nothing.
        if let Some(booking) = last {
            let row = get(
                &c,
                "GET /api/bookings/:id",
                format!("/api/bookings/{booking}"),
            )
            .await;
            out.check(row.data()["status"] == "pending", || {
                format!("booking {booking} ended {}", row.data()["status"])
            });
        }
    }
    Ok(out)
}

/// Whole lifecycles (create → assign → accept → complete) until `duration` passes or `limit` are
/// done, with a pool of `riders_n` riders and as many drivers. Closed loop by default: each rider
/// starts its next lifecycle when the last one ends. With `rate`, open loop: lifecycles start at
/// that many per second whatever the server's pace, so a slow server builds a queue instead of
/// slowing the arrivals (and arrivals beyond the driver pool find no driver, which is reported).
pub async fn lifecycle(
    c: Arc<LoadClient>,
    riders_n: usize,
    duration: Duration,
    limit: Option<u64>,
    rate: Option<f64>,
) -> anyhow::Result<Outcome> {
    let center = random_center();
    let mut riders = Vec::with_capacity(riders_n);
    for _ in 0..riders_n {
        riders.push(rider(&c).await?);
    }
    let pool = drivers(&c, center, riders_n).await?;
    let run = Run {
        c: c.clone(),
        riders: Arc::new(riders),
        center,
        deadline: Instant::now() + duration,
        limit,
    };
    let violations = match rate {
        None => closed_loop(&run).await,
        Some(per_s) => open_loop(&run, per_s).await,
    };
    let mut out = Outcome {
        violations,
        lifecycles: run.done(),
    };
    for driver in pool {
        let d = get(&c, "GET /api/drivers/:id", format!("/api/drivers/{driver}")).await;
        out.check(d.data()["status"] == "online", || {
            format!("driver {driver} ended {}", d.data()["status"])
        });
    }
    Ok(out)
}

/// What the lifecycle loops share.
#[derive(Clone)]
struct Run {
    c: Arc<LoadClient>,
    riders: Arc<Vec<i64>>,
    center: (f64, f64),
    deadline: Instant,
    limit: Option<u64>,
}

impl Run {
    /// Lifecycles completed with every request answered as intended.
    fn done(&self) -> u64 {
        self.c.counters.lifecycles.load(Ordering::Relaxed)
    }

    fn more(&self, counted: u64) -> bool {
        Instant::now() < self.deadline && self.limit.is_none_or(|n| counted < n)
    }

    /// One lifecycle for `rider`, counted when it went as intended.
    fn lifecycle(
        &self,
        rider: i64,
    ) -> impl std::future::Future<Output = Option<String>> + Send + 'static {
        let (c, center) = (self.c.clone(), self.center);
        async move {
            match one_lifecycle(&c, rider, center).await {
                Ok(()) => {
                    c.counters.lifecycles.fetch_add(1, Ordering::Relaxed);
                    None
                }
                Err(why) => Some(why),
            }
        }
    }
}

async fn closed_loop(run: &Run) -> Vec<String> {
    let loops = together(run.riders.len(), |i| {
        let run = run.clone();
        async move {
            let mut violations = Vec::new();
            while run.more(run.done()) {
                violations.extend(run.lifecycle(run.riders[i]).await);
            }
            violations
        }
    })
    .await;
    loops.into_iter().flatten().collect()
}

async fn open_loop(run: &Run, per_s: f64) -> Vec<String> {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / per_s));
    // Late ticks fire at once: arrivals keep their rate even when the client falls behind.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut started = 0_u64;
    let mut in_flight = Vec::new();
    while run.more(started) {
        ticker.tick().await;
        let rider = run.riders[started as usize % run.riders.len()];
        in_flight.push(tokio::spawn(run.lifecycle(rider)));
        started += 1;
    }
    let mut violations = Vec::new();
    for task in in_flight {
        if let Ok(Some(why)) = task.await {
            violations.push(why);
        }
    }
    violations
}

async fn one_lifecycle(c: &LoadClient, rider: i64, at: (f64, f64)) -> Result<(), String> {
    let expect = |what: &str, r: &Reply, status: u16| {
        if r.status == status {
            Ok(())
        } else {
            Err(format!(
                "{what}: {} {} (expected {status})",
                r.status,
                r.error()
            ))
        }
    };
    let created = create_booking(c, rider, at).await;
    expect("create", &created, 201)?;
    let booking = created.data()["id"].as_i64().ok_or("create: no id")?;
    let assigned = assign(c, booking).await;
    expect("assign", &assigned, 200)?;
    let driver = assigned.data()["driver"]["id"]
        .as_i64()
        .ok_or("assign: no driver")?;
    let accepted = post(
        c,
        "POST /api/bookings/:id/accept",
        format!("/api/bookings/{booking}/accept"),
        json!({ "driver_id": driver }),
    )
    .await;
    expect("accept", &accepted, 200)?;
    let body = json!({ "driver_id": driver, "actual_fare": 14.0 });
    let completed = post(
        c,
        "POST /api/bookings/:id/complete",
        format!("/api/bookings/{booking}/complete"),
        body,
    )
    .await;
    expect("complete", &completed, 200)
}
