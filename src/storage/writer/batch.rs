//! The statements of one batch, and the transaction around them.

use std::collections::HashMap;

use chrono::Utc;
use diesel::sql_types::{Array, BigInt, Double, Nullable, Numeric, SmallInt, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::{Answer, Assigned, Assignment, Change, Create, Created, Outcome};
use crate::domain::ids::DriverId;
use crate::domain::values::GeoPoint;
use crate::storage::bookings::ReleasedDriver;
use crate::storage::idempotency::IdempotencyKey;
use crate::storage::models::{fare_to_decimal, Booking, Driver};
use crate::storage::prepared::prepared;

/// Every change's condition, new values and audit fields as parallel arrays, one statement.
/// The booking update matches only rows whose condition holds; the driver release and the
/// event follow only those rows.
const CHANGES_SQL: &str = "\
WITH i AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::numeric[],
                         $6::text[], $7::bigint[], $8::timestamptz[], $9::text[], $10::text[])
        AS i(id, token, from_status, to_status, fare, reason, release, offer_at, request_id, actor)
), b AS (
    UPDATE bookings SET
        status = i.to_status,
        actual_fare = COALESCE(i.fare, bookings.actual_fare),
        cancellation_reason = COALESCE(i.reason, bookings.cancellation_reason),
        accepted_at = CASE WHEN i.to_status = 'accepted' THEN $11 ELSE bookings.accepted_at END,
        cancelled_at = CASE WHEN i.to_status = 'cancelled' THEN $11 ELSE bookings.cancelled_at END,
        completed_at = CASE WHEN i.to_status = 'completed' THEN $11 ELSE bookings.completed_at END,
        driver_id = CASE WHEN i.offer_at IS NOT NULL AND i.to_status = 'pending' THEN NULL
                         ELSE bookings.driver_id END,
        assigned_at = CASE WHEN i.offer_at IS NOT NULL AND i.to_status = 'pending' THEN NULL
                           ELSE bookings.assigned_at END,
        updated_at = $11
    FROM i
    WHERE bookings.id = i.id AND bookings.fencing_token = i.token
      AND bookings.status = i.from_status
      AND (i.offer_at IS NULL
           OR (bookings.driver_id = i.release AND bookings.assigned_at = i.offer_at))
    RETURNING bookings.*, i.release AS i_release, i.from_status AS i_from,
              i.request_id AS i_request, i.actor AS i_actor
), d AS (
    UPDATE drivers SET status = 'online', current_booking_id = NULL, updated_at = now()
    FROM b WHERE drivers.id = b.i_release AND drivers.current_booking_id = b.id
    RETURNING drivers.id, drivers.lat, drivers.lng
), e AS (
    INSERT INTO booking_events
        (booking_id, from_status, to_status, driver_id, node_id, fencing_token, request_id, actor)
    SELECT id, i_from, status, COALESCE(driver_id, i_release), $12, fencing_token, i_request,
           i_actor
    FROM b
)
SELECT b.*, d.id AS released_id, d.lat AS released_lat, d.lng AS released_lng
FROM b LEFT JOIN d ON d.id = b.i_release";

#[derive(QueryableByName)]
struct ChangedRow {
    #[diesel(embed)]
    booking: Booking,
    #[diesel(sql_type = Nullable<BigInt>)]
    released_id: Option<i64>,
    #[diesel(sql_type = Nullable<Double>)]
    released_lat: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    released_lng: Option<f64>,
}

impl ChangedRow {
    /// The new row, and the driver it handed back, if any.
    fn split(self) -> (Booking, Option<ReleasedDriver>) {
        let released = self.released_id.map(|id| ReleasedDriver {
            id: DriverId(id),
            location: self
                .released_lat
                .zip(self.released_lng)
                .map(|(lat, lng)| GeoPoint { lat, lng }),
        });
        (self.booking, released)
    }
}

/// Locks the rows of the riders a batch creates bookings for, in one order (so two batches
/// cannot deadlock on them), as `create_booking_within_limit` locks one: `FOR NO KEY UPDATE`
/// leaves other transactions' foreign-key checks free. Creations for one rider thus run one
/// transaction at a time, and [`CREATES_SQL`], the next statement, counts with a snapshot taken
/// after the lock.
const LOCK_RIDERS_SQL: &str = "\
SELECT id FROM riders WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE";

