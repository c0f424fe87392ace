//! Where a booking action runs: on the node whose booking actor holds the booking's lease.
//!
//! [`route`] first offers the action to this node's actor. If the lease is free, that actor takes
//! it and the action runs here. If another node holds it, the action is forwarded to that node's
//! internal endpoint and its answer relayed as it is. If the owner does not answer (down, paused,
//! unreachable), the lease is watched until it moves (the owner released it, or it expired because
//! nobody renewed it), polling with exponential backoff and full jitter, never sleeping past the
//! key's remaining TTL; then the action is offered here again, so this node takes over. A request
//! that runs out of its deadline first is answered 503 with `Retry-After`.
//!
//! An action is only ever sent to a second owner after the lease moved away from the first:
//! the new owner's activation bumps the fencing token, so whatever the silent owner still tries
//! to write is refused by PostgreSQL. A write refused that way (`Fenced`) is routed again from
//! the start, never retried as the same write.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{respond, AppState};
use crate::actors::booking::{Accept, Assign, Cancel, Complete};
use crate::actors::BookingError;
use crate::cluster::forward::{ForwardError, Relayed, SERVED_BY_HEADER};
use crate::domain::booking::Party;
use crate::domain::ids::{BookingId, DriverId, RequestId};
use crate::domain::values::Fare;
use crate::error::ApiError;
use crate::lease::redis::RedisLeases;
use crate::lease::{booking_key, LeaseOwner};

/// A validated booking action: what a handler asks for, and what travels to the owner node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum BookingOp {
    Assign,
    Accept {
        driver_id: DriverId,
    },
    Cancel {
        by: Party,
        reason: Option<String>,
    },
    Complete {
        driver_id: DriverId,
        actual_fare_cents: i64,
    },
}

/// How many times one request may be passed from node to node. One forward is the normal case;
/// a second covers an owner that handed the booking on while the request was travelling.
pub const MAX_HOPS: u8 = 2;

/// How many times a request fenced off mid-write is routed again.
const MAX_REROUTES: usize = 3;

/// First step of the lease watch's backoff.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);

/// Runs `op` on the booking's owner node and answers what it answered. `hops`: how many nodes
/// passed the request on already; `budget`: what is left of its deadline.
pub async fn route(
    state: &AppState,
    id: BookingId,
    op: BookingOp,
    request_id: RequestId,
    hops: u8,
    budget: Duration,
) -> Result<HttpResponse, ApiError> {
    let deadline = Instant::now() + budget;
    let key = booking_key(&state.deps.key_prefix, id);
    let mut reroutes = 0;
    loop {
        let owner = match perform(state, id, &op, &request_id).await {
            Ok(response) => return Ok(response),
            Err(BookingError::Elsewhere(owner)) => owner,
            Err(BookingError::Fenced) if reroutes < MAX_REROUTES => {
                reroutes += 1;
                continue;
            }
            Err(error) => {
                // The actor's answer (a refusal): it says which node it ran on, like a success.
                let mut response = ApiError::from(error).error_response();
                served_by(&mut response, &state.deps.node_id.0);
                return Ok(response);
            }
        };
        if Instant::now() >= deadline {
            return Err(busy(&owner));
        }
        if owner.value.is_empty() {
            // Released between our SET and our GET: simply try again.
            continue;
        }
        let remote = owner.node != state.deps.node_id.0;
        if remote && hops >= MAX_HOPS {
            return Err(busy(&owner));
        }
        let address = match remote {
            true => state.forwarder.address_of(&owner.node).await,
            false => None,
        };
        let waited = forward_or_wait(
            state,
            Forward {
                id,
                op: &op,
                request_id: &request_id,
                hops: hops + 1,
                key: &key,
                owner: &owner,
                address,
                deadline,
            },
        )
        .await;
        match waited {
            Waited::Answered(relayed) => return Ok(relay(relayed)),
            Waited::LeaseMoved => continue,
            Waited::Deadline => return Err(busy(&owner)),
        }
    }
}

/// Offers `op` to this node's actor for the booking.
async fn perform(
    state: &AppState,
    id: BookingId,
    op: &BookingOp,
    request_id: &RequestId,
) -> Result<HttpResponse, BookingError> {
    let registry = &state.registry;
    let (request_id, sent_at) = (request_id.clone(), Instant::now());
    let mut response = match op.clone() {
        BookingOp::Assign => {
            let msg = Assign {
                request_id,
                sent_at,
            };
            let (booking, driver) = registry.send(id, msg).await?;
            respond(
                StatusCode::OK,
                "Driver assigned successfully",
                json!({ "booking": booking, "driver": driver }),
            )
        }
        BookingOp::Accept { driver_id } => {
            let msg = Accept {
                driver_id,
                request_id,
                sent_at,
            };
            let booking = registry.send(id, msg).await?;
            respond(StatusCode::OK, "Booking accepted successfully", booking)
        }
        BookingOp::Cancel { by, reason } => {
            let msg = Cancel {
                by,
                reason,
                request_id,
                sent_at,
            };
            let booking = registry.send(id, msg).await?;
            respond(StatusCode::OK, "Booking cancelled successfully", booking)
        }
        BookingOp::Complete {
            driver_id,
            actual_fare_cents,
        } => {
            let msg = Complete {
                driver_id,
                actual_fare: Fare::from_cents(actual_fare_cents),
                request_id,
                sent_at,
            };
            let booking = registry.send(id, msg).await?;
            respond(StatusCode::OK, "Ride completed successfully", booking)
        }
    };
    served_by(&mut response, &state.deps.node_id.0);
    Ok(response)
}

