//! The wire types of the OpenAPI document that handlers name in their `#[utoipa::path]`
//! attributes: the envelopes as the document describes them, and the shared parameters. The
//! bytes themselves are written by `crate::envelope` and `crate::error`.

use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::storage::models::{Booking, Driver};

/// Every error: `success: false`, a sentence, a stable code, and for 400 the field
/// (`data.field`), for 409 the current state.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorEnvelope {
    /// Always false.
    pub success: bool,
    pub message: String,
    /// Stable snake_case code, e.g. `invalid_request`, `booking_not_pending`.
    pub error: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

/// A success: `data` is the resource.
#[derive(Serialize, ToSchema)]
pub(crate) struct Envelope<T: ToSchema> {
    /// Always true.
    pub success: bool,
    pub message: String,
    pub data: T,
}

/// A list: `data` is the array, `count` its length.
#[derive(Serialize, ToSchema)]
pub(crate) struct ListEnvelope<T: ToSchema> {
    pub success: bool,
    pub message: String,
    pub data: Vec<T>,
    pub count: usize,
}

/// `data` of a successful assign.
#[derive(Serialize, ToSchema)]
pub struct Assignment {
    pub booking: Booking,
    pub driver: Driver,
}

/// The `Idempotency-Key` header, where a request accepts one.
pub(crate) const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The `{id}` of a rider, driver or booking path: `params(IdPath)`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(dead_code, reason = "describes a parameter; never built")]
pub(crate) struct IdPath {
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    id: i64,
}

/// The optional `Idempotency-Key` header: `params(IdempotencyHeader)`.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(dead_code, reason = "describes a parameter; never built")]
pub(crate) struct IdempotencyHeader {
    /// Makes a retry safe: a repeat gets the first answer back
    #[param(rename = "Idempotency-Key", pattern = "^[!-~]{1,255}$")]
    key: Option<String>,
}
