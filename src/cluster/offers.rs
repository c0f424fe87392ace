//! The offer sweep: an assigned driver who has not accepted within `offer.timeout_ms` loses the
//! ride. Every node looks, every `offer.sweep_every_ms`, for bookings assigned longer ago than
//! that (from PostgreSQL, so a restart or a crash loses no expiry), and routes an
//! [`Action::ExpireOffer`] for each to the booking's owner like any request: the owner's actor
//! takes the offer back through its fencing token and writes the audit event (actor
//! [`SYSTEM_ACTOR`]). Two nodes that find the same offer both route it; the actor takes it back
//! once and refuses the copy, which names an offer that no longer stands.

use std::time::Duration;

use std::sync::Arc;

use rand::Rng;

use super::drain::Drain;
use super::router::{ForwardedCall, Router};
use crate::config::OfferSettings;
use crate::domain::action::Action;
use crate::domain::ids::{BookingId, DriverId, RequestId};
use crate::storage::bookings::{self, StaleOffer};
use crate::storage::pool;

/// The audit trail's actor for offers taken back.
pub(crate) const SYSTEM_ACTOR: &str = "system:offer-timeout";

/// Runs until aborted at shutdown. `limit`: how long the search may take.
pub async fn sweep(
    router: Arc<Router>,
    drain: Arc<Drain>,
    settings: OfferSettings,
    limit: Duration,
) {
    let node = router.deps().node_id.clone();
    loop {
        // Jittered, so the nodes of a cluster do not all sweep at the same moment.
        let every = settings.sweep_every();
        let jitter = rand::rng().random_range(Duration::ZERO..=every / 4);
        tokio::time::sleep(every - every / 8 + jitter).await;
        let Some(_in_flight) = drain.enter() else {
            continue; // Shutting down: the next owner's sweep takes these.
        };
        let offers = match stale(&router, &settings, limit).await {
            Ok(offers) => offers,
            Err(error) => {
                log::warn!("offer sweep skipped node={node} error={error}");
                continue;
            }
        };
        for offer in offers {
            take_back(&router, &settings, offer).await;
        }
    }
}

/// Offers older than the timeout by PostgreSQL's clock, oldest first.
async fn stale(
    router: &Router,
    settings: &OfferSettings,
    limit: Duration,
) -> anyhow::Result<Vec<StaleOffer>> {
    let timeout_ms = i64::try_from(settings.timeout_ms)?;
    let mut conn = pool::conn(&router.deps().pool).await?;
    let search = bookings::stale_offers(&mut conn, timeout_ms, i64::from(settings.sweep_batch));
    Ok(tokio::time::timeout(limit, search).await??)
}

async fn take_back(router: &Router, settings: &OfferSettings, offer: StaleOffer) {
    let give_up = offer.expired_before + 1 >= i64::from(settings.max_offers);
    let action = Action::ExpireOffer {
        driver_id: DriverId(offer.driver_id),
        assigned_at: offer.assigned_at,
        give_up,
    };
    let call = ForwardedCall::new(action, None, Some(SYSTEM_ACTOR.to_owned()));
    let request_id = RequestId::generate();
    let id = BookingId(offer.id);
    let budget = router.deps().request_timeout;
    let node = &router.deps().node_id;
    match router.route(id, call, request_id.clone(), 0, budget).await {
        Ok(answer) if answer.succeeded() => log::info!(
            "offer expired node={node} booking={id} driver={} req={} give_up={give_up}",
            offer.driver_id,
            request_id.as_str()
        ),
        // Taken back by another node's sweep, or accepted meanwhile.
        Ok(answer) => log::debug!(
            "offer no longer standing node={node} booking={id} answer={}",
            answer.describe()
        ),
        Err(error) => log::warn!(
            "offer not taken back, next sweep retries node={node} booking={id} error={error}"
        ),
    }
}
