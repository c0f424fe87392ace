//! A TCP proxy a test puts between one node and Redis, to cut that node off while every other
//! client still reaches Redis. Cut: open connections are dropped and new ones are accepted but
//! never answered, as across a network partition; healed: connections are forwarded again (and
//! the silent ones dropped, so the client reconnects). Nodes in network namespaces of their own
//! (`netns.rs`) reach the host's loopback-only PostgreSQL and Redis through one listening on the
//! host's address in their network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Proxy {
    /// Where it listens.
    pub address: SocketAddr,
    shared: Arc<Shared>,
    accepting: JoinHandle<()>,
}

struct Shared {
    target: String,
    cut: AtomicBool,
    /// Every connection's task; aborting one closes both of its sockets.
    connections: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn drop_connections(&self) {
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Proxy {
    /// Listens on a random loopback port, forwarding to `target` (`host:port`).
    pub async fn start(target: &str) -> Self {
        Self::start_on(Ipv4Addr::LOCALHOST.into(), target).await
    }

    /// Listens on a random port of `ip`, forwarding to `target` (`host:port`).
    pub async fn start_on(ip: IpAddr, target: &str) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            target: target.to_owned(),
            cut: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
        });
        let accepting = {
            let shared = shared.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let task = if shared.cut.load(Ordering::SeqCst) {
                        // Held open and silent until healed or closed.
                        tokio::spawn(async move {
                            let _held = client;
                            std::future::pending::<()>().await;
                        })
                    } else {
                        let target = shared.target.clone();
                        tokio::spawn(async move {
                            let mut client = client;
                            if let Ok(mut server) = TcpStream::connect(&target).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        })
                    };
                    let mut connections = shared.connections.lock().unwrap();
                    connections.retain(|t| !t.is_finished());
                    connections.push(task);
                }
            })
        };
        Self {
            address,
            shared,
            accepting,
        }
    }

    /// `upstream` (a Redis or PostgreSQL URL, with its credentials) through this proxy.
    pub fn url(&self, upstream: &str) -> String {
        upstream.replacen(&host_port(upstream), &self.address.to_string(), 1)
    }

    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.drop_connections();
    }

    pub fn heal(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
        self.shared.drop_connections();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.shared.drop_connections();
    }
}

/// `host:port` of a `redis://host:port/...` or `postgres://host:port/...` URL.
pub fn host_port(url: &str) -> String {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap()
        .to_owned()
}
