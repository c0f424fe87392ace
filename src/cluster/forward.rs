//! Node-to-node calls: a request for a booking whose lease another node holds is sent to that
//! node's internal endpoint, signed (see [`auth`](super::auth)), and its answer relayed verbatim.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::IntCounter;

use super::auth::{self, Signed};
use super::{node_key, NodeInfo};
use crate::config::Secret;
use crate::domain::ids::{BookingId, RequestId};
use crate::redis_conn::RedisConn;

/// How long a connection to another node may take to open. A node that is down refuses at
/// once; one out of reach (a partition dropping packets) never answers.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether a new connection to the node at `address` (its internal URL) opens within the
/// connect timeout: a forward on a pooled connection that went silent cannot tell a slow
/// owner from one out of reach. The connection is closed at once.
pub(crate) async fn reaches(address: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(address) else {
        return false;
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    // An IPv6 host is written in brackets in a URL, not where a socket address is resolved.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let connect = tokio::net::TcpStream::connect((host, port));
    matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, connect).await,
        Ok(Ok(_))
    )
}

/// The internal endpoint a forwarded booking request goes to.
pub(crate) fn internal_path(id: BookingId) -> String {
    format!("/internal/bookings/{id}")
}

/// Forwarding counters, for `/metrics`.
pub(crate) struct ForwardMetrics {
    /// Requests this node sent to an owner.
    pub sent: IntCounter,
    /// ... and got an answer for (any status).
    pub answered: IntCounter,
    /// ... and got no answer for (refused, reset, timed out): the lease was then waited out.
    pub unanswered: IntCounter,
    /// Requests refused at once (503) because no new connection reached the owner and its
    /// lease would outlast them (a partition between the nodes, mostly): their forward failed
    /// to connect, or went unanswered while a fresh connection failed.
    pub unreachable: IntCounter,
    /// Internal calls this node accepted from other nodes.
    pub received: IntCounter,
    /// Internal calls refused for a missing or wrong signature.
    pub refused: IntCounter,
}

impl ForwardMetrics {
    pub(crate) fn new() -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| {
            IntCounter::new(format!("ridelock_forwards_{name}_total"), help)
        };
        Ok(Self {
            sent: counter("sent", "Booking actions sent on to the node holding the lease.")?,
            answered: counter("answered", "Forwarded actions the owner answered (any status).")?,
            unanswered: counter(
                "unanswered",
                "Forwarded actions the owner did not answer; the lease was then waited out.",
            )?,
            unreachable: counter(
                "unreachable",
                "Requests refused at once (503): no new connection reached the owner, and its lease would outlast them.",
            )?,
            received: counter("received", "Actions other nodes forwarded here.")?,
            refused: counter(
                "refused",
                "Internal calls refused for a missing or wrong signature.",
            )?,
        })
    }

    /// Every counter, for a registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        [
            &self.sent,
            &self.answered,
            &self.unanswered,
            &self.unreachable,
            &self.received,
            &self.refused,
        ]
        .into_iter()
        .map(|c| Box::new(c.clone()) as Box<dyn prometheus::core::Collector>)
        .collect()
    }
}

/// The owner's answer, to be relayed as it is.
pub(crate) struct Relayed {
    pub status: u16,
    pub retry_after: Option<String>,
    pub served_by: Option<String>,
    pub body: actix_web::web::Bytes,
}

