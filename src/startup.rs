//! `Application`: all wiring lives here. `build` connects to PostgreSQL and Redis, runs pending
//! migrations, clears this node's leases from a previous run, rebuilds the geo index, starts the
//! lease manager, binds the HTTP server and announces the node (cluster membership). Only
//! PostgreSQL is needed to start: without Redis the node serves with PostgreSQL leases and SQL
//! search, and its heartbeat takes Redis up when it answers;
//! `run_until_stopped` serves until the handle stops it, then gives back every lease this node
//! still holds and withdraws its membership.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, Supervisor};
use actix_web::dev::{Server, ServerHandle};
use actix_web::{middleware, web, App, HttpServer};
use anyhow::Context as _;
use socket2::SockRef;

use crate::actors::registry::BookingRegistry;
use crate::actors::BookingDeps;
use crate::auth::{AuthMode, Authenticator};
use crate::cluster::drain::Drain;
use crate::cluster::forward::Forwarder;
use crate::cluster::heartbeat::{self, Heartbeat};
use crate::cluster::inbound::Inbound;
use crate::cluster::relay::Relay;
use crate::cluster::router::Router;
use crate::cluster::{Membership, NodeInfo};
use crate::config::{IdempotencySettings, Settings};
use crate::domain::ids::NodeId;
use crate::geo::DriverIndex;
use crate::http::{self, request_id, AppState};
use crate::lease::events::LeaseEvents;
use crate::lease::failover::Leases;
use crate::lease::manager::{LeaseManager, LeaseMetrics, ReleaseAll};
use crate::lease::postgres::PgLeases;
use crate::lease::redis::RedisLeases;
use crate::redis_health::RedisHealth;
use crate::storage::writer::{self, Writer};
use crate::storage::PgPool;
use crate::storage::{idempotency, pool};
use crate::streams::ops::{Local, Publisher};
use crate::streams::Hub;

/// Lease changes queued for the ops feed between two of its announcements (every 100 ms); more
/// are dropped and counted.
const LEASE_EVENTS_QUEUE: usize = 4096;

/// Stops a node so that another can serve its bookings at once: see [`StopHandle::stop`].
#[derive(Clone)]
pub struct StopHandle {
    server: ServerHandle,
    /// The listening socket (a second handle on the one actix-web accepts on).
    listener: Arc<TcpListener>,
    drain: Arc<Drain>,
    leases: Addr<LeaseManager>,
    node_id: NodeId,
    within: Duration,
}

impl StopHandle {
    /// SIGTERM: refuse new connections (a load balancer passes a refused connection on to
    /// another node, whatever the request, and leaves this one out); serve no new request here,
    /// but relay each that arrives on an open connection to another node, or refuse it (503
    /// `draining`, `http::relay`); wait for those in flight, at most the request timeout; give
    /// every lease back in a few pipelined round trips; then wait until the connections are
    /// closed (each after its next answer) or quiet (`Drain::connections_quiet`), at most the
    /// request timeout again, and close them. The leases go back as soon as no request is using
    /// them, not after actix-web's connection drain (which polls once a second).
    pub async fn stop(&self) {
        // Paused, actix-web stops accepting, but the kernel would still queue new connections
        // (and reset them at the exit, their requests sent); closed, it refuses them.
        self.server.pause().await;
        if let Err(error) = SockRef::from(&*self.listener).shutdown(std::net::Shutdown::Read) {
            log::warn!(
                "shutdown node={} closing the listener: {error}",
                self.node_id
            );
        }
        if !self.drain.settle(self.within).await {
            log::warn!(
                "shutdown node={} requests still in flight after {:?}",
                self.node_id,
                self.within
            );
        }
        release_all(&self.leases, &self.node_id, true).await;
        if !self.drain.connections_quiet(self.within).await {
            log::warn!(
                "shutdown node={} connections still busy after {:?}",
                self.node_id,
                self.within
            );
        }
        self.server.stop(true).await;
    }

    /// Stops at once, dropping connections (tests' clean-up).
    pub fn stop_now(&self) {
        drop(self.server.stop(false));
    }
}

