//! The assignment offer timeout: a driver who does not accept in time goes back online and the
//! booking back to pending (or is cancelled after `offer.max_offers`), written by the booking's
//! owner through its fencing token, with an audit event, whatever node found it and across a
//! restart. Checked in PostgreSQL.

use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use ridelock::config::Settings;
use serde_json::json;

use crate::support::app::{spawn_app_with, spawn_node, TestApp};
use crate::support::database::events_of;
use crate::support::fixtures::{Api, PICKUP};
use crate::support::poll::eventually;

/// Offers expire after 300 ms and are looked for every 100 ms.
fn quick(s: &mut Settings) {
    s.offer.timeout_ms = 300;
    s.offer.sweep_every_ms = 100;
    s.offer.max_offers = 2;
}

/// This node never sweeps while a test runs.
fn never_sweeps(s: &mut Settings) {
    quick(s);
    s.offer.sweep_every_ms = 3_600_000;
}

async fn status_of(app: &TestApp, booking: i64) -> String {
    let reply = app.get(format!("/api/bookings/{booking}")).await;
    reply.data()["status"].as_str().unwrap().to_owned()
}

async fn wait_for_status(app: &TestApp, booking: i64, status: &str) {
    let reached = eventually(Duration::from_secs(10), || async {
        status_of(app, booking).await == status
    })
    .await;
    assert!(reached, "booking {booking} never became {status}");
}

async fn driver_status(app: &TestApp, driver: i64) -> String {
    let reply = app.get(format!("/api/drivers/{driver}")).await;
    reply.data()["status"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn an_offer_nobody_accepts_goes_back_to_pending_and_after_the_last_one_is_cancelled() {
    // Arrange: one driver, offers of 300 ms, two offers at most.
    let app = spawn_app_with(quick).await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, driver) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;

    // Act + Assert: the first offer expires; the booking waits for another assign.
    wait_for_status(&app, booking, "pending").await;
    assert_eq!(driver_status(&app, driver).await, "online");
    let detail = app.get(format!("/api/bookings/{booking}")).await;
    assert_eq!(detail.data()["driver_id"], json!(null), "{:#}", detail.body);

    // The second offer expires too: that was the last, so the booking is cancelled.
    app.post(format!("/api/bookings/{booking}/assign"), json!(null))
        .await
        .expect(200, None);
    wait_for_status(&app, booking, "cancelled").await;
    assert_eq!(driver_status(&app, driver).await, "online");
    let detail = app.get(format!("/api/bookings/{booking}")).await;
    assert_eq!(
        detail.data()["cancellation_reason"],
        json!("no driver accepted the ride in time")
    );

    // The trail: each expiry names the driver, the system and the writer's fencing token.
    let trail = events_of(&mut app.db().await, booking).await;
    let steps: Vec<(Option<&str>, &str)> = trail
        .iter()
        .map(|e| (e.from_status.as_deref(), e.to_status.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            (None, "pending"),
            (Some("pending"), "assigned"),
            (Some("assigned"), "pending"),
            (Some("pending"), "assigned"),
            (Some("assigned"), "cancelled"),
        ]
    );
    for expiry in [&trail[2], &trail[4]] {
        assert_eq!(expiry.driver_id, Some(driver));
        assert_eq!(expiry.actor.as_deref(), Some("system:offer-timeout"));
        assert!(expiry.fencing_token >= trail[1].fencing_token, "{expiry:?}");
    }
    // The driver may no longer accept it (it stays on the cancelled booking's record).
    let me = format!("driver:{driver}");
    app.as_subject(
        &me,
        reqwest::Method::POST,
        format!("/api/bookings/{booking}/accept"),
        Some(json!({ "driver_id": driver })),
    )
    .await
    .expect(409, Some("booking_not_assigned"));
}

#[actix_web::test]
async fn an_offer_accepted_in_time_stands() {
    let app = spawn_app_with(quick).await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, driver) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, true).await;

    // Well past the offer timeout, several sweeps later.
    actix_web::rt::time::sleep(Duration::from_millis(1000)).await;

    assert_eq!(status_of(&app, booking).await, "accepted");
    assert_eq!(driver_status(&app, driver).await, "busy");
}

