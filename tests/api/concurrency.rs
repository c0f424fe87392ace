//! Concurrency claims, proven by many real concurrent requests and checked in PostgreSQL: in the
//! tables, and in the audit trail, where a driver given two bookings at once would show even
//! though the unique index keeps the tables from ever holding both.

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;

use crate::support::app::spawn_app;
use crate::support::audit::{self, legal_trail};
use crate::support::database::{a_backend_waits_on_a_lock, count, RowLock};
use crate::support::fixtures::{Api, PICKUP};
use crate::support::poll::eventually;

#[actix_web::test]
async fn fifty_concurrent_assigns_of_one_booking_have_exactly_one_winner() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    for i in 0..5 {
        app.online_driver(PICKUP.0 + 0.001 * f64::from(i), PICKUP.1)
            .await;
    }
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;

    // Act
    let replies =
        join_all((0..50).map(|_| app.post(format!("/api/bookings/{booking}/assign"), json!(null))))
            .await;

    // Assert: one 200, forty-nine 409 booking_not_pending, one driver claimed.
    let winners: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "{replies:#?}");
    for loser in replies.iter().filter(|r| r.status != 200) {
        loser.expect(409, Some("booking_not_pending"));
    }
    let driver = winners[0].data()["driver"]["id"].as_i64().unwrap();
    let mut conn = app.db().await;
    let claimed = count(
        &mut conn,
        &format!("SELECT count(*) AS n FROM drivers WHERE current_booking_id = {booking}"),
    )
    .await;
    assert_eq!(claimed, 1);
    let holder = count(
        &mut conn,
        &format!(
            "SELECT driver_id AS n FROM bookings WHERE id = {booking} AND status = 'assigned'"
        ),
    )
    .await;
    assert_eq!(holder, driver);
    assert_eq!(
        legal_trail(&mut conn, booking).await,
        ["∅→pending", "pending→assigned"]
    );
    audit::assert_no_driver_booked_twice(&mut conn).await;
}

#[actix_web::test]
async fn an_assignment_waits_out_a_free_driver_locked_for_a_moment_instead_of_answering_none() {
    // Arrange: the only driver is free, but its row is locked by another transaction (as a
    // location update or a foreign-key check would lock it for a moment).
    let app = spawn_app().await;
    let rider = app.rider().await;
    let driver = app.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let locker = RowLock::take(&app.db_url, "drivers", driver).await;

    // Act: assign while the row is locked; release the lock once the assignment is seen
    // waiting for it.
    let assign = app.post(format!("/api/bookings/{booking}/assign"), json!(null));
    let release = async {
        let waited = eventually(Duration::from_secs(5), || async {
            a_backend_waits_on_a_lock(&mut app.db().await).await
        })
        .await;
        locker.release().await;
        waited
    };
    let (reply, waited) = futures::join!(assign, release);

    // Assert: the assignment waited on the lock, then got the driver, not 409
    // no_drivers_available.
    assert!(waited, "no backend of the test database waited on a lock");
    reply.expect(200, None);
    assert_eq!(reply.data()["driver"]["id"].as_i64(), Some(driver));
    let mut conn = app.db().await;
    audit::assert_no_driver_booked_twice(&mut conn).await;
}

#[actix_web::test]
async fn two_hundred_bookings_racing_for_twenty_drivers_never_double_book_one() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    for i in 0..20 {
        app.online_driver(
            PICKUP.0 + 0.0005 * f64::from(i),
            PICKUP.1 - 0.0003 * f64::from(i % 4),
        )
        .await;
    }
    let bookings = join_all(
        (0..200).map(|i| app.booking(rider, PICKUP.0 + 0.0001 * f64::from(i % 10), PICKUP.1)),
    )
    .await;

    // Act: every booking asks for a driver at once.
    let replies = join_all(
        bookings
            .iter()
            .map(|id| app.post(format!("/api/bookings/{id}/assign"), json!(null))),
    )
    .await;

    // Assert: exactly twenty winners, all on different drivers, and PostgreSQL agrees.
    let mut drivers: Vec<i64> = replies
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.data()["driver"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        drivers.len(),
        20,
        "statuses: {:?}",
        replies
            .iter()
            .map(|r| r.status.as_u16())
            .collect::<Vec<_>>()
    );
    drivers.sort_unstable();
    drivers.dedup();
    assert_eq!(drivers.len(), 20, "a driver won twice");
    for loser in replies.iter().filter(|r| r.status != 200) {
        loser.expect(409, Some("no_drivers_available"));
        assert_eq!(loser.data()["booking"]["status"], json!("pending"));
    }
    let mut conn = app.db().await;
    audit::assert_no_driver_booked_twice(&mut conn).await;
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM bookings WHERE status = 'assigned'"
        )
        .await,
        20
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM drivers WHERE status = 'busy'"
        )
        .await,
        20
    );
}

