//! Property tests for [`super::booking::apply`]. The example tests next to it pin single cases;
//! these check the whole rule set against a reference model written from the documented rules,
//! and play many bookings against a small driver pool to protect the invariant the server
//! exists for: no driver is held by two live bookings, and a driver is released exactly when
//! its booking lets go of it.
//!
//! Runs are deterministic (fixed seed, no regression files); `PROPTEST_CASES` and
//! `PROPTEST_RNG_SEED` still override the defaults below.

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::RngSeed;

use super::action::Action;
use super::booking::BookingStatus::{Accepted, Assigned, Cancelled, Completed, Pending};
use super::booking::{apply, BookingState, BookingStatus, Party, Transition, TransitionError};
use super::ids::{DriverId, RiderId};
use super::values::Fare;

/// The payloads the state machine does not look at.
const FARE: Fare = Fare::from_cents(1_500);
const OFFERED_AT: chrono::DateTime<chrono::Utc> = chrono::DateTime::UNIX_EPOCH;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2_000,
        rng_seed: RngSeed::Fixed(0x5EED_B00C),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The refusal codes the "Error codes" list of docs/API.md promises clients.
const STABLE_CODES: [&str; 6] = [
    "booking_not_pending",
    "booking_not_assigned",
    "booking_not_accepted",
    "booking_already_terminal",
    "not_assigned_driver",
    "not_booking_party",
];

// --- Reference model -------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Assign,
    Accept,
    Complete,
    Cancel,
    /// An offer expired, the booking goes back to pending.
    Expire,
    /// An offer expired, and too many had: the booking is cancelled.
    GiveUp,
}

/// The documented arrows, one row each: (verb, from, to, whether the booking's driver is released).
const ARROWS: [(Verb, BookingStatus, BookingStatus, bool); 8] = [
    (Verb::Assign, Pending, Assigned, false),
    (Verb::Accept, Assigned, Accepted, false),
    (Verb::Complete, Accepted, Completed, true),
    (Verb::Cancel, Pending, Cancelled, false),
    (Verb::Cancel, Assigned, Cancelled, true),
    (Verb::Cancel, Accepted, Cancelled, true),
    (Verb::Expire, Assigned, Pending, true),
    (Verb::GiveUp, Assigned, Cancelled, true),
];

/// How the one asking stands towards the booking, judged before its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Allowed,
    Forbidden,
    /// An operator's accept or complete of a booking without a driver: nobody can be the right
    /// driver, and an operator may learn the state. (A driver asking is simply Forbidden.)
    NoDriverYet,
}

fn standing(state: BookingState, cmd: &Action) -> (Verb, Standing) {
    let allowed_if = |ok: bool| {
        if ok {
            Standing::Allowed
        } else {
            Standing::Forbidden
        }
    };
    let driver = |verb, driver_id, operator: bool| match state.driver_id {
        None if operator => (verb, Standing::NoDriverYet),
        None => (verb, Standing::Forbidden),
        Some(assigned) => (verb, allowed_if(assigned == driver_id)),
    };
    match *cmd {
        Action::Assign { by: None } => (Verb::Assign, Standing::Allowed),
        Action::Assign { by: Some(rider) } => (Verb::Assign, allowed_if(rider == state.rider_id)),
        Action::Accept {
            driver_id,
            operator,
        } => driver(Verb::Accept, driver_id, operator),
        Action::Complete {
            driver_id,
            operator,
            ..
        } => driver(Verb::Complete, driver_id, operator),
        Action::Cancel {
            by: Party::Rider(rider),
            ..
        } => (Verb::Cancel, allowed_if(rider == state.rider_id)),
        Action::Cancel {
            by: Party::Driver(driver),
            ..
        } => (Verb::Cancel, allowed_if(state.driver_id == Some(driver))),
        Action::ExpireOffer {
            driver_id, give_up, ..
        } => {
            let verb = if give_up { Verb::GiveUp } else { Verb::Expire };
            (verb, allowed_if(state.driver_id == Some(driver_id)))
        }
    }
}

