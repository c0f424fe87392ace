//! Plain domain types and rules: no actix, diesel or redis here, so everything is unit-tested in
//! place.

pub(crate) mod action;
pub mod booking;
#[cfg(test)]
mod booking_properties;
pub mod ids;
pub mod status;
pub mod values;
