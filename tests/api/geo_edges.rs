//! Every valid coordinate is served, also the ones a Redis geo set cannot hold (latitudes beyond
//! ±85.05112878°) and the ones on the antimeridian: such drivers are found by SQL, and no stored
//! row can stop a node from starting or its heartbeat from rebuilding the index.

use std::time::Duration;

use serde_json::json;

use crate::support::app::{spawn_app, TestApp};
use crate::support::fixtures::{geo_index_key, geo_marker_key, Api};
use crate::support::poll::eventually;

/// The driver ids `nearby` lists around `(lat, lng)`, nearest first.
async fn nearby(app: &TestApp, lat: f64, lng: f64, radius: f64) -> Vec<i64> {
    let reply = app
        .get(format!(
            "/api/drivers/nearby?lat={lat}&lng={lng}&radius={radius}"
        ))
        .await;
    reply.expect(200, None);
    reply
        .data()
        .as_array()
        .expect("a list")
        .iter()
        .map(|d| d["id"].as_i64().expect("driver id"))
        .collect()
}

/// The driver an assignment of a new booking picked up at `(lat, lng)` gets.
async fn assigned_at(app: &TestApp, rider: i64, lat: f64, lng: f64) -> i64 {
    let booking = app.booking(rider, lat, lng).await;
    let reply = app
        .post(format!("/api/bookings/{booking}/assign"), json!(null))
        .await;
    reply.expect(200, None);
    reply.data()["driver"]["id"].as_i64().expect("driver id")
}

#[actix_web::test]
async fn drivers_at_the_poles_and_the_antimeridian_are_found_and_survive_a_restart() {
    // Arrange: online drivers where the geo index cannot hold them (±89°, 89.99° by the north
    // pole) and on both sides of the antimeridian; a rider.
    let first = spawn_app().await;
    let rider = first.rider().await;
    let north = first.online_driver(89.0, 59.045722).await;
    let south = first.online_driver(-89.0, 59.045722).await;
    let pole = first.online_driver(89.99, 120.0).await;
    let east = first.online_driver(0.5, 180.0).await;
    let west = first.online_driver(0.5, -179.99).await;

    // Act: a restart rebuilds the index from these rows.
    first.stop().await;
    let app = first.restarted(|_| {}).await;

    // Assert: nearby and assignment find each of them.
    assert_eq!(nearby(&app, 89.0, 59.0, 5.0).await, vec![north]);
    assert_eq!(nearby(&app, -89.0, 59.1, 5.0).await, vec![south]);
    assert_eq!(nearby(&app, 90.0, 0.0, 5.0).await, vec![pole]);
    assert_eq!(nearby(&app, 0.5, -180.0, 5.0).await, vec![east, west]);
    assert_eq!(nearby(&app, 0.5, -179.98, 5.0).await, vec![west, east]);
    assert_eq!(nearby(&app, 0.5, 179.99, 5.0).await, vec![east, west]);
    assert_eq!(assigned_at(&app, rider, 90.0, 0.0).await, pole);
    assert_eq!(assigned_at(&app, rider, -89.0, 59.0).await, south);
    assert_eq!(assigned_at(&app, rider, 0.5, -180.0).await, east);
    assert_eq!(assigned_at(&app, rider, 0.5, 179.99).await, west);

    // The heartbeat rebuilds a lost index over the same rows without failing.
    let marker = geo_marker_key(&app.redis_prefix);
    let _: () = redis::cmd("DEL")
        .arg(&marker)
        .query(&mut app.redis())
        .unwrap();
    let rebuilt = eventually(Duration::from_secs(5), || async {
        redis::cmd("EXISTS")
            .arg(&marker)
            .query::<bool>(&mut app.redis())
            .unwrap()
    })
    .await;
    assert!(rebuilt, "the heartbeat did not rebuild the index");
    assert_eq!(nearby(&app, 89.0, 59.0, 5.0).await, vec![north]);
}

#[actix_web::test]
async fn a_driver_moving_beyond_the_indexable_band_leaves_the_index() {
    // Arrange: an indexed online driver at 85°.
    let app = spawn_app().await;
    let driver = app.online_driver(85.0, 10.0).await;
    let index = geo_index_key(&app.redis_prefix);
    let indexed = |app: &TestApp| -> Option<String> {
        redis::cmd("GEOPOS")
            .arg(&index)
            .arg(driver)
            .query::<Vec<Option<(String, String)>>>(&mut app.redis())
            .unwrap()
            .into_iter()
            .next()
            .flatten()
            .map(|(lng, _)| lng)
    };
    assert!(indexed(&app).is_some(), "the driver at 85° is indexed");

    // Act: it moves to 86°, beyond what the index holds.
    app.post(
        format!("/api/drivers/{driver}/location"),
        json!({ "lat": 86.0, "lng": 10.0 }),
    )
    .await
    .expect(200, None);

    // Assert: its old position is gone from the index, and SQL finds it at the new one.
    assert_eq!(indexed(&app), None);
    assert_eq!(nearby(&app, 86.0, 10.0, 1.0).await, vec![driver]);
    assert!(nearby(&app, 85.0, 10.0, 1.0).await.is_empty());
}
