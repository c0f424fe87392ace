//! nginx in front of a cluster's nodes, as `make cluster` runs it: the project's own
//! `config/nginx-cluster.conf`, rendered for the test (upstream = the nodes' addresses, listening
//! on a free port, prefix, pid, logs and temp files in a directory of its own), so what a client
//! sees through it is what the configuration does. nginx is installed first if missing
//! (`scripts/install-nginx.sh`, as `make cluster` does). The access log names, per request, every
//! node nginx tried and what each answered ([`Nginx::passed_on`]).
//!
//! A replaced node keeps its port ([`super::cluster::Cluster::restart`]), so the upstream never
//! changes and nginx is never reloaded under the traffic: a reload starts new workers and makes
//! the old ones close their idle client connections, a disturbance of its own that would be
//! counted against the node.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use tokio::sync::OnceCell;

use super::poll;
use super::services::{self, root};

const NGINX: &str = "/usr/sbin/nginx";

/// Per request: the time, final status, method and URI, and per try the node and its status
/// (`$upstream_addr`, `$upstream_status`: comma-separated, one entry per node tried).
const LOG_FORMAT: &str = "log_format ridelock_tries \
    '$msec $status $request_method $uri upstreams=$upstream_addr statuses=$upstream_status';";

pub struct Nginx {
    /// `http://127.0.0.1:<port>`: where clients send their requests.
    pub address: String,
    /// The master process, in the foreground (`daemon off`); stopped on drop.
    child: Child,
    /// Its prefix: the rendered configuration, pid file, logs and temp files.
    dir: PathBuf,
}

/// One request in nginx's access log.
#[derive(Debug, Clone)]
pub struct Logged {
    /// When nginx logged it (`$msec`).
    pub at: SystemTime,
    pub status: u16,
    pub method: String,
    pub uri: String,
    /// Each node tried, in order, with what it answered (`502` for a failed connection).
    pub tries: Vec<(String, String)>,
}

static INSTALLED: OnceCell<()> = OnceCell::const_new();

