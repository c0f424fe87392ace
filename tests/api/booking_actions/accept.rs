//! `accept`: only the assigned driver, only an assigned booking.

use serde_json::json;

use super::{assert_forbidden, booking, driver};
use crate::support::app::{spawn_app, TestApp};
use crate::support::fixtures::{Api, PICKUP};
use crate::support::reply::{assert_invalid, Reply};

async fn accept(app: &TestApp, booking: i64, driver: i64) -> Reply {
    app.post(
        format!("/api/bookings/{booking}/accept"),
        json!({ "driver_id": driver }),
    )
    .await
}

#[actix_web::test]
async fn the_assigned_driver_accepts_the_booking() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (id, assigned) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;

    // Act
    let reply = accept(&app, id, assigned).await;

    // Assert
    reply.expect(200, None);
    assert_eq!(reply.data()["status"], json!("accepted"));
    assert!(reply.data()["accepted_at"].is_string(), "{:#}", reply.body);
    let stored = booking(&app, id).await;
    assert_eq!(stored["status"], json!("accepted"));
    assert_eq!(stored["driver_id"], json!(assigned));
    let stored_driver = driver(&app, assigned).await;
    assert_eq!(stored_driver["status"], json!("busy"));
    assert_eq!(stored_driver["current_booking_id"], json!(id));
}

#[actix_web::test]
async fn accept_by_a_driver_who_is_not_assigned_is_forbidden() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let other = app.online_driver(PICKUP.0 + 0.002, PICKUP.1).await;
    let (id, _) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    let before = app.fingerprint().await;

    // Act
    let reply = accept(&app, id, other).await;

    // Assert
    assert_forbidden(&reply, "not_assigned_driver");
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn accepting_a_pending_booking_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let driver = app.online_driver(PICKUP.0, PICKUP.1).await;
    let id = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;

    // Act
    let reply = accept(&app, id, driver).await;

    // Assert
    reply.expect(409, Some("booking_not_assigned"));
    assert_eq!(reply.data()["booking"]["status"], json!("pending"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn accepting_twice_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (id, assigned) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, true).await;
    let before = app.fingerprint().await;

    // Act
    let reply = accept(&app, id, assigned).await;

    // Assert
    reply.expect(409, Some("booking_not_assigned"));
    assert_eq!(reply.data()["booking"]["status"], json!("accepted"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn accept_with_a_missing_or_invalid_driver_id_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (id, _) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    let cases = [
        ("missing driver_id", json!({})),
        ("driver_id 0", json!({ "driver_id": 0 })),
        ("driver_id as a string", json!({ "driver_id": "7" })),
    ];

    for (case, body) in cases {
        let before = app.fingerprint().await;

        // Act
        let reply = app.post(format!("/api/bookings/{id}/accept"), body).await;

        // Assert
        assert_invalid(case, &reply, "driver_id");
        assert_eq!(app.fingerprint().await, before, "{case}: nothing written");
    }
}

#[actix_web::test]
async fn accepting_an_unknown_booking_is_404() {
    // Arrange
    let app = spawn_app().await;
    let driver = app.online_driver(PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;

    // Act
    let reply = accept(&app, 999_999, driver).await;

    // Assert
    reply.expect(404, Some("booking_not_found"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}
