//! Relaying while draining: a request that reaches a node after it began to stop did nothing
//! there, so instead of refusing it (503 `draining`, which a client without an
//! `Idempotency-Key` cannot safely send again through a load balancer), the node sends it as it
//! came to another live node's public API and answers with that node's answer. The other node
//! checks the caller's token, limits and rules as for any request. A relayed request is marked,
//! and a draining node refuses a marked one: a request is relayed at most once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{live_nodes, NodeInfo};
use crate::redis_conn::RedisConn;

/// Set on a relayed request (the node that relayed it) and on its answer.
pub(crate) const RELAYED_BY: &str = "x-ridelock-relayed-by";

/// How long a new connection to another node may take (as for forwarded calls).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the list of live nodes is reused: one read per drain, give or take.
const PEERS_FRESH_FOR: Duration = Duration::from_secs(1);

/// Headers that belong to one connection, not to the request or answer (RFC 9110 §7.6.1), and
/// the ones the client library sets itself.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Whether `name` (lowercase) is passed on by a relay, either way.
pub(crate) fn passed_on(name: &str) -> bool {
    !HOP_BY_HOP.contains(&name) && name != RELAYED_BY
}

/// A request as it reached this node.
pub(crate) struct Outgoing {
    pub method: reqwest::Method,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Another node's answer.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The node that answered.
    pub node: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    /// No other live node took the request: it was sent nowhere, so nothing was done.
    #[error("no other node took the request")]
    NotSent,
    /// Sent, but no answer came back: it may have been done.
    #[error("node {node} did not answer: {error}")]
    Unanswered { node: String, error: reqwest::Error },
}

pub(crate) struct Relay {
    client: reqwest::Client,
    redis: RedisConn,
    prefix: String,
    node_id: String,
    /// The other live nodes as last read, and when.
    peers: Mutex<Option<(Vec<NodeInfo>, Instant)>>,
    /// Spreads relays over the other nodes.
    next: AtomicUsize,
}

impl Relay {
    pub fn new(
        redis: RedisConn,
        prefix: &str,
        node_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            // A connection of its own per relay: a pooled one lives on the runtime of the worker
            // that opened it, and the workers stop one by one while the node drains (a relay
            // on a stopped worker's connection fails after its request may have been sent).
            .pool_max_idle_per_host(0)
            // The request goes to the other node as it came: never through a proxy from the
            // environment, and a redirect is the client's to follow.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            redis,
            prefix: prefix.to_owned(),
            node_id: node_id.to_owned(),
            peers: Mutex::new(None),
            next: AtomicUsize::new(0),
        })
    }

    /// The node this one is, as named on relayed requests.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Sends `request` to the other live nodes in turn until one takes it (a node that refuses
    /// the connection took nothing: the next is tried), and returns its answer.
    pub async fn send(&self, request: Outgoing) -> Result<Answer, RelayError> {
        let peers = self.peers().await;
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..peers.len() {
            let peer = &peers[(first + i) % peers.len()];
            let mut call = self
                .client
                .request(
                    request.method.clone(),
                    format!("{}{}", peer.address, request.target),
                )
                .header(RELAYED_BY, &self.node_id)
                .body(request.body.clone());
            for (name, value) in &request.headers {
                call = call.header(name.as_str(), value.as_slice());
            }
            match call.send().await {
                Ok(response) => return answer(response, &peer.id).await,
                // Refused, or not even built (a header it cannot send): nothing reached the node.
                Err(error) if error.is_connect() || error.is_builder() => {
                    log::warn!("relay: node {} did not take the request: {error}", peer.id);
                }
                Err(error) => {
                    return Err(RelayError::Unanswered {
                        node: peer.id.clone(),
                        error,
                    })
                }
            }
        }
        Err(RelayError::NotSent)
    }

    /// The other live nodes, read at most once per [`PEERS_FRESH_FOR`].
    async fn peers(&self) -> Vec<NodeInfo> {
        if let Some((peers, read_at)) = self.lock().as_ref() {
            if read_at.elapsed() < PEERS_FRESH_FOR {
                return peers.clone();
            }
        }
        let peers: Vec<NodeInfo> = match live_nodes(&self.redis, &self.prefix).await {
            Ok(nodes) => nodes.into_iter().filter(|n| n.id != self.node_id).collect(),
            Err(error) => {
                log::warn!("relay: cannot read the live nodes: {error}");
                Vec::new()
            }
        };
        *self.lock() = Some((peers.clone(), Instant::now()));
        peers
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Vec<NodeInfo>, Instant)>> {
        self.peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn answer(response: reqwest::Response, node: &str) -> Result<Answer, RelayError> {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| passed_on(name.as_str()))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    match response.bytes().await {
        Ok(body) => Ok(Answer {
            status,
            headers,
            body: body.to_vec(),
            node: node.to_owned(),
        }),
        Err(error) => Err(RelayError::Unanswered {
            node: node.to_owned(),
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_headers_and_the_relay_mark_are_not_passed_on() {
        for name in [
            "connection",
            "host",
            "content-length",
            "transfer-encoding",
            RELAYED_BY,
        ] {
            assert!(!passed_on(name), "{name}");
        }
        for name in [
            "authorization",
            "idempotency-key",
            "content-type",
            "x-request-id",
            "retry-after",
        ] {
            assert!(passed_on(name), "{name}");
        }
    }
}
