//! The group-commit writer against the real PostgreSQL: changes sent together go out as one
//! batch, each row is written or refused under its own condition, and no row's failure touches
//! another's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use ridelock::domain::booking::BookingStatus;
use ridelock::domain::ids::DriverId;
use ridelock::domain::ids::RiderId;
use ridelock::domain::values::Fare;
use ridelock::domain::values::GeoPoint;
use ridelock::storage::bookings::NewBooking;
use ridelock::storage::idempotency::IdempotencyKey;
use ridelock::storage::writer::{
    Answer, Assigned, Assignment, Change, Create, Created, Outcome, Writer,
};
use ridelock::storage::StoreError;

use crate::support::app::{spawn_app, TestApp};
use crate::support::database::{count, RowLock};
use crate::support::fixtures::{Api, PICKUP};

fn writer_for(app: &TestApp) -> Writer {
    let pool = app.settings().database.pool().expect("pool");
    let sizes = ridelock::storage::writer::batch_sizes().expect("the batch-size histogram");
    Writer::start(pool, "writer-test".to_owned(), sizes)
}

fn cancel(booking: i64, token: i64) -> Change {
    Change {
        booking_id: booking,
        token,
        from: BookingStatus::Pending,
        to: BookingStatus::Cancelled,
        actual_fare: None,
        cancellation_reason: Some("changed my mind".to_owned()),
        release_driver: None,
        offer: None,
        request_id: format!("req-cancel-{booking}"),
        actor: Some("ops:test".to_owned()),
        deadline: Instant::now() + Duration::from_secs(10),
        answer: None,
    }
}

