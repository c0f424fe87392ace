//! Identifier newtypes, so a driver id can never be passed where a booking id is meant.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! int_id {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

int_id! {
    /// Primary key of a booking.
    BookingId,
    /// Primary key of a driver.
    DriverId,
    /// Primary key of a rider.
    RiderId,
}

/// Correlates every log line and audit event caused by one HTTP request (the `X-Request-ID`).
/// A client's own id is kept when it is printable and short; otherwise a UUID is generated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RequestId(Arc<str>);

impl RequestId {
    /// Longest client-supplied id we keep.
    pub(crate) const MAX_LEN: usize = 128;

    pub(crate) fn generate() -> Self {
        Self(Uuid::new_v4().to_string().into())
    }

    /// Accepts a client-supplied id made of `[A-Za-z0-9._:-]`, up to [`Self::MAX_LEN`] bytes.
    pub fn parse(value: &str) -> Option<Self> {
        let ok = !value.is_empty()
            && value.len() <= Self::MAX_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        ok.then(|| Self(value.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of one server instance, as configured in `node.id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct NodeId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_keeps_printable_client_ids_and_refuses_others() {
        assert_eq!(
            RequestId::parse("abc-123").map(|r| r.to_string()),
            Some("abc-123".into())
        );
        assert!(RequestId::parse("").is_none());
        assert!(RequestId::parse("has space").is_none());
        assert!(RequestId::parse(&"x".repeat(129)).is_none());
    }
}