/// Every creation of the batch in one statement: a creation is admitted while its rider's
/// active bookings (committed, plus those admitted before it in this batch) stay within its
/// `max_active`.
/// Ids are drawn for the admitted ones first so each row is matched back to its request by its
/// position (`ord`); the events follow the inserted rows.
const CREATES_SQL: &str = "\
WITH i AS (
    SELECT * FROM unnest($1::bigint[], $2::float8[], $3::float8[], $4::float8[], $5::float8[],
                         $6::numeric[], $7::text[], $8::text[], $9::text[], $10::bigint[],
                         $11::bigint[])
        WITH ORDINALITY
        AS i(rider_id, pickup_lat, pickup_lng, dropoff_lat, dropoff_lng, fare, vehicle_type,
             request_id, actor, max_active, token, ord)
), active AS (
    SELECT rider_id, count(*) AS n FROM bookings
    WHERE rider_id IN (SELECT rider_id FROM i) AND status IN ('pending', 'assigned', 'accepted')
    GROUP BY rider_id
), admitted AS MATERIALIZED (
    SELECT nextval(pg_get_serial_sequence('bookings', 'id')) AS id, ranked.*
    FROM (
        SELECT i.*, row_number() OVER (PARTITION BY i.rider_id ORDER BY i.ord) AS nth FROM i
    ) ranked
    LEFT JOIN active ON active.rider_id = ranked.rider_id
    WHERE COALESCE(active.n, 0) + ranked.nth <= ranked.max_active
), b AS (
    INSERT INTO bookings
        (id, rider_id, pickup_lat, pickup_lng, dropoff_lat, dropoff_lng, estimated_fare,
         vehicle_type, fencing_token)
    SELECT id, rider_id, pickup_lat, pickup_lng, dropoff_lat, dropoff_lng, fare, vehicle_type,
           token
    FROM admitted
    ORDER BY ord
    RETURNING *
), e AS (
    INSERT INTO booking_events
        (booking_id, from_status, to_status, driver_id, node_id, fencing_token, request_id, actor)
    SELECT b.id, NULL, b.status, b.driver_id, $12, b.fencing_token, admitted.request_id,
           admitted.actor
    FROM b JOIN admitted ON admitted.id = b.id
)
SELECT b.*, admitted.ord FROM b JOIN admitted ON admitted.id = b.id";

#[derive(QueryableByName)]
struct CreatedRow {
    #[diesel(embed)]
    booking: Booking,
    #[diesel(sql_type = BigInt)]
    ord: i64,
}

/// Claims the keys of the changes that carry one, with a placeholder answer filled in after
/// the change (same transaction, so nobody ever reads the placeholder). A key another request
/// holds is not inserted (`ON CONFLICT DO NOTHING` waits for that request to finish first);
/// keys are taken in one order, so two batches waiting on each other's keys cannot deadlock.
const CLAIM_KEYS_SQL: &str = "\
INSERT INTO idempotency_keys (scope, key, fingerprint, status, body)
SELECT scope, key, fingerprint, 200, '' FROM unnest($1::text[], $2::text[], $3::text[])
    AS k(scope, key, fingerprint)
ORDER BY scope, key
ON CONFLICT (scope, key) DO NOTHING
RETURNING scope, key";

#[derive(QueryableByName)]
struct ClaimedKey {
    #[diesel(sql_type = Text)]
    scope: String,
    #[diesel(sql_type = Text)]
    key: String,
}

/// Fills in the answers of changes that were made, and gives back the keys of those that were
/// not (their request may be retried and decided again).
const SETTLE_KEYS_SQL: &str = "\
WITH answered AS (
    UPDATE idempotency_keys SET status = a.status, body = a.body
    FROM unnest($1::text[], $2::text[], $3::smallint[], $4::text[]) AS a(scope, key, status, body)
    WHERE idempotency_keys.scope = a.scope AND idempotency_keys.key = a.key
)
DELETE FROM idempotency_keys
USING unnest($5::text[], $6::text[]) AS u(scope, key)
WHERE idempotency_keys.scope = u.scope AND idempotency_keys.key = u.key";

