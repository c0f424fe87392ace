//! `BookingActor`: the single writer of one booking inside this node.
//!
//! On start it acquires the booking's lease from the [`LeaseManager`], then bumps the fencing token
//! in PostgreSQL and keeps the row in memory; every message is checked against that state with the
//! domain's `apply` and written conditionally on the token. It stops after `booking.idle_stop_ms`
//! without messages (told by the registry's idle sweep), at a terminal state, when its lease is
//! lost, or when a write finds its token stale; it releases its lease on `Passivate` or in
//! `stopped()`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures::FutureExt;

use super::activation::{activate, adopt, Failure};
use super::messages::{Act, Done, IdleStop, Passivate, RequestMeta};
use super::roster::Roster;
use super::search::{assign_nearest, return_to_index};
use super::{BookingError, SharedDeps};
use crate::domain::action::Action;
use crate::domain::booking::{apply, BookingStatus, Transition, TransitionError};
use crate::domain::ids::{BookingId, DriverId};
use crate::domain::values::Fare;
use crate::lease::manager::{Grant, LeaseLost, Release};
use crate::storage::bookings as store;
use crate::storage::models::Booking;
use crate::storage::pool;
use crate::storage::writer::{Change, Outcome};
use crate::telemetry::{self, ActorLine};

/// What a transition writes besides its new status, and what it asks of the booking's row
/// beyond the state machine's rules ([`Write::admits`]).
enum Write {
    /// Accept, or cancel with its reason.
    Change { cancellation_reason: Option<String> },
    /// A completion with its fare; `max_ratio`: how far above the estimate it may be (`None`
    /// for an operator, who may set any fare).
    Complete { fare: Fare, max_ratio: Option<f64> },
    /// An expired offer taken back: only the offer made at `assigned_at`. The driver is cleared
    /// (or kept on a cancelled booking).
    TakeBackOffer {
        assigned_at: chrono::DateTime<chrono::Utc>,
    },
}

impl Write {
    /// Checked on a row the state machine already allowed the change on, so a change it refuses
    /// answers as it always did.
    fn admits(&self, booking: &Booking) -> Result<(), BookingError> {
        match self {
            Self::Change { .. }
            | Self::Complete {
                max_ratio: None, ..
            } => Ok(()),
            Self::Complete {
                fare,
                max_ratio: Some(ratio),
            } => Ok(fare.within(booking.estimated(), *ratio, "actual_fare")?),
            // Another offer than the one the sweep judged old (the first was taken back and a
            // new one made since, maybe to the same driver): nothing to take back.
            Self::TakeBackOffer { assigned_at } if booking.assigned_at != Some(*assigned_at) => {
                Err(BookingError::Refused {
                    error: TransitionError::NotAssigned(booking.status),
                    booking: Box::new(booking.clone()),
                })
            }
            Self::TakeBackOffer { .. } => Ok(()),
        }
    }

    /// The change for the writer: `booking` moves by `transition`, under `token`.
    fn into_change(
        self,
        booking: &Booking,
        token: i64,
        transition: Transition,
        meta: &RequestMeta,
    ) -> Change {
        let mut change = Change {
            booking_id: booking.id,
            token,
            from: transition.from,
            to: transition.to,
            actual_fare: None,
            cancellation_reason: None,
            release_driver: transition.release_driver,
            offer: None,
            request_id: meta.request_id.as_str().to_owned(),
            actor: meta.actor.clone(),
            deadline: meta.deadline,
            answer: meta.answer(|message, row, _| crate::envelope::success_body(message, row)),
        };
        match self {
            Self::Change {
                cancellation_reason,
            } => change.cancellation_reason = cancellation_reason,
            Self::Complete { fare, .. } => change.actual_fare = Some(fare),
            Self::TakeBackOffer { assigned_at } => {
                change.offer = Some(assigned_at);
                change.release_driver = booking.driver_id.map(DriverId);
                change.cancellation_reason = (transition.to == BookingStatus::Cancelled)
                    .then(|| store::NO_DRIVER_ACCEPTED.to_owned());
            }
        }
        change
    }
}

