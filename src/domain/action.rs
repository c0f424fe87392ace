//! The one action type: what a caller asks of a booking, with its payload. A handler validates a
//! request into an [`Action`]; it travels as it is to the node that owns the booking (it is the
//! body of a forwarded call) and into that node's booking actor, whose state machine
//! ([`super::booking::apply`]) judges it.
//!
//! On the wire an action is an object tagged with its [`Op`]. Fields this build does not know are
//! ignored, so a newer build may add optional ones; which ops a node knows is what
//! `cluster::inbound` checks before it reads the rest.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{DriverId, RiderId};
use super::status::{BookingStatus, Party};
use super::values::Fare;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Action {
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
        /// On the wire in whole cents, as nodes have always sent it.
        #[serde(rename = "actual_fare_cents", with = "fare_cents")]
        actual_fare: Fare,
    },
    /// The offer sweep: `driver_id`'s offer, made at `assigned_at`, was not accepted in time.
    /// Only that very offer is taken back, never a newer assignment (even of the same driver).
    ExpireOffer {
        driver_id: DriverId,
        assigned_at: DateTime<Utc>,
        give_up: bool,
    },
}

/// An action's name on the wire (its `op`), spelled as [`Action`]'s tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Op {
    Assign,
    Accept,
    Cancel,
    Complete,
    ExpireOffer,
}

impl Op {
    /// The name of the action in the actor's trace line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Assign => "Assign",
            Self::Accept => "Accept",
            Self::Cancel => "Cancel",
            Self::Complete => "Complete",
            Self::ExpireOffer => "ExpireOffer",
        }
    }
}

impl Action {
    /// Which action this is. Every variant has its [`Op`], so a new action cannot be missing
    /// from the ops a node knows.
    pub(crate) fn op(&self) -> Op {
        match self {
            Self::Assign { .. } => Op::Assign,
            Self::Accept { .. } => Op::Accept,
            Self::Cancel { .. } => Op::Cancel,
            Self::Complete { .. } => Op::Complete,
            Self::ExpireOffer { .. } => Op::ExpireOffer,
        }
    }

    /// Whether the action names a caller the booking must know (everything but an operator's
    /// assign, accept or complete, and the system's own offer sweep).
    pub(crate) fn names_a_party(&self) -> bool {
        match self {
            Self::Assign { by } => by.is_some(),
            Self::Accept { operator, .. } | Self::Complete { operator, .. } => !operator,
            Self::Cancel { .. } => true,
            Self::ExpireOffer { .. } => false,
        }
    }

    /// The status a success moves the booking to.
    pub fn target(&self) -> BookingStatus {
        match self {
            Self::Assign { .. } => BookingStatus::Assigned,
            Self::Accept { .. } => BookingStatus::Accepted,
            Self::Cancel { .. } | Self::ExpireOffer { give_up: true, .. } => {
                BookingStatus::Cancelled
            }
            Self::Complete { .. } => BookingStatus::Completed,
            Self::ExpireOffer { give_up: false, .. } => BookingStatus::Pending,
        }
    }

    /// The message of the success answer (API.md).
    pub(crate) fn success_message(&self) -> &'static str {
        match self {
            Self::Assign { .. } => "Driver assigned successfully",
            Self::Accept { .. } => "Booking accepted successfully",
            Self::Cancel { .. } => "Booking cancelled successfully",
            Self::Complete { .. } => "Ride completed successfully",
            Self::ExpireOffer { .. } => "Offer expired",
        }
    }

    /// The name of the action in the actor's trace line.
    pub fn name(&self) -> &'static str {
        self.op().name()
    }
}

/// A [`Fare`] as whole cents on the wire.
mod fare_cents {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::domain::values::Fare;

    pub(crate) fn serialize<S: Serializer>(fare: &Fare, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(fare.cents())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Fare, D::Error> {
        i64::deserialize(d).map(Fare::from_cents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_travels_in_cents_as_before() {
        let action = Action::Complete {
            driver_id: DriverId(7),
            operator: false,
            actual_fare: Fare::from_cents(1250),
        };
        let wire = serde_json::to_value(&action).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({
                "op": "complete", "driver_id": 7, "operator": false, "actual_fare_cents": 1250
            })
        );
        assert_eq!(serde_json::from_value::<Action>(wire).unwrap(), action);
    }

    #[test]
    fn every_action_is_tagged_with_its_op() {
        let when = DateTime::<Utc>::UNIX_EPOCH;
        let actions = [
            Action::Assign { by: None },
            Action::Accept {
                driver_id: DriverId(7),
                operator: true,
            },
            Action::Cancel {
                by: Party::Rider(RiderId(3)),
                reason: None,
            },
            Action::Complete {
                driver_id: DriverId(7),
                operator: false,
                actual_fare: Fare::from_cents(1250),
            },
            Action::ExpireOffer {
                driver_id: DriverId(7),
                assigned_at: when,
                give_up: false,
            },
        ];
        for action in actions {
            let wire = serde_json::to_value(&action).unwrap();
            assert_eq!(wire["op"], serde_json::to_value(action.op()).unwrap());
        }
    }

    #[test]
    fn fields_a_newer_build_added_are_ignored() {
        let wire = serde_json::json!({ "op": "assign", "by": 3, "surge": 1.5 });

        let action: Action = serde_json::from_value(wire).unwrap();

        assert_eq!(
            action,
            Action::Assign {
                by: Some(RiderId(3))
            }
        );
    }
}
