//! Who may do what, as pure functions of the caller and the ids involved: each returns `Ok` or a
//! 403 saying which rule was broken. Operators (`ops:<name>`) may do everything; riders and
//! drivers act only for themselves. The rules table in docs/auth.md lists the same rules.
//!
//! Checks that need the booking's current parties (a rider's own booking, a driver's assigned
//! one) run where that state is: reads compare the row they read, and actions are checked by the
//! booking's actor (`domain::booking::apply`), which alone knows the driver at that moment.

use super::{Forbidden, Principal};
use crate::domain::booking::Party;
use crate::domain::ids::{DriverId, RiderId};

fn forbidden(code: &'static str, message: String) -> Forbidden {
    Forbidden { code, message }
}

/// Operators only: creating riders and drivers, the driver list, lock stats, cluster nodes,
/// metrics.
pub(crate) fn ops_only(caller: &Principal) -> Result<(), Forbidden> {
    if caller.is_ops() {
        return Ok(());
    }
    Err(forbidden(
        "ops_required",
        format!("This needs an ops token; the token's subject is {caller}"),
    ))
}

/// The caller is this rider, or an operator.
pub(crate) fn is_rider(caller: &Principal, rider: RiderId) -> Result<(), Forbidden> {
    match caller {
        Principal::Ops(_) => Ok(()),
        Principal::Rider(me) if *me == rider => Ok(()),
        _ => Err(mismatch(caller, &format!("rider {rider}"))),
    }
}

/// The caller is this driver, or an operator.
pub(crate) fn is_driver(caller: &Principal, driver: DriverId) -> Result<(), Forbidden> {
    match caller {
        Principal::Ops(_) => Ok(()),
        Principal::Driver(me) if *me == driver => Ok(()),
        _ => Err(mismatch(caller, &format!("driver {driver}"))),
    }
}

/// The caller is the party a body names (`user_id` + `user_type`), or an operator.
pub(crate) fn is_party(caller: &Principal, party: Party) -> Result<(), Forbidden> {
    match party {
        Party::Rider(rider) => is_rider(caller, rider),
        Party::Driver(driver) => is_driver(caller, driver),
    }
}

fn mismatch(caller: &Principal, named: &str) -> Forbidden {
    forbidden(
        "subject_mismatch",
        format!("A token for {caller} may not act as or read {named}"),
    )
}

/// Who asks for a driver to be assigned: the rider (checked against the booking by its actor),
/// or an operator (`None`). Drivers do not.
pub(crate) fn assigner(caller: &Principal) -> Result<Option<RiderId>, Forbidden> {
    match caller {
        Principal::Ops(_) => Ok(None),
        Principal::Rider(rider) => Ok(Some(*rider)),
        Principal::Driver(_) => Err(forbidden(
            "not_booking_party",
            "Only the booking's rider or an operator may ask for a driver".to_owned(),
        )),
    }
}

/// A booking is read by its rider, its driver, or an operator.
pub(crate) fn reads_booking(
    caller: &Principal,
    rider: RiderId,
    driver: Option<DriverId>,
) -> Result<(), Forbidden> {
    let allowed = match caller {
        Principal::Ops(_) => true,
        Principal::Rider(me) => *me == rider,
        Principal::Driver(me) => Some(*me) == driver,
    };
    if allowed {
        return Ok(());
    }
    Err(forbidden(
        "not_booking_party",
        format!("A token for {caller} may only read its own bookings"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: RiderId = RiderId(1);
    const DRIVER: DriverId = DriverId(5);

    fn ops() -> Principal {
        Principal::Ops("support".into())
    }

    fn code(result: Result<impl std::fmt::Debug, Forbidden>) -> Option<&'static str> {
        result.err().map(|e| e.code)
    }

    #[test]
    fn operators_pass_every_rule() {
        assert!(ops_only(&ops()).is_ok());
        assert!(is_rider(&ops(), ME).is_ok());
        assert!(is_driver(&ops(), DRIVER).is_ok());
        assert_eq!(assigner(&ops()).ok(), Some(None));
        assert!(reads_booking(&ops(), ME, None).is_ok());
    }

    #[test]
    fn riders_and_drivers_are_not_operators() {
        assert_eq!(code(ops_only(&Principal::Rider(ME))), Some("ops_required"));
        assert_eq!(
            code(ops_only(&Principal::Driver(DRIVER))),
            Some("ops_required")
        );
    }

    #[test]
    fn a_rider_acts_only_for_itself() {
        let me = Principal::Rider(ME);
        assert!(is_rider(&me, ME).is_ok());
        assert_eq!(code(is_rider(&me, RiderId(2))), Some("subject_mismatch"));
        assert_eq!(code(is_driver(&me, DriverId(1))), Some("subject_mismatch"));
        assert!(is_party(&me, Party::Rider(ME)).is_ok());
        assert_eq!(
            code(is_party(&me, Party::Driver(DriverId(1)))),
            Some("subject_mismatch")
        );
        assert_eq!(assigner(&me).ok(), Some(Some(ME)));
    }

    #[test]
    fn a_driver_acts_only_for_itself_and_never_assigns() {
        let me = Principal::Driver(DRIVER);
        assert!(is_driver(&me, DRIVER).is_ok());
        assert_eq!(code(is_driver(&me, DriverId(6))), Some("subject_mismatch"));
        assert_eq!(code(is_rider(&me, RiderId(5))), Some("subject_mismatch"));
        assert_eq!(code(assigner(&me)), Some("not_booking_party"));
    }

    #[test]
    fn a_booking_is_read_by_its_parties_only() {
        assert!(reads_booking(&Principal::Rider(ME), ME, Some(DRIVER)).is_ok());
        assert!(reads_booking(&Principal::Driver(DRIVER), ME, Some(DRIVER)).is_ok());
        for stranger in [Principal::Rider(RiderId(2)), Principal::Driver(DriverId(6))] {
            assert_eq!(
                code(reads_booking(&stranger, ME, Some(DRIVER))),
                Some("not_booking_party")
            );
        }
        assert_eq!(
            code(reads_booking(&Principal::Driver(DRIVER), ME, None)),
            Some("not_booking_party")
        );
    }
}
