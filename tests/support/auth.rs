//! Bearer tokens signed with the test profile's auth secret (or a cluster's own, for nodes that
//! listen off loopback and so refuse the public one), for suites whose subject is not
//! authorization: their clients act as an operator, who may do everything.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use ridelock::auth::{mint, Principal};

/// A token for `subject` (`rider:1`, `driver:2`, `ops:tests`), valid for an hour.
pub fn token(subject: &str) -> String {
    token_signed_with(subject, None)
}

/// [`token`], signed with `secret` instead of the test profile's when there is one.
pub fn token_signed_with(subject: &str, secret: Option<&str>) -> String {
    let mut settings = ridelock::config::load_profile("test").expect("test profile");
    if let Some(secret) = secret {
        settings.auth.secret = ridelock::config::Secret::new(secret);
    }
    let principal = Principal::from_subject(subject).expect("a valid subject");
    mint(&settings.auth, &principal, Duration::from_secs(3600)).expect("mint a token")
}

/// `Authorization: Bearer <token>`.
pub fn bearer(subject: &str) -> HeaderMap {
    bearer_signed_with(subject, None)
}

fn bearer_signed_with(subject: &str, secret: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let token = token_signed_with(subject, secret);
    let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
    headers.insert(AUTHORIZATION, value);
    headers
}

/// The default headers of a test client that acts as an operator.
pub fn ops() -> HeaderMap {
    ops_signed_with(None)
}

/// [`ops`], signed with `secret` instead of the test profile's when there is one.
pub fn ops_signed_with(secret: Option<&str>) -> HeaderMap {
    bearer_signed_with("ops:tests", secret)
}
