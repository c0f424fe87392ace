//! The booking state machine as plain functions: which action is legal in which state, and for
//! whom. Booking actors call [`apply`] before every write, so an illegal transition is refused
//! without a round trip; the conditional updates in storage enforce the same arrows again in
//! PostgreSQL.

use super::action::Action;
use super::ids::DriverId;
pub use super::status::{BookingState, BookingStatus, Party};

/// A legal move; `release_driver` names the driver that goes back online.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: BookingStatus,
    pub to: BookingStatus,
    pub release_driver: Option<DriverId>,
}

/// Why a command is refused. Each variant maps to one stable API error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("Booking is not pending (status: {0})")]
    NotPending(BookingStatus),
    #[error("Booking is not assigned (status: {0})")]
    NotAssigned(BookingStatus),
    #[error("Booking is not accepted (status: {0})")]
    NotAccepted(BookingStatus),
    #[error("Booking is already {0}")]
    AlreadyTerminal(BookingStatus),
    #[error("Driver is not assigned to this booking")]
    NotAssignedDriver,
    #[error("User is not a party to this booking")]
    NotAParty,
}

impl TransitionError {
    /// The stable snake_case code clients match on.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotPending(_) => "booking_not_pending",
            Self::NotAssigned(_) => "booking_not_assigned",
            Self::NotAccepted(_) => "booking_not_accepted",
            Self::AlreadyTerminal(_) => "booking_already_terminal",
            Self::NotAssignedDriver => "not_assigned_driver",
            Self::NotAParty => "not_booking_party",
        }
    }

    /// Identity failures (403) as opposed to state conflicts (409).
    pub(crate) fn is_forbidden(self) -> bool {
        matches!(self, Self::NotAssignedDriver | Self::NotAParty)
    }
}

/// Whether the caller named in `action` may ask for it at all: the identity half of [`apply`], and
/// the only refusals (403) that do not depend on the booking's progress. A router runs it on a
/// row it read before starting anything for a caller, so a stranger costs no lease and no write.
/// A booking without a driver has no "right driver": a driver acting for itself is refused as a
/// stranger, an operator gets the state conflict from `apply`.
pub(crate) fn authorize(state: BookingState, action: &Action) -> Result<(), TransitionError> {
    let stranger = match *action {
        Action::Assign { by } => by.is_some_and(|rider| rider != state.rider_id),
        Action::ExpireOffer { driver_id, .. } => state.driver_id != Some(driver_id),
        Action::Accept {
            driver_id,
            operator,
        }
        | Action::Complete {
            driver_id,
            operator,
            ..
        } => match state.driver_id {
            None => !operator,
            Some(assigned) => assigned != driver_id,
        },
        Action::Cancel { by, .. } => match by {
            Party::Rider(rider) => rider != state.rider_id,
            Party::Driver(driver) => Some(driver) != state.driver_id,
        },
    };
    if !stranger {
        return Ok(());
    }
    Err(match action {
        Action::Accept { .. } | Action::Complete { .. } | Action::ExpireOffer { .. } => {
            TransitionError::NotAssignedDriver
        }
        Action::Assign { .. } | Action::Cancel { .. } => TransitionError::NotAParty,
    })
}

