//! Hostile and odd input: unknown fields, deep nesting, oversized bodies, ids and numbers at the
//! edges of their types, malformed query strings, wrong methods. Each is refused with a 4xx in
//! the JSON envelope naming what was wrong, and writes nothing; the odd-but-valid is accepted.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::app::{spawn_app, TestApp};
use crate::support::fixtures::{booking_body, Api, PICKUP};
use crate::support::reply::assert_invalid;

/// Posts `body` (raw text) to `path` and checks a 400 naming `field`, with nothing written.
async fn assert_refused(app: &TestApp, cases: &[(&str, String, &str)], path: &str) {
    for (case, body, field) in cases {
        let before = app.fingerprint().await;
        let reply = app.post_raw(path, body).await;
        assert_invalid(case, &reply, field);
        assert_eq!(app.fingerprint().await, before, "{case}: nothing written");
    }
}

fn with(rider: i64, field: &str, raw: &str) -> String {
    let mut body = booking_body(rider, PICKUP.0, PICKUP.1);
    body[field] = json!("PLACEHOLDER");
    body.to_string().replace("\"PLACEHOLDER\"", raw)
}

#[actix_web::test]
async fn bodies_with_unknown_fields_deep_nesting_or_edge_numbers_are_refused_naming_the_field() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let mut unknown = booking_body(rider, PICKUP.0, PICKUP.1);
    unknown["tip"] = json!(5);
    let deep = format!(
        "{{\"rider_id\": {rider}, \"x\": {}1{}}}",
        "[".repeat(100),
        "]".repeat(100)
    );
    let cases = [
        ("an unknown field", unknown.to_string(), "tip"),
        ("nesting 100 deep", deep, "body"),
        (
            "a fractional id",
            with(rider, "rider_id", "1.5"),
            "rider_id",
        ),
        (
            "an id beyond i64",
            with(rider, "rider_id", "9223372036854775808"),
            "rider_id",
        ),
        ("an id as 1e19", with(rider, "rider_id", "1e19"), "rider_id"),
        (
            "a latitude of 1e400",
            with(rider, "pickup_lat", "1e400"),
            "pickup_lat",
        ),
        (
            "a latitude just over 90",
            with(rider, "pickup_lat", "90.0000001"),
            "pickup_lat",
        ),
        (
            "a longitude under -180",
            with(rider, "dropoff_lng", "-180.5"),
            "dropoff_lng",
        ),
        (
            "NaN as a string",
            with(rider, "pickup_lng", "\"NaN\""),
            "pickup_lng",
        ),
        (
            "half a cent",
            with(rider, "estimated_fare", "0.005"),
            "estimated_fare",
        ),
        (
            "over the fare cap",
            with(rider, "estimated_fare", "100000.01"),
            "estimated_fare",
        ),
        (
            "a vehicle type with capitals",
            with(rider, "vehicle_type", "\"XL\""),
            "vehicle_type",
        ),
        (
            "text after the object",
            format!("{} {{}}", booking_body(rider, PICKUP.0, PICKUP.1)),
            "body",
        ),
        (
            "a field given twice",
            with(
                rider,
                "rider_id",
                &format!("{rider}, \"rider_id\": {rider}"),
            ),
            "rider_id",
        ),
        (
            "a whole-float id at 2^53",
            with(rider, "rider_id", "9007199254740993.0"),
            "rider_id",
        ),
    ];

    // Act + Assert
    assert_refused(&app, &cases, "/api/bookings").await;
}

#[actix_web::test]
async fn text_fields_are_bounded_as_sent_and_free_of_control_characters() {
    let app = spawn_app().await;
    let long_name = "n".repeat(201);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a 201-character name",
            json!({ "name": long_name, "phone": "+1 555 0100" }).to_string(),
            "name",
        ),
        (
            "a blank name",
            json!({ "name": "   ", "phone": "+1 555 0100" }).to_string(),
            "name",
        ),
        (
            "a name with a NUL",
            json!({ "name": "a\u{0}b", "phone": "+1 555 0100" }).to_string(),
            "name",
        ),
        (
            "a 33-character phone",
            json!({ "name": "A", "phone": format!("1{}", " ".repeat(31)) + "23" }).to_string(),
            "phone",
        ),
        (
            "an email with a space",
            json!({ "name": "A", "phone": "555", "email": " a@b.co" }).to_string(),
            "email",
        ),
    ];
    assert_refused(&app, &cases, "/api/riders").await;

    // Edges that are allowed: 200 characters, padding that is trimmed away.
    let reply = app
        .post(
            "/api/riders",
            json!({ "name": format!(" {} ", "n".repeat(198)), "phone": "555" }),
        )
        .await;
    reply.expect(201, None);
    assert_eq!(reply.data()["name"], json!("n".repeat(198)));
}

#[actix_web::test]
async fn an_integer_written_as_a_whole_float_is_the_same_integer() {
    let app = spawn_app().await;
    let rider = app.rider().await;
    let reply = app
        .post_raw(
            "/api/bookings",
            &with(rider, "rider_id", &format!("{rider}.0")),
        )
        .await;
    reply.expect(201, None);
    assert_eq!(reply.data()["rider_id"], json!(rider));
}

