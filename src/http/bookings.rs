//! Booking creation and reads. Creation inserts the row directly (there is no actor for a booking
//! that does not exist yet) with this node's creation token, and hands the new row to an actor
//! of this node that owns it from then on; reads query PostgreSQL; every later change goes
//! through the actor (see `booking_actions`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use diesel_async::AsyncPgConnection;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{self, Keyed};
use super::idempotent;
use super::schemas::{Envelope, IdPath, IdempotencyHeader, ListEnvelope};
use super::{respond, respond_list, State};
use crate::actors::BookingError;
use crate::auth::{rules, Principal};
use crate::domain::booking::BookingStatus;
use crate::domain::ids::{BookingId, DriverId, RequestId, RiderId};
use crate::domain::values::{self, Fare, FieldError, GeoPoint};
use crate::envelope::success_body;
use crate::error::ApiError;
use crate::storage::bookings::{self, NewBooking, UserRef};
use crate::storage::idempotency::IdempotencyKey;
use crate::storage::models::{Booking, BookingDetail, BookingEvent};
use crate::storage::pool;
use crate::storage::writer::{Answer, Create, Created};
use crate::storage::StoreError;
use std::sync::Arc;
use std::time::Instant;

/// The example is the tutorial's request: a seeded rider at City Hall, where the seeded drivers
/// wait, so on `make run` it can be assigned.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "rider_id": 1, "pickup_lat": 40.7128, "pickup_lng": -74.006,
    "dropoff_lat": 40.7589, "dropoff_lng": -73.9851, "estimated_fare": 25.5
}))]
pub(crate) struct CreateBooking {
    /// The token's rider (unless ops).
    #[serde(deserialize_with = "extract::whole_number")]
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    rider_id: i64,
    #[schema(minimum = -90, maximum = 90)]
    pickup_lat: f64,
    #[schema(minimum = -180, maximum = 180)]
    pickup_lng: f64,
    #[schema(minimum = -90, maximum = 90)]
    dropoff_lat: f64,
    #[schema(minimum = -180, maximum = 180)]
    dropoff_lng: f64,
    /// Rounded to cents.
    #[schema(minimum = 0.01, maximum = 100000)]
    estimated_fare: f64,
    #[schema(pattern = r"^[a-z0-9_-]{1,32}$")]
    vehicle_type: Option<String>,
}

impl TryFrom<CreateBooking> for NewBooking {
    type Error = FieldError;

