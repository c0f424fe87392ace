//! Driver search for an assignment: the geo index's nearest candidates first, then PostgreSQL
//! (the truth), each claim made through the node's group-commit writer.

use diesel_async::AsyncConnection;

use super::messages::{assigned_body, RequestMeta};
use super::{BookingError, SharedDeps};
use crate::domain::ids::{BookingId, DriverId};
use crate::storage::bookings::{self as store, AssignError, Audit, ReleasedDriver};
use crate::storage::idempotency;
use crate::storage::models::{Booking, Driver};
use crate::storage::writer::{Assigned, Assignment};
use crate::storage::{drivers, pool};

/// How often assignment searches PostgreSQL again after every driver it found was claimed first.
const SQL_SEARCH_ROUNDS: usize = 3;

/// Tries the nearest candidates in order; a candidate taken meanwhile costs one rolled-back claim.
/// Candidates come from the geo index first. The index lags claims and releases by a moment, so
/// under load its nearest few can all be taken while free drivers stand a little further out:
/// when none of its candidates can be claimed, PostgreSQL (the truth) is asked for the rest.
///
/// `no_drivers_available` is a refusal like the state machine's, so it obeys the same rule
/// ([`BookingActor::refuse`]): it is answered only from a copy of the booking confirmed after the
/// request was sent. `confirmed` says the actor's copy was; a claim that found every candidate
/// taken confirmed it too (it compares the token); otherwise the token is read before answering,
/// and a newer one means this actor is stale (`Fenced`: it steps down, the request is routed
/// again).
pub(super) async fn assign_nearest(
    deps: &SharedDeps,
    booking: Booking,
    token: i64,
    meta: &RequestMeta,
    mut confirmed: bool,
) -> Result<(Booking, Driver), BookingError> {
    if let Some(indexed) = indexed_candidates(deps, &booking).await {
        confirmed |= !indexed.is_empty();
        if let Some(done) = claim_batched(deps, &booking, token, indexed, meta).await? {
            return Ok(done);
        }
    }
    // Every candidate found online was claimed by someone else before us, or locked for a moment;
    // drivers released meanwhile are online again, so search again. The last round waits for
    // locked candidates instead of skipping them: only a search that finds nobody online, or
    // finds every candidate taken after waiting, means no driver is available. No pooled
    // connection is held while the writer works: the writer needs one too.
    for round in 1..=SQL_SEARCH_ROUNDS {
        let mut conn = pool::conn(&deps.pool).await?;
        let online: Vec<DriverId> = drivers::nearby_sql(
            &mut conn,
            booking.pickup(),
            deps.assign.radius_km,
            booking.vehicle_type.as_deref(),
            deps.assign.max_candidates,
        )
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
        if online.is_empty() {
            break;
        }
        confirmed = true;
        let claimed = match round == SQL_SEARCH_ROUNDS {
            false => {
                drop(conn);
                claim_batched(deps, &booking, token, online, meta).await?
            }
            true => claim_waiting(deps, &mut conn, &booking, token, &online, meta).await?,
        };
        if let Some(done) = claimed {
            return Ok(done);
        }
    }
    if !confirmed {
        let mut conn = pool::conn(&deps.pool).await?;
        if store::fencing_token(&mut conn, BookingId(booking.id)).await? != Some(token) {
            return Err(BookingError::Fenced);
        }
    }
    Err(BookingError::NoDriversAvailable {
        booking: Box::new(booking),
    })
}

/// The first of `candidates` that is free and not locked, assigned to `booking` through the
/// node's group-commit writer, with the assignments of other bookings waiting at the same time.
async fn claim_batched(
    deps: &SharedDeps,
    booking: &Booking,
    token: i64,
    candidates: Vec<DriverId>,
    meta: &RequestMeta,
) -> Result<Option<(Booking, Driver)>, BookingError> {
    if candidates.is_empty() {
        return Ok(None);
    }
    let assign = Assignment {
        booking_id: booking.id,
        token,
        candidates,
        vehicle_type: booking.vehicle_type.clone(),
        request_id: meta.request_id.as_str().to_owned(),
        actor: meta.actor.clone(),
        deadline: meta.deadline,
        answer: meta.answer(assigned_body),
    };
    match deps.writer.assign(assign).await? {
        Assigned::Assigned(assigned, driver) => {
            remove_from_index(deps, DriverId(driver.id));
            Ok(Some((*assigned, *driver)))
        }
        Assigned::NoneFree => Ok(None),
        Assigned::Fenced => Err(BookingError::Fenced),
        Assigned::KeyTaken => Err(BookingError::KeyTaken),
        Assigned::Expired => Err(BookingError::DeadlinePassed),
    }
}

