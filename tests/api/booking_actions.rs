//! The booking transitions (`assign`, `accept`, `cancel`, `complete`): each success path with the
//! stored booking and driver afterwards, and every refusal with nothing written.

use serde_json::{json, Value};

use crate::support::app::{spawn_app, TestApp};
use crate::support::fixtures::{booking_body, Api, PICKUP};
use crate::support::reply::{assert_invalid, Reply};

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

/// An online driver of `vehicle_type` at `(lat, lng)`; returns its id.
async fn online_driver_of(app: &TestApp, vehicle_type: &str, lat: f64, lng: f64) -> i64 {
    let phone = format!("555-{}", &uuid::Uuid::new_v4().as_u128().to_string()[..8]);
    let created = app
        .post(
            "/api/drivers",
            json!({ "name": "Van Driver", "phone": phone, "vehicle_type": vehicle_type }),
        )
        .await;
    created.expect(201, None);
    let id = created.data()["id"].as_i64().expect("driver id");
    app.post(
        format!("/api/drivers/{id}/location"),
        json!({ "lat": lat, "lng": lng }),
    )
    .await
    .expect(200, None);
    app.patch(
        format!("/api/drivers/{id}/status"),
        json!({ "status": "online" }),
    )
    .await
    .expect(200, None);
    id
}

async fn assign(app: &TestApp, booking: i64) -> Reply {
    app.post(format!("/api/bookings/{booking}/assign"), json!(null))
        .await
}

async fn accept(app: &TestApp, booking: i64, driver: i64) -> Reply {
    app.post(
        format!("/api/bookings/{booking}/accept"),
        json!({ "driver_id": driver }),
    )
    .await
}

async fn cancel(app: &TestApp, booking: i64, user_id: i64, user_type: &str) -> Reply {
    app.post(
        format!("/api/bookings/{booking}/cancel"),
        json!({ "reason": "Plans changed", "user_id": user_id, "user_type": user_type }),
    )
    .await
}

async fn complete(app: &TestApp, booking: i64, driver: i64, actual_fare: f64) -> Reply {
    app.post(
        format!("/api/bookings/{booking}/complete"),
        json!({ "driver_id": driver, "actual_fare": actual_fare }),
    )
    .await
}

// ---- assign ----

#[actix_web::test]
async fn assign_gives_the_booking_to_the_nearest_online_driver() {
    // Arrange: an offline driver right at the pickup, and online drivers farther out.
    let app = spawn_app().await;
    let rider = app.rider().await;
    let far = app.online_driver(PICKUP.0 + 0.003, PICKUP.1).await;
    let nearest = app.online_driver(PICKUP.0 + 0.001, PICKUP.1).await;
    let middle = app.online_driver(PICKUP.0 + 0.002, PICKUP.1).await;
    let offline = app.online_driver(PICKUP.0, PICKUP.1).await;
    app.patch(
        format!("/api/drivers/{offline}/status"),
        json!({ "status": "offline" }),
    )
    .await
    .expect(200, None);
    let id = app.booking(rider, PICKUP.0, PICKUP.1).await;

    // Act
    let reply = assign(&app, id).await;

    // Assert
    reply.expect(200, None);
    let assigned = &reply.data()["booking"];
    assert_eq!(assigned["id"], json!(id));
    assert_eq!(assigned["status"], json!("assigned"));
    assert_eq!(
        assigned["driver_id"],
        json!(nearest),
        "nearest online driver"
    );
    assert!(
        assigned["fencing_token"].as_i64().expect("token") >= 1,
        "token: {assigned:#}"
    );
    assert!(assigned["assigned_at"].is_string(), "{assigned:#}");
    let claimed = &reply.data()["driver"];
    assert_eq!(claimed["id"], json!(nearest));
    assert_eq!(claimed["status"], json!("busy"));
    assert_eq!(claimed["current_booking_id"], json!(id));

    let stored = booking(&app, id).await;
    assert_eq!(stored["status"], json!("assigned"));
    assert_eq!(stored["driver_id"], json!(nearest));
    assert_eq!(stored["driver_name"], json!("Test Driver"));
    assert!(stored["driver_phone"].is_string(), "{stored:#}");
    let stored_driver = driver(&app, nearest).await;
    assert_eq!(stored_driver["status"], json!("busy"));
    assert_eq!(stored_driver["current_booking_id"], json!(id));
    assert_eq!(
        nearby_ids(&app).await,
        vec![middle, far],
        "a busy driver is not offered"
    );
}

