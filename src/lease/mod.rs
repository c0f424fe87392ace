//! Only the holder of a booking's lease may write it. This module is the only code that talks to
//! Redis about ownership: [`redis::RedisLeases`] speaks the protocol (`SET NX PX`, check-and-renew,
//! check-and-delete), and the per-node [`manager::LeaseManager`] actor holds the leases, renews
//! them all on one heartbeat and tells a booking actor at once when its lease is lost.
//! Leases give fast mutual exclusion; safety rests on the fencing tokens in PostgreSQL.

pub mod manager;
pub mod redis;
pub mod store;

use std::time::Duration;

use crate::domain::ids::BookingId;

/// The Redis key of a booking's lease: `<prefix>lock:booking:<id>`.
pub fn booking_key(prefix: &str, id: BookingId) -> String {
    format!("{prefix}lock:booking:{id}")
}

/// The value stored under a lease key, `<node_id>:<uuid>`, so `GET` says who holds it.
pub fn lease_value(node_id: &str) -> String {
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
}

impl LeaseOwner {
    pub fn from_value(value: String, remaining: Duration) -> Self {
        Self {
            node: owner_node(&value).to_owned(),
            value,
            remaining,
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
    Unavailable(#[source] ::redis::RedisError),
    /// The lease manager's mailbox is closed or full (it is restarting).
    #[error("lease manager unavailable")]
    ManagerGone,
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
