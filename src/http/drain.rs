//! The drain's HTTP face: once the node drains (`cluster::drain`), every new request is refused
//! at once, before any work: 503 `draining`, `Retry-After`, the connection closed.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};
use serde_json::json;

use super::State;
use crate::cluster::headers::DRAINING as DRAINING_HEADER;

/// Middleware: counts requests in flight; refuses them once the node is draining.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(state) = req.app_data::<State>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let Some(_in_flight) = state.drain.enter() else {
        let refusal = HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .insert_header((DRAINING_HEADER, "true"))
            .insert_header(("Connection", "close"))
            .json(json!({
                "success": false,
                "message": "This node is shutting down; retry",
                "error": "draining",
            }));
        return Ok(req.into_response(refusal).map_into_right_body());
    };
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
