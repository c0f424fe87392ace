//! The development services `make test` runs on (scripts/services.sh) trust no local user:
//! PostgreSQL over TCP and Redis ask for the generated passwords, Redis does not run as root, and
//! the files holding the passwords are the owner's alone.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use diesel_async::{AsyncConnection, AsyncPgConnection};

/// `url` without the password of its user part.
fn without_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (auth, host) = rest.rsplit_once('@').expect("the URL carries credentials");
    let user = auth.split(':').next().unwrap();
    format!("{scheme}://{user}@{host}")
}

fn var(profile_file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("var/test")
        .join(profile_file)
}

#[actix_web::test]
async fn the_test_services_refuse_callers_without_their_passwords() {
    let database = std::env::var("DATABASE_URL").unwrap();
    let redis = std::env::var("REDIS_URL").unwrap();

    // psql, as any local user could run it: -w never prompts, so the server's demand for a
    // password shows as "no password supplied".
    let refused = std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
        .args(["-w", "-Atqc", "select 1", &without_password(&database)])
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "PostgreSQL let a caller in without the password"
    );
    assert!(said.contains("no password supplied"), "{said}");
    assert!(AsyncPgConnection::establish(&database).await.is_ok());

    let mut anonymous = redis::Client::open(without_password(&redis).replace("default@", ""))
        .unwrap()
        .get_connection()
        .unwrap();
    let ping = redis::cmd("PING").query::<String>(&mut anonymous);
    let error = ping.expect_err("Redis answered a caller without the password");
    assert_eq!(error.code(), Some("NOAUTH"), "{error}");
}

#[test]
fn redis_does_not_run_as_root_and_the_secrets_are_private() {
    // Under var/test/redis, or in the private directory recorded when the redis user cannot
    // enter the checkout.
    let home = std::fs::read_to_string(var("redis.home"))
        .map(|path| std::path::PathBuf::from(path.trim()))
        .unwrap_or_else(|_| var("redis"));
    let pid = std::fs::read_to_string(home.join("redis.pid")).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .unwrap();
    assert_ne!(uid, "0", "redis-server runs as root");
    for secret in ["env", "pg.secret", "redis.secret"] {
        let mode = std::fs::metadata(var(secret)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }
}
