//! The node's group-commit writer: booking actors hand it their fenced state changes, and the
//! HTTP layer its new bookings; it applies everything that piled up as a few set-based
//! statements (`UPDATE … FROM unnest(…)`, `INSERT … SELECT … FROM unnest(…)`), so many requests
//! share one round trip per statement, one statement set-up and one commit.
//!
//! Each change keeps its own fenced condition, a row's failure is its own, and nothing waits on a
//! timer: docs/architecture.md ("Group commit: the writer") says how, and why it is as safe as one
//! statement per change. One booking appears at most once per batch.

mod batch;
mod claims;

use batch::Batch;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use prometheus::{Histogram, HistogramOpts};
use tokio::sync::{mpsc, oneshot};

use super::bookings::{NewBooking, ReleasedDriver};
use super::idempotency::IdempotencyKey;
use super::models::{Booking, Driver};
use super::pool::{self, PgPool, PooledConn, StoreError};
use crate::domain::booking::BookingStatus;
use crate::domain::ids::DriverId;
use crate::domain::values::Fare;

/// How to render the answer stored under an idempotency key from the written row (and, for an
/// assignment, the driver it claimed).
pub(crate) type Render = Arc<dyn Fn(&Booking, Option<&Driver>) -> String + Send + Sync>;

/// The answer to store under a request's `Idempotency-Key`, committed with its change.
pub struct Answer {
    pub key: IdempotencyKey,
    /// The HTTP status of the answer (2xx).
    pub status: i16,
    pub render: Render,
}

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
    /// When the requester gives up: an item still queued then is not written, so a change is
    /// never made after its requester was told it failed (one already in a batch is committed).
    pub deadline: Instant,
    pub answer: Option<Answer>,
}

/// A new booking, created under `token` unless its rider already has `max_active` active ones.
pub struct Create {
    pub new: NewBooking,
    pub max_active: u32,
    /// The fencing token the booking is inserted with (the creating node's actor owns it).
    pub token: i64,
    pub request_id: String,
    pub actor: Option<String>,
    /// See [`Change::deadline`].
    pub deadline: Instant,
    pub answer: Option<Answer>,
}

/// A pending booking to assign to the first of its `candidates` (in order) that is online,
/// free, of its vehicle class and not locked by another transaction. Claims in a batch never
/// wait for a locked driver; a claim that must wait is the caller's to make on its own.
pub struct Assignment {
    pub booking_id: i64,
    /// The writer's fencing token: the booking is assigned only while it still carries it.
    pub token: i64,
    pub candidates: Vec<DriverId>,
    pub vehicle_type: Option<String>,
    pub request_id: String,
    pub actor: Option<String>,
    /// See [`Change::deadline`].
    pub deadline: Instant,
    pub answer: Option<Answer>,
}

/// What became of one assignment.
#[derive(Debug)]
pub enum Assigned {
    Assigned(Box<Booking>, Box<Driver>),
    /// None of the candidates could be claimed: nothing was written.
    NoneFree,
    /// The booking is no longer pending under the token: nothing was written.
    Fenced,
    /// See [`Outcome::KeyTaken`].
    KeyTaken,
    /// See [`Outcome::Expired`].
    Expired,
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
    /// The deadline passed while the change waited for a batch: it was not written.
    Expired,
}

/// What became of one creation.
#[derive(Debug)]
pub enum Created {
    Created(Box<Booking>),
    /// The rider already has its share of active bookings: nothing was written.
    AtLimit,
    /// See [`Outcome::KeyTaken`].
    KeyTaken,
    /// See [`Outcome::Expired`].
    Expired,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Job {
    Change(Change, Reply<Outcome>),
    Create(Create, Reply<Created>),
    Assign(Assignment, Reply<Assigned>),
}

impl Job {
    fn deadline(&self) -> Instant {
        match self {
            Self::Change(change, _) => change.deadline,
            Self::Create(create, _) => create.deadline,
            Self::Assign(assign, _) => assign.deadline,
        }
    }

    fn booking_id(&self) -> Option<i64> {
        match self {
            Self::Change(change, _) => Some(change.booking_id),
            Self::Assign(assign, _) => Some(assign.booking_id),
            Self::Create(..) => None,
        }
    }