fn keyed(mut change: Change, key: &str) -> Change {
    change.answer = Some(Answer {
        key: IdempotencyKey {
            scope: "ops:test".to_owned(),
            key: key.to_owned(),
            fingerprint: "f".repeat(64),
        },
        status: 200,
        render: Arc::new(|row, _| format!(r#"{{"status":"{}"}}"#, row.status)),
    });
    change
}

fn batches(writer: &Writer) -> u64 {
    writer.batch_sizes().get_sample_count()
}

#[actix_web::test]
async fn changes_sent_together_commit_as_one_batch_each_under_its_own_condition() {
    // Arrange: 30 pending bookings nobody owns (token 0), 4 accepted ones with their drivers
    // (token 1), and a key a copy of one request already stored.
    let app = spawn_app().await;
    let rider = app.rider().await;
    let mut pending = Vec::new();
    for _ in 0..30 {
        pending.push(app.unowned_booking(rider, PICKUP.0, PICKUP.1).await);
    }
    let mut accepted = Vec::new();
    for i in 0..4 {
        let at = (PICKUP.0 + 0.01 * f64::from(i), PICKUP.1);
        app.online_driver(at.0, at.1).await;
        accepted.push(app.assigned_booking(rider, at.0, at.1, true).await);
    }
    diesel::sql_query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status, body) \
         VALUES ('ops:test', 'taken', $1, 200, 'the first answer')",
    )
    .bind::<Text, _>("f".repeat(64))
    .execute(&mut app.db().await)
    .await
    .unwrap();
    let writer = writer_for(&app);

    // Act: 20 good cancels, 7 under a stale token, 2 with fresh keys and 1 with the taken key,
    // and 4 completions that hand their drivers back, all at once.
    let mut changes = Vec::new();
    for (i, &booking) in pending.iter().enumerate() {
        changes.push(match i {
            0..20 => cancel(booking, 0),
            20..27 => cancel(booking, 7),
            27 | 28 => keyed(cancel(booking, 0), &format!("fresh-{i}")),
            _ => keyed(cancel(booking, 0), "taken"),
        });
    }
    for &(booking, driver) in &accepted {
        changes.push(Change {
            from: BookingStatus::Accepted,
            to: BookingStatus::Completed,
            actual_fare: Some(Fare::from_amount(20.0, "actual_fare").unwrap()),
            cancellation_reason: None,
            release_driver: Some(DriverId(driver)),
            request_id: format!("req-complete-{booking}"),
            ..cancel(booking, 1)
        });
    }
    let sent = changes.len();
    let outcomes =
        futures::future::join_all(changes.into_iter().map(|change| writer.write(change))).await;

    // Assert: each change got its own outcome...
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|o| o.expect("written")).collect();
    for (i, outcome) in outcomes.iter().enumerate() {
        match (i, outcome) {
            (0..20 | 27 | 28, Outcome::Written(row, None)) => {
                assert_eq!(row.status.as_str(), "cancelled")
            }
            (20..27, Outcome::Fenced) | (29, Outcome::KeyTaken) => {}
            (30.., Outcome::Written(row, Some(released))) => {
                assert_eq!(row.status.as_str(), "completed");
                assert_eq!(Some(released.id.0), row.driver_id);
            }
            other => panic!("change {i}: {other:?}"),
        }
    }
    // ...from fewer statements than changes...
    assert!(
        batches(&writer) < sent as u64,
        "{} batches",
        batches(&writer)
    );
    // ...and PostgreSQL holds exactly the written ones, each with its event and record.
    let ids = |slice: &[i64]| {
        slice
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let all_pending = ids(&pending);
    let cancelled = count(&mut app.db().await,
        &format!("SELECT count(*) AS n FROM bookings WHERE id IN ({all_pending}) AND status = 'cancelled' AND cancellation_reason = 'changed my mind' AND cancelled_at IS NOT NULL"),
    )
    .await;
    assert_eq!(cancelled, 22);
    let untouched = ids(&pending[20..30]
        .iter()
        .copied()
        .filter(|&b| b != pending[27] && b != pending[28])
        .collect::<Vec<_>>());
    let still_pending = count(&mut app.db().await,
        &format!("SELECT count(*) AS n FROM bookings WHERE id IN ({untouched}) AND status = 'pending' AND fencing_token = 0"),
    )
    .await;
    assert_eq!(still_pending, 8);
    let events = count(
        &mut app.db().await,
        "SELECT count(*) AS n FROM booking_events WHERE node_id = 'writer-test'",
    )
    .await;
    assert_eq!(
        events, 26,
        "one event per written change, none for the others"
    );
    let booked: Vec<i64> = accepted.iter().map(|(b, _)| *b).collect();
    let drivers: Vec<i64> = accepted.iter().map(|(_, d)| *d).collect();
    let completed = count(&mut app.db().await,
        &format!("SELECT count(*) AS n FROM bookings WHERE id IN ({}) AND status = 'completed' AND actual_fare = 20 AND completed_at IS NOT NULL", ids(&booked)),
    )
    .await;
    assert_eq!(completed, 4);
    let free = count(&mut app.db().await,
        &format!("SELECT count(*) AS n FROM drivers WHERE id IN ({}) AND status = 'online' AND current_booking_id IS NULL", ids(&drivers)),
    )
    .await;
    assert_eq!(free, 4, "every completion handed its driver back");
    let answers = count(&mut app.db().await,
        "SELECT count(*) AS n FROM idempotency_keys WHERE key LIKE 'fresh-%' AND body = '{\"status\":\"cancelled\"}'",
    )
    .await;
    assert_eq!(answers, 2, "each stored answer committed with its change");
    let first = count(&mut app.db().await,
        "SELECT count(*) AS n FROM idempotency_keys WHERE key = 'taken' AND body = 'the first answer'",
    )
    .await;
    assert_eq!(first, 1, "the earlier answer stands");
}

#[actix_web::test]
async fn a_second_change_of_one_booking_waits_for_the_next_batch_and_finds_the_first() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let booking = app.unowned_booking(rider, PICKUP.0, PICKUP.1).await;
    let writer = writer_for(&app);

    // Act: two cancels of one booking under the same token, sent together.
    let (first, second) = futures::join!(
        writer.write(cancel(booking, 0)),
        writer.write(cancel(booking, 0))
    );

    // Assert: the first is written; the second, in a batch of its own, no longer matches.
    assert!(matches!(first, Ok(Outcome::Written(..))), "{first:?}");
    assert!(matches!(second, Ok(Outcome::Fenced)), "{second:?}");
    assert_eq!(batches(&writer), 2);
    let events = count(&mut app.db().await,
        &format!("SELECT count(*) AS n FROM booking_events WHERE booking_id = {booking} AND to_status = 'cancelled'"),
    )
    .await;
    assert_eq!(events, 1);
}

