//! Abuse (docs/security.md): what a caller without a token, a token holder or a stranger to a
//! booking can make a node do. Each test drives a real server and checks what it kept or wrote.

use reqwest::Method;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn unknown_methods_add_no_metrics_series() {
    // Arrange
    let app = spawn_app().await;
    let anonymous = reqwest::Client::new();

    // Act: 50 made-up methods, no token, on a known and an unknown path.
    for n in 0..50 {
        let method = Method::from_bytes(format!("FOO{n}").as_bytes()).unwrap();
        let path = if n % 2 == 0 { "/api/health" } else { "/x" };
        let status = anonymous
            .request(method, format!("{}{path}", app.address))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_client_error(), "FOO{n} {path}: {status}");
    }

    // Assert: one OTHER series per route, no caller-chosen text.
    let text = app.get_text("/metrics").await;
    assert!(!text.contains("FOO"), "{text}");
    let other: f64 = text
        .lines()
        .filter(|l| l.starts_with("ridelock_http_requests_total{method=\"OTHER\""))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(other, 50.0, "{text}");
}
