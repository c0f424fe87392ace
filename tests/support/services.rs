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

/// The project's directory: its scripts and configuration.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/<script>` (an installer: nginx, chromium) and panics with its stderr if it
/// fails; its stdout.
pub async fn install(script: &'static str) -> String {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(root().join("scripts").join(script))
            .output()
            .unwrap_or_else(|e| panic!("run scripts/{script}: {e}"))
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "scripts/{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `scripts/services.sh <command> chaos`; its stdout.
async fn services(command: &'static str) -> String {
    services_of(command, "chaos").await
}

/// Runs `scripts/services.sh <command> <profile>`; its stdout.
async fn services_of(command: &'static str, profile: &'static str) -> String {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("bash")
            .arg(root().join("scripts/services.sh"))
            .args([command, profile])
            .output()
            .expect("run scripts/services.sh");
        assert!(
            out.status.success(),
            "services.sh {command} {profile} failed:\n{}",
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

/// A Redis deployment of several servers (the `sentinel` or `rcluster` profile), whose primary
/// the failover scenarios kill or freeze.
pub struct Deployment {
    pub profile: &'static str,
    pub pg_url: String,
    pub redis_url: String,
    /// `RIDELOCK_REDIS__*` for the nodes: the mode, the sentinels or cluster nodes.
    pub env: Vec<(String, String)>,
}

impl Deployment {
    /// Starts the profile's servers if they are not running, restarts any of its Redis servers
    /// a scenario left down, and waits until every replica is in sync.
    pub async fn up(profile: &'static str) -> Self {
        let env = services_of("up", profile).await;
        services_of("start-redis", profile).await;
        let redis_env = env
            .lines()
            .filter_map(|line| line.strip_prefix("export RIDELOCK_REDIS__"))
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| (format!("RIDELOCK_REDIS__{name}"), value.to_owned()))
            .collect();
        Self {
            profile,
            pg_url: exported(&env, "DATABASE_URL"),
            redis_url: exported(&env, "REDIS_URL"),
            env: redis_env,
        }
    }

    pub fn is_cluster(&self) -> bool {
        self.env
            .iter()
            .any(|(name, value)| name == "RIDELOCK_REDIS__MODE" && value == "cluster")
    }

    /// `kill -9` of the current primary (in a cluster, the one serving slot 0); its port.
    pub async fn kill_primary(&self) -> u16 {
        port_of(&services_of("kill-redis-primary", self.profile).await)
    }

    /// SIGSTOP to the current primary; its port.
    pub async fn freeze_primary(&self) -> u16 {
        port_of(&services_of("freeze-redis-primary", self.profile).await)
    }

    /// SIGCONT to every frozen server of the profile.
    pub async fn thaw(&self) {
        services_of("thaw-redis", self.profile).await;
    }

    /// Starts every server of the profile that is down (a killed primary rejoins as a replica)
    /// and waits until it is in sync.
    pub async fn restore(&self) {
        services_of("start-redis", self.profile).await;
    }
}

impl Deployment {
    /// A plain connection to one of the profile's Redis servers, by port.
    pub fn connect_to(&self, port: u16) -> redis::Connection {
        // redis://default:<password>@127.0.0.1:<port>/, as services.sh writes it.
        let (host, _) = self
            .redis_url
            .trim_end_matches('/')
            .rsplit_once(':')
            .expect("REDIS_URL ends with a port");
        redis::Client::open(format!("{host}:{port}/"))
            .and_then(|client| client.get_connection())
            .unwrap_or_else(|error| panic!("Redis on :{port}: {error}"))
    }
}

fn port_of(printed: &str) -> u16 {
    printed
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a port: {printed:?}"))
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
