//! Where a booking action runs: on the node whose booking actor holds the booking's lease.
//!
//! [`Router::route`] first offers the action to this node's actor. If the lease is free, that actor
//! takes it and the action runs here. If another node holds it, the action is forwarded to that
//! node's internal endpoint and its answer relayed as it is. If the owner does not answer (down,
//! paused, unreachable), the lease is watched until it moves (the owner released it, or it expired
//! because nobody renewed it), polling with exponential backoff and full jitter, never sleeping
//! past the key's remaining TTL; then the action is offered here again, so this node takes over. A
//! request that runs out of its deadline first fails with a `Retry-After` wait; `http` renders the
//! typed outcome ([`Routed`], [`RouteError`]). When no new connection reaches the owner (its
//! forward's connection failed, or a forward sent on a pooled connection has gone unanswered and
//! a fresh connection fails too) and its lease will outlast the request (renewed since: the owner
//! is alive on the other side of a partition; or not expiring before the deadline), waiting
//! cannot help: the request is refused at once (503 `lease_unavailable`) for the client to try
//! another node.
//!
//! An action is only ever sent to a second owner after the lease moved away from the first:
//! the new owner's activation bumps the fencing token, so whatever the silent owner still tries
//! to write is refused by PostgreSQL. A write refused that way (`Fenced`) is routed again from
//! the start, never retried as the same write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::forward::{self, ForwardError, Forwarder, Relayed};
use super::lease_watch::{lease_moves, LeaseNews};
use crate::actors::messages::{Act, Done, RequestMeta};
use crate::actors::registry::BookingRegistry;
use crate::actors::{BookingError, SharedDeps};
use crate::domain::action::Action;
use crate::domain::booking::authorize;
use crate::domain::ids::{BookingId, DriverId, RequestId};
use crate::lease::failover::Leases;
use crate::lease::{booking_key, LeaseError, LeaseOwner};
use crate::storage::idempotency::{self, IdempotencyKey, Seen, Stored};
use crate::storage::models::Booking;
use crate::storage::{bookings, drivers, pool, StoreError};

/// The newest forwarded-call format this build reads. A build writes the lowest version that
/// carries a call's meaning, so nodes one build behind keep taking every call they can honour
/// (docs/architecture.md, "Versioned calls").
pub(crate) const CALL_VERSION: u16 = 1;

/// What travels to the owner node: the action, the request's Idempotency-Key if it had one, and
/// the caller's token subject for the audit trail (the owner trusts it as it trusts the action:
/// the call is signed by a node that verified the token). A call without `actor` (from a build
/// before it was recorded) is recorded without one. Fields a receiver does not know are ignored.
///
/// `A` is the action as this build holds it; the receiving side first reads it as
/// `cluster::inbound::Offered`, which also stands for an action this build does not know.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ForwardedCall<A = Action> {
    /// The call's format. Version 1 is not written (and an absent `v` reads as 1): builds from
    /// before versioning refuse any field they do not know, and take these calls.
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    pub v: u16,
    pub action: A,
    pub idempotency: Option<IdempotencyKey>,
    #[serde(default)]
    pub actor: Option<String>,
}

impl ForwardedCall {
    /// A call in the format every node of this build and the one before reads.
    pub(crate) fn new(
        action: Action,
        idempotency: Option<IdempotencyKey>,
        actor: Option<String>,
    ) -> Self {
        Self {
            v: first_version(),
            action,
            idempotency,
            actor,
        }
    }
}

fn first_version() -> u16 {
    1
}

fn is_first_version(v: &u16) -> bool {
    *v == 1
}

/// How a routed action was answered.
pub(crate) enum Routed {
    /// A booking actor made the change: this node's, or (`served_by`) an earlier owner whose
    /// answer was lost, as the audit trail shows.
    Done {
        done: Box<Done>,
        message: &'static str,
        served_by: String,
    },
    /// This node's actor refused the action.
    Refused {
        error: BookingError,
        served_by: String,
    },
    /// The owner node's answer, to be relayed as it is.
    Relayed(Relayed),
    /// The request's Idempotency-Key was answered before (on any node): that answer.
    Replayed(Stored),
}

