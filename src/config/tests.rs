//! The rules of validation.rs, each against settings built here (no files, no environment).

use super::*;

fn auth(mode: AuthMode, secret: &str) -> AuthSettings {
    AuthSettings {
        mode,
        algorithm: "HS256".into(),
        secret: Secret::new(secret),
        public_key_path: String::new(),
        private_key_path: String::new(),
        issuer: "ridelock".into(),
        audience: "ridelock-api".into(),
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

#[test]
fn auth_off_is_accepted_in_the_local_profile_only() {
    let off = auth(AuthMode::Off, "");
    assert!(off.validate("local", true).is_ok());
    assert!(
        off.validate("local", false).is_err(),
        "off on a public address"
    );
    assert!(auth(AuthMode::Jwt, "dev-local-auth-secret")
        .validate("local", false)
        .is_err());
    for profile in ["test", "production", "staging"] {
        assert!(off.validate(profile, true).is_err(), "{profile}");
    }
}

#[test]
fn a_node_serving_other_machines_must_say_where_they_reach_it() {
    let node = |url: &str| NodeSettings {
        id: "n1".into(),
        advertise_url: url.into(),
    };
    assert!(node("").check_advertise_url("127.0.0.1", true).is_ok());
    let refused = node("").check_advertise_url("0.0.0.0", false);
    assert!(
        refused.is_err_and(|e| e.to_string().contains("node.advertise_url must be set")),
        "an empty advertise URL on 0.0.0.0"
    );
    assert!(node("https://n1.ridelock.internal/")
        .check_advertise_url("0.0.0.0", false)
        .is_err_and(|e| e.to_string().contains("plain HTTP")));
    for good in [
        "http://10.0.0.5:3000",
        "http://n1.ridelock.internal/",
        "http://[fd00::5]:3000",
    ] {
        assert!(
            node(good).check_advertise_url("0.0.0.0", false).is_ok(),
            "{good}"
        );
    }
    assert!(node("http://127.0.0.1:3001")
        .check_advertise_url("127.0.0.1", true)
        .is_ok());
    for bad in [
        "http://127.0.0.1:3000",
        "http://localhost:3000",
        "10.0.0.5:3000",
        "http://",
        "http://0.0.0.0:3000",
        "http://[::]:3000",
    ] {
        assert!(
            node(bad).check_advertise_url("0.0.0.0", false).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn every_profile_but_local_and_test_needs_private_secrets() {
    for profile in ["production", "staging", "prod", "dev", ""] {
        for secret in ["dev-test-auth-secret", "dev-local-auth-secret", "short"] {
            assert!(
                auth(AuthMode::Jwt, secret).validate(profile, true).is_err(),
                "{profile:?} {secret}"
            );
        }
    }
    for profile in ["local", "test"] {
        assert!(auth(AuthMode::Jwt, "dev-test-auth-secret")
            .validate(profile, true)
            .is_ok());
    }
}

#[test]
fn a_development_secondary_secret_is_refused_off_loopback() {
    let private = "k7Qw9zX2mN4pR8tV1yB6cF3hJ5lS0dGa";
    let mut settings = auth(AuthMode::Jwt, private);
    settings.secondary_secret = Secret::new("dev-test-auth-secret-previous");
    assert!(settings.validate("test", true).is_ok(), "on loopback");
    let refused = settings.validate("test", false);
    assert!(
        refused.is_err_and(|e| e.to_string().contains("auth.secondary_secret")),
        "a public secondary secret on a reachable address"
    );
    settings.secondary_secret = Secret::new("");
    assert!(
        settings.validate("test", false).is_ok(),
        "no secondary secret"
    );
}

#[test]
fn a_scrape_token_is_off_or_a_private_value() {
    let private = "k7Qw9zX2mN4pR8tV1yB6cF3hJ5lS0dGa";
    let mut settings = auth(AuthMode::Jwt, private);
    assert!(settings.validate("test", false).is_ok(), "off");
    settings.scrape_token = Secret::new("short");
    let refused = settings.validate("test", true);
    assert!(
        refused.is_err_and(|e| e.to_string().contains("auth.scrape_token")),
        "a guessable scrape token"
    );
    settings.scrape_token = Secret::new("p3Xr8Lq2Wn6Tz1Vb9Hs4Kd7Fm0Jc5Ya2E");
    assert!(settings.validate("test", false).is_ok(), "a private one");
}

#[test]
fn production_needs_a_private_auth_secret() {
    assert!(auth(AuthMode::Jwt, "").validate("test", true).is_err());
    assert!(auth(AuthMode::Jwt, "dev-test-auth-secret")
        .validate("test", true)
        .is_ok());
    assert!(auth(AuthMode::Jwt, "dev-test-auth-secret")
        .validate("production", true)
        .is_err());
    assert!(auth(AuthMode::Jwt, "short")
        .validate("production", true)
        .is_err());
    let private = "k7Qw9zX2mN4pR8tV1yB6cF3hJ5lS0dGa";
    assert!(auth(AuthMode::Jwt, private)
        .validate("production", true)
        .is_ok());
    let mut rs = auth(AuthMode::Jwt, "");
    rs.algorithm = "RS256".into();
    assert!(
        rs.validate("production", true).is_err(),
        "RS256 needs a public key"
    );
    rs.public_key_path = "/etc/ridelock/issuer.pem".into();
    assert!(rs.validate("production", true).is_ok());
    rs.algorithm = "none".into();
    assert!(rs.validate("test", true).is_err());
}

fn redis(mode: RedisMode, nodes: &str) -> RedisSettings {
    RedisSettings {
        mode,
        url: Secret::new("redis://127.0.0.1:6379/"),
        nodes: Secret::new(nodes),
        service_name: "ridelock".into(),
        key_prefix: String::new(),
        response_timeout_ms: 500,
    }
}

#[test]
fn redis_nodes_are_split_at_commas_and_required_beyond_single_mode() {
    let three = redis(
        RedisMode::Sentinel,
        " redis://:pw@127.0.0.1:1/, ,redis://:pw@127.0.0.1:2/,redis://:pw@127.0.0.1:3/ ",
    );
    assert_eq!(
        three.node_urls(),
        [
            "redis://:pw@127.0.0.1:1/",
            "redis://:pw@127.0.0.1:2/",
            "redis://:pw@127.0.0.1:3/"
        ]
    );
    assert!(three.check_nodes().is_ok());
    assert!(redis(RedisMode::Single, "").check_nodes().is_ok());
    for mode in [RedisMode::Sentinel, RedisMode::Cluster] {
        assert!(redis(mode, " , ").check_nodes().is_err(), "{mode:?}");
        assert!(
            redis(mode, "127.0.0.1:26392").check_nodes().is_err(),
            "{mode:?}: not a URL"
        );
    }
    let mut unnamed = redis(RedisMode::Sentinel, "redis://127.0.0.1:26392/");
    unnamed.service_name = " ".into();
    assert!(unnamed.check_nodes().is_err());
}
