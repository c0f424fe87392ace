//! Which tokens are good at all: every kind of bad token is a 401 and writes nothing; RS256
//! keys, key rotation and auth off; what needs no token; and `ridelock token`, which mints no
//! token the server would refuse.

use std::time::Duration;

use reqwest::Method;
use ridelock::auth::{mint, AuthMode, Principal};
use ridelock::config::Secret;
use serde_json::{json, Value};

use crate::support::app::{spawn_app, spawn_app_with};
use crate::support::fixtures::{booking_body, Api, PICKUP};

/// A token with these claims, signed with `secret`.
fn signed(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[actix_web::test]
async fn missing_malformed_expired_and_wrongly_signed_tokens_are_401() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let auth = app.settings().auth;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = |sub: &str, iss: &str, aud: &str, exp: u64| json!({ "sub": sub, "iss": iss, "aud": aud, "exp": exp, "iat": now });
    let (iss, aud, secret) = (
        auth.issuer.as_str(),
        auth.audience.as_str(),
        auth.secret.expose(),
    );
    let me = format!("rider:{rider}");
    let bearer = |token: String| Some(format!("Bearer {token}"));
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no header", None, "missing_token"),
        (
            "basic auth",
            Some("Basic cmlkZXI6MQ==".into()),
            "malformed_token",
        ),
        ("not a JWT", Some("Bearer hello".into()), "malformed_token"),
        (
            "garbage JWT",
            Some("Bearer a.b.c".into()),
            "malformed_token",
        ),
        (
            "expired",
            bearer(signed(claims(&me, iss, aud, now - 120), secret)),
            "expired_token",
        ),
        (
            "wrong key",
            bearer(signed(claims(&me, iss, aud, now + 600), "not-the-secret")),
            "invalid_token",
        ),
        (
            "wrong issuer",
            bearer(signed(claims(&me, "evil", aud, now + 600), secret)),
            "invalid_token",
        ),
        (
            "wrong audience",
            bearer(signed(claims(&me, iss, "other-api", now + 600), secret)),
            "invalid_token",
        ),
        (
            "unknown subject",
            bearer(signed(claims("admin:1", iss, aud, now + 600), secret)),
            "invalid_token",
        ),
        (
            "no subject",
            bearer(signed(
                json!({ "iss": iss, "aud": aud, "exp": now + 600 }),
                secret,
            )),
            "invalid_token",
        ),
        (
            "an ops token for ten years",
            bearer(signed(
                claims("ops:root", iss, aud, now + 315_360_000),
                secret,
            )),
            "token_lifetime_too_long",
        ),
        (
            "a rider token for ten years, without iat",
            bearer(signed(
                json!({ "sub": me, "iss": iss, "aud": aud, "exp": now + 315_360_000 }),
                secret,
            )),
            "token_lifetime_too_long",
        ),
        (
            "not before an hour from now",
            bearer(signed(
                json!({ "sub": me, "iss": iss, "aud": aud, "exp": now + 7200, "iat": now, "nbf": now + 3600 }),
                secret,
            )),
            "token_not_yet_valid",
        ),
        (
            "issued an hour from now",
            bearer(signed(
                json!({ "sub": me, "iss": iss, "aud": aud, "exp": now + 7200, "iat": now + 3600 }),
                secret,
            )),
            "token_not_yet_valid",
        ),
    ];
    let before = app.fingerprint().await;

    // Act + Assert: a read and a write, for every bad token.
    for (case, header, code) in cases {
        for (method, path, body) in [
            (Method::GET, format!("/api/riders/{rider}"), None),
            (
                Method::POST,
                "/api/bookings".to_owned(),
                Some(booking_body(rider, PICKUP.0, PICKUP.1)),
            ),
        ] {
            let reply = app.as_caller(header.as_deref(), method, &path, body).await;
            assert_eq!(
                (reply.status.as_u16(), reply.error()),
                (401, code),
                "{case}: {:#}",
                reply.body
            );
            assert_eq!(
                reply.challenge.as_deref(),
                Some("Bearer realm=\"ridelock\""),
                "{case}"
            );
        }
    }
    assert_eq!(app.fingerprint().await, before);
    // The same rider with a good token.
    app.as_subject(&me, Method::GET, format!("/api/riders/{rider}"), None)
        .await
        .expect(200, None);
}

