//! The chaos profile's PostgreSQL and Redis (scripts/services.sh; ports 25434 and 26381 unless
//! `var/chaos/ports` says otherwise): started once per run, then stopped and started again, on the
//! same ports, by the faults that need them down (`faults.rs`).

use std::path::PathBuf;
use std::process::Command;

use tokio::sync::OnceCell;

pub struct Services {
    /// The PostgreSQL server (its `ridelock` database); each cluster gets its own database there.
    pub pg_url: String,
    pub redis_url: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/services.sh <command> chaos`; its stdout.
async fn services(command: &'static str) -> String {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("bash")
            .arg(root().join("scripts/services.sh"))
            .args([command, "chaos"])
            .output()
            .expect("run scripts/services.sh");
        assert!(
            out.status.success(),
            "services.sh {command} chaos failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

fn exported(env: &str, name: &str) -> String {
    env.lines()
        .find_map(|line| line.strip_prefix(&format!("export {name}=")))
        .unwrap_or_else(|| panic!("{name} missing from:\n{env}"))
        .to_owned()
}

static UP: OnceCell<Services> = OnceCell::const_new();

/// Starts the chaos services if they are not running (a scenario that failed midway may have
/// left one stopped), once per scenario.
pub async fn up() -> &'static Services {
    let services = UP
        .get_or_init(|| async {
            let env = services("up").await;
            Services {
                pg_url: exported(&env, "DATABASE_URL"),
                redis_url: exported(&env, "REDIS_URL"),
            }
        })
        .await;
    start_postgres().await;
    start_redis().await;
    services
}

/// The chaos services, once [`up`] has started them.
pub fn started() -> Option<&'static Services> {
    UP.get()
}

pub async fn stop_postgres() {
    services("stop-postgres").await;
}

pub async fn start_postgres() {
    services("start-postgres").await;
}

/// Freezes PostgreSQL (SIGSTOP to all its processes): it keeps its connections and answers none.
pub async fn freeze_postgres() {
    services("freeze-postgres").await;
}

/// Wakes a frozen PostgreSQL and waits until it answers.
pub async fn thaw_postgres() {
    services("thaw-postgres").await;
}

/// Stops Redis (SIGTERM; it keeps nothing: the profile runs it without persistence).
pub async fn stop_redis() {
    services("stop-redis").await;
}

pub async fn start_redis() {
    services("start-redis").await;
}
