//! Booking transitions: each handler validates its body into a [`BookingOp`], which is routed to
//! the booking's actor on whichever node owns it (see `routing`). The actor decides; the handler
//! only validates.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::bookings::booking_id;
use super::extract::{self, Idempotency, Keyed};
use super::routing::{self, BookingOp, ForwardedCall};
use super::State;
use crate::auth::{rules, Principal};
use crate::domain::booking::Party;
use crate::domain::ids::{BookingId, DriverId, RequestId, RiderId};
use crate::domain::values::{self, Fare, FieldError};
use crate::error::ApiError;
use crate::storage::idempotency::IdempotencyKey;

#[derive(Deserialize)]
pub struct AcceptBody {
    driver_id: i64,
}

#[derive(Deserialize)]
pub struct CancelBody {
    reason: Option<String>,
    user_id: i64,
    user_type: String,
}

#[derive(Deserialize)]
pub struct CompleteBody {
    driver_id: i64,
    actual_fare: f64,
}

pub async fn assign(
    state: State,
    caller: Principal,
    path: web::Path<String>,
    request_id: RequestId,
    key: Idempotency,
) -> Result<HttpResponse, ApiError> {
    let id = booking_id(&path)?;
    let by = rules::assigner(&caller)?;
    run(&state, id, BookingOp::Assign { by }, key.0, request_id).await
}

pub async fn accept(
    state: State,
    caller: Principal,
    path: web::Path<String>,
    request_id: RequestId,
    request: Keyed<AcceptBody>,
) -> Result<HttpResponse, ApiError> {
    let id = booking_id(&path)?;
    let driver_id = DriverId(extract::body_id(request.body.driver_id, "driver_id")?);
    rules::is_driver(&caller, driver_id)?;
    let op = BookingOp::Accept { driver_id };
    run(&state, id, op, request.key, request_id).await
}

pub async fn cancel(
    state: State,
    caller: Principal,
    path: web::Path<String>,
    request_id: RequestId,
    request: Keyed<CancelBody>,
) -> Result<HttpResponse, ApiError> {
    let id = booking_id(&path)?;
    let body = request.body;
    let user_id = extract::body_id(body.user_id, "user_id")?;
    let by = match body.user_type.as_str() {
        "rider" => Party::Rider(RiderId(user_id)),
        "driver" => Party::Driver(DriverId(user_id)),
        _ => return Err(FieldError::new("user_type", "must be \"rider\" or \"driver\"").into()),
    };
    rules::is_party(&caller, by)?;
    let reason = body
        .reason
        .as_deref()
        .filter(|text| !text.trim().is_empty())
        .map(|text| values::text(text, "reason", 500))
        .transpose()?;
    run(
        &state,
        id,
        BookingOp::Cancel { by, reason },
        request.key,
        request_id,
    )
    .await
}

pub async fn complete(
    state: State,
    caller: Principal,
    path: web::Path<String>,
    request_id: RequestId,
    request: Keyed<CompleteBody>,
) -> Result<HttpResponse, ApiError> {
    let id = booking_id(&path)?;
    let body = request.body;
    let driver_id = DriverId(extract::body_id(body.driver_id, "driver_id")?);
    let op = BookingOp::Complete {
        driver_id,
        actual_fare_cents: Fare::from_amount(body.actual_fare, "actual_fare")?.cents(),
    };
    rules::is_driver(&caller, driver_id)?;
    run(&state, id, op, request.key, request_id).await
}

/// A request from outside: the whole request deadline, no hops yet.
async fn run(
    state: &State,
    id: BookingId,
    action: BookingOp,
    idempotency: Option<IdempotencyKey>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let call = ForwardedCall {
        action,
        idempotency,
    };
    routing::route(state, id, call, request_id, 0, state.deps.request_timeout).await
}
