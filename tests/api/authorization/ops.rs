//! What needs an ops token: riders and drivers are refused it, ops get it.

use reqwest::Method;
use serde_json::json;

use super::{assert_refused, refused, world};

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
