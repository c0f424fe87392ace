//! What verifying a bearer token costs each request: HS256 and RS256 (2048-bit key from
//! `tests/fixtures`), and a refused token, against the same `Authenticator` the server uses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ridelock::auth::{mint, AuthMode, Authenticator, Principal};
use ridelock::config::{AuthSettings, Secret};

fn settings(algorithm: &str) -> AuthSettings {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    AuthSettings {
        mode: AuthMode::Jwt,
        algorithm: algorithm.to_owned(),
        secret: Secret::new("a-benchmark-secret-of-32-characters"),
        public_key_path: format!("{fixtures}/rs256-public.pem"),
        private_key_path: format!("{fixtures}/rs256-private.pem"),
        issuer: "ridelock".to_owned(),
        audience: "ridelock-api".to_owned(),
        leeway_secs: 30,
        token_ttl_secs: 3600,
        secondary_secret: Secret::new(""),
        secondary_public_key_path: String::new(),
        scrape_token: Secret::new(""),
        rider_max_ttl_secs: 86_400,
        driver_max_ttl_secs: 86_400,
        ops_max_ttl_secs: 3600,
    }
}

fn verify(c: &mut Criterion) {
    let rider = Principal::from_subject("rider:42").unwrap();
    let mut group = c.benchmark_group("auth");
    for algorithm in ["HS256", "RS256"] {
        let settings = settings(algorithm);
        let auth = Authenticator::from_settings(&settings).unwrap();
        let header = format!(
            "Bearer {}",
            mint(&settings, &rider, Duration::from_secs(3600)).unwrap()
        );
        group.bench_function(format!("verify_{algorithm}"), |b| {
            b.iter(|| auth.authenticate(Some(&header)).unwrap())
        });
    }
    let hs = Authenticator::from_settings(&settings("HS256")).unwrap();
    let forged = format!(
        "Bearer {}",
        mint(
            &AuthSettings {
                secret: Secret::new("not-the-secret-but-just-as-long!!"),
                ..settings("HS256")
            },
            &rider,
            Duration::from_secs(3600)
        )
        .unwrap()
    );
    group.bench_function("refuse_wrong_key_HS256", |b| {
        b.iter(|| hs.authenticate(Some(&forged)).unwrap_err())
    });
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
