//! The drain's HTTP face: once the node drains (`cluster::drain`), every new request is refused
//! at once, before any work: [`ApiError::Draining`] (503, `Retry-After`, the connection closed).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};

use super::State;
use crate::error::ApiError;

/// Middleware: counts requests in flight; refuses them once the node is draining (so `/readyz`
/// answers 503 `draining` then), all but `/livez`.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    // The process is alive until it exits: liveness is answered while it drains.
    if req.path() == "/livez" {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let Some(state) = req.app_data::<State>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let Some(_in_flight) = state.drain.enter() else {
        let refusal = ApiError::Draining.error_response();
        return Ok(req.into_response(refusal).map_into_right_body());
    };
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
