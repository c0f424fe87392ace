//! The drain's HTTP face: once the node drains (`cluster::drain`), no new request is served here:
//! each is relayed to another node (`http::relay`), or refused at once, before any work, with
//! [`ApiError::Draining`] (503, `Retry-After`, the connection closed).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::Error;

use super::State;

/// Middleware: counts requests in flight; relays or refuses them once the node is draining (so
/// `/readyz` answers 503 `draining` then), all but `/livez`.
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
    // Not counted in flight: a relayed request waits for another node, which may wait for
    // this node's leases, given back only once nothing is in flight here.
    let Some(_in_flight) = state.drain.enter() else {
        let answer = super::relay::relay_or_refuse(&state, req).await;
        return Ok(answer.map_into_right_body());
    };
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
