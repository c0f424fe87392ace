//! The chaos suite: three real nodes on their own PostgreSQL and Redis (the `chaos` profile of
//! scripts/services.sh, which these tests stop and restart), each node reaching Redis through a
//! TCP proxy the test can cut, and riders and drivers living whole booking lifecycles over the
//! nodes round-robin while one fault at a time hits. During each fault, PostgreSQL's audit trail
//! is polled every 100 ms for a driver in two bookings at once; afterwards every invariant is
//! checked from PostgreSQL and the nodes' logs, and the scenario prints its figures
//! (`chaos scenario=...`). Each scenario also proves its fault happened: a stopped server
//! refuses a direct connection, a paused node's leases stay put while it sleeps.
//!
//! The world every scenario runs in is in `world` (and its driver watch in `watch`); the
//! scenarios are in one file per fault family: nodes, PostgreSQL, Redis, a Redis primary's
//! failover (on the `sentinel` and `rcluster` profiles), a partition between nodes (each node in
//! a network namespace of its own), contention, the soak, and the rolling upgrade and `kill -9`
//! through nginx (`upgrade`, the traffic sent to the load balancer only).
//!
//! `RIDELOCK_CHAOS_SOAK_SECS=600 cargo test --test chaos -- --ignored soak` runs the faults one
//! after another, at random, for that long.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;
mod traffic;
mod watch;
mod world;

mod contention;
mod node_faults;
mod partition;
mod postgres_faults;
mod redis_failover;
mod redis_faults;
mod soak;
mod upgrade;
