//! `ApiError`, the only error type handlers return, and the only `From` impls into it, so the whole
//! mapping from failures to status codes and stable `error` codes fits on one screen. Every error
//! body has API.md's envelope; 5xx bodies say nothing internal, and the full cause chain is logged
//! once, here.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::actors::BookingError;
use crate::auth::{AuthError, Forbidden};
use crate::cluster::headers::DRAINING as DRAINING_HEADER;
use crate::cluster::inbound::{CallError, Unsupported};
use crate::cluster::router::RouteError;
use crate::domain::values::FieldError;
use crate::storage::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_request`; the message names the field.
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// 401: the caller could not be authenticated (an internal call without a valid signature).
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    /// 403: the caller is not the party this action needs.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// 404 for an unknown id.
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// 409: the current state forbids the change; `data` is that state.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        data: Value,
    },
    /// 422: the request is well formed but cannot be taken (an idempotency key reused for a
    /// different request).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// 413 `payload_too_large`: the body is over the limit; nothing of it was parsed.
    #[error("The request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 429 `rate_limited` + Retry-After: the caller sent more than its share.
    #[error("Too many requests; retry after the time Retry-After gives")]
    RateLimited { retry_after: Duration },
    /// 405 `method_not_allowed` + Allow: the path exists, the method does not.
    #[error("Method not allowed on this path; allowed: {allow}")]
    MethodNotAllowed { allow: &'static str },
    /// 503 `deadline_exceeded` + Retry-After: the request ran out of its time and was abandoned;
    /// whatever it was writing either committed whole or not at all (see `http::deadline`).
    #[error("The request did not finish within its deadline")]
    DeadlineExceeded,
    /// 503 `draining` + Retry-After, `X-RideLock-Draining` and `Connection: close`: the node is
    /// shutting down and did nothing with the request, so it may go to any other node.
    #[error("This node is shutting down; retry")]
    Draining,
    /// 503 `unsupported_call` + Retry-After: a node of a newer build forwarded a call this build
    /// cannot honour (a newer format, an unknown action). Nothing was done; by the time the
    /// client retries, the booking's owner may run a build that can.
    #[error("This node cannot serve the call yet; retry")]
    UnsupportedCall(#[source] Unsupported),
    /// 503 `lease_unavailable` + Retry-After: the booking's owner cannot serve it right now.
    #[error("Booking is busy elsewhere, retry shortly")]
    LeaseUnavailable { retry_after: Duration },
    /// 503 `unavailable` + Retry-After: PostgreSQL, Redis or an actor did not answer.
    #[error("Service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// 500 `internal`: a bug. Never on purpose.
    #[error("Internal server error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// An Idempotency-Key that was used for a different request.
    pub(crate) fn key_reused() -> Self {
        Self::Unprocessable {
            code: "idempotency_key_reused",
            message: "This Idempotency-Key was used for a different request".to_owned(),
        }
    }

    pub fn not_found(code: &'static str, what: &str, id: impl std::fmt::Display) -> Self {
        Self::NotFound {
            code,
            message: format!("{what} {id} not found"),
        }
    }

    pub fn conflict(
        code: &'static str,
        message: impl Into<String>,
        data: impl serde::Serialize,
    ) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
            data: serde_json::to_value(data).unwrap_or(Value::Null),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_request",
            Self::Unauthorized { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::Forbidden { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. } => code,
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::RateLimited { .. } => "rate_limited",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Draining => "draining",
            Self::UnsupportedCall(_) => "unsupported_call",
            Self::LeaseUnavailable { .. } => "lease_unavailable",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::LeaseUnavailable { retry_after } | Self::RateLimited { retry_after } => {
                Some(*retry_after)
            }
            Self::Unavailable(_)
            | Self::DeadlineExceeded
            | Self::Draining
            | Self::UnsupportedCall(_) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    fn data(&self) -> Value {
        match self {
            Self::Invalid(error) => json!({ "field": error.field }),
            Self::Conflict { data, .. } => data.clone(),
            _ => Value::Null,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::DeadlineExceeded | Self::Draining | Self::UnsupportedCall(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::LeaseUnavailable { .. } | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            // A planned stop's refusals are expected, one per request that arrives meanwhile.
            Self::Draining => {}
            // Expected while a rolling upgrade runs; someone must act only if it goes on after.
            Self::UnsupportedCall(_) => log::warn!(
                "request failed status={} error={} cause={}",
                status.as_u16(),
                self.code(),
                chain(self)
            ),
            _ if status.is_server_error() => log::error!(
                "request failed status={} error={} cause={}",
                status.as_u16(),
                self.code(),
                chain(self)
            ),
            _ => {}
        }
        let mut body =
            json!({ "success": false, "message": self.to_string(), "error": self.code() });
        let data = self.data();
        if !data.is_null() {
            body["data"] = data;
        }
        let mut response = HttpResponse::build(status);
        if matches!(self, Self::Unauthorized { .. }) {
            response.insert_header(("WWW-Authenticate", "Bearer realm=\"ridelock\""));
        }
        if matches!(self, Self::Draining) {
            response.insert_header((DRAINING_HEADER, "true"));
            // A header alone is not enough: actix-http writes the connection type it decided.
            response.force_close();
        }
        if let Self::MethodNotAllowed { allow } = self {
            response.insert_header(("Allow", *allow));
        }
        if let Some(after) = self.retry_after() {
            response.insert_header(("Retry-After", after.as_secs().max(1).to_string()));
        }
        response.json(body)
    }
}

/// `error: cause: cause…`, for the one log line of a 5xx.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(source) => Self::Unavailable(source),
            StoreError::Query(source) => Self::Internal(source.into()),
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        StoreError::from(error).into()
    }
}

impl From<BookingError> for ApiError {
    fn from(error: BookingError) -> Self {
        match error {
            BookingError::NotFound(id) => Self::not_found("booking_not_found", "Booking", id),
            // A refused stranger learns nothing about the booking: 403 bodies carry no state.
            BookingError::Refused { error, .. } if error.is_forbidden() => Self::Forbidden {
                code: error.code(),
                message: error.to_string(),
            },
            BookingError::Refused { error, booking } => Self::conflict(
                error.code(),
                error.to_string(),
                json!({ "booking": booking }),
            ),
            BookingError::Invalid(error) => error.into(),
            BookingError::NoDriversAvailable { booking } => Self::conflict(
                "no_drivers_available",
                "No drivers available nearby",
                json!({ "booking": booking }),
            ),
            BookingError::Elsewhere(owner) => Self::LeaseUnavailable {
                retry_after: owner.remaining.max(Duration::from_secs(1)),
            },
            BookingError::LeaseUnavailable { retry_after, .. } => {
                Self::LeaseUnavailable { retry_after }
            }
            BookingError::Fenced => Self::LeaseUnavailable {
                retry_after: Duration::from_secs(1),
            },
            error @ BookingError::DeadlinePassed => Self::Unavailable(error.into()),
            // The router answers with the stored reply before this could be reached.
            error @ BookingError::KeyTaken => Self::Internal(error.into()),
            BookingError::Store(error) => error.into(),
            BookingError::Mailbox(error) => Self::Unavailable(error.into()),
        }
    }
}

impl From<RouteError> for ApiError {
    fn from(error: RouteError) -> Self {
        match error {
            RouteError::Booking(error) => error.into(),
            RouteError::KeyReused => Self::key_reused(),
            RouteError::LeaseUnavailable { retry_after } => Self::LeaseUnavailable { retry_after },
            error @ RouteError::PeerRefused(_) => Self::Unavailable(error.into()),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Malformed(error) => error.into(),
            CallError::Unsupported(unsupported) => Self::UnsupportedCall(unsupported),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        Self::Unauthorized {
            code: error.code(),
            message: error.to_string(),
        }
    }
}

impl From<Forbidden> for ApiError {
    fn from(refused: Forbidden) -> Self {
        Self::Forbidden {
            code: refused.code,
            message: refused.message,
        }
    }
}
