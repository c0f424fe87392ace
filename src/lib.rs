//! RideLock: a booking-coordination server for ride-hailing. No booking is changed by two writers
//! at once and no driver is booked twice, on one node or many.
//!
//! # Layout
//! - [`http`]: actix-web routes, wire DTOs, the request-id middleware.
//! - [`actors`]: one `BookingActor` per live booking and the registry that finds or starts it.
//! - [`cluster`]: node membership in Redis (`/api/cluster/nodes`).
//! - [`lease`]: Redis leases and the per-node `LeaseManager` that renews them on one heartbeat.
//! - [`geo`]: the Redis geo index of available drivers (a search aid, never the truth).
//! - [`storage`]: PostgreSQL, the system of record; every booking write is fenced by token.
//! - [`domain`]: ids, validated values and the booking state machine, free of I/O.
//! - [`config`], [`telemetry`], [`error`], [`startup`], [`seed`]: wiring.

pub mod actors;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod error;
pub mod geo;
pub mod http;
pub mod lease;
pub mod seed;
pub mod startup;
pub mod storage;
pub mod telemetry;