fn forbidden(verb: Verb) -> TransitionError {
    match verb {
        Verb::Assign | Verb::Cancel => TransitionError::NotAParty,
        Verb::Accept | Verb::Complete | Verb::Expire | Verb::GiveUp => {
            TransitionError::NotAssignedDriver
        }
    }
}

fn conflict(verb: Verb, status: BookingStatus) -> TransitionError {
    match verb {
        Verb::Assign => TransitionError::NotPending(status),
        Verb::Accept | Verb::Expire | Verb::GiveUp => TransitionError::NotAssigned(status),
        Verb::Complete => TransitionError::NotAccepted(status),
        Verb::Cancel => TransitionError::AlreadyTerminal(status),
    }
}

/// What `apply` should answer, from the table above and nothing else.
fn model(state: BookingState, cmd: &Action) -> Result<Transition, TransitionError> {
    let (verb, standing) = standing(state, cmd);
    match standing {
        Standing::Forbidden => return Err(forbidden(verb)),
        Standing::NoDriverYet => return Err(conflict(verb, state.status)),
        Standing::Allowed => {}
    }
    let arrow = ARROWS
        .iter()
        .find(|(v, from, _, _)| *v == verb && *from == state.status);
    match arrow {
        Some(&(_, from, to, releases)) => Ok(Transition {
            from,
            to,
            release_driver: if releases { state.driver_id } else { None },
        }),
        None => Err(conflict(verb, state.status)),
    }
}

fn is_arrow(from: BookingStatus, to: BookingStatus) -> bool {
    ARROWS.iter().any(|&(_, f, t, _)| (f, t) == (from, to))
}

/// Statuses in which a booking occupies its driver.
fn holds(status: BookingStatus) -> bool {
    matches!(status, Assigned | Accepted)
}

// --- Generators ------------------------------------------------------------------------------

/// Ids come from 1..=3 so the right rider or driver turns up often.
fn rider() -> impl Strategy<Value = RiderId> {
    (1..=3i64).prop_map(RiderId)
}

fn driver() -> impl Strategy<Value = DriverId> {
    (1..=3i64).prop_map(DriverId)
}

fn state() -> impl Strategy<Value = BookingState> {
    (
        select(BookingStatus::ALL.to_vec()),
        rider(),
        proptest::option::of(driver()),
    )
        .prop_map(|(status, rider_id, driver_id)| BookingState {
            status,
            rider_id,
            driver_id,
        })
}

/// A kind and an id, decoded by hand: a union of mapped strategies is several times slower to
/// generate in debug builds, and the simulation draws thousands of commands.
fn command() -> impl Strategy<Value = Action> {
    (0..8u8, 1..=3i64, any::<bool>()).prop_map(|(kind, id, operator)| match kind {
        0 => Action::Assign { by: None },
        1 => Action::Assign {
            by: Some(RiderId(id)),
        },
        2 => Action::Accept {
            driver_id: DriverId(id),
            operator,
        },
        3 => Action::Complete {
            driver_id: DriverId(id),
            operator,
            actual_fare: FARE,
        },
        4 => Action::Cancel {
            by: Party::Rider(RiderId(id)),
            reason: None,
        },
        6 => Action::ExpireOffer {
            driver_id: DriverId(id),
            give_up: operator,
            assigned_at: OFFERED_AT,
        },
        7 => Action::ExpireOffer {
            driver_id: DriverId(id),
            give_up: false,
            assigned_at: OFFERED_AT,
        },
        _ => Action::Cancel {
            by: Party::Driver(DriverId(id)),
            reason: None,
        },
    })
}

fn check_error(error: TransitionError) -> Result<(), TestCaseError> {
    prop_assert!(
        STABLE_CODES.contains(&error.code()),
        "{error:?} has undocumented code {}",
        error.code()
    );
    let identity = matches!(
        error,
        TransitionError::NotAParty | TransitionError::NotAssignedDriver
    );
    prop_assert_eq!(error.is_forbidden(), identity, "{:?}", error);
    Ok(())
}

