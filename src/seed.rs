//! `ridelock seed`: demo data for the tutorial's curl commands. Ten riders, twenty drivers online
//! around lower Manhattan and three pending bookings. Idempotent: riders and drivers are keyed by
//! phone, busy drivers are left alone, and bookings are added only when the demo riders have none
//! pending. It also refreshes the geo index, so drivers it puts online can be assigned at once.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::config::Settings;
use crate::domain::ids::RiderId;
use crate::domain::values::{Fare, GeoPoint};
use crate::geo::DriverIndex;
use crate::redis_health::RedisHealth;
use crate::storage::bookings::{self, Audit, NewBooking};
use crate::storage::schema::{bookings as bookings_table, drivers, riders};
use crate::storage::{drivers as driver_rows, pool};

/// City Hall, the tutorial's pickup point.
const CENTER: GeoPoint = GeoPoint {
    lat: 40.7128,
    lng: -74.0060,
};

const RIDER_NAMES: [&str; 10] = [
    "Alice Johnson",
    "Bob Smith",
    "Carol White",
    "David Brown",
    "Eva Green",
    "Frank Miller",
    "Grace Lee",
    "Henry Wilson",
    "Ivy Chen",
    "Jack Davis",
];

/// What a seed run changed.
#[derive(Debug, Default)]
pub struct Seeded {
    pub riders: usize,
    pub drivers: usize,
    pub bookings: usize,
}

/// Migrates, seeds, and puts the online drivers into the geo index, so a server that is already
/// running can assign them at once.
pub async fn seed(settings: &Settings) -> anyhow::Result<Seeded> {
    let url = settings.database.url.expose().to_owned();
    tokio::task::spawn_blocking(move || pool::run_migrations(&url)).await??;
    let db = settings.database.pool()?;
    let mut conn = pool::conn(&db).await?;
    let seeded = run(&mut conn).await?;
    let health = RedisHealth::new("seed", settings.lease.ttl());
    let index = DriverIndex::new(
        crate::redis_conn::connect(&settings.redis)?,
        &settings.redis.key_prefix,
        health,
    );
    if let Err(error) = index.rebuild(&driver_rows::online(&mut conn).await?).await {
        // Not fatal: every node rebuilds the index when it starts and when Redis answers again.
        log::warn!("seed: driver geo index not rebuilt, Redis did not take it: {error}");
    }
    Ok(seeded)
}

async fn run(conn: &mut AsyncPgConnection) -> anyhow::Result<Seeded> {
    let mut seeded = Seeded::default();
    for (i, name) in RIDER_NAMES.iter().enumerate() {
        seeded.riders += diesel::insert_into(riders::table)
            .values((
                riders::name.eq(name),
                riders::phone.eq(format!("+1-555-0100-{:03}", i + 1)),
                riders::email.eq(format!("rider{}@example.com", i + 1)),
            ))
            .on_conflict(riders::phone)
            .do_nothing()
            .execute(conn)
            .await?;
    }
    for i in 0..20_u32 {
        // A ring of drivers within about 1.5 km of City Hall.
        let angle = f64::from(i) * std::f64::consts::TAU / 20.0;
        let radius_deg = 0.004 + 0.0006 * f64::from(i % 7);
        let (lat, lng) = (
            CENTER.lat + radius_deg * angle.sin(),
            CENTER.lng + radius_deg * angle.cos() * 1.3,
        );
        let phone = format!("+1-555-0200-{:03}", i + 1);
        let vehicle = if i % 5 == 4 { "premium" } else { "standard" };
        seeded.drivers += diesel::insert_into(drivers::table)
            .values((
                drivers::name.eq(format!("Driver {}", i + 1)),
                drivers::phone.eq(&phone),
                drivers::email.eq(format!("driver{}@example.com", i + 1)),
                drivers::vehicle_type.eq(vehicle),
            ))
            .on_conflict(drivers::phone)
            .do_nothing()
            .execute(conn)
            .await?;
        // Back online at its demo spot, unless it is driving someone right now.
        diesel::update(
            drivers::table
                .filter(drivers::phone.eq(&phone))
                .filter(drivers::current_booking_id.is_null()),
        )
        .set((
            drivers::lat.eq(lat),
            drivers::lng.eq(lng),
            drivers::status.eq("online"),
            drivers::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    }
    let demo_riders: Vec<i64> = riders::table
        .filter(riders::phone.like("+1-555-0100-%"))
        .order(riders::id)
        .select(riders::id)
        .load(conn)
        .await?;
    let pending: i64 = bookings_table::table
        .filter(bookings_table::rider_id.eq_any(&demo_riders))
        .filter(bookings_table::status.eq("pending"))
        .count()
        .get_result(conn)
        .await?;
    if pending == 0 {
        let request_id = format!("seed-{}", uuid::Uuid::new_v4());
        for (n, rider) in demo_riders.iter().take(3).enumerate() {
            let offset = 0.002 * n as f64;
            let new = NewBooking {
                rider_id: RiderId(*rider),
                pickup: GeoPoint {
                    lat: CENTER.lat + offset,
                    lng: CENTER.lng - offset,
                },
                dropoff: GeoPoint {
                    lat: 40.7589,
                    lng: -73.9851,
                },
                estimated_fare: Fare::from_cents(1550 + 100 * n as i64),
                vehicle_type: None,
            };
            let audit = Audit {
                node_id: "seed",
                request_id: &request_id,
                fencing_token: 0,
                actor: Some("system:seed"),
            };
            // Demo data is the operator's own: no per-rider limit.
            bookings::create(conn, &new, u32::MAX, audit).await?;
            seeded.bookings += 1;
        }
    }
    Ok(seeded)
}
