//! Plain domain types and rules: no actix, diesel or redis here, so everything is unit-tested in place.

pub mod booking;
pub mod ids;
pub mod values;
