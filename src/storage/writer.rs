//! The node's group-commit writer: booking actors hand it their fenced state changes, and it
//! applies every change that piled up as one set-based statement (`UPDATE … FROM unnest(…)`),
//! so many actors' changes share one round trip, one statement set-up and one commit.
//!
//! - **Nothing about safety changes.** Each row keeps its own condition (booking id, fencing
//!   token, expected status, and for a taken-back offer the offer itself); its driver release
//!   and audit event are written only for a row whose condition held; an idempotency record
//!   commits in the same transaction as its change. An actor is answered after the commit.
//! - **One row's failure is its own.** A stale token makes that row's update match nothing;
//!   the others are written. No row can raise a constraint error (the changes set no unique
//!   column and the values were checked before), and should a statement fail anyway, each
//!   change of the batch is retried alone so only the one at fault fails.
//! - **No fixed wait.** The writer takes the first change as soon as it comes and, with it,
//!   whatever else is already queued; the next batch forms while this one is in flight. A lone
//!   change goes out at once.
//!
//! One booking appears at most once per batch (a second change of the same booking waits for
//! the next), so every row of the statement is a different booking.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Nullable, Numeric, SmallInt, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::{mpsc, oneshot};

use super::bookings::ReleasedDriver;
use super::idempotency::IdempotencyKey;
use super::models::{fare_to_decimal, Booking};
use super::pool::{self, PgPool, StoreError};
use super::prepared::prepared;
use crate::domain::booking::BookingStatus;
use crate::domain::ids::DriverId;
use crate::domain::values::{Fare, GeoPoint};

/// How to render the answer stored under an idempotency key from the changed row.
pub type Render = Arc<dyn Fn(&Booking) -> String + Send + Sync>;

/// One booking's state change, with the condition it is written under.
pub struct Change {
    pub booking_id: i64,
    /// The writer's fencing token: the row is changed only while it still carries it.
    pub token: i64,
    pub from: BookingStatus,
    pub to: BookingStatus,
    pub actual_fare: Option<Fare>,
    pub cancellation_reason: Option<String>,
    /// The driver the change hands back (online again, no current booking).
    pub release_driver: Option<DriverId>,
    /// For a taken-back offer: the `assigned_at` of the very offer taken back. The booking must
    /// still be assigned to `release_driver` by that offer; it goes back to pending without a
    /// driver (or, cancelled, keeps it).
    pub offer: Option<DateTime<Utc>>,
    pub request_id: String,
    pub actor: Option<String>,
    /// When the requester gives up: a change still queued then is not written, so a change is
    /// never made after its requester was told it failed (one already in a batch is committed).
    pub deadline: Instant,
    /// When the request carried an `Idempotency-Key`: the key, and how to render the answer to
    /// store from the changed row (the answer commits with the change).
    pub answer: Option<(IdempotencyKey, Render)>,
}

/// What became of one change.
#[derive(Debug)]
pub enum Outcome {
    /// Written: the new row, and the driver it handed back.
    Written(Box<Booking>, Option<ReleasedDriver>),
    /// The row no longer matched the change's condition (stale token): nothing was written.
    Fenced,
    /// A copy of the request with the same `Idempotency-Key` stored its answer first: this
    /// change was not made.
    KeyTaken,
    /// The change's deadline passed while it waited for a batch: it was not written.
    Expired,
}