// --- Simulation harness ----------------------------------------------------------------------

/// More bookings than drivers, so assignment sometimes finds nobody free.
const BOOKINGS: usize = 5;
const DRIVERS: [DriverId; 3] = [DriverId(1), DriverId(2), DriverId(3)];

/// Stands in for the booking actors and the database: booking rows plus the set of drivers
/// that are not online.
struct Harness {
    bookings: Vec<BookingState>,
    busy: BTreeSet<DriverId>,
}

impl Harness {
    fn new() -> Self {
        let bookings = (0..BOOKINGS)
            .map(|b| BookingState {
                status: Pending,
                rider_id: RiderId(1 + (b as i64) % 3),
                driver_id: None,
            })
            .collect();
        Self {
            bookings,
            busy: BTreeSet::new(),
        }
    }

    /// Plays one command against booking `b`, as the actor would.
    fn step(&mut self, b: usize, cmd: &Action) -> Result<(), TestCaseError> {
        let free = DRIVERS.into_iter().find(|d| !self.busy.contains(d));
        if matches!(cmd, Action::Assign { .. }) && free.is_none() {
            return Ok(()); // no_drivers_available: nothing is written.
        }
        let before = self.bookings[b];
        let transition = match apply(before, cmd) {
            Ok(transition) => transition,
            Err(error) => return check_error(error),
        };
        prop_assert_eq!(transition.from, before.status);
        let booking = &mut self.bookings[b];
        booking.status = transition.to;
        if let (Action::Assign { .. }, Some(driver)) = (cmd, free) {
            booking.driver_id = Some(driver);
            self.busy.insert(driver);
        }
        // Back to pending: the booking lets go of its driver and has none.
        if transition.to == Pending {
            booking.driver_id = None;
        }
        if let Some(driver) = transition.release_driver {
            prop_assert!(
                self.busy.remove(&driver),
                "released driver {} was not busy",
                driver
            );
        }
        Ok(())
    }

    fn check(&self, before: &[BookingState]) -> Result<(), TestCaseError> {
        for (old, new) in before.iter().zip(&self.bookings) {
            if matches!(old.status, Completed | Cancelled) {
                prop_assert_eq!(old, new, "a terminal booking changed");
            }
            if old.status != new.status {
                prop_assert!(
                    is_arrow(old.status, new.status),
                    "{} -> {} is not an arrow",
                    old.status,
                    new.status
                );
            }
        }
        let mut held = BTreeSet::new();
        for booking in self.bookings.iter().filter(|b| holds(b.status)) {
            let driver = booking.driver_id;
            prop_assert!(driver.is_some(), "{:?} holds no driver", booking);
            prop_assert!(held.insert(driver), "{:?} is held twice", driver);
        }
        let held: BTreeSet<DriverId> = held.into_iter().flatten().collect();
        prop_assert_eq!(&self.busy, &held, "busy drivers differ from held drivers");
        Ok(())
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn apply_agrees_with_the_reference_model(state in state(), cmd in command()) {
        prop_assert_eq!(apply(state, &cmd), model(state, &cmd), "{:?} {:?}", state, cmd);
    }

    #[test]
    fn drivers_are_held_and_released_exactly_with_their_bookings(
        actions in proptest::collection::vec((0..BOOKINGS, command()), 0..60),
    ) {
        let mut harness = Harness::new();
        for (b, cmd) in actions {
            let before = harness.bookings.clone();
            harness.step(b, &cmd)?;
            harness.check(&before)?;
        }
    }

    #[test]
    fn refusals_carry_a_stable_code_and_forbid_only_identity_failures(
        state in state(),
        cmd in command(),
    ) {
        if let Err(error) = apply(state, &cmd) {
            check_error(error)?;
        }
    }
}
