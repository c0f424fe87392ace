//! Per-caller rate limits: a token bucket per verified token subject, or per client address for
//! requests without a valid token (and for every request when authentication is off, where all
//! callers share one subject). Over its share, a request is answered 429 `rate_limited` with
//! `Retry-After` before any handler runs. Node-to-node calls (`/internal`) are not limited here:
//! the node that forwarded them counted the request already.
//!
//! Limits are per node: behind a load balancer spreading a caller over N nodes, the caller gets
//! up to N times its share. Memory is bounded: when a shard of the table reaches its part of
//! `max_callers`, full buckets are dropped (they say nothing a new one would not), and if every
//! caller in it is active, the one closest to full makes room: a flood of new callers can cost
//! an old one some of its debt, never make the table grow or lock new callers out. Shards are
//! picked with a per-process random hash key, so nobody can aim callers at one shard.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};

use crate::auth;
use crate::config::RateLimitSettings;
use crate::error::ApiError;

/// Who a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CallerKey {
    /// A verified token's subject.
    Subject(String),
    /// The client address; IPv6 addresses by their /64, which one client usually holds whole.
    Address(IpAddr),
}

/// A bucket's share: refill rate and size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Share {
    per_second: f64,
    burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Refills for the time since it was last seen, then takes a token if there is one; if
    /// not, how long until there is.
    fn take(&mut self, share: Share, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * share.per_second).min(share.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / share.per_second,
        ))
    }

    fn is_full(&self, share: Share, now: Instant) -> bool {
        self.fill(share, now) >= 1.0
    }

    /// How full the bucket is by now, 0 to 1.
    fn fill(&self, share: Share, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        ((self.tokens + elapsed * share.per_second) / share.burst).min(1.0)
    }
}

/// Shards of the bucket table, so callers on different workers rarely wait for each other.
const SHARDS: usize = 16;

pub struct RateLimiter {
    callers: Share,
    ops: Share,
    addresses: Share,
    /// Buckets kept per shard at most.
    per_shard: usize,
    /// Picks a key's shard; random per process.
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<CallerKey, Bucket>>>,
}

impl RateLimiter {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let share = |per_second: f64, burst: u32| Share {
            per_second,
            burst: f64::from(burst),
        };
        Self {
            callers: share(settings.per_second, settings.burst),
            ops: share(settings.ops_per_second, settings.ops_burst),
            addresses: share(settings.address_per_second, settings.address_burst),
            per_shard: (settings.max_callers / SHARDS).max(1),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// The share of `key`: an address's, an operator's (subject `ops:<name>`), or a rider's or
    /// driver's.
    fn share_of(&self, key: &CallerKey) -> Share {
        match key {
            CallerKey::Address(_) => self.addresses,
            CallerKey::Subject(s) if s.starts_with("ops:") => self.ops,
            CallerKey::Subject(_) => self.callers,
        }
    }

    /// Counts one request against `key`; `Err(wait)` when it is over its share.
    pub fn check(&self, key: CallerKey, now: Instant) -> Result<(), Duration> {
        let share = self.share_of(&key);
        let shard = &self.shards[self.hasher.hash_one(&key) as usize % SHARDS];
        let mut buckets = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.get_mut(&key) {
            return bucket.take(share, now);
        }
        if buckets.len() >= self.per_shard {
            // Full buckets are as good as none: forget them. Each key's own share decides.
            buckets.retain(|key, bucket| !bucket.is_full(self.share_of(key), now));
            if buckets.len() >= self.per_shard {
                // All active: the caller nearest to a full bucket, the least in debt, goes.
                let fullest = buckets
                    .iter()
                    .map(|(key, bucket)| (key, bucket.fill(self.share_of(key), now)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(key, _)| key.clone());
                if let Some(key) = fullest {
                    buckets.remove(&key);
                }
            }
        }
        let mut bucket = Bucket {
            tokens: share.burst,
            at: now,
        };
        let taken = bucket.take(share, now);
        buckets.insert(key, bucket);
        taken
    }
}

/// The key of a request's client address: the peer the connection came from (a proxy in
/// front of the node should pass the limit on to its own configuration).
fn address_key(req: &ServiceRequest) -> Option<CallerKey> {
    let ip = req.peer_addr()?.ip();
    Some(CallerKey::Address(match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        IpAddr::V6(v6) => IpAddr::V4(
            v6.to_ipv4_mapped()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        ),
        v4 => v4,
    }))
}

/// Middleware: counts the request against its caller and refuses it (429) when over its share.
/// The caller is verified here once ([`super::extract::caller`] keeps it with the request for the
/// handler); an unverified token counts against the address, never against the subject it
/// claims.
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let limiter = req.app_data::<actix_web::web::Data<RateLimiter>>().cloned();
    let Some(limiter) = limiter.filter(|_| !req.path().starts_with("/internal/")) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let anonymous = req
        .app_data::<actix_web::web::Data<auth::Authenticator>>()
        .is_none_or(|a| a.mode() == auth::AuthMode::Off);
    let verified = if anonymous {
        None
    } else {
        super::extract::caller(req.request()).ok()
    };
    let key = match &verified {
        Some(principal) => Some(CallerKey::Subject(principal.to_string())),
        None => address_key(&req),
    };
    if let Some(key) = key {
        if let Err(wait) = limiter.check(key, Instant::now()) {
            let retry_after = Duration::from_secs(wait.as_secs_f64().ceil().max(1.0) as u64);
            // A response, not an error, so the metrics and request-id layers see it too.
            let refusal = ApiError::RateLimited { retry_after }.error_response();
            return Ok(req.into_response(refusal).map_into_right_body());
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: u32, max_callers: usize) -> RateLimiter {
        RateLimiter::new(&RateLimitSettings {
            per_second,
            burst,
            ops_per_second: per_second * 10.0,
            ops_burst: burst * 10,
            address_per_second: per_second,
            address_burst: burst,
            max_callers,
        })
    }

    fn rider(n: u32) -> CallerKey {
        CallerKey::Subject(format!("rider:{n}"))
    }

    #[test]
    fn a_caller_gets_its_burst_then_its_rate() {
        let limiter = limiter(10.0, 5, 1000);
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.check(rider(1), start), Ok(()));
        }
        let wait = limiter.check(rider(1), start).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // Another caller is not affected; an operator has its own, larger share.
        assert_eq!(limiter.check(rider(2), start), Ok(()));
        let later = start + Duration::from_millis(100);
        assert_eq!(limiter.check(rider(1), later), Ok(()));
        assert!(limiter.check(rider(1), later).is_err());
        let ops = CallerKey::Subject("ops:x".into());
        for _ in 0..50 {
            assert_eq!(limiter.check(ops.clone(), start), Ok(()));
        }
    }

    #[test]
    fn the_table_stays_bounded_and_makes_room_from_the_least_indebted() {
        let limiter = limiter(1.0, 2, SHARDS * 4);
        let start = Instant::now();
        // One busy caller, then many that send once each.
        limiter.check(rider(0), start).unwrap();
        limiter.check(rider(0), start).unwrap();
        let mut refused = 0;
        for n in 1..1000 {
            if limiter.check(rider(n), start).is_err() {
                refused += 1;
            }
        }
        let kept: usize = limiter.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(kept <= SHARDS * 4, "{kept}");
        assert_eq!(refused, 0, "new callers are never locked out");
        // The busy caller, deepest in debt, was never the one to make room.
        assert!(limiter.check(rider(0), start).is_err());
    }
}
