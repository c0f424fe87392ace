//! `/api/riders` (ext): riders exist so bookings have someone to belong to.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{self, Keyed};
use super::idempotent;
use super::schemas::{Envelope, ErrorEnvelope, IdPath, IdempotencyHeader};
use super::{respond, State};
use crate::auth::{rules, Principal};
use crate::domain::ids::RiderId;
use crate::domain::values::{self, FieldError};
use crate::error::ApiError;
use crate::storage::models::Rider;
use crate::storage::pool::{self, is_unique_violation};
use crate::storage::riders::{self, NewRider};
use diesel_async::AsyncConnection;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRider {
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
}

impl TryFrom<CreateRider> for NewRider {
    type Error = FieldError;

    fn try_from(wire: CreateRider) -> Result<Self, FieldError> {
        let (name, phone, email) = values::contact(&wire.name, &wire.phone, wire.email.as_deref())?;
        Ok(Self { name, phone, email })
    }
}

/// Registers a rider (ops).
#[utoipa::path(
    post,
    operation_id = "riders_create",
    path = "/api/riders",
    tag = "riders",
    request_body = CreateRider,
    params(IdempotencyHeader),
    responses(
        (status = 201, description = "Created", body = Envelope<Rider>),
        (status = 409, description = "`duplicate_phone`", body = ErrorEnvelope),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    state: State,
    caller: Principal,
    request: Keyed<CreateRider>,
) -> Result<HttpResponse, ApiError> {
    const CREATED: &str = "Rider created successfully";
    rules::ops_only(&caller)?;
    let new = NewRider::try_from(request.body)?;
    let key = request.key.as_ref();
    let mut conn = pool::conn(&state.deps.pool).await?;
    if let Some(answer) = idempotent::replay(&mut conn, key).await? {
        return Ok(answer);
    }
    let outcome = conn
        .transaction(async |tx| {
            let rider = riders::insert(tx, &new).await?;
            idempotent::answer(tx, key, StatusCode::CREATED, CREATED, rider).await
        })
        .await;
    match idempotent::finish(&mut conn, key, StatusCode::CREATED, outcome).await? {
        Ok(response) => Ok(response),
        Err(e) if is_unique_violation(&e, "riders_phone_key") => Err(ApiError::conflict(
            "duplicate_phone",
            "A rider with this phone number already exists",
            serde_json::Value::Null,
        )),
        Err(e) => Err(e.into()),
    }
}

/// One rider (the rider itself, or ops).
#[utoipa::path(
    get,
    operation_id = "riders_get",
    path = "/api/riders/{id}",
    tag = "riders",
    params(IdPath),
    responses((status = 200, description = "The rider", body = Envelope<Rider>)),
    security(("bearer" = [])),
)]
pub async fn get(
    state: State,
    caller: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = RiderId(extract::id(&path, "id")?);
    rules::is_rider(&caller, id)?;
    let mut conn = pool::conn(&state.deps.pool).await?;
    let rider = riders::find(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("rider_not_found", "Rider", id))?;
    Ok(respond(
        StatusCode::OK,
        "Rider retrieved successfully",
        rider,
    ))
}
