//! `/api/drivers`: registration, listing, location updates, availability and the nearby search,
//! with every refusal of each.

use serde_json::{json, Value};

use crate::support::app::{spawn_app, TestApp};
use crate::support::fixtures::{Api, PICKUP};
use crate::support::reply::{assert_invalid, Reply};

/// Registers an offline driver without a location; returns its id.
async fn offline_driver(app: &TestApp, phone: &str) -> i64 {
    let reply = app
        .post(
            "/api/drivers",
            json!({ "name": "Offline Driver", "phone": phone }),
        )
        .await;
    reply.expect(201, None);
    reply.data()["id"].as_i64().expect("driver id")
}

/// The ids listed by a nearby search, in order.
fn ids(reply: &Reply) -> Vec<i64> {
    reply
        .data()
        .as_array()
        .unwrap_or_else(|| panic!("data is a list: {:#}", reply.body))
        .iter()
        .map(|d| d["id"].as_i64().expect("id"))
        .collect()
}

#[actix_web::test]
async fn registering_a_driver_stores_it_offline_with_every_field() {
    // Arrange
    let app = spawn_app().await;
    let body = json!({
        "name": "Dan Driver",
        "phone": "+1 646 555 0199",
        "email": "dan@example.com",
        "vehicle_type": "premium"
    });

    // Act
    let created = app.post("/api/drivers", body).await;

    // Assert
    created.expect(201, None);
    assert_eq!(created.data()["status"], json!("offline"));
    let id = created.data()["id"].as_i64().expect("driver id");
    let stored = app.get(format!("/api/drivers/{id}")).await;
    stored.expect(200, None);
    let driver = stored.data();
    for field in [
        "id",
        "name",
        "phone",
        "email",
        "lat",
        "lng",
        "status",
        "vehicle_type",
        "rating",
        "current_booking_id",
    ] {
        assert!(driver.get(field).is_some(), "{field} missing: {driver:#}");
    }
    assert_eq!(driver["id"], json!(id));
    assert_eq!(driver["name"], json!("Dan Driver"));
    assert_eq!(driver["phone"], json!("+1 646 555 0199"));
    assert_eq!(driver["email"], json!("dan@example.com"));
    assert_eq!(driver["lat"], Value::Null);
    assert_eq!(driver["lng"], Value::Null);
    assert_eq!(driver["status"], json!("offline"));
    assert_eq!(driver["vehicle_type"], json!("premium"));
    assert!(driver["rating"].is_number(), "rating: {driver:#}");
    assert_eq!(driver["current_booking_id"], Value::Null);
}

#[actix_web::test]
async fn a_driver_registered_without_a_vehicle_type_is_standard() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let id = offline_driver(&app, "555-0200").await;

    // Assert
    let stored = app.get(format!("/api/drivers/{id}")).await;
    stored.expect(200, None);
    assert_eq!(stored.data()["vehicle_type"], json!("standard"));
    assert_eq!(stored.data()["email"], Value::Null);
}

