//! Requests with an `Idempotency-Key` (see `storage::idempotency`): a handler asks [`replay`]
//! first, makes its change in a transaction that ends with [`answer`], and sends what [`finish`]
//! makes of the transaction's outcome. A repeat gets the stored bytes back, with
//! `Idempotency-Replayed: true`; the same key on another request is 422.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use diesel_async::AsyncPgConnection;
use serde::Serialize;

use crate::envelope::success_body;
use crate::error::ApiError;
use crate::storage::idempotency::{self, IdempotencyKey, Seen, Stored};

/// The answer to send instead of handling the request, if it carries a key that was answered
/// before.
pub async fn replay(
    conn: &mut AsyncPgConnection,
    key: Option<&IdempotencyKey>,
) -> Result<Option<HttpResponse>, ApiError> {
    let Some(key) = key else {
        return Ok(None);
    };
    Ok(match idempotency::lookup(conn, key).await? {
        Seen::New => None,
        Seen::Repeat(stored) => Some(replayed(stored)),
        Seen::Reused => return Err(ApiError::key_reused()),
    })
}

/// A stored answer sent again, marked `Idempotency-Replayed: true`.
pub fn replayed(stored: Stored) -> HttpResponse {
    let status = u16::try_from(stored.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    HttpResponse::build(status)
        .content_type("application/json")
        .insert_header(("Idempotency-Replayed", "true"))
        .body(stored.body)
}

/// The success body for `data`, stored under `key` (if any) in the caller's transaction. A
/// concurrent copy of the request that stored first makes this fail with `RollbackTransaction`,
/// so the caller's change is undone; [`finish`] then answers what that copy answered.
pub async fn answer(
    tx: &mut AsyncPgConnection,
    key: Option<&IdempotencyKey>,
    status: StatusCode,
    message: &str,
    data: impl Serialize,
) -> diesel::QueryResult<String> {
    let body = success_body(message, data);
    if let Some(key) = key {
        if !idempotency::store(tx, key, status.as_u16(), &body).await? {
            return Err(diesel::result::Error::RollbackTransaction);
        }
    }
    Ok(body)
}

/// What to send for a transaction that ended with [`answer`]: its body, or the stored answer of
/// the copy that won. Other errors are the caller's to map.
pub async fn finish(
    conn: &mut AsyncPgConnection,
    key: Option<&IdempotencyKey>,
    status: StatusCode,
    outcome: diesel::QueryResult<String>,
) -> Result<Result<HttpResponse, diesel::result::Error>, ApiError> {
    match (outcome, key) {
        (Ok(body), _) => Ok(Ok(HttpResponse::build(status)
            .content_type("application/json")
            .body(body))),
        (Err(diesel::result::Error::RollbackTransaction), Some(key)) => replay(conn, Some(key))
            .await?
            .map(Ok)
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("idempotency key vanished"))),
        (Err(error), _) => Ok(Err(error)),
    }
}