/// Like [`claim_batched`], but waiting for candidates another transaction holds locked: on its
/// own, outside any batch (a batch never waits on a lock), in one transaction with the stored
/// answer when the request has an idempotency key.
async fn claim_waiting(
    deps: &SharedDeps,
    conn: &mut diesel_async::AsyncPgConnection,
    booking: &Booking,
    token: i64,
    candidates: &[DriverId],
    meta: &RequestMeta,
) -> Result<Option<(Booking, Driver)>, BookingError> {
    let audit = Audit {
        node_id: &deps.node_id.0,
        request_id: meta.request_id.as_str(),
        fencing_token: token,
        actor: meta.actor.as_deref(),
    };
    let claimed = match &meta.idempotency {
        None => store::assign(conn, booking, candidates, audit)
            .await
            .map_err(Claimed::Assign),
        // The assignment and its stored answer commit together, or neither does.
        Some((key, message)) => {
            conn.transaction(async |tx| {
                let claimed = store::assign(tx, booking, candidates, audit)
                    .await
                    .map_err(Claimed::Assign)?;
                if let Some((assigned, driver)) = &claimed {
                    let body = assigned_body(message, assigned, Some(driver));
                    if !idempotency::store(tx, key, 200, &body).await? {
                        return Err(Claimed::KeyTaken);
                    }
                }
                Ok(claimed)
            })
            .await
        }
    };
    match claimed {
        Ok(Some((assigned, driver))) => {
            remove_from_index(deps, DriverId(driver.id));
            Ok(Some((assigned, driver)))
        }
        Ok(None) => Ok(None),
        Err(Claimed::Assign(AssignError::Fenced)) => Err(BookingError::Fenced),
        Err(Claimed::Assign(AssignError::DriverTaken)) => Ok(None),
        Err(Claimed::Assign(AssignError::Db(error))) => Err(error.into()),
        Err(Claimed::KeyTaken) => Err(BookingError::KeyTaken),
    }
}

/// Why a claim did not stand.
enum Claimed {
    Assign(AssignError),
    /// A copy of the request stored its answer first; this claim was rolled back.
    KeyTaken,
}

impl From<diesel::result::Error> for Claimed {
    fn from(error: diesel::result::Error) -> Self {
        Self::Assign(AssignError::Db(error))
    }
}

/// Nearest indexed drivers to the pickup, or `None` when the index cannot help: it knows
/// positions but not vehicle classes, it holds no drivers near the poles, and it may be down.
async fn indexed_candidates(deps: &SharedDeps, booking: &Booking) -> Option<Vec<DriverId>> {
    if booking.vehicle_type.is_some() {
        return None;
    }
    let search = deps
        .drivers
        .search(
            booking.pickup(),
            deps.assign.radius_km,
            deps.assign.max_candidates,
        )
        .await;
    match search {
        Ok(hits) => Some(hits?.into_iter().map(|(id, _)| id).collect()),
        Err(error) => {
            log::warn!(
                "geo search failed, using SQL node={} booking={} error={error}",
                deps.node_id,
                booking.id
            );
            None
        }
    }
}

/// A released driver becomes findable again, off the request's path: the index is only a
/// search aid, so the answer does not wait for it and a failure is logged, not returned (the
/// driver is online in PostgreSQL and the SQL search still finds it).
pub(super) fn return_to_index(deps: &SharedDeps, driver: ReleasedDriver) {
    let Some(at) = driver.location else { return };
    let deps = deps.clone();
    actix_rt::spawn(async move {
        if let Err(error) = deps.drivers.put(driver.id, at).await {
            log::warn!(
                "geo index update failed node={} driver={} error={error}",
                deps.node_id,
                driver.id
            );
        }
    });
}

/// A claimed driver leaves the index, off the request's path (see [`return_to_index`]).
fn remove_from_index(deps: &SharedDeps, driver: DriverId) {
    let deps = deps.clone();
    actix_rt::spawn(async move {
        if let Err(error) = deps.drivers.remove(driver).await {
            log::warn!(
                "geo index update failed node={} driver={driver} error={error}",
                deps.node_id
            );
        }
    });
}
