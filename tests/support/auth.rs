//! Bearer tokens signed with the test profile's auth secret, for suites whose subject is not
//! authorization: their clients act as an operator, who may do everything.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use ridelock::auth::{mint, Principal};

/// A token for `subject` (`rider:1`, `driver:2`, `ops:tests`), valid for an hour.
pub fn token(subject: &str) -> String {
    let settings = ridelock::config::load_profile("test").expect("test profile");
    let principal = Principal::from_subject(subject).expect("a valid subject");
    mint(&settings.auth, &principal, Duration::from_secs(3600)).expect("mint a token")
}

/// `Authorization: Bearer <token>`.
pub fn bearer(subject: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Bearer {}", token(subject))).expect("header");
    headers.insert(AUTHORIZATION, value);
    headers
}

/// The default headers of a test client that acts as an operator.
pub fn ops() -> HeaderMap {
    bearer("ops:tests")
}