#[actix_web::test]
async fn a_change_that_breaks_a_constraint_fails_alone() {
    // Arrange: five good cancels, and one whose idempotency key is longer than the table takes.
    let app = spawn_app().await;
    let rider = app.rider().await;
    let mut bookings = Vec::new();
    for _ in 0..6 {
        bookings.push(app.unowned_booking(rider, PICKUP.0, PICKUP.1).await);
    }
    let writer = writer_for(&app);
    let mut changes: Vec<Change> = bookings[..5].iter().map(|&b| cancel(b, 0)).collect();
    changes.push(keyed(cancel(bookings[5], 0), &"k".repeat(300)));

    // Act
    let outcomes =
        futures::future::join_all(changes.into_iter().map(|change| writer.write(change))).await;

    // Assert: the faulty change failed as a query error; the others were written; the faulty
    // one's booking and key were not.
    for outcome in &outcomes[..5] {
        assert!(matches!(outcome, Ok(Outcome::Written(..))), "{outcome:?}");
    }
    assert!(
        matches!(outcomes[5], Err(StoreError::Query(_))),
        "{:?}",
        outcomes[5]
    );
    let pending = count(
        &mut app.db().await,
        &format!(
            "SELECT count(*) AS n FROM bookings WHERE id = {} AND status = 'pending'",
            bookings[5]
        ),
    )
    .await;
    assert_eq!(pending, 1);
    assert_eq!(
        count(
            &mut app.db().await,
            "SELECT count(*) AS n FROM idempotency_keys"
        )
        .await,
        0
    );
}

#[actix_web::test]
async fn a_change_whose_deadline_passed_in_the_queue_is_not_written() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let (late, on_time) = (
        app.unowned_booking(rider, PICKUP.0, PICKUP.1).await,
        app.unowned_booking(rider, PICKUP.0, PICKUP.1).await,
    );
    let writer = writer_for(&app);

    // Act: one change whose requester has already given up, one that still has time.
    let given_up = Change {
        deadline: Instant::now(),
        ..cancel(late, 0)
    };
    let (late_outcome, on_time_outcome) =
        futures::join!(writer.write(given_up), writer.write(cancel(on_time, 0)));

    // Assert
    assert!(
        matches!(late_outcome, Ok(Outcome::Expired)),
        "{late_outcome:?}"
    );
    assert!(
        matches!(on_time_outcome, Ok(Outcome::Written(..))),
        "{on_time_outcome:?}"
    );
    let pending = count(
        &mut app.db().await,
        &format!("SELECT count(*) AS n FROM bookings WHERE id = {late} AND status = 'pending'"),
    )
    .await;
    assert_eq!(pending, 1, "nothing written for the request that gave up");
}

fn create(rider: i64, max_active: u32) -> Create {
    let at = |lat, lng| GeoPoint::new(lat, lng, "lat", "lng").expect("coordinates");
    Create {
        new: NewBooking {
            rider_id: RiderId(rider),
            pickup: at(PICKUP.0, PICKUP.1),
            dropoff: at(40.7589, -73.9851),
            estimated_fare: Fare::from_amount(15.5, "estimated_fare").expect("fare"),
            vehicle_type: None,
        },
        max_active,
        token: 1,
        request_id: format!("req-create-{rider}"),
        actor: Some(format!("rider:{rider}")),
        deadline: Instant::now() + Duration::from_secs(10),
        answer: None,
    }
}

