//! A booking's status and who its parties are: what the state machine ([`super::booking`]) and
//! the action type ([`super::action`]) speak of.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ids::{DriverId, RiderId};

/// `pending → assigned → accepted → completed`; `pending | assigned | accepted → cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    Pending,
    Assigned,
    Accepted,
    Completed,
    Cancelled,
}

impl BookingStatus {
    pub(crate) const ALL: [BookingStatus; 5] = [
        Self::Pending,
        Self::Assigned,
        Self::Accepted,
        Self::Completed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Assigned => "assigned",
            Self::Accepted => "accepted",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }

    /// Whether a booking in this state holds its driver.
    pub(crate) fn holds_driver(self) -> bool {
        matches!(self, Self::Assigned | Self::Accepted)
    }
}

impl fmt::Display for BookingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BookingStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown booking status {s:?}"))
    }
}

/// Who asks for a cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    Rider(RiderId),
    Driver(DriverId),
}

/// What the state machine needs to know about a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookingState {
    pub status: BookingStatus,
    pub rider_id: RiderId,
    pub driver_id: Option<DriverId>,
}