#[actix_web::test]
async fn an_offer_found_by_another_node_is_taken_back_by_the_owner() {
    // Arrange: n1 owns the booking (its actor stays) and never sweeps; n2 sweeps.
    let n1 = spawn_app_with(|s| {
        never_sweeps(s);
        s.booking.idle_stop_ms = 60_000;
    })
    .await;
    let n2 = spawn_node(&n1.db_name, &n1.db_url, &n1.redis_prefix, "n2", quick).await;
    let rider = n1.rider().await;
    n1.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, driver) = n1.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;

    // Act
    wait_for_status(&n1, booking, "pending").await;

    // Assert: written by n1, the owner, under the token of its activation.
    let trail = events_of(&mut n1.db().await, booking).await;
    let expiry = trail.last().unwrap();
    assert_eq!(expiry.node_id, "n1");
    assert_eq!(expiry.fencing_token, trail[1].fencing_token);
    assert_eq!(expiry.driver_id, Some(driver));
    assert_eq!(driver_status(&n2, driver).await, "online");
}

#[actix_web::test]
async fn an_offer_made_before_a_restart_still_expires() {
    // Arrange: the offer is made on a node that never sweeps, which then stops.
    let n1 = spawn_app_with(never_sweeps).await;
    let rider = n1.rider().await;
    n1.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, driver) = n1.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    n1.stop().await;

    // Act: the node starts again, sweeping.
    let again = n1.restarted(quick).await;

    // Assert
    wait_for_status(&again, booking, "pending").await;
    assert_eq!(driver_status(&again, driver).await, "online");
    let trail = events_of(&mut again.db().await, booking).await;
    let expiry = trail.last().unwrap();
    assert!(expiry.fencing_token > trail[1].fencing_token, "{trail:?}");
}

#[derive(QueryableByName, Debug)]
struct Mismatch {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[actix_web::test]
async fn accepts_racing_the_offer_timeout_either_win_or_find_the_booking_pending() {
    // Arrange: 20 drivers, 20 assigned bookings whose offers expire about when they are accepted.
    let app = spawn_app_with(|s| {
        quick(s);
        s.offer.timeout_ms = 400;
        s.offer.sweep_every_ms = 50;
    })
    .await;
    let rider = app.rider().await;
    for i in 0..20 {
        app.online_driver(PICKUP.0 + f64::from(i) * 0.0005, PICKUP.1)
            .await;
    }
    let mut assigned = Vec::new();
    for _ in 0..20 {
        assigned.push(app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await);
    }
    actix_web::rt::time::sleep(Duration::from_millis(380)).await;

    // Act: every driver accepts at once, as the sweep takes the offers back.
    let accepts = assigned.iter().map(|(booking, driver)| {
        let app = &app;
        async move {
            app.as_subject(
                &format!("driver:{driver}"),
                reqwest::Method::POST,
                format!("/api/bookings/{booking}/accept"),
                Some(json!({ "driver_id": driver })),
            )
            .await
        }
    });
    let replies = futures::future::join_all(accepts).await;
    actix_web::rt::time::sleep(Duration::from_millis(600)).await;

    // Assert: a 200 is an accepted ride; a refusal found the offer taken back.
    for ((booking, _), reply) in assigned.iter().zip(&replies) {
        let status = status_of(&app, *booking).await;
        match reply.status.as_u16() {
            200 => assert_eq!(status, "accepted", "booking {booking}"),
            403 => {
                assert_eq!(reply.error(), "not_assigned_driver");
                assert_eq!(status, "pending", "booking {booking}");
            }
            other => panic!("accept of {booking} answered {other}: {:#}", reply.body),
        }
    }
    // And in PostgreSQL: a driver is busy exactly when an active booking holds it.
    let mismatches: Mismatch = diesel::sql_query(
        "SELECT count(*) AS n FROM drivers d
         FULL JOIN (SELECT id, driver_id FROM bookings WHERE status IN ('assigned', 'accepted')) b
           ON b.driver_id = d.id
         WHERE (d.status = 'busy') IS DISTINCT FROM (b.id IS NOT NULL)
            OR d.current_booking_id IS DISTINCT FROM b.id",
    )
    .get_result(&mut app.db().await)
    .await
    .unwrap();
    assert_eq!(mismatches.n, 0);
}
