//! The in-process app of the api suite: every test gets its own app on a random port, its own
//! PostgreSQL database (cloned from a template migrated once per run) and its own Redis key
//! prefix, all on the real servers named by DATABASE_URL and REDIS_URL (`make test` starts them).

use std::sync::Once;

use diesel::sql_types::Text;
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use ridelock::config::{self, Secret, Settings};
use ridelock::startup::Application;
use serde_json::{json, Value};
use uuid::Uuid;

use super::database::{self, with_database, RowLock};
use super::fixtures::{lease_key, Api, PICKUP};
use super::redis_client::RedisAt;
use super::reply::Reply;

pub struct TestApp {
    pub address: String,
    pub db_name: String,
    pub db_url: String,
    pub redis_url: String,
    /// Where this app's keys live (its Redis, or the cluster it uses).
    pub redis_at: RedisAt,
    pub redis_prefix: String,
    pub node_id: String,
    pub client: reqwest::Client,
    server: ridelock::startup::StopHandle,
}

fn init_env() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        std::env::set_var("RIDELOCK_ENV", "test");
        if std::env::var("TEST_LOG").is_ok() {
            ridelock::telemetry::init();
        }
    });
}

fn settings() -> Settings {
    init_env();
    config::load()
        .expect("test configuration (run through `make test`, which sets DATABASE_URL/REDIS_URL)")
}

/// Points `settings` at a Redis the test controls (a server of its own, a proxy it can cut): one
/// server, whatever the mode the suite runs Redis in.
pub fn use_own_redis(settings: &mut Settings, url: &str) {
    settings.redis.mode = ridelock::config::RedisMode::Single;
    settings.redis.url = Secret::new(url);
}

/// Starts an app on its own database and key prefix.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with settings adjusted by `customize`.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let base = settings();
    let (db_name, db_url) = database::create_database(base.database.url.expose());
    let prefix = format!("test:{}:", Uuid::new_v4().simple());
    spawn_node(&db_name, &db_url, &prefix, "n1", customize).await
}

/// Starts an app on an existing database and prefix (a second node, or custom settings).
pub async fn spawn_node(
    db_name: &str,
    db_url: &str,
    prefix: &str,
    node_id: &str,
    customize: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = settings();
    settings.server.port = 0;
    settings.server.host = "127.0.0.1".into();
    settings.database.url = Secret::new(db_url);
    settings.redis.key_prefix = prefix.to_owned();
    settings.node.id = node_id.to_owned();
    customize(&mut settings);
    let redis_url = settings.redis.url.expose().to_owned();
    let redis_at = RedisAt::of(&settings);
    let app = Application::build(settings)
        .await
        .expect("application starts");
    let port = app.port();
    let server = app.stop_handle();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        db_name: db_name.to_owned(),
        db_url: db_url.to_owned(),
        redis_url,
        redis_at,
        redis_prefix: prefix.to_owned(),
        node_id: node_id.to_owned(),
        client: reqwest::Client::builder()
            .default_headers(super::auth::ops())
            .pool_max_idle_per_host(64)
            .build()
            .expect("http client"),
        server,
    }
}

