//! The node heartbeat, once per lease renewal period: this node's membership key (which doubles
//! as the Redis probe), the PostgreSQL lease sweep while Redis is silent, and the geo index
//! rebuilt when Redis comes back.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::{Membership, NodeInfo};
use crate::actors::registry::BookingRegistry;
use crate::domain::ids::NodeId;
use crate::geo::DriverIndex;
use crate::lease::failover::Leases;
use crate::lease::manager::LeaseMetrics;
use crate::storage::{drivers, pool, PgPool};

/// Reloads the geo index from PostgreSQL's online drivers; `why` goes in the log line. Gives up
/// when PostgreSQL does not answer within `limit` (the heartbeat calls it, and must go on).
pub(crate) async fn rebuild_index(
    index: &DriverIndex,
    db: &PgPool,
    limit: Duration,
    node_id: &NodeId,
    why: &str,
) -> anyhow::Result<()> {
    let online = tokio::time::timeout(limit, async {
        anyhow::Ok(drivers::online(&mut *pool::conn(db).await?).await?)
    })
    .await
    .context("PostgreSQL did not answer")??;
    let indexed = index.rebuild(&online).await?;
    log::info!("driver geo index rebuilt node={node_id} drivers={indexed} reason={why}");
    Ok(())
}

/// What the node heartbeat works with.
pub(crate) struct Heartbeat {
    pub membership: Membership,
    pub info: NodeInfo,
    pub registry: Arc<BookingRegistry>,
    pub metrics: Arc<LeaseMetrics>,
    pub index: DriverIndex,
    pub leases: Leases,
    pub db: PgPool,
    /// How long a PostgreSQL statement of the heartbeat's may go unanswered.
    pub limit: Duration,
    pub every: Duration,
    /// Redis could not be asked at start-up for the leases a previous run of this node left: the
    /// heartbeat clears them before its first successful probe (see
    /// [`Leases::clear_stale_in_redis`]).
    pub stale_in_redis: bool,
    pub prefix: String,
}

/// While Redis is silent, how often the heartbeat asks whether it is back.
const PROBE_EVERY: Duration = Duration::from_millis(200);

/// Runs until shutdown, once per lease renewal period: refreshes this node's membership key,
/// which doubles as the probe that tells [`RedisHealth`] whether Redis answers (every
/// [`PROBE_EVERY`] while it is silent); while Redis is silent, sweeps long-expired PostgreSQL
/// leases; and rebuilds the geo index when Redis answers again (drivers moved meanwhile were not
/// indexed) or has come back without it.
pub async fn run(mut beat: Heartbeat) {
    let node = NodeId(beat.info.id.clone());
    loop {
        let health = beat.leases.health().clone();
        let was_silent = health.is_silent();
        tokio::time::sleep(if was_silent { PROBE_EVERY } else { beat.every }).await;
        if health.is_silent() {
            if let Err(error) = beat.leases.postgres().sweep().await {
                log::warn!("lease sweep failed node={node} error={error}");
            }
            if beat.stale_in_redis && health.never_answered() {
                if let Ok(cleared) = beat
                    .leases
                    .clear_stale_in_redis(&beat.prefix, &node.0)
                    .await
                {
                    beat.stale_in_redis = false;
                    if cleared > 0 {
                        log::warn!(
                            "cleared leases from a previous run node={node} count={cleared}"
                        );
                    }
                }
            }
        }
        beat.info.active_actors = beat.registry.len();
        beat.info.held_leases = beat.metrics.snapshot().held;
        beat.info.seen_at = chrono::Utc::now();
        let announced = beat.membership.announce(&beat.info).await;
        health.observe(&announced);
        if let Err(error) = &announced {
            if !was_silent {
                log::warn!("membership refresh failed node={node} error={error}");
            }
            continue;
        }
        if beat.stale_in_redis && !health.never_answered() {
            // Redis has answered, so this run may hold leases there: too late to clear safely.
            beat.stale_in_redis = false;
            log::warn!("leases of a previous run left to expire by TTL node={node}");
        }
        let why = match beat.index.is_built().await {
            Ok(false) => Some("index_missing"),
            _ if was_silent => Some("redis_back"),
            _ => None,
        };
        if let Some(why) = why {
            if let Err(error) = rebuild_index(&beat.index, &beat.db, beat.limit, &node, why).await {
                log::warn!("driver geo index rebuild failed node={node} error={error}");
            }
        }
    }
}
