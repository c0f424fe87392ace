//! One actix actor per live booking ([`booking::BookingActor`]), found or started by the
//! [`registry::BookingRegistry`]. Every mutation of a booking is a message to its actor, so
//! requests for one booking are handled strictly one at a time inside the node.

mod activation;
pub(crate) mod booking;
pub(crate) mod messages;
pub(crate) mod registry;
mod roster;
mod search;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;

use crate::config::{AssignSettings, BookingSettings};
use crate::domain::booking::TransitionError;
use crate::domain::ids::{BookingId, NodeId};
use crate::domain::values::FieldError;
use crate::geo::DriverIndex;
use crate::lease::manager::LeaseManager;
use crate::lease::{LeaseError, LeaseOwner};
use crate::storage::models::Booking;
use crate::storage::writer::Writer;
use crate::storage::{PgPool, StoreError};

/// What a booking actor needs from the node, shared by all of them.
pub(crate) struct BookingDeps {
    pub node_id: NodeId,
    pub pool: PgPool,
    /// Group-commits the actors' state changes (`storage::writer`).
    pub writer: Writer,
    pub drivers: DriverIndex,
    pub leases: Addr<LeaseManager>,
    pub key_prefix: String,
    pub booking: BookingSettings,
    pub assign: AssignSettings,
    /// How long a request may take in all, forwarding and waiting for a lease included.
    pub request_timeout: Duration,
}

pub(crate) type SharedDeps = Arc<BookingDeps>;

/// Why a booking message was not applied.
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    #[error("booking {0} not found")]
    NotFound(BookingId),
    /// The state machine refused; carries the booking as it is now.
    #[error("{error}")]
    Refused {
        error: TransitionError,
        booking: Box<Booking>,
    },
    #[error("no drivers available")]
    NoDriversAvailable { booking: Box<Booking> },
    /// A value the booking's own state rules out (a fare far above its estimate).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// Another lease holder owns the booking (usually another node): route the request there.
    #[error("booking owned by node {}", .0.node)]
    Elsewhere(LeaseOwner),
    /// The lease store or the lease manager did not answer.
    #[error("lease unavailable")]
    LeaseUnavailable {
        retry_after: Duration,
        #[source]
        source: LeaseError,
    },
    /// This actor no longer owns the booking (its fencing token went stale mid-write, or its
    /// lease's deadline passed unconfirmed): it stepped down and wrote nothing. The request is
    /// routed again, never retried as the same write.
    #[error("booking ownership lost")]
    Fenced,
    /// A copy of this request (same Idempotency-Key) stored its answer first: this one's change
    /// was rolled back, and the stored answer is the reply.
    #[error("idempotency key already answered")]
    KeyTaken,
    /// The request's deadline passed before the actor got to it: nothing was written.
    #[error("request deadline passed before the booking's actor could act")]
    DeadlinePassed,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The actor could not take the message (stopped, or no reply in time).
    #[error("booking actor unavailable")]
    Mailbox(#[source] actix::MailboxError),
}

impl BookingError {
    /// The `err:<code>` outcome for the actor log line.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "booking_not_found",
            Self::Refused { error, .. } => error.code(),
            Self::NoDriversAvailable { .. } => "no_drivers_available",
            Self::Invalid(_) => "invalid_request",
            Self::Elsewhere(_) | Self::LeaseUnavailable { .. } | Self::Fenced => {
                "lease_unavailable"
            }
            Self::Store(StoreError::Unavailable(_)) | Self::Mailbox(_) | Self::DeadlinePassed => {
                "unavailable"
            }
            Self::Store(StoreError::Query(_)) => "internal",
            Self::KeyTaken => "idempotency_key_taken",
        }
    }
}

impl From<diesel::result::Error> for BookingError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Store(error.into())
    }
}