impl Routed {
    /// Whether the action took effect (or had, for a replayed or relayed success).
    pub fn succeeded(&self) -> bool {
        match self {
            Self::Done { .. } => true,
            Self::Refused { .. } => false,
            Self::Relayed(relayed) => (200..300).contains(&relayed.status),
            Self::Replayed(stored) => (200..300).contains(&stored.status),
        }
    }

    /// For a log line: the refusal's code, or the status of a relayed or stored answer.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Done { .. } => "ok".to_owned(),
            Self::Refused { error, .. } => error.code().to_owned(),
            Self::Relayed(relayed) => relayed.status.to_string(),
            Self::Replayed(stored) => stored.status.to_string(),
        }
    }
}

/// Why an action got no answer from any booking actor.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RouteError {
    /// Refused before any actor ran (a stranger, a missing booking, the deadline), or a store
    /// failure.
    #[error(transparent)]
    Booking(#[from] BookingError),
    /// The Idempotency-Key was used for a different request.
    #[error("idempotency key reused for a different request")]
    KeyReused,
    /// No owner answered in time; worth asking again after `retry_after`.
    #[error("no owner answered in time")]
    LeaseUnavailable { retry_after: Duration },
    /// The owner node refused this node's signature: a configuration fault (cluster.secret
    /// differs between nodes, or clocks drifted apart), not the client's.
    #[error("node {0} refused this node's signature")]
    PeerRefused(String),
}

impl From<StoreError> for RouteError {
    fn from(error: StoreError) -> Self {
        Self::Booking(error.into())
    }
}

impl From<diesel::result::Error> for RouteError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Booking(error.into())
    }
}

/// How many times one request may be passed from node to node. One forward is the normal case;
/// a second covers an owner that handed the booking on while the request was travelling.
pub(crate) const MAX_HOPS: u8 = 2;

/// How many times a request fenced off mid-write is routed again.
const MAX_REROUTES: usize = 3;

/// How much later than first read a lease must now expire to count as renewed: more than the
/// time between reading it and starting to watch, far less than a renewal adds (a heartbeat).
const RENEWAL_SLACK: Duration = Duration::from_millis(100);
/// How long a forward goes unanswered before a fresh connection to its owner is tried, and
/// between such tries. An owner answers in milliseconds; a connection that went silent (a
/// partition drops its packets) never says so.
const REACH_EVERY: Duration = Duration::from_millis(500);

/// Runs booking actions on the node that owns the booking. Cheap to share: one per node.
pub(crate) struct Router {
    registry: Arc<BookingRegistry>,
    deps: SharedDeps,
    leases: Leases,
    forwarder: Forwarder,
}

impl Router {
    pub fn new(
        registry: Arc<BookingRegistry>,
        deps: SharedDeps,
        leases: Leases,
        forwarder: Forwarder,
    ) -> Self {
        Self {
            registry,
            deps,
            leases,
            forwarder,
        }
    }

    pub(crate) fn deps(&self) -> &SharedDeps {
        &self.deps
    }