/// `config/nginx-cluster.conf` with `upstreams` (`host:port` each) as its servers, listening on
/// `port`, its access log naming every try. Fails if the configuration no longer reads as this
/// expects, rather than run something else.
pub fn render(upstreams: &[String], port: u16) -> String {
    let conf = std::fs::read_to_string(root().join("config/nginx-cluster.conf")).unwrap();
    // `server 127.0.0.1:3001 <parameters>;`: each node in its place, with the parameters the
    // configuration gives its servers (the same for all).
    let servers: Vec<&str> = conf
        .lines()
        .filter(|line| line.trim_start().starts_with("server 127.0.0.1:"))
        .collect();
    assert!(
        !servers.is_empty(),
        "no `server 127.0.0.1:…;` line in the upstream"
    );
    let parameters = |line: &str| -> String {
        let line = line.trim().trim_end_matches(';');
        line.split_whitespace()
            .skip(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let shared = parameters(servers[0]);
    assert!(
        servers.iter().all(|line| parameters(line) == shared),
        "the upstream's servers differ in their parameters: {servers:#?}"
    );
    let indent = &servers[0][..servers[0].len() - servers[0].trim_start().len()];
    let ours: String = upstreams
        .iter()
        .map(|up| match shared.as_str() {
            "" => format!("{indent}server {up};\n"),
            shared => format!("{indent}server {up} {shared};\n"),
        })
        .collect();
    let mut rendered = String::with_capacity(conf.len());
    let mut placed = false;
    for line in conf.lines() {
        if servers.contains(&line) {
            if !placed {
                rendered.push_str(&ours);
                placed = true;
            }
            continue;
        }
        rendered.push_str(line);
        rendered.push('\n');
    }
    let replace_once = |text: String, from: &str, to: &str| {
        assert_eq!(
            text.matches(from).count(),
            1,
            "{from:?} in config/nginx-cluster.conf"
        );
        text.replace(from, to)
    };
    let rendered = replace_once(
        rendered,
        "listen 127.0.0.1:3000;",
        &format!("listen 127.0.0.1:{port};"),
    );
    replace_once(
        rendered,
        "access_log logs/access.log;",
        &format!("{LOG_FORMAT}\n    access_log logs/access.log ridelock_tries;"),
    )
}

impl Nginx {
    /// Starts nginx in front of `nodes` (`http://host:port` each) and waits until it listens.
    pub async fn start(nodes: &[String]) -> Self {
        INSTALLED
            .get_or_init(|| async {
                services::install("install-nginx.sh").await;
            })
            .await;
        let upstreams: Vec<String> = nodes
            .iter()
            .map(|node| node.trim_start_matches("http://").to_owned())
            .collect();
        let dir =
            std::env::temp_dir().join(format!("ridelock-nginx-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        // A free port, taken by nginx a moment later; if something else took it meanwhile,
        // nginx fails to bind and another port is tried.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|probe| probe.local_addr())
                .unwrap()
                .port();
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, render(&upstreams, port)).unwrap();
            let error_log = dir.join("logs/error.log");
            let mut prefix = dir.clone().into_os_string();
            prefix.push("/");
            let mut child = Command::new(NGINX)
                .arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(&error_log)
                .args(["-g", "daemon off;"])
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::options()
                        .create(true)
                        .append(true)
                        .open(&error_log)
                        .unwrap(),
                ))
                .spawn()
                .expect("start nginx");
            let address = format!("127.0.0.1:{port}");
            let up = poll::until(
                Duration::from_secs(10),
                || {
                    let seen = (
                        std::net::TcpStream::connect(&address).is_ok(),
                        child.try_wait().unwrap(),
                    );
                    async move { seen }
                },
                |(listening, exited)| *listening || exited.is_some(),
            )
            .await;
            let log = std::fs::read_to_string(&error_log).unwrap_or_default();
            match up {
                Ok((true, None)) => {
                    return Self {
                        address: format!("http://{address}"),
                        child,
                        dir,
                    }
                }
                Ok((_, Some(_))) if log.contains("in use") => continue,
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("nginx did not start ({up:?}):\n{log}");
                }
            }
        }
        panic!("nginx found no free port in 5 tries");
    }

    /// Every request nginx has logged so far.
    pub fn requests(&self) -> Vec<Logged> {
        let log = std::fs::read_to_string(self.dir.join("logs/access.log")).unwrap_or_default();
        log.lines().filter_map(parse).collect()
    }

    /// Requests nginx sent to more than one node: a 503 or a failed connection it did not pass
    /// back to the client.
    pub fn passed_on(&self) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(|r| r.tries.len() > 1)
            .collect()
    }

    /// Whether nginx has sent `node` (`http://host:port`) a request since `since` that it
    /// answered below 500: the node takes requests through the load balancer.
    pub fn sends_to(&self, node: &str, since: SystemTime) -> bool {
        let node = node.trim_start_matches("http://");
        self.requests().iter().any(|request| {
            request.at >= since
                && request
                    .tries
                    .iter()
                    .any(|(to, status)| to == node && status.as_str() < "500")
        })
    }

    /// nginx's error log so far (failed connections, resets, `no live upstreams`).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default()
    }
}

/// One line of the `ridelock_tries` format.
fn parse(line: &str) -> Option<Logged> {
    let mut fields = line.split(' ');
    let msec: f64 = fields.next()?.parse().ok()?;
    let status = fields.next()?.parse().ok()?;
    let method = fields.next()?.to_owned();
    let uri = fields.next()?.to_owned();
    let rest: Vec<&str> = fields.collect();
    let rest = rest.join(" ");
    let (upstreams, statuses) = rest.split_once(" statuses=")?;
    // Tries are separated by ", " (and by " : " across an internal redirect).
    let split = |list: &str| -> Vec<String> {
        list.split(", ")
            .flat_map(|part| part.split(" : "))
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "-")
            .map(str::to_owned)
            .collect()
    };
    let tries = split(upstreams.trim_start_matches("upstreams="))
        .into_iter()
        .zip(split(statuses))
        .collect();
    Some(Logged {
        at: SystemTime::UNIX_EPOCH + Duration::from_secs_f64(msec),
        status,
        method,
        uri,
        tries,
    })
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: SIGTERM (nginx's fast shutdown) to our own child, not yet reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            let tail: Vec<String> = self
                .error_log()
                .lines()
                .rev()
                .take(40)
                .map(str::to_owned)
                .collect();
            eprintln!(
                "---- last lines of nginx's error log ({}) ----",
                self.dir.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
