//! The REST API of API.md: every route is listed once in [`routes`]. Handlers validate input at
//! the edge (wire DTOs → domain values), send mutations to the booking's actor and read with
//! plain queries.

mod booking_actions;
mod bookings;
pub mod drain;
mod drivers;
mod extract;
mod health;
mod idempotent;
mod internal;
pub mod metrics;
pub mod request_id;
mod riders;
mod routing;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::actors::registry::BookingRegistry;
use crate::actors::SharedDeps;
use crate::cluster::forward::Forwarder;
use crate::config::Secret;
use crate::error::ApiError;
use crate::lease::failover::Leases;
use crate::lease::manager::LeaseMetrics;

/// What handlers share.
pub struct AppState {
    pub registry: Arc<BookingRegistry>,
    pub deps: SharedDeps,
    pub lease_metrics: Arc<LeaseMetrics>,
    pub leases: Leases,
    pub redis: redis::aio::ConnectionManager,
    pub http_metrics: metrics::HttpMetrics,
    /// Sends booking actions to the node that owns the booking.
    pub forwarder: Forwarder,
    /// Verifies calls to `/internal/...` from other nodes.
    pub cluster_secret: Secret,
    /// Requests in flight, and whether the node is shutting down.
    pub drain: Arc<drain::Drain>,
}

pub type State = web::Data<AppState>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .route("/riders", web::post().to(riders::create))
            .route("/riders/{id}", web::get().to(riders::get))
            .route("/drivers", web::get().to(drivers::list))
            .route("/drivers", web::post().to(drivers::create))
            .route("/drivers/nearby", web::get().to(drivers::nearby))
            .route("/drivers/{id}", web::get().to(drivers::get))
            .route(
                "/drivers/{id}/location",
                web::post().to(drivers::update_location),
            )
            .route(
                "/drivers/{id}/status",
                web::patch().to(drivers::update_status),
            )
            .route("/bookings", web::post().to(bookings::create))
            .route("/bookings/{id}", web::get().to(bookings::get))
            .route("/bookings/{id}/events", web::get().to(bookings::events))
            .route(
                "/bookings/{id}/assign",
                web::post().to(booking_actions::assign),
            )
            .route(
                "/bookings/{id}/accept",
                web::post().to(booking_actions::accept),
            )
            .route(
                "/bookings/{id}/cancel",
                web::post().to(booking_actions::cancel),
            )
            .route(
                "/bookings/{id}/complete",
                web::post().to(booking_actions::complete),
            )
            .route(
                "/users/{user_id}/bookings",
                web::get().to(bookings::list_for_user),
            )
            .route("/locks/stats", web::get().to(health::lock_stats))
            .route("/cluster/nodes", web::get().to(health::cluster_nodes))
            .route("/health", web::get().to(health::health)),
    )
    .route("/internal/bookings/{id}", web::post().to(internal::booking))
    .route("/metrics", web::get().to(metrics::render))
    .default_service(web::to(not_found));
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound {
        code: "route_not_found",
        message: "No such route".to_owned(),
    })
}

/// `{"success": true, "message": …, "data": …}`.
pub(crate) fn respond(status: StatusCode, message: &str, data: impl Serialize) -> HttpResponse {
    HttpResponse::build(status).json(Envelope {
        success: true,
        message,
        data,
    })
}

/// The body `respond` sends for a success, as text: what an idempotency key stores, so a repeat
/// gets the very same bytes.
pub(crate) fn success_body(message: &str, data: impl Serialize) -> String {
    serde_json::to_string(&Envelope {
        success: true,
        message,
        data,
    })
    .unwrap_or_default()
}

/// A list: `data` is the array and `count` sits beside it.
pub(crate) fn respond_list<T: Serialize>(message: &str, items: &[T]) -> HttpResponse {
    HttpResponse::Ok().json(ListEnvelope {
        success: true,
        message,
        data: items,
        count: items.len(),
    })
}

/// The success envelope, serialized straight to the body: no `serde_json::Value` tree in between,
/// which for a large answer (lock stats of 100,000 leases) cost more memory than the leases.
#[derive(Serialize)]
struct Envelope<'a, T> {
    success: bool,
    message: &'a str,
    data: T,
}

#[derive(Serialize)]
struct ListEnvelope<'a, T> {
    success: bool,
    message: &'a str,
    data: &'a [T],
    count: usize,
}
