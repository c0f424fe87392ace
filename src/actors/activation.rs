//! How a booking actor comes to own its booking: the lease first, then (unless this node just
//! created the booking) the fencing token bumped in PostgreSQL; or why it could not.

use std::time::Duration;

use actix::Recipient;

use super::{BookingError, SharedDeps};
use crate::domain::ids::BookingId;
use crate::lease::manager::{Acquire, Grant, LeaseLost, Release};
use crate::lease::postgres::{self as pg_leases, Activation};
use crate::lease::{booking_key, LeaseError, LeaseOwner};
use crate::storage::models::Booking;
use crate::storage::pool;

/// Why an activation failed; replayed to every message that was queued behind it.
#[derive(Debug, Clone)]
pub(super) enum Failure {
    NotFound,
    /// Another lease holds the booking: the request is routed to its node, or waits it out.
    Elsewhere(LeaseOwner),
    /// Redis went silent: leases come from PostgreSQL once this wait is over.
    Switching(Duration),
    LeaseStoreDown,
    DatabaseDown(String),
}

impl Failure {
    pub(super) fn to_error(&self, id: BookingId) -> BookingError {
        match self {
            Self::NotFound => BookingError::NotFound(id),
            Self::Elsewhere(owner) => BookingError::Elsewhere(owner.clone()),
            Self::Switching(wait) => BookingError::LeaseUnavailable {
                retry_after: *wait,
                source: LeaseError::NotYet(*wait),
            },
            Self::LeaseStoreDown => BookingError::LeaseUnavailable {
                retry_after: Duration::from_secs(1),
                source: LeaseError::ManagerGone,
            },
            Self::DatabaseDown(why) => BookingError::Store(
                crate::storage::StoreError::Unavailable(anyhow::anyhow!("{why}")),
            ),
        }
    }
}

/// Acquires the booking's lease: one attempt. When another holder has it, the caller routes the
/// request to that holder's node or waits the lease out.
async fn acquire(
    deps: &SharedDeps,
    id: BookingId,
    holder: Recipient<LeaseLost>,
) -> Result<Grant, Failure> {
    let key = booking_key(&deps.key_prefix, id);
    match deps.leases.send(Acquire { key, holder }).await {
        Ok(Ok(grant)) => Ok(grant),
        Ok(Err(LeaseError::Held(owner))) => Err(Failure::Elsewhere(owner)),
        // Redis went silent: PostgreSQL grants leases once every Redis lease has expired.
        Ok(Err(LeaseError::NotYet(wait))) => Err(Failure::Switching(wait)),
        Ok(Err(_)) | Err(_) => Err(Failure::LeaseStoreDown),
    }
}

/// Takes the lease of a booking this node has just created. The row carries the token it was
/// inserted with, so no bump is needed: any activation elsewhere, even one that slipped in
/// between the insert and this lease, bumps the token past it and fences this actor's writes.
pub(super) async fn adopt(
    deps: SharedDeps,
    created: Booking,
    holder: Recipient<LeaseLost>,
) -> Result<(Booking, Option<Grant>), Failure> {
    let grant = acquire(&deps, BookingId(created.id), holder).await?;
    Ok((created, Some(grant)))
}

/// Acquires the lease, then bumps the fencing token and loads the row.
/// A terminal booking is loaded without a bump and its lease given back at once: it can never
/// change again, so refusing commands for it needs no owner and writes nothing. A booking whose
/// lease another node holds in PostgreSQL is not bumped either: the Redis lease goes back and
/// the request goes to that node.
pub(super) async fn activate(
    deps: SharedDeps,
    id: BookingId,
    holder: Recipient<LeaseLost>,
) -> Result<(Booking, Option<Grant>), Failure> {
    let grant = acquire(&deps, id, holder).await?;
    let row = async {
        let mut conn = pool::conn(&deps.pool).await.map_err(|e| e.to_string())?;
        pg_leases::activate(&mut conn, id, &grant.key, &grant.value)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    let outcome = match row {
        Ok(Activation::Owned(booking)) => return Ok((booking, Some(grant))),
        Ok(Activation::Terminal(terminal)) => Ok((terminal, None)),
        Ok(Activation::NotFound) => Err(Failure::NotFound),
        Ok(Activation::LeasedElsewhere(owner)) => Err(Failure::Elsewhere(owner)),
        Err(why) => Err(Failure::DatabaseDown(why)),
    };
    // Waited for, so the key is gone before anyone could ask for it again.
    let _ = deps
        .leases
        .send(Release {
            key: grant.key,
            value: grant.value,
        })
        .await;
    outcome
}
