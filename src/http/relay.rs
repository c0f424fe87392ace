//! The drain's relay, HTTP side (`cluster::relay`): what arrives while the node drains is sent
//! to another live node and answered with its answer. Refused as before (503 `draining`, nothing
//! done) when it is not to be relayed (see [`relayable`]) or no other node took it.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpResponse, ResponseError};

use super::request_id::HEADER as REQUEST_ID;
use super::State;
use crate::cluster::relay::{passed_on, Outgoing, RelayError, RELAYED_BY};
use crate::domain::ids::RequestId;
use crate::error::ApiError;

/// Answers `req`, which arrived while the node drains.
pub(super) async fn relay_or_refuse(state: &State, mut req: ServiceRequest) -> ServiceResponse {
    if !relayable(&req) {
        return refuse(req);
    }
    let Some(method) = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).ok() else {
        return refuse(req);
    };
    // A body the other node would refuse (too large, cut off) is refused here: nothing done.
    let Ok(body) = req.extract::<web::Bytes>().await else {
        return refuse(req);
    };
    let request_id = req.extensions().get::<RequestId>().cloned();
    let mut headers: Vec<(String, Vec<u8>)> = req
        .headers()
        .iter()
        .filter(|(name, _)| passed_on(name.as_str()) && name.as_str() != REQUEST_ID)
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    if let Some(id) = request_id {
        headers.push((REQUEST_ID.to_owned(), id.as_str().as_bytes().to_vec()));
    }
    let outgoing = Outgoing {
        method,
        target: req.uri().path_and_query().map_or_else(
            || req.path().to_owned(),
            |target| target.as_str().to_owned(),
        ),
        headers,
        body: body.to_vec(),
    };
    let relayed_by = state.relay.node_id().to_owned();
    match state.relay.send(outgoing).await {
        Ok(answer) => {
            log::info!(
                "draining: relayed {} {} to node={} status={}",
                req.method(),
                req.path(),
                answer.node,
                answer.status
            );
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut response = HttpResponse::build(status);
            for (name, value) in answer.headers {
                response.append_header((name, value));
            }
            // The client's next request goes elsewhere: a load balancer opens a new connection.
            response
                .insert_header((RELAYED_BY, relayed_by))
                .force_close();
            req.into_response(response.body(answer.body))
        }
        Err(RelayError::NotSent) => refuse(req),
        // It may have been done: the caller cannot be told it was not.
        Err(error @ RelayError::Unanswered { .. }) => {
            log::warn!("draining: relayed {} {}: {error}", req.method(), req.path());
            req.into_response(ApiError::DeadlineExceeded.error_response())
        }
    }
}

/// Whether `req` may go to another node: a call of the API about the cluster's data. Not what
/// is about this node (`/readyz`, `/api/health` and `/metrics` must say it drains), not a
/// node-to-node call, not an event stream, not a request relayed once already.
fn relayable(req: &ServiceRequest) -> bool {
    let path = req.path();
    path.starts_with("/api/")
        && path != "/api/health"
        && !path.ends_with("/stream")
        && !req.headers().contains_key(RELAYED_BY)
}

fn refuse(req: ServiceRequest) -> ServiceResponse<BoxBody> {
    req.into_response(ApiError::Draining.error_response())
}
