//! What a good token decides besides yes or no: whose idempotency key it is, how much of a
//! driver `nearby` shows, and who the audit trail names for each change.

use reqwest::Method;
use serde_json::json;

use super::world;
use crate::support::app::{spawn_app, TestApp};
use crate::support::fixtures::{booking_body, Api, PICKUP};
use crate::support::reply::Reply;

#[actix_web::test]
async fn the_same_idempotency_key_from_two_riders_makes_two_bookings() {
    // Arrange
    let app = spawn_app().await;
    let (a, b) = (app.rider().await, app.rider().await);
    let send = |rider: i64| {
        let token = crate::support::auth::token(&format!("rider:{rider}"));
        let app = &app;
        async move {
            let request = app
                .client
                .post(format!("{}/api/bookings", app.address))
                .bearer_auth(token)
                .header("Idempotency-Key", "shared-key-1")
                .json(&booking_body(rider, PICKUP.0, PICKUP.1));
            let reply = Reply::send(request).await.unwrap();
            (reply.status.as_u16(), reply.data()["rider_id"].as_i64())
        }
    };

    // Act
    let (first, second) = (send(a).await, send(b).await);

    // Assert: each rider got its own booking, not the other's stored answer.
    assert_eq!(first, (201, Some(a)));
    assert_eq!(second, (201, Some(b)));
}

#[actix_web::test]
async fn nearby_shows_riders_and_drivers_the_car_not_the_person() {
    // Arrange: driver 1 is busy with the booking, driver 2 is online nearby.
    let w = world().await;
    let path = format!(
        "/api/drivers/nearby?lat={}&lng={}&radius=5",
        PICKUP.0, PICKUP.1
    );

    // Act
    let rider = w
        .app
        .as_subject(&format!("rider:{}", w.rider_b), Method::GET, &path, None)
        .await;
    let ops = w.app.get(&path).await;

    // Assert: no id or person, the position on the 0.002° grid, the distance to 0.1 km.
    rider.expect(200, None);
    let car = &rider.data()[0];
    for personal in ["id", "name", "phone", "email", "current_booking_id"] {
        assert!(car.get(personal).is_none(), "{personal} shown: {car:#}");
    }
    for coordinate in ["lat", "lng"] {
        let steps = car[coordinate].as_f64().unwrap() / 0.002;
        assert!(
            (steps - steps.round()).abs() < 1e-6,
            "{coordinate}: {car:#}"
        );
    }
    let tenths = car["distance"].as_f64().unwrap() * 10.0;
    assert!((tenths - tenths.round()).abs() < 1e-9, "{car:#}");
    ops.expect(200, None);
    let exact = &ops.data()[0];
    assert_eq!(exact["id"], json!(w.driver_2));
    assert!(exact["name"].is_string() && exact["phone"].is_string());
    assert_eq!(exact["lat"], json!(PICKUP.0 + 0.02));
}

/// The booking's trail as PostgreSQL holds it: (status moved to, node that wrote it, actor).
async fn trail(app: &TestApp, booking: i64) -> Vec<(String, String, Option<String>)> {
    let events = crate::support::database::events_of(&mut app.db().await, booking).await;
    events
        .into_iter()
        .map(|row| (row.to_status, row.node_id, row.actor))
        .collect()
}

#[actix_web::test]
async fn the_audit_trail_names_who_asked_for_each_change_on_whichever_node_wrote_it() {
    // Arrange: two nodes; the rider's booking is assigned on n1, so n1's actor owns it and
    // what reaches n2 is forwarded there.
    let n1 = spawn_app().await;
    let n2 = n1.second_node().await;
    let rider = n1.rider().await;
    let driver = n1.online_driver(PICKUP.0, PICKUP.1).await;
    let (rider_sub, driver_sub) = (format!("rider:{rider}"), format!("driver:{driver}"));
    let created = n1
        .as_subject(
            &rider_sub,
            Method::POST,
            "/api/bookings",
            Some(booking_body(rider, PICKUP.0, PICKUP.1)),
        )
        .await;
    created.expect(201, None);
    let booking = created.data()["id"].as_i64().unwrap();

    // Act: each step by a different caller, the later ones through n2.
    let assign = format!("/api/bookings/{booking}/assign");
    n1.as_subject(&rider_sub, Method::POST, &assign, None)
        .await
        .expect(200, None);
    let accept = format!("/api/bookings/{booking}/accept");
    let accepted = n2
        .as_subject(
            &driver_sub,
            Method::POST,
            &accept,
            Some(json!({ "driver_id": driver })),
        )
        .await;
    accepted.expect(200, None);
    let complete = format!("/api/bookings/{booking}/complete");
    let completed = n2
        .as_subject(
            "ops:support-7",
            Method::POST,
            &complete,
            Some(json!({ "driver_id": driver, "actual_fare": 21.5 })),
        )
        .await;
    completed.expect(200, None);
    let other = n1.booking(rider, PICKUP.0 + 0.5, PICKUP.1).await;
    n2.as_subject(
        &rider_sub,
        Method::POST,
        format!("/api/bookings/{other}/cancel"),
        Some(json!({ "user_id": rider, "user_type": "rider" })),
    )
    .await
    .expect(200, None);

    // Assert: in PostgreSQL, every change names its caller; the forwarded ones were written
    // by n1 and still name the caller who reached n2.
    assert_eq!(accepted.served_by.as_deref(), Some("n1"));
    assert_eq!(completed.served_by.as_deref(), Some("n1"));
    let named = |status: &str, node: &str, actor: &str| {
        (status.to_owned(), node.to_owned(), Some(actor.to_owned()))
    };
    assert_eq!(
        trail(&n1, booking).await,
        [
            named("pending", "n1", &rider_sub),
            named("assigned", "n1", &rider_sub),
            named("accepted", "n1", &driver_sub),
            named("completed", "n1", "ops:support-7"),
        ]
    );
    let other_trail = trail(&n1, other).await;
    assert_eq!(other_trail[0].2.as_deref(), Some("ops:tests"));
    assert_eq!(other_trail[1].0, "cancelled");
    assert_eq!(other_trail[1].2.as_deref(), Some(rider_sub.as_str()));
    // The events endpoint shows the same.
    let events = n2.get(format!("/api/bookings/{booking}/events")).await;
    let actors: Vec<&str> = events
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(
        actors,
        [&rider_sub, &rider_sub, &driver_sub, "ops:support-7"]
    );
    // The rider learns that support acted, not who.
    let seen_by_rider = n1
        .as_subject(
            &rider_sub,
            Method::GET,
            format!("/api/bookings/{booking}/events"),
            None,
        )
        .await;
    seen_by_rider.expect(200, None);
    assert_eq!(seen_by_rider.data()[3]["actor"], "ops");
    assert_eq!(seen_by_rider.data()[2]["actor"], driver_sub.as_str());
}