    fn try_from(wire: CreateBooking) -> Result<Self, FieldError> {
        Ok(Self {
            rider_id: RiderId(extract::body_id(wire.rider_id, "rider_id")?),
            pickup: GeoPoint::new(wire.pickup_lat, wire.pickup_lng, "pickup_lat", "pickup_lng")?,
            dropoff: GeoPoint::new(
                wire.dropoff_lat,
                wire.dropoff_lng,
                "dropoff_lat",
                "dropoff_lng",
            )?,
            estimated_fare: Fare::from_amount(wire.estimated_fare, "estimated_fare")?,
            vehicle_type: wire
                .vehicle_type
                .as_deref()
                .map(|v| values::vehicle_type(v, "vehicle_type"))
                .transpose()?,
        })
    }
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    user_type: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

/// The rider or driver a `/api/users/{user_id}/…` path names (`user_type`, the rider's by
/// default, as in the tutorial's listing), if the caller is that user or ops.
pub(super) fn user_for(
    caller: &Principal,
    user_id: &str,
    user_type: Option<&str>,
) -> Result<UserRef, ApiError> {
    let user_id = extract::id(user_id, "user_id")?;
    let user = match user_type.unwrap_or("rider") {
        "rider" => UserRef::Rider(RiderId(user_id)),
        "driver" => UserRef::Driver(DriverId(user_id)),
        _ => return Err(FieldError::new("user_type", "must be \"rider\" or \"driver\"").into()),
    };
    match user {
        UserRef::Rider(rider) => rules::is_rider(caller, rider)?,
        UserRef::Driver(driver) => rules::is_driver(caller, driver)?,
    }
    Ok(user)
}

/// Booking `id`, if the caller may read it (its rider, its driver, or ops).
pub(super) async fn readable_booking(
    conn: &mut AsyncPgConnection,
    caller: &Principal,
    id: BookingId,
) -> Result<Booking, ApiError> {
    let booking = bookings::find(conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("booking_not_found", "Booking", id))?;
    rules::reads_booking(
        caller,
        RiderId(booking.rider_id),
        booking.driver_id.map(DriverId),
    )?;
    Ok(booking)
}

pub(super) fn booking_id(path: &str) -> Result<BookingId, ApiError> {
    Ok(BookingId(extract::id(path, "id")?))
}

/// A pending booking for the token's rider.
#[utoipa::path(
    post,
    operation_id = "bookings_create",
    path = "/api/bookings",
    tag = "bookings",
    request_body = CreateBooking,
    params(IdempotencyHeader),
    responses((
        status = 201, description = "Created, `pending`", body = Envelope<Booking>,
        links(
            ("assign" = (
                operation_id = "booking_actions_assign",
                parameters(("id" = "$response.body#/data/id")),
            )),
            ("cancel" = (
                operation_id = "booking_actions_cancel",
                parameters(("id" = "$response.body#/data/id")),
                request_body = json!({
                    "user_id": "$response.body#/data/rider_id", "user_type": "rider"
                }),
            )),
        ),
    )),
    security(("bearer" = [])),
)]
pub async fn create(
    state: State,
    caller: Principal,
    request_id: RequestId,
    request: Keyed<CreateBooking>,
) -> Result<HttpResponse, ApiError> {
    const CREATED: &str = "Booking request created successfully";
    let new = NewBooking::try_from(request.body)?;
    rules::is_rider(&caller, new.rider_id)?;
    let most = state.deps.booking.max_active_per_rider;
    let key = request.key;
    if let Some(answer) = replay(&state, key.as_ref()).await? {
        return Ok(answer);
    }
    // Written by the node's group-commit writer with whatever else is waiting; the booking and
    // its stored answer commit together. A rider at its limit gets no booking and no stored
    // answer (a retry once a ride ended may succeed).
    let create = Create {
        new,
        max_active: most,
        token: bookings::CREATED_TOKEN,
        request_id: request_id.as_str().to_owned(),
        actor: Some(caller.to_string()),
        deadline: Instant::now() + state.deps.request_timeout,
        answer: key.clone().map(|key| Answer {
            key,
            status: 201,
            render: Arc::new(|row, _| success_body(CREATED, row)),
        }),
    };
    let rider = create.new.rider_id;
    let outcome = match state.deps.writer.create(create).await {
        Err(StoreError::Query(e)) if rider_missing(&e) => return Err(rider_not_found(rider)),
        outcome => outcome?,
    };
    match outcome {
        Created::Created(booking) => {
            state.registry.adopt((*booking).clone());
            Ok(respond(StatusCode::CREATED, CREATED, booking))
        }
        // A copy of this request with the same key may have made the booking that filled the
        // rider's share, or stored its answer first: its answer is this one's.
        Created::AtLimit | Created::KeyTaken => {
            match (replay(&state, key.as_ref()).await?, outcome) {
                (Some(answer), _) => Ok(answer),
                (None, Created::AtLimit) => Err(too_many_active(most)),
                (None, _) => Err(ApiError::Internal(anyhow::anyhow!(
                    "idempotency key taken but no answer stored"
                ))),
            }
        }
        Created::Expired => Err(BookingError::DeadlinePassed.into()),
    }
}

/// The answer stored under `key`, if any (read on a connection of its own, which is not held
/// while the writer works).
async fn replay(
    state: &State,
    key: Option<&IdempotencyKey>,
) -> Result<Option<HttpResponse>, ApiError> {
    let Some(key) = key else {
        return Ok(None);
    };
    let mut conn = pool::conn(&state.deps.pool).await?;
    idempotent::replay(&mut conn, Some(key)).await
}

/// True when the insert failed because the rider does not exist.
fn rider_missing(error: &diesel::result::Error) -> bool {
    matches!(
        error,
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ForeignKeyViolation,
            _,
        )
    )
}

