//! `/api/drivers`: registration, location updates (mirrored into the geo index while online),
//! availability, and the nearby search. Drivers are not booking actors' business except through
//! the assignment transaction, so these write with plain conditional updates.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use bigdecimal::ToPrimitive;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{self, Body, Keyed};
use super::idempotent;
use super::schemas::{Envelope, ErrorEnvelope, IdPath, IdempotencyHeader, ListEnvelope};
use super::{respond, respond_list, State};
use crate::auth::{rules, Principal};
use crate::domain::ids::DriverId;
use crate::domain::values::{self, FieldError, GeoPoint};
use crate::error::ApiError;
use crate::storage::drivers::{self, Availability, NewDriver, StatusRefusal};
use crate::storage::models::Driver;
use crate::storage::pool::{self, is_unique_violation};
use diesel_async::AsyncConnection;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateDriver {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: String,
    #[schema(max_length = 32, pattern = r"^[+ ().-]*([0-9][+ ().-]*){3,}$")]
    phone: String,
    #[schema(
        max_length = 320,
        pattern = r"^[^@\s\u0000-\u001f\u007f-\u009f]+@[^.\s\u0000-\u001f\u007f-\u009f][^\s\u0000-\u001f\u007f-\u009f]*\.[^\s\u0000-\u001f\u007f-\u009f]*$"
    )]
    email: Option<String>,
    /// Default `standard`.
    #[schema(pattern = r"^[a-z0-9_-]{1,32}$")]
    vehicle_type: Option<String>,
}

impl TryFrom<CreateDriver> for NewDriver {
    type Error = FieldError;

