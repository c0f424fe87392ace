//! The `ridelock` binary: the tutorial's quick start as subcommands.

use clap::{Parser, Subcommand};
use ridelock::config;
use ridelock::startup::Application;
use ridelock::storage::pool;
use ridelock::telemetry;

#[derive(Parser)]
#[command(
    name = "ridelock",
    version,
    about = "Booking-coordination server for ride-hailing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending database migrations (the tutorial's setup-week3).
    Migrate,
    /// Load idempotent demo data: riders, online drivers, pending bookings (seed-week3).
    Seed,
    /// Serve the API (start-week3); runs pending migrations first.
    Serve,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init();
    let settings = config::load()?;
    match cli.command {
        Command::Migrate => {
            let applied = pool::run_migrations(settings.database.url.expose())?;
            log::info!("migrations applied count={applied}");
            Ok(())
        }
        Command::Seed => actix_web::rt::System::new().block_on(async {
            let seeded = ridelock::seed::seed(&settings).await?;
            log::info!(
                "seed done riders_added={} drivers_added={} bookings_added={}",
                seeded.riders,
                seeded.drivers,
                seeded.bookings
            );
            Ok(())
        }),
        Command::Serve => actix_web::rt::System::new().block_on(async {
            let app = Application::build(settings).await?;
            let handle = app.handle();
            actix_web::rt::spawn(async move {
                shutdown_signal().await;
                log::info!("signal received, draining");
                handle.stop(true).await;
            });
            app.run_until_stopped().await?;
            Ok(())
        }),
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
