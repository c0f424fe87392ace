//! Booking transitions: each handler validates its body, then sends one message to the booking's
//! actor through the registry. The actor decides; the handler only shapes the reply.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::bookings::booking_id;
use super::extract::{self, Body};
use super::{respond, State};
use crate::actors::booking::{Accept, Assign, Cancel, Complete};
use crate::domain::booking::Party;
use crate::domain::ids::{DriverId, RequestId, RiderId};
use crate::domain::values::{self, Fare, FieldError};
use crate::error::ApiError;

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
    path: web::Path<String>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let id = booking_id(&path)?;
    let msg = Assign {
        request_id,
        sent_at: Instant::now(),
    };
    let (booking, driver) = state.registry.send(id, msg).await?;
    Ok(respond(
        StatusCode::OK,
        "Driver assigned successfully",
        json!({ "booking": booking, "driver": driver }),
    ))
}

pub async fn accept(
    state: State,
    path: web::Path<String>,
    request_id: RequestId,
    body: Body<AcceptBody>,
) -> Result<HttpResponse, ApiError> {
    let id = booking_id(&path)?;
    let msg = Accept {
        driver_id: DriverId(extract::body_id(body.0.driver_id, "driver_id")?),
        request_id,
        sent_at: Instant::now(),
    };
    let booking = state.registry.send(id, msg).await?;
    Ok(respond(
        StatusCode::OK,
        "Booking accepted successfully",
        booking,
    ))
}

pub async fn cancel(
    state: State,
    path: web::Path<String>,
    request_id: RequestId,
    body: Body<CancelBody>,
) -> Result<HttpResponse, ApiError> {
    let id = booking_id(&path)?;
    let body = body.0;
    let user_id = extract::body_id(body.user_id, "user_id")?;
    let by = match body.user_type.as_str() {
        "rider" => Party::Rider(RiderId(user_id)),
        "driver" => Party::Driver(DriverId(user_id)),
        _ => return Err(FieldError::new("user_type", "must be \"rider\" or \"driver\"").into()),
    };
    let reason = body
        .reason
        .as_deref()
        .filter(|text| !text.trim().is_empty())
        .map(|text| values::text(text, "reason", 500))
        .transpose()?;
    let msg = Cancel {
        by,
        reason,
        request_id,
        sent_at: Instant::now(),
    };
    let booking = state.registry.send(id, msg).await?;
    Ok(respond(
        StatusCode::OK,
        "Booking cancelled successfully",
        booking,
    ))
}

pub async fn complete(
    state: State,
    path: web::Path<String>,
    request_id: RequestId,
    body: Body<CompleteBody>,
) -> Result<HttpResponse, ApiError> {
    let id = booking_id(&path)?;
    let msg = Complete {
        driver_id: DriverId(extract::body_id(body.0.driver_id, "driver_id")?),
        actual_fare: Fare::from_amount(body.0.actual_fare, "actual_fare")?,
        request_id,
        sent_at: Instant::now(),
    };
    let booking = state.registry.send(id, msg).await?;
    Ok(respond(
        StatusCode::OK,
        "Ride completed successfully",
        booking,
    ))
}
