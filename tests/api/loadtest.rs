//! `ridelock loadtest` as a correctness check: every scenario, briefly, against a real server. No
//! timing is asserted; the scenarios' own invariant checks must all hold.

use std::time::Duration;

use ridelock_loadtest::html;
use ridelock_loadtest::progress::Progress;
use ridelock_loadtest::{run, LoadConfig, Scenario};

use crate::support::app::spawn_app;

fn config(url: String, scenario: Scenario) -> LoadConfig {
    LoadConfig {
        urls: vec![url],
        scenario,
        concurrency: 20,
        drivers: 5,
        bookings: 30,
        riders: 4,
        duration: Duration::from_secs(20),
        lifecycles: Some(20),
        rate: None,
        request_timeout: Duration::from_secs(10),
        token: Some(crate::support::auth::token("ops:loadtest")),
        progress: Progress::Off,
        streams: 0,
    }
}

#[actix_web::test]
async fn every_loadtest_scenario_runs_with_its_invariants_intact() {
    // Arrange
    let app = spawn_app().await;
    let scenarios = [
        Scenario::Tutorial,
        Scenario::SameBooking,
        Scenario::DriverContention,
        Scenario::Conflict,
        Scenario::Lifecycle,
        Scenario::Actors,
    ];

    for scenario in scenarios {
        // Act
        let report = run(&config(app.address.clone(), scenario)).await.unwrap();

        // Assert
        assert!(report.passed(), "{scenario:?}: {:#?}", report.violations);
        let requests: u64 = report.endpoints.iter().map(|e| e.count).sum();
        assert!(requests > 0, "{scenario:?} sent nothing");
        if scenario == Scenario::Lifecycle {
            assert!(report.lifecycles >= 20, "lifecycles: {}", report.lifecycles);
            let page = html::render(&report);
            assert_eq!(page.matches("<svg").count(), 4, "four charts");
            assert!(page.contains("POST /api/bookings/:id/assign"));
            assert!(page.contains("Invariants: all held."));
            // What was run, when, against which build; errors over time.
            assert!(page.contains("Errors per second"));
            assert!(page.contains(&format!("<th>started (UTC)</th><td>{}", report.started_at)));
            assert!(page.contains("<th>riders</th><td>4</td>"));
            let version = env!("CARGO_PKG_VERSION");
            assert_eq!(report.server_versions, [version]);
            assert!(page.contains(&format!("(version {version})")));
            let errors: u64 = report
                .endpoints
                .iter()
                .flat_map(|e| &e.timeline)
                .map(|p| p.errors)
                .sum();
            assert_eq!(errors, 0, "no 5xx and every request answered");
            let assign = report
                .endpoints
                .iter()
                .find(|e| e.endpoint == "POST /api/bookings/:id/assign")
                .unwrap();
            let per_second: u64 = assign.timeline.iter().map(|p| p.count).sum();
            assert_eq!(per_second, assign.count, "every request is in the timeline");
        }
    }
}

#[actix_web::test]
async fn open_loop_lifecycles_start_at_the_given_rate_with_invariants_intact() {
    // Arrange
    let app = spawn_app().await;
    let cfg = LoadConfig {
        riders: 8,
        lifecycles: Some(10),
        rate: Some(20.0),
        ..config(app.address.clone(), Scenario::Lifecycle)
    };

    // Act
    let report = run(&cfg).await.unwrap();

    // Assert: exactly the ten lifecycles started, all completed as intended.
    assert!(report.passed(), "{:#?}", report.violations);
    assert_eq!(report.lifecycles, 10);
    let created = report
        .endpoints
        .iter()
        .find(|e| e.endpoint == "POST /api/bookings")
        .unwrap();
    assert_eq!(created.count, 10);
}

#[actix_web::test]
async fn a_broken_invariant_fails_the_run() {
    // Arrange: a server whose search radius (5 m) reaches none of the scenario's drivers (10 m
    // and more from the pickup), so the tutorial's assignment cannot have its one winner.
    let app = crate::support::app::spawn_app_with(|s| s.assign.radius_km = 0.005).await;

    // Act
    let report = run(&config(app.address.clone(), Scenario::Tutorial))
        .await
        .unwrap();

    // Assert
    assert!(!report.passed());
    assert!(
        report.violations.iter().any(|v| v.contains("winners")),
        "{:#?}",
        report.violations
    );
}
