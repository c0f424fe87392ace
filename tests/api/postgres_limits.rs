//! Every statement has a time limit: one stuck on PostgreSQL (here, on a row lock another session
//! holds) is cancelled by `database.statement_timeout_ms` and answered 503 with `Retry-After`,
//! within the request's deadline, and nothing is written. A PostgreSQL that stops answering
//! altogether is the chaos suite's (`freeze_postgres_for_two_ttls`).

use serde_json::json;

use crate::support::app::spawn_app_with;

#[actix_web::test]
async fn a_statement_stuck_on_a_lock_is_cancelled_and_answered_503_writing_nothing() {
    // Arrange: a statement limit of half a second, a request deadline far beyond it; an assigned
    // booking whose row another session holds locked.
    let app = spawn_app_with(|s| {
        s.database.statement_timeout_ms = 500;
        s.server.request_timeout_ms = 20_000;
        s.database.idle_transaction_timeout_ms = 30_000;
    })
    .await;
    let (booking, driver, locker) = app.locked_assigned_booking().await;
    let before = app.fingerprint().await;

    // Act
    let accepted = app
        .post(
            format!("/api/bookings/{booking}/accept"),
            json!({ "driver_id": driver }),
        )
        .await;
    locker.release().await;

    // Assert: refused as unavailable (not held until the deadline), told when to come back, and
    // nothing written; once the lock is gone the same request goes through.
    accepted.expect(503, Some("unavailable"));
    assert_eq!(accepted.retry_after.as_deref(), Some("1"));
    assert_eq!(app.fingerprint().await, before);
    app.post(
        format!("/api/bookings/{booking}/accept"),
        json!({ "driver_id": driver }),
    )
    .await
    .expect(200, None);
}
