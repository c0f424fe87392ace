//! The faults the cluster and chaos suites inflict on a running [`Cluster`], each applied, proven
//! and undone in one place. Signals go to one node's process; the service faults act on the
//! chaos profile's PostgreSQL and Redis (`services.rs`), so only a cluster started on those may
//! use them; a partition between nodes needs a cluster whose nodes run in namespaces
//! (`netns.rs`).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures::future::join_all;

use super::cluster::Cluster;
use super::services;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of a node: it dies at once, holding its leases and whatever it had in flight.
    /// Not undone: a killed node stays dead.
    Kill(usize),
    /// SIGTERM to a node: it drains, hands its leases back and exits. Not undone.
    Terminate(usize),
    /// SIGSTOP to a node: it hangs, keeping its sockets and leases, as in a long GC pause or a
    /// frozen VM. Undone with SIGCONT.
    Pause(usize),
    /// The node's proxy to Redis cut ([`super::proxy::Proxy::cut`]): a partition between that node
    /// and Redis, which everyone else still reaches. Undone by healing it.
    CutFromRedis(usize),
    /// The node cut off from every other node, both ways (their packets dropped in its network
    /// namespace), while every node still reaches PostgreSQL and Redis and the clients still
    /// reach every node. Undone by healing it.
    Partition(usize),
    /// The chaos profile's Redis stopped; it keeps nothing, so it comes back empty. Undone by
    /// starting it.
    StopRedis,
    /// The chaos profile's PostgreSQL stopped: connections are refused at once. Undone by
    /// starting it.
    StopPostgres,
    /// The chaos profile's PostgreSQL frozen (SIGSTOP to its processes): connections and
    /// statements get no answer at all. Undone by thawing it.
    FreezePostgres,
}

impl Fault {
    pub async fn apply(self, cluster: &Cluster) {
        self.check_target(cluster);
        match self {
            Self::Kill(node) => signal(cluster, node, libc::SIGKILL),
            Self::Terminate(node) => signal(cluster, node, libc::SIGTERM),
            Self::Pause(node) => signal(cluster, node, libc::SIGSTOP),
            Self::CutFromRedis(node) => cluster.proxies[node].cut(),
            Self::Partition(node) => cluster.network().isolate(node),
            Self::StopRedis => services::stop_redis().await,
            Self::StopPostgres => services::stop_postgres().await,
            Self::FreezePostgres => services::freeze_postgres().await,
        }
    }

    /// Whether [`Fault::undo`] can end the fault: a node that was killed or terminated stays down.
    pub fn can_be_undone(self) -> bool {
        !matches!(self, Self::Kill(_) | Self::Terminate(_))
    }

    /// Ends the fault; see [`Fault::can_be_undone`].
    pub async fn undo(self, cluster: &Cluster) {
        self.check_target(cluster);
        match self {
            Self::Kill(_) | Self::Terminate(_) => panic!("{self:?} cannot be undone"),
            Self::Pause(node) => signal(cluster, node, libc::SIGCONT),
            Self::CutFromRedis(node) => cluster.proxies[node].heal(),
            Self::Partition(node) => cluster.network().heal(node),
            Self::StopRedis => services::start_redis().await,
            Self::StopPostgres => services::start_postgres().await,
            Self::FreezePostgres => services::thaw_postgres().await,
        }
    }

    /// Asserts, from outside, that a service fault is in effect: a fault that did not happen must
    /// not pass for one. (A signal is proven by kill(2) succeeding, in [`Fault::apply`]; a cut by
    /// the proxy, which is the test's own.) Stopped, a server refuses a connection of our own;
    /// frozen, it does not answer one within 2 s. Partitioned, see [`assert_partitioned`].
    pub async fn prove(self, cluster: &Cluster) {
        match self {
            Self::Kill(_) | Self::Terminate(_) | Self::Pause(_) | Self::CutFromRedis(_) => {}
            Self::Partition(node) => assert_partitioned(cluster, node).await,
            Self::StopRedis => assert_redis_refuses(&cluster.redis_url).await,
            Self::StopPostgres => assert!(
                matches!(connect_within_2s(&cluster.db_url).await, Some(Err(_))),
                "PostgreSQL still took a connection after stop-postgres"
            ),
            Self::FreezePostgres => assert!(
                connect_within_2s(&cluster.db_url).await.is_none(),
                "PostgreSQL answered a connection while frozen"
            ),
        }
    }

