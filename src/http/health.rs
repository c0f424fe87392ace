//! `/api/health` and `/api/locks/stats`: what an operator looks at first.

use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use diesel_async::RunQueryDsl;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::schemas::{Envelope, ListEnvelope};
use super::{respond, State};
use crate::auth::{rules, AuthMode, Authenticator, Principal};
use crate::cluster::NodeInfo;
use crate::domain::values::FieldError;
use crate::error::ApiError;
use crate::storage::bookings;
use crate::storage::pool;

/// How long a health probe waits for PostgreSQL.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one PostgreSQL probe answers every health check.
const PROBE_FRESH: Duration = Duration::from_secs(1);

/// PostgreSQL's last probe, shared by every health check of a node: anyone may call
/// `/api/health` without a token, so however often it is called, PostgreSQL is asked at most once
/// per [`PROBE_FRESH`] (callers arriving during a probe wait for its answer).
#[derive(Default)]
pub(crate) struct PostgresProbe {
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl PostgresProbe {
    async fn up(&self, pool: &pool::PgPool) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, up)) = *last {
            if at.elapsed() < PROBE_FRESH {
                return up;
            }
        }
        let probe = async {
            let mut conn = pool::conn(pool).await.ok()?;
            diesel::sql_query("SELECT 1").execute(&mut conn).await.ok()
        };
        let up = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, probe).await,
            Ok(Some(_))
        );
        *last = Some((Instant::now(), up));
        up
    }
}

/// Whether this node can serve; no token needed. 200 while PostgreSQL answers (Redis down is
/// "degraded": leases and search move to PostgreSQL), 503 otherwise. Redis is reported as the
/// lease heartbeat last found it, without a command of its own: a health check never changes
/// what the node does (a slow answer to a probe once moved its leases to PostgreSQL).
#[utoipa::path(
    get,
    operation_id = "health_health",
    path = "/api/health",
    tag = "meta",
    responses(
        (status = 200, description = "Serving", body = HealthReport),
        (status = 503, description = "PostgreSQL is down", body = HealthReport),
    ),
)]
pub async fn health(state: State, auth: web::Data<Authenticator>) -> HttpResponse {
    let pg_ok = state.postgres_probe.up(&state.deps.pool).await;
    // Silent: the heartbeat found Redis unanswering or refusing lease writes (a replica, out
    // of memory), and the node has switched to PostgreSQL leases.
    let redis_ok = !state.leases.health().is_silent();
    let up = |ok: bool| if ok { "up" } else { "down" };
    // Without Redis the node still serves (leases and search from PostgreSQL): degraded, but up.
    // Without PostgreSQL it can serve nothing.
    let healthy = pg_ok;
    let message = match (pg_ok, redis_ok) {
        (true, true) => "Service is healthy",
        (true, false) => {
            "Service is degraded: Redis is down or refuses writes, leases and search use PostgreSQL"
        }
        (false, _) => "Service is unavailable: PostgreSQL is down",
    };
    let auth = auth.mode();
    let message = match auth {
        AuthMode::Jwt => message.to_owned(),
        AuthMode::Off => {
            format!("{message}; WARNING: authentication is off, every caller is trusted")
        }
    };
    let body = json!({
        "success": healthy,
        "message": message,
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "version": env!("CARGO_PKG_VERSION"),
        "node_id": state.deps.node_id,
        "auth": auth.as_str(),
        "services": {
            "postgres": up(pg_ok),
            "redis": up(redis_ok),
            "lease_backend": state.leases.health().backend(),
        },
    });
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(body)
    }
}

/// Whether the process answers, and nothing else: no dependency is asked, so an orchestrator
/// that restarts a node failing this does not restart every node while PostgreSQL is down.
/// Answered while the node drains too (it is alive until it exits).
#[utoipa::path(
    get,
    operation_id = "health_livez",
    path = "/livez",
    tag = "meta",
    responses((status = 200, description = "The process answers", body = Probe)),
)]
pub async fn livez(state: State) -> HttpResponse {
    HttpResponse::Ok().json(Probe::of(&state, true, "alive"))
}