    fn try_from(wire: CreateDriver) -> Result<Self, FieldError> {
        let (name, phone, email) = values::contact(&wire.name, &wire.phone, wire.email.as_deref())?;
        Ok(Self {
            name,
            phone,
            email,
            vehicle_type: values::vehicle_type(
                wire.vehicle_type.as_deref().unwrap_or("standard"),
                "vehicle_type",
            )?,
        })
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Location {
    #[schema(minimum = -90, maximum = 90)]
    lat: f64,
    #[schema(minimum = -180, maximum = 180)]
    lng: f64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusChange {
    /// `busy` is set by the system only.
    #[schema(pattern = "^(online|offline)$")]
    status: String,
}

#[derive(Deserialize)]
pub(crate) struct NearbyQuery {
    lat: Option<String>,
    lng: Option<String>,
    radius: Option<String>,
}

/// One driver found by `nearby`. Riders and drivers see the car, not the person, and not to the
/// metre: the id, name, phone, email and current booking are for operators only, and riders and
/// drivers get the position on a grid of about 220 m and the distance from the search point to that
/// grid point, to 0.1 km (so no run of searches can follow one driver, or place it closer than
/// its grid cell by triangulation).
#[derive(Serialize, ToSchema)]
pub(crate) struct NearbyDriver {
    /// Operators only.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    lat: Option<f64>,
    lng: Option<f64>,
    status: String,
    vehicle_type: String,
    rating: f64,
    /// Kilometres from the point asked about.
    distance: f64,
    /// Operators only.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Operators only.
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
    /// Operators only, when the driver has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    /// Operators only, when the driver has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    current_booking_id: Option<i64>,
}

impl NearbyDriver {
    /// `distance`: from `asked`, the point searched around, to the driver.
    fn new(driver: Driver, distance: f64, asked: GeoPoint, operator: bool) -> Self {
        if !operator {
            let at = driver
                .lat
                .zip(driver.lng)
                .map(|(lat, lng)| GeoPoint { lat, lng }.coarse());
            // Measured to the coarse point, not the driver: moving the search point until the
            // rounded distance flips then traces circles around the grid point only.
            let distance = at.map_or(distance, |coarse| asked.distance_km(coarse));
            return Self {
                id: None,
                lat: at.map(|p| p.lat),
                lng: at.map(|p| p.lng),
                status: driver.status,
                vehicle_type: driver.vehicle_type,
                rating: driver.rating.to_f64().unwrap_or_default(),
                distance: (distance * 10.0).round() / 10.0,
                name: None,
                phone: None,
                email: None,
                current_booking_id: None,
            };
        }
        Self {
            id: Some(driver.id),
            lat: driver.lat,
            lng: driver.lng,
            status: driver.status,
            vehicle_type: driver.vehicle_type,
            rating: driver.rating.to_f64().unwrap_or_default(),
            distance: (distance * 1000.0).round() / 1000.0,
            name: Some(driver.name),
            phone: Some(driver.phone),
            email: driver.email,
            current_booking_id: driver.current_booking_id,
        }
    }
}

fn driver_id(path: &str) -> Result<DriverId, ApiError> {
    Ok(DriverId(extract::id(path, "id")?))
}

fn not_found(id: DriverId) -> ApiError {
    ApiError::not_found("driver_not_found", "Driver", id)
}

/// Registers a driver, offline (ops).
#[utoipa::path(
    post,
    operation_id = "drivers_create",
    path = "/api/drivers",
    tag = "drivers",
    request_body = CreateDriver,
    params(IdempotencyHeader),
    responses(
        (status = 201, description = "Created", body = Envelope<Driver>),
        (status = 409, description = "`duplicate_phone`", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    state: State,
    caller: Principal,
    request: Keyed<CreateDriver>,
) -> Result<HttpResponse, ApiError> {
    const CREATED: &str = "Driver created successfully";
    rules::ops_only(&caller)?;
    let new = NewDriver::try_from(request.body)?;
    let key = request.key.as_ref();
    let mut conn = pool::conn(&state.deps.pool).await?;
    if let Some(answer) = idempotent::replay(&mut conn, key).await? {
        return Ok(answer);
    }
    let outcome = conn
        .transaction(async |tx| {
            let driver = drivers::insert(tx, &new).await?;
            idempotent::answer(tx, key, StatusCode::CREATED, CREATED, driver).await
        })
        .await;
    match idempotent::finish(&mut conn, key, StatusCode::CREATED, outcome).await? {
        Ok(response) => Ok(response),
        Err(e) if is_unique_violation(&e, "drivers_phone_key") => Err(ApiError::conflict(
            "duplicate_phone",
            "A driver with this phone number already exists",
            serde_json::Value::Null,
        )),
        Err(e) => Err(e.into()),
    }
}

/// Every driver (ops).
#[utoipa::path(
    get,
    operation_id = "drivers_list",
    path = "/api/drivers",
    tag = "drivers",
    responses((status = 200, description = "All drivers", body = ListEnvelope<Driver>)),
    security(("bearer" = [])),
)]
pub async fn list(state: State, caller: Principal) -> Result<HttpResponse, ApiError> {
    rules::ops_only(&caller)?;
    let mut conn = pool::conn(&state.deps.pool).await?;
    let all = drivers::list(&mut conn).await?;
    Ok(respond_list("Drivers retrieved successfully", &all))
}

/// One driver (the driver itself, or ops).
#[utoipa::path(
    get,
    operation_id = "drivers_get",
    path = "/api/drivers/{id}",
    tag = "drivers",
    params(IdPath),
    responses((status = 200, description = "The driver", body = Envelope<Driver>)),
    security(("bearer" = [])),
)]
pub async fn get(
    state: State,
    caller: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = driver_id(&path)?;
    rules::is_driver(&caller, id)?;
    let mut conn = pool::conn(&state.deps.pool).await?;
    let driver = drivers::find(&mut conn, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(respond(
        StatusCode::OK,
        "Driver retrieved successfully",
        driver,
    ))
}

/// The driver's position; the geo index follows while online (the driver itself, or ops).
#[utoipa::path(
    post,
    operation_id = "drivers_update_location",
    path = "/api/drivers/{id}/location",
    tag = "drivers",
    request_body = Location,
    params(IdPath, IdempotencyHeader),
    responses((status = 200, description = "The driver", body = Envelope<Driver>)),
    security(("bearer" = [])),
)]
pub(crate) async fn update_location(
    state: State,
    caller: Principal,
    path: web::Path<String>,
    request: Keyed<Location>,
) -> Result<HttpResponse, ApiError> {
    const UPDATED: &str = "Location updated successfully";
    let id = driver_id(&path)?;
    rules::is_driver(&caller, id)?;
    let at = GeoPoint::new(request.body.lat, request.body.lng, "lat", "lng")?;
    let mut conn = pool::conn(&state.deps.pool).await?;
    let Some(key) = request.key.as_ref() else {
        let driver = drivers::update_location(&mut conn, id, at)
            .await?
            .ok_or_else(|| not_found(id))?;
        if driver.status == Availability::Online.as_str() {
            reindex(&state, &driver).await;
        }
        return Ok(respond(StatusCode::OK, UPDATED, driver));
    };
    if let Some(answer) = idempotent::replay(&mut conn, Some(key)).await? {
        return Ok(answer);
    }
    let mut online = None;
    let outcome = conn
        .transaction(async |tx| {
            let driver = drivers::update_location(tx, id, at)
                .await?
                .ok_or(diesel::result::Error::NotFound)?;
            let body = idempotent::answer(tx, Some(key), StatusCode::OK, UPDATED, &driver).await?;
            online = (driver.status == Availability::Online.as_str()).then_some(driver);
            Ok(body)
        })
        .await;
    match idempotent::finish(&mut conn, Some(key), StatusCode::OK, outcome).await? {
        Ok(response) => {
            // The index follows the committed position, never one rolled back.
            if let Some(driver) = online {
                reindex(&state, &driver).await;
            }
            Ok(response)
        }
        Err(diesel::result::Error::NotFound) => Err(not_found(id)),
        Err(e) => Err(e.into()),
    }
}

