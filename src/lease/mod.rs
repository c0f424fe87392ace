//! Only the holder of a booking's lease may write it. This module is the only code that deals in
//! ownership: [`redis::RedisLeases`] speaks the protocol to Redis (`SET NX PX`, check-and-renew,
//! check-and-delete), [`postgres::PgLeases`] speaks the same protocol to a PostgreSQL table,
//! [`failover::Leases`] uses Redis while it answers and PostgreSQL while it is silent, and the
//! per-node [`manager::LeaseManager`] actor holds the leases, renews them all on one heartbeat and
//! tells a booking actor at once when its lease is lost.
//! Leases give fast mutual exclusion; safety rests on the fencing tokens in PostgreSQL.

pub mod events;
pub(crate) mod failover;
pub(crate) mod manager;
pub(crate) mod postgres;
pub mod redis;
pub(crate) mod store;
pub(crate) mod unreachable;

use std::time::Duration;

use crate::domain::ids::BookingId;

/// The Redis key of a booking's lease: `<prefix>lock:booking:<id>`.
pub(crate) fn booking_key(prefix: &str, id: BookingId) -> String {
    format!("{prefix}lock:booking:{id}")
}

/// The value stored under a lease key, `<node_id>:<uuid>`, so `GET` says who holds it.
pub(crate) fn lease_value(node_id: &str) -> String {
    format!("{node_id}:{}", uuid::Uuid::new_v4())
}

/// The node named in a lease value.
pub fn owner_node(value: &str) -> &str {
    value.rsplit_once(':').map_or(value, |(node, _)| node)
}

/// Who holds a lease, as read from the store when an acquisition was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOwner {
    /// The node named in the value.
    pub node: String,
    /// The whole value, `<node_id>:<uuid>`: it changes when the lease is given up or taken over.
    pub value: String,
    /// Time left on the key; zero when it has no expiry (set by hand).
    pub remaining: Duration,
    /// Where the holder serves, when the store knows (PostgreSQL leases carry it, so a holder can
    /// be found while Redis, and the member list in it, cannot be read).
    pub address: Option<String>,
}

impl LeaseOwner {
    pub(crate) fn from_value(value: String, remaining: Duration) -> Self {
        Self {
            node: owner_node(&value).to_owned(),
            value,
            remaining,
            address: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another holder has the lease.
    #[error("lease held by node {}", .0.node)]
    Held(LeaseOwner),
    /// The lease store did not answer.
    #[error("lease store unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Redis went silent a moment ago: leases are granted from PostgreSQL once every Redis lease
    /// anyone held then has surely expired, in this long.
    #[error("lease store switching to PostgreSQL, grants resume in {0:?}")]
    NotYet(Duration),
    /// The lease manager's mailbox is closed or full (it is restarting).
    #[error("lease manager unavailable")]
    ManagerGone,
}

impl LeaseError {
    pub fn unavailable(error: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable(error.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_stay_inspectable() {
        assert_eq!(booking_key("", BookingId(123)), "lock:booking:123");
        assert_eq!(
            booking_key("test:x:", BookingId(1)),
            "test:x:lock:booking:1"
        );
        let value = lease_value("n1");
        assert_eq!(owner_node(&value), "n1");
        assert_eq!(owner_node("host-3000:abc"), "host-3000");
    }
}
