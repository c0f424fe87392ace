//! `cancel`: by the booking's rider or its assigned driver, before it ends; a driver it held
//! goes back online.

use serde_json::{json, Value};

use super::{assert_forbidden, booking, complete, driver, nearby_ids};
use crate::support::app::{spawn_app, TestApp};
use crate::support::fixtures::{Api, PICKUP};
use crate::support::reply::{assert_invalid, Reply};

async fn cancel(app: &TestApp, booking: i64, user_id: i64, user_type: &str) -> Reply {
    app.post(
        format!("/api/bookings/{booking}/cancel"),
        json!({ "reason": "Plans changed", "user_id": user_id, "user_type": user_type }),
    )
    .await
}

#[actix_web::test]
async fn the_rider_cancels_a_pending_booking() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let id = app.booking(rider, PICKUP.0, PICKUP.1).await;

    // Act
    let reply = cancel(&app, id, rider, "rider").await;

    // Assert
    reply.expect(200, None);
    assert_eq!(reply.data()["status"], json!("cancelled"));
    let stored = booking(&app, id).await;
    assert_eq!(stored["status"], json!("cancelled"));
    assert_eq!(stored["cancellation_reason"], json!("Plans changed"));
    assert!(stored["cancelled_at"].is_string(), "{stored:#}");
}

#[actix_web::test]
async fn cancelling_an_assigned_booking_puts_its_driver_back_online() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (id, assigned) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    assert_eq!(
        nearby_ids(&app).await,
        Vec::<i64>::new(),
        "busy, not nearby"
    );

    // Act
    let reply = cancel(&app, id, rider, "rider").await;

    // Assert
    reply.expect(200, None);
    assert_eq!(reply.data()["status"], json!("cancelled"));
    assert_eq!(reply.data()["cancellation_reason"], json!("Plans changed"));
    assert_eq!(booking(&app, id).await["status"], json!("cancelled"));
    let freed = driver(&app, assigned).await;
    assert_eq!(freed["status"], json!("online"));
    assert_eq!(freed["current_booking_id"], Value::Null);
    assert_eq!(nearby_ids(&app).await, vec![assigned], "offered again");
}

#[actix_web::test]
async fn the_assigned_driver_cancels_an_accepted_booking_and_goes_back_online() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (id, assigned) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, true).await;

    // Act
    let reply = cancel(&app, id, assigned, "driver").await;

    // Assert
    reply.expect(200, None);
    let stored = booking(&app, id).await;
    assert_eq!(stored["status"], json!("cancelled"));
    assert_eq!(stored["cancellation_reason"], json!("Plans changed"));
    let freed = driver(&app, assigned).await;
    assert_eq!(freed["status"], json!("online"));
    assert_eq!(freed["current_booking_id"], Value::Null);
    assert_eq!(nearby_ids(&app).await, vec![assigned]);
}

#[actix_web::test]
async fn cancel_by_another_rider_is_forbidden() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let stranger = app.rider().await;
    let id = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;

    // Act
    let reply = cancel(&app, id, stranger, "rider").await;

    // Assert
    assert_forbidden(&reply, "not_booking_party");
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn cancel_by_a_driver_who_is_not_assigned_is_forbidden() {
    // Arrange: one booking assigned to a driver, one still pending.
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let other = app.online_driver(PICKUP.0 + 0.002, PICKUP.1).await;
    let (assigned_id, _) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    let pending_id = app.booking(rider, PICKUP.0, PICKUP.1).await;

    for (case, id) in [
        ("assigned booking", assigned_id),
        ("pending booking", pending_id),
    ] {
        let before = app.fingerprint().await;

        // Act
        let reply = cancel(&app, id, other, "driver").await;

        // Assert
        assert_eq!(reply.status.as_u16(), 403, "{case}: {:#}", reply.body);
        assert_forbidden(&reply, "not_booking_party");
        assert_eq!(app.fingerprint().await, before, "{case}: nothing written");
    }
}

#[actix_web::test]
async fn cancel_after_cancellation_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let id = app.booking(rider, PICKUP.0, PICKUP.1).await;
    cancel(&app, id, rider, "rider").await.expect(200, None);
    let before = app.fingerprint().await;

    // Act
    let reply = cancel(&app, id, rider, "rider").await;

    // Assert
    reply.expect(409, Some("booking_already_terminal"));
    assert_eq!(reply.data()["booking"]["status"], json!("cancelled"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn cancel_after_completion_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (id, assigned) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, true).await;
    complete(&app, id, assigned, 20.0).await.expect(200, None);

    for (party, user_id) in [("rider", rider), ("driver", assigned)] {
        let before = app.fingerprint().await;

        // Act
        let reply = cancel(&app, id, user_id, party).await;

        // Assert
        assert_eq!(reply.status.as_u16(), 409, "by {party}: {:#}", reply.body);
        reply.expect(409, Some("booking_already_terminal"));
        assert_eq!(reply.data()["booking"]["status"], json!("completed"));
        assert_eq!(
            app.fingerprint().await,
            before,
            "by {party}: nothing written"
        );
    }
}

#[actix_web::test]
async fn cancel_with_an_invalid_body_is_rejected_naming_the_field() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let id = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let cases = [
        (
            "user_type admin",
            json!({ "reason": "x", "user_id": rider, "user_type": "admin" }),
            "user_type",
        ),
        (
            "missing user_type",
            json!({ "reason": "x", "user_id": rider }),
            "user_type",
        ),
        (
            "missing user_id",
            json!({ "reason": "x", "user_type": "rider" }),
            "user_id",
        ),
        (
            "user_id 0",
            json!({ "reason": "x", "user_id": 0, "user_type": "rider" }),
            "user_id",
        ),
        (
            "reason over 500 characters",
            json!({ "reason": "x".repeat(501), "user_id": rider, "user_type": "rider" }),
            "reason",
        ),
    ];

    for (case, body, field) in cases {
        let before = app.fingerprint().await;

        // Act
        let reply = app.post(format!("/api/bookings/{id}/cancel"), body).await;

        // Assert
        assert_invalid(case, &reply, field);
        assert_eq!(app.fingerprint().await, before, "{case}: nothing written");
    }
}

#[actix_web::test]
async fn cancelling_an_unknown_booking_is_404() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let before = app.fingerprint().await;

    // Act
    let reply = cancel(&app, 999_999, rider, "rider").await;

    // Assert
    reply.expect(404, Some("booking_not_found"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}
