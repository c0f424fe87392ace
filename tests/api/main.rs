//! The integration suite: one binary, real PostgreSQL and Redis, many real HTTP requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod abuse;
mod authorization;
mod booking_actions;
mod concurrency;
mod create_booking;
mod draining;
mod drivers;
mod forwarding;
mod geo_edges;
mod geo_fallback;
mod hardening;
mod idempotency;
mod lease_fallback;
mod leases;
mod listing;
mod loadtest;
mod observability;
mod offers;
mod postgres_limits;
mod redis_refusals;
mod riders;
mod seed;
mod services;
mod startup;
mod streams;
mod tutorial_flow;
mod writer;
