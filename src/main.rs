//! The `ridelock` binary: the tutorial's quick start as subcommands.

use std::io::IsTerminal;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ridelock::config;
use ridelock::startup::Application;
use ridelock::storage::pool;
use ridelock::telemetry;
// The load-test client is its own crate (loadtest/): the binary carries it, the library does not.
use ridelock_loadtest::progress::Progress;

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
    /// Print a bearer token for `rider <id>`, `driver <id>` or `ops <name>`, signed with the
    /// configured auth secret (or RS256 private key): for development and tests.
    Token(TokenArgs),
    /// Print the OpenAPI 3.1 document the server serves at /api/openapi.json (docs/openapi.json
    /// is this output).
    Openapi,
    /// Fire a scenario of concurrent requests at one or more servers, check its invariants and
    /// report latencies (test-concurrent-week3, for real). Exits non-zero when an invariant broke.
    Loadtest(LoadArgs),
}

#[derive(clap::Args)]
struct TokenArgs {
    #[arg(value_enum)]
    kind: TokenKind,
    /// The rider's or driver's id, or the operator's name.
    who: String,
    /// Lifetime in seconds (default: auth.token_ttl_secs).
    #[arg(long)]
    ttl_secs: Option<u64>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TokenKind {
    Rider,
    Driver,
    Ops,
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Server base URL; repeat to spread requests round-robin over several nodes.
    #[arg(long = "url", default_value = "http://127.0.0.1:3000")]
    urls: Vec<String>,
    #[arg(long, value_enum, default_value = "tutorial")]
    scenario: ridelock_loadtest::Scenario,
    /// Concurrent assigns of one booking (same-booking).
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Drivers (driver-contention).
    #[arg(long, default_value_t = 20)]
    drivers: usize,
    /// Bookings (driver-contention, conflict, actors).
    #[arg(long, default_value_t = 200)]
    bookings: usize,
    /// Closed-loop virtual riders (lifecycle).
    #[arg(long, default_value_t = 64)]
    riders: usize,
    /// How long the lifecycle scenario runs, seconds.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Stop the lifecycle scenario after this many lifecycles instead.
    #[arg(long)]
    lifecycles: Option<u64>,
    /// Open-loop arrivals (lifecycle): start this many lifecycles per second, whatever the
    /// server's pace; `--riders` then sizes the rider and driver pools.
    #[arg(long)]
    rate: Option<f64>,
    /// Event streams held open during a lifecycle run: the riders' own first, then idle users'
    /// (their arrival delays are reported).
    #[arg(long, default_value_t = 0)]
    streams: usize,
    /// Per-request timeout, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Bearer token sent with every request: an ops token, e.g. `$(ridelock token ops loadtest)`.
    /// Not needed against `make run` (auth off).
    #[arg(long, env = "RIDELOCK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report (tables and charts) to this file.
    #[arg(long, value_name = "FILE.html")]
    report: Option<std::path::PathBuf>,
    /// No live progress on stderr.
    #[arg(long)]
    quiet: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init();
    match cli.command {
        // Needs no configuration: it only talks HTTP to the servers it is pointed at.
        Command::Loadtest(args) => loadtest(args),
        Command::Openapi => {
            println!("{}", ridelock::http::openapi::pretty_document()?);
            Ok(())
        }
        command => run(command, config::load()?),
    }
}

fn run(command: Command, settings: config::Settings) -> anyhow::Result<()> {
    match command {
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
            let stopper = app.stop_handle();
            actix_web::rt::spawn(async move {
                shutdown_signal().await;
                log::info!("signal received, draining");
                stopper.stop().await;
            });
            app.run_until_stopped().await?;
            Ok(())
        }),
        Command::Token(args) => {
            let kind = match args.kind {
                TokenKind::Rider => "rider",
                TokenKind::Driver => "driver",
                TokenKind::Ops => "ops",
            };
            let subject = ridelock::auth::Principal::from_subject(&format!("{kind}:{}", args.who))
                .with_context(|| {
                    format!(
                        "{kind} {:?}: ids are positive integers, names 1-64 of [A-Za-z0-9._-]",
                        args.who
                    )
                })?;
            let ttl = args.ttl_secs.unwrap_or(settings.auth.token_ttl_secs);
            let token = ridelock::auth::mint(
                &settings.auth,
                &subject,
                std::time::Duration::from_secs(ttl),
            )?;
            println!("{token}");
            Ok(())
        }
        // Handled in main, before any configuration is read.
        Command::Loadtest(args) => loadtest(args),
        Command::Openapi => Ok(()),
    }
}

fn loadtest(args: LoadArgs) -> anyhow::Result<()> {
    let cfg = ridelock_loadtest::LoadConfig {
        urls: args.urls,
        scenario: args.scenario,
        concurrency: args.concurrency,
        drivers: args.drivers,
        bookings: args.bookings,
        riders: args.riders,
        duration: std::time::Duration::from_secs(args.duration_s),
        lifecycles: args.lifecycles,
        rate: args.rate,
        request_timeout: std::time::Duration::from_millis(args.timeout_ms),
        token: args.token,
        streams: args.streams,
        progress: if args.quiet {
            Progress::Off
        } else if std::io::stderr().is_terminal() {
            Progress::Bar
        } else {
            Progress::Lines
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(ridelock_loadtest::run(&cfg))?;
    if let Some(path) = &args.report {
        std::fs::write(path, ridelock_loadtest::html::render(&report))
            .with_context(|| format!("writing the HTML report to {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", ridelock_loadtest::render(&report));
    }
    anyhow::ensure!(
        report.passed(),
        "{} invariant(s) broken",
        report.violations.len()
    );
    Ok(())
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
