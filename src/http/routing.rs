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
use crate::actors::booking::{Accept, Assign, Cancel, Complete, ExpireOffer, RequestMeta};
use crate::actors::BookingError;
use crate::cluster::forward::{ForwardError, Relayed};
use crate::cluster::headers::SERVED_BY as SERVED_BY_HEADER;
use crate::domain::booking::{authorize, Command, Party};
use crate::domain::ids::{BookingId, DriverId, RequestId, RiderId};
use crate::domain::values::Fare;
use crate::error::ApiError;
use crate::lease::failover::Leases;
use crate::lease::LeaseError;
use crate::lease::{booking_key, LeaseOwner};
use crate::storage::idempotency::IdempotencyKey;
use crate::storage::models::Booking;
use crate::storage::{bookings, drivers, pool};

/// A validated booking action: what a handler asks for, and what travels to the owner node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum BookingOp {
    /// `by`: the rider asking, or `None` for an operator.
    Assign {
        by: Option<RiderId>,
    },
    /// `operator`: an operator acting for the driver.
    Accept {
        driver_id: DriverId,
        operator: bool,
    },
    Cancel {
        by: Party,
        reason: Option<String>,
    },
    Complete {
        driver_id: DriverId,
        operator: bool,
        actual_fare_cents: i64,
    },
    /// The offer sweep: `driver_id`'s offer, made at `assigned_at`, was not accepted in time.
    ExpireOffer {
        driver_id: DriverId,
        assigned_at: chrono::DateTime<chrono::Utc>,
        give_up: bool,
    },
}

impl BookingOp {
    /// The state machine's command for this action.
    fn command(&self) -> Command {
        match *self {
            Self::Assign { by } => Command::Assign { by },
            Self::Accept {
                driver_id,
                operator,
            } => Command::Accept {
                driver_id,
                operator,
            },
            Self::Cancel { by, .. } => Command::Cancel { by },
            Self::Complete {
                driver_id,
                operator,
                ..
            } => Command::Complete {
                driver_id,
                operator,
            },
            Self::ExpireOffer {
                driver_id, give_up, ..
            } => Command::ExpireOffer { driver_id, give_up },
        }
    }

    /// Whether the action names a caller the booking must know (everything but an operator's
    /// assign, accept or complete).
    fn names_a_party(&self) -> bool {
        match self {
            Self::Assign { by } => by.is_some(),
            Self::Accept { operator, .. } | Self::Complete { operator, .. } => !operator,
            Self::Cancel { .. } => true,
            // The system's own: no caller to screen.
            Self::ExpireOffer { .. } => false,
        }
    }

    /// The status this action moves a booking to, and the message of its success answer.
    fn outcome(&self) -> (&'static str, &'static str) {
        match self {
            Self::Assign { .. } => ("assigned", "Driver assigned successfully"),
            Self::Accept { .. } => ("accepted", "Booking accepted successfully"),
            Self::Cancel { .. } => ("cancelled", "Booking cancelled successfully"),
            Self::Complete { .. } => ("completed", "Ride completed successfully"),
            Self::ExpireOffer { give_up: false, .. } => ("pending", "Offer expired"),
            Self::ExpireOffer { give_up: true, .. } => ("cancelled", "Offer expired"),
        }
    }
}

/// What travels to the owner node: the action, the request's Idempotency-Key if it had one, and
/// the caller's token subject for the audit trail (the owner trusts it as it trusts the action:
/// the call is signed by a node that verified the token). A call without `actor` (from a build
/// before it was recorded) is recorded without one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardedCall {
    pub action: BookingOp,
    pub idempotency: Option<IdempotencyKey>,
    #[serde(default)]
    pub actor: Option<String>,
}

/// How many times one request may be passed from node to node. One forward is the normal case;
/// a second covers an owner that handed the booking on while the request was travelling.
pub const MAX_HOPS: u8 = 2;

/// How many times a request fenced off mid-write is routed again.
const MAX_REROUTES: usize = 3;

