//! Network namespaces, for the nodes of a cluster that a test cuts off from each other: each node
//! runs in a namespace of its own (`ip netns exec`), with an address of its own on a bridge of the
//! host's, so a test can drop the packets between nodes as a failed switch would, while the
//! nodes still reach what they share through the host (PostgreSQL and Redis, which listen on the
//! host's loopback, through proxies on the host's bridge address: `proxy.rs`) and the test's
//! client, on the host, still reaches every node, as a load balancer would.
//!
//! Why namespaces rather than a proxy between the nodes: a node calls another straight at the
//! address that node announced, so a proxy would have to be announced instead and the partition
//! would be a cooperating proxy's, not packets lost. Here the nodes run as deployed (their own
//! address and listening socket, a private cluster secret) and the kernel does the cut:
//! `iptables` DROP rules in the isolated node's namespace for the other nodes' addresses, in and
//! out, so open connections go silent and new ones time out, with no reset and no ICMP, as
//! across a real partition. The rules live in that namespace only; the host's tables are never
//! touched.
//!
//! Layout of a network tagged `rlp<pid>k<k>` (the test process's pid, its k-th network): the
//! bridge `<tag>b`, the host on it at 10.217.<s>.1/24, where <s> is a /24 no interface of the
//! machine has (chosen under a lock file, so concurrent runs never share one); node i in the
//! namespace `rlp-<pid>-<k>-n<i>`, as `eth0` with 10.217.<s>.<10 + i>, the host's end of its veth
//! pair `<tag>h<i>` on the bridge. The namespaces have no default route: a node reaches its /24
//! and nothing else.
//!
//! Clean-up: dropping a [`Network`] kills whatever still runs in its namespaces and deletes them
//! and the bridge. Names carry the pid, so each new network first deletes those of processes
//! that are gone (a run killed before its drop). The host keeps one route of ours, `unreachable
//! 10.217.0.0/16`, which every network sets again and none removes: a request still on its way
//! to a node whose network was just deleted (a failing test's traffic, before its runtime stops)
//! then fails at once on the host, instead of leaving the machine by the default route.
//!
//! Needs root, iproute2 and `iptables`, which is installed with apt-get the first time it is
//! missing (CI starts on a fresh machine).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// What every interface name of ours starts with, followed by the owning process's pid.
const PREFIX: &str = "rlp";
/// Held while a network is made: choosing a free /24 and taking it must not interleave.
const LOCK: &str = "/run/ridelock-netns.lock";
/// Where a node listens in its namespace: the address is its own, so the port is fixed.
pub const NODE_PORT: u16 = 7000;

/// This process's networks so far, for unique names.
static MADE: AtomicUsize = AtomicUsize::new(0);

/// The namespaces of one cluster's nodes, on one bridge of the host's.
pub struct Network {
    /// `rlp<pid>k<k>`: the start of every interface name of this network.
    tag: String,
    /// The third octet of its 10.217.<s>.0/24.
    subnet: u8,
    /// Node i's namespace is `namespaces[i]`.
    namespaces: Vec<String>,
}