/// Whether the node can serve now: PostgreSQL answers (probed at most once a second, as for
/// `/api/health`) and the node is not draining. A node answering 503 here is to get no traffic,
/// not to be restarted. Redis down is no reason: leases and search move to PostgreSQL.
#[utoipa::path(
    get,
    operation_id = "health_readyz",
    path = "/readyz",
    tag = "meta",
    responses(
        (status = 200, description = "Ready", body = Probe),
        (status = 503, description = "PostgreSQL is down, or the node drains (then `draining`, from the drain itself)", body = Probe),
    ),
)]
pub async fn readyz(state: State) -> HttpResponse {
    if state.postgres_probe.up(&state.deps.pool).await {
        HttpResponse::Ok().json(Probe::of(&state, true, "ready"))
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(Probe::of(&state, false, "not ready: PostgreSQL is down"))
    }
}

/// What `/livez` and `/readyz` answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct Probe {
    success: bool,
    message: String,
    node_id: String,
}

impl Probe {
    fn of(state: &State, success: bool, message: &str) -> Self {
        Self {
            success,
            message: message.to_owned(),
            node_id: state.deps.node_id.0.clone(),
        }
    }
}

/// What `/api/health` answers (the envelope without `data`).
#[derive(Serialize, ToSchema)]
pub(crate) struct HealthReport {
    success: bool,
    message: String,
    timestamp: chrono::DateTime<chrono::Utc>,
    version: String,
    node_id: String,
    /// `jwt`, or `off` (local profile only: every caller is trusted).
    #[schema(pattern = "^(jwt|off)$")]
    auth: String,
    services: Services,
}

#[derive(Serialize, ToSchema)]
struct Services {
    #[schema(pattern = "^(up|down)$")]
    postgres: String,
    #[schema(pattern = "^(up|down)$")]
    redis: String,
    #[schema(pattern = "^(redis|postgres)$")]
    lease_backend: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LockView {
    resource: String,
    #[serde(rename = "lockId")]
    lock_id: String,
    /// Seconds left, rounded up, as in the tutorial.
    ttl: u64,
    owner_node: String,
    fencing_token: Option<i64>,
}

/// `/api/locks/stats`'s query: a page of the lock list.
#[derive(serde::Deserialize)]
pub(crate) struct StatsQuery {
    limit: Option<String>,
    after: Option<String>,
}

/// Locks listed per page unless `limit` says otherwise, and the most it may say.
const LOCKS_PER_PAGE: usize = 100;
const LOCKS_PER_PAGE_MAX: usize = 1000;

/// Leases and lease counters of this node (ops).
#[utoipa::path(
    get,
    operation_id = "health_lock_stats",
    path = "/api/locks/stats",
    tag = "locks",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "locks listed, default 100"),
        ("after" = Option<String>, Query, max_length = 255, pattern = "^[!-~]{1,255}$", description = "the `next` of the previous page"),
    ),
    responses((status = 200, description = "Lock statistics", body = Envelope<LockStats>)),
    security(("bearer" = [])),
)]
pub(crate) async fn lock_stats(
    state: State,
    caller: Principal,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    rules::ops_only(&caller)?;
    let limit = match query.limit.as_deref() {
        None => LOCKS_PER_PAGE,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=LOCKS_PER_PAGE_MAX).contains(n))
            .ok_or_else(|| FieldError::new("limit", "must be an integer from 1 to 1000"))?,
    };
    let after = match query.after.as_deref() {
        Some(raw)
            if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            return Err(FieldError::new("after", "must be the next of a previous page").into())
        }
        other => other,
    };
    let prefix = &state.deps.key_prefix;
    let after_key = after.map(|resource| format!("{prefix}lock:{resource}"));
    let page = state
        .leases
        .page(prefix, after_key.as_deref(), limit)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    let resource_of = |key: &str| {
        let resource = key.strip_prefix(prefix).unwrap_or(key);
        resource
            .strip_prefix("lock:")
            .unwrap_or(resource)
            .to_owned()
    };
    let ids: Vec<i64> = page
        .records
        .iter()
        .filter_map(|r| resource_of(&r.key).strip_prefix("booking:")?.parse().ok())
        .collect();
    let mut conn = pool::conn(&state.deps.pool).await?;
    let tokens = bookings::fencing_tokens(&mut conn, &ids).await?;
    let locks: Vec<LockView> = page
        .records
        .into_iter()
        .map(|record| {
            let resource = resource_of(&record.key);
            let booking_id = resource
                .strip_prefix("booking:")
                .and_then(|id| id.parse::<i64>().ok());
            LockView {
                fencing_token: booking_id.and_then(|id| tokens.get(&id).copied()),
                ttl: record.remaining.as_millis().div_ceil(1000) as u64,
                owner_node: crate::lease::owner_node(&record.value).to_owned(),
                lock_id: record.value,
                resource,
            }
        })
        .collect();
    let m = state.lease_metrics.snapshot();
    let attempts = m.acquired + m.contested + m.timeouts;
    let timeout_rate = if attempts == 0 {
        0.0
    } else {
        m.timeouts as f64 / attempts as f64
    };
    Ok(respond(
        actix_web::http::StatusCode::OK,
        "Lock statistics retrieved successfully",
        LockStats {
            total_locks: page.total,
            locks,
            next: page.next.as_deref().map(resource_of),
            counters: Counters {
                acquired: m.acquired,
                released: m.released,
                expired: m.expired,
                contested: m.contested,
                renewed: m.renewed,
                renewal_failures: m.renewal_failures,
                lost: m.lost,
            },
            acquisition_ms: m.acquisition_ms,
            timeout_rate,
            backend: state.leases.health().backend(),
            node_id: &state.deps.node_id.0,
            active_actors: state.registry.len(),
            held_leases: m.held,
        },
    ))
}