    /// A service fault stops servers other clusters could be using: only one on the chaos
    /// profile's services (started by [`services::up`]) may have it. A partition needs nodes in
    /// namespaces of their own.
    fn check_target(self, cluster: &Cluster) {
        if let Self::Partition(_) = self {
            assert!(
                cluster.network.is_some(),
                "{self:?} on a cluster whose nodes share the host's network"
            );
        }
        if matches!(
            self,
            Self::StopRedis | Self::StopPostgres | Self::FreezePostgres
        ) {
            let chaos = services::started().is_some_and(|s| s.redis_url == cluster.redis_url);
            assert!(chaos, "{self:?} on a cluster not on the chaos services");
        }
    }
}

fn signal(cluster: &Cluster, node: usize, signal: libc::c_int) {
    // SAFETY: kill(2) on a child process we started and have not reaped.
    let rc = unsafe { libc::kill(cluster.nodes[node].pid(), signal) };
    assert_eq!(rc, 0, "kill({signal}) node {node}");
}

/// How long a connection across the partition is given before it counts as dropped.
const ACROSS: Duration = Duration::from_secs(1);

/// Node `node` is cut off from the others and from nothing else, seen from inside the
/// namespaces: a connection from it to any other node, and from any other node to it, times out
/// (dropped, not refused); from its namespace PostgreSQL (through the proxy) answers an SSL
/// request and Redis a PING; and the host still connects to it. All at once, so the proof costs
/// [`ACROSS`], not one timeout per pair.
pub async fn assert_partitioned(cluster: &Cluster, node: usize) {
    let network = cluster.network();
    let others: Vec<usize> = (0..cluster.nodes.len()).filter(|&n| n != node).collect();
    let mut pairs: Vec<(usize, SocketAddr)> = Vec::new();
    for &other in &others {
        pairs.push((node, network.node_address(other)));
        pairs.push((other, network.node_address(node)));
    }
    let crossings = join_all(
        pairs
            .iter()
            .map(|&(from, to)| network.exchange_from(from, to, b"", ACROSS)),
    );
    // PostgreSQL's SSLRequest (length 8, code 80877103) is answered with one byte, S or N.
    const SSL_REQUEST: &[u8] = &[0, 0, 0, 8, 4, 210, 22, 47];
    let db = cluster.db_proxy.as_ref().expect("a database proxy").address;
    let postgres = network.exchange_from(node, db, SSL_REQUEST, ACROSS);
    // Without AUTH, Redis answers -NOAUTH: an answer all the same.
    let redis_address = cluster.proxies.get(node).map(|proxy| proxy.address);
    let redis = async {
        match redis_address {
            Some(address) => Some(
                network
                    .exchange_from(node, address, b"PING\r\n", ACROSS)
                    .await,
            ),
            None => None,
        }
    };
    let host = tokio::task::spawn_blocking({
        let to = network.node_address(node);
        move || std::net::TcpStream::connect_timeout(&to, ACROSS).map(drop)
    });
    let (crossings, postgres, redis, host) = tokio::join!(crossings, postgres, redis, host);
    for ((from, to), crossed) in pairs.iter().zip(crossings) {
        assert!(
            matches!(&crossed, Err(e) if e.kind() == ErrorKind::TimedOut),
            "from n{}'s namespace to {to}, across the partition: {crossed:?}, not dropped",
            from + 1
        );
    }
    assert!(
        matches!(postgres.as_deref(), Ok([b'S' | b'N'])),
        "PostgreSQL through its proxy, from n{}'s namespace: {postgres:?}",
        node + 1
    );
    if let Some(redis) = redis {
        assert!(
            matches!(redis.as_deref(), Ok([b'+' | b'-', ..])),
            "Redis through its proxy, from n{}'s namespace: {redis:?}",
            node + 1
        );
    }
    host.unwrap()
        .unwrap_or_else(|e| panic!("the host no longer reaches n{}: {e}", node + 1));
}

/// A connection of our own to `url`: `None` if PostgreSQL gave no answer within 2 s.
async fn connect_within_2s(url: &str) -> Option<diesel::ConnectionResult<AsyncPgConnection>> {
    tokio::time::timeout(Duration::from_secs(2), AsyncPgConnection::establish(url))
        .await
        .ok()
}

/// Redis is down: a connection of our own is refused.
async fn assert_redis_refuses(url: &str) {
    let url = url.to_owned();
    let direct = tokio::task::spawn_blocking(move || {
        redis::Client::open(url)
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
    })
    .await
    .unwrap();
    assert!(direct.is_err(), "Redis still answered: {direct:?}");
}