#[actix_web::test]
async fn health_and_the_openapi_document_need_no_token() {
    let app = spawn_app().await;
    let health = app.as_caller(None, Method::GET, "/api/health", None).await;
    health.expect(200, None);
    assert_eq!(health.body["auth"], json!("jwt"));
}

#[actix_web::test]
async fn rs256_tokens_are_verified_with_the_public_key_and_hs256_ones_refused() {
    // Arrange
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let app = spawn_app_with(|s| {
        s.auth.algorithm = "RS256".into();
        s.auth.public_key_path = format!("{fixtures}/rs256-public.pem");
        s.auth.private_key_path = format!("{fixtures}/rs256-private.pem");
    })
    .await;
    let mut rs256 = app.settings().auth;
    rs256.algorithm = "RS256".into();
    rs256.private_key_path = format!("{fixtures}/rs256-private.pem");
    let ops = Principal::Ops("support".into());
    let good = mint(&rs256, &ops, Duration::from_secs(60)).unwrap();
    let hs256 = crate::support::auth::token("ops:support");

    // Act
    let accepted = app
        .as_caller(
            Some(&format!("Bearer {good}")),
            Method::GET,
            "/api/drivers",
            None,
        )
        .await;
    let refused = app
        .as_caller(
            Some(&format!("Bearer {hs256}")),
            Method::GET,
            "/api/drivers",
            None,
        )
        .await;

    // Assert
    accepted.expect(200, None);
    refused.expect(401, Some("invalid_token"));
}

#[actix_web::test]
async fn with_auth_off_every_caller_is_an_operator_and_health_says_so() {
    // Arrange: what the local profile does.
    let app = spawn_app_with(|s| s.auth.mode = AuthMode::Off).await;

    // Act
    let created = app
        .as_caller(
            None,
            Method::POST,
            "/api/riders",
            Some(json!({ "name": "Tutorial", "phone": "+1 555 0199" })),
        )
        .await;
    let health = app.as_caller(None, Method::GET, "/api/health", None).await;

    // Assert
    created.expect(201, None);
    assert_eq!(health.body["auth"], json!("off"));
    assert!(health.body["message"]
        .as_str()
        .unwrap()
        .contains("authentication is off"));
}

#[actix_web::test]
async fn during_a_key_rotation_tokens_of_either_key_are_accepted_and_no_other() {
    // Arrange: a node that also accepts the next key.
    let next = "the-next-test-auth-secret-32-chars!";
    let app = spawn_app_with(|s| s.auth.secondary_secret = Secret::new(next)).await;
    let rider = app.rider().await;
    let auth = app.settings().auth;
    let now = jsonwebtoken::get_current_timestamp();
    let token = |key: &str| {
        let claims = json!({
            "sub": format!("rider:{rider}"), "iss": auth.issuer, "aud": auth.audience,
            "exp": now + 600, "iat": now,
        });
        format!("Bearer {}", signed(claims, key))
    };
    let path = format!("/api/riders/{rider}");

    // Act + Assert
    for (key, status) in [
        (auth.secret.expose(), 200),
        (next, 200),
        ("some-other-secret-of-thirty-two-chars", 401),
    ] {
        app.as_caller(Some(&token(key)), Method::GET, &path, None)
            .await
            .expect(status, None);
    }
}

#[test]
fn ridelock_token_refuses_a_lifetime_the_server_would_refuse() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ridelock"))
            .arg("token")
            .args(args)
            .env("RIDELOCK_ENV", "test")
            .output()
            .unwrap()
    };
    let forever = run(&["ops", "root", "--ttl-secs", "315360000"]);
    assert!(!forever.status.success());
    let said = String::from_utf8_lossy(&forever.stderr);
    assert!(said.contains("at most 3600 s"), "{said}");
    assert!(run(&["ops", "root", "--ttl-secs", "600"]).status.success());
    assert!(run(&["rider", "1", "--ttl-secs", "86400"]).status.success());
}
