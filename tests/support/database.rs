//! Test databases, shared by the test binaries: each test gets `test_<uuid>`, cloned from a
//! template migrated once per run, and drops it (with its Redis keys) when done. Set-up and
//! tear-down use blocking connections on their own threads, outside any async runtime.
#![allow(dead_code)]

use std::sync::{Mutex, OnceLock};

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, _) = url
        .rsplit_once('/')
        .expect("DATABASE_URL has a database name");
    format!("{base}/{name}")
}

type BlockingPg = AsyncConnectionWrapper<AsyncPgConnection>;

/// Creates `test_<uuid>` from the template, migrating the template first (once per process).
/// An advisory lock serializes this across test processes: PostgreSQL refuses to copy a template
/// while anyone else is connected to it.
pub fn create_database(server_url: &str) -> (String, String) {
    static PREPARED: OnceLock<()> = OnceLock::new();
    static LOCAL: Mutex<()> = Mutex::new(());
    let _local = LOCAL.lock().unwrap_or_else(|p| p.into_inner());
    let admin_url = with_database(server_url, "postgres");
    let template_url = with_database(server_url, "ridelock_template");
    let name = format!("test_{}", Uuid::new_v4().simple());
    let url = with_database(server_url, &name);
    let (admin, name_copy) = (admin_url.clone(), name.clone());
    std::thread::spawn(move || {
        let mut conn = BlockingPg::establish(&admin).expect("connect to the postgres database");
        diesel::sql_query("SELECT pg_advisory_lock(727274)")
            .execute(&mut conn)
            .expect("advisory lock");
        if PREPARED.get().is_none() {
            let exists: i64 = diesel::select(diesel::dsl::sql::<BigInt>(
                "(SELECT count(*) FROM pg_database WHERE datname = 'ridelock_template')",
            ))
            .get_result(&mut conn)
            .expect("look up the template");
            if exists == 0 {
                diesel::sql_query("CREATE DATABASE ridelock_template")
                    .execute(&mut conn)
                    .expect("create template");
            }
            ridelock::storage::pool::run_migrations(&template_url).expect("migrate the template");
            let _ = PREPARED.set(());
        }
        diesel::sql_query(format!(
            "CREATE DATABASE {name_copy} TEMPLATE ridelock_template"
        ))
        .execute(&mut conn)
        .expect("clone the template");
        diesel::sql_query("SELECT pg_advisory_unlock(727274)")
            .execute(&mut conn)
            .expect("advisory unlock");
    })
    .join()
    .expect("database set-up thread");
    (name, url)
}

/// Drops a test database and the test's Redis keys.
pub fn drop_test_data(admin_url: String, name: String, redis_url: String, prefix: String) {
    let _ = std::thread::spawn(move || {
        if let Ok(mut conn) = BlockingPg::establish(&admin_url) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn);
        }
        if let Ok(mut redis) = redis::Client::open(redis_url).and_then(|c| c.get_connection()) {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query(&mut redis)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut redis);
            }
        }
    })
    .join();
}
