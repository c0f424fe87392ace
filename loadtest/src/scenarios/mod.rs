//! The scenarios. Each sets up its own riders and drivers through the API around a random spot
//! (far from the seeded demo, so other data cannot take part), fires its requests released
//! together, then checks its invariants through the API and returns what broke.
//!
//! The races ([`tutorial`], [`same_booking`], [`driver_contention`], [`conflict`]) are in
//! `contention`, whole lifecycles ([`lifecycle()`]) in `lifecycle`, the live actors of the memory
//! benchmark ([`actors()`]) in `actors`. The setup and requests they share are here.

mod actors;
mod contention;
mod lifecycle;

pub use actors::actors;
pub use contention::{conflict, driver_contention, same_booking, tutorial};
pub use lifecycle::lifecycle;

use std::sync::Arc;

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
    /// What the event streams held open during the run received (`--streams`).
    pub streams: Option<crate::streams::StreamsReport>,
    /// How long the traffic itself ran (lifecycle scenario): the rate is taken over it, not
    /// over the set-up of riders, drivers and streams.
    pub traffic: Option<std::time::Duration>,
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