impl TestApp {
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: impl AsRef<str>,
        body: Option<&str>,
    ) -> Reply {
        self.request_with_id(method, path, body, None).await
    }

    /// Sends a request, with an `X-Request-ID` header when `request_id` is given.
    pub async fn request_with_id(
        &self,
        method: reqwest::Method,
        path: impl AsRef<str>,
        body: Option<&str>,
        request_id: Option<&str>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{}", self.address, path.as_ref()));
        if let Some(id) = request_id {
            request = request.header("X-Request-ID", id);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_owned());
        }
        read(request).await
    }

    /// Sends a request with exactly this `Authorization` header (`None`: no header at all)
    /// instead of the operator token every other request carries.
    pub async fn as_caller(
        &self,
        authorization: Option<&str>,
        method: reqwest::Method,
        path: impl AsRef<str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request =
            reqwest::Client::new().request(method, format!("{}{}", self.address, path.as_ref()));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request).await
    }

    /// [`TestApp::as_caller`] with a fresh token for `subject` (`rider:3`, `driver:4`, `ops:x`).
    pub async fn as_subject(
        &self,
        subject: &str,
        method: reqwest::Method,
        path: impl AsRef<str>,
        body: Option<Value>,
    ) -> Reply {
        let bearer = format!("Bearer {}", super::auth::token(subject));
        self.as_caller(Some(&bearer), method, path, body).await
    }

    /// The body of a GET that answers text (`/metrics`), with the operator token; panics unless 200.
    pub async fn get_text(&self, path: &str) -> String {
        let response = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        response.text().await.expect("text body")
    }

    /// A series from this node's `/metrics`, e.g. `ridelock_forwards_sent_total`.
    pub async fn metric(&self, name: &str) -> f64 {
        super::metrics::scrape(&self.client, &self.address, name).await
    }

    pub async fn get(&self, path: impl AsRef<str>) -> Reply {
        self.request(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: impl AsRef<str>, body: Value) -> Reply {
        self.request(reqwest::Method::POST, path, Some(&body.to_string()))
            .await
    }

    /// POST with a raw (possibly malformed) body.
    pub async fn post_raw(&self, path: impl AsRef<str>, body: &str) -> Reply {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: impl AsRef<str>, body: Value) -> Reply {
        self.request(reqwest::Method::PATCH, path, Some(&body.to_string()))
            .await
    }

    /// A connection to the Redis this app's keys live in (directly, never through a test proxy).
    pub fn redis(&self) -> super::redis_client::TestRedis {
        self.redis_at.connect().expect("redis connection")
    }

    /// The value of a booking's lease key in Redis, if it exists.
    pub fn lease_in_redis(&self, booking: i64) -> Option<String> {
        redis::cmd("GET")
            .arg(lease_key(&self.redis_prefix, booking))
            .query(&mut self.redis())
            .expect("GET the lease key")
    }

    /// A second node, "n2", on this app's database and key prefix.
    pub async fn second_node(&self) -> TestApp {
        spawn_node(
            &self.db_name,
            &self.db_url,
            &self.redis_prefix,
            "n2",
            |_| {},
        )
        .await
    }

    /// This node, under the same id, started again on this app's database and key prefix (with
    /// settings adjusted by `customize`): a restart, or a run after a crash.
    pub async fn restarted(&self, customize: impl FnOnce(&mut Settings)) -> TestApp {
        spawn_node(
            &self.db_name,
            &self.db_url,
            &self.redis_prefix,
            &self.node_id,
            customize,
        )
        .await
    }

    /// Stops the server as SIGTERM does (graceful: in-flight requests finish, leases are released).
    pub async fn stop(&self) {
        self.server.stop().await;
    }

    /// Settings pointing at this app's database and key prefix (for running commands against it).
    pub fn settings(&self) -> Settings {
        let mut settings = settings();
        settings.database.url = Secret::new(&self.db_url);
        settings.redis.key_prefix = self.redis_prefix.clone();
        settings.node.id = self.node_id.clone();
        settings
    }

    /// A fresh connection to this test's database, for assertions.
    pub async fn db(&self) -> AsyncPgConnection {
        database::connect(&self.db_url).await
    }

    /// A pending booking that no node owns: written straight into PostgreSQL by the creation
    /// function, as a node that created it and has since let it go (or an earlier build, with
    /// token 0) would leave it. `booking` makes one through the API, which the creating node's
    /// actor owns from the start.
    pub async fn unowned_booking(&self, rider: i64, lat: f64, lng: f64) -> i64 {
        #[derive(QueryableByName)]
        struct Created {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            id: i64,
        }
        let created: Created = diesel::sql_query(
            "SELECT id FROM create_booking_within_limit($1, 1000, $2, $3, 40.7589, -73.9851, 15.5, \
             NULL, 'gone', 0, 'unowned-booking', NULL)",
        )
        .bind::<diesel::sql_types::BigInt, _>(rider)
        .bind::<diesel::sql_types::Double, _>(lat)
        .bind::<diesel::sql_types::Double, _>(lng)
        .get_result(&mut self.db().await)
        .await
        .expect("insert an unowned booking");
        created.id
    }

    /// A booking assigned to (and accepted by, if `accept`) its nearest driver: (booking, driver).
    pub async fn assigned_booking(
        &self,
        rider: i64,
        lat: f64,
        lng: f64,
        accept: bool,
    ) -> (i64, i64) {
        let booking = self.booking(rider, lat, lng).await;
        let reply = self
            .post(&format!("/api/bookings/{booking}/assign"), json!(null))
            .await;
        reply.expect(200, None);
        let driver = reply.data()["driver"]["id"].as_i64().expect("driver id");
        if accept {
            self.post(
                &format!("/api/bookings/{booking}/accept"),
                json!({ "driver_id": driver }),
            )
            .await
            .expect(200, None);
        }
        (booking, driver)
    }

    /// A booking assigned to a driver at the pickup point, whose row another session holds
    /// locked, so the next write of it waits: (booking, driver, the lock).
    pub async fn locked_assigned_booking(&self) -> (i64, i64, RowLock) {
        let rider = self.rider().await;
        self.online_driver(PICKUP.0, PICKUP.1).await;
        let (booking, driver) = self
            .assigned_booking(rider, PICKUP.0, PICKUP.1, false)
            .await;
        let lock = RowLock::take(&self.db_url, "bookings", booking).await;
        (booking, driver, lock)
    }

    /// A digest of every business column in every table. Fencing tokens are left out: an
    /// activation bumps them by design, and they record ownership, not booking data.
    pub async fn fingerprint(&self) -> String {
        #[derive(QueryableByName)]
        struct Digest {
            #[diesel(sql_type = Text)]
            digest: String,
        }
        let mut conn = self.db().await;
        let row: Digest = diesel::sql_query(
            "SELECT concat_ws('|',
                (SELECT md5(coalesce(string_agg(r::text, ',' ORDER BY r.id), '')) FROM riders r),
                (SELECT md5(coalesce(string_agg(d::text, ',' ORDER BY d.id), '')) FROM drivers d),
                (SELECT md5(coalesce(string_agg((to_jsonb(b) - 'fencing_token')::text, ',' ORDER BY b.id), ''))
                   FROM bookings b),
                (SELECT md5(coalesce(string_agg(e::text, ',' ORDER BY e.id), '')) FROM booking_events e)
            ) AS digest",
        )
        .get_result(&mut conn)
        .await
        .expect("fingerprint");
        row.digest
    }
}

impl Api for TestApp {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Reply {
        let body = body.map(|body| body.to_string());
        self.request(method, path, body.as_deref()).await
    }
}

/// The reply to `request`; panics if there is none, or it is not JSON.
async fn read(request: reqwest::RequestBuilder) -> Reply {
    Reply::send(request)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop serving (the future is dropped with the runtime), then remove this test's data.
        self.server.stop_now();
        if std::thread::panicking() {
            return;
        }
        database::drop_test_data(
            with_database(&self.db_url, "postgres"),
            self.db_name.clone(),
            self.redis_at.clone(),
            self.redis_prefix.clone(),
        );
    }
}
