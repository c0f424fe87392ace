//! `Idempotency-Key`: a repeat of a request gets the first answer and changes nothing; the same
//! key on another request is refused; concurrent copies apply once.

use futures::future::join_all;
use serde_json::{json, Value};

use std::time::Duration;

use diesel_async::RunQueryDsl;

use crate::support::app::{spawn_app, spawn_app_with, TestApp};
use crate::support::database::count;
use crate::support::fixtures::{booking_body, Api, PICKUP};
use crate::support::poll::eventually;

/// POST with an Idempotency-Key: (status, raw body, replayed?).
async fn post_with_key(app: &TestApp, path: &str, key: &str, body: &Value) -> (u16, String, bool) {
    let response = app
        .client
        .post(format!("{}{path}", app.address))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let replayed = response.headers().contains_key("idempotency-replayed");
    (status, response.text().await.unwrap(), replayed)
}

async fn bookings_of(app: &TestApp, rider: i64) -> usize {
    let listed = app
        .get(format!("/api/users/{rider}/bookings?user_type=rider"))
        .await;
    listed.data().as_array().unwrap().len()
}

#[actix_web::test]
async fn a_repeated_create_gets_the_first_answer_and_creates_nothing() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let body = booking_body(rider, PICKUP.0, PICKUP.1);

    // Act
    let first = post_with_key(&app, "/api/bookings", "create-1", &body).await;
    let again = post_with_key(&app, "/api/bookings", "create-1", &body).await;

    // Assert: the very same answer, marked as a replay, and one booking.
    assert_eq!(first.0, 201, "{}", first.1);
    assert!(!first.2);
    assert_eq!((again.0, &again.1), (201, &first.1));
    assert!(again.2, "the repeat says it is one");
    assert_eq!(bookings_of(&app, rider).await, 1);
}

#[actix_web::test]
async fn a_key_reused_for_another_request_is_refused_and_writes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let first = post_with_key(
        &app,
        "/api/bookings",
        "create-2",
        &booking_body(rider, PICKUP.0, PICKUP.1),
    )
    .await;
    assert_eq!(first.0, 201);
    let before = app.fingerprint().await;

    // Act: same key, another pickup.
    let other = post_with_key(
        &app,
        "/api/bookings",
        "create-2",
        &booking_body(rider, PICKUP.0 + 0.01, PICKUP.1),
    )
    .await;

    // Assert
    assert_eq!(other.0, 422, "{}", other.1);
    let reply: Value = serde_json::from_str(&other.1).unwrap();
    assert_eq!(reply["error"], "idempotency_key_reused");
    assert_eq!(reply["success"], false);
    assert_eq!(app.fingerprint().await, before);
}

#[actix_web::test]
async fn concurrent_copies_of_one_keyed_request_create_one_booking() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let body = booking_body(rider, PICKUP.0, PICKUP.1);

    // Act: 20 copies at once.
    let replies =
        join_all((0..20).map(|_| post_with_key(&app, "/api/bookings", "create-3", &body))).await;

    // Assert: every copy got the same booking, and there is one.
    let ids: Vec<i64> = replies
        .iter()
        .map(|(status, text, _)| {
            assert_eq!(*status, 201, "{text}");
            serde_json::from_str::<Value>(text).unwrap()["data"]["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(bookings_of(&app, rider).await, 1);
}

#[actix_web::test]
async fn a_malformed_key_is_refused_with_the_header_named() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let body = booking_body(rider, PICKUP.0, PICKUP.1);
    let before = app.fingerprint().await;

    for (case, key) in [
        ("too long", "k".repeat(256)),
        ("not printable", "a b".to_owned()),
    ] {
        // Act
        let (status, text, _) = post_with_key(&app, "/api/bookings", &key, &body).await;

        // Assert
        assert_eq!(status, 400, "{case}: {text}");
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reply["data"]["field"], json!("Idempotency-Key"), "{case}");
    }
    assert_eq!(app.fingerprint().await, before);
}

/// The raw answer to an accept of `booking` by `driver` sent to `app` with `key`.
async fn accept_with_key(
    app: &TestApp,
    booking: i64,
    driver: i64,
    key: &str,
) -> (u16, String, bool) {
    let path = format!("/api/bookings/{booking}/accept");
    post_with_key(app, &path, key, &json!({ "driver_id": driver })).await
}

/// How many times the trail shows `booking` moving to `status`.
async fn moves_to(app: &TestApp, booking: i64, status: &str) -> usize {
    let events = app.get(format!("/api/bookings/{booking}/events")).await;
    events
        .data()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["to_status"] == status)
        .count()
}

#[actix_web::test]
async fn a_repeated_accept_gets_the_first_answer_not_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, driver) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;

    // Act: the driver's app retries an accept whose answer it never saw.
    let first = accept_with_key(&app, booking, driver, "accept-1").await;
    let again = accept_with_key(&app, booking, driver, "accept-1").await;

    // Assert: the same 200 and body, one accept in the trail. (Without the key the repeat is a
    // 409: the booking is no longer assigned.)
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!((again.0, &again.1, again.2), (200, &first.1, true));
    assert_eq!(moves_to(&app, booking, "accepted").await, 1);
    let unkeyed = app
        .post(
            format!("/api/bookings/{booking}/accept"),
            json!({ "driver_id": driver }),
        )
        .await;
    unkeyed.expect(409, Some("booking_not_assigned"));
}

