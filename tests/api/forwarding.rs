//! Two nodes in one test process, on one database and key prefix: a booking action sent to the
//! node without the lease runs on the owner; the internal endpoint refuses unsigned calls.
//! (`tests/cluster` does the same with real processes, kills and pauses.)

use std::time::{Duration, Instant};

use ridelock::cluster::auth::{self, Signed};
use ridelock::config::Secret;
use serde_json::json;

use crate::support::app::{spawn_app, TestApp};
use crate::support::fixtures::{Api, PICKUP};
use crate::support::reply::Reply;

#[actix_web::test]
async fn an_action_sent_to_a_node_without_the_lease_runs_on_the_owner() {
    // Arrange: n1 owns the booking (it assigned it); n2 has never seen it.
    let n1 = spawn_app().await;
    let n2 = n1.second_node().await;
    let rider = n1.rider().await;
    let driver = n1.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = n1.booking(rider, PICKUP.0, PICKUP.1).await;
    let assigned = n1
        .post(format!("/api/bookings/{booking}/assign"), json!({}))
        .await;
    assigned.expect(200, None);
    assert_eq!(assigned.served_by.as_deref(), Some("n1"));

    // Act: the driver's accept reaches n2.
    let accepted = n2
        .request_with_id(
            reqwest::Method::POST,
            format!("/api/bookings/{booking}/accept"),
            Some(&json!({ "driver_id": driver }).to_string()),
            Some("trace-across-nodes-1"),
        )
        .await;

    // Assert: n1's actor handled it under its token; n2 forwarded and holds nothing.
    accepted.expect(200, None);
    assert_eq!(accepted.served_by.as_deref(), Some("n1"));
    assert_eq!(accepted.data()["fencing_token"], json!(1));
    assert_eq!(n2.metric("ridelock_forwards_sent_total").await, 1.0);
    assert_eq!(n1.metric("ridelock_forwards_received_total").await, 1.0);
    let stats = n2.get("/api/locks/stats").await;
    assert_eq!(stats.data()["active_actors"], json!(0), "{:#}", stats.body);
    assert_eq!(stats.data()["held_leases"], json!(0), "{:#}", stats.body);
    let events = n2.get(format!("/api/bookings/{booking}/events")).await;
    let writers: Vec<&str> = events
        .data()
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|e| e["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(writers, ["n1", "n1"], "{:#}", events.body);
    // The request id travelled with the forwarded call: one grep follows it across nodes.
    assert_eq!(accepted.request_id.as_deref(), Some("trace-across-nodes-1"));
    assert_eq!(events.data()[2]["request_id"], "trace-across-nodes-1");

    // A refusal is the owner's too, relayed with its status and body.
    let again = n2
        .post(
            format!("/api/bookings/{booking}/accept"),
            json!({ "driver_id": driver }),
        )
        .await;
    again.expect(409, Some("booking_not_assigned"));
    assert_eq!(again.served_by.as_deref(), Some("n1"));
}

#[actix_web::test]
async fn after_the_owner_stops_another_node_serves_at_once() {
    // Arrange: n1 owns an assigned booking; n2 is up.
    let n1 = spawn_app().await;
    let n2 = n1.second_node().await;
    let rider = n1.rider().await;
    n1.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, driver) = n1.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;

    // Act: n1 stops gracefully (its leases are released), then the accept reaches n2.
    n1.stop().await;
    let started = Instant::now();
    let accepted = n2
        .post(
            format!("/api/bookings/{booking}/accept"),
            json!({ "driver_id": driver }),
        )
        .await;

    // Assert: served by n2 under a new token, without waiting out n1's lease (TTL 2 s).
    accepted.expect(200, None);
    assert_eq!(accepted.served_by.as_deref(), Some("n2"));
    assert_eq!(accepted.data()["fencing_token"], json!(2));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

/// An internal call to `/internal/bookings/{booking}` on node `to`, signed with `secret`.
struct InternalCall {
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl InternalCall {
    fn signed(secret: &str, to: &str, booking: i64, hops: u8, timestamp_ms: u64) -> Self {
        let body = br#"{"action":{"op":"assign"},"actor":"ops:test"}"#;
        Self::signed_body(secret, to, booking, hops, timestamp_ms, body)
    }

    fn signed_body(
        secret: &str,
        to: &str,
        booking: i64,
        hops: u8,
        timestamp_ms: u64,
        body: &[u8],
    ) -> Self {
        let body = body.to_vec();
        let path = format!("/internal/bookings/{booking}");
        let request_id = format!("forged-{}", uuid::Uuid::new_v4().simple());
        let signature = Signed {
            timestamp_ms,
            node: "n9",
            to,
            hops,
            budget_ms: 2000,
            request_id: &request_id,
            path: &path,
            body: &body,
        }
        .sign(&Secret::new(secret))
        .unwrap();
        let headers = vec![
            ("x-request-id", request_id),
            (auth::NODE_HEADER, "n9".to_owned()),
            (auth::TO_HEADER, to.to_owned()),
            (auth::HOPS_HEADER, hops.to_string()),
            (auth::BUDGET_HEADER, "2000".to_owned()),
            (auth::TIMESTAMP_HEADER, timestamp_ms.to_string()),
            (auth::SIGNATURE_HEADER, signature),
        ];
        Self { headers, body }
    }

    fn valid(to: &str, booking: i64) -> Self {
        Self::signed(SECRET, to, booking, 1, auth::now_ms())
    }

    /// A valid call to n1 carrying `body`.
    fn valid_body(booking: i64, body: &[u8]) -> Self {
        Self::signed_body(SECRET, "n1", booking, 1, auth::now_ms(), body)
    }

    /// The same call with one header's value replaced after signing.
    fn with(mut self, name: &str, value: String) -> Self {
        for header in &mut self.headers {
            if header.0 == name {
                header.1 = value.clone();
            }
        }
        self
    }

    async fn send(&self, app: &TestApp, booking: i64) -> (u16, serde_json::Value) {
        let reply = self.reply(app, booking).await;
        (reply.status.as_u16(), reply.body)
    }

    /// The whole answer, headers included.
    async fn reply(&self, app: &TestApp, booking: i64) -> Reply {
        let mut request = app
            .client
            .post(format!("{}/internal/bookings/{booking}", app.address))
            .body(self.body.clone());
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        Reply::send(request).await.unwrap()
    }
}

/// `config/test.toml`'s cluster secret.
const SECRET: &str = "dev-test-cluster-secret";

#[actix_web::test]
async fn internal_calls_without_a_valid_signature_are_refused_and_change_nothing() {
    // Arrange: a pending booking and an online driver, so an accepted assign would write.
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;
    let cases = vec![
        (
            "no headers",
            InternalCall {
                headers: vec![],
                body: br#"{"action":{"op":"assign"},"actor":"ops:test"}"#.to_vec(),
            },
        ),
        (
            "wrong secret",
            InternalCall::signed("guessed-secret", "n1", booking, 1, auth::now_ms()),
        ),
        ("meant for another node", InternalCall::valid("n2", booking)),
        (
            "budget changed after signing",
            InternalCall::valid("n1", booking).with(auth::BUDGET_HEADER, "60000".to_owned()),
        ),
        (
            "thirty seconds old",
            InternalCall::signed(SECRET, "n1", booking, 1, auth::now_ms() - 30_000),
        ),
        (
            "past its deadline",
            InternalCall::signed(SECRET, "n1", booking, 1, auth::now_ms() - 2_500),
        ),
        (
            "beyond the hop limit",
            InternalCall::signed(SECRET, "n1", booking, 3, auth::now_ms()),
        ),
    ];
    for (case, call) in cases {
        // Act
        let (status, reply) = call.send(&app, booking).await;

        // Assert
        assert_eq!(status, 401, "{case}: {reply:#}");
        assert_eq!(reply["error"], "cluster_auth_failed", "{case}: {reply:#}");
        assert_eq!(reply["success"], false, "{case}");
    }
    assert_eq!(
        app.fingerprint().await,
        before,
        "a refused call writes nothing"
    );
}

#[actix_web::test]
async fn a_signed_internal_call_dated_beyond_the_allowed_skew_ahead_is_refused_and_changes_nothing()
{
    // Arrange: a pending booking and an online driver, so an accepted assign would write; a
    // correctly signed call whose timestamp lies further ahead of this node's clock than the
    // skew allowed, so its deadline looks whole.
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;
    let ahead = u64::try_from((auth::MAX_SKEW + Duration::from_secs(5)).as_millis()).unwrap();
    let call = InternalCall::signed(SECRET, "n1", booking, 1, auth::now_ms() + ahead);

    // Act
    let (status, reply) = call.send(&app, booking).await;

    // Assert
    assert_eq!(status, 401, "{reply:#}");
    assert_eq!(reply["error"], "cluster_auth_failed", "{reply:#}");
    assert_eq!(
        app.fingerprint().await,
        before,
        "a refused call writes nothing"
    );
}

#[actix_web::test]
async fn a_signed_internal_call_is_served_once_and_its_replay_refused() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let call = InternalCall::valid("n1", booking);

    // Act
    let (first, reply) = call.send(&app, booking).await;
    let (again, replayed) = call.send(&app, booking).await;

    // Assert
    assert_eq!(first, 200, "{reply:#}");
    assert_eq!(reply["data"]["booking"]["status"], "assigned");
    assert_eq!(again, 401, "{replayed:#}");
    assert_eq!(replayed["error"], "cluster_auth_failed");
}

#[actix_web::test]
async fn a_captured_internal_call_cannot_be_replayed_with_its_headers_rewritten() {
    // Arrange: a call that cancels a pending booking for its rider, so a replay that got through
    // would answer 200 or 409, not 401.
    let app = spawn_app().await;
    let rider = app.rider().await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let body = format!(
        r#"{{"action":{{"op":"cancel","by":{{"rider":{rider}}},"reason":null}},"actor":"rider:{rider}"}}"#
    );
    let call = InternalCall::valid_body(booking, body.as_bytes());
    let header = |name: &str| {
        call.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let (signature, timestamp) = (
        header(auth::SIGNATURE_HEADER),
        header(auth::TIMESTAMP_HEADER),
    );
    let (first, reply) = call.send(&app, booking).await;
    assert_eq!(first, 200, "{reply:#}");

    // Act: the same call, its signature re-cased, its numbers re-written.
    let rewritten = [
        (auth::SIGNATURE_HEADER, signature.to_uppercase()),
        (auth::HOPS_HEADER, "+1".to_owned()),
        (auth::HOPS_HEADER, "01".to_owned()),
        (auth::TIMESTAMP_HEADER, format!("0{timestamp}")),
        (auth::BUDGET_HEADER, "+2000".to_owned()),
    ];
    let fingerprint = app.fingerprint().await;
    for (name, value) in rewritten {
        let copy = InternalCall {
            headers: call.headers.clone(),
            body: call.body.clone(),
        }
        .with(name, value.clone());
        let (status, answer) = copy.send(&app, booking).await;

        // Assert
        assert_eq!(status, 401, "{name}: {value}: {answer:#}");
        assert_eq!(answer["error"], "cluster_auth_failed");
    }
    assert_eq!(app.fingerprint().await, fingerprint);
}

#[actix_web::test]
async fn a_forwarded_caller_must_be_a_token_subject_or_absent() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;

    // Act: a signed call whose caller is no token subject; then one from a build that sent none.
    let odd = br#"{"action":{"op":"assign"},"actor":"nobody"}"#;
    let (refused, refusal) = InternalCall::valid_body(booking, odd)
        .send(&app, booking)
        .await;
    let unchanged = app.fingerprint().await == before;
    let older = br#"{"action":{"op":"assign"}}"#;
    let (served, reply) = InternalCall::valid_body(booking, older)
        .send(&app, booking)
        .await;

    // Assert: the first is refused naming the field and writes nothing; the second is served and
    // its event has no actor.
    assert_eq!(refused, 400, "{refusal:#}");
    assert_eq!(refusal["data"]["field"], "actor");
    assert!(unchanged, "a refused call writes nothing");
    assert_eq!(served, 200, "{reply:#}");
    let events = app.get(format!("/api/bookings/{booking}/events")).await;
    assert_eq!(events.data()[1]["to_status"], "assigned");
    assert_eq!(events.data()[1]["actor"], serde_json::Value::Null);
}

#[actix_web::test]
async fn a_call_at_the_hop_limit_is_not_passed_on_again() {
    // Arrange: n1 owns the booking; a call reaches n2 having been passed on twice already.
    let n1 = spawn_app().await;
    let n2 = n1.second_node().await;
    let rider = n1.rider().await;
    n1.online_driver(PICKUP.0, PICKUP.1).await;
    let (booking, _) = n1.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    let before = n1.fingerprint().await;
    let call = InternalCall::signed(SECRET, "n2", booking, 2, auth::now_ms());

    // Act
    let (status, reply) = call.send(&n2, booking).await;

    // Assert: n2 does not forward a third time; nothing changed; n1 was never called.
    assert_eq!(status, 503, "{reply:#}");
    assert_eq!(reply["error"], "lease_unavailable");
    assert_eq!(n1.fingerprint().await, before);
    assert_eq!(n2.metric("ridelock_forwards_sent_total").await, 0.0);
}

#[actix_web::test]
async fn a_call_with_fields_this_build_does_not_know_is_served() {
    // Arrange: a pending booking and an online driver; a call from a newer build that added an
    // optional field to the call and one to its action.
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let newer = br#"{"v":1,"action":{"op":"assign","by":null,"surge":1.5},"actor":"ops:test",
        "priority":"high"}"#;

    // Act
    let (status, reply) = InternalCall::valid_body(booking, newer)
        .send(&app, booking)
        .await;

    // Assert
    assert_eq!(status, 200, "{reply:#}");
    assert_eq!(reply["data"]["booking"]["status"], "assigned");
}

#[actix_web::test]
async fn a_call_this_build_cannot_honour_is_refused_for_a_retry_and_changes_nothing() {
    // Arrange: a pending booking and an online driver, so an assign that ran would write.
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;
    let row_before = app.get(format!("/api/bookings/{booking}")).await;
    let cases: [(&str, &[u8]); 3] = [
        (
            "a newer format",
            br#"{"v":2,"action":{"op":"assign","by":null},"actor":"ops:test"}"#,
        ),
        (
            "a newer format whose action this build would misread",
            br#"{"v":2,"action":{"op":"assign","by":{"fleet":4}},"actor":"ops:test"}"#,
        ),
        (
            "an action this build does not know",
            br#"{"action":{"op":"reassign","driver_id":7},"actor":"ops:test"}"#,
        ),
    ];
    for (case, body) in cases {
        // Act
        let reply = InternalCall::valid_body(booking, body)
            .reply(&app, booking)
            .await;

        // Assert
        assert_eq!(reply.status, 503, "{case}: {:#}", reply.body);
        assert_eq!(reply.body["success"], false, "{case}");
        assert_eq!(reply.body["error"], "unsupported_call", "{case}");
        assert!(reply.body["message"].is_string(), "{case}");
        assert_eq!(reply.retry_after.as_deref(), Some("1"), "{case}");
    }
    assert_eq!(
        app.fingerprint().await,
        before,
        "a refused call writes nothing"
    );
    let row_after = app.get(format!("/api/bookings/{booking}")).await;
    assert_eq!(row_after.data(), row_before.data(), "not even a new token");
}

#[actix_web::test]
async fn a_malformed_call_is_still_refused_as_invalid() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let booking = app.booking(rider, PICKUP.0, PICKUP.1).await;
    let before = app.fingerprint().await;
    let cases: [(&str, &[u8], &str); 4] = [
        ("not JSON", b"{", "body"),
        ("no action", br#"{"actor":"ops:test"}"#, "body"),
        (
            "a known action with a bad field",
            br#"{"action":{"op":"cancel","by":"everyone"},"actor":"ops:test"}"#,
            "body",
        ),
        (
            "version 0",
            br#"{"v":0,"action":{"op":"assign","by":null},"actor":"ops:test"}"#,
            "v",
        ),
    ];
    for (case, body, field) in cases {
        // Act
        let (status, reply) = InternalCall::valid_body(booking, body)
            .send(&app, booking)
            .await;

        // Assert
        assert_eq!(status, 400, "{case}: {reply:#}");
        assert_eq!(reply["error"], "invalid_request", "{case}");
        assert_eq!(reply["data"]["field"], field, "{case}");
    }
    assert_eq!(app.fingerprint().await, before);
}
