//! The booking transitions (`assign`, `accept`, `cancel`, `complete`): each success path with the
//! stored booking and driver afterwards, and every refusal with nothing written.
//!
//! One file per transition: [`assign`], [`accept`], [`cancel`], [`complete`]. The reads and
//! checks they share are here.

mod accept;
mod assign;
mod cancel;
mod complete;

use serde_json::{json, Value};

use crate::support::app::TestApp;
use crate::support::fixtures::PICKUP;
use crate::support::reply::Reply;

/// A 403 with `code` whose body tells a stranger nothing about the booking.
#[track_caller]
fn assert_forbidden(reply: &Reply, code: &str) {
    reply.expect(403, Some(code));
    assert!(
        reply.body.get("data").is_none(),
        "403 bodies carry no data: {:#}",
        reply.body
    );
}

/// The driver as stored now.
async fn driver(app: &TestApp, id: i64) -> Value {
    let reply = app.get(format!("/api/drivers/{id}")).await;
    reply.expect(200, None);
    reply.data().clone()
}

/// The booking as stored now.
async fn booking(app: &TestApp, id: i64) -> Value {
    let reply = app.get(format!("/api/bookings/{id}")).await;
    reply.expect(200, None);
    reply.data().clone()
}

/// Ids of the drivers a nearby search around the pickup lists.
async fn nearby_ids(app: &TestApp) -> Vec<i64> {
    let reply = app
        .get(format!(
            "/api/drivers/nearby?lat={}&lng={}",
            PICKUP.0, PICKUP.1
        ))
        .await;
    reply.expect(200, None);
    reply
        .data()
        .as_array()
        .expect("list")
        .iter()
        .map(|d| d["id"].as_i64().expect("id"))
        .collect()
}

async fn complete(app: &TestApp, booking: i64, driver: i64, actual_fare: f64) -> Reply {
    app.post(
        format!("/api/bookings/{booking}/complete"),
        json!({ "driver_id": driver, "actual_fare": actual_fare }),
    )
    .await
}
