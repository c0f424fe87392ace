//! The binary as it is installed: it runs from any directory with its built-in defaults, and it
//! refuses to start in a configuration other nodes could not reach it in.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::database;
use crate::support::poll;
use crate::support::redis_client::RedisAt;
use crate::support::redis_server::free_port;

const BINARY: &str = env!("CARGO_BIN_EXE_ridelock");

/// An empty directory of the test's own.
fn empty_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ridelock-{what}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

/// `cmd` serving on `port`, against a database and key prefix of its own.
fn serve(mut cmd: Command, port: u16, db_url: &str, prefix: &str) -> Child {
    cmd.env_remove("RIDELOCK_CONFIG_DIR")
        .env("RIDELOCK_ENV", "test")
        .env("DATABASE_URL", db_url)
        .env("RIDELOCK_SERVER__PORT", port.to_string())
        .env("RIDELOCK_REDIS__KEY_PREFIX", prefix)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs")
}

/// Waits for `/api/health` to answer 200; the child's stderr if it exits first.
async fn wait_healthy(child: &mut Child, port: u16) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{port}/api/health");
    // Per look: whether it answered healthy, or how it exited.
    let seen = poll::until(
        Duration::from_secs(30),
        || {
            let exited = child.try_wait().expect("child status");
            let url = url.clone();
            async move {
                match exited {
                    Some(status) => Some(Err(status)),
                    None => reqwest::get(&url)
                        .await
                        .is_ok_and(|reply| reply.status() == 200)
                        .then_some(Ok(())),
                }
            }
        },
        Option::is_some,
    )
    .await;
    match seen {
        Ok(Some(Ok(()))) => Ok(()),
        Ok(Some(Err(status))) => {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                std::io::Read::read_to_string(&mut stderr, &mut err).ok();
            }
            Err(format!("exited with {status}: {err}"))
        }
        Ok(None) | Err(_) => Err("no healthy answer within 30 s".into()),
    }
}

fn stop(mut child: Child) {
    // SIGTERM: the node drains and exits on its own.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

#[actix_web::test]
async fn the_binary_runs_from_an_empty_directory_with_the_checkouts_config_hidden() {
    // Arrange: a copy of the binary in an empty directory, a database, and an empty directory
    // mounted over the checkout's config/ (in a mount namespace of the child's own, so nothing
    // else running sees it).
    let home = empty_dir("installed");
    let binary = home.join("ridelock");
    std::fs::copy(BINARY, &binary).expect("copy the binary");
    let hide = empty_dir("hidden-config");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let (db_name, db_url) = database::create_database(&std::env::var("DATABASE_URL").unwrap());
    let port = free_port();
    let mut cmd = Command::new("unshare");
    cmd.arg("--mount")
        .arg("sh")
        .arg("-c")
        .arg(r#"mount --bind "$1" "$2" && ls -A "$2" | grep -q . && exit 97; exec "$3" serve"#)
        .arg("sh")
        .args([&hide, &config, &binary])
        .current_dir(&home);

    // Act
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let mut child = serve(cmd, port, &db_url, &prefix);
    let healthy = wait_healthy(&mut child, port).await;

    // Assert: it served, on the test profile's settings built into it (as the database and port
    // come from the environment, all else is built in).
    stop(child);
    database::drop_test_data(
        database::with_database(&db_url, "postgres"),
        db_name,
        RedisAt::from_env(),
        prefix,
    );
    let _ = std::fs::remove_dir_all(&home);
    let _ = std::fs::remove_dir_all(&hide);
    healthy.expect("the installed binary serves with its built-in configuration");
}

#[actix_web::test]
async fn a_node_listening_beyond_loopback_without_an_advertise_url_refuses_to_start() {
    // Arrange: private secrets, so that only the advertise URL is missing.
    let private = "k7Qw9zX2mN4pR8tV1yB6cF3hJ5lS0dGaZ";
    let run = |advertise: Option<&str>| -> Output {
        let mut cmd = Command::new(BINARY);
        cmd.arg("serve")
            .env("RIDELOCK_ENV", "test")
            .env("RIDELOCK_SERVER__HOST", "0.0.0.0")
            .env("RIDELOCK_SERVER__PORT", free_port().to_string())
            .env("RIDELOCK_CLUSTER__SECRET", private)
            .env("RIDELOCK_AUTH__SECRET", private)
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none");
        if let Some(url) = advertise {
            cmd.env("RIDELOCK_NODE__ADVERTISE_URL", url);
        }
        cmd.output().expect("the binary runs")
    };

    // Act
    let refused = run(None);
    let unroutable = run(Some("http://0.0.0.0:3000"));

    // Assert: both exit at once with an error that says what to set.
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        said.contains("node.advertise_url must be set"),
        "stderr: {said}"
    );
    let said = String::from_utf8_lossy(&unroutable.stderr);
    assert!(!unroutable.status.success());
    assert!(said.contains("names no machine"), "stderr: {said}");
}

#[actix_web::test]
async fn without_a_named_profile_the_binary_refuses_the_development_defaults() {
    // Arrange: everything `make run` gives a server except RIDELOCK_ENV; then a profile of
    // another name with the development secrets.
    let run = |profile: Option<&str>| -> Output {
        let mut cmd = Command::new(BINARY);
        cmd.arg("serve")
            .env_remove("RIDELOCK_ENV")
            .env_remove("RIDELOCK_CONFIG_DIR")
            .env("RIDELOCK_SERVER__PORT", free_port().to_string())
            .env("RIDELOCK_NODE__ID", "n1")
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .env("REDIS_URL", "redis://127.0.0.1:1/")
            .env("RIDELOCK_REDIS__MODE", "single")
            .current_dir(empty_dir("no-profile"));
        if let Some(profile) = profile {
            cmd.env("RIDELOCK_ENV", profile)
                .env("RIDELOCK_CLUSTER__SECRET", "dev-local-cluster-secret")
                .env("RIDELOCK_AUTH__SECRET", "dev-local-auth-secret");
        }
        cmd.output().expect("the binary runs")
    };

    // Act
    let unnamed = run(None);
    let staging = run(Some("staging"));
    let staging_off = {
        let mut cmd = Command::new(BINARY);
        cmd.arg("serve")
            .env("RIDELOCK_ENV", "staging")
            .env("RIDELOCK_AUTH__MODE", "off")
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none");
        cmd.output().expect("the binary runs")
    };

    // Assert: each exits at once, saying why, before touching anything.
    let said = String::from_utf8_lossy(&unnamed.stderr);
    assert!(!unnamed.status.success(), "stderr: {said}");
    assert!(said.contains("RIDELOCK_ENV is not set"), "stderr: {said}");
    assert!(said.contains("cluster.secret"), "stderr: {said}");
    let said = String::from_utf8_lossy(&staging.stderr);
    assert!(!staging.status.success(), "stderr: {said}");
    assert!(said.contains("private value"), "stderr: {said}");
    let said = String::from_utf8_lossy(&staging_off.stderr);
    assert!(!staging_off.status.success(), "stderr: {said}");
}
