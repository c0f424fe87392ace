//! `POST /api/bookings` and `GET /api/bookings/:id`: a new booking is pending under the creation
//! token, owned by the creating node, and every malformed, mistyped or out-of-range request is
//! refused without writing anything.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::app::{spawn_app, TestApp};
use crate::support::fixtures::{booking_body, Api, PICKUP};
use crate::support::poll::eventually;
use crate::support::reply::assert_invalid;

/// A valid booking body for `rider` with `field` set to `value`.
fn body_with(rider: i64, field: &str, value: Value) -> Value {
    let mut body = booking_body(rider, PICKUP.0, PICKUP.1);
    body[field] = value;
    body
}

/// A valid booking body for `rider` without `field`.
fn body_without(rider: i64, field: &str) -> Value {
    let mut body = booking_body(rider, PICKUP.0, PICKUP.1);
    body.as_object_mut().expect("object").remove(field);
    body
}

/// Posts every case (a JSON body) and checks each is a 400 naming its field with nothing written.
async fn assert_all_refused(app: &TestApp, cases: Vec<(&str, Value, &str)>) {
    for (case, body, field) in cases {
        let before = app.fingerprint().await;

        // Act
        let reply = app.post("/api/bookings", body).await;

        // Assert
        assert_invalid(case, &reply, field);
        assert_eq!(app.fingerprint().await, before, "{case}: nothing written");
    }
}

#[actix_web::test]
async fn creating_a_booking_stores_it_pending_owned_by_this_node_under_the_creation_token() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;

    // Act
    let created = app
        .post("/api/bookings", booking_body(rider, PICKUP.0, PICKUP.1))
        .await;

    // Assert
    created.expect(201, None);
    let booking = created.data();
    let id = booking["id"].as_i64().expect("booking id");
    assert_eq!(booking["status"], json!("pending"));
    assert_eq!(booking["fencing_token"], json!(1));
    assert_eq!(booking["rider_id"], json!(rider));
    assert_eq!(booking["driver_id"], Value::Null);
    assert_eq!(booking["pickup_lat"], json!(PICKUP.0));
    assert_eq!(booking["pickup_lng"], json!(PICKUP.1));
    assert_eq!(booking["dropoff_lat"], json!(40.7589));
    assert_eq!(booking["dropoff_lng"], json!(-73.9851));
    assert_eq!(booking["estimated_fare"], json!(15.5));
    assert_eq!(booking["actual_fare"], Value::Null);
    assert_eq!(booking["vehicle_type"], Value::Null);
    assert!(booking["created_at"].is_string(), "created_at: {booking:#}");
    for unset in ["assigned_at", "accepted_at", "cancelled_at", "completed_at"] {
        assert_eq!(booking[unset], Value::Null, "{unset}");
    }
    let stored = app.get(format!("/api/bookings/{id}")).await;
    stored.expect(200, None);
    assert_eq!(stored.data()["status"], json!("pending"));
    assert_eq!(stored.data()["rider_id"], json!(rider));
    assert_eq!(stored.data()["estimated_fare"], json!(15.5));
    assert_eq!(stored.data()["fencing_token"], json!(1));
}

#[actix_web::test]
async fn the_creating_node_owns_a_new_booking_so_its_first_action_needs_no_token_bump() {
    // Arrange: two nodes on one database; the booking is created through n1.
    let n1 = spawn_app().await;
    let n2 = n1.second_node().await;
    let rider = n1.rider().await;
    n1.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = n1.booking(rider, PICKUP.0, PICKUP.1).await;
    let held = eventually(Duration::from_secs(2), || async {
        n1.lease_in_redis(booking).is_some()
    })
    .await;
    assert!(held, "the creating node took the booking's lease");

    // Act: the first action reaches the other node.
    let assigned = n2
        .post(format!("/api/bookings/{booking}/assign"), json!({}))
        .await;

    // Assert: forwarded to the owner, written under the creation token, with no activation
    // commit in between (the trail has one token).
    assigned.expect(200, None);
    assert_eq!(assigned.served_by.as_deref(), Some(n1.node_id.as_str()));
    assert_eq!(assigned.data()["booking"]["fencing_token"], json!(1));
    let trail = n1.get(format!("/api/bookings/{booking}/events")).await;
    let tokens: Vec<i64> = trail
        .data()
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["fencing_token"].as_i64().expect("token"))
        .collect();
    assert_eq!(tokens, [1, 1]);
}

#[actix_web::test]
async fn getting_a_booking_shows_the_riders_name_and_phone() {
    // Arrange
    let app = spawn_app().await;
    let rider = app
        .post(
            "/api/riders",
            json!({ "name": "Rita Rider", "phone": "+1 555 123 4567" }),
        )
        .await
        .data()["id"]
        .as_i64()
        .expect("rider id");
    let id = app.booking(rider, PICKUP.0, PICKUP.1).await;

    // Act
    let reply = app.get(format!("/api/bookings/{id}")).await;

    // Assert
    reply.expect(200, None);
    assert_eq!(reply.data()["id"], json!(id));
    assert_eq!(reply.data()["rider_name"], json!("Rita Rider"));
    assert_eq!(reply.data()["rider_phone"], json!("+1 555 123 4567"));
    assert_eq!(reply.data()["driver_name"], Value::Null);
    assert_eq!(reply.data()["driver_phone"], Value::Null);
}