struct Job {
    change: Change,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// How many changes each batch carried: a cumulative histogram for `/metrics`.
#[derive(Debug, Default)]
pub struct BatchSizes {
    /// Batches with at most `BUCKETS[i]` changes (not cumulative here; summed when read).
    counts: [AtomicU64; BUCKETS.len() + 1],
    changes: AtomicU64,
}

/// Upper bounds of the batch-size buckets.
pub const BUCKETS: [u64; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

impl BatchSizes {
    fn record(&self, size: usize) {
        let size = size as u64;
        let slot = BUCKETS
            .iter()
            .position(|&bound| size <= bound)
            .unwrap_or(BUCKETS.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        self.changes.fetch_add(size, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (the last is `+Inf`, every batch), and the changes in all.
    pub fn snapshot(&self) -> ([u64; BUCKETS.len() + 1], u64) {
        let mut cumulative = [0; BUCKETS.len() + 1];
        let mut sum = 0;
        for (slot, count) in self.counts.iter().enumerate() {
            sum += AtomicU64::load(count, Ordering::Relaxed);
            cumulative[slot] = sum;
        }
        (
            cumulative,
            AtomicU64::load(&self.changes, Ordering::Relaxed),
        )
    }
}

/// The handle actors write through; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
    sizes: Arc<BatchSizes>,
}

impl Writer {
    /// Most changes in one statement: beyond this the statement's own work dominates and a
    /// longer batch only delays its first change.
    pub const MAX_BATCH: usize = 128;

    /// Starts the writer's task on the current actix/tokio runtime; it ends when every handle
    /// is dropped. `node_id` goes into every audit event it writes.
    pub fn start(pool: PgPool, node_id: String) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        let sizes = Arc::new(BatchSizes::default());
        actix_rt::spawn(run(pool, node_id, queue, sizes.clone()));
        Self { jobs, sizes }
    }

    pub fn batch_sizes(&self) -> &BatchSizes {
        &self.sizes
    }

    /// Writes `change` with whatever other changes are waiting, and answers after the commit.
    pub async fn write(&self, change: Change) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::Unavailable(anyhow::anyhow!("the storage writer has stopped"));
        self.jobs.send(Job { change, reply }).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run(
    pool: PgPool,
    node_id: String,
    mut queue: mpsc::UnboundedReceiver<Job>,
    sizes: Arc<BatchSizes>,
) {
    // Changes of a booking that already had one in the batch being formed.
    let mut next: Vec<Job> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut next);
        if batch.is_empty() {
            match queue.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
        }
        while batch.len() < Writer::MAX_BATCH {
            let Ok(job) = queue.try_recv() else { break };
            let id = job.change.booking_id;
            match batch.iter().any(|queued| queued.change.booking_id == id) {
                true => next.push(job),
                false => batch.push(job),
            }
        }
        let now = Instant::now();
        let (batch, expired): (Vec<Job>, Vec<Job>) =
            batch.into_iter().partition(|job| job.change.deadline > now);
        for job in expired {
            let _ = job.reply.send(Ok(Outcome::Expired));
        }
        if batch.is_empty() {
            continue;
        }
        sizes.record(batch.len());
        let (changes, replies): (Vec<Change>, Vec<_>) =
            batch.into_iter().map(|job| (job.change, job.reply)).unzip();
        let outcomes = apply(&pool, &node_id, &changes).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // The actor may have given up waiting (its request timed out): nothing to tell.
            let _ = reply.send(outcome);
        }
    }
}

/// Applies `changes` as one batch; one outcome per change, in order. A failed statement is
/// retried change by change, so a fault in one row fails only that change.
async fn apply(
    pool: &PgPool,
    node_id: &str,
    changes: &[Change],
) -> Vec<Result<Outcome, StoreError>> {
    let alone = async |conn: &mut AsyncPgConnection, change: &Change| {
        write_batch(conn, node_id, std::slice::from_ref(change))
            .await
            .map(|mut outcomes| outcomes.remove(0))
            .map_err(StoreError::from)
    };
    let mut conn = match pool::conn(pool).await {
        Ok(conn) => conn,
        Err(error) => return changes.iter().map(|_| Err(unavailable(&error))).collect(),
    };
    if let [change] = changes {
        return vec![alone(&mut conn, change).await];
    }
    match write_batch(&mut conn, node_id, changes)
        .await
        .map_err(StoreError::from)
    {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(StoreError::Query(error)) => {
            log::warn!(
                "write batch of {} failed, writing one by one: {error}",
                changes.len()
            );
            let mut outcomes = Vec::with_capacity(changes.len());
            for change in changes {
                outcomes.push(alone(&mut conn, change).await);
            }
            outcomes
        }
        Err(error) => changes.iter().map(|_| Err(unavailable(&error))).collect(),
    }
}

/// The same outage for every change of a batch (`StoreError` is not `Clone`).
fn unavailable(error: &StoreError) -> StoreError {
    StoreError::Unavailable(anyhow::anyhow!("{error:#}"))
}

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
    #[diesel(sql_type = Nullable<diesel::sql_types::Double>)]
    released_lat: Option<f64>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Double>)]
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