/// Why a forward got no answer. The owner may or may not have received it: the caller must not
/// send the same request again unless the lease has moved since (then the old owner's writes are
/// fenced off).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("owner node {0} has no live address")]
    NoAddress(String),
    #[error("owner did not answer: {0}")]
    NoAnswer(#[from] reqwest::Error),
    #[error("could not sign the call: {0}")]
    Signing(#[from] auth::Refusal),
    #[error("owner is shutting down; the call was not handled")]
    Draining,
}

impl ForwardError {
    /// True when the call certainly never reached the owner (so it cannot have taken effect).
    pub(crate) fn never_sent(&self) -> bool {
        match self {
            Self::NoAddress(_) | Self::Signing(_) | Self::Draining => true,
            Self::NoAnswer(error) => error.is_connect(),
        }
    }

    /// True when no connection to the owner could be made (refused, or its attempt timed out):
    /// the call never reached it, and the owner is down or out of this node's reach.
    pub(crate) fn unreachable(&self) -> bool {
        matches!(self, Self::NoAnswer(error) if error.is_connect())
    }
}

pub(crate) struct Forwarder {
    client: reqwest::Client,
    secret: Secret,
    node_id: String,
    redis: RedisConn,
    prefix: String,
    /// Node addresses as last read from membership keys, with when they were read.
    addresses: Mutex<HashMap<String, (String, Instant)>>,
    /// How long a cached address is trusted (the membership heartbeat).
    address_ttl: Duration,
    pub metrics: ForwardMetrics,
}

impl Forwarder {
    pub fn new(
        secret: Secret,
        node_id: &str,
        redis: RedisConn,
        prefix: &str,
        address_ttl: Duration,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            // A node that is down refuses at once; one that is paused accepts the connection
            // (the kernel does) and never answers, which the lease watch settles.
            .connect_timeout(CONNECT_TIMEOUT)
            // Below actix-web's 5 s keep-alive, so a pooled connection is never reused just as
            // the server closes it.
            .pool_idle_timeout(Duration::from_secs(2))
            // Signed calls go straight to the peer: never through an HTTP proxy from the
            // environment, never after a redirect.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            secret,
            node_id: node_id.to_owned(),
            redis,
            prefix: prefix.to_owned(),
            addresses: Mutex::new(HashMap::new()),
            address_ttl,
            metrics: ForwardMetrics::new()?,
        })
    }

    /// The internal address `node` announced, if it is a live member.
    pub(crate) async fn address_of(&self, node: &str) -> Option<String> {
        if let Some((address, read_at)) = self.lock().get(node) {
            if read_at.elapsed() < self.address_ttl {
                return Some(address.clone());
            }
        }
        let mut conn = self.redis.clone();
        let json: Option<String> = redis::cmd("GET")
            .arg(node_key(&self.prefix, node))
            .query_async(&mut conn)
            .await
            .ok()?;
        let info: NodeInfo = serde_json::from_str(&json?).ok()?;
        self.lock()
            .insert(node.to_owned(), (info.address.clone(), Instant::now()));
        Some(info.address)
    }

    /// Drops a cached address after its node failed to answer.
    pub(crate) fn forget(&self, node: &str) {
        self.lock().remove(node);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.addresses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `body` (a serialized booking operation) to node `to` at `address`, waiting at most
    /// `budget` for the answer. The callee is given a little less, so its answer can travel back
    /// before this side gives up.
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &self,
        to: &str,
        address: &str,
        id: BookingId,
        body: Vec<u8>,
        request_id: &RequestId,
        hops: u8,
        budget: Duration,
    ) -> Result<Relayed, ForwardError> {
        self.metrics.sent.inc();
        let path = internal_path(id);
        let callee_budget = budget.saturating_sub(RETURN_MARGIN);
        let budget_ms = u64::try_from(callee_budget.as_millis()).unwrap_or(u64::MAX);
        let timestamp_ms = auth::now_ms();
        let signature = Signed {
            timestamp_ms,
            node: &self.node_id,
            to,
            hops,
            budget_ms,
            request_id: request_id.as_str(),
            path: &path,
            body: &body,
        }
        .sign(&self.secret)?;
        let sent = self
            .client
            .post(format!("{address}{path}"))
            .timeout(budget)
            .header("content-type", "application/json")
            .header(super::headers::REQUEST_ID, request_id.as_str())
            .header(auth::NODE_HEADER, &self.node_id)
            .header(auth::TO_HEADER, to)
            .header(auth::HOPS_HEADER, hops.to_string())
            .header(auth::BUDGET_HEADER, budget_ms.to_string())
            .header(auth::TIMESTAMP_HEADER, timestamp_ms.to_string())
            .header(auth::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                self.metrics.unanswered.inc();
                return Err(error.into());
            }
        };
        if response.headers().contains_key(super::headers::DRAINING) {
            // Refused unhandled: the owner is shutting down and about to give its leases back.
            self.metrics.unanswered.inc();
            return Err(ForwardError::Draining);
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = response.status().as_u16();
        let retry_after = header("retry-after");
        let served_by = header(super::headers::SERVED_BY);
        match response.bytes().await {
            Ok(body) => {
                self.metrics.answered.inc();
                Ok(Relayed {
                    status,
                    retry_after,
                    served_by,
                    body,
                })
            }
            Err(error) => {
                self.metrics.unanswered.inc();
                Err(error.into())
            }
        }
    }
}

/// Time kept back from a forwarded call's budget for its answer to travel back.
const RETURN_MARGIN: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::reaches;

    #[tokio::test]
    async fn a_listening_node_is_reached_and_a_closed_port_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(reaches(&format!("http://127.0.0.1:{port}")).await);
        drop(listener);
        assert!(!reaches(&format!("http://127.0.0.1:{port}")).await);
    }

    #[tokio::test]
    async fn an_ipv6_address_is_reached_without_its_brackets() {
        // Machines without IPv6 on loopback have nothing to test here.
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            return;
        };
        let port = listener.local_addr().unwrap().port();
        assert!(reaches(&format!("http://[::1]:{port}")).await);
    }

    #[tokio::test]
    async fn an_address_that_is_no_url_is_not_reached() {
        assert!(!reaches("10.0.0.1:3000").await);
        assert!(!reaches("").await);
    }
}