enum Phase {
    /// Lease and fencing token not yet obtained; `started()` holds the mailbox until this ends.
    Activating,
    Ready {
        booking: Box<Booking>,
        /// Released on passivation or in `stopped()`; the lease manager renews it until then.
        /// `None` for a terminal booking: it can never change, so nobody needs to own it.
        lease: Option<Grant>,
    },
    Failed(Failure),
}

pub(crate) struct BookingActor {
    id: BookingId,
    deps: SharedDeps,
    roster: Arc<Roster<Self>>,
    /// Tells this actor's registry entry from a successor's.
    generation: u64,
    phase: Phase,
    /// When this actor last had a message that keeps it alive, in the registry's clock
    /// ([`Roster::now_ms`]); the registry's idle sweep reads it (one sweep per registry
    /// instead of a timer per actor).
    kept: Arc<AtomicU64>,
    /// A moment at which this actor's copy of the booking was known to be the one in
    /// PostgreSQL: when its activation began (the token bump happened after), when its last
    /// successful write began, or when its last token check was sent. See [`Self::refuse`].
    confirmed_at: Option<Instant>,
    /// The row of a booking this node has just created with its own token: the actor takes the
    /// lease and owns the booking without bumping the token ([`adopt`]).
    created: Option<Box<Booking>>,
}

impl BookingActor {
    pub fn new(
        id: BookingId,
        deps: SharedDeps,
        roster: Arc<Roster<Self>>,
        generation: u64,
        kept: Arc<AtomicU64>,
    ) -> Self {
        Self {
            id,
            deps,
            roster,
            generation,
            phase: Phase::Activating,
            kept,
            confirmed_at: None,
            created: None,
        }
    }

    /// An actor for a booking this node has just inserted, with the token it was inserted with.
    pub fn created(
        booking: Booking,
        deps: SharedDeps,
        roster: Arc<Roster<Self>>,
        generation: u64,
        kept: Arc<AtomicU64>,
    ) -> Self {
        let id = BookingId(booking.id);
        Self {
            created: Some(Box::new(booking)),
            ..Self::new(id, deps, roster, generation, kept)
        }
    }

    /// The release of this actor's lease, if it holds one; afterwards it holds none.
    fn take_lease(&mut self) -> Option<Release> {
        match &mut self.phase {
            Phase::Ready { lease, .. } => lease.take().map(|grant| Release {
                key: grant.key,
                value: grant.value,
            }),
            _ => None,
        }
    }

    /// Re-arms the idle stop for a message `plan` judged, unless it came from a stranger: a
    /// caller refused as no party to the booking must not keep its actor, and lease, alive.
    fn keep_alive_for<T>(&self, planned: &Result<T, BookingError>) {
        let stranger =
            matches!(planned, Err(BookingError::Refused { error, .. }) if error.is_forbidden());
        if !stranger {
            self.keep_alive();
        }
    }

    /// Restarts the idle clock: the actor stops `booking.idle_stop_ms` after this unless
    /// another message keeps it alive (the registry's sweep sends [`IdleStop`]).
    fn keep_alive(&self) {
        self.kept.store(self.roster.now_ms(), Ordering::Relaxed);
    }

    /// The booking and token to act on, or the reason this actor cannot act. A lease whose
    /// local deadline passed unconfirmed (this process was paused, say) means another node may
    /// own the booking by now: the actor answers `Fenced` and steps down without writing.
    fn ready(&self) -> Result<(Booking, i64), BookingError> {
        match &self.phase {
            Phase::Ready {
                lease: Some(grant), ..
            } if grant.deadline.passed() => Err(BookingError::Fenced),
            Phase::Ready { booking, .. } => Ok(((**booking).clone(), booking.fencing_token)),
            Phase::Failed(failure) => Err(failure.to_error(self.id)),
            // Unreachable: `started()` holds the mailbox until activation ends.
            Phase::Activating => Err(BookingError::Mailbox(actix::MailboxError::Closed)),
        }
    }

