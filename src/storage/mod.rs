//! PostgreSQL access: the system of record. Every function takes `&mut AsyncPgConnection`; the ones
//! that change a booking are conditional on the caller's fencing token, so a writer that lost its
//! lease changes nothing.

pub mod bookings;
pub mod drivers;
pub mod idempotency;
pub mod models;
pub mod pool;
pub mod prepared;
pub mod riders;
#[rustfmt::skip]
pub mod schema;
pub mod writer;

pub use pool::{PgPool, StoreError};
