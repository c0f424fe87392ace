//! `assign`: the nearest online driver of the booking's vehicle type gets it, or nobody does.

use serde_json::json;

use super::{booking, driver, nearby_ids};
use crate::support::app::{spawn_app, TestApp};
use crate::support::fixtures::{booking_body, Api, PICKUP};
use crate::support::reply::{assert_invalid, Reply};

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
