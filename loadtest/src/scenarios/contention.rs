//! Races: many requests released together at one booking or a few drivers, and exactly as many
//! winners as the invariant allows.

use std::sync::Arc;

use serde_json::json;

use super::{
    assign, create_booking, drivers, get, id_of, post, random_center, rider, together, Outcome,
};
use crate::client::{LoadClient, Reply};

/// The tutorial's flow: 10 concurrent creates, 5 concurrent assigns of one booking, lock stats.
pub async fn tutorial(c: Arc<LoadClient>) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let center = random_center();
    let rider = rider(&c).await?;
    drivers(&c, center, 5).await?;
    let creates = together(10, |_| {
        let c = c.clone();
        async move { create_booking(&c, rider, center).await }
    })
    .await;
    let created = creates.iter().filter(|r| r.status == 201).count();
    out.check(created == 10, || {
        format!("10 creates: {created} answered 201")
    });
    let target = id_of(&creates[0])?;
    let assigns = together(5, |_| {
        let c = c.clone();
        async move { assign(&c, target).await }
    })
    .await;
    exactly_one_winner(
        &mut out,
        &assigns,
        "booking_not_pending",
        "5 assigns of one booking",
    );
    let stats = get(&c, "GET /api/locks/stats", "/api/locks/stats".into()).await;
    out.check(stats.status == 200, || {
        format!("lock stats: {}", stats.status)
    });
    Ok(out)
}

/// K concurrent assigns of one booking: exactly one wins.
pub async fn same_booking(c: Arc<LoadClient>, k: usize) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let center = random_center();
    let rider = rider(&c).await?;
    drivers(&c, center, 3).await?;
    let booking = id_of(&create_booking(&c, rider, center).await)?;
    // Open the k connections first (reported as `GET /api/health`), as clients with keep-alive
    // connections would have them: the assigns then measure the server, not k TCP handshakes.
    together(k, |_| {
        let c = c.clone();
        async move { get(&c, "GET /api/health", "/api/health".to_owned()).await }
    })
    .await;
    let assigns = together(k, |_| {
        let c = c.clone();
        async move { assign(&c, booking).await }
    })
    .await;
    exactly_one_winner(
        &mut out,
        &assigns,
        "booking_not_pending",
        &format!("{k} assigns of one booking"),
    );
    Ok(out)
}

fn exactly_one_winner(out: &mut Outcome, replies: &[Reply], loser_code: &str, what: &str) {
    let won = replies.iter().filter(|r| r.status == 200).count();
    out.check(won == 1, || {
        format!("{what}: {won} winners, expected exactly 1")
    });
    for r in replies.iter().filter(|r| r.status != 200) {
        out.check(r.status == 409 && r.error() == loser_code, || {
            format!(
                "{what}: a loser got {} {} (expected 409 {loser_code})",
                r.status,
                r.error()
            )
        });
    }
}

/// B bookings racing for D drivers: exactly D win, each on its own driver, and every winner's
/// driver says it holds that booking.
pub async fn driver_contention(
    c: Arc<LoadClient>,
    drivers_n: usize,
    bookings_n: usize,
) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let center = random_center();
    let rider = rider(&c).await?;
    drivers(&c, center, drivers_n).await?;
    let mut bookings = Vec::with_capacity(bookings_n);
    for _ in 0..bookings_n {
        bookings.push(id_of(&create_booking(&c, rider, center).await)?);
    }
    let ids = Arc::new(bookings);
    let replies = together(bookings_n, |i| {
        let (c, ids) = (c.clone(), ids.clone());
        async move { assign(&c, ids[i]).await }
    })
    .await;
    let mut winners: Vec<(i64, i64)> = Vec::new();
    for r in &replies {
        match r.status {
            200 => winners.push((
                r.data()["booking"]["id"].as_i64().unwrap_or(0),
                r.data()["driver"]["id"].as_i64().unwrap_or(0),
            )),
            409 if r.error() == "no_drivers_available" => {}
            other => out
                .violations
                .push(format!("assign answered {other} {}", r.error())),
        }
    }
    out.check(winners.len() == drivers_n, || {
        format!("{} winners for {drivers_n} drivers", winners.len())
    });
    let mut drivers_won: Vec<i64> = winners.iter().map(|(_, d)| *d).collect();
    drivers_won.sort_unstable();
    drivers_won.dedup();
    out.check(drivers_won.len() == winners.len(), || {
        "a driver won two bookings".into()
    });
    for (booking, driver) in winners {
        let row = get(&c, "GET /api/drivers/:id", format!("/api/drivers/{driver}")).await;
        let holds = row.data()["current_booking_id"].as_i64() == Some(booking)
            && row.data()["status"] == "busy";
        out.check(holds, || {
            format!(
                "driver {driver} does not hold booking {booking}: {}",
                row.data()
            )
        });
    }
    Ok(out)
}