#[actix_web::test]
async fn creations_sent_together_keep_each_riders_limit_and_an_unknown_rider_fails_alone() {
    // Arrange: three riders with a limit of 4 active bookings each.
    let app = spawn_app().await;
    let riders = [app.rider().await, app.rider().await, app.rider().await];
    let writer = writer_for(&app);

    // Act: ten creations per rider, interleaved, and one for a rider that does not exist.
    let mut creates: Vec<Create> = (0..30).map(|i| create(riders[i % 3], 4)).collect();
    creates.push(create(i64::MAX, 4));
    let sent = creates.len();
    let outcomes = futures::future::join_all(creates.into_iter().map(|c| writer.create(c))).await;

    // Assert: four bookings per rider, the rest refused at the limit; the unknown rider's
    // creation failed on its own foreign key.
    let mut made = std::collections::HashMap::new();
    for (i, outcome) in outcomes[..30].iter().enumerate() {
        match outcome {
            Ok(Created::Created(row)) => {
                assert_eq!(row.rider_id, riders[i % 3]);
                assert_eq!((row.status.as_str(), row.fencing_token), ("pending", 1));
                *made.entry(row.rider_id).or_insert(0) += 1;
            }
            Ok(Created::AtLimit) => {}
            other => panic!("creation {i}: {other:?}"),
        }
    }
    assert_eq!(
        made.values().copied().collect::<Vec<_>>(),
        [4, 4, 4],
        "{made:?}"
    );
    assert!(
        matches!(outcomes[30], Err(StoreError::Query(_))),
        "{:?}",
        outcomes[30]
    );
    assert!(
        batches(&writer) < sent as u64,
        "{} batches",
        batches(&writer)
    );
    for rider in riders {
        let active = count(&mut app.db().await,
            &format!("SELECT count(*) AS n FROM bookings WHERE rider_id = {rider} AND status = 'pending'"),
        )
        .await;
        assert_eq!(active, 4, "rider {rider}");
    }
    let events = count(
        &mut app.db().await,
        "SELECT count(*) AS n FROM booking_events e JOIN bookings b ON b.id = e.booking_id \
         WHERE e.node_id = 'writer-test' AND e.from_status IS NULL AND e.to_status = 'pending' \
         AND e.fencing_token = 1 AND b.fencing_token = 1",
    )
    .await;
    assert_eq!(
        events, 12,
        "one creation event per booking, under its token"
    );
}