#[actix_web::test]
async fn cancel_racing_complete_on_fifty_bookings_has_one_winner_each() {
    // Arrange: fifty accepted bookings, each with its own driver.
    let app = spawn_app().await;
    let rider = app.rider().await;
    for i in 0..50 {
        app.online_driver(
            PICKUP.0 + 0.0004 * f64::from(i % 10),
            PICKUP.1 + 0.0004 * f64::from(i / 10),
        )
        .await;
    }
    let mut accepted = Vec::new();
    for _ in 0..50 {
        accepted.push(app.assigned_booking(rider, PICKUP.0, PICKUP.1, true).await);
    }

    // Act: the rider cancels while the driver completes, on every booking at once.
    let races = accepted.iter().map(|&(booking, driver)| {
        let app = &app;
        async move {
            let cancel = app.post(
                format!("/api/bookings/{booking}/cancel"),
                json!({ "reason": "changed my mind", "user_id": rider, "user_type": "rider" }),
            );
            let complete = app.post(
                format!("/api/bookings/{booking}/complete"),
                json!({ "driver_id": driver, "actual_fare": 16.25 }),
            );
            let (cancel, complete) = futures::join!(cancel, complete);
            (booking, driver, cancel, complete)
        }
    });
    let outcomes = join_all(races).await;

    // Assert: per booking exactly one 200 and one 409 showing the winner's state; the stored
    // status matches the winner, the driver is online and free, and the trail is legal.
    let mut conn = app.db().await;
    for (booking, driver, cancel, complete) in outcomes {
        // The losing complete finds the booking not accepted; the losing cancel finds it terminal.
        let statuses = (cancel.status.as_u16(), complete.status.as_u16());
        let (winner, loser, loser_code, final_status) = match statuses {
            (200, _) => (&cancel, &complete, "booking_not_accepted", "cancelled"),
            (_, 200) => (&complete, &cancel, "booking_already_terminal", "completed"),
            other => panic!("booking {booking}: no winner {other:?}: {cancel:#?} {complete:#?}"),
        };
        loser.expect(409, Some(loser_code));
        assert_eq!(loser.data()["booking"]["status"], json!(final_status));
        assert_eq!(winner.data()["status"], json!(final_status));
        let detail = app.get(format!("/api/bookings/{booking}")).await;
        assert_eq!(detail.data()["status"], json!(final_status));
        let driver_row = app.get(format!("/api/drivers/{driver}")).await;
        assert_eq!(
            driver_row.data()["status"],
            json!("online"),
            "driver {driver}"
        );
        assert_eq!(driver_row.data()["current_booking_id"], json!(null));
        let trail = legal_trail(&mut conn, booking).await;
        assert_eq!(
            trail.last().map(String::as_str),
            Some(format!("accepted→{final_status}").as_str())
        );
        assert_eq!(trail.len(), 4, "one terminal transition only: {trail:?}");
    }
    audit::assert_no_driver_booked_twice(&mut conn).await;
}