#[actix_web::test]
async fn concurrent_copies_of_a_keyed_assign_assign_once_and_answer_alike() {
    // Arrange: one pending booking, several free drivers.
    let app = spawn_app().await;
    let rider = app.rider().await;
    for _ in 0..3 {
        app.online_driver(PICKUP.0, PICKUP.1).await;
    }
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let path = format!("/api/bookings/{booking}/assign");
    let empty = json!({});

    // Act
    let replies = join_all((0..10).map(|_| post_with_key(&app, &path, "assign-1", &empty))).await;

    // Assert: every copy heard the one assignment.
    for (status, text, _) in &replies {
        assert_eq!(*status, 200, "{text}");
        assert_eq!(text, &replies[0].1);
    }
    assert_eq!(moves_to(&app, booking, "assigned").await, 1);
}

#[actix_web::test]
async fn a_keyed_accept_repeated_through_another_node_gets_the_first_answer() {
    // Arrange: two nodes; n1 owns the assigned booking.
    let n1 = spawn_app().await;
    let n2 = n1.second_node().await;
    let rider = n1.rider().await;
    n1.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, driver) = n1.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;

    // Act: the accept goes through n2 (forwarded to n1 with its key), the retry through n1.
    let first = accept_with_key(&n2, booking, driver, "accept-2").await;
    let again = accept_with_key(&n1, booking, driver, "accept-2").await;

    // Assert
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!((again.0, &again.1, again.2), (200, &first.1, true));
    assert_eq!(moves_to(&n1, booking, "accepted").await, 1);
}

#[actix_web::test]
async fn repeated_rider_driver_and_location_posts_get_their_first_answers() {
    // Arrange
    let app = spawn_app().await;
    let phone = format!(
        "+1 777 {}",
        &uuid::Uuid::new_v4().as_u128().to_string()[..10]
    );
    let rider = json!({ "name": "Keyed Rider", "phone": phone });
    let driver = json!({ "name": "Keyed Driver", "phone": phone });

    // Act / Assert: each POST twice with its key; the repeat is the first answer, not a 409
    // for the phone number the first one took.
    for (path, key, body) in [
        ("/api/riders".to_owned(), "rider-1", rider),
        ("/api/drivers".to_owned(), "driver-1", driver),
    ] {
        let first = post_with_key(&app, &path, key, &body).await;
        let again = post_with_key(&app, &path, key, &body).await;
        assert_eq!(first.0, 201, "{path}: {}", first.1);
        assert_eq!(
            (again.0, &again.1, again.2),
            (201, &first.1, true),
            "{path}"
        );
    }
    let driver_id = app.online_driver(PICKUP.0, PICKUP.1).await;
    let path = format!("/api/drivers/{driver_id}/location");
    let to = json!({ "lat": PICKUP.0 + 0.001, "lng": PICKUP.1 });
    let first = post_with_key(&app, &path, "location-1", &to).await;
    let again = post_with_key(&app, &path, "location-1", &to).await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!((again.0, &again.1, again.2), (200, &first.1, true));
}

async fn stored_keys(app: &TestApp) -> i64 {
    count(
        &mut app.db().await,
        "SELECT count(*) AS n FROM idempotency_keys",
    )
    .await
}

#[actix_web::test]
async fn expired_keys_are_purged_in_batches_and_a_later_retry_is_a_new_request() {
    // Arrange: a one-hour retention, purged every 100 ms in batches of 1,000; a key stored now,
    // one stored two hours ago by a real request, and 2,500 more that old.
    let app = spawn_app_with(|s| {
        s.idempotency.retention_secs = 3600;
        s.idempotency.purge_every_ms = 100;
        s.idempotency.purge_batch = 1000;
    })
    .await;
    let rider = app.rider().await;
    let body = booking_body(rider, PICKUP.0, PICKUP.1);
    let old = post_with_key(&app, "/api/bookings", "old", &body).await;
    assert_eq!(old.0, 201, "{}", old.1);
    let mut conn = app.db().await;
    diesel::sql_query(
        "UPDATE idempotency_keys SET created_at = now() - interval '2 hours' WHERE key = 'old';
         ",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status, body, created_at)
         SELECT 'ops:test', 'bulk-' || i, repeat('0', 64), 200, '{}', now() - interval '2 hours'
         FROM generate_series(1, 2500) i",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let fresh = post_with_key(&app, "/api/bookings", "fresh", &body).await;
    assert_eq!(fresh.0, 201, "{}", fresh.1);

    // Act: the purge runs.
    let purged = eventually(Duration::from_secs(5), || async {
        stored_keys(&app).await == 1
    })
    .await;

    // Assert: every expired key went, the fresh one stayed and is still recognised; a retry of
    // the expired one is decided again, as a new request.
    assert!(purged, "{} keys left", stored_keys(&app).await);
    let again = post_with_key(&app, "/api/bookings", "fresh", &body).await;
    assert!(again.2, "a key within its retention is still recognised");
    let retried = post_with_key(&app, "/api/bookings", "old", &body).await;
    assert_eq!(retried.0, 201, "{}", retried.1);
    assert!(!retried.2, "an expired key is forgotten");
    assert_ne!(retried.1, old.1);
    assert_eq!(bookings_of(&app, rider).await, 3);
}
