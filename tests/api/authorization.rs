//! Who may do what (README, "Authorization"): every rule of the table is broken once here, by a
//! real token against a real server, and every refusal writes nothing. 401 for every kind of bad
//! token; 403 naming the rule for a good token asking for what it may not do.

use std::time::Duration;

use reqwest::Method;
use ridelock::auth::{mint, AuthMode, Principal};
use ridelock::config::Secret;
use serde_json::{json, Value};

use crate::support::app::{spawn_app, spawn_app_with, TestApp};
use crate::support::fixtures::{booking_body, Api, PICKUP};
use crate::support::reply::Reply;

/// Two riders, two online drivers, and rider A's booking assigned to driver 1.
struct World {
    app: TestApp,
    rider_a: i64,
    rider_b: i64,
    driver_1: i64,
    driver_2: i64,
    /// Rider A's, assigned to driver 1.
    booking: i64,
    /// Rider A's, pending: no driver yet.
    pending: i64,
}

async fn world() -> World {
    let app = spawn_app().await;
    let (rider_a, rider_b) = (app.rider().await, app.rider().await);
    let driver_1 = app.online_driver(PICKUP.0, PICKUP.1).await;
    let driver_2 = app.online_driver(PICKUP.0 + 0.02, PICKUP.1).await;
    let booking = app.booking(rider_a, PICKUP.0, PICKUP.1).await;
    app.post(format!("/api/bookings/{booking}/assign"), json!(null))
        .await
        .expect(200, None);
    let pending = app.booking(rider_a, PICKUP.0 + 0.5, PICKUP.1).await;
    World {
        app,
        rider_a,
        rider_b,
        driver_1,
        driver_2,
        booking,
        pending,
    }
}

/// One request by `subject` that must be refused with 403 `code`.
struct Refusal {
    subject: String,
    method: Method,
    path: String,
    body: Option<Value>,
    code: &'static str,
}

fn refused(
    subject: String,
    method: Method,
    path: String,
    body: Option<Value>,
    code: &'static str,
) -> Refusal {
    Refusal {
        subject,
        method,
        path,
        body,
        code,
    }
}

