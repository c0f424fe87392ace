//! The REST API of API.md: every route is listed once in [`routes`]. Handlers validate input at
//! the edge (wire DTOs → domain values), send mutations to the booking's actor and read with
//! plain queries.

mod booking_actions;
mod bookings;
mod dashboard;
pub mod deadline;
pub(crate) mod drain;
mod drivers;
#[cfg(test)]
mod dto_properties;
mod extract;
mod health;
mod idempotent;
mod internal;
pub(crate) mod metrics;
pub mod openapi;
pub mod rate_limit;
mod relay;
pub(crate) mod request_id;
mod riders;
mod schemas;
mod streams;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::actors::registry::BookingRegistry;
use crate::actors::SharedDeps;
use crate::cluster::inbound::Inbound;
use crate::cluster::router::Router;
use crate::domain::values::FieldError;
use crate::envelope::{Envelope, ListEnvelope};
use crate::error::ApiError;
use crate::lease::failover::Leases;
use crate::lease::manager::LeaseMetrics;

/// What handlers share.
pub(crate) struct AppState {
    pub registry: Arc<BookingRegistry>,
    pub deps: SharedDeps,
    pub lease_metrics: Arc<LeaseMetrics>,
    pub leases: Leases,
    pub redis: crate::redis_conn::RedisConn,
    /// This node's Prometheus registry and the request metrics (`/metrics`).
    pub metrics: metrics::Metrics,
    /// `auth.scrape_token`: opens `/metrics` and nothing else; empty: off.
    pub scrape_token: crate::config::Secret,
    /// Runs booking actions on the node that owns the booking.
    pub router: Arc<Router>,
    /// Admits calls to `/internal/...` from other nodes.
    pub inbound: Inbound,
    /// Requests in flight, and whether the node is shutting down.
    pub drain: Arc<crate::cluster::drain::Drain>,
    /// Sends what arrives while the node drains to another node.
    pub relay: Arc<crate::cluster::relay::Relay>,
    /// `/api/health`'s shared PostgreSQL probe.
    pub postgres_probe: health::PostgresProbe,
    /// Committed booking events, for the event streams.
    pub hub: Arc<crate::streams::Hub>,
    pub streams: crate::config::StreamSettings,
}

pub(crate) type State = web::Data<AppState>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(extract::BODY_LIMIT))
        .app_data(web::QueryConfig::default().error_handler(|error, _| {
            ApiError::from(FieldError::new("query", error.to_string())).into()
        }))
        .service(
            web::scope("/api")
                .service(resource(
                    "/riders",
                    "POST",
                    vec![web::post().to(riders::create)],
                ))
                .service(resource(
                    "/riders/{id}",
                    "GET",
                    vec![web::get().to(riders::get)],
                ))
                .service(resource(
                    "/drivers",
                    "GET, POST",
                    vec![
                        web::get().to(drivers::list),
                        web::post().to(drivers::create),
                    ],
                ))
                .service(resource(
                    "/drivers/nearby",
                    "GET",
                    vec![web::get().to(drivers::nearby)],
                ))
                .service(resource(
                    "/drivers/{id}",
                    "GET",
                    vec![web::get().to(drivers::get)],
                ))
                .service(resource(
                    "/drivers/{id}/location",
                    "POST",
                    vec![web::post().to(drivers::update_location)],
                ))
                .service(resource(
                    "/drivers/{id}/status",
                    "PATCH",
                    vec![web::patch().to(drivers::update_status)],
                ))
                .service(resource(
                    "/bookings",
                    "POST",
                    vec![web::post().to(bookings::create)],
                ))
                .service(resource(
                    "/bookings/{id}",
                    "GET",
                    vec![web::get().to(bookings::get)],
                ))
                .service(resource(
                    "/bookings/{id}/events",
                    "GET",
                    vec![web::get().to(bookings::events)],
                ))
                .service(resource(
                    "/bookings/{id}/stream",
                    "GET",
                    vec![web::get().to(streams::booking)],
                ))
                .service(resource(
                    "/bookings/{id}/assign",
                    "POST",
                    vec![web::post().to(booking_actions::assign)],
                ))
                .service(resource(
                    "/bookings/{id}/accept",
                    "POST",
                    vec![web::post().to(booking_actions::accept)],
                ))
                .service(resource(
                    "/bookings/{id}/cancel",
                    "POST",
                    vec![web::post().to(booking_actions::cancel)],
                ))
                .service(resource(
                    "/bookings/{id}/complete",
                    "POST",
                    vec![web::post().to(booking_actions::complete)],
                ))
                .service(resource(
                    "/users/{user_id}/bookings",
                    "GET",
                    vec![web::get().to(bookings::list_for_user)],
                ))
                .service(resource(
                    "/users/{user_id}/stream",
                    "GET",
                    vec![web::get().to(streams::user)],
                ))
                .service(resource(
                    "/locks/stats",
                    "GET",
                    vec![web::get().to(health::lock_stats)],
                ))
                .service(resource(
                    "/cluster/nodes",
                    "GET",
                    vec![web::get().to(health::cluster_nodes)],
                ))
                .service(resource(
                    "/cluster/stream",
                    "GET",
                    vec![web::get().to(streams::cluster)],
                ))
                .service(resource(
                    "/health",
                    "GET",
                    vec![web::get().to(health::health)],
                ))
                .service(resource(
                    "/openapi.json",
                    "GET",
                    vec![web::get().to(openapi::document)],
                )),
        )
        .service(resource(
            "/internal/bookings/{id}",
            "POST",
            vec![web::post().to(internal::booking)],
        ))
        .service(resource(
            "/metrics",
            "GET",
            vec![web::get().to(metrics::render)],
        ))
        .service(resource(
            "/dashboard",
            "GET",
            vec![web::get().to(dashboard::page)],
        ))
        .service(resource(
            "/livez",
            "GET",
            vec![web::get().to(health::livez)],
        ))
        .service(resource(
            "/readyz",
            "GET",
            vec![web::get().to(health::readyz)],
        ))
        .default_service(web::to(not_found));
}

/// A path served by `routes`, within the request deadline (`deadline`); its other methods are
/// answered 405 with `Allow` (and the JSON envelope).
fn resource(
    path: &str,
    allow: &'static str,
    routes: Vec<actix_web::Route>,
) -> impl actix_web::dev::HttpServiceFactory {
    routes
        .into_iter()
        .fold(web::resource(path), actix_web::Resource::route)
        .default_service(web::to(move || async move {
            Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow })
        }))
        // Here, not around the whole app: the deadline keeps the request to answer with, and a
        // request may only be kept once routing has matched it.
        .wrap(actix_web::middleware::from_fn(deadline::limit))
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

/// A list: `data` is the array and `count` sits beside it.
pub(crate) fn respond_list<T: Serialize>(message: &str, items: &[T]) -> HttpResponse {
    HttpResponse::Ok().json(ListEnvelope {
        success: true,
        message,
        data: items,
        count: items.len(),
    })
}