impl Network {
    /// A bridge and `count` namespaces, each with one address on the bridge.
    pub fn create(count: usize) -> Self {
        ensure_iptables();
        let _lock = lock();
        sweep_stale();
        let pid = std::process::id();
        let k = MADE.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{PREFIX}{pid}k{k}");
        assert!(
            tag.len() + 2 < 16 && count < 10,
            "interface names of {tag} would be too long"
        );
        let network = Self {
            tag,
            subnet: free_subnet(pid),
            namespaces: (1..=count)
                .map(|i| format!("{PREFIX}-{pid}-{k}-n{i}"))
                .collect(),
        };
        // From here on a failure unwinds through `network`'s drop, which deletes what was made.
        ip(&["route", "replace", "unreachable", "10.217.0.0/16"]);
        let bridge = network.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        let host = format!("{}/24", network.host_ip());
        ip(&["addr", "add", &host, "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for (i, ns) in network.namespaces.iter().enumerate() {
            let host_end = format!("{}h{}", network.tag, i + 1);
            let node_end = format!("{}p{}", network.tag, i + 1);
            ip(&["netns", "add", ns]);
            ip(&[
                "link", "add", &host_end, "type", "veth", "peer", "name", &node_end,
            ]);
            ip(&["link", "set", &node_end, "netns", ns]);
            ip(&["link", "set", &host_end, "master", &bridge, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", &node_end, "name", "eth0"]);
            let address = format!("{}/24", network.node_ip(i));
            ip(&["-n", ns, "addr", "add", &address, "dev", "eth0"]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
        }
        network
    }

    /// The host's address on the bridge: where the nodes find the proxies to the host's services.
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 217, self.subnet, 1)
    }

    /// Node `node`'s address (0-based: n1 is 0).
    pub fn node_ip(&self, node: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 217, self.subnet, 11 + node as u8)
    }

    /// Where node `node` listens.
    pub fn node_address(&self, node: usize) -> SocketAddr {
        (self.node_ip(node), NODE_PORT).into()
    }

    /// `program`, to be run in node `node`'s namespace (`ip netns exec` execs it in place, so the
    /// child's pid is the program's).
    pub fn command(&self, node: usize, program: &str) -> Command {
        let mut command = Command::new(installed("ip"));
        command.args(["netns", "exec", &self.namespaces[node]]);
        command.arg(installed(program));
        command
    }

    /// Drops every packet between node `node` and the other nodes, both ways: DROP rules in its
    /// namespace for their addresses, all committed at once.
    pub fn isolate(&self, node: usize) {
        let rules: Vec<String> = (0..self.namespaces.len())
            .filter(|&other| other != node)
            .flat_map(|other| {
                let peer = self.node_ip(other);
                [
                    format!("-A INPUT -s {peer} -j DROP"),
                    format!("-A OUTPUT -d {peer} -j DROP"),
                ]
            })
            .collect();
        self.filter_table(node, &rules);
    }

    /// Ends [`Network::isolate`]: node `node`'s namespace filters nothing again.
    pub fn heal(&self, node: usize) {
        self.filter_table(node, &[]);
    }

    /// Replaces the filter table of node `node`'s namespace (which only this module writes) with
    /// `rules`, in one transaction: the partition starts and ends at one instant, for every pair.
    fn filter_table(&self, node: usize, rules: &[String]) {
        let table =
            format!(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{}COMMIT\n",
            rules.iter().map(|rule| format!("{rule}\n")).collect::<String>()
        );
        let mut restore = self
            .command(node, "iptables-restore")
            .arg("-w")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run iptables-restore");
        let mut stdin = restore.stdin.take().expect("piped stdin");
        stdin.write_all(table.as_bytes()).expect("write the rules");
        drop(stdin);
        let out = restore.wait_with_output().expect("iptables-restore ends");
        assert_success(&format!("iptables-restore in node {node}:\n{table}"), &out);
    }

    /// From inside node `node`'s namespace: connects to `to` within `within`, sends `send` (if
    /// any) and returns the first bytes of the answer (nothing when nothing was sent). A
    /// connection the network drops fails with `TimedOut`.
    pub async fn exchange_from(
        &self,
        node: usize,
        to: SocketAddr,
        send: &'static [u8],
        within: Duration,
    ) -> std::io::Result<Vec<u8>> {
        let namespace = format!("/run/netns/{}", self.namespaces[node]);
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A thread of its own: setns(2) moves the calling thread for good, so it must be one
        // that ends with the exchange (never a runtime's pooled thread).
        std::thread::spawn(move || {
            let _ = tx.send(exchange_in(&namespace, to, send, within));
        });
        rx.await.expect("the exchange thread answers")
    }

    fn bridge(&self) -> String {
        format!("{}b", self.tag)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for namespace in &self.namespaces {
            remove_namespace(namespace);
        }
        // The veth pairs went with the namespaces.
        let _ = run("ip", &["link", "del", &self.bridge()]);
    }
}

fn exchange_in(
    namespace: &str,
    to: SocketAddr,
    send: &[u8],
    within: Duration,
) -> std::io::Result<Vec<u8>> {
    let file = File::open(namespace)?;
    // SAFETY: setns(2) with a namespace file we opened; it moves only this thread, which exits
    // after the exchange.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut stream = TcpStream::connect_timeout(&to, within)?;
    if send.is_empty() {
        return Ok(Vec::new());
    }
    stream.set_read_timeout(Some(within))?;
    stream.write_all(send)?;
    let mut answer = vec![0; 64];
    let read = stream.read(&mut answer)?;
    answer.truncate(read);
    Ok(answer)
}

/// Kills what still runs in `namespace` (only our own nodes ever do) and deletes it.
fn remove_namespace(namespace: &str) {
    if let Ok(out) = run("ip", &["netns", "pids", namespace]) {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) of a process in a namespace of ours, started by this suite.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = run("ip", &["netns", "del", namespace]);
}

/// Whether a name that continues with a pid (what follows our prefix) names a process that is
/// gone.
fn owner_gone(rest: &str) -> bool {
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let pid: Option<u32> = digits.parse().ok();
    pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// Deletes the namespaces and interfaces of networks whose process is gone.
fn sweep_stale() {
    let namespaces = stdout(&["netns", "list"]);
    for name in namespaces
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        if name
            .strip_prefix(&format!("{PREFIX}-"))
            .is_some_and(owner_gone)
        {
            remove_namespace(name);
        }
    }
    // `12: rlp4242k0b: <...>` and `13: rlp4242k0h1@if2: <...>`.
    let links = stdout(&["-o", "link", "show"]);
    for line in links.lines() {
        let Some(name) = line.split(": ").nth(1).and_then(|n| n.split('@').next()) else {
            continue;
        };
        if name.strip_prefix(PREFIX).is_some_and(owner_gone) {
            let _ = run("ip", &["link", "del", name]);
        }
    }
}

/// A 10.217.<s>.0/24 on no interface of the machine, trying from a pid-dependent start.
fn free_subnet(pid: u32) -> u8 {
    let used = stdout(&["-o", "-4", "addr", "show"]);
    (0..254u32)
        .map(|offset| ((pid + offset) % 254 + 1) as u8)
        .find(|s| !used.contains(&format!("inet 10.217.{s}.")))
        .expect("a free /24 in 10.217.0.0/16")
}

/// The machine-wide lock on making networks, held until the file is closed.
fn lock() -> File {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .expect("open the network lock file");
    // SAFETY: flock(2) on a file we own; released when it is closed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {LOCK}");
    file
}

/// Installs iptables (Debian's package) unless it is there.
fn ensure_iptables() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        if run("iptables", &["--version"]).is_ok_and(|out| out.status.success()) {
            return;
        }
        let install = || {
            Command::new(installed("apt-get"))
                .args(["-o", "DPkg::Lock::Timeout=300", "install", "-y"])
                .args(["--no-install-recommends", "iptables"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
                .expect("run apt-get (the partition scenario needs iptables)")
        };
        let mut out = install();
        if !out.status.success() {
            // A fresh machine may have no package lists yet.
            let update = run("apt-get", &["update"]).expect("run apt-get update");
            assert_success("apt-get update", &update);
            out = install();
        }
        assert_success("apt-get install iptables", &out);
    });
}

/// `ip <args>`, which must succeed.
fn ip(args: &[&str]) {
    let out = run("ip", args).expect("run ip (iproute2)");
    assert_success(&format!("ip {}", args.join(" ")), &out);
}

/// The output of `ip <args>`, which must succeed.
fn stdout(args: &[&str]) -> String {
    let out = run("ip", args).expect("run ip (iproute2)");
    assert_success(&format!("ip {}", args.join(" ")), &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(program: &str, args: &[&str]) -> std::io::Result<Output> {
    Command::new(installed(program)).args(args).output()
}

/// Where `program` is: on the PATH, or in the system directories a PATH without them misses
/// (`ip` and `iptables` live in /usr/sbin); as given if nowhere (the spawn then says so).
fn installed(program: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| program.into())
}

#[track_caller]
fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
