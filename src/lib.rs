//! RideLock: a booking-coordination server for ride-hailing. No booking is changed by two writers
//! at once and no driver is booked twice, on one node or many.
//!
//! # Layers
//! Each layer imports only the layers below it (`tests/layers.rs` checks every `crate::` path;
//! docs/architecture.md draws the same map and follows one request through it).
//!
//! 6. wiring: [`startup`] builds a node and serves it, [`seed`] the demo data (and `main.rs`).
//! 5. [`http`]: the actix-web adapter: parse, call, render; [`error`] is its one error type.
//! 4. [`cluster`]: where an action runs (the router), forwarding, the signed internal call and
//!    its replay check, header names, membership and the node heartbeat, the offer sweep.
//! 3. [`actors`]: one `BookingActor` per live booking, its registry, driver search.
//! 2. infrastructure: [`storage`] (PostgreSQL, fenced writes, the group-commit writer),
//!    [`lease`] (Redis leases, PostgreSQL fallback leases, the lease manager), [`redis_health`]
//!    (this node's view of Redis), [`geo`] (the Redis driver index, a search aid), all on
//!    [`redis_conn`] (the one Redis connection, in single, sentinel or cluster mode).
//! 1. base: [`domain`] (ids, values, the booking state machine, the one action type),
//!    [`config`], [`telemetry`], [`auth`] (tokens and rules), [`envelope`] (the success body).
//!
//! The load-test client is its own crate (`loadtest/`), which no layer imports.

// 6 wiring
pub mod seed;
pub mod startup;
// 5
pub(crate) mod error;
pub mod http;
// 4
pub mod cluster;
// 3
pub(crate) mod actors;
// 2 infrastructure
pub(crate) mod geo;
pub mod lease;
pub mod redis_conn;
pub(crate) mod redis_health;
pub mod storage;
pub mod streams;
// 1 base
pub mod auth;
pub mod config;
pub mod domain;
pub(crate) mod envelope;
pub mod telemetry;