async fn write_batch(
    conn: &mut AsyncPgConnection,
    node_id: &str,
    changes: &[Change],
) -> diesel::QueryResult<Vec<Outcome>> {
    if changes.iter().all(|c| c.answer.is_none()) {
        // One statement is one transaction: no BEGIN/COMMIT round trips.
        let mut written = write_changes(conn, node_id, changes.iter()).await?;
        return Ok(changes
            .iter()
            .map(|c| match written.remove(&c.booking_id) {
                Some((row, released)) => Outcome::Written(Box::new(row), released),
                None => Outcome::Fenced,
            })
            .collect());
    }
    conn.transaction(async |tx| {
        let keyed: Vec<&IdempotencyKey> = changes
            .iter()
            .filter_map(|c| c.answer.as_ref().map(|(key, _)| key))
            .collect();
        let claimed: Vec<ClaimedKey> = prepared(
            diesel::sql_query(CLAIM_KEYS_SQL)
                .bind::<Array<Text>, _>(keyed.iter().map(|k| &k.scope).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(keyed.iter().map(|k| &k.key).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(keyed.iter().map(|k| &k.fingerprint).collect::<Vec<_>>()),
        )
        .load(tx)
        .await?;
        let holds_key = |c: &Change| match &c.answer {
            None => true,
            Some((key, _)) => claimed
                .iter()
                .any(|k| k.scope == key.scope && k.key == key.key),
        };
        let mut written =
            write_changes(tx, node_id, changes.iter().filter(|c| holds_key(c))).await?;
        let mut outcomes = Vec::with_capacity(changes.len());
        let (mut answered, mut given_back) = (Vec::new(), Vec::new());
        for change in changes {
            let outcome = match (holds_key(change), written.remove(&change.booking_id)) {
                (false, _) => Outcome::KeyTaken,
                (true, Some((row, released))) => Outcome::Written(Box::new(row), released),
                (true, None) => Outcome::Fenced,
            };
            if let (Some((key, render)), true) = (&change.answer, holds_key(change)) {
                match &outcome {
                    Outcome::Written(row, _) => answered.push((key, render(row))),
                    _ => given_back.push(key),
                }
            }
            outcomes.push(outcome);
        }
        if !answered.is_empty() || !given_back.is_empty() {
            prepared(
                diesel::sql_query(SETTLE_KEYS_SQL)
                    .bind::<Array<Text>, _>(
                        answered.iter().map(|(k, _)| &k.scope).collect::<Vec<_>>(),
                    )
                    .bind::<Array<Text>, _>(
                        answered.iter().map(|(k, _)| &k.key).collect::<Vec<_>>(),
                    )
                    .bind::<Array<SmallInt>, _>(
                        answered.iter().map(|_| 200_i16).collect::<Vec<_>>(),
                    )
                    .bind::<Array<Text>, _>(answered.iter().map(|(_, b)| b).collect::<Vec<_>>())
                    .bind::<Array<Text>, _>(given_back.iter().map(|k| &k.scope).collect::<Vec<_>>())
                    .bind::<Array<Text>, _>(given_back.iter().map(|k| &k.key).collect::<Vec<_>>()),
            )
            .execute(tx)
            .await?;
        }
        Ok(outcomes)
    })
    .await
}

/// The changed rows by booking id, with the driver each handed back.
async fn write_changes<'a>(
    conn: &mut AsyncPgConnection,
    node_id: &str,
    changes: impl Iterator<Item = &'a Change>,
) -> diesel::QueryResult<HashMap<i64, (Booking, Option<ReleasedDriver>)>> {
    let changes: Vec<&Change> = changes.collect();
    if changes.is_empty() {
        return Ok(HashMap::new());
    }
    let column =
        |f: fn(&Change) -> Option<String>| changes.iter().map(|c| f(c)).collect::<Vec<_>>();
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
            .bind::<Array<Nullable<Text>>, _>(column(|c| c.cancellation_reason.clone()))
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
            .bind::<Array<Nullable<Text>>, _>(column(|c| c.actor.clone()))
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