    /// Answers a job that was never written.
    fn expire(self) {
        // A caller that stopped waiting has nothing to be told.
        match self {
            Self::Change(_, reply) => drop(reply.send(Ok(Outcome::Expired))),
            Self::Create(_, reply) => drop(reply.send(Ok(Created::Expired))),
            Self::Assign(_, reply) => drop(reply.send(Ok(Assigned::Expired))),
        }
    }
}

/// The items of one batch, by kind, in the order they came.
#[derive(Default)]
struct Items {
    changes: Vec<Change>,
    creates: Vec<Create>,
    assigns: Vec<Assignment>,
}

impl Items {
    fn len(&self) -> usize {
        self.changes.len() + self.creates.len() + self.assigns.len()
    }

    fn as_batch(&self) -> Batch<'_> {
        Batch {
            changes: &self.changes,
            creates: &self.creates,
            assigns: &self.assigns,
        }
    }
}

/// One result per item of [`Items`], in the same order.
#[derive(Default)]
struct Results {
    changes: Vec<Result<Outcome, StoreError>>,
    creates: Vec<Result<Created, StoreError>>,
    assigns: Vec<Result<Assigned, StoreError>>,
}

impl Results {
    fn failed(items: &Items, error: &StoreError) -> Self {
        Self {
            changes: items
                .changes
                .iter()
                .map(|_| Err(unavailable(error)))
                .collect(),
            creates: items
                .creates
                .iter()
                .map(|_| Err(unavailable(error)))
                .collect(),
            assigns: items
                .assigns
                .iter()
                .map(|_| Err(unavailable(error)))
                .collect(),
        }
    }
}

/// How many items each batch carried, for `/metrics`: a histogram with buckets of powers of two
/// up to [`Writer::MAX_BATCH`].
pub fn batch_sizes() -> prometheus::Result<Histogram> {
    Histogram::with_opts(
        HistogramOpts::new(
            "ridelock_write_batch_size",
            "Booking changes written per group commit.",
        )
        .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
    )
}

/// The handle actors and handlers write through; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
    sizes: Histogram,
}

impl Writer {
    /// Most items in one batch: beyond this a statement's own work dominates and a longer batch
    /// only delays its first item.
    pub(crate) const MAX_BATCH: usize = 128;

    /// Starts the writer's task on the current actix/tokio runtime; it ends when every handle
    /// is dropped. `node_id` goes into every audit event it writes; each batch's size goes into
    /// `sizes` ([`batch_sizes`]).
    pub fn start(pool: PgPool, node_id: String, sizes: Histogram) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        actix_rt::spawn(run(pool, node_id, queue, sizes.clone()));
        Self { jobs, sizes }
    }

    pub fn batch_sizes(&self) -> &Histogram {
        &self.sizes
    }

    /// Writes `change` with whatever else is waiting, and answers after the commit.
    pub async fn write(&self, change: Change) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Change(change, reply), answer).await
    }

    /// Creates a booking with whatever else is waiting, and answers after the commit.
    pub async fn create(&self, create: Create) -> Result<Created, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Create(create, reply), answer).await
    }

    /// Assigns a booking with whatever else is waiting, and answers after the commit.
    pub async fn assign(&self, assign: Assignment) -> Result<Assigned, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Assign(assign, reply), answer).await
    }

    async fn submit<T>(
        &self,
        job: Job,
        answer: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let gone = || StoreError::Unavailable(anyhow::anyhow!("the storage writer has stopped"));
        self.jobs.send(job).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run(
    pool: PgPool,
    node_id: String,
    mut queue: mpsc::UnboundedReceiver<Job>,
    sizes: Histogram,
) {
    // Changes of a booking that already had one in the batch being formed.
    let mut next: Vec<Job> = Vec::new();
    // Kept from batch to batch, so the writer never waits for the pool behind requests that
    // wait for the writer; dropped after an outage, and taken afresh for the next batch.
    let mut conn: Option<PooledConn> = None;
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
            let taken = job
                .booking_id()
                .is_some_and(|id| batch.iter().any(|queued| queued.booking_id() == Some(id)));
            match taken {
                true => next.push(job),
                false => batch.push(job),
            }
        }
        let now = Instant::now();
        let (batch, expired): (Vec<Job>, Vec<Job>) =
            batch.into_iter().partition(|job| job.deadline() > now);
        expired.into_iter().for_each(Job::expire);
        if batch.is_empty() {
            continue;
        }
        sizes.observe(batch.len() as f64);
        let mut items = Items::default();
        let (mut to_changes, mut to_creates, mut to_assigns) = (Vec::new(), Vec::new(), Vec::new());
        for job in batch {
            match job {
                Job::Change(change, reply) => {
                    items.changes.push(change);
                    to_changes.push(reply);
                }
                Job::Create(create, reply) => {
                    items.creates.push(create);
                    to_creates.push(reply);
                }
                Job::Assign(assign, reply) => {
                    items.assigns.push(assign);
                    to_assigns.push(reply);
                }
            }
        }
        let results = apply(&pool, &mut conn, &node_id, &items).await;
        // A caller that stopped waiting (its request timed out) has nothing to be told.
        for (reply, result) in to_changes.into_iter().zip(results.changes) {
            let _ = reply.send(result);
        }
        for (reply, result) in to_creates.into_iter().zip(results.creates) {
            let _ = reply.send(result);
        }
        for (reply, result) in to_assigns.into_iter().zip(results.assigns) {
            let _ = reply.send(result);
        }
    }
}

