//! Lease round trips against the real Redis named by REDIS_URL (`make bench` starts it): what one
//! acquisition, renewal heartbeat and release cost, next to redis-benchmark's bare `SET NX PX`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ridelock::lease::redis::RedisLeases;
use ridelock::redis_conn::RedisConn;

const TTL: Duration = Duration::from_secs(10);

fn leases(c: &mut Criterion) {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:26379/".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let conn = runtime
        .block_on(redis::Client::open(url).unwrap().get_connection_manager())
        .expect("Redis at REDIS_URL");
    let store = RedisLeases::new(RedisConn::Single(conn));
    let prefix = format!("bench:{}:", uuid::Uuid::new_v4().simple());
    let next = AtomicU64::new(0);
    let fresh_key = || {
        format!(
            "{prefix}lock:booking:{}",
            next.fetch_add(1, Ordering::Relaxed)
        )
    };

    let mut group = c.benchmark_group("lease");
    group.bench_function("acquire", |b| {
        b.to_async(&runtime).iter(|| {
            let key = fresh_key();
            let store = &store;
            async move { store.acquire(&key, "bench:1", TTL).await.unwrap() }
        })
    });
    group.bench_function("acquire_then_release", |b| {
        b.to_async(&runtime).iter(|| {
            let key = fresh_key();
            let store = &store;
            async move {
                store.acquire(&key, "bench:1", TTL).await.unwrap();
                assert!(store.release(&key, "bench:1").await.unwrap());
            }
        })
    });
    for held in [1_usize, 100, 1000] {
        let batch: Vec<(String, String)> = (0..held)
            .map(|_| (fresh_key(), "bench:1".to_owned()))
            .collect();
        runtime.block_on(async {
            for (key, value) in &batch {
                store.acquire(key, value, TTL).await.unwrap();
            }
        });
        group.bench_with_input(
            BenchmarkId::new("renew_heartbeat", held),
            &batch,
            |b, batch| {
                b.to_async(&runtime)
                    .iter(|| async { store.renew_all(batch, TTL).await.unwrap() })
            },
        );
        runtime.block_on(async {
            for (key, value) in &batch {
                store.release(key, value).await.unwrap();
            }
        });
    }
    group.finish();
}

criterion_group!(benches, leases);
criterion_main!(benches);