#[actix_web::test]
async fn a_booking_with_a_vehicle_type_keeps_it() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;

    // Act
    let created = app
        .post(
            "/api/bookings",
            body_with(rider, "vehicle_type", json!("premium")),
        )
        .await;

    // Assert
    created.expect(201, None);
    let id = created.data()["id"].as_i64().expect("booking id");
    let stored = app.get(format!("/api/bookings/{id}")).await;
    assert_eq!(stored.data()["vehicle_type"], json!("premium"));
}

#[actix_web::test]
async fn malformed_json_is_rejected_naming_the_body() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let before = app.fingerprint().await;

    // Act
    let reply = app
        .post_raw(
            "/api/bookings",
            &format!(r#"{{"rider_id": {rider}, "pickup_lat": 40.7"#),
        )
        .await;

    // Assert
    assert_invalid("truncated JSON", &reply, "body");
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn a_json_array_body_is_rejected_naming_the_body() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let before = app.fingerprint().await;

    // Act: the fields in declaration order, which serde would accept for a struct.
    let reply = app
        .post_raw(
            "/api/bookings",
            &format!("[{rider}, 40.7128, -74.006, 40.7589, -73.9851, 15.5, null]"),
        )
        .await;

    // Assert
    assert_invalid("array body", &reply, "body");
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn an_empty_body_is_rejected_naming_the_first_missing_field() {
    // Arrange
    let app = spawn_app().await;
    app.rider().await;
    let before = app.fingerprint().await;

    // Act
    let reply = app.post_raw("/api/bookings", "").await;

    // Assert
    assert_invalid("empty body", &reply, "rider_id");
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn a_missing_field_is_rejected_naming_it() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let cases = [
        "rider_id",
        "pickup_lat",
        "pickup_lng",
        "dropoff_lat",
        "dropoff_lng",
        "estimated_fare",
    ]
    .into_iter()
    .map(|field| (field, body_without(rider, field), field))
    .collect();

    // Act + Assert
    assert_all_refused(&app, cases).await;
}

#[actix_web::test]
async fn a_field_of_the_wrong_type_is_rejected_naming_it() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let cases = vec![
        (
            "rider_id as a string",
            body_with(rider, "rider_id", json!(rider.to_string())),
            "rider_id",
        ),
        (
            "rider_id as a fraction",
            body_with(rider, "rider_id", json!(1.5)),
            "rider_id",
        ),
        (
            "estimated_fare as a word",
            body_with(rider, "estimated_fare", json!("cheap")),
            "estimated_fare",
        ),
        (
            "pickup_lat as a string",
            body_with(rider, "pickup_lat", json!("40.7128")),
            "pickup_lat",
        ),
        (
            "dropoff_lng as a boolean",
            body_with(rider, "dropoff_lng", json!(true)),
            "dropoff_lng",
        ),
        (
            "vehicle_type as a number",
            body_with(rider, "vehicle_type", json!(5)),
            "vehicle_type",
        ),
    ];

    // Act + Assert
    assert_all_refused(&app, cases).await;
}

#[actix_web::test]
async fn out_of_range_coordinates_are_rejected_naming_the_field() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let cases = vec![
        (
            "pickup_lat above 90",
            body_with(rider, "pickup_lat", json!(90.01)),
            "pickup_lat",
        ),
        (
            "pickup_lng below -180",
            body_with(rider, "pickup_lng", json!(-180.5)),
            "pickup_lng",
        ),
        (
            "dropoff_lat below -90",
            body_with(rider, "dropoff_lat", json!(-91)),
            "dropoff_lat",
        ),
        (
            "dropoff_lng above 180",
            body_with(rider, "dropoff_lng", json!(181)),
            "dropoff_lng",
        ),
    ];

    // Act + Assert
    assert_all_refused(&app, cases).await;
}

#[actix_web::test]
async fn a_non_positive_estimated_fare_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let cases = vec![
        (
            "zero fare",
            body_with(rider, "estimated_fare", json!(0)),
            "estimated_fare",
        ),
        (
            "negative fare",
            body_with(rider, "estimated_fare", json!(-12.5)),
            "estimated_fare",
        ),
    ];

    // Act + Assert
    assert_all_refused(&app, cases).await;
}

#[actix_web::test]
async fn a_non_positive_rider_id_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let cases = vec![
        (
            "rider_id 0",
            body_with(rider, "rider_id", json!(0)),
            "rider_id",
        ),
        (
            "rider_id -1",
            body_with(rider, "rider_id", json!(-1)),
            "rider_id",
        ),
    ];

    // Act + Assert
    assert_all_refused(&app, cases).await;
}

#[actix_web::test]
async fn a_booking_for_an_unknown_rider_is_404() {
    // Arrange
    let app = spawn_app().await;
    app.rider().await;
    let before = app.fingerprint().await;

    // Act
    let reply = app
        .post("/api/bookings", booking_body(999_999, PICKUP.0, PICKUP.1))
        .await;

    // Assert
    reply.expect(404, Some("rider_not_found"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn getting_an_unknown_booking_is_404_and_a_bad_id_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.booking(rider, PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;

    // Act
    let unknown = app.get("/api/bookings/999999").await;
    let not_a_number = app.get("/api/bookings/abc").await;

    // Assert
    unknown.expect(404, Some("booking_not_found"));
    assert_invalid("id abc", &not_a_number, "id");
    assert_eq!(app.fingerprint().await, before, "nothing written");
}
