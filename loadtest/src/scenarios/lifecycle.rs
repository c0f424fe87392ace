//! Whole booking lifecycles, closed or open loop.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{assign, create_booking, drivers, get, post, random_center, rider, together, Outcome};
use crate::client::{LoadClient, Reply};
use crate::streams::{StreamSetup, Streams};

/// Whole lifecycles (create → assign → accept → complete) until `duration` passes or `limit` are
/// done, with a pool of `riders_n` riders and as many drivers. Closed loop by default: each rider
/// starts its next lifecycle when the last one ends. With `rate`, open loop: lifecycles start at
/// that many per second whatever the server's pace, so a slow server builds a queue instead of
/// slowing the arrivals (and arrivals beyond the driver pool find no driver, which is reported).
///
/// With `streams`, that many user streams are open while the lifecycles run (the riders' own
/// first, then idle ones), and the outcome says what they received.
pub async fn lifecycle(
    c: Arc<LoadClient>,
    riders_n: usize,
    duration: Duration,
    limit: Option<u64>,
    rate: Option<f64>,
    streams: Option<&StreamSetup>,
) -> anyhow::Result<Outcome> {
    let center = random_center();
    let mut riders = Vec::with_capacity(riders_n);
    for _ in 0..riders_n {
        riders.push(rider(&c).await?);
    }
    let pool = drivers(&c, center, riders_n).await?;
    let open = match streams {
        Some(setup) => {
            Some(Streams::open(&setup.urls, setup.token.as_deref(), &riders, setup.count).await?)
        }
        None => None,
    };
    let run = Run {
        c: c.clone(),
        riders: Arc::new(riders),
        center,
        deadline: Instant::now() + duration,
        limit,
    };
    let traffic = Instant::now();
    let violations = match rate {
        None => closed_loop(&run).await,
        Some(per_s) => open_loop(&run, per_s).await,
    };
    let traffic = traffic.elapsed();
    let mut out = Outcome {
        violations,
        lifecycles: run.done(),
        traffic: Some(traffic),
        // A moment for the last steps' events to arrive.
        streams: match open {
            Some(open) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Some(open.finish())
            }
            None => None,
        },
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