/// Gives back every lease this node holds (renewal stops first, every holder is told), logged
/// with how many and how long; `always_log` false logs only if there were some.
async fn release_all(leases: &Addr<LeaseManager>, node_id: &NodeId, always_log: bool) {
    let started = std::time::Instant::now();
    match leases
        .send(ReleaseAll)
        .timeout(Duration::from_secs(5))
        .await
    {
        Ok(Ok(released)) if always_log || released > 0 => log::info!(
            "shutdown node={node_id} leases_released={released} took_ms={}",
            started.elapsed().as_millis()
        ),
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            log::warn!("shutdown node={node_id} lease release failed, they expire by TTL: {error}")
        }
        Err(error) => log::warn!(
            "shutdown node={node_id} lease manager did not answer, leases expire by TTL: {error}"
        ),
    }
}

/// Runs until shutdown: every `idempotency.purge_every_ms`, deletes the idempotency keys stored
/// longer ago than the retention, a batch per statement until none is left. Off the request
/// path; every node runs it, and concurrent purges skip each other's rows.
async fn purge_idempotency_keys(
    db: PgPool,
    settings: IdempotencySettings,
    statement_timeout: Duration,
    node: NodeId,
) {
    loop {
        tokio::time::sleep(settings.purge_every()).await;
        let mut purged = 0;
        loop {
            let batch = match pool::conn(&db).await {
                Ok(mut conn) => {
                    let purge = idempotency::purge_expired(
                        &mut conn,
                        settings.retention_secs,
                        settings.purge_batch,
                    );
                    tokio::time::timeout(statement_timeout, purge).await
                }
                Err(error) => {
                    log::warn!("idempotency key purge skipped node={node} error={error}");
                    break;
                }
            };
            match batch {
                Err(_) => {
                    log::warn!("idempotency key purge unanswered, tried again later node={node}");
                    break;
                }
                Ok(Ok(deleted)) => {
                    purged += deleted;
                    if deleted < settings.purge_batch as usize {
                        break;
                    }
                    // A backlog goes in batches with a breath between them, never in one burst.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(Err(error)) => {
                    log::warn!("idempotency key purge failed node={node} error={error}");
                    break;
                }
            }
        }
        if purged > 0 {
            log::info!("idempotency keys purged node={node} count={purged}");
        }
    }
}

pub struct Application {
    port: u16,
    /// See [`StopHandle`].
    listener: Arc<TcpListener>,
    server: Server,
    registry: Arc<BookingRegistry>,
    leases: Addr<LeaseManager>,
    node_id: NodeId,
    drain: Arc<Drain>,
    request_timeout: Duration,
    membership: Membership,
    /// Refreshes this node's membership key until shutdown.
    announcing: tokio::task::JoinHandle<()>,
    /// Deletes expired idempotency keys until shutdown.
    purging: tokio::task::JoinHandle<()>,
    /// Takes back offers nobody accepted in time, until shutdown.
    sweeping: tokio::task::JoinHandle<()>,
    /// Listens for committed booking events, for the event streams, until shutdown.
    listening: tokio::task::JoinHandle<()>,
    /// Announces this node's lease changes and figures to the ops streams.
    publishing: tokio::task::JoinHandle<()>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let node_id = NodeId(settings.node.id.clone());
        let url = settings.database.url.expose().to_owned();
        let applied = tokio::task::spawn_blocking(move || pool::run_migrations(&url)).await??;
        if applied > 0 {
            log::info!("migrations applied node={node_id} count={applied}");
        }
        let authenticator = web::Data::new(Authenticator::from_settings(&settings.auth)?);
        if authenticator.mode() == AuthMode::Off {
            log::warn!(
                "authentication is OFF node={node_id}: every caller is trusted as an operator; \
                 never expose this node (auth.mode = \"off\" is for the local profile only)"
            );
        }
        let deadline = web::Data::new(http::deadline::RequestDeadline::after(
            settings.server.request_timeout(),
        ));
        let db = settings.database.pool()?;
        let statement_timeout = settings.database.statement_timeout();
        let redis = crate::redis_conn::connect(&settings.redis)?;
        let prefix = settings.redis.key_prefix.clone();