/// Sends every refusal and checks its 403, its code, and that nothing was written.
async fn assert_refused(app: &TestApp, cases: Vec<Refusal>) {
    let before = app.fingerprint().await;
    for case in cases {
        let reply = app
            .as_subject(&case.subject, case.method.clone(), &case.path, case.body)
            .await;
        assert_eq!(
            (reply.status.as_u16(), reply.error()),
            (403, case.code),
            "{} {} {}: {:#}",
            case.subject,
            case.method,
            case.path,
            reply.body
        );
        assert!(reply.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(
            reply.body.get("data").is_none(),
            "a 403 tells nothing about the booking: {:#}",
            reply.body
        );
    }
    assert_eq!(app.fingerprint().await, before, "a refusal wrote something");
}

#[actix_web::test]
async fn riders_and_drivers_may_not_use_what_needs_an_ops_token() {
    // Arrange
    let w = world().await;
    let mut cases = Vec::new();
    for subject in [
        format!("rider:{}", w.rider_a),
        format!("driver:{}", w.driver_1),
    ] {
        let new = json!({ "name": "Someone", "phone": "+1 555 0100" });
        cases.push(refused(
            subject.clone(),
            Method::POST,
            "/api/riders".into(),
            Some(new.clone()),
            "ops_required",
        ));
        cases.push(refused(
            subject.clone(),
            Method::POST,
            "/api/drivers".into(),
            Some(new),
            "ops_required",
        ));
        for path in [
            "/api/drivers",
            "/api/locks/stats",
            "/api/cluster/nodes",
            "/metrics",
        ] {
            cases.push(refused(
                subject.clone(),
                Method::GET,
                path.into(),
                None,
                "ops_required",
            ));
        }
    }

    // Act + Assert
    assert_refused(&w.app, cases).await;
    for path in ["/api/drivers", "/api/locks/stats", "/api/cluster/nodes"] {
        let reply = w
            .app
            .as_subject("ops:support", Method::GET, path, None)
            .await;
        reply.expect(200, None);
    }
}

#[actix_web::test]
async fn a_rider_acts_only_for_itself_and_reads_only_its_own() {
    // Arrange
    let w = world().await;
    let (a, b, booking) = (w.rider_a, w.rider_b, w.booking);
    let stranger = format!("rider:{b}");
    let cases = vec![
        // Body ids must match the token.
        refused(
            stranger.clone(),
            Method::POST,
            "/api/bookings".into(),
            Some(booking_body(a, PICKUP.0, PICKUP.1)),
            "subject_mismatch",
        ),
        refused(
            stranger.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/cancel"),
            Some(json!({ "reason": "x", "user_id": a, "user_type": "rider" })),
            "subject_mismatch",
        ),
        refused(
            stranger.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/cancel"),
            Some(json!({ "reason": "x", "user_id": w.driver_1, "user_type": "driver" })),
            "subject_mismatch",
        ),
        // A body naming itself is checked against the booking's parties.
        refused(
            stranger.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/cancel"),
            Some(json!({ "reason": "x", "user_id": b, "user_type": "rider" })),
            "not_booking_party",
        ),
        refused(
            stranger.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/assign"),
            None,
            "not_booking_party",
        ),
        // Reads.
        refused(
            stranger.clone(),
            Method::GET,
            format!("/api/bookings/{booking}"),
            None,
            "not_booking_party",
        ),
        refused(
            stranger.clone(),
            Method::GET,
            format!("/api/bookings/{booking}/events"),
            None,
            "not_booking_party",
        ),
        refused(
            stranger.clone(),
            Method::GET,
            format!("/api/users/{a}/bookings"),
            None,
            "subject_mismatch",
        ),
        refused(
            stranger.clone(),
            Method::GET,
            format!("/api/users/{b}/bookings?user_type=driver"),
            None,
            "subject_mismatch",
        ),
        refused(
            stranger.clone(),
            Method::GET,
            format!("/api/riders/{a}"),
            None,
            "subject_mismatch",
        ),
        // Riders are not drivers.
        refused(
            stranger.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/accept"),
            Some(json!({ "driver_id": w.driver_1 })),
            "subject_mismatch",
        ),
        refused(
            stranger.clone(),
            Method::GET,
            format!("/api/drivers/{}", w.driver_1),
            None,
            "subject_mismatch",
        ),
        refused(
            stranger,
            Method::PATCH,
            format!("/api/drivers/{}/status", w.driver_1),
            Some(json!({ "status": "offline" })),
            "subject_mismatch",
        ),
    ];

    // Act + Assert: every refusal, then the owner may do the same things.
    assert_refused(&w.app, cases).await;
    let owner = format!("rider:{a}");
    for path in [
        format!("/api/bookings/{booking}"),
        format!("/api/bookings/{booking}/events"),
        format!("/api/users/{a}/bookings"),
        format!("/api/riders/{a}"),
    ] {
        w.app
            .as_subject(&owner, Method::GET, &path, None)
            .await
            .expect(200, None);
    }
    let mine = w
        .app
        .as_subject(
            &owner,
            Method::POST,
            "/api/bookings",
            Some(booking_body(a, PICKUP.0, PICKUP.1)),
        )
        .await;
    mine.expect(201, None);
    let mine = mine.data()["id"].as_i64().unwrap();
    w.app
        .as_subject(
            &owner,
            Method::POST,
            format!("/api/bookings/{mine}/assign"),
            None,
        )
        .await
        .expect(200, None);
    let cancel = json!({ "reason": "changed plans", "user_id": a, "user_type": "rider" });
    w.app
        .as_subject(
            &owner,
            Method::POST,
            format!("/api/bookings/{booking}/cancel"),
            Some(cancel),
        )
        .await
        .expect(200, None);
}

#[actix_web::test]
async fn a_driver_acts_only_on_itself_and_its_assigned_bookings() {
    // Arrange
    let w = world().await;
    let (d1, d2, booking) = (w.driver_1, w.driver_2, w.booking);
    let other = format!("driver:{d2}");
    let cases = vec![
        refused(
            other.clone(),
            Method::POST,
            format!("/api/drivers/{d1}/location"),
            Some(json!({ "lat": 40.7, "lng": -74.0 })),
            "subject_mismatch",
        ),
        refused(
            other.clone(),
            Method::PATCH,
            format!("/api/drivers/{d1}/status"),
            Some(json!({ "status": "offline" })),
            "subject_mismatch",
        ),
        refused(
            other.clone(),
            Method::GET,
            format!("/api/drivers/{d1}"),
            None,
            "subject_mismatch",
        ),
        // Body ids must match the token ...
        refused(
            other.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/accept"),
            Some(json!({ "driver_id": d1 })),
            "subject_mismatch",
        ),
        refused(
            other.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/complete"),
            Some(json!({ "driver_id": d1, "actual_fare": 10.0 })),
            "subject_mismatch",
        ),
        refused(
            other.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/cancel"),
            Some(json!({ "reason": "x", "user_id": d1, "user_type": "driver" })),
            "subject_mismatch",
        ),
        // ... and then only the assigned driver may act.
        refused(
            other.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/accept"),
            Some(json!({ "driver_id": d2 })),
            "not_assigned_driver",
        ),
        // A booking with no driver yet is not theirs either, and tells them nothing.
        refused(
            other.clone(),
            Method::POST,
            format!("/api/bookings/{}/accept", w.pending),
            Some(json!({ "driver_id": d2 })),
            "not_assigned_driver",
        ),
        refused(
            other.clone(),
            Method::POST,
            format!("/api/bookings/{}/complete", w.pending),
            Some(json!({ "driver_id": d2, "actual_fare": 10.0 })),
            "not_assigned_driver",
        ),
        refused(
            other.clone(),
            Method::POST,
            format!("/api/bookings/{booking}/cancel"),
            Some(json!({ "reason": "x", "user_id": d2, "user_type": "driver" })),
            "not_booking_party",
        ),
        // Drivers do not assign, and read only the bookings assigned to them.
        refused(
            format!("driver:{d1}"),
            Method::POST,
            format!("/api/bookings/{booking}/assign"),
            None,
            "not_booking_party",
        ),
        refused(
            other.clone(),
            Method::GET,
            format!("/api/bookings/{booking}"),
            None,
            "not_booking_party",
        ),
        refused(
            other.clone(),
            Method::GET,
            format!("/api/bookings/{booking}/events"),
            None,
            "not_booking_party",
        ),
        refused(
            other.clone(),
            Method::GET,
            format!("/api/users/{d1}/bookings?user_type=driver"),
            None,
            "subject_mismatch",
        ),
        refused(
            other,
            Method::POST,
            "/api/bookings".into(),
            Some(booking_body(w.rider_a, PICKUP.0, PICKUP.1)),
            "subject_mismatch",
        ),
    ];

    // Act + Assert
    assert_refused(&w.app, cases).await;
    let me = format!("driver:{d1}");
    for path in [
        format!("/api/bookings/{booking}"),
        format!("/api/users/{d1}/bookings?user_type=driver"),
        format!("/api/drivers/{d1}"),
    ] {
        w.app
            .as_subject(&me, Method::GET, &path, None)
            .await
            .expect(200, None);
    }
    w.app
        .as_subject(
            &me,
            Method::POST,
            format!("/api/bookings/{booking}/accept"),
            Some(json!({ "driver_id": d1 })),
        )
        .await
        .expect(200, None);
    w.app
        .as_subject(
            &me,
            Method::POST,
            format!("/api/bookings/{booking}/complete"),
            Some(json!({ "driver_id": d1, "actual_fare": 12.0 })),
        )
        .await
        .expect(200, None);
    w.app
        .as_subject(
            &me,
            Method::POST,
            format!("/api/drivers/{d1}/location"),
            Some(json!({ "lat": 40.71, "lng": -74.0 })),
        )
        .await
        .expect(200, None);
}

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
async fn the_same_idempotency_key_from_two_riders_makes_two_bookings() {
    // Arrange
    let app = spawn_app().await;
    let (a, b) = (app.rider().await, app.rider().await);
    let send = |rider: i64| {
        let token = crate::support::auth::token(&format!("rider:{rider}"));
        let app = &app;
        async move {
            let request = app
                .client
                .post(format!("{}/api/bookings", app.address))
                .bearer_auth(token)
                .header("Idempotency-Key", "shared-key-1")
                .json(&booking_body(rider, PICKUP.0, PICKUP.1));
            let reply = Reply::send(request).await.unwrap();
            (reply.status.as_u16(), reply.data()["rider_id"].as_i64())
        }
    };

    // Act
    let (first, second) = (send(a).await, send(b).await);

    // Assert: each rider got its own booking, not the other's stored answer.
    assert_eq!(first, (201, Some(a)));
    assert_eq!(second, (201, Some(b)));
}

#[actix_web::test]
async fn nearby_shows_riders_and_drivers_the_car_not_the_person() {
    // Arrange: driver 1 is busy with the booking, driver 2 is online nearby.
    let w = world().await;
    let path = format!(
        "/api/drivers/nearby?lat={}&lng={}&radius=5",
        PICKUP.0, PICKUP.1
    );

    // Act
    let rider = w
        .app
        .as_subject(&format!("rider:{}", w.rider_b), Method::GET, &path, None)
        .await;
    let ops = w.app.get(&path).await;

    // Assert: no id or person, the position on the 0.002° grid, the distance to 0.1 km.
    rider.expect(200, None);
    let car = &rider.data()[0];
    for personal in ["id", "name", "phone", "email", "current_booking_id"] {
        assert!(car.get(personal).is_none(), "{personal} shown: {car:#}");
    }
    for coordinate in ["lat", "lng"] {
        let steps = car[coordinate].as_f64().unwrap() / 0.002;
        assert!(
            (steps - steps.round()).abs() < 1e-6,
            "{coordinate}: {car:#}"
        );
    }
    let tenths = car["distance"].as_f64().unwrap() * 10.0;
    assert!((tenths - tenths.round()).abs() < 1e-9, "{car:#}");
    ops.expect(200, None);
    let exact = &ops.data()[0];
    assert_eq!(exact["id"], json!(w.driver_2));
    assert!(exact["name"].is_string() && exact["phone"].is_string());
    assert_eq!(exact["lat"], json!(PICKUP.0 + 0.02));
}

/// The booking's trail as PostgreSQL holds it: (status moved to, node that wrote it, actor).
async fn trail(app: &TestApp, booking: i64) -> Vec<(String, String, Option<String>)> {
    let events = crate::support::database::events_of(&mut app.db().await, booking).await;
    events
        .into_iter()
        .map(|row| (row.to_status, row.node_id, row.actor))
        .collect()
}

#[actix_web::test]
async fn the_audit_trail_names_who_asked_for_each_change_on_whichever_node_wrote_it() {
    // Arrange: two nodes; the rider's booking is assigned on n1, so n1's actor owns it and
    // what reaches n2 is forwarded there.
    let n1 = spawn_app().await;
    let n2 = n1.second_node().await;
    let rider = n1.rider().await;
    let driver = n1.online_driver(PICKUP.0, PICKUP.1).await;
    let (rider_sub, driver_sub) = (format!("rider:{rider}"), format!("driver:{driver}"));
    let created = n1
        .as_subject(
            &rider_sub,
            Method::POST,
            "/api/bookings",
            Some(booking_body(rider, PICKUP.0, PICKUP.1)),
        )
        .await;
    created.expect(201, None);
    let booking = created.data()["id"].as_i64().unwrap();

    // Act: each step by a different caller, the later ones through n2.
    let assign = format!("/api/bookings/{booking}/assign");
    n1.as_subject(&rider_sub, Method::POST, &assign, None)
        .await
        .expect(200, None);
    let accept = format!("/api/bookings/{booking}/accept");
    let accepted = n2
        .as_subject(
            &driver_sub,
            Method::POST,
            &accept,
            Some(json!({ "driver_id": driver })),
        )
        .await;
    accepted.expect(200, None);
    let complete = format!("/api/bookings/{booking}/complete");
    let completed = n2
        .as_subject(
            "ops:support-7",
            Method::POST,
            &complete,
            Some(json!({ "driver_id": driver, "actual_fare": 21.5 })),
        )
        .await;
    completed.expect(200, None);
    let other = n1.booking(rider, PICKUP.0 + 0.5, PICKUP.1).await;
    n2.as_subject(
        &rider_sub,
        Method::POST,
        format!("/api/bookings/{other}/cancel"),
        Some(json!({ "user_id": rider, "user_type": "rider" })),
    )
    .await
    .expect(200, None);

    // Assert: in PostgreSQL, every change names its caller; the forwarded ones were written
    // by n1 and still name the caller who reached n2.
    assert_eq!(accepted.served_by.as_deref(), Some("n1"));
    assert_eq!(completed.served_by.as_deref(), Some("n1"));
    let named = |status: &str, node: &str, actor: &str| {
        (status.to_owned(), node.to_owned(), Some(actor.to_owned()))
    };
    assert_eq!(
        trail(&n1, booking).await,
        [
            named("pending", "n1", &rider_sub),
            named("assigned", "n1", &rider_sub),
            named("accepted", "n1", &driver_sub),
            named("completed", "n1", "ops:support-7"),
        ]
    );
    let other_trail = trail(&n1, other).await;
    assert_eq!(other_trail[0].2.as_deref(), Some("ops:tests"));
    assert_eq!(other_trail[1].0, "cancelled");
    assert_eq!(other_trail[1].2.as_deref(), Some(rider_sub.as_str()));
    // The events endpoint shows the same.
    let events = n2.get(format!("/api/bookings/{booking}/events")).await;
    let actors: Vec<&str> = events
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(
        actors,
        [&rider_sub, &rider_sub, &driver_sub, "ops:support-7"]
    );
    // The rider learns that support acted, not who.
    let seen_by_rider = n1
        .as_subject(
            &rider_sub,
            Method::GET,
            format!("/api/bookings/{booking}/events"),
            None,
        )
        .await;
    seen_by_rider.expect(200, None);
    assert_eq!(seen_by_rider.data()[3]["actor"], "ops");
    assert_eq!(seen_by_rider.data()[2]["actor"], driver_sub.as_str());
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
