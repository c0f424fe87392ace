//! Booking transitions: each handler validates its body into an [`Action`], which
//! `cluster::router` runs on the booking's actor on whichever node owns it; [`render`] turns the
//! outcome into the answer. The actor decides; the handler only validates.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use serde::Deserialize;
use utoipa::ToSchema;

use super::bookings::booking_id;
use super::extract::{self, Idempotency, Keyed};
use super::schemas::{Assignment, Envelope, ErrorEnvelope, IdPath, IdempotencyHeader};
use super::State;
use crate::auth::{rules, Principal};
use crate::cluster::forward::Relayed;
use crate::cluster::headers::SERVED_BY;
use crate::cluster::router::{ForwardedCall, RouteError, Routed};
use crate::domain::action::Action;
use crate::domain::booking::Party;
use crate::domain::ids::{BookingId, DriverId, RequestId, RiderId};
use crate::domain::values::{self, Fare, FieldError};
use crate::error::ApiError;
use crate::storage::idempotency::IdempotencyKey;
use crate::storage::models::Booking;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcceptBody {
    /// The token's driver (unless ops), and the booking's assigned driver.
    #[serde(deserialize_with = "extract::whole_number")]
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    driver_id: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelBody {
    /// Blank counts as none.
    #[schema(max_length = 500, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    reason: Option<String>,
    /// With `user_type`: the token's subject (unless ops), and a party to the booking.
    #[serde(deserialize_with = "extract::whole_number")]
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    user_id: i64,
    #[schema(pattern = "^(rider|driver)$")]
    user_type: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteBody {
    /// The token's driver (unless ops), and the booking's driver.
    #[serde(deserialize_with = "extract::whole_number")]
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    driver_id: i64,
    /// Rounded to cents.
    #[schema(minimum = 0.01, maximum = 100000)]
    actual_fare: f64,
}

/// Assigns the nearest online driver to a pending booking (its rider, or ops).
#[utoipa::path(
    post,
    operation_id = "booking_actions_assign",
    path = "/api/bookings/{id}/assign",
    tag = "bookings",
    params(IdPath, IdempotencyHeader),
    responses(
        (status = 200, description = "Assigned", body = Envelope<Assignment>, links(
            ("accept" = (
                operation_id = "booking_actions_accept",
                parameters(("id" = "$response.body#/data/booking/id")),
                request_body = json!({ "driver_id": "$response.body#/data/driver/id" }),
            )),
        )),
        (status = 409, description = "`booking_not_pending` or `no_drivers_available`; `data.booking` is its state", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub async fn assign(
    state: State,
    caller: Principal,
    path: web::Path<String>,
    request_id: RequestId,
    key: Idempotency,
) -> Result<HttpResponse, ApiError> {
    let id = booking_id(&path)?;
    let by = rules::assigner(&caller)?;
    run(
        &state,
        &caller,
        id,
        Action::Assign { by },
        key.0,
        request_id,
    )
    .await
}

/// The assigned driver accepts.
#[utoipa::path(
    post,
    operation_id = "booking_actions_accept",
    path = "/api/bookings/{id}/accept",
    tag = "bookings",
    request_body = AcceptBody,
    params(IdPath, IdempotencyHeader),
    responses(
        (status = 200, description = "Accepted", body = Envelope<Booking>, links(
            ("complete" = (
                operation_id = "booking_actions_complete",
                parameters(("id" = "$response.body#/data/id")),
                request_body = json!({
                    "driver_id": "$response.body#/data/driver_id", "actual_fare": 25.5
                }),
            )),
        )),
        (status = 409, description = "`booking_not_assigned`; `data.booking` is its state", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
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
    let op = Action::Accept {
        driver_id,
        operator: caller.is_ops(),
    };
    run(&state, &caller, id, op, request.key, request_id).await
}

/// The rider or the assigned driver cancels; a held driver goes back online.
#[utoipa::path(
    post,
    operation_id = "booking_actions_cancel",
    path = "/api/bookings/{id}/cancel",
    tag = "bookings",
    request_body = CancelBody,
    params(IdPath, IdempotencyHeader),
    responses(
        (status = 200, description = "Cancelled", body = Envelope<Booking>),
        (status = 409, description = "`booking_already_terminal`; `data.booking` is its state", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
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
    let reason = body
        .reason
        .as_deref()
        .map(|text| values::optional_text(text, "reason", 500))
        .transpose()?
        .flatten();
    rules::is_party(&caller, by)?;
    run(
        &state,
        &caller,
        id,
        Action::Cancel { by, reason },
        request.key,
        request_id,
    )
    .await
}

/// The driver completes an accepted ride and goes back online.
#[utoipa::path(
    post,
    operation_id = "booking_actions_complete",
    path = "/api/bookings/{id}/complete",
    tag = "bookings",
    request_body = CompleteBody,
    params(IdPath, IdempotencyHeader),
    responses(
        (status = 200, description = "Completed", body = Envelope<Booking>),
        (status = 409, description = "`booking_not_accepted`; `data.booking` is its state", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
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
    let op = Action::Complete {
        driver_id,
        operator: caller.is_ops(),
        actual_fare: Fare::from_amount(body.actual_fare, "actual_fare")?,
    };
    rules::is_driver(&caller, driver_id)?;
    run(&state, &caller, id, op, request.key, request_id).await
}

/// A request from outside: the whole request deadline, no hops yet.
async fn run(
    state: &State,
    caller: &Principal,
    id: BookingId,
    action: Action,
    idempotency: Option<IdempotencyKey>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let call = ForwardedCall::new(action, idempotency, Some(caller.to_string()));
    let budget = state.deps.request_timeout;
    render(state.router.route(id, call, request_id, 0, budget).await)
}

/// The answer to a routed booking action. Every answer a booking actor gave names the node it
/// ran on (`X-RideLock-Served-By`); a relayed one is sent as the owner sent it.
pub fn render(routed: Result<Routed, RouteError>) -> Result<HttpResponse, ApiError> {
    Ok(match routed? {
        Routed::Done {
            done,
            message,
            served_by,
        } => {
            let mut response = HttpResponse::Ok()
                .content_type("application/json")
                .body(done.body(message));
            name_server(&mut response, &served_by);
            response
        }
        Routed::Refused { error, served_by } => {
            let mut response = ApiError::from(error).error_response();
            name_server(&mut response, &served_by);
            response
        }
        Routed::Relayed(relayed) => relay(relayed),
        Routed::Replayed(stored) => super::idempotent::replayed(stored),
    })
}

fn name_server(response: &mut HttpResponse, node: &str) {
    if let Ok(value) = HeaderValue::from_str(node) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(SERVED_BY), value);
    }
}

fn relay(relayed: Relayed) -> HttpResponse {
    let status = StatusCode::from_u16(relayed.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = HttpResponse::build(status);
    response.content_type("application/json");
    if let Some(after) = relayed.retry_after {
        response.insert_header(("Retry-After", after));
    }
    if let Some(node) = relayed.served_by {
        response.insert_header((SERVED_BY, node));
    }
    response.body(relayed.body)
}
