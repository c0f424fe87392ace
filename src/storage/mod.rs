//! PostgreSQL access: the system of record. Every function takes `&mut AsyncPgConnection`; the ones
//! that change a booking are conditional on the caller's fencing token, so a writer that lost its
//! lease changes nothing.

pub mod bookings;
pub(crate) mod drivers;
pub mod events;
pub mod idempotency;
pub(crate) mod models;
pub mod pool;
pub(crate) mod prepared;
pub(crate) mod riders;
#[rustfmt::skip]
pub(crate) mod schema;
pub mod writer;

pub(crate) use pool::PgPool;
pub use pool::StoreError;