/// `data` of `/api/locks/stats`, in the shape of API.md.
#[derive(Serialize, ToSchema)]
pub(crate) struct LockStats<'a> {
    /// Live locks in all, on every page (the tutorial's field).
    #[serde(rename = "totalLocks")]
    total_locks: usize,
    /// This page of them, ordered by key.
    locks: Vec<LockView>,
    /// Pass as `after` for the next page; `null` on the last.
    next: Option<String>,
    counters: Counters,
    acquisition_ms: crate::lease::manager::Percentiles,
    timeout_rate: f64,
    #[schema(pattern = "^(redis|postgres)$")]
    backend: &'static str,
    node_id: &'a str,
    active_actors: usize,
    held_leases: u64,
}

#[derive(Serialize, ToSchema)]
struct Counters {
    acquired: u64,
    released: u64,
    expired: u64,
    contested: u64,
    renewed: u64,
    renewal_failures: u64,
    lost: u64,
}

/// `GET /api/cluster/nodes`: the nodes whose membership key is alive, with their address, start,
/// active actors and held leases as of their last announcement.
/// Live server instances (ops).
#[utoipa::path(
    get,
    operation_id = "health_cluster_nodes",
    path = "/api/cluster/nodes",
    tag = "locks",
    responses((status = 200, description = "Live nodes", body = ListEnvelope<NodeInfo>)),
    security(("bearer" = [])),
)]
pub(crate) async fn cluster_nodes(
    state: State,
    caller: Principal,
) -> Result<HttpResponse, ApiError> {
    rules::ops_only(&caller)?;
    let nodes = crate::cluster::live_nodes(&state.redis, &state.deps.key_prefix)
        .await
        .map_err(ApiError::Unavailable)?;
    Ok(super::respond_list(
        "Cluster nodes retrieved successfully",
        &nodes,
    ))
}