/// The items of one batch, by kind.
#[derive(Clone, Copy, Default)]
pub(super) struct Batch<'a> {
    pub(super) changes: &'a [Change],
    pub(super) creates: &'a [Create],
    pub(super) assigns: &'a [Assignment],
}

/// One outcome per item of a [`Batch`], in the same order.
pub(super) struct Done {
    pub(super) changes: Vec<Outcome>,
    pub(super) creates: Vec<Created>,
    pub(super) assigns: Vec<Assigned>,
}

/// Which items hold their idempotency key (an item without one always does).
struct Holds {
    changes: Vec<bool>,
    creates: Vec<bool>,
    assigns: Vec<bool>,
}

impl Holds {
    fn all(batch: Batch<'_>) -> Self {
        Self {
            changes: vec![true; batch.changes.len()],
            creates: vec![true; batch.creates.len()],
            assigns: vec![true; batch.assigns.len()],
        }
    }

    /// Claims the batch's keys; each claimed key goes to the first item that carries it, so two
    /// copies of one request (or one key reused for two requests) in one batch write once.
    async fn claim(tx: &mut AsyncPgConnection, batch: Batch<'_>) -> diesel::QueryResult<Self> {
        let answers = batch
            .changes
            .iter()
            .map(|c| &c.answer)
            .chain(batch.creates.iter().map(|c| &c.answer))
            .chain(batch.assigns.iter().map(|a| &a.answer));
        let keys = answers.clone().flatten().map(|a| &a.key).collect();
        let claimed = claim_keys(tx, keys).await?;
        let mut given: Vec<&(String, String)> = Vec::new();
        let mut holds = answers.map(|answer| {
            let Some(answer) = answer else { return true };
            let key = &answer.key;
            let claim = claimed
                .iter()
                .find(|(scope, k)| *scope == key.scope && *k == key.key);
            match claim {
                Some(claim) if !given.contains(&claim) => {
                    given.push(claim);
                    true
                }
                _ => false,
            }
        });
        Ok(Self {
            changes: holds.by_ref().take(batch.changes.len()).collect(),
            creates: holds.by_ref().take(batch.creates.len()).collect(),
            assigns: holds.collect(),
        })
    }
}

/// Writes one batch. Without creations or keys every item is one row of one statement, its own
/// transaction; otherwise everything runs in one transaction: the keys are claimed, the riders
/// locked, the bookings created, the drivers claimed, the changes made and the answers stored,
/// in that order.
pub(super) async fn write(
    conn: &mut AsyncPgConnection,
    node_id: &str,
    batch: Batch<'_>,
) -> diesel::QueryResult<Done> {
    let keyed = batch.changes.iter().any(|c| c.answer.is_some())
        || batch.assigns.iter().any(|a| a.answer.is_some());
    if batch.creates.is_empty() && !keyed {
        let (done, _) = run(conn, node_id, batch, &Holds::all(batch)).await?;
        return Ok(done);
    }
    conn.transaction(async |tx| {
        let holds = Holds::claim(tx, batch).await?;
        let (done, settle) = run(tx, node_id, batch, &holds).await?;
        settle.run(tx).await?;
        Ok(done)
    })
    .await
}

/// The items that hold their keys.
fn held<'a, T>(items: &'a [T], holds: &[bool]) -> Vec<&'a T> {
    items
        .iter()
        .zip(holds)
        .filter_map(|(item, holds)| holds.then_some(item))
        .collect()
}