#[actix_web::test]
async fn a_second_driver_with_the_same_phone_is_rejected_as_a_duplicate() {
    // Arrange
    let app = spawn_app().await;
    offline_driver(&app, "+1 555 000 2222").await;
    let before = app.fingerprint().await;

    // Act
    let reply = app
        .post(
            "/api/drivers",
            json!({ "name": "Copy", "phone": "+1 555 000 2222" }),
        )
        .await;

    // Assert
    reply.expect(409, Some("duplicate_phone"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn driver_registration_with_a_missing_or_invalid_field_is_rejected_naming_it() {
    // Arrange
    let app = spawn_app().await;
    let cases = [
        ("missing name", json!({ "phone": "555-0201" }), "name"),
        ("missing phone", json!({ "name": "Dan" }), "phone"),
        (
            "phone with letters",
            json!({ "name": "Dan", "phone": "nope" }),
            "phone",
        ),
        (
            "bad email",
            json!({ "name": "Dan", "phone": "555-0201", "email": "dan@" }),
            "email",
        ),
        (
            "bad vehicle type",
            json!({ "name": "Dan", "phone": "555-0201", "vehicle_type": "Big Van" }),
            "vehicle_type",
        ),
    ];

    for (case, body, field) in cases {
        let before = app.fingerprint().await;

        // Act
        let reply = app.post("/api/drivers", body).await;

        // Assert
        assert_invalid(case, &reply, field);
        assert_eq!(app.fingerprint().await, before, "{case}: nothing written");
    }
}

#[actix_web::test]
async fn listing_drivers_returns_every_driver_with_a_count() {
    // Arrange
    let app = spawn_app().await;
    let mut created = vec![
        offline_driver(&app, "555-0301").await,
        offline_driver(&app, "555-0302").await,
        app.online_driver(PICKUP.0, PICKUP.1).await,
    ];

    // Act
    let reply = app.get("/api/drivers").await;

    // Assert
    reply.expect(200, None);
    assert_eq!(reply.body["count"], json!(3), "{:#}", reply.body);
    let mut listed = ids(&reply);
    listed.sort_unstable();
    created.sort_unstable();
    assert_eq!(listed, created);
}

#[actix_web::test]
async fn getting_an_unknown_driver_is_404_and_a_bad_id_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    offline_driver(&app, "555-0401").await;
    let before = app.fingerprint().await;

    // Act
    let unknown = app.get("/api/drivers/999999").await;
    let not_a_number = app.get("/api/drivers/abc").await;
    let zero = app.get("/api/drivers/0").await;

    // Assert
    unknown.expect(404, Some("driver_not_found"));
    assert_invalid("id abc", &not_a_number, "id");
    assert_invalid("id 0", &zero, "id");
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn updating_a_location_stores_it() {
    // Arrange
    let app = spawn_app().await;
    let id = offline_driver(&app, "555-0501").await;

    // Act
    let reply = app
        .post(
            format!("/api/drivers/{id}/location"),
            json!({ "lat": PICKUP.0, "lng": PICKUP.1 }),
        )
        .await;

    // Assert
    reply.expect(200, None);
    assert_eq!(reply.data()["lat"], json!(PICKUP.0));
    assert_eq!(reply.data()["lng"], json!(PICKUP.1));
    let stored = app.get(format!("/api/drivers/{id}")).await;
    assert_eq!(stored.data()["lat"], json!(PICKUP.0));
    assert_eq!(stored.data()["lng"], json!(PICKUP.1));
    assert_eq!(
        stored.data()["status"],
        json!("offline"),
        "a location does not change availability"
    );
}

#[actix_web::test]
async fn an_invalid_location_is_rejected_naming_the_field() {
    // Arrange
    let app = spawn_app().await;
    let id = app.online_driver(PICKUP.0, PICKUP.1).await;
    let cases = [
        (
            "lat above 90",
            json!({ "lat": 90.5, "lng": PICKUP.1 }),
            "lat",
        ),
        (
            "lat below -90",
            json!({ "lat": -91, "lng": PICKUP.1 }),
            "lat",
        ),
        (
            "lng above 180",
            json!({ "lat": PICKUP.0, "lng": 180.5 }),
            "lng",
        ),
        (
            "lng below -180",
            json!({ "lat": PICKUP.0, "lng": -181 }),
            "lng",
        ),
        (
            "lat as a string",
            json!({ "lat": "north", "lng": PICKUP.1 }),
            "lat",
        ),
        (
            "lng as a string",
            json!({ "lat": PICKUP.0, "lng": "-74" }),
            "lng",
        ),
        ("missing lng", json!({ "lat": PICKUP.0 }), "lng"),
    ];

    for (case, body, field) in cases {
        let before = app.fingerprint().await;

        // Act
        let reply = app.post(format!("/api/drivers/{id}/location"), body).await;

        // Assert
        assert_invalid(case, &reply, field);
        assert_eq!(app.fingerprint().await, before, "{case}: nothing written");
    }
}

#[actix_web::test]
async fn updating_the_location_of_an_unknown_driver_is_404() {
    // Arrange
    let app = spawn_app().await;
    let before = app.fingerprint().await;

    // Act
    let reply = app
        .post(
            "/api/drivers/999999/location",
            json!({ "lat": PICKUP.0, "lng": PICKUP.1 }),
        )
        .await;

    // Assert
    reply.expect(404, Some("driver_not_found"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn a_driver_with_a_location_goes_online_and_offline() {
    // Arrange
    let app = spawn_app().await;
    let id = offline_driver(&app, "555-0601").await;
    app.post(
        format!("/api/drivers/{id}/location"),
        json!({ "lat": PICKUP.0, "lng": PICKUP.1 }),
    )
    .await
    .expect(200, None);

    // Act
    let online = app
        .patch(
            format!("/api/drivers/{id}/status"),
            json!({ "status": "online" }),
        )
        .await;
    let after_online = app.get(format!("/api/drivers/{id}")).await;
    let offline = app
        .patch(
            format!("/api/drivers/{id}/status"),
            json!({ "status": "offline" }),
        )
        .await;
    let after_offline = app.get(format!("/api/drivers/{id}")).await;

    // Assert
    online.expect(200, None);
    assert_eq!(online.data()["status"], json!("online"));
    assert_eq!(after_online.data()["status"], json!("online"));
    offline.expect(200, None);
    assert_eq!(offline.data()["status"], json!("offline"));
    assert_eq!(after_offline.data()["status"], json!("offline"));
}

#[actix_web::test]
async fn a_status_other_than_online_or_offline_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    let id = app.online_driver(PICKUP.0, PICKUP.1).await;
    let cases = [
        (
            "busy is set by the system only",
            json!({ "status": "busy" }),
        ),
        ("unknown status", json!({ "status": "away" })),
        ("status as a number", json!({ "status": 1 })),
        ("missing status", json!({})),
    ];

    for (case, body) in cases {
        let before = app.fingerprint().await;

        // Act
        let reply = app.patch(format!("/api/drivers/{id}/status"), body).await;

        // Assert
        assert_invalid(case, &reply, "status");
        assert_eq!(app.fingerprint().await, before, "{case}: nothing written");
    }
}

#[actix_web::test]
async fn going_online_without_a_location_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let id = offline_driver(&app, "555-0701").await;
    let before = app.fingerprint().await;

    // Act
    let reply = app
        .patch(
            format!("/api/drivers/{id}/status"),
            json!({ "status": "online" }),
        )
        .await;

    // Assert
    reply.expect(409, Some("driver_location_unknown"));
    assert_eq!(reply.data()["driver"]["id"], json!(id));
    assert_eq!(reply.data()["driver"]["status"], json!("offline"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn changing_the_status_of_an_unknown_driver_is_404() {
    // Arrange
    let app = spawn_app().await;
    let before = app.fingerprint().await;

    // Act
    let reply = app
        .patch("/api/drivers/999999/status", json!({ "status": "offline" }))
        .await;

    // Assert
    reply.expect(404, Some("driver_not_found"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn changing_the_status_during_an_active_booking_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, driver) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;

    for to in ["offline", "online"] {
        let before = app.fingerprint().await;

        // Act
        let reply = app
            .patch(
                format!("/api/drivers/{driver}/status"),
                json!({ "status": to }),
            )
            .await;

        // Assert
        reply.expect(409, Some("driver_busy"));
        assert_eq!(reply.data()["driver"]["status"], json!("busy"), "to {to}");
        assert_eq!(
            reply.data()["driver"]["current_booking_id"],
            json!(booking),
            "to {to}"
        );
        assert_eq!(app.fingerprint().await, before, "to {to}: nothing written");
    }
}

#[actix_web::test]
async fn nearby_lists_only_online_drivers_in_range_nearest_first() {
    // Arrange: three online drivers around the pickup, created out of distance order.
    let app = spawn_app().await;
    let second = app.online_driver(PICKUP.0 + 0.002, PICKUP.1).await;
    let first = app.online_driver(PICKUP.0 + 0.001, PICKUP.1).await;
    let third = app.online_driver(PICKUP.0 + 0.003, PICKUP.1).await;
    let went_offline = app.online_driver(PICKUP.0, PICKUP.1).await;
    app.patch(
        format!("/api/drivers/{went_offline}/status"),
        json!({ "status": "offline" }),
    )
    .await
    .expect(200, None);
    let never_online = offline_driver(&app, "555-0801").await;
    app.post(
        format!("/api/drivers/{never_online}/location"),
        json!({ "lat": PICKUP.0, "lng": PICKUP.1 }),
    )
    .await
    .expect(200, None);
    // About 11 km north: outside the default 5 km radius.
    let far = app.online_driver(PICKUP.0 + 0.1, PICKUP.1).await;

    // Act
    let reply = app
        .get(format!(
            "/api/drivers/nearby?lat={}&lng={}",
            PICKUP.0, PICKUP.1
        ))
        .await;
    let wider = app
        .get(format!(
            "/api/drivers/nearby?lat={}&lng={}&radius=20",
            PICKUP.0, PICKUP.1
        ))
        .await;

    // Assert
    reply.expect(200, None);
    assert_eq!(ids(&reply), vec![first, second, third], "{:#}", reply.body);
    assert_eq!(reply.body["count"], json!(3));
    let distances: Vec<f64> = reply
        .data()
        .as_array()
        .expect("list")
        .iter()
        .map(|d| d["distance"].as_f64().expect("distance in km"))
        .collect();
    // 0.001° of latitude is about 111 m.
    for (i, km) in distances.iter().enumerate() {
        let expected = 0.111 * (i as f64 + 1.0);
        assert!(
            (km - expected).abs() < 0.01,
            "driver {i} distance {km} km, expected about {expected} km"
        );
    }
    for driver in reply.data().as_array().expect("list") {
        assert_eq!(driver["status"], json!("online"));
    }
    wider.expect(200, None);
    assert_eq!(ids(&wider), vec![first, second, third, far]);
}

#[actix_web::test]
async fn moving_an_online_driver_moves_it_in_the_nearby_search() {
    // Arrange
    let app = spawn_app().await;
    let id = app.online_driver(PICKUP.0, PICKUP.1).await;
    let nearby = format!("/api/drivers/nearby?lat={}&lng={}", PICKUP.0, PICKUP.1);
    assert_eq!(ids(&app.get(&nearby).await), vec![id]);

    // Act: about 22 km north.
    app.post(
        format!("/api/drivers/{id}/location"),
        json!({ "lat": PICKUP.0 + 0.2, "lng": PICKUP.1 }),
    )
    .await
    .expect(200, None);

    // Assert
    let reply = app.get(&nearby).await;
    reply.expect(200, None);
    assert_eq!(ids(&reply), Vec::<i64>::new(), "{:#}", reply.body);
}

#[actix_web::test]
async fn nearby_with_a_missing_or_invalid_query_is_rejected_naming_the_parameter() {
    // Arrange
    let app = spawn_app().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (lat, lng) = PICKUP;
    let cases = [
        ("missing lat", format!("lng={lng}"), "lat"),
        ("lat not a number", format!("lat=north&lng={lng}"), "lat"),
        ("lat out of range", format!("lat=91&lng={lng}"), "lat"),
        ("missing lng", format!("lat={lat}"), "lng"),
        ("lng out of range", format!("lat={lat}&lng=200"), "lng"),
        (
            "radius 0",
            format!("lat={lat}&lng={lng}&radius=0"),
            "radius",
        ),
        (
            "negative radius",
            format!("lat={lat}&lng={lng}&radius=-1"),
            "radius",
        ),
        (
            "radius over 100",
            format!("lat={lat}&lng={lng}&radius=100.5"),
            "radius",
        ),
        (
            "radius not a number",
            format!("lat={lat}&lng={lng}&radius=far"),
            "radius",
        ),
    ];

    for (case, query, field) in cases {
        let before = app.fingerprint().await;

        // Act
        let reply = app.get(format!("/api/drivers/nearby?{query}")).await;

        // Assert
        assert_invalid(case, &reply, field);
        assert_eq!(app.fingerprint().await, before, "{case}: nothing written");
    }
}

#[actix_web::test]
async fn a_radius_of_exactly_100_km_is_accepted() {
    // Arrange
    let app = spawn_app().await;
    let id = app.online_driver(PICKUP.0, PICKUP.1).await;

    // Act
    let reply = app
        .get(format!(
            "/api/drivers/nearby?lat={}&lng={}&radius=100",
            PICKUP.0, PICKUP.1
        ))
        .await;

    // Assert
    reply.expect(200, None);
    assert_eq!(ids(&reply), vec![id]);
}
