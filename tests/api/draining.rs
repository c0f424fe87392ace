//! A stopping node (SIGTERM) serves nothing new itself: what arrives from then on is relayed to
//! another live node, or, with none (or when it is about the node itself, or relayed once
//! already), refused at once, before any work: 503 `draining` (API.md) with `Retry-After`,
//! `X-RideLock-Draining` and the connection closed, so a load balancer or a forwarding node may
//! send it elsewhere. The requests already in flight finish, and only then are the leases given
//! back.

use std::future::Future;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::app::{spawn_app_with, TestApp};
use crate::support::database::{a_backend_waits_on_a_lock, count, RowLock};
use crate::support::poll::eventually;
use crate::support::reply::Reply;

/// A node whose drain is held open: an assigned booking whose row another session holds locked,
/// so that its accept stays in flight; and `connections` idle keep-alive connections, since a
/// draining node refuses new ones and closes each after one answer.
async fn node_to_drain(connections: usize) -> (TestApp, (i64, i64, RowLock)) {
    let app = spawn_app_with(|s| {
        s.database.statement_timeout_ms = 20_000;
        s.server.request_timeout_ms = 20_000;
        s.database.idle_transaction_timeout_ms = 30_000;
    })
    .await;
    let held = app.locked_assigned_booking().await;
    let health = format!("{}/api/health", app.address);
    let warm =
        futures::future::join_all((0..connections).map(|_| app.client.get(&health).send())).await;
    assert!(warm.into_iter().all(|r| r.unwrap().status().is_success()));
    (app, held)
}

/// Sends the held accept, stops the node once the accept waits on the lock, runs `arrive` once
/// `/readyz` says the node drains, then lets the lock go. The accept's answer, and `arrive`'s.
async fn arrive_while_draining<T>(
    app: &TestApp,
    (booking, driver, locker): (i64, i64, RowLock),
    arrive: impl Future<Output = T>,
) -> (Reply, T) {
    let accept = app.post(
        format!("/api/bookings/{booking}/accept"),
        json!({ "driver_id": driver }),
    );
    let stop_and_arrive = async {
        let blocked = eventually(Duration::from_secs(5), || async {
            a_backend_waits_on_a_lock(&mut app.db().await).await
        })
        .await;
        assert!(blocked, "the accept should wait on the lock");
        let arrive = async {
            // Draining starts a moment after the stop is asked for: a read finds out when.
            let readyz = format!("{}/readyz", app.address);
            let draining = eventually(Duration::from_secs(5), || async {
                let response = app.client.get(&readyz).send().await.unwrap();
                response.status() == 503
            })
            .await;
            assert!(draining, "the node should drain");
            let arrived = arrive.await;
            locker.release().await;
            arrived
        };
        let ((), arrived) = tokio::join!(app.stop(), arrive);
        arrived
    };
    tokio::join!(accept, stop_and_arrive)
}

#[actix_web::test]
async fn a_request_arriving_while_the_node_drains_is_refused_as_draining_and_does_nothing() {
    // Arrange: a node alone, so nothing can be relayed; connections for the accept, the
    // draining probes, the two probes below and the rider creation.
    let (app, held) = node_to_drain(6).await;
    let riders = "SELECT count(*) AS n FROM riders";
    let riders_before = count(&mut app.db().await, riders).await;

    // Act: a rider creation arrives while the node drains.
    let (accepted, refused) = arrive_while_draining(&app, held, async {
        // Not ready (draining), yet alive: an orchestrator sends it nothing, kills nothing.
        let probe = |path: &str| app.client.get(format!("{}{path}", app.address)).send();
        let (livez, readyz) = tokio::join!(probe("/livez"), probe("/readyz"));
        let (livez, readyz) = (livez.unwrap(), readyz.unwrap());
        assert_eq!(
            (livez.status().as_u16(), readyz.status().as_u16()),
            (200, 503)
        );
        let not_ready: Value = readyz.json().await.unwrap();
        assert_eq!(not_ready["error"], "draining");
        app.client
            .post(format!("{}/api/riders", app.address))
            .json(&json!({ "name": "Late Rider", "phone": "+15550009999" }))
            .send()
            .await
            .unwrap()
    })
    .await;

    // Assert: the newcomer was refused as draining, told to retry, its connection closed, and
    // nothing of it written; the accept already in flight finished.
    let refused_status = refused.status().as_u16();
    let header = |name: &str| {
        refused
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("retry-after").as_deref(), Some("1"));
    assert_eq!(header("x-ridelock-draining").as_deref(), Some("true"));
    assert_eq!(header("connection").as_deref(), Some("close"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["error"], "draining");
    assert_eq!(refused_status, 503);
    assert_eq!(count(&mut app.db().await, riders).await, riders_before);
    accepted.expect(200, None);
}

/// With another node live, what arrives at a draining node is relayed there and served once:
/// a client without an `Idempotency-Key` sees no refusal. What is about the node itself
/// (`/readyz`), and a request relayed once already, are still refused as draining.
#[actix_web::test]
async fn a_request_arriving_while_the_node_drains_is_served_once_by_another_node() {
    // Arrange: as above, and n2 live.
    let (app, held) = node_to_drain(8).await;
    let n2 = app.second_node().await;
    let url = |path: &str| format!("{}{path}", app.address);
    let riders = "SELECT count(*) AS n FROM riders";
    let riders_before = count(&mut app.db().await, riders).await;

    // Act: a rider creation, the same marked as relayed once already, and a readiness probe.
    let (accepted, (created, marked, readyz)) = arrive_while_draining(&app, held, async {
        let rider = json!({ "name": "Late Rider", "phone": "+15550009999" });
        let created = app
            .client
            .post(url("/api/riders"))
            .json(&rider)
            .send()
            .await
            .unwrap();
        let marked = app
            .client
            .post(url("/api/riders"))
            .header("X-RideLock-Relayed-By", "n3")
            .json(&rider)
            .send()
            .await
            .unwrap();
        let readyz = app.client.get(url("/readyz")).send().await.unwrap();
        (created, marked, readyz)
    })
    .await;

    // Assert: created once, through n2, and said so; the marked request and the probe refused.
    let relayed_by = created
        .headers()
        .get("x-ridelock-relayed-by")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let closed = created
        .headers()
        .get("connection")
        .is_some_and(|v| v.as_bytes() == b"close");
    let created_status = created.status().as_u16();
    let body: Value = created.json().await.unwrap();
    assert_eq!(created_status, 201, "{body}");
    assert!(closed, "a relayed answer closes its connection");
    assert_eq!(relayed_by.as_deref(), Some(app.node_id.as_str()));
    assert_eq!(count(&mut app.db().await, riders).await, riders_before + 1);
    let id = body["data"]["id"].as_i64().unwrap();
    let stored = n2.get(format!("/api/riders/{id}")).await;
    stored.expect(200, None);
    assert_eq!(stored.data()["name"], "Late Rider");
    assert_eq!(marked.status().as_u16(), 503);
    let marked: Value = marked.json().await.unwrap();
    assert_eq!(marked["error"], "draining");
    assert_eq!(readyz.status().as_u16(), 503);
    accepted.expect(200, None);
}