        // Bound first: PostgreSQL leases carry the address other nodes reach this one at.
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| {
                format!("binding {}:{}", settings.server.host, settings.server.port)
            })?;
        let port = listener.local_addr()?.port();
        let accepting = Arc::new(listener.try_clone()?);
        let address = match settings.node.advertise_url.trim() {
            "" => format!("http://127.0.0.1:{port}"),
            url => url.trim_end_matches('/').to_owned(),
        };

        let health = RedisHealth::new(&node_id.0, settings.lease.ttl());
        let leases = Leases::new(
            match settings.lease.replica_wait() {
                Some((replicas, timeout)) => {
                    RedisLeases::new(redis.clone()).waiting_for_replicas(replicas, timeout)
                }
                None => RedisLeases::new(redis.clone()),
            },
            PgLeases::new(
                db.clone(),
                address.clone(),
                settings.database.statement_timeout(),
            ),
            health.clone(),
        );
        let cleared = leases
            .clear_stale_in_postgres(&prefix, &node_id.0)
            .await
            .context("clearing this node's old leases in PostgreSQL")?;
        if cleared > 0 {
            log::warn!("cleared leases from a previous run node={node_id} count={cleared}");
        }
        // Redis is not needed to start: if it cannot answer, this node is silent from here (new
        // leases from PostgreSQL a TTL from now), and the heartbeat clears the old keys and
        // rebuilds the index once Redis answers.
        let stale_in_redis = match leases.clear_stale_in_redis(&prefix, &node_id.0).await {
            Ok(cleared) => {
                if cleared > 0 {
                    log::warn!("cleared leases from a previous run node={node_id} count={cleared}");
                }
                false
            }
            // Unreachable, or refusing writes: start on PostgreSQL leases.
            Err(error) if health.is_silent() => {
                log::warn!("starting without Redis node={node_id} backend=postgres error={error}");
                true
            }
            // Anything else (a wrong password, say) will not pass by itself: say so now.
            Err(error) => {
                return Err(anyhow::Error::new(error).context("Redis refused this node (redis.url)"))
            }
        };
        let index = DriverIndex::new(redis.clone(), &prefix, health.clone());
        if let Err(error) =
            heartbeat::rebuild_index(&index, &db, statement_timeout, &node_id, "start").await
        {
            log::warn!("driver geo index not rebuilt at start node={node_id} error={error}");
        }

        let metrics = Arc::new(LeaseMetrics::new()?);
        let (lease_events, lease_events_read) = LeaseEvents::channel(LEASE_EVENTS_QUEUE);
        let manager = {
            let (node, store, lease, metrics) = (
                node_id.0.clone(),
                leases.clone(),
                settings.lease.clone(),
                metrics.clone(),
            );
            let events = lease_events.clone();
            Supervisor::start(move |_| {
                LeaseManager::new(node, Arc::new(store.clone()), lease, metrics.clone())
                    .telling(events.clone())
            })
        };
        let deps = Arc::new(BookingDeps {
            node_id: node_id.clone(),
            pool: db.clone(),
            writer: Writer::start(db.clone(), node_id.0.clone(), writer::batch_sizes()?),
            drivers: index.clone(),
            leases: manager.clone(),
            key_prefix: prefix,
            booking: settings.booking.clone(),
            assign: settings.assign.clone(),
            request_timeout: settings.server.request_timeout(),
        });
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let registry = BookingRegistry::new(deps.clone(), threads);
        let membership_redis = redis.clone();
        let forwarder = Forwarder::new(
            settings.cluster.secret.clone(),
            &node_id.0,
            redis.clone(),
            &settings.redis.key_prefix,
            settings.lease.renew_every(),
        )?;
        let drain = Arc::new(Drain::default());
        let relay = Arc::new(Relay::new(
            redis.clone(),
            &settings.redis.key_prefix,
            &node_id.0,
            settings.server.request_timeout(),
        )?);
        let hub = Hub::new(settings.streams.buffer);
        let listening = actix_web::rt::spawn(hub.clone().listen(
            settings.database.url.expose().to_owned(),
            settings.lease.ttl(),
        ));
        let router = Arc::new(Router::new(
            registry.clone(),
            deps.clone(),
            leases.clone(),
            forwarder,
        ));
        let inbound = Inbound::new(
            settings.cluster.secret.clone(),
            &node_id.0,
            &settings.redis.key_prefix,
            redis.clone(),
            health.clone(),
        );
        let node_metrics = http::metrics::Metrics::new(
            &node_id.0,
            http::metrics::Kept {
                lease: &metrics,
                forwards: &router.forwarder().metrics,
                batch_sizes: deps.writer.batch_sizes(),
            },
        )?;
        let state = web::Data::new(AppState {
            registry: registry.clone(),
            deps,
            lease_metrics: metrics.clone(),
            leases: leases.clone(),
            redis,
            metrics: node_metrics,
            scrape_token: settings.auth.scrape_token.clone(),
            router: router.clone(),
            inbound,
            drain: drain.clone(),
            relay,
            postgres_probe: Default::default(),
            hub: hub.clone(),
            streams: settings.streams.clone(),
        });
        let limiter = web::Data::new(http::rate_limit::RateLimiter::new(&settings.rate_limit));
        let publishing = {
            let state = state.clone();
            actix_web::rt::spawn(
                Publisher {
                    node: node_id.0.clone(),
                    address: address.clone(),
                    pool: db.clone(),
                    health: health.clone(),
                    lease_events: lease_events_read,
                    local: Box::new(move || Local {
                        actors: state.registry.len(),
                        leases: state.lease_metrics.snapshot().held as usize,
                        streams: state.hub.subscribers(),
                        answered: state.metrics.answered(),
                        lease_events_dropped: lease_events.dropped(),
                    }),
                }
                .run(),
            )
        };

        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(authenticator.clone())
                .app_data(deadline.clone())
                .app_data(limiter.clone())
                .wrap(middleware::from_fn(http::rate_limit::limit))
                .wrap(middleware::from_fn(http::drain::guard))
                .wrap(middleware::from_fn(http::metrics::record))
                .wrap(middleware::from_fn(request_id::assign))
                .configure(http::routes)
        })
        .disable_signals()
        .on_connect({
            let drain = drain.clone();
            move |_, data| {
                data.insert(drain.connection());
            }
        })
        .shutdown_timeout(settings.server.request_timeout_ms.div_ceil(1000));
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server.listen(listener)?.run();
        log::info!("listening node={node_id} port={port}");

        let membership = Membership::new(
            membership_redis,
            &settings.redis.key_prefix,
            &node_id.0,
            settings.lease.ttl(),
        );
        let info = NodeInfo {
            id: node_id.0.clone(),
            address,
            started_at: chrono::Utc::now(),
            active_actors: 0,
            held_leases: 0,
            seen_at: chrono::Utc::now(),
        };
        let announced = membership.announce(&info).await;
        health.observe(&announced);
        if let Err(error) = announced {
            log::warn!("membership not announced node={node_id}, the heartbeat retries: {error}");
        }
        let sweeping = actix_web::rt::spawn(crate::cluster::offers::sweep(
            router,
            drain.clone(),
            settings.offer.clone(),
            settings.database.statement_timeout(),
        ));
        let purging = actix_web::rt::spawn(purge_idempotency_keys(
            db.clone(),
            settings.idempotency.clone(),
            settings.database.statement_timeout(),
            node_id.clone(),
        ));
        let announcing = actix_web::rt::spawn(heartbeat::run(Heartbeat {
            membership: membership.clone(),
            info,
            registry: registry.clone(),
            metrics,
            index,
            leases,
            db,
            limit: statement_timeout,
            every: settings.lease.renew_every(),
            stale_in_redis,
            prefix: settings.redis.key_prefix.clone(),
        }));
        Ok(Self {
            port,
            listener: accepting,
            server,
            registry,
            leases: manager,
            node_id,
            drain,
            request_timeout: settings.server.request_timeout(),
            membership,
            announcing,
            purging,
            sweeping,
            listening,
            publishing,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops this node (used by main's signal handler and by tests); see [`StopHandle`].
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            server: self.server.handle(),
            listener: self.listener.clone(),
            drain: self.drain.clone(),
            leases: self.leases.clone(),
            node_id: self.node_id.clone(),
            within: self.request_timeout,
        }
    }

    /// Serves until stopped (by [`StopHandle::stop`], which has given the leases back by then),
    /// then stops the booking actors and leaves the member list. Leases still held at that point
    /// (a stop that skipped the drain) are given back first.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        release_all(&self.leases, &self.node_id, false).await;
        self.registry.stop_all(Duration::from_secs(5)).await;
        // Last: the node leaves the member list only once it holds nothing.
        self.announcing.abort();
        self.purging.abort();
        self.sweeping.abort();
        self.listening.abort();
        self.publishing.abort();
        if let Err(error) = self.membership.withdraw().await {
            log::warn!("shutdown node={} withdraw failed: {error}", self.node_id);
        }
        served
    }
}