#[actix_web::test]
async fn two_copies_of_a_keyed_creation_in_one_batch_make_one_booking() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let writer = writer_for(&app);
    let keyed = || {
        let mut copy = create(rider, 10);
        copy.answer = Some(Answer {
            key: IdempotencyKey {
                scope: format!("rider:{rider}"),
                key: "once".to_owned(),
                fingerprint: "c".repeat(64),
            },
            status: 201,
            render: Arc::new(|row, _| format!(r#"{{"id":{}}}"#, row.id)),
        });
        copy
    };

    // Act
    let (first, second) = futures::join!(writer.create(keyed()), writer.create(keyed()));

    // Assert: the first copy created the booking and stored its answer; the second wrote
    // nothing and is told the key is taken (its caller replays the stored answer).
    let Ok(Created::Created(booking)) = first else {
        panic!("{first:?}")
    };
    assert!(matches!(second, Ok(Created::KeyTaken)), "{second:?}");
    assert_eq!(batches(&writer), 1);
    let bookings = count(
        &mut app.db().await,
        &format!("SELECT count(*) AS n FROM bookings WHERE rider_id = {rider}"),
    )
    .await;
    assert_eq!(bookings, 1);
    let stored = count(
        &mut app.db().await,
        &format!(
            "SELECT count(*) AS n FROM idempotency_keys WHERE key = 'once' AND status = 201 \
             AND body = '{{\"id\":{}}}'",
            booking.id
        ),
    )
    .await;
    assert_eq!(stored, 1);
}

/// Three online drivers north of the pickup, nearest first.
async fn drivers_in_a_row(app: &TestApp) -> Vec<DriverId> {
    let mut drivers = Vec::new();
    for i in 0..3 {
        drivers.push(DriverId(
            app.online_driver(PICKUP.0 + 0.001 * f64::from(i), PICKUP.1)
                .await,
        ));
    }
    drivers
}

fn assignment(booking: i64, token: i64, drivers: &[DriverId]) -> Assignment {
    Assignment {
        booking_id: booking,
        token,
        candidates: drivers.to_vec(),
        vehicle_type: None,
        request_id: format!("req-assign-{booking}"),
        actor: Some("ops:test".to_owned()),
        deadline: Instant::now() + Duration::from_secs(10),
        answer: None,
    }
}

#[actix_web::test]
async fn assignments_sent_together_never_give_one_driver_twice() {
    // Arrange: six pending bookings (token 0) that all want the same three drivers, one of them
    // under a stale token.
    let app = spawn_app().await;
    let rider = app.rider().await;
    let drivers = drivers_in_a_row(&app).await;
    let mut bookings = Vec::new();
    for _ in 0..6 {
        bookings.push(app.unowned_booking(rider, PICKUP.0, PICKUP.1).await);
    }
    let writer = writer_for(&app);
    let assign = |booking: i64, token: i64| assignment(booking, token, &drivers);

    // Act
    let outcomes = futures::future::join_all(
        bookings
            .iter()
            .enumerate()
            .map(|(i, &b)| writer.assign(assign(b, if i == 1 { 9 } else { 0 }))),
    )
    .await;

    // Assert: the first three eligible bookings, in order, got the three drivers, each its own;
    // the stale one is fenced; the last two found nobody free.
    let outcomes: Vec<Assigned> = outcomes.into_iter().map(|o| o.expect("assigned")).collect();
    let mut given = Vec::new();
    for (i, outcome) in outcomes.iter().enumerate() {
        match (i, outcome) {
            (0 | 2 | 3, Assigned::Assigned(booking, driver)) => {
                assert_eq!(booking.driver_id, Some(driver.id));
                assert_eq!(
                    (booking.status.as_str(), driver.status.as_str()),
                    ("assigned", "busy")
                );
                given.push(driver.id);
            }
            (1, Assigned::Fenced) | (4 | 5, Assigned::NoneFree) => {}
            other => panic!("assignment {i}: {other:?}"),
        }
    }
    given.sort();
    assert_eq!(given, drivers.iter().map(|d| d.0).collect::<Vec<_>>());
    assert_eq!(batches(&writer), 1, "one batch");
    let events = count(&mut app.db().await,
        "SELECT count(*) AS n FROM booking_events WHERE node_id = 'writer-test' AND to_status = 'assigned'",
    )
    .await;
    assert_eq!(events, 3);
}

#[actix_web::test]
async fn a_batch_passes_over_a_driver_another_transaction_holds_and_plans_the_next() {
    // Arrange: two pending bookings that both prefer drivers 1, 2, 3 in that order, while another
    // transaction (a location update, a claim of another node) holds driver 1 locked.
    let app = spawn_app().await;
    let rider = app.rider().await;
    let drivers = drivers_in_a_row(&app).await;
    let first = app.unowned_booking(rider, PICKUP.0, PICKUP.1).await;
    let second = app.unowned_booking(rider, PICKUP.0, PICKUP.1).await;
    let holder = RowLock::take(&app.db_url, "drivers", drivers[0].0).await;
    let writer = writer_for(&app);
    let assign = |booking: i64| assignment(booking, 0, &drivers);

    // Act: the first plan gives driver 1 to the first booking, whose claim skips it.
    let outcomes =
        futures::future::join_all([writer.assign(assign(first)), writer.assign(assign(second))])
            .await;
    holder.release().await;

    // Assert: nobody waited for the lock; both bookings got a driver, neither the locked one.
    let mut given = Vec::new();
    for outcome in outcomes {
        match outcome.expect("assigned") {
            Assigned::Assigned(booking, driver) => {
                assert_eq!(booking.driver_id, Some(driver.id));
                given.push(driver.id);
            }
            other => panic!("{other:?}"),
        }
    }
    given.sort();
    assert_eq!(given, vec![drivers[1].0, drivers[2].0]);
    let busy = count(
        &mut app.db().await,
        &format!(
            "SELECT count(*) AS n FROM drivers WHERE status = 'busy' AND id = {}",
            drivers[0].0
        ),
    )
    .await;
    assert_eq!(busy, 0, "the locked driver stays free");
}
