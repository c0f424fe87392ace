//! The one harness of the integration suites: `tests/api`, `tests/cluster` and `tests/chaos` each
//! include it with `#[path = "../support/mod.rs"] mod support;`.
//!
//! - `app`: the in-process app (api suite): one node per test, on its own database and prefix.
//! - `cluster`: real `ridelock serve` processes (cluster and chaos suites), and `faults`, the
//!   faults inflicted on them; `services`, the chaos profile's servers those faults stop;
//!   `nginx`, the project's load balancer configuration in front of them.
//! - `reply`: a server's answer, as every suite reads it; `poll`: waiting for a condition.
//! - `fixtures`: the pickup, the lease TTL, request bodies, and the riders, drivers and bookings
//!   made through any of the above.
//! - `database`: test databases and the reads of them the suites share; `audit`: the
//!   invariants checked there (no driver in two bookings, one writer per fencing token…).
//! - `auth`, `metrics`, `proxy`, `redis_server`: tokens, `/metrics`, a cuttable TCP proxy to
//!   Redis, a Redis server of a test's own; `redis_client`, the tests' connection to Redis in
//!   the app's mode (one server or a Redis Cluster).
//! - `sse`: an event stream as a client reads it; `browser`: a headless Chromium showing a page.
//! - `netns`: network namespaces, one per node of a cluster, so that the chaos suite can
//!   partition the nodes from each other (iptables in a namespace) while they still reach the
//!   host's services and the client reaches them.
// Each suite uses a part of the harness.
#![allow(dead_code)]

pub mod app;
pub mod audit;
pub mod auth;
pub mod browser;
pub mod cluster;
pub mod database;
pub mod faults;
pub mod fixtures;
pub mod metrics;
pub mod netns;
pub mod nginx;
pub mod poll;
pub mod proxy;
pub mod redis_client;
pub mod redis_server;
pub mod reply;
pub mod services;
pub mod sse;