/// Applies one batch on `held` (taken from the pool if there is none). A failed statement is
/// retried item by item, so a fault in one row fails only that item.
async fn apply(
    pool: &PgPool,
    held: &mut Option<PooledConn>,
    node_id: &str,
    items: &Items,
) -> Results {
    let conn = match held {
        Some(conn) => conn,
        None => match pool::conn(pool).await {
            Ok(conn) => held.insert(conn),
            Err(error) => return Results::failed(items, &error),
        },
    };
    let results = apply_on(conn, node_id, items).await;
    if results.changes.iter().any(is_outage)
        || results.creates.iter().any(is_outage)
        || results.assigns.iter().any(is_outage)
    {
        *held = None;
    }
    results
}

async fn apply_on(conn: &mut PooledConn, node_id: &str, items: &Items) -> Results {
    let error = match batch::write(conn, node_id, items.as_batch()).await {
        Ok(done) => {
            return Results {
                changes: done.changes.into_iter().map(Ok).collect(),
                creates: done.creates.into_iter().map(Ok).collect(),
                assigns: done.assigns.into_iter().map(Ok).collect(),
            }
        }
        Err(error) => match StoreError::from(error) {
            StoreError::Query(error) if items.len() > 1 => error,
            error @ StoreError::Query(_) => {
                let mut results = Results::default();
                match (items.changes.len(), items.creates.len()) {
                    (1, _) => results.changes.push(Err(error)),
                    (_, 1) => results.creates.push(Err(error)),
                    _ => results.assigns.push(Err(error)),
                }
                return results;
            }
            error => return Results::failed(items, &error),
        },
    };
    log::warn!(
        "write batch of {} failed, writing one by one: {error}",
        items.len()
    );
    let mut results = Results::default();
    let none = Batch::default();
    for change in &items.changes {
        let alone = Batch {
            changes: std::slice::from_ref(change),
            ..none
        };
        let done = batch::write(conn, node_id, alone).await;
        let result = done.map(|mut done| done.changes.remove(0));
        results.changes.push(result.map_err(StoreError::from));
    }
    for create in &items.creates {
        let alone = Batch {
            creates: std::slice::from_ref(create),
            ..none
        };
        let done = batch::write(conn, node_id, alone).await;
        let result = done.map(|mut done| done.creates.remove(0));
        results.creates.push(result.map_err(StoreError::from));
    }
    for assign in &items.assigns {
        let alone = Batch {
            assigns: std::slice::from_ref(assign),
            ..none
        };
        let done = batch::write(conn, node_id, alone).await;
        let result = done.map(|mut done| done.assigns.remove(0));
        results.assigns.push(result.map_err(StoreError::from));
    }
    results
}

fn is_outage<T>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Unavailable(_)))
}

/// The same outage for every item of a batch (`StoreError` is not `Clone`).
fn unavailable(error: &StoreError) -> StoreError {
    StoreError::Unavailable(anyhow::anyhow!("{error:#}"))
}