#[actix_web::test]
async fn thirty_concurrent_accepts_by_three_drivers_let_only_the_assigned_one_through_once() {
    // Arrange: a booking assigned to the nearest of two drivers; a third driver id has no row.
    let app = spawn_app().await;
    let rider = app.rider().await;
    let nearest = app.online_driver(PICKUP.0, PICKUP.1).await;
    let other = app.online_driver(PICKUP.0 + 0.02, PICKUP.1).await;
    let (booking, assigned) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    assert_eq!(assigned, nearest);
    let stranger = other + 1000;
    let path = format!("/api/bookings/{booking}/accept");
    let attempts = [assigned, other, stranger].into_iter().flat_map(|driver| {
        std::iter::repeat_n(driver, 10).map(|driver| {
            let path = &path;
            let app = &app;
            async move {
                let subject = format!("driver:{driver}");
                let body = json!({ "driver_id": driver });
                let reply = app
                    .as_subject(&subject, reqwest::Method::POST, path, Some(body))
                    .await;
                (driver, reply.status.as_u16(), reply.error().to_owned())
            }
        })
    });

    // Act: all thirty at once, each with its own driver token.
    let replies = join_all(attempts).await;

    // Assert: one acceptance, by the assigned driver; the others were refused as strangers or as
    // too late, and PostgreSQL holds exactly one accepted step, by that driver.
    let won: Vec<_> = replies
        .iter()
        .filter(|(_, status, _)| *status == 200)
        .collect();
    assert_eq!(won.len(), 1, "{replies:?}");
    assert_eq!(won[0].0, assigned);
    for (driver, status, error) in &replies {
        match (*driver == assigned, *status) {
            (true, 200) => {}
            (true, _) => assert_eq!((*status, error.as_str()), (409, "booking_not_assigned")),
            (false, _) => assert_eq!((*status, error.as_str()), (403, "not_assigned_driver")),
        }
    }
    let mut conn = app.db().await;
    assert_eq!(
        legal_trail(&mut conn, booking).await,
        ["∅→pending", "pending→assigned", "assigned→accepted"]
    );
    let holder = count(
        &mut conn,
        &format!(
            "SELECT driver_id AS n FROM bookings WHERE id = {booking} AND status = 'accepted'"
        ),
    )
    .await;
    assert_eq!(holder, assigned);
    audit::assert_no_driver_booked_twice(&mut conn).await;
}

#[actix_web::test]
async fn a_driver_booked_twice_at_once_shows_in_the_audit_trail_though_the_tables_pass_the_index() {
    // Arrange: the only driver assigned to a booking, through the app.
    let app = spawn_app().await;
    let rider = app.rider().await;
    let driver = app.online_driver(PICKUP.0, PICKUP.1).await;
    let (first, assigned) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    assert_eq!(assigned, driver);
    let mut conn = app.db().await;
    audit::assert_no_driver_booked_twice(&mut conn).await;

    // Act: behind the app's back, a second booking given to that driver while the first is
    // active, and cancelled since: no row breaks the unique index, which sees active ones only.
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut conn,
        &format!(
            "INSERT INTO bookings (rider_id, driver_id, pickup_lat, pickup_lng, dropoff_lat,
                                   dropoff_lng, estimated_fare, status, cancelled_at)
             VALUES ({rider}, {driver}, 40.7, -74.0, 40.8, -74.1, 10, 'cancelled', now());
             INSERT INTO booking_events
                 (booking_id, from_status, to_status, driver_id, node_id, fencing_token, request_id)
             VALUES (currval('bookings_id_seq'), NULL, 'pending', NULL, 'n1', 0, 'forged-1');
             INSERT INTO booking_events
                 (booking_id, from_status, to_status, driver_id, node_id, fencing_token, request_id)
             VALUES (currval('bookings_id_seq'), 'pending', 'assigned', {driver}, 'n1', 1, 'forged-2');
             INSERT INTO booking_events
                 (booking_id, from_status, to_status, driver_id, node_id, fencing_token, request_id)
             VALUES (currval('bookings_id_seq'), 'assigned', 'cancelled', {driver}, 'n1', 1, 'forged-3');"
        ),
    )
    .await
    .unwrap();
    let second = count(&mut conn, "SELECT max(id) AS n FROM bookings").await;

    // Assert: the tables show no driver in two active bookings; the trail shows the overlap.
    let doubled = count(
        &mut conn,
        "SELECT count(*) AS n FROM (SELECT driver_id FROM bookings
           WHERE status IN ('assigned', 'accepted') GROUP BY driver_id HAVING count(*) > 1) d",
    )
    .await;
    assert_eq!(doubled, 0);
    let overlaps = audit::overlapping_assignments(&mut conn).await.unwrap();
    assert_eq!(overlaps.len(), 1, "{overlaps:#?}");
    let overlap = &overlaps[0];
    assert_eq!(
        (
            overlap.driver_id,
            overlap.booking_id,
            overlap.earlier_booking
        ),
        (driver, second, first),
        "{overlap:#?}"
    );
    assert_eq!(
        overlap.earlier_until_event, None,
        "the first is still active"
    );
}