#[actix_web::test]
async fn a_body_over_64_kib_is_413_and_writes_nothing() {
    let app = spawn_app().await;
    let before = app.fingerprint().await;
    let huge = json!({ "name": "x".repeat(70 * 1024), "phone": "555" }).to_string();
    let reply = app.post_raw("/api/riders", &huge).await;
    reply.expect(413, Some("payload_too_large"));
    assert_eq!(app.fingerprint().await, before);
}

#[actix_web::test]
async fn malformed_query_strings_and_path_ids_are_400_in_the_envelope() {
    let app = spawn_app().await;
    let rider = app.rider().await;
    let cases = [
        ("/api/drivers/nearby?lat=1&lat=2&lng=3", "query"),
        ("/api/drivers/nearby?lat=nan&lng=3", "lat"),
        ("/api/drivers/nearby?lat=1&lng=inf", "lng"),
        ("/api/drivers/nearby?lat=1&lng=1&radius=-1", "radius"),
        ("/api/bookings/9223372036854775808", "id"),
        ("/api/bookings/0", "id"),
    ];
    for (path, field) in cases {
        assert_invalid(path, &app.get(path).await, field);
    }
    let empty_status = format!("/api/users/{rider}/bookings?status=");
    assert_invalid("an empty status", &app.get(&empty_status).await, "status");
}

#[actix_web::test]
async fn a_wrong_method_is_405_with_allow_and_an_unknown_path_404() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (Method::DELETE, "/api/bookings/1", "GET"),
        (Method::PUT, "/api/drivers", "GET, POST"),
        (Method::GET, "/api/bookings/1/assign", "POST"),
    ] {
        let response = app
            .client
            .request(method.clone(), format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        let allowed = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok());
        assert_eq!(allowed, Some(allow), "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], json!("method_not_allowed"));
    }
    app.get("/api/nothing-here")
        .await
        .expect(404, Some("route_not_found"));
}

#[actix_web::test]
async fn the_openapi_document_is_served_without_a_token_and_lists_every_route() {
    let app = spawn_app().await;
    let reply = app
        .as_caller(None, Method::GET, "/api/openapi.json", None)
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["openapi"], json!("3.1.0"));
    let paths = reply.body["paths"].as_object().unwrap();
    for path in [
        "/api/riders",
        "/api/riders/{id}",
        "/api/drivers",
        "/api/drivers/nearby",
        "/api/drivers/{id}",
        "/api/drivers/{id}/location",
        "/api/drivers/{id}/status",
        "/api/bookings",
        "/api/bookings/{id}",
        "/api/bookings/{id}/events",
        "/api/bookings/{id}/assign",
        "/api/bookings/{id}/accept",
        "/api/bookings/{id}/cancel",
        "/api/bookings/{id}/complete",
        "/api/users/{user_id}/bookings",
        "/api/locks/stats",
        "/api/cluster/nodes",
        "/api/health",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
}

/// The server's connections start with 1 KiB buffers (vendor/README.md): a request head or body
/// larger than that, and a response larger than that, are still served whole, and the connection
/// serves the next request after them.
#[actix_web::test]
async fn messages_larger_than_a_connections_first_buffers_are_served_whole_on_one_connection() {
    // Arrange: one connection, reused for every request below.
    let app = spawn_app().await;
    let rider = app.rider().await;
    let client = reqwest::Client::builder()
        .default_headers(crate::support::auth::ops())
        .http1_only()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let url = |path: &str| format!("{}{path}", app.address);
    let padded = format!(
        "{}{}",
        " ".repeat(40 * 1024),
        booking_body(rider, PICKUP.0, PICKUP.1)
    );

    // Act
    let health = client
        .get(url("/api/health"))
        .header("X-Padding", "a".repeat(12 * 1024))
        .send()
        .await
        .unwrap();
    let created = client
        .post(url("/api/bookings"))
        .header("Content-Type", "application/json")
        .body(padded)
        .send()
        .await
        .unwrap();
    let created_status = created.status().as_u16();
    let booking: Value = created.json().await.unwrap();
    let document = client.get(url("/api/openapi.json")).send().await.unwrap();
    let document_status = document.status().as_u16();
    let document = document.bytes().await.unwrap();
    let id = booking["data"]["id"].as_i64().unwrap();
    let stored = client
        .get(url(&format!("/api/bookings/{id}")))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(health.status().as_u16(), 200, "a 12 KiB header");
    assert_eq!(created_status, 201, "a 40 KiB body: {booking}");
    assert_eq!(document_status, 200);
    assert!(document.len() > 64 * 1024, "{} bytes", document.len());
    let document: Value = serde_json::from_slice(&document).unwrap();
    assert_eq!(document["openapi"], json!("3.1.0"));
    assert_eq!(stored.status().as_u16(), 200, "the next request after them");
    let stored: Value = stored.json().await.unwrap();
    assert_eq!(stored["data"]["rider_id"], json!(rider));
}
