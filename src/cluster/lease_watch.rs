//! Watching a booking's lease until it moves: how a node waiting on an owner that does not
//! answer learns that the lease was released, expired or taken over (`router`), or that its
//! holder keeps it.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::lease::failover::Leases;
use crate::lease::LeaseOwner;

/// First step of the lease watch's backoff, and its ceiling: a waiter notices a released lease
/// within a fifth of a second, whatever the TTL.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// What became of a watched lease.
pub(super) enum LeaseNews {
    /// It no longer carries the watched value (released, expired or taken over): its new
    /// holder, if any.
    Moved(Option<LeaseOwner>),
    /// It still carries the watched value past the instant the watch was given: renewed by a
    /// holder that is alive, or outlasting what the watcher can wait.
    Kept,
}

/// Resolves once `key` no longer carries `value` (released, expired or taken over), with its
/// new holder if any; or, given `kept_past`, once it still carries `value` but expires after
/// that instant. Polls after `first_check`, then with exponential backoff and full jitter (at
/// most [`MAX_BACKOFF`]), each sleep capped by the key's remaining TTL so an expiry is noticed
/// within a poll of happening. A Redis error counts as "no news": the caller's deadline bounds
/// the wait.
pub(super) async fn lease_moves(
    leases: &Leases,
    key: &str,
    value: String,
    first_check: Duration,
    kept_past: Option<Instant>,
) -> LeaseNews {
    tokio::time::sleep(first_check).await;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let remaining = match leases.holder(key).await {
            Ok(Some(now)) if now.value == value => now.remaining,
            Ok(other) => return LeaseNews::Moved(other),
            Err(_) => Duration::ZERO,
        };
        if kept_past.is_some_and(|past| Instant::now() + remaining > past) {
            return LeaseNews::Kept;
        }
        let jitter = rand::rng().random_range(Duration::ZERO..=backoff);
        let wait = if remaining.is_zero() {
            jitter
        } else {
            jitter.min(remaining + Duration::from_millis(1))
        };
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
