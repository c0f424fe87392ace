//! Nothing personal in the logs: names, phones, emails, coordinates and tokens of a whole booking
//! lifecycle, sent through two real nodes logging at `trace`, never appear in what they wrote.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::cluster::{Cluster, Setup};

#[actix_web::test]
async fn a_lifecycle_through_two_nodes_logging_at_trace_leaves_nothing_personal_in_the_logs() {
    // Arrange: distinctive values, easy to find if anything logged them.
    let mut setup = Setup::from_env(2);
    setup.log_filter = "trace".to_owned();
    let cluster = Cluster::start_on(setup).await;
    let (lat, lng) = (40.7123456789, -74.0065432198);
    let secrets = [
        "Zebulon Quixote",
        "+1 555 867 5309",
        "zebulon@example.org",
        "Ottoline Fairweather",
        "+1 555 246 8013",
        "40.712345",
        "74.006543",
        // The phone's digits run together (a normalised number). Not its last four alone: any
        // four digits also turn up by chance in timings and ids (`handled_us=5309` once did).
        "8675309",
        "my dog ate my phone",
        // Every JWT starts with the base64 of `{"`: no token, ours or theirs, may be logged.
        "eyJ",
    ];
    let rider = cluster
        .post(
            0,
            "/api/riders",
            json!({ "name": secrets[0], "phone": secrets[1], "email": secrets[2] }),
        )
        .await
        .unwrap();
    let rider = rider.data()["id"].as_i64().unwrap();
    let driver = cluster
        .post(
            1,
            "/api/drivers",
            json!({ "name": secrets[3], "phone": secrets[4] }),
        )
        .await
        .unwrap();
    let driver = driver.data()["id"].as_i64().unwrap();
    let (r, d) = (format!("rider:{rider}"), format!("driver:{driver}"));

    // Act: a lifecycle, every step on the other node from the one before.
    let steps: Vec<(usize, &str, Method, String, Option<Value>)> = vec![
        (
            0,
            &d,
            Method::POST,
            format!("/api/drivers/{driver}/location"),
            Some(json!({ "lat": lat, "lng": lng })),
        ),
        (
            1,
            &d,
            Method::PATCH,
            format!("/api/drivers/{driver}/status"),
            Some(json!({ "status": "online" })),
        ),
        (
            0,
            &r,
            Method::GET,
            format!("/api/drivers/nearby?lat={lat}&lng={lng}&radius=2"),
            None,
        ),
        (
            1,
            &r,
            Method::POST,
            "/api/bookings".into(),
            Some(json!({
                "rider_id": rider, "pickup_lat": lat, "pickup_lng": lng,
                "dropoff_lat": lat + 0.01, "dropoff_lng": lng, "estimated_fare": 12.5
            })),
        ),
    ];
    for (node, subject, method, path, body) in steps {
        let reply = cluster.as_subject(node, subject, method, &path, body).await;
        let reply = reply.unwrap();
        assert!(reply.status.is_success(), "{path}: {:#}", reply.body);
    }
    let booking = {
        let list = cluster
            .as_subject(
                0,
                &r,
                Method::GET,
                &format!("/api/users/{rider}/bookings"),
                None,
            )
            .await;
        list.unwrap().data()[0]["id"].as_i64().unwrap()
    };
    let actions: Vec<(usize, &str, &str, Option<Value>)> = vec![
        (0, &r, "assign", None),
        (1, &d, "accept", Some(json!({ "driver_id": driver }))),
        (
            0,
            &d,
            "cancel",
            Some(json!({ "reason": secrets[8], "user_id": driver, "user_type": "driver" })),
        ),
    ];
    for (node, subject, action, body) in actions {
        let path = format!("/api/bookings/{booking}/{action}");
        let reply = cluster
            .as_subject(node, subject, Method::POST, &path, body)
            .await;
        let reply = reply.unwrap();
        assert_eq!(reply.status, 200, "{action}: {:#}", reply.body);
    }
    for node in 0..2 {
        let reply = cluster
            .as_subject(
                node,
                &r,
                Method::GET,
                &format!("/api/bookings/{booking}"),
                None,
            )
            .await;
        assert_eq!(reply.unwrap().status, 200);
    }

    // Assert
    for node in 0..2 {
        let log = cluster.log(node);
        assert!(
            log.lines().count() > 50,
            "node {node} logged too little to prove anything"
        );
        for secret in secrets {
            let line = log.lines().find(|line| line.contains(secret));
            assert!(
                line.is_none(),
                "node {node} logged {secret:?}: {}",
                line.unwrap_or("")
            );
        }
    }
}
