//! `GET /api/users/:user_id/bookings`: a rider's or driver's bookings, newest first, with the
//! status filter, `limit` and the `before` cursor, and every refused query.

use serde_json::json;

use crate::support::app::{spawn_app, TestApp};
use crate::support::fixtures::{Api, PICKUP};
use crate::support::reply::assert_invalid;

/// Lists `/api/users/<user>/bookings?<query>`; checks the envelope and that `count` matches.
async fn list(app: &TestApp, user: i64, query: &str) -> Vec<i64> {
    let reply = app.get(format!("/api/users/{user}/bookings?{query}")).await;
    reply.expect(200, None);
    let items = reply
        .data()
        .as_array()
        .unwrap_or_else(|| panic!("data is a list: {:#}", reply.body));
    assert_eq!(
        reply.body["count"],
        json!(items.len()),
        "count: {:#}",
        reply.body
    );
    items
        .iter()
        .map(|b| b["id"].as_i64().expect("booking id"))
        .collect()
}

fn newest_first(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids
}

#[actix_web::test]
async fn a_riders_bookings_are_listed_newest_first() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let other = app.rider().await;
    let mine = app.bookings(rider, 3).await;
    app.bookings(other, 2).await;

    // Act
    let listed = list(&app, rider, "user_type=rider").await;

    // Assert
    assert_eq!(listed, newest_first(mine));
}

#[actix_web::test]
async fn user_type_defaults_to_rider() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let mine = app.bookings(rider, 2).await;

    // Act
    let listed = list(&app, rider, "").await;

    // Assert
    assert_eq!(listed, newest_first(mine));
}

#[actix_web::test]
async fn a_drivers_bookings_are_listed_for_user_type_driver() {
    // Arrange: the driver's first booking completed, the second assigned; one booking it never had.
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.online_driver(PICKUP.0, PICKUP.1).await;
    let (done, driver) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, true).await;
    app.post(
        format!("/api/bookings/{done}/complete"),
        json!({ "driver_id": driver, "actual_fare": 10.0 }),
    )
    .await
    .expect(200, None);
    let (current, again) = app.assigned_booking(rider, PICKUP.0, PICKUP.1, false).await;
    assert_eq!(again, driver, "the only driver gets the second booking too");
    app.booking(rider, PICKUP.0, PICKUP.1).await;

    // Act
    let listed = list(&app, driver, "user_type=driver").await;
    let completed = list(&app, driver, "user_type=driver&status=completed").await;

    // Assert
    assert_eq!(listed, vec![current, done]);
    assert_eq!(completed, vec![done]);
}

#[actix_web::test]
async fn the_status_filter_keeps_only_matching_bookings() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let ids = app.bookings(rider, 3).await;
    app.post(
        format!("/api/bookings/{}/cancel", ids[1]),
        json!({ "reason": "no", "user_id": rider, "user_type": "rider" }),
    )
    .await
    .expect(200, None);

    // Act
    let cancelled = list(&app, rider, "user_type=rider&status=cancelled").await;
    let pending = list(&app, rider, "user_type=rider&status=pending").await;
    let completed = list(&app, rider, "user_type=rider&status=completed").await;

    // Assert
    assert_eq!(cancelled, vec![ids[1]]);
    assert_eq!(pending, vec![ids[2], ids[0]]);
    assert_eq!(completed, Vec::<i64>::new());
}

#[actix_web::test]
async fn paging_with_limit_and_before_visits_each_booking_exactly_once() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let all = app.bookings(rider, 5).await;

    // Act
    let mut pages = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let query = match cursor {
            None => "user_type=rider&limit=2".to_owned(),
            Some(before) => format!("user_type=rider&limit=2&before={before}"),
        };
        let page = list(&app, rider, &query).await;
        assert!(pages.len() < 5, "paging does not end: {pages:?}");
        if page.is_empty() {
            break;
        }
        cursor = page.last().copied();
        pages.push(page);
    }

    // Assert
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![2, 2, 1], "pages: {pages:?}");
    let seen: Vec<i64> = pages.concat();
    assert_eq!(seen, newest_first(all), "each booking once, newest first");
}

#[actix_web::test]
async fn limit_accepts_the_bounds_1_and_100() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    let all = app.bookings(rider, 3).await;

    // Act
    let one = list(&app, rider, "limit=1").await;
    let hundred = list(&app, rider, "limit=100").await;

    // Assert
    assert_eq!(one, vec![all[2]]);
    assert_eq!(hundred, newest_first(all));
}

#[actix_web::test]
async fn an_invalid_listing_query_is_rejected_naming_the_parameter() {
    // Arrange
    let app = spawn_app().await;
    let rider = app.rider().await;
    app.bookings(rider, 1).await;
    let cases = [
        (
            "user_type admin",
            format!("{rider}/bookings?user_type=admin"),
            "user_type",
        ),
        (
            "unknown status",
            format!("{rider}/bookings?status=flying"),
            "status",
        ),
        ("limit 0", format!("{rider}/bookings?limit=0"), "limit"),
        ("limit 101", format!("{rider}/bookings?limit=101"), "limit"),
        (
            "limit not a number",
            format!("{rider}/bookings?limit=all"),
            "limit",
        ),
        (
            "before not an id",
            format!("{rider}/bookings?before=abc"),
            "before",
        ),
        ("user id not an id", "abc/bookings".to_owned(), "user_id"),
    ];

    for (case, path, field) in cases {
        let before = app.fingerprint().await;

        // Act
        let reply = app.get(format!("/api/users/{path}")).await;

        // Assert
        assert_invalid(case, &reply, field);
        assert_eq!(app.fingerprint().await, before, "{case}: nothing written");
    }
}
