//! What the tests' worlds are made of: where bookings are picked up, what a booking, rider or
//! driver is created with, and the API calls that create them, through whatever the suite talks
//! to (an in-process app, a cluster, the chaos suite's retrying client).

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use super::reply::Reply;

/// `config/test.toml`'s lease TTL: what takeover times are measured against.
pub const TTL: Duration = Duration::from_millis(2000);

/// Lower Manhattan, where the tests' drivers and pickups are.
pub const PICKUP: (f64, f64) = (40.7128, -74.0060);

/// The `i`-th of a row of drivers waiting north of the pickup, 10 m apart.
pub fn near_pickup(i: usize) -> (f64, f64) {
    (PICKUP.0 + 0.0001 * i as f64, PICKUP.1)
}

pub fn booking_body(rider: i64, lat: f64, lng: f64) -> Value {
    json!({
        "rider_id": rider,
        "pickup_lat": lat,
        "pickup_lng": lng,
        "dropoff_lat": 40.7589,
        "dropoff_lng": -73.9851,
        "estimated_fare": 15.50
    })
}

/// A phone number no other rider or driver has: `+1 <area> <ten digits>`.
fn unique_phone(area: &str) -> String {
    format!("+1 {area} {}", &Uuid::new_v4().as_u128().to_string()[..10])
}

/// The Redis key of a booking's lease, under a test's key prefix (`*`: a pattern for them all).
pub fn lease_key(prefix: &str, booking: impl std::fmt::Display) -> String {
    format!("{prefix}lock:booking:{booking}")
}

/// The geo index of available drivers (hash-tagged, so a cluster keeps it beside its marker).
pub fn geo_index_key(prefix: &str) -> String {
    format!("{prefix}{{drivers}}:available")
}

/// The key whose absence says the geo index must be rebuilt.
pub fn geo_marker_key(prefix: &str) -> String {
    format!("{prefix}{{drivers}}:indexed")
}

/// What the fixtures create riders, drivers and bookings through. `call` sends one request and
/// returns its reply, panicking when there is none.
pub trait Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply;

    /// Creates a rider; returns its id.
    async fn rider(&self) -> i64 {
        let body = json!({ "name": "Test Rider", "phone": unique_phone("555") });
        let reply = self.call(Method::POST, "/api/riders", Some(body)).await;
        reply.expect(201, None);
        reply.data()["id"].as_i64().expect("rider id")
    }

    /// Creates a driver at `(lat, lng)` and online; returns its id.
    async fn online_driver(&self, lat: f64, lng: f64) -> i64 {
        let body = json!({ "name": "Test Driver", "phone": unique_phone("666") });
        let reply = self.call(Method::POST, "/api/drivers", Some(body)).await;
        reply.expect(201, None);
        let id = reply.data()["id"].as_i64().expect("driver id");
        let at = json!({ "lat": lat, "lng": lng });
        let path = format!("/api/drivers/{id}/location");
        self.call(Method::POST, &path, Some(at))
            .await
            .expect(200, None);
        let online = json!({ "status": "online" });
        let path = format!("/api/drivers/{id}/status");
        self.call(Method::PATCH, &path, Some(online))
            .await
            .expect(200, None);
        id
    }

    /// `count` online drivers in a row at the pickup ([`near_pickup`]).
    async fn drivers(&self, count: usize) -> Vec<i64> {
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            let (lat, lng) = near_pickup(i);
            ids.push(self.online_driver(lat, lng).await);
        }
        ids
    }

    /// Creates a pending booking for `rider` picked up at `(lat, lng)`; returns its id. The node
    /// that created it owns it from then on (its actor holds the lease).
    async fn booking(&self, rider: i64, lat: f64, lng: f64) -> i64 {
        let body = booking_body(rider, lat, lng);
        let reply = self.call(Method::POST, "/api/bookings", Some(body)).await;
        reply.expect(201, None);
        reply.data()["id"].as_i64().expect("booking id")
    }

    /// `count` pending bookings of `rider` at the pickup, in creation order.
    async fn bookings(&self, rider: i64, count: usize) -> Vec<i64> {
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            ids.push(self.booking(rider, PICKUP.0, PICKUP.1).await);
        }
        ids
    }
}
