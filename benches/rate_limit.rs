//! What the per-caller rate limit costs each request: one bucket check, for a caller seen before
//! (the common case), and across 100,000 distinct callers (the table at its size).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use ridelock::config::RateLimitSettings;
use ridelock::http::rate_limit::{CallerKey, RateLimiter};

fn settings() -> RateLimitSettings {
    RateLimitSettings {
        per_second: 1e9,
        burst: 1_000_000_000,
        ops_per_second: 1e9,
        ops_burst: 1_000_000_000,
        address_per_second: 1e9,
        address_burst: 1_000_000_000,
        max_callers: 100_000,
    }
}

fn check(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit");
    let limiter = RateLimiter::new(&settings());
    let rider = CallerKey::Subject("rider:42".to_owned());
    group.bench_function("check_known_caller", |b| {
        b.iter(|| limiter.check(rider.clone(), Instant::now()).unwrap())
    });
    let many = RateLimiter::new(&settings());
    let keys: Vec<CallerKey> = (0..100_000)
        .map(|n| CallerKey::Subject(format!("rider:{n}")))
        .collect();
    for key in &keys {
        many.check(key.clone(), Instant::now()).unwrap();
    }
    let mut next = keys.iter().cycle();
    group.bench_function("check_among_100k_callers", |b| {
        b.iter(|| {
            let key = next.next().unwrap().clone();
            many.check(key, Instant::now()).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
