//! Event streams (Server-Sent Events): a booking's, a rider's or driver's, and the whole
//! cluster's for ops. Authorized as the matching REST reads; the stream itself is `streams`.

use std::convert::Infallible;

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use serde::Deserialize;
use utoipa::ToSchema;

use super::bookings::{booking_id, readable_booking, user_for};
use super::schemas::IdPath;
use super::State;
use crate::auth::{rules, Principal};
use crate::domain::values::FieldError;
use crate::error::ApiError;
use crate::storage::bookings::UserRef;
use crate::storage::events::Scope;
use crate::storage::pool;
use crate::streams::{self, StreamStart};

/// One event of a stream as the `text/event-stream` format carries it (the schema of each event,
/// not of the whole answer). Never built: it only documents the format for OpenAPI.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct StreamEvent {
    /// The event's id in the audit trail: what to send back as `Last-Event-ID`.
    #[schema(pattern = "^[0-9]+$")]
    id: String,
    /// Always `booking`.
    #[schema(pattern = "^booking$")]
    event: String,
    /// The event as JSON on one line: the trail's event plus `rider_id`.
    data: String,
}

/// One event of the cluster stream: a booking event (as [`StreamEvent`]), or one of the nodes'
/// operations, which are in no trail and so carry no id. Never built: OpenAPI only.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ClusterStreamEvent {
    /// A booking event's id in the audit trail; absent on operations events.
    #[schema(pattern = "^[0-9]+$")]
    id: Option<String>,
    /// `booking`, or a node's `lease` change, `backend` switch or `node` figures.
    #[schema(pattern = "^(booking|lease|backend|node)$")]
    event: String,
    /// The event as JSON on one line (docs/API.md, "Event streams").
    data: String,
}

/// Where a stream starts: `after` (for an `EventSource`'s first connection, which cannot send
/// headers); a reconnect's `Last-Event-ID` header wins over it.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamQuery {
    after: Option<String>,
    user_type: Option<String>,
}

/// A booking's events as they commit (its rider, its driver, or ops).
#[utoipa::path(
    get,
    operation_id = "bookings_stream",
    path = "/api/bookings/{id}/stream",
    tag = "streams",
    params(
        IdPath,
        ("after" = Option<i64>, Query, minimum = 0, description = "send the events after this id first"),
        ("Last-Event-ID" = Option<i64>, Header, nullable = false, minimum = 0, description = "sent by a reconnecting EventSource; wins over `after`"),
    ),
    responses((status = 200, description = "text/event-stream: `event: booking`, `id:` the event id, `data:` the event as in the booking's trail, with `rider_id`", content_type = "text/event-stream", body = StreamEvent)),
    security(("bearer" = [])),
)]
pub(crate) async fn booking(
    state: State,
    caller: Principal,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = booking_id(&path)?;
    let after = start_after(&request, &query)?;
    {
        // Given back before the stream takes one to find where the trail ends.
        let mut conn = pool::conn(&state.deps.pool).await?;
        readable_booking(&mut conn, &caller, id).await?;
    }
    respond(&state, &caller, Scope::Booking(id), after).await
}

/// A rider's or a driver's events as they commit: every event of the rider's bookings, or
/// every event that names the driver (that rider or driver, or ops).
#[utoipa::path(
    get,
    operation_id = "users_stream",
    path = "/api/users/{user_id}/stream",
    tag = "streams",
    params(
        ("user_id" = i64, Path, minimum = 1, maximum = 9223372036854775807_i64),
        ("user_type" = Option<String>, Query, pattern = "^(rider|driver)$", description = "default rider"),
        ("after" = Option<i64>, Query, minimum = 0, description = "send the events after this id first"),
        ("Last-Event-ID" = Option<i64>, Header, nullable = false, minimum = 0, description = "sent by a reconnecting EventSource; wins over `after`"),
    ),
    responses((status = 200, description = "text/event-stream, as a booking's stream", content_type = "text/event-stream", body = StreamEvent)),
    security(("bearer" = [])),
)]
pub(crate) async fn user(
    state: State,
    caller: Principal,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let scope = match user_for(&caller, &path, query.user_type.as_deref())? {
        UserRef::Rider(rider) => Scope::Rider(rider),
        UserRef::Driver(driver) => Scope::Driver(driver),
    };
    let after = start_after(&request, &query)?;
    respond(&state, &caller, scope, after).await
}

/// Every booking event of the cluster as it commits, and every node's lease changes, lease
/// backend switches and figures as they happen (ops).
#[utoipa::path(
    get,
    operation_id = "cluster_stream",
    path = "/api/cluster/stream",
    tag = "streams",
    params(
        ("after" = Option<i64>, Query, minimum = 0, description = "send the events after this id first"),
        ("Last-Event-ID" = Option<i64>, Header, nullable = false, minimum = 0, description = "sent by a reconnecting EventSource; wins over `after`"),
    ),
    responses((status = 200, description = "text/event-stream: every booking's events as a booking's stream has them, and without ids the nodes' `lease`, `backend` and `node` events", content_type = "text/event-stream", body = ClusterStreamEvent)),
    security(("bearer" = [])),
)]
pub(crate) async fn cluster(
    state: State,
    caller: Principal,
    request: HttpRequest,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let after = start_after(&request, &query)?;
    rules::ops_only(&caller)?;
    respond(&state, &caller, Scope::All, after).await
}

/// The last event id the client has: `Last-Event-ID`, else `?after=`; none for a new stream.
/// Each is checked when sent, whichever wins.
fn start_after(request: &HttpRequest, query: &StreamQuery) -> Result<Option<i64>, FieldError> {
    let event_id = |raw: &str, field| {
        raw.trim()
            .parse::<i64>()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| FieldError::new(field, "must be an event id (an integer, 0 or more)"))
    };
    let after = query
        .after
        .as_deref()
        .map(|raw| event_id(raw, "after"))
        .transpose()?;
    match request.headers().get("Last-Event-ID") {
        Some(header) => event_id(header.to_str().unwrap_or_default(), "Last-Event-ID").map(Some),
        None => Ok(after),
    }
}

async fn respond(
    state: &State,
    caller: &Principal,
    scope: Scope,
    after: Option<i64>,
) -> Result<HttpResponse, ApiError> {
    let settings = &state.streams;
    let start = StreamStart {
        scope,
        after,
        heartbeat: settings.heartbeat(),
        overlap: settings.replay_overlap(),
        mask_operators: !caller.is_ops(),
    };
    let frames = streams::events(
        &state.hub,
        state.deps.pool.clone(),
        start,
        state.drain.closing(),
    )
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        // nginx passes each frame on at once instead of buffering the answer.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(frames.map(|frame| Ok::<_, Infallible>(web::Bytes::from(frame)))))
}