/// Cancel (rider) racing complete (driver) on N accepted bookings: one winner each, the stored
/// status matches it, and the driver ends online.
pub async fn conflict(c: Arc<LoadClient>, n: usize) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let center = random_center();
    let rider = rider(&c).await?;
    drivers(&c, center, n).await?;
    let mut accepted = Vec::with_capacity(n);
    for _ in 0..n {
        let booking = id_of(&create_booking(&c, rider, center).await)?;
        let assigned = assign(&c, booking).await;
        let driver = assigned.data()["driver"]["id"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("assign: {} {}", assigned.status, assigned.body))?;
        let accept = post(
            &c,
            "POST /api/bookings/:id/accept",
            format!("/api/bookings/{booking}/accept"),
            json!({ "driver_id": driver }),
        )
        .await;
        anyhow::ensure!(
            accept.status == 200,
            "accept: {} {}",
            accept.status,
            accept.body
        );
        accepted.push((booking, driver));
    }
    let pairs = Arc::new(accepted);
    let races = together(2 * n, |i| {
        let (c, pairs) = (c.clone(), pairs.clone());
        async move {
            let (booking, driver) = pairs[i / 2];
            if i % 2 == 0 {
                let body = json!({ "reason": "race", "user_id": rider, "user_type": "rider" });
                (
                    "cancelled",
                    post(
                        &c,
                        "POST /api/bookings/:id/cancel",
                        format!("/api/bookings/{booking}/cancel"),
                        body,
                    )
                    .await,
                )
            } else {
                let body = json!({ "driver_id": driver, "actual_fare": 16.25 });
                (
                    "completed",
                    post(
                        &c,
                        "POST /api/bookings/:id/complete",
                        format!("/api/bookings/{booking}/complete"),
                        body,
                    )
                    .await,
                )
            }
        }
    })
    .await;
    for (k, pair) in races.chunks(2).enumerate() {
        let (booking, driver) = pairs[k];
        let winners: Vec<&str> = pair
            .iter()
            .filter(|(_, r)| r.status == 200)
            .map(|(s, _)| *s)
            .collect();
        out.check(winners.len() == 1, || {
            format!("booking {booking}: {} winners", winners.len())
        });
        for (_, r) in pair.iter().filter(|(_, r)| r.status != 200) {
            out.check(r.status == 409, || {
                format!("booking {booking}: loser got {} {}", r.status, r.error())
            });
        }
        let stored = get(
            &c,
            "GET /api/bookings/:id",
            format!("/api/bookings/{booking}"),
        )
        .await;
        let status = stored.data()["status"].as_str().unwrap_or("").to_owned();
        out.check(winners.first() == Some(&status.as_str()), || {
            format!("booking {booking}: stored {status}, winner {winners:?}")
        });
        let d = get(&c, "GET /api/drivers/:id", format!("/api/drivers/{driver}")).await;
        out.check(d.data()["status"] == "online", || {
            format!("driver {driver} ended {}", d.data()["status"])
        });
    }
    Ok(out)
}