/// The statements of a batch, for the items that hold their keys; the outcomes, and the answers
/// to store.
async fn run<'a>(
    conn: &mut AsyncPgConnection,
    node_id: &str,
    batch: Batch<'a>,
    holds: &Holds,
) -> diesel::QueryResult<(Done, Settle<'a>)> {
    let mut inserted = create_bookings(conn, node_id, &held(batch.creates, &holds.creates)).await?;
    let mut claimed =
        super::claims::assign_drivers(conn, node_id, &held(batch.assigns, &holds.assigns)).await?;
    let mut written = write_changes(conn, node_id, held(batch.changes, &holds.changes)).await?;
    let mut settle = Settle::default();
    let mut done = Done {
        changes: Vec::with_capacity(batch.changes.len()),
        creates: Vec::with_capacity(batch.creates.len()),
        assigns: Vec::with_capacity(batch.assigns.len()),
    };
    // The admitted creations were sent in order, and `ord` counts them from 1.
    let mut position = 0;
    for (create, &holds) in batch.creates.iter().zip(&holds.creates) {
        let outcome = match holds {
            false => Created::KeyTaken,
            true => {
                position += 1;
                match inserted.remove(&position) {
                    Some(row) => Created::Created(Box::new(row)),
                    None => Created::AtLimit,
                }
            }
        };
        if let (Some(answer), true) = (&create.answer, holds) {
            let row = match &outcome {
                Created::Created(row) => Some((&**row, None)),
                _ => None,
            };
            settle.add(answer, row);
        }
        done.creates.push(outcome);
    }
    for (assign, &holds) in batch.assigns.iter().zip(&holds.assigns) {
        let outcome = match holds {
            false => Assigned::KeyTaken,
            true => claimed
                .remove(&assign.booking_id)
                .unwrap_or(Assigned::NoneFree),
        };
        if let (Some(answer), true) = (&assign.answer, holds) {
            let row = match &outcome {
                Assigned::Assigned(row, driver) => Some((&**row, Some(&**driver))),
                _ => None,
            };
            settle.add(answer, row);
        }
        done.assigns.push(outcome);
    }
    for (change, &holds) in batch.changes.iter().zip(&holds.changes) {
        let outcome = match holds {
            false => Outcome::KeyTaken,
            true => match written.remove(&change.booking_id) {
                Some((row, released)) => Outcome::Written(Box::new(row), released),
                None => Outcome::Fenced,
            },
        };
        if let (Some(answer), true) = (&change.answer, holds) {
            let row = match &outcome {
                Outcome::Written(row, _) => Some((&**row, None)),
                _ => None,
            };
            settle.add(answer, row);
        }
        done.changes.push(outcome);
    }
    Ok((done, settle))
}