    pub(crate) fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// Runs the call's action on the booking's owner node and returns what it answered.
    /// `hops`: how many nodes passed the request on already; `budget`: what is left of its
    /// deadline.
    pub async fn route(
        &self,
        id: BookingId,
        call: ForwardedCall,
        request_id: RequestId,
        hops: u8,
        budget: Duration,
    ) -> Result<Routed, RouteError> {
        let action = &call.action;
        let idem = call.idempotency.as_ref();
        if let Some(stored) = self.replay(idem).await? {
            // Answered before (on any node): the stored answer, without routing anything.
            return Ok(Routed::Replayed(stored));
        }
        let deadline = Instant::now() + budget;
        let key = booking_key(&self.deps.key_prefix, id);
        let mut reroutes = 0;
        // Set once a forwarded call may have been delivered without its answer reaching us: the
        // action may already have taken effect on the old owner.
        let mut maybe_applied = false;
        loop {
            if Instant::now() >= deadline {
                return Err(BookingError::DeadlinePassed.into());
            }
            // Before every attempt that may start an actor here (the first, or one after the
            // owner moved or this node's actor stepped down).
            if action.names_a_party() && !self.registry.is_live(id) {
                self.screen(id, action).await?;
            }
            let owner = match self.perform(id, &call, &request_id, deadline).await {
                Ok(routed) => return Ok(routed),
                // A copy of this request with the same key was answered meanwhile (its change
                // is why this one was refused, or it committed first): send its answer.
                Err(error @ (BookingError::Refused { .. } | BookingError::KeyTaken))
                    if idem.is_some() =>
                {
                    if let Some(stored) = self.replay(idem).await? {
                        return Ok(Routed::Replayed(stored));
                    }
                    return Ok(self.refused(error));
                }
                Err(BookingError::Elsewhere(owner)) => owner,
                // No lease to be had yet (Redis went silent, and PostgreSQL grants only once
                // every Redis lease has expired): ask again then if the deadline allows;
                // otherwise the client gets 503 with that wait as Retry-After. Other store
                // failures answer 503 at once: waiting on a store that is down would only hold
                // the connection.
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
                // Only a state conflict can be our own earlier copy's doing; an identity
                // refusal is answered as it is.
                Err(BookingError::Refused { error, booking })
                    if maybe_applied && !error.is_forbidden() =>
                {
                    // If the trail shows this request made the change, answer as the first
                    // copy would have.
                    if let Some(done) = self
                        .applied_earlier(id, action, &request_id, &booking)
                        .await
                    {
                        return Ok(done);
                    }
                    return Ok(self.refused(BookingError::Refused { error, booking }));
                }
                Err(error) => return Ok(self.refused(error)),
            };
            if owner.value.is_empty() {
                // Released between our SET and our GET: simply try again.
                continue;
            }
            let remote = owner.node != self.deps.node_id.0;
            if remote && hops >= MAX_HOPS {
                return Err(RouteError::LeaseUnavailable {
                    retry_after: Duration::from_secs(1),
                });
            }
            let address = match (remote, &owner.address) {
                (false, _) => None,
                (true, Some(address)) => Some(address.clone()),
                (true, None) => self.forwarder.address_of(&owner.node).await,
            };
            let waited = self
                .forward_or_wait(Forward {
                    id,
                    call: &call,
                    request_id: &request_id,
                    hops: hops + 1,
                    key: &key,
                    owner: &owner,
                    address,
                    deadline,
                })
                .await;
            match waited {
                Waited::Answered(relayed) if relayed.status == 401 => {
                    log::error!(
                        "peer refused our signed call node={} owner={} req={} body={}",
                        self.deps.node_id,
                        owner.node,
                        request_id.as_str(),
                        String::from_utf8_lossy(&relayed.body)
                    );
                    return Err(RouteError::PeerRefused(owner.node));
                }
                Waited::Answered(relayed) => return Ok(Routed::Relayed(relayed)),
                Waited::LeaseMoved { maybe_delivered } => maybe_applied |= maybe_delivered,
                Waited::OwnerUnreachable { maybe_delivered } => {
                    self.forwarder.metrics.unreachable.inc();
                    log::warn!(
                        "owner unreachable, lease kept node={} owner={} booking={id} req={} maybe_delivered={maybe_delivered}",
                        self.deps.node_id,
                        owner.node,
                        request_id.as_str()
                    );
                    return Err(RouteError::LeaseUnavailable {
                        retry_after: Duration::from_secs(1),
                    });
                }
                Waited::Deadline { owner_silent } => {
                    // Waiting for an expiry: it comes within the lease's remaining time.
                    // Waiting for a live owner's answer: try again shortly.
                    let retry_after = match owner_silent {
                        true => owner.remaining.max(Duration::from_secs(1)),
                        false => Duration::from_secs(1),
                    };
                    return Err(RouteError::LeaseUnavailable { retry_after });
                }
            }
        }
    }

