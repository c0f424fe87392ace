//! Who is calling. Every API request except health and the OpenAPI document carries a bearer JWT
//! (HS256 under a shared secret, or RS256 under a public key) whose subject names the caller:
//! `rider:<id>`, `driver:<id>` or `ops:<name>`. The service verifies tokens; it issues none
//! except through `ridelock token`, for development and tests. [`rules`] says what each caller
//! may do.
//!
//! `auth.mode = "off"` (the local profile only) trusts every caller as an operator, so the
//! tutorial's curl commands work unchanged on `make run`.

pub(crate) mod rules;
mod token;

use std::fmt;

pub use token::{mint, Authenticator};

pub use crate::config::AuthMode;
use crate::domain::ids::{DriverId, RiderId};

/// The caller a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Rider(RiderId),
    Driver(DriverId),
    /// Operations staff, and every caller when authentication is off.
    Ops(String),
}

impl Principal {
    /// Parses a token subject: `rider:<id>`, `driver:<id>` (positive integers) or `ops:<name>`.
    pub fn from_subject(subject: &str) -> Option<Self> {
        let (kind, rest) = subject.split_once(':')?;
        let id = || rest.parse::<i64>().ok().filter(|id| *id > 0);
        match kind {
            "rider" => id().map(|id| Self::Rider(RiderId(id))),
            "driver" => id().map(|id| Self::Driver(DriverId(id))),
            "ops" if valid_ops_name(rest) => Some(Self::Ops(rest.to_owned())),
            _ => None,
        }
    }

    pub(crate) fn is_ops(&self) -> bool {
        matches!(self, Self::Ops(_))
    }
}

fn valid_ops_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The subject as written in a token; also the scope of the caller's idempotency keys.
impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rider(id) => write!(f, "rider:{id}"),
            Self::Driver(id) => write!(f, "driver:{id}"),
            Self::Ops(name) => write!(f, "ops:{name}"),
        }
    }
}

/// Why a request could not be authenticated; every one is a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("An Authorization: Bearer token is required")]
    Missing,
    #[error("The Authorization header is not a bearer JWT")]
    Malformed,
    #[error("The token has expired")]
    Expired,
    #[error("The token is not valid yet (nbf, or iat in the future)")]
    NotYetValid,
    #[error("The token lives longer than this service accepts for its role")]
    TooLong,
    #[error("The token is not valid: bad signature, issuer, audience, subject or claims")]
    Invalid,
}

impl AuthError {
    pub fn code(self) -> &'static str {
        match self {
            Self::Missing => "missing_token",
            Self::Malformed => "malformed_token",
            Self::Expired => "expired_token",
            Self::NotYetValid => "token_not_yet_valid",
            Self::TooLong => "token_lifetime_too_long",
            Self::Invalid => "invalid_token",
        }
    }
}

/// A caller refused by a rule of [`rules`]: a 403 naming the rule (`code`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forbidden {
    pub code: &'static str,
    pub message: String,
}

/// Whether `a` and `b` are equal, in a time that depends on their length only (for comparing a
/// secret a caller sent with the configured one).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_one_caller() {
        assert_eq!(
            Principal::from_subject("rider:12"),
            Some(Principal::Rider(RiderId(12)))
        );
        assert_eq!(
            Principal::from_subject("driver:3"),
            Some(Principal::Driver(DriverId(3)))
        );
        assert_eq!(
            Principal::from_subject("ops:alice"),
            Some(Principal::Ops("alice".into()))
        );
        for bad in [
            "rider:0",
            "rider:-1",
            "rider:1.5",
            "rider:",
            "driver:x",
            "ops:",
            "ops:a b",
            "admin:1",
            "rider",
            "",
        ] {
            assert_eq!(Principal::from_subject(bad), None, "{bad}");
        }
        assert_eq!(Principal::Rider(RiderId(12)).to_string(), "rider:12");
    }
}
