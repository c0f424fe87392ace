//! `/api/riders`: registering a rider, reading one back, and every refusal of both.

use serde_json::{json, Value};

use crate::support::app::spawn_app;
use crate::support::fixtures::Api;
use crate::support::reply::assert_invalid;

#[actix_web::test]
async fn creating_a_rider_stores_it_and_returns_201() {
    // Arrange
    let app = spawn_app().await;
    let body =
        json!({ "name": "Ada Lovelace", "phone": "+1 212 555 0100", "email": "ada@example.com" });

    // Act
    let created = app.post("/api/riders", body).await;

    // Assert
    created.expect(201, None);
    let id = created.data()["id"].as_i64().expect("rider id");
    assert!(id > 0, "id: {:#}", created.body);
    assert_eq!(created.data()["name"], json!("Ada Lovelace"));
    assert_eq!(created.data()["phone"], json!("+1 212 555 0100"));
    assert_eq!(created.data()["email"], json!("ada@example.com"));
    let stored = app.get(format!("/api/riders/{id}")).await;
    stored.expect(200, None);
    assert_eq!(
        stored.data(),
        created.data(),
        "stored rider = created rider"
    );
}

#[actix_web::test]
async fn a_rider_without_an_email_is_stored_with_a_null_email() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let created = app
        .post(
            "/api/riders",
            json!({ "name": "  Grace  ", "phone": "555-0101" }),
        )
        .await;

    // Assert
    created.expect(201, None);
    let id = created.data()["id"].as_i64().expect("rider id");
    let stored = app.get(format!("/api/riders/{id}")).await;
    stored.expect(200, None);
    assert_eq!(stored.data()["name"], json!("Grace"), "name is trimmed");
    assert_eq!(stored.data()["email"], Value::Null);
}

#[actix_web::test]
async fn a_second_rider_with_the_same_phone_is_rejected_as_a_duplicate() {
    // Arrange
    let app = spawn_app().await;
    app.post(
        "/api/riders",
        json!({ "name": "First", "phone": "+1 555 000 1111" }),
    )
    .await
    .expect(201, None);
    let before = app.fingerprint().await;

    // Act
    let reply = app
        .post(
            "/api/riders",
            json!({ "name": "Second", "phone": "+1 555 000 1111" }),
        )
        .await;

    // Assert
    reply.expect(409, Some("duplicate_phone"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn rider_creation_with_a_missing_or_invalid_field_is_rejected_naming_it() {
    // Arrange
    let app = spawn_app().await;
    let cases = [
        ("missing name", json!({ "phone": "555-0102" }), "name"),
        (
            "blank name",
            json!({ "name": "   ", "phone": "555-0102" }),
            "name",
        ),
        (
            "name not a string",
            json!({ "name": 7, "phone": "555-0102" }),
            "name",
        ),
        ("missing phone", json!({ "name": "Ann" }), "phone"),
        (
            "phone with letters",
            json!({ "name": "Ann", "phone": "call me" }),
            "phone",
        ),
        (
            "phone not a string",
            json!({ "name": "Ann", "phone": 5550102 }),
            "phone",
        ),
        (
            "email without @",
            json!({ "name": "Ann", "phone": "555-0102", "email": "ann.example.com" }),
            "email",
        ),
        (
            "name with a NUL byte (PostgreSQL would refuse it)",
            json!({ "name": "An\u{0}n", "phone": "555-0102" }),
            "name",
        ),
    ];

    for (case, body, field) in cases {
        let before = app.fingerprint().await;

        // Act
        let reply = app.post("/api/riders", body).await;

        // Assert
        assert_invalid(case, &reply, field);
        assert_eq!(app.fingerprint().await, before, "{case}: nothing written");
    }
}

#[actix_web::test]
async fn getting_an_unknown_rider_is_404() {
    // Arrange
    let app = spawn_app().await;
    let before = app.fingerprint().await;

    // Act
    let reply = app.get("/api/riders/999999").await;

    // Assert
    reply.expect(404, Some("rider_not_found"));
    assert_eq!(app.fingerprint().await, before, "nothing written");
}

#[actix_web::test]
async fn a_rider_id_that_is_not_a_positive_integer_is_rejected() {
    // Arrange
    let app = spawn_app().await;
    app.rider().await;
    let before = app.fingerprint().await;

    for raw in ["abc", "0", "-3", "1.5"] {
        // Act
        let reply = app.get(format!("/api/riders/{raw}")).await;

        // Assert
        assert_invalid(&format!("id {raw:?}"), &reply, "id");
    }
    assert_eq!(app.fingerprint().await, before, "nothing written");
}