/// Inserts every key that is free, as a placeholder; the claimed ones as (scope, key).
async fn claim_keys(
    tx: &mut AsyncPgConnection,
    keys: Vec<&IdempotencyKey>,
) -> diesel::QueryResult<Vec<(String, String)>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let claimed: Vec<ClaimedKey> = prepared(
        diesel::sql_query(CLAIM_KEYS_SQL)
            .bind::<Array<Text>, _>(keys.iter().map(|k| &k.scope).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(keys.iter().map(|k| &k.key).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(keys.iter().map(|k| &k.fingerprint).collect::<Vec<_>>()),
    )
    .load(tx)
    .await?;
    Ok(claimed.into_iter().map(|k| (k.scope, k.key)).collect())
}

/// The answers to fill in and the keys to give back, once the batch's outcomes are known.
#[derive(Default)]
struct Settle<'a> {
    answered: Vec<(&'a IdempotencyKey, i16, String)>,
    given_back: Vec<&'a IdempotencyKey>,
}

impl<'a> Settle<'a> {
    /// `row`: what the request wrote (and the driver it claimed), if it wrote anything;
    /// otherwise its key goes back (a retry of the request is decided again).
    fn add(&mut self, answer: &'a Answer, row: Option<(&Booking, Option<&Driver>)>) {
        match row {
            Some((row, driver)) => {
                let body = (answer.render)(row, driver);
                self.answered.push((&answer.key, answer.status, body));
            }
            None => self.given_back.push(&answer.key),
        }
    }

    async fn run(self, tx: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
        if self.answered.is_empty() && self.given_back.is_empty() {
            return Ok(());
        }
        let (answered, given_back) = (&self.answered, &self.given_back);
        prepared(
            diesel::sql_query(SETTLE_KEYS_SQL)
                .bind::<Array<Text>, _>(answered.iter().map(|a| &a.0.scope).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(answered.iter().map(|a| &a.0.key).collect::<Vec<_>>())
                .bind::<Array<SmallInt>, _>(answered.iter().map(|a| a.1).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(answered.iter().map(|a| &a.2).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(given_back.iter().map(|k| &k.scope).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(given_back.iter().map(|k| &k.key).collect::<Vec<_>>()),
        )
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// The created rows by their position among `creates` (from 1); a missing position was at its
/// rider's limit.
async fn create_bookings(
    tx: &mut AsyncPgConnection,
    node_id: &str,
    creates: &[&Create],
) -> diesel::QueryResult<HashMap<i64, Booking>> {
    if creates.is_empty() {
        return Ok(HashMap::new());
    }
    let riders: Vec<i64> = creates.iter().map(|c| c.new.rider_id.0).collect();
    prepared(diesel::sql_query(LOCK_RIDERS_SQL).bind::<Array<BigInt>, _>(&riders))
        .execute(tx)
        .await?;
    let column = |f: fn(&Create) -> f64| creates.iter().map(|c| f(c)).collect::<Vec<_>>();
    let rows: Vec<CreatedRow> = prepared(
        diesel::sql_query(CREATES_SQL)
            .bind::<Array<BigInt>, _>(&riders)
            .bind::<Array<Double>, _>(column(|c| c.new.pickup.lat))
            .bind::<Array<Double>, _>(column(|c| c.new.pickup.lng))
            .bind::<Array<Double>, _>(column(|c| c.new.dropoff.lat))
            .bind::<Array<Double>, _>(column(|c| c.new.dropoff.lng))
            .bind::<Array<Numeric>, _>(
                creates
                    .iter()
                    .map(|c| fare_to_decimal(c.new.estimated_fare))
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(
                creates
                    .iter()
                    .map(|c| c.new.vehicle_type.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Text>, _>(
                creates
                    .iter()
                    .map(|c| c.request_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(
                creates
                    .iter()
                    .map(|c| c.actor.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<BigInt>, _>(
                creates
                    .iter()
                    .map(|c| i64::from(c.max_active))
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<BigInt>, _>(creates.iter().map(|c| c.token).collect::<Vec<_>>())
            .bind::<Text, _>(node_id),
    )
    .load(tx)
    .await?;
    Ok(rows.into_iter().map(|row| (row.ord, row.booking)).collect())
}

/// The changed rows by booking id, with the driver each handed back.
async fn write_changes(
    conn: &mut AsyncPgConnection,
    node_id: &str,
    changes: Vec<&Change>,
) -> diesel::QueryResult<HashMap<i64, (Booking, Option<ReleasedDriver>)>> {
    if changes.is_empty() {
        return Ok(HashMap::new());
    }
    let text = |f: fn(&Change) -> Option<&str>| changes.iter().map(|c| f(c)).collect::<Vec<_>>();
    let rows: Vec<ChangedRow> = prepared(
        diesel::sql_query(CHANGES_SQL)
            .bind::<Array<BigInt>, _>(changes.iter().map(|c| c.booking_id).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(changes.iter().map(|c| c.token).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(changes.iter().map(|c| c.from.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(changes.iter().map(|c| c.to.as_str()).collect::<Vec<_>>())
            .bind::<Array<Nullable<Numeric>>, _>(
                changes
                    .iter()
                    .map(|c| c.actual_fare.map(fare_to_decimal))
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(text(|c| c.cancellation_reason.as_deref()))
            .bind::<Array<Nullable<BigInt>>, _>(
                changes
                    .iter()
                    .map(|c| c.release_driver.map(|d| d.0))
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Timestamptz>>, _>(
                changes.iter().map(|c| c.offer).collect::<Vec<_>>(),
            )
            .bind::<Array<Text>, _>(
                changes
                    .iter()
                    .map(|c| c.request_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(text(|c| c.actor.as_deref()))
            .bind::<Timestamptz, _>(Utc::now())
            .bind::<Text, _>(node_id),
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.booking.id, row.split()))
        .collect())
}
