//! Who may do what (README, "Authorization"): every rule of the table is broken once here, by a
//! real token against a real server, and every refusal writes nothing. 401 for every kind of bad
//! token; 403 naming the rule for a good token asking for what it may not do.
//!
//! By subject: what only ops may do ([`ops`]), what a rider ([`riders`]) and a driver
//! ([`drivers`]) may do, which tokens are good at all ([`tokens`]), and what a good token decides
//! besides yes or no ([`identity`]). The world and the refusal check they share are here.

mod drivers;
mod identity;
mod ops;
mod riders;
mod tokens;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::app::{spawn_app, TestApp};
use crate::support::fixtures::{Api, PICKUP};

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