    /// The stored answer of a request with this key, if it was answered before.
    async fn replay(&self, key: Option<&IdempotencyKey>) -> Result<Option<Stored>, RouteError> {
        let Some(key) = key else {
            return Ok(None);
        };
        let mut conn = pool::conn(&self.deps.pool).await?;
        match idempotency::lookup(&mut conn, key).await? {
            Seen::New => Ok(None),
            Seen::Repeat(stored) => Ok(Some(stored)),
            Seen::Reused => Err(RouteError::KeyReused),
        }
    }

    /// Refuses a caller who is no party to the booking (or a booking that does not exist) from
    /// a plain read, before an actor starts for it: starting one takes the booking's lease and
    /// bumps its fencing token, which a stranger sweeping ids must not be able to cause. Runs
    /// only when no actor is live here; a live actor already holds the lease and checks the same
    /// rule ([`authorize`]) against its own state. A caller this lets through is checked again
    /// by the actor, so a change committed between the read and the actor is never missed.
    async fn screen(&self, id: BookingId, action: &Action) -> Result<(), RouteError> {
        let mut conn = pool::conn(&self.deps.pool).await?;
        let booking = bookings::find(&mut conn, id)
            .await?
            .ok_or(BookingError::NotFound(id))?;
        authorize(booking.state(), action).map_err(|error| {
            RouteError::Booking(BookingError::Refused {
                error,
                booking: Box::new(booking),
            })
        })
    }

    /// A refusal by this node's actor, answered like a success: it says which node it ran on.
    fn refused(&self, error: BookingError) -> Routed {
        Routed::Refused {
            error,
            served_by: self.deps.node_id.0.clone(),
        }
    }

    /// The success answer for `action`, if the trail shows `request_id` made its change: a copy
    /// of the request forwarded earlier took effect, but its answer was lost with its node.
    async fn applied_earlier(
        &self,
        id: BookingId,
        action: &Action,
        request_id: &RequestId,
        booking: &Booking,
    ) -> Option<Routed> {
        let target = action.target();
        let mut conn = pool::conn(&self.deps.pool).await.ok()?;
        let (_, writer) = bookings::changes_by(&mut conn, id, request_id.as_str())
            .await
            .ok()?
            .into_iter()
            .find(|(status, _)| *status == target)?;
        let driver = match action {
            Action::Assign { .. } => Some(
                drivers::find(&mut conn, DriverId(booking.driver_id?))
                    .await
                    .ok()??,
            ),
            _ => None,
        };
        Some(Routed::Done {
            done: Box::new(Done {
                booking: booking.clone(),
                driver,
            }),
            message: action.success_message(),
            served_by: writer,
        })
    }

    /// Offers the call's action to this node's actor for the booking, to be answered before
    /// `deadline`.
    async fn perform(
        &self,
        id: BookingId,
        call: &ForwardedCall,
        request_id: &RequestId,
        deadline: Instant,
    ) -> Result<Routed, BookingError> {
        let message = call.action.success_message();
        let meta = RequestMeta {
            request_id: request_id.clone(),
            actor: call.actor.clone(),
            sent_at: Instant::now(),
            deadline,
            idempotency: call.idempotency.clone().map(|key| (key, message)),
        };
        let act = Act {
            action: call.action.clone(),
            meta,
        };
        let done = self.registry.send(id, act, deadline).await?;
        Ok(Routed::Done {
            done: Box::new(done),
            message,
            served_by: self.deps.node_id.0.clone(),
        })
    }