/// Decides whether `action` is legal in `state`. Identity is checked before state ([`authorize`]),
/// so a stranger learns nothing about a booking's progress.
pub(crate) fn apply(state: BookingState, action: &Action) -> Result<Transition, TransitionError> {
    use BookingStatus::*;
    authorize(state, action)?;
    let to = |to| Transition {
        from: state.status,
        to,
        release_driver: None,
    };
    match *action {
        Action::Assign { .. } => match state.status {
            Pending => Ok(to(Assigned)),
            other => Err(TransitionError::NotPending(other)),
        },
        Action::Accept { .. } => {
            // Only an operator gets here for a booking without a driver.
            match state.status {
                Assigned if state.driver_id.is_some() => Ok(to(Accepted)),
                other => Err(TransitionError::NotAssigned(other)),
            }
        }
        Action::Complete { .. } => match state.status {
            Accepted if state.driver_id.is_some() => Ok(Transition {
                release_driver: state.driver_id,
                ..to(Completed)
            }),
            other => Err(TransitionError::NotAccepted(other)),
        },
        Action::ExpireOffer { give_up, .. } => match state.status {
            Assigned => Ok(Transition {
                release_driver: state.driver_id,
                ..to(if give_up { Cancelled } else { Pending })
            }),
            other => Err(TransitionError::NotAssigned(other)),
        },
        Action::Cancel { .. } => {
            if state.status.is_terminal() {
                return Err(TransitionError::AlreadyTerminal(state.status));
            }
            Ok(Transition {
                release_driver: state.driver_id.filter(|_| state.status.holds_driver()),
                ..to(Cancelled)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BookingStatus::*;
    use super::*;
    use crate::domain::ids::RiderId;
    use crate::domain::values::Fare;

    const RIDER: RiderId = RiderId(1);
    const DRIVER: DriverId = DriverId(7);
    /// The payloads the state machine does not look at.
    const FARE: Fare = Fare::from_cents(1_500);
    const OFFERED_AT: chrono::DateTime<chrono::Utc> = chrono::DateTime::UNIX_EPOCH;

    fn state(status: BookingStatus) -> BookingState {
        BookingState {
            status,
            rider_id: RIDER,
            driver_id: (status != Pending).then_some(DRIVER),
        }
    }

    #[test]
    fn the_happy_path_follows_the_arrows() {
        assert_eq!(
            apply(state(Pending), &Action::Assign { by: None }).map(|t| t.to),
            Ok(Assigned)
        );
        let accept = Action::Accept {
            driver_id: DRIVER,
            operator: true,
        };
        assert_eq!(apply(state(Assigned), &accept).map(|t| t.to), Ok(Accepted));
        let complete = apply(
            state(Accepted),
            &Action::Complete {
                driver_id: DRIVER,
                operator: true,
                actual_fare: FARE,
            },
        );
        assert_eq!(
            complete.map(|t| (t.to, t.release_driver)),
            Ok((Completed, Some(DRIVER)))
        );
    }

    #[test]
    fn assign_is_refused_unless_pending() {
        for status in [Assigned, Accepted, Completed, Cancelled] {
            assert_eq!(
                apply(state(status), &Action::Assign { by: None }),
                Err(TransitionError::NotPending(status))
            );
        }
    }

    #[test]
    fn a_driver_acting_on_a_booking_without_driver_is_a_stranger_an_operator_a_conflict() {
        for operator in [false, true] {
            let accept = Action::Accept {
                driver_id: DRIVER,
                operator,
            };
            let complete = Action::Complete {
                driver_id: DRIVER,
                operator,
                actual_fare: FARE,
            };
            let (accepted, completed) = if operator {
                (
                    TransitionError::NotAssigned(Pending),
                    TransitionError::NotAccepted(Pending),
                )
            } else {
                (
                    TransitionError::NotAssignedDriver,
                    TransitionError::NotAssignedDriver,
                )
            };
            assert_eq!(apply(state(Pending), &accept), Err(accepted));
            assert_eq!(apply(state(Pending), &complete), Err(completed));
        }
    }

    #[test]
    fn only_the_bookings_rider_or_an_operator_asks_for_assignment() {
        let mine = Action::Assign { by: Some(RIDER) };
        assert_eq!(apply(state(Pending), &mine).map(|t| t.to), Ok(Assigned));
        let theirs = Action::Assign {
            by: Some(RiderId(2)),
        };
        for status in BookingStatus::ALL {
            assert_eq!(
                apply(state(status), &theirs),
                Err(TransitionError::NotAParty)
            );
        }
    }

    #[test]
    fn authorize_refuses_exactly_what_apply_forbids() {
        let commands = [
            Action::Assign { by: None },
            Action::Assign { by: Some(RIDER) },
            Action::Assign {
                by: Some(RiderId(2)),
            },
            Action::Accept {
                driver_id: DRIVER,
                operator: false,
            },
            Action::Accept {
                driver_id: DriverId(8),
                operator: false,
            },
            Action::Accept {
                driver_id: DriverId(8),
                operator: true,
            },
            Action::Complete {
                driver_id: DRIVER,
                operator: false,
                actual_fare: FARE,
            },
            Action::Complete {
                driver_id: DriverId(8),
                operator: true,
                actual_fare: FARE,
            },
            Action::Cancel {
                by: Party::Rider(RIDER),
                reason: None,
            },
            Action::Cancel {
                by: Party::Rider(RiderId(2)),
                reason: None,
            },
            Action::Cancel {
                by: Party::Driver(DRIVER),
                reason: None,
            },
            Action::Cancel {
                by: Party::Driver(DriverId(8)),
                reason: None,
            },
            Action::ExpireOffer {
                driver_id: DRIVER,
                give_up: false,
                assigned_at: OFFERED_AT,
            },
            Action::ExpireOffer {
                driver_id: DriverId(8),
                give_up: true,
                assigned_at: OFFERED_AT,
            },
        ];
        for status in BookingStatus::ALL {
            for driver_id in [None, Some(DRIVER)] {
                let s = BookingState {
                    status,
                    rider_id: RIDER,
                    driver_id,
                };
                for cmd in &commands {
                    let forbidden = apply(s, cmd).err().filter(|e| e.is_forbidden());
                    assert_eq!(authorize(s, cmd).err(), forbidden, "{s:?} {cmd:?}");
                }
            }
        }
    }

    #[test]
    fn the_wrong_driver_is_forbidden_before_state_is_checked() {
        let other = Action::Accept {
            driver_id: DriverId(8),
            operator: true,
        };
        for status in [Assigned, Accepted, Completed] {
            assert_eq!(
                apply(state(status), &other),
                Err(TransitionError::NotAssignedDriver)
            );
        }
        let complete = Action::Complete {
            driver_id: DriverId(8),
            operator: true,
            actual_fare: FARE,
        };
        assert_eq!(
            apply(state(Accepted), &complete),
            Err(TransitionError::NotAssignedDriver)
        );
    }

    #[test]
    fn accepting_or_completing_without_a_driver_is_a_state_conflict() {
        let accept = Action::Accept {
            driver_id: DRIVER,
            operator: true,
        };
        assert_eq!(
            apply(state(Pending), &accept),
            Err(TransitionError::NotAssigned(Pending))
        );
        let complete = Action::Complete {
            driver_id: DRIVER,
            operator: true,
            actual_fare: FARE,
        };
        assert_eq!(
            apply(state(Assigned), &complete),
            Err(TransitionError::NotAccepted(Assigned))
        );
    }

    #[test]
    fn cancel_releases_a_held_driver_and_refuses_strangers_and_terminal_states() {
        let by_rider = Action::Cancel {
            by: Party::Rider(RIDER),
            reason: None,
        };
        assert_eq!(
            apply(state(Pending), &by_rider).map(|t| t.release_driver),
            Ok(None)
        );
        assert_eq!(
            apply(state(Accepted), &by_rider).map(|t| t.release_driver),
            Ok(Some(DRIVER))
        );
        let by_driver = Action::Cancel {
            by: Party::Driver(DRIVER),
            reason: None,
        };
        assert_eq!(
            apply(state(Assigned), &by_driver).map(|t| t.to),
            Ok(Cancelled)
        );
        let stranger = Action::Cancel {
            by: Party::Rider(RiderId(2)),
            reason: None,
        };
        assert_eq!(
            apply(state(Pending), &stranger),
            Err(TransitionError::NotAParty)
        );
        let no_driver_yet = Action::Cancel {
            by: Party::Driver(DRIVER),
            reason: None,
        };
        assert_eq!(
            apply(state(Pending), &no_driver_yet),
            Err(TransitionError::NotAParty)
        );
        for status in [Completed, Cancelled] {
            assert_eq!(
                apply(state(status), &by_rider),
                Err(TransitionError::AlreadyTerminal(status))
            );
        }
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in BookingStatus::ALL {
            assert_eq!(status.as_str().parse(), Ok(status));
        }
        assert!("busy".parse::<BookingStatus>().is_err());
    }
}
