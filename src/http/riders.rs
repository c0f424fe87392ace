//! `/api/riders` (ext): riders exist so bookings have someone to belong to.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::extract::{self, Body};
use super::{respond, State};
use crate::domain::ids::RiderId;
use crate::domain::values::{self, FieldError};
use crate::error::ApiError;
use crate::storage::pool::{self, is_unique_violation};
use crate::storage::riders::{self, NewRider};

#[derive(Deserialize)]
pub struct CreateRider {
    name: String,
    phone: String,
    email: Option<String>,
}

impl TryFrom<CreateRider> for NewRider {
    type Error = FieldError;

    fn try_from(wire: CreateRider) -> Result<Self, FieldError> {
        let (name, phone, email) = values::contact(&wire.name, &wire.phone, wire.email.as_deref())?;
        Ok(Self { name, phone, email })
    }
}

pub async fn create(state: State, body: Body<CreateRider>) -> Result<HttpResponse, ApiError> {
    let new = NewRider::try_from(body.0)?;
    let mut conn = pool::conn(&state.deps.pool).await?;
    match riders::insert(&mut conn, &new).await {
        Ok(rider) => Ok(respond(
            StatusCode::CREATED,
            "Rider created successfully",
            rider,
        )),
        Err(e) if is_unique_violation(&e, "riders_phone_key") => Err(ApiError::conflict(
            "duplicate_phone",
            "A rider with this phone number already exists",
            serde_json::Value::Null,
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(state: State, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = RiderId(extract::id(&path, "id")?);
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
