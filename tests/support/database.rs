//! Test databases: each test gets `test_<uuid>`, cloned from a template migrated once per run, and
//! drops it (with its Redis keys) when done. Set-up and tear-down use blocking connections on
//! their own threads, outside any async runtime. And the reads of a test's database that the
//! suites share: connections, counts, the audit trail, the bookings' stored state (the
//! invariants over them are in `audit.rs`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::redis_client::RedisAt;

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, _) = url
        .rsplit_once('/')
        .expect("DATABASE_URL has a database name");
    format!("{base}/{name}")
}

type BlockingPg = AsyncConnectionWrapper<AsyncPgConnection>;

/// Creates `test_<uuid>` from the template, migrating the template first (once per process and
/// server: the chaos suite uses several profiles' servers). An advisory lock serializes this
/// across test processes: PostgreSQL refuses to copy a template while anyone else is connected
/// to it.
pub fn create_database(server_url: &str) -> (String, String) {
    /// The servers whose template this process has migrated.
    static PREPARED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
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
        let mut prepared = PREPARED.lock().unwrap_or_else(|p| p.into_inner());
        if !prepared.contains(&admin) {
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
            prepared.insert(admin.clone());
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
pub fn drop_test_data(admin_url: String, name: String, redis: RedisAt, prefix: String) {
    let _ = std::thread::spawn(move || {
        if let Ok(mut conn) = BlockingPg::establish(&admin_url) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn);
        }
        if let Ok(mut redis) = redis.connect() {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query(&mut redis)
                .unwrap_or_default();
            // One by one: in a Redis Cluster the keys lie in many slots.
            for key in keys {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(key).query(&mut redis);
            }
        }
    })
    .join();
}

/// A fresh connection to a test's database (`url`), for assertions.
pub async fn connect(url: &str) -> AsyncPgConnection {
    <AsyncPgConnection as diesel_async::AsyncConnection>::establish(url)
        .await
        .expect("connect to the test database")
}

/// A one-number answer, named `n`.
#[derive(QueryableByName, Debug)]
pub struct Count {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

/// The number `sql` answers (as a column named `n`).
pub async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    diesel_async::RunQueryDsl::get_result::<Count>(diesel::sql_query(sql), conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

/// Whether a backend of this database, other than `conn`'s own, waits for a lock (a write queued
/// behind a test's `FOR UPDATE`).
pub async fn a_backend_waits_on_a_lock(conn: &mut AsyncPgConnection) -> bool {
    count(
        conn,
        "SELECT count(*) AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'
            AND pid <> pg_backend_pid()",
    )
    .await
        > 0
}

/// One step of a booking's audit trail (`booking_events`).
#[derive(QueryableByName, Debug, Clone)]
pub struct Event {
    /// Shown in failure messages (through Debug): the trail's order.
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub booking_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub from_status: Option<String>,
    #[diesel(sql_type = Text)]
    pub to_status: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub driver_id: Option<i64>,
    #[diesel(sql_type = Text)]
    pub node_id: String,
    #[diesel(sql_type = BigInt)]
    pub fencing_token: i64,
    #[diesel(sql_type = Text)]
    pub request_id: String,
    /// Who asked for the change (`rider:3`, `system:offer-timeout`).
    #[diesel(sql_type = Nullable<Text>)]
    pub actor: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

const EVENTS: &str = "SELECT id, booking_id, from_status, to_status, driver_id, node_id, \
                      fencing_token, request_id, actor, created_at FROM booking_events";

/// Every audit event, oldest first.
pub async fn events(conn: &mut AsyncPgConnection) -> Vec<Event> {
    diesel_async::RunQueryDsl::load(diesel::sql_query(format!("{EVENTS} ORDER BY id")), conn)
        .await
        .expect("read the audit trail")
}

/// One booking's audit events, oldest first.
pub async fn events_of(conn: &mut AsyncPgConnection, booking: i64) -> Vec<Event> {
    let query = diesel::sql_query(format!("{EVENTS} WHERE booking_id = $1 ORDER BY id"))
        .bind::<BigInt, _>(booking);
    diesel_async::RunQueryDsl::load(query, conn)
        .await
        .expect("read the booking's audit trail")
}

/// A booking as PostgreSQL holds it.
#[derive(QueryableByName, Debug, Clone)]
pub struct Stored {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = BigInt)]
    pub fencing_token: i64,
}

/// Every booking's stored status and fencing token, by id.
pub async fn stored(conn: &mut AsyncPgConnection) -> HashMap<i64, Stored> {
    let query = diesel::sql_query("SELECT id, status::text AS status, fencing_token FROM bookings");
    let rows: Vec<Stored> = diesel_async::RunQueryDsl::load(query, conn)
        .await
        .expect("read the bookings");
    rows.into_iter().map(|r| (r.id, r)).collect()
}

/// Every booking's stored status, by id.
pub async fn statuses(conn: &mut AsyncPgConnection) -> HashMap<i64, String> {
    let stored = stored(conn).await;
    stored.into_iter().map(|(id, b)| (id, b.status)).collect()
}

/// A transaction of the test's own holding one row locked (`SELECT … FOR UPDATE`), as another
/// writer would hold it, until [`RowLock::release`] (or until it is dropped, with its connection).
pub struct RowLock {
    conn: AsyncPgConnection,
}

impl RowLock {
    /// Locks the row `id` of `table` in the test's database at `url`.
    pub async fn take(url: &str, table: &str, id: i64) -> Self {
        let mut conn = connect(url).await;
        diesel_async::RunQueryDsl::execute(diesel::sql_query("BEGIN"), &mut conn)
            .await
            .expect("begin");
        let lock = diesel::sql_query(format!("SELECT id FROM {table} WHERE id = $1 FOR UPDATE"))
            .bind::<BigInt, _>(id);
        diesel_async::RunQueryDsl::execute(lock, &mut conn)
            .await
            .unwrap_or_else(|e| panic!("lock {table} {id}: {e}"));
        Self { conn }
    }

    /// Ends the transaction (it wrote nothing), freeing the row.
    pub async fn release(mut self) {
        diesel_async::RunQueryDsl::execute(diesel::sql_query("ROLLBACK"), &mut self.conn)
            .await
            .expect("rollback");
    }
}
