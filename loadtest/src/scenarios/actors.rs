//! Many live actors on the server, for the memory benchmark.

use std::sync::Arc;

use serde_json::json;

use super::{create_booking, driver, get, id_of, post, random_center, rider, Outcome};
use crate::client::LoadClient;

/// `n` bookings, each created and then sent one command its actor refuses (an accept by a driver
/// it was never assigned to), by 64 concurrent workers. Each refusal needs the booking's actor
/// live, so afterwards the server holds `n` actors and leases until they idle out: `make bench`
/// runs it against a node with a long `booking.idle_stop_ms` and reads that node's memory.
/// Every booking must answer 201 and then 409 `booking_not_assigned`, and stay pending.
pub async fn actors(c: Arc<LoadClient>, n: usize) -> anyhow::Result<Outcome> {
    const WORKERS: usize = 64;
    // Bookings per rider: every booking stays pending, and a rider may hold only so many
    // active ones (`booking.max_active_per_rider`, 1,000 in the local profile).
    const PER_RIDER: usize = 500;
    let center = random_center();
    let stranger = driver(&c, center.0, center.1).await?;
    let workers = (0..WORKERS.min(n.max(1))).map(|w| {
        let c = c.clone();
        tokio::spawn(async move {
            let mut violations = Vec::new();
            let mut last = None;
            let mut current = None;
            for (i, _) in (w..n).step_by(WORKERS).enumerate() {
                let rider = match current {
                    Some(rider) if i % PER_RIDER != 0 => rider,
                    _ => match rider(&c).await {
                        Ok(rider) => *current.insert(rider),
                        Err(error) => {
                            violations.push(format!("rider: {error}"));
                            continue;
                        }
                    },
                };
                let created = create_booking(&c, rider, center).await;
                let Ok(booking) = id_of(&created) else {
                    violations.push(format!("create: {} {}", created.status, created.error()));
                    continue;
                };
                let refused = post(
                    &c,
                    "POST /api/bookings/:id/accept",
                    format!("/api/bookings/{booking}/accept"),
                    json!({ "driver_id": stranger }),
                )
                .await;
                if refused.status != 409 || refused.error() != "booking_not_assigned" {
                    violations.push(format!(
                        "booking {booking}: accept by a stranger answered {} {}",
                        refused.status,
                        refused.error()
                    ));
                }
                last = Some(booking);
            }
            (violations, last)
        })
    });
    let mut out = Outcome::default();
    for worker in futures::future::join_all(workers).await {
        let (violations, last) = worker?;
        out.violations.extend(violations);
        // The last booking of each worker must still be pending: refusals wrote nothing.
        if let Some(booking) = last {
            let row = get(
                &c,
                "GET /api/bookings/:id",
                format!("/api/bookings/{booking}"),
            )
            .await;
            out.check(row.data()["status"] == "pending", || {
                format!("booking {booking} ended {}", row.data()["status"])
            });
        }
    }
    Ok(out)
}
