//! Test harness: every test gets its own app on a random port, its own PostgreSQL database (cloned
//! from a template migrated once per run) and its own Redis key prefix, all on the real servers
//! named by DATABASE_URL and REDIS_URL (`make test` starts them).

use std::sync::Once;
use std::time::{Duration, Instant};

use diesel::sql_types::Text;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::StatusCode;
use ridelock::config::{self, Secret, Settings};
use ridelock::startup::Application;

use crate::database::{self, with_database};
use serde_json::{json, Value};
use uuid::Uuid;

pub struct TestApp {
    pub address: String,
    pub db_name: String,
    pub db_url: String,
    pub redis_url: String,
    pub redis_prefix: String,
    pub node_id: String,
    pub client: reqwest::Client,
    server: ridelock::startup::StopHandle,
}

/// A JSON reply: status, body and the echoed request id.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub request_id: Option<String>,
    /// The node whose booking actor handled a booking action (`X-RideLock-Served-By`).
    pub served_by: Option<String>,
    /// `Retry-After`, on a 503.
    pub retry_after: Option<String>,
    /// `WWW-Authenticate`, on a 401.
    pub challenge: Option<String>,
}

async fn read_reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (request_id, served_by) = (header("x-request-id"), header("x-ridelock-served-by"));
    let (retry_after, challenge) = (header("retry-after"), header("www-authenticate"));
    let text = response.text().await.expect("response body");
    let body =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON body ({status}): {text}"));
    Reply {
        status,
        body,
        request_id,
        served_by,
        retry_after,
        challenge,
    }
}

impl Reply {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    /// Asserts the status and, for failures, the envelope and `error` code.
    #[track_caller]
    pub fn expect(&self, status: u16, error: Option<&str>) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected reply: {:#}",
            self.body
        );
        let success = (200..300).contains(&status);
        assert_eq!(
            self.body["success"],
            json!(success),
            "envelope: {:#}",
            self.body
        );
        assert!(
            self.body["message"].is_string(),
            "message missing: {:#}",
            self.body
        );
        if let Some(code) = error {
            assert_eq!(self.error(), code, "error code: {:#}", self.body);
        }
        self
    }

    /// Asserts a 400 that names `field`, in the message and in `data.field`.
    #[track_caller]
    pub fn expect_invalid(&self, field: &str) {
        self.expect(400, Some("invalid_request"));
        assert_eq!(
            self.body["data"]["field"],
            json!(field),
            "field: {:#}",
            self.body
        );
        let message = self.body["message"].as_str().unwrap_or("");
        assert!(
            message.contains(field),
            "message should name {field}: {message}"
        );
    }
}

/// A 400 naming `field`, with the case in the failure message.
#[track_caller]
pub fn assert_invalid(case: &str, reply: &Reply, field: &str) {
    assert_eq!(reply.status.as_u16(), 400, "{case}: {:#}", reply.body);
    assert_eq!(
        reply.body["data"]["field"],
        json!(field),
        "{case}: {:#}",
        reply.body
    );
    reply.expect_invalid(field);
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
        redis_prefix: prefix.to_owned(),
        node_id: node_id.to_owned(),
        client: reqwest::Client::builder()
            .default_headers(crate::auth::ops())
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
        read_reply(request.send().await.expect("request sent")).await
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
        read_reply(request.send().await.expect("request sent")).await
    }

    /// [`TestApp::as_caller`] with a fresh token for `subject` (`rider:3`, `driver:4`, `ops:x`).
    pub async fn as_subject(
        &self,
        subject: &str,
        method: reqwest::Method,
        path: impl AsRef<str>,
        body: Option<Value>,
    ) -> Reply {
        let bearer = format!("Bearer {}", crate::auth::token(subject));
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
    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(self.redis_url.clone())
            .and_then(|client| client.get_connection())
            .expect("redis connection")
    }

    /// The value of a booking's lease key in Redis, if it exists.
    pub fn lease_in_redis(&self, booking: i64) -> Option<String> {
        redis::cmd("GET")
            .arg(format!("{}lock:booking:{booking}", self.redis_prefix))
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
        AsyncPgConnection::establish(&self.db_url)
            .await
            .expect("connect to the test database")
    }

    /// Creates a rider through the API; returns its id.
    pub async fn rider(&self) -> i64 {
        let phone = format!("+1 555 {}", &Uuid::new_v4().as_u128().to_string()[..10]);
        let reply = self
            .post(
                "/api/riders",
                json!({ "name": "Test Rider", "phone": phone }),
            )
            .await;
        reply.expect(201, None);
        reply.data()["id"].as_i64().expect("rider id")
    }

    /// Creates a driver through the API, at `(lat, lng)` and online; returns its id.
    pub async fn online_driver(&self, lat: f64, lng: f64) -> i64 {
        let phone = format!("+1 666 {}", &Uuid::new_v4().as_u128().to_string()[..10]);
        let reply = self
            .post(
                "/api/drivers",
                json!({ "name": "Test Driver", "phone": phone }),
            )
            .await;
        reply.expect(201, None);
        let id = reply.data()["id"].as_i64().expect("driver id");
        self.post(
            &format!("/api/drivers/{id}/location"),
            json!({ "lat": lat, "lng": lng }),
        )
        .await
        .expect(200, None);
        self.patch(
            &format!("/api/drivers/{id}/status"),
            json!({ "status": "online" }),
        )
        .await
        .expect(200, None);
        id
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

    /// Creates a pending booking for `rider` picked up at `(lat, lng)` through the API; returns
    /// its id. This node's actor owns it from then on (its lease is held).
    pub async fn booking(&self, rider: i64, lat: f64, lng: f64) -> i64 {
        let reply = self
            .post("/api/bookings", booking_body(rider, lat, lng))
            .await;
        reply.expect(201, None);
        reply.data()["id"].as_i64().expect("booking id")
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

    /// Polls `check` every 20 ms until it holds or `within` passes.
    pub async fn eventually<F, Fut>(&self, within: Duration, mut check: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + within;
        loop {
            if check().await {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn booking_body(rider: i64, lat: f64, lng: f64) -> Value {
    json!({
        "rider_id": rider,
        "pickup_lat": lat,
        "pickup_lng": lng,
        "dropoff_lat": 40.7589,
        "dropoff_lng": -73.9851,
        "estimated_fare": 15.50
    })
}

/// Lower Manhattan, where the tests' drivers and pickups are.
pub const PICKUP: (f64, f64) = (40.7128, -74.0060);

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
            self.redis_url.clone(),
            self.redis_prefix.clone(),
        );
    }
}