#[actix_web::test]
async fn assigning_an_unknown_booking_is_404() {
    // Arrange
    let app = spawn_app().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;

    // Act
    let reply = assign(&app, 999_999).await;

    // Assert
    reply.expect(404, Some("booking_not_found"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn assign_with_an_id_that_is_not_a_positive_integer_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;

    for raw in ["abc", "0", "-1"] {
        // Act
        let reply = app
            .post(format!("/api/bookings/{raw}/assign"), json!(null))
            .await;

        // Assert
        assert_invalid(&format!("id {raw:?}"), &reply, "id");
    }
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn assigning_a_booking_that_is_not_pending_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    app.online_driver(PICKUP.0 + 0.001, PICKUP.1).await;
    let (id, first_driver) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    let before = app.fingerprint().await;

    // Act
    let reply = assign(&app, id).await;

    // Assert
    reply.expect(409, Some("booking_not_pending"));
    assert_eq!(reply.data()["booking"]["id"], json!(id));
    assert_eq!(reply.data()["booking"]["status"], json!("assigned"));
    assert_eq!(reply.data()["booking"]["driver_id"], json!(first_driver));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn assign_without_an_online_driver_in_range_is_a_conflict_and_the_booking_stays_pending() {
    // Arrange: one driver online 11 km away, one offline at the pickup.
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0 + 0.1, PICKUP.1).await;
    let offline = app.online_driver(PICKUP.0, PICKUP.1).await;
    app.patch(
        format!("/api/drivers/{offline}/status"),
        json!({ "status": "offline" }),
    )
    .await
    .expect(200, None);
    let id = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;

    // Act
    let reply = assign(&app, id).await;

    // Assert
    reply.expect(409, Some("no_drivers_available"));
    assert_eq!(reply.data()["booking"]["id"], json!(id));
    assert_eq!(reply.data()["booking"]["status"], json!("pending"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
    assert_eq!(booking(&app, id).await["status"], json!("pending"));
}

#[actix_web::test]
async fn a_premium_booking_only_gets_a_premium_driver() {
    // Arrange: a standard driver at the pickup, nothing premium yet.
    let app = spawn_app().await;
    let rider = app.rider().await;
    let standard = app.online_driver(PICKUP.0, PICKUP.1).await;
    let mut body = booking_body(rider, PICKUP.0, PICKUP.1);
    body["vehicle_type"] = json!("premium");
    let created = app.post("/api/bookings", body).await;
    created.expect(201, None);
    let id = created.data()["id"].as_i64().expect("booking id");
    let before = app.fingerprint().await;

    // Act: no premium driver around.
    let refused = assign(&app, id).await;

    // Assert
    refused.expect(409, Some("no_drivers_available"));
    assert_eq!(app.fingerprint().await, before, "nothing written");

    // Arrange: a premium driver farther away than the standard one.
    let premium = online_driver_of(&app, "premium", PICKUP.0 + 0.002, PICKUP.1).await;

    // Act
    let reply = assign(&app, id).await;

    // Assert
    reply.expect(200, None);
    assert_eq!(reply.data()["booking"]["driver_id"], json!(premium));
    assert_eq!(reply.data()["driver"]["vehicle_type"], json!("premium"));
    assert_eq!(driver(&app, standard).await["status"], json!("online"));
}

// ---- accept ----

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

// ---- cancel ----

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

// ---- complete ----

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