    /// Forwards to the owner (if it has an address) while watching its lease. Whichever comes
    /// first: the owner's answer, the lease moving, or the deadline.
    async fn forward_or_wait(&self, call: Forward<'_>) -> Waited {
        let forwarder = &self.forwarder;
        let budget = call.deadline.saturating_duration_since(Instant::now());
        // When the owner's lease would expire if nobody renewed it (read just before this).
        let expiry = Instant::now() + call.owner.remaining;
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
            &self.leases,
            call.key,
            call.owner.value.clone(),
            first_check,
            None,
        );
        // A forward on a pooled connection that went silent waits for its answer; whether the
        // owner is still reachable, only a fresh connection tells.
        let reach = async {
            match call.address.as_deref() {
                Some(address) => loop {
                    tokio::time::sleep(REACH_EVERY).await;
                    if !forward::reaches(address).await {
                        break;
                    }
                },
                None => std::future::pending().await,
            }
        };
        let out_of_time = tokio::time::sleep_until(call.deadline.into());
        tokio::pin!(forward, watch, reach, out_of_time);
        let mut in_flight = true;
        let mut reachable = true;
        // Whether a call went out that may have reached the owner without its answer reaching us.
        let mut maybe_delivered = false;
        // Once the owner is out of reach: the lease still held past this instant means waiting
        // cannot help (renewed since it was read, or outlasting the deadline).
        let kept_past = (expiry + RENEWAL_SLACK).min(call.deadline);
        loop {
            tokio::select! {
                answer = &mut forward, if in_flight => match answer {
                    Ok(relayed) => return Waited::Answered(relayed),
                    Err(error) => {
                        in_flight = false;
                        maybe_delivered = forwarding && !error.never_sent();
                        // No answer is coming: watch for the lease to move from now on, not from
                        // its expiry (a node shutting down releases its leases any moment now).
                        reachable &= !error.unreachable();
                        let kept = (!reachable).then_some(kept_past);
                        watch.set(lease_moves(&self.leases, call.key, call.owner.value.clone(), Duration::ZERO, kept));
                        if forwarding {
                            log::warn!(
                                "forward unanswered node={} owner={} booking={} req={} error={error}",
                                self.deps.node_id,
                                call.owner.node,
                                call.id,
                                call.request_id.as_str()
                            );
                            forwarder.forget(&call.owner.node);
                        }
                    }
                },
                () = &mut reach, if in_flight && reachable => {
                    reachable = false;
                    watch.set(lease_moves(&self.leases, call.key, call.owner.value.clone(), Duration::ZERO, Some(kept_past)));
                }
                news = &mut watch => {
                    let holder = match news {
                        LeaseNews::Moved(holder) => holder,
                        LeaseNews::Kept => {
                            return Waited::OwnerUnreachable { maybe_delivered: maybe_delivered || in_flight };
                        }
                    };
                    // Re-acquired by the node we are waiting for (it passivated and took the
                    // booking again): its answer is still coming.
                    if let Some(now) = holder.filter(|h| in_flight && reachable && h.node == call.owner.node) {
                        watch.set(lease_moves(&self.leases, call.key, now.value, now.remaining, None));
                        continue;
                    }
                    return Waited::LeaseMoved {
                        maybe_delivered: maybe_delivered || (in_flight && forwarding),
                    };
                }
                () = &mut out_of_time => return Waited::Deadline { owner_silent: !in_flight },
            }
        }
    }
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
    /// No new connection reaches the owner, and its lease will outlast the request: renewed
    /// since it was read (the owner is alive, on the other side of a partition) or not expiring
    /// before the deadline. `maybe_delivered`: a call to it was sent and not answered.
    OwnerUnreachable {
        maybe_delivered: bool,
    },
    /// `owner_silent`: no call was in flight any more (the owner could not be reached).
    Deadline {
        owner_silent: bool,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_version_1_call_is_written_without_its_version() {
        let call = ForwardedCall::new(Action::Assign { by: None }, None, Some("ops:a".to_owned()));

        let wire = serde_json::to_value(&call).unwrap();

        assert_eq!(
            wire,
            json!({
                "action": { "op": "assign", "by": null }, "idempotency": null, "actor": "ops:a"
            })
        );
    }

    #[test]
    fn a_call_without_a_version_reads_as_version_1() {
        let wire = json!({ "action": { "op": "assign", "by": null }, "idempotency": null });

        let call: ForwardedCall = serde_json::from_value(wire).unwrap();

        assert_eq!(call.v, 1);
        assert_eq!(call.actor, None);
    }

    #[test]
    fn a_later_version_is_written() {
        let mut call = ForwardedCall::new(Action::Assign { by: None }, None, None);
        call.v = 2;

        let wire = serde_json::to_value(&call).unwrap();

        assert_eq!(wire["v"], 2);
    }
}
