//! `complete`: by the assigned driver, of an accepted booking, with a positive fare; the driver
//! goes back online.

use serde_json::{json, Value};

use super::{assert_forbidden, booking, complete, driver, nearby_ids};
use crate::support::app::spawn_app;
use crate::support::fixtures::{Api, PICKUP};
use crate::support::reply::assert_invalid;

#[actix_web::test]
async fn the_driver_completes_an_accepted_booking_and_goes_back_online() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (id, assigned) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, true).await;

    // Act
    let reply = complete(&app, id, assigned, 18.75).await;

    // Assert
    reply.expect(200, None);
    assert_eq!(reply.data()["status"], json!("completed"));
    assert_eq!(reply.data()["actual_fare"], json!(18.75));
    let stored = booking(&app, id).await;
    assert_eq!(stored["status"], json!("completed"));
    assert_eq!(stored["actual_fare"], json!(18.75));
    assert_eq!(stored["estimated_fare"], json!(15.5));
    assert!(stored["completed_at"].is_string(), "{stored:#}");
    let freed = driver(&app, assigned).await;
    assert_eq!(freed["status"], json!("online"));
    assert_eq!(freed["current_booking_id"], Value::Null);
    assert_eq!(nearby_ids(&app).await, vec![assigned]);
}

#[actix_web::test]
async fn complete_by_a_driver_who_is_not_assigned_is_forbidden() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let other = app.online_driver(PICKUP.0 + 0.002, PICKUP.1).await;
    let (id, _) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, true).await;
    let before = app.fingerprint().await;

    // Act
    let reply = complete(&app, id, other, 20.0).await;

    // Assert
    assert_forbidden(&reply, "not_assigned_driver");
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn completing_a_booking_that_is_only_assigned_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (id, assigned) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    let before = app.fingerprint().await;

    // Act
    let reply = complete(&app, id, assigned, 20.0).await;

    // Assert
    reply.expect(409, Some("booking_not_accepted"));
    assert_eq!(reply.data()["booking"]["status"], json!("assigned"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn completing_a_pending_booking_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let driver = app.online_driver(PICKUP.0, PICKUP.1).await;
    let id = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;

    // Act
    let reply = complete(&app, id, driver, 20.0).await;

    // Assert
    reply.expect(409, Some("booking_not_accepted"));
    assert_eq!(reply.data()["booking"]["status"], json!("pending"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn a_non_positive_or_mistyped_actual_fare_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (id, assigned) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, true).await;
    let cases = [
        ("zero", json!(0)),
        ("negative", json!(-3.5)),
        ("a word", json!("twenty")),
    ];

    for (case, fare) in cases {
        let before = app.fingerprint().await;

        // Act
        let reply = app
            .post(
                format!("/api/bookings/{id}/complete"),
                json!({ "driver_id": assigned, "actual_fare": fare }),
            )
            .await;

        // Assert
        assert_invalid(&format!("actual_fare {case}"), &reply, "actual_fare");
        assert_eq!(app.fingerprint().await, before, "{case}: nothing written");
    }
}

#[actix_web::test]
async fn completing_an_unknown_booking_is_404() {
    // Arrange
    let app = spawn_app().await;
    let driver = app.online_driver(PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;

    // Act
    let reply = complete(&app, 999_999, driver, 20.0).await;

    // Assert
    reply.expect(404, Some("booking_not_found"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}