    /// Checks `action` against the in-memory state; a refusal needs no round trip.
    fn plan(
        &self,
        action: &Action,
        meta: &RequestMeta,
    ) -> Result<(Booking, i64, Transition), BookingError> {
        if Instant::now() >= meta.deadline {
            return Err(BookingError::DeadlinePassed);
        }
        let (booking, token) = self.ready()?;
        match apply(booking.state(), action) {
            Ok(transition) => Ok((booking, token, transition)),
            Err(error) => Err(BookingError::Refused {
                error,
                booking: Box::new(booking),
            }),
        }
    }

    /// Applies a write's outcome to the actor: new state, or step down when fenced.
    fn settle(&mut self, written: Option<&Booking>, fenced: bool, ctx: &mut Context<Self>) {
        if fenced {
            // Another activation owns the booking now: stop, and never retry this write.
            ctx.stop();
            return;
        }
        if let (Some(row), Phase::Ready { booking, .. }) = (written, &mut self.phase) {
            **booking = row.clone();
            // Terminal: answer what is already queued, give the lease back, stop.
            if row.status.is_terminal() {
                ctx.address().do_send(Passivate);
            }
        }
    }

    fn log(
        &self,
        msg: &str,
        meta: &RequestMeta,
        started: Instant,
        outcome: Result<(), &BookingError>,
    ) {
        // Nothing to format when the line would be filtered out (`RUST_LOG=warn`, say).
        if !log::log_enabled!(target: telemetry::ACTOR_TARGET, log::Level::Info) {
            return;
        }
        let token = match &self.phase {
            Phase::Ready { booking, .. } => booking.fencing_token,
            _ => 0,
        };
        let actor = format!("booking:{}", self.id);
        let outcome = match outcome {
            Ok(()) => "ok".to_owned(),
            Err(error) => format!("err:{}", error.code()),
        };
        telemetry::actor_message(ActorLine {
            node: &self.deps.node_id.0,
            actor: &actor,
            msg,
            req: meta.request_id.as_str(),
            token,
            outcome: &outcome,
            waited: started.saturating_duration_since(meta.sent_at),
            handled: started.elapsed(),
        });
    }