/// First step of the lease watch's backoff, and its ceiling: a waiter notices a released lease
/// within a fifth of a second, whatever the TTL.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// Runs `op` on the booking's owner node and answers what it answered. `hops`: how many nodes
/// passed the request on already; `budget`: what is left of its deadline.
pub async fn route(
    state: &AppState,
    id: BookingId,
    call: ForwardedCall,
    request_id: RequestId,
    hops: u8,
    budget: Duration,
) -> Result<HttpResponse, ApiError> {
    let op = &call.action;
    let idem = call.idempotency.as_ref();
    if idem.is_some() {
        // Answered before (on any node): the stored answer, without routing anything.
        let mut conn = pool::conn(&state.deps.pool).await?;
        if let Some(answer) = super::idempotent::replay(&mut conn, idem).await? {
            return Ok(answer);
        }
    }
    let deadline = Instant::now() + budget;
    let key = booking_key(&state.deps.key_prefix, id);
    let mut reroutes = 0;
    // Set once a forwarded call may have been delivered without its answer reaching us: the
    // action may already have taken effect on the old owner.
    let mut maybe_applied = false;
    loop {
        if Instant::now() >= deadline {
            return Err(ApiError::Unavailable(BookingError::DeadlinePassed.into()));
        }
        // Before every attempt that may start an actor here (the first, or one after the
        // owner moved or this node's actor stepped down).
        if op.names_a_party() && !state.registry.is_live(id) {
            screen(state, id, op).await?;
        }
        let owner = match perform(state, id, &call, &request_id, deadline).await {
            Ok(response) => return Ok(response),
            // A copy of this request with the same key was answered meanwhile (its change is
            // why this one was refused, or it committed first): send its answer.
            Err(error @ (BookingError::Refused { .. } | BookingError::KeyTaken))
                if idem.is_some() =>
            {
                let mut conn = pool::conn(&state.deps.pool).await?;
                if let Some(answer) = super::idempotent::replay(&mut conn, idem).await? {
                    return Ok(answer);
                }
                return Ok(refusal(state, error));
            }
            Err(BookingError::Elsewhere(owner)) => owner,
            // No lease to be had yet (Redis went silent, and PostgreSQL grants only once every
            // Redis lease has expired): ask again then if the deadline allows; otherwise the
            // client gets 503 with that wait as Retry-After. Other store failures answer 503 at
            // once: waiting on a store that is down would only hold the connection.
            Err(BookingError::LeaseUnavailable {
                retry_after,
                source: LeaseError::NotYet(_),
            }) if Instant::now() + retry_after < deadline => {
                tokio::time::sleep(retry_after.max(Duration::from_millis(1))).await;
                continue;
            }
            Err(BookingError::Fenced) if reroutes < MAX_REROUTES => {
                reroutes += 1;
                continue;
            }
            // Only a state conflict can be our own earlier copy's doing; an identity refusal is
            // answered as it is.
            Err(BookingError::Refused { error, booking })
                if maybe_applied && !error.is_forbidden() =>
            {
                // The refusal may be our own earlier copy's doing: if the trail shows this
                // request made the change, answer as the first copy would have.
                if let Some(done) = applied_earlier(state, id, op, &request_id, &booking).await {
                    return Ok(done);
                }
                return Ok(refusal(state, BookingError::Refused { error, booking }));
            }
            Err(error) => return Ok(refusal(state, error)),
        };
        if owner.value.is_empty() {
            // Released between our SET and our GET: simply try again.
            continue;
        }
        let remote = owner.node != state.deps.node_id.0;
        if remote && hops >= MAX_HOPS {
            return Err(ApiError::LeaseUnavailable {
                retry_after: Duration::from_secs(1),
            });
        }
        let address = match (remote, &owner.address) {
            (false, _) => None,
            (true, Some(address)) => Some(address.clone()),
            (true, None) => state.forwarder.address_of(&owner.node).await,
        };
        let waited = forward_or_wait(
            state,
            Forward {
                id,
                call: &call,
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
            Waited::Answered(relayed) if relayed.status == 401 => {
                // Our own peer refused our signature: a configuration fault (cluster.secret
                // differs between nodes, or clocks drifted apart), not the client's.
                log::error!(
                    "peer refused our signed call node={} owner={} req={} body={}",
                    state.deps.node_id,
                    owner.node,
                    request_id.as_str(),
                    String::from_utf8_lossy(&relayed.body)
                );
                return Err(ApiError::Unavailable(anyhow::anyhow!(
                    "node {} refused this node's signature",
                    owner.node
                )));
            }
            Waited::Answered(relayed) => return Ok(relay(relayed)),
            Waited::LeaseMoved { maybe_delivered } => maybe_applied |= maybe_delivered,
            Waited::Deadline { owner_silent } => {
                // Waiting for an expiry: it comes within the lease's remaining time. Waiting
                // for a live owner's answer: try again shortly.
                let retry_after = match owner_silent {
                    true => owner.remaining.max(Duration::from_secs(1)),
                    false => Duration::from_secs(1),
                };
                return Err(ApiError::LeaseUnavailable { retry_after });
            }
        }
    }
}

/// Refuses a caller who is no party to the booking (or a booking that does not exist) from a
/// plain read, before an actor starts for it: starting one takes the booking's lease and bumps
/// its fencing token, which a stranger sweeping ids must not be able to cause. Runs only when
/// no actor is live here; a live actor already holds the lease and checks the same rule
/// ([`authorize`]) against its own state. A caller this lets through is checked again by the
/// actor, so a change committed between the read and the actor is never missed.
async fn screen(state: &AppState, id: BookingId, op: &BookingOp) -> Result<(), ApiError> {
    let mut conn = pool::conn(&state.deps.pool).await?;
    let booking = bookings::find(&mut conn, id)
        .await?
        .ok_or(BookingError::NotFound(id))?;
    authorize(booking.state()?, op.command()).map_err(|error| {
        ApiError::from(BookingError::Refused {
            error,
            booking: Box::new(booking),
        })
    })
}

/// A refusal by this node's actor, answered like a success: it says which node it ran on.
fn refusal(state: &AppState, error: BookingError) -> HttpResponse {
    let mut response = ApiError::from(error).error_response();
    served_by(&mut response, &state.deps.node_id.0);
    response
}

/// The success answer for `op`, if the trail shows `request_id` made its change: a copy of the
/// request forwarded earlier took effect, but its answer was lost with its node.
async fn applied_earlier(
    state: &AppState,
    id: BookingId,
    op: &BookingOp,
    request_id: &RequestId,
    booking: &Booking,
) -> Option<HttpResponse> {
    let (target, message) = op.outcome();
    let mut conn = pool::conn(&state.deps.pool).await.ok()?;
    let (_, writer) = bookings::changes_by(&mut conn, id, request_id.as_str())
        .await
        .ok()?
        .into_iter()
        .find(|(status, _)| status == target)?;
    let mut response = match op {
        BookingOp::Assign { .. } => {
            let driver = drivers::find(&mut conn, DriverId(booking.driver_id?))
                .await
                .ok()??;
            respond(
                StatusCode::OK,
                message,
                json!({ "booking": booking, "driver": driver }),
            )
        }
        _ => respond(StatusCode::OK, message, booking),
    };
    served_by(&mut response, &writer);
    Some(response)
}

/// Offers the call's action to this node's actor for the booking, to be answered before
/// `deadline`.
async fn perform(
    state: &AppState,
    id: BookingId,
    call: &ForwardedCall,
    request_id: &RequestId,
    deadline: Instant,
) -> Result<HttpResponse, BookingError> {
    let registry = &state.registry;
    let (_, message) = call.action.outcome();
    let meta = RequestMeta {
        request_id: request_id.clone(),
        actor: call.actor.clone(),
        sent_at: Instant::now(),
        deadline,
        idempotency: call.idempotency.clone().map(|key| (key, message)),
    };
    let mut response = match call.action.clone() {
        BookingOp::Assign { by } => {
            let (booking, driver) = registry.send(id, Assign { by, meta }, deadline).await?;
            respond(
                StatusCode::OK,
                message,
                json!({ "booking": booking, "driver": driver }),
            )
        }
        BookingOp::Accept {
            driver_id,
            operator,
        } => {
            let msg = Accept {
                driver_id,
                operator,
                meta,
            };
            let booking = registry.send(id, msg, deadline).await?;
            respond(StatusCode::OK, message, booking)
        }
        BookingOp::Cancel { by, reason } => {
            let msg = Cancel { by, reason, meta };
            let booking = registry.send(id, msg, deadline).await?;
            respond(StatusCode::OK, message, booking)
        }
        BookingOp::Complete {
            driver_id,
            operator,
            actual_fare_cents,
        } => {
            let msg = Complete {
                driver_id,
                operator,
                actual_fare: Fare::from_cents(actual_fare_cents),
                meta,
            };
            let booking = registry.send(id, msg, deadline).await?;
            respond(StatusCode::OK, message, booking)
        }
        BookingOp::ExpireOffer {
            driver_id,
            assigned_at,
            give_up,
        } => {
            let msg = ExpireOffer {
                driver_id,
                assigned_at,
                give_up,
                meta,
            };
            let booking = registry.send(id, msg, deadline).await?;
            respond(StatusCode::OK, message, booking)
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
    call: &'a ForwardedCall,
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
    /// The lease left the owner. `maybe_delivered`: a call to it was sent and not answered.
    LeaseMoved {
        maybe_delivered: bool,
    },
    /// `owner_silent`: no call was in flight any more (the owner could not be reached).
    Deadline {
        owner_silent: bool,
    },
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
        // Serializing plain ids and strings cannot fail; an empty body would be refused.
        let body = serde_json::to_vec(call.call).unwrap_or_default();
        forwarder
            .send(
                &call.owner.node,
                address,
                call.id,
                body,
                call.request_id,
                call.hops,
                budget,
            )
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
        call.owner.value.clone(),
        first_check,
    );
    let expiry = tokio::time::sleep_until(call.deadline.into());
    tokio::pin!(forward, watch, expiry);
    let mut in_flight = true;
    // Whether a call went out that may have reached the owner without its answer reaching us.
    let mut maybe_delivered = false;
    loop {
        tokio::select! {
            answer = &mut forward, if in_flight => match answer {
                Ok(relayed) => return Waited::Answered(relayed),
                Err(error) => {
                    in_flight = false;
                    maybe_delivered = forwarding && !error.never_sent();
                    // No answer is coming: watch for the lease to move from now on, not from
                    // its expiry (a node shutting down releases its leases any moment now).
                    watch.set(lease_moves(&state.leases, call.key, call.owner.value.clone(), Duration::ZERO));
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
            holder = &mut watch => {
                // Re-acquired by the node we are waiting for (it passivated and took the
                // booking again): its answer is still coming.
                if let Some(now) = holder.filter(|h| in_flight && h.node == call.owner.node) {
                    watch.set(lease_moves(&state.leases, call.key, now.value, now.remaining));
                    continue;
                }
                return Waited::LeaseMoved {
                    maybe_delivered: maybe_delivered || (in_flight && forwarding),
                };
            }
            () = &mut expiry => return Waited::Deadline { owner_silent: !in_flight },
        }
    }
}

/// Resolves once `key` no longer carries `value` (released, expired or taken over), with its
/// new holder if any. Polls after `first_check`, then with exponential backoff and full jitter
/// (at most [`MAX_BACKOFF`]), each sleep capped by the key's remaining TTL so an expiry is
/// noticed within a poll of happening. A Redis error counts as "no news": the caller's deadline
/// bounds the wait.
async fn lease_moves(
    leases: &Leases,
    key: &str,
    value: String,
    first_check: Duration,
) -> Option<LeaseOwner> {
    tokio::time::sleep(first_check).await;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let remaining = match leases.holder(key).await {
            Ok(Some(now)) if now.value == value => now.remaining,
            Ok(other) => return other,
            Err(_) => Duration::ZERO,
        };
        let jitter = rand::rng().random_range(Duration::ZERO..=backoff);
        let wait = if remaining.is_zero() {
            jitter
        } else {
            jitter.min(remaining + Duration::from_millis(1))
        };
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