/// Online or offline (the driver itself, or ops).
#[utoipa::path(
    patch,
    operation_id = "drivers_update_status",
    path = "/api/drivers/{id}/status",
    tag = "drivers",
    request_body = StatusChange,
    params(IdPath),
    responses(
        (status = 200, description = "The driver", body = Envelope<Driver>),
        (status = 409, description = "`driver_busy` (an active booking) or `driver_location_unknown`", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn update_status(
    state: State,
    caller: Principal,
    path: web::Path<String>,
    body: Body<StatusChange>,
) -> Result<HttpResponse, ApiError> {
    let id = driver_id(&path)?;
    rules::is_driver(&caller, id)?;
    let to = match body.0.status.as_str() {
        "online" => Availability::Online,
        "offline" => Availability::Offline,
        _ => return Err(FieldError::new("status", "must be \"online\" or \"offline\"").into()),
    };
    let mut conn = pool::conn(&state.deps.pool).await?;
    match drivers::set_availability(&mut conn, id, to).await? {
        None => Err(not_found(id)),
        Some(Ok(driver)) => {
            match to {
                Availability::Online => reindex(&state, &driver).await,
                Availability::Offline => {
                    if let Err(error) = state.deps.drivers.remove(id).await {
                        log::warn!(
                            "geo index update failed node={} driver={id} error={error}",
                            state.deps.node_id
                        );
                    }
                }
            }
            Ok(respond(
                StatusCode::OK,
                "Driver status updated successfully",
                driver,
            ))
        }
        Some(Err(StatusRefusal::Busy(driver))) => Err(ApiError::conflict(
            "driver_busy",
            "Driver has an active booking",
            serde_json::json!({ "driver": driver }),
        )),
        Some(Err(StatusRefusal::NoLocation(driver))) => Err(ApiError::conflict(
            "driver_location_unknown",
            "Driver must report a location before going online",
            serde_json::json!({ "driver": driver }),
        )),
    }
}

/// Mirrors an online driver into the geo index; PostgreSQL stays right if Redis is down.
async fn reindex(state: &State, driver: &Driver) {
    if let Some(at) = driver.location() {
        if let Err(error) = state.deps.drivers.put(DriverId(driver.id), at).await {
            log::warn!(
                "geo index update failed node={} driver={} error={error}",
                state.deps.node_id,
                driver.id
            );
        }
    }
}

fn number(raw: Option<&str>, field: &str) -> Result<Option<f64>, FieldError> {
    raw.map(|text| {
        text.parse::<f64>()
            .map_err(|_| FieldError::new(field, "must be a number"))
    })
    .transpose()
}

/// Online drivers within `radius` km, nearest first (any caller).
#[utoipa::path(
    get,
    operation_id = "drivers_nearby",
    path = "/api/drivers/nearby",
    tag = "drivers",
    params(
        ("lat" = f64, Query, minimum = -90, maximum = 90),
        ("lng" = f64, Query, minimum = -180, maximum = 180),
        ("radius" = Option<f64>, Query, exclusive_minimum = 0, maximum = 100, description = "km, default 5"),
    ),
    responses((status = 200, description = "Nearby online drivers", body = ListEnvelope<NearbyDriver>)),
    security(("bearer" = [])),
)]
pub async fn nearby(
    state: State,
    caller: Principal,
    query: web::Query<NearbyQuery>,
) -> Result<HttpResponse, ApiError> {
    let lat = number(query.lat.as_deref(), "lat")?
        .ok_or_else(|| FieldError::new("lat", "is required"))?;
    let lng = number(query.lng.as_deref(), "lng")?
        .ok_or_else(|| FieldError::new("lng", "is required"))?;
    let at = GeoPoint::new(lat, lng, "lat", "lng")?;
    let radius = number(query.radius.as_deref(), "radius")?.unwrap_or(5.0);
    if !(radius > 0.0 && radius <= 100.0) {
        return Err(FieldError::new("radius", "must be between 0 and 100 km").into());
    }
    // Riders and drivers see the few nearest cars; operators up to 50.
    let limit = if caller.is_ops() { 50 } else { 10 };
    // The connection is taken after the Redis search, not held across it.
    let indexed = state.deps.drivers.search(at, radius, limit).await;
    let mut conn = pool::conn(&state.deps.pool).await?;
    let hits = match indexed {
        Ok(Some(hits)) => hits,
        // Near a pole: drivers there are not indexed.
        Ok(None) => drivers::nearby_sql(&mut conn, at, radius, None, limit).await?,
        Err(error) => {
            log::warn!(
                "geo search failed, using SQL node={} error={error}",
                state.deps.node_id
            );
            drivers::nearby_sql(&mut conn, at, radius, None, limit).await?
        }
    };
    let ids: Vec<i64> = hits.iter().map(|(id, _)| id.0).collect();
    let mut found = drivers::find_many(&mut conn, &ids).await?;
    // The index may lag PostgreSQL: only drivers that are online there are listed.
    let nearby: Vec<NearbyDriver> = hits
        .into_iter()
        .filter_map(|(id, distance)| {
            let index = found.iter().position(|d| d.id == id.0)?;
            let driver = found.swap_remove(index);
            (driver.status == Availability::Online.as_str())
                .then(|| NearbyDriver::new(driver, distance, at, caller.is_ops()))
        })
        .collect();
    // Riders and drivers get them in the order of what they see, not of the exact distances.
    let mut nearby = nearby;
    if !caller.is_ops() {
        nearby.sort_by(|a, b| a.distance.total_cmp(&b.distance));
    }
    Ok(respond_list(
        "Nearby drivers retrieved successfully",
        &nearby,
    ))
}