    /// Answers a message that [`Self::plan`] turned down. A state-machine refusal is judged on
    /// this actor's copy of the row, which is the truth only while its activation is the latest:
    /// a node cut off from Redis may have activated the booking from a PostgreSQL lease while
    /// this node's Redis lease still ran. So a refusal goes out only if the copy was confirmed
    /// current at some moment after the message was sent ([`Self::confirmed_at`]): the refusal
    /// is then correct as of that moment, inside the request's lifetime. Otherwise the token is
    /// read from PostgreSQL first; a newer one means this actor is stale: it answers `Fenced`
    /// (the request is routed again) and steps down. Fencing thus covers refusals as well as
    /// writes. A burst of refusals (49 losers of a contended assign, sent before the winner's
    /// write began) costs no read at all; a lone late refusal costs one.
    fn refuse<T: 'static>(
        &mut self,
        msg_name: &'static str,
        meta: RequestMeta,
        started: Instant,
        error: BookingError,
    ) -> AtomicResponse<Self, Result<T, BookingError>> {
        let confirmed = self.confirmed_at.is_some_and(|at| at >= meta.sent_at);
        let verdict: futures::future::BoxFuture<'static, (BookingError, Option<Instant>)> =
            match error {
                BookingError::Refused { error, booking }
                    if !confirmed && !booking.status.is_terminal() =>
                {
                    let deps = self.deps.clone();
                    Box::pin(async move {
                        let asked = Instant::now();
                        let current = match pool::conn(&deps.pool).await {
                            Ok(mut conn) => store::fencing_token(&mut conn, BookingId(booking.id))
                                .await
                                .map_err(BookingError::from),
                            Err(error) => Err(error.into()),
                        };
                        match current {
                            Ok(Some(token)) if token == booking.fencing_token => {
                                (BookingError::Refused { error, booking }, Some(asked))
                            }
                            Ok(_) => (BookingError::Fenced, None),
                            Err(error) => (error, None),
                        }
                    })
                }
                other => Box::pin(futures::future::ready((other, None))),
            };
        AtomicResponse::new(Box::pin(verdict.into_actor(self).map(
            move |(error, confirmed), act, ctx| {
                if confirmed.is_some() {
                    act.confirmed_at = confirmed;
                }
                act.settle(None, matches!(error, BookingError::Fenced), ctx);
                act.log(msg_name, &meta, started, Err(&error));
                Err(error)
            },
        )))
    }

    /// Assigns the nearest online driver: the search and its claims run as one atomic future.
    fn assign(
        &mut self,
        action: &Action,
        meta: RequestMeta,
    ) -> AtomicResponse<Self, Result<Done, BookingError>> {
        let started = Instant::now();
        let planned = self.plan(action, &meta);
        self.keep_alive_for(&planned);
        let (booking, token) = match planned {
            Ok((booking, token, _)) => (booking, token),
            Err(error) => return self.refuse("Assign", meta, started, error),
        };
        let deps = self.deps.clone();
        let confirmed = self.confirmed_at.is_some_and(|at| at >= meta.sent_at);
        let asked = meta.clone();
        let work = async move {
            let (booking, driver) =
                assign_nearest(&deps, booking, token, &asked, confirmed).await?;
            Ok(Done {
                booking,
                driver: Some(driver),
            })
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            move |result: Result<Done, BookingError>, act, ctx| {
                if result.is_ok() {
                    act.confirmed_at = Some(started);
                }
                let fenced = matches!(result, Err(BookingError::Fenced));
                act.settle(result.as_ref().ok().map(|done| &done.booking), fenced, ctx);
                act.log("Assign", &meta, started, result.as_ref().map(drop));
                result
            },
        )))
    }

    /// Runs a transition write as an atomic future: the next message waits until it is done.
    fn write_transition(
        &mut self,
        msg_name: &'static str,
        action: &Action,
        write: Write,
        meta: RequestMeta,
    ) -> AtomicResponse<Self, Result<Done, BookingError>> {
        let started = Instant::now();
        let planned = self
            .plan(action, &meta)
            .and_then(|plan| write.admits(&plan.0).map(|()| plan));
        self.keep_alive_for(&planned);
        let (booking, token, transition) = match planned {
            Ok(plan) => plan,
            Err(error) => return self.refuse(msg_name, meta, started, error),
        };
        let deps = self.deps.clone();
        let change = write.into_change(&booking, token, transition, &meta);
        let write = async move {
            match deps.writer.write(change).await? {
                Outcome::Written(updated, released) => {
                    if let Some(driver) = released {
                        return_to_index(&deps, driver);
                    }
                    Ok(Done {
                        booking: *updated,
                        driver: None,
                    })
                }
                Outcome::Fenced => Err(BookingError::Fenced),
                Outcome::KeyTaken => Err(BookingError::KeyTaken),
                Outcome::Expired => Err(BookingError::DeadlinePassed),
            }
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            move |result, act, ctx| {
                if result.is_ok() {
                    act.confirmed_at = Some(started);
                }
                act.settle(
                    result.as_ref().ok().map(|done| &done.booking),
                    matches!(result, Err(BookingError::Fenced)),
                    ctx,
                );
                act.log(msg_name, &meta, started, result.as_ref().map(drop));
                result
            },
        )))
    }
}

