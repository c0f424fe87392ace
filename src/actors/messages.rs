//! What a booking actor is asked: one [`Act`] message carrying the domain's [`Action`], plus the
//! registry's lifecycle messages ([`IdleStop`], [`Passivate`]).

use std::sync::Arc;
use std::time::Instant;

use actix::Message;

use super::BookingError;
use crate::domain::action::Action;
use crate::domain::ids::RequestId;
use crate::envelope::success_body;
use crate::storage::idempotency::IdempotencyKey;
use crate::storage::models::{Booking, Driver};
use crate::storage::writer::Answer;

/// Do `action` to the booking, for the request `meta` describes.
#[derive(Message, Clone)]
#[rtype(result = "Result<Done, BookingError>")]
pub struct Act {
    pub action: Action,
    pub meta: RequestMeta,
}

/// A change made: the booking as written, and for an assignment the driver it claimed.
#[derive(Debug, Clone)]
pub struct Done {
    pub booking: Booking,
    pub driver: Option<Driver>,
}

impl Done {
    /// The success answer's body (API.md): an assignment answers the booking and its driver,
    /// every other action the booking.
    pub fn body(&self, message: &str) -> String {
        match &self.driver {
            Some(driver) => assigned_body(message, &self.booking, Some(driver)),
            None => success_body(message, &self.booking),
        }
    }
}

/// The success body of an assignment: the booking and the driver it claimed.
pub(super) fn assigned_body(message: &str, booking: &Booking, driver: Option<&Driver>) -> String {
    let data = serde_json::json!({ "booking": booking, "driver": driver });
    success_body(message, data)
}

/// What every booking message carries about the request behind it.
#[derive(Debug, Clone)]
pub(crate) struct RequestMeta {
    pub request_id: RequestId,
    /// The caller's token subject, for the audit trail.
    pub actor: Option<String>,
    /// When the message was sent, for the log line's `waited_us`.
    pub sent_at: Instant,
    /// After this, the caller has given up: the actor refuses the message without writing, so a
    /// change is never made after its requester was told it failed.
    pub deadline: Instant,
    /// When the request carried an `Idempotency-Key`: the key, and the message of the success
    /// answer to store with the change.
    pub idempotency: Option<(IdempotencyKey, &'static str)>,
}

impl RequestMeta {
    /// The answer to store with the write when the request has an `Idempotency-Key`: a 200
    /// whose body `body` renders from the success message, the written row and its driver.
    pub(super) fn answer(
        &self,
        body: fn(&'static str, &Booking, Option<&Driver>) -> String,
    ) -> Option<Answer> {
        self.idempotency.clone().map(|(key, message)| Answer {
            key,
            status: 200,
            render: Arc::new(move |row, driver| body(message, row, driver)),
        })
    }
}

/// Sent by the registry's idle sweep to an actor whose idle clock ran out when it looked: the
/// actor stops unless a message kept it alive since.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct IdleStop;

/// Stop after the messages already queued: release the lease (waiting for Redis) and stop.
/// Sent by the registry at shutdown and by the actor itself when it has nothing left to own.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub(crate) struct Passivate;