/// Names the node whose actor answered a booking action.
pub fn served_by(response: &mut HttpResponse, node: &str) {
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(node) {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static(SERVED_BY_HEADER),
            value,
        );
    }
}

fn busy(owner: &LeaseOwner) -> ApiError {
    ApiError::LeaseUnavailable {
        retry_after: owner.remaining.max(Duration::from_secs(1)),
    }
}

fn relay(relayed: Relayed) -> HttpResponse {
    let status = StatusCode::from_u16(relayed.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = HttpResponse::build(status);
    response.content_type("application/json");
    if let Some(after) = relayed.retry_after {
        response.insert_header(("Retry-After", after));
    }
    if let Some(node) = relayed.served_by {
        response.insert_header((SERVED_BY_HEADER, node));
    }
    response.body(relayed.body)
}

struct Forward<'a> {
    id: BookingId,
    op: &'a BookingOp,
    request_id: &'a RequestId,
    /// Hops the forwarded call will carry.
    hops: u8,
    key: &'a str,
    owner: &'a LeaseOwner,
    /// The owner's internal address; `None` when it is this node or not a live member.
    address: Option<String>,
    deadline: Instant,
}

enum Waited {
    Answered(Relayed),
    LeaseMoved,
    Deadline,
}

/// Forwards to the owner (if it has an address) while watching its lease. Whichever comes
/// first: the owner's answer, the lease moving, or the deadline.
async fn forward_or_wait(state: &AppState, call: Forward<'_>) -> Waited {
    let forwarder = &state.forwarder;
    let budget = call.deadline.saturating_duration_since(Instant::now());
    let forwarding = call.address.is_some();
    let forward = async {
        let address = call
            .address
            .as_deref()
            .ok_or_else(|| ForwardError::NoAddress(call.owner.node.clone()))?;
        // Serializing a plain enum of ids and strings cannot fail; an empty body would be refused.
        let body = serde_json::to_vec(call.op).unwrap_or_default();
        forwarder
            .send(address, call.id, body, call.request_id, call.hops, budget)
            .await
    };
    // With a call in flight the owner answers, or is silent; only a silent owner's lease can
    // expire, and not before its remaining TTL, so the watch starts there. Without one the lease
    // may be released at any moment (it is this node's own, being given back, or the owner is
    // unknown), so the watch starts at once.
    let first_check = if forwarding {
        call.owner.remaining
    } else {
        Duration::ZERO
    };
    let watch = lease_moves(
        &state.leases,
        call.key,
        &call.owner.value,
        first_check,
        state.deps.lease.ttl(),
    );
    let expiry = tokio::time::sleep_until(call.deadline.into());
    tokio::pin!(forward, watch, expiry);
    let mut in_flight = true;
    loop {
        tokio::select! {
            answer = &mut forward, if in_flight => match answer {
                Ok(relayed) => return Waited::Answered(relayed),
                Err(error) => {
                    in_flight = false;
                    // No answer is coming: watch for the lease to move from now on, not from
                    // its expiry (a node shutting down releases its leases any moment now).
                    watch.set(lease_moves(
                        &state.leases,
                        call.key,
                        &call.owner.value,
                        Duration::ZERO,
                        state.deps.lease.ttl(),
                    ));
                    if forwarding {
                        log::warn!(
                            "forward unanswered node={} owner={} booking={} req={} error={error}",
                            state.deps.node_id,
                            call.owner.node,
                            call.id,
                            call.request_id.as_str()
                        );
                        forwarder.forget(&call.owner.node);
                    }
                }
            },
            () = &mut watch => return Waited::LeaseMoved,
            () = &mut expiry => return Waited::Deadline,
        }
    }
}

/// Resolves once `key` no longer carries `value` (released, expired or taken over). Polls after
/// `first_check`, then with exponential backoff and full jitter, each sleep capped by the key's
/// remaining TTL so an expiry is noticed within a poll of happening. A Redis error counts as "no
/// news": the caller's deadline bounds the wait.
async fn lease_moves(
    leases: &RedisLeases,
    key: &str,
    value: &str,
    first_check: Duration,
    max_backoff: Duration,
) {
    tokio::time::sleep(first_check).await;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let remaining = match leases.holder(key).await {
            Ok(Some(now)) if now.value == value => now.remaining,
            Ok(_) => return,
            Err(_) => Duration::ZERO,
        };
        let jitter = rand::rng().random_range(Duration::ZERO..=backoff);
        let wait = if remaining.is_zero() {
            jitter
        } else {
            jitter.min(remaining + Duration::from_millis(1))
        };
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        backoff = (backoff * 2).min(max_backoff);
    }
}