impl Actor for BookingActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.deps.booking.mailbox_capacity);
        let began = Instant::now();
        let holder = ctx.address().recipient();
        // A created booking's copy is the inserted row: it was current when the insert
        // committed, before any message for it was sent, so it confirms no refusal (`refuse`).
        let (activation, confirmed) = match self.created.take() {
            Some(created) => (adopt(self.deps.clone(), *created, holder).boxed(), None),
            None => (
                activate(self.deps.clone(), self.id, holder).boxed(),
                Some(began),
            ),
        };
        // `wait` holds the mailbox: no message is handled before the lease and token are in place.
        ctx.wait(
            activation
                .into_actor(self)
                .map(move |result, act, _ctx| match result {
                    Ok((booking, lease)) => {
                        let owned = lease.is_some();
                        act.confirmed_at = confirmed;
                        act.phase = Phase::Ready {
                            booking: Box::new(booking),
                            lease,
                        };
                        if owned {
                            act.keep_alive();
                        } else {
                            // Terminal: nothing left to own. See below for how it ends.
                            act.roster.forget(act.id, act.generation);
                        }
                    }
                    Err(failure) => {
                        // New requests get a fresh actor; this one answers why to every message
                        // sent to it. It holds no lease and is not stopped on purpose: once the
                        // registry has forgotten it and the last sender that still had its
                        // address has delivered, actix stops it (no addresses, empty mailbox).
                        // A Passivate sent now could overtake a sender that got the address a
                        // moment before, whose message would then find the mailbox closed.
                        act.roster.forget(act.id, act.generation);
                        act.phase = Phase::Failed(failure);
                    }
                }),
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.roster.forget(self.id, self.generation);
        if let Some(lease) = self.take_lease() {
            // A notice: the manager deletes the key if it is still ours.
            self.deps.leases.do_send(lease);
        }
    }
}

impl Handler<Passivate> for BookingActor {
    // Atomic, so nothing else runs between giving the lease back and stopping.
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: Passivate, _ctx: &mut Self::Context) -> Self::Result {
        let release = self.take_lease();
        let leases = self.deps.leases.clone();
        let give_back = async move {
            if let Some(release) = release {
                let _ = leases.send(release).await;
            }
        };
        AtomicResponse::new(Box::pin(
            give_back.into_actor(self).map(|(), _act, ctx| ctx.stop()),
        ))
    }
}

impl Handler<IdleStop> for BookingActor {
    type Result = ();

    fn handle(&mut self, _msg: IdleStop, ctx: &mut Self::Context) {
        let idle_ms = self
            .roster
            .now_ms()
            .saturating_sub(self.kept.load(Ordering::Relaxed));
        if idle_ms >= self.deps.booking.idle_stop_ms {
            ctx.stop();
        }
    }
}

impl Handler<LeaseLost> for BookingActor {
    type Result = ();

    fn handle(&mut self, _msg: LeaseLost, ctx: &mut Self::Context) {
        // Stop before writing again; the manager already stopped renewing the lease.
        ctx.stop();
    }
}

impl Handler<Act> for BookingActor {
    // Atomic: the whole write (for an assignment, the whole claim) finishes before the next
    // message for this booking starts.
    type Result = AtomicResponse<Self, Result<Done, BookingError>>;

    fn handle(&mut self, msg: Act, _ctx: &mut Self::Context) -> Self::Result {
        let Act { action, meta } = msg;
        let name = action.name();
        let write = match &action {
            Action::Assign { .. } => return self.assign(&action, meta),
            Action::Accept { .. } => Write::Change {
                cancellation_reason: None,
            },
            Action::Cancel { reason, .. } => Write::Change {
                cancellation_reason: reason.clone(),
            },
            // A driver's fare is bounded by the ride's estimate; an operator's is not.
            Action::Complete {
                actual_fare,
                operator,
                ..
            } => Write::Complete {
                fare: *actual_fare,
                max_ratio: (!operator).then_some(self.deps.booking.max_fare_ratio),
            },
            Action::ExpireOffer { assigned_at, .. } => Write::TakeBackOffer {
                assigned_at: *assigned_at,
            },
        };
        self.write_transition(name, &action, write, meta)
    }
}