/// 409 `too_many_active_bookings`: the rider has `most` bookings pending, assigned or accepted.
fn too_many_active(most: u32) -> ApiError {
    ApiError::conflict(
        "too_many_active_bookings",
        format!("A rider may have at most {most} active bookings; cancel or finish one first"),
        serde_json::json!({ "max_active_per_rider": most }),
    )
}

fn rider_not_found(rider: RiderId) -> ApiError {
    ApiError::not_found("rider_not_found", "Rider", rider)
}

/// One booking with its parties' names and phones (its rider, its driver, or ops).
#[utoipa::path(
    get,
    operation_id = "bookings_get",
    path = "/api/bookings/{id}",
    tag = "bookings",
    params(IdPath),
    responses((status = 200, description = "The booking", body = Envelope<BookingDetail>)),
    security(("bearer" = [])),
)]
pub async fn get(
    state: State,
    caller: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = booking_id(&path)?;
    let mut conn = pool::conn(&state.deps.pool).await?;
    let detail = bookings::find_detail(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("booking_not_found", "Booking", id))?;
    let booking = &detail.booking;
    rules::reads_booking(
        &caller,
        RiderId(booking.rider_id),
        booking.driver_id.map(DriverId),
    )?;
    Ok(respond(
        StatusCode::OK,
        "Booking retrieved successfully",
        detail,
    ))
}

/// The booking's audit trail: every transition with time, node, fencing token, request id.
#[utoipa::path(
    get,
    operation_id = "bookings_events",
    path = "/api/bookings/{id}/events",
    tag = "bookings",
    params(IdPath),
    responses((status = 200, description = "The trail, oldest first", body = ListEnvelope<BookingEvent>)),
    security(("bearer" = [])),
)]
pub async fn events(
    state: State,
    caller: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = booking_id(&path)?;
    let mut conn = pool::conn(&state.deps.pool).await?;
    readable_booking(&mut conn, &caller, id).await?;
    let mut trail = bookings::events(&mut conn, id).await?;
    // Every booking has its creation event, so an empty trail means an unknown booking.
    if trail.is_empty() {
        return Err(ApiError::not_found("booking_not_found", "Booking", id));
    }
    // Riders and drivers learn that support acted, not who.
    if !caller.is_ops() {
        for event in &mut trail {
            if event
                .actor
                .as_deref()
                .is_some_and(|a| a.starts_with("ops:"))
            {
                event.actor = Some("ops".to_owned());
            }
        }
    }
    Ok(respond_list(
        "Booking events retrieved successfully",
        &trail,
    ))
}

/// A rider's or driver's bookings, newest first (that rider or driver, or ops).
#[utoipa::path(
    get,
    operation_id = "bookings_list_for_user",
    path = "/api/users/{user_id}/bookings",
    tag = "bookings",
    params(
        ("user_id" = i64, Path, minimum = 1, maximum = 9223372036854775807_i64),
        ("user_type" = Option<String>, Query, pattern = "^(rider|driver)$", description = "default rider"),
        ("status" = Option<String>, Query, pattern = "^(pending|assigned|accepted|completed|cancelled)$"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "default 20"),
        ("before" = Option<i64>, Query, minimum = 1, description = "only bookings with a smaller id"),
    ),
    responses((status = 200, description = "The bookings", body = ListEnvelope<Booking>)),
    security(("bearer" = [])),
)]
pub(crate) async fn list_for_user(
    state: State,
    caller: Principal,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let user = user_for(&caller, &path, query.user_type.as_deref())?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            s.parse::<BookingStatus>()
                .map_err(|_| FieldError::new("status", "must be a booking status"))
        })
        .transpose()?;
    let limit = match query.limit.as_deref() {
        None => 20,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| FieldError::new("limit", "must be an integer from 1 to 100"))?,
    };
    let before = query
        .before
        .as_deref()
        .map(|raw| extract::id(raw, "before"))
        .transpose()?
        .map(BookingId);
    let mut conn = pool::conn(&state.deps.pool).await?;
    let found = bookings::list_for_user(&mut conn, user, status, before, limit).await?;
    Ok(respond_list("User bookings retrieved successfully", &found))
}
