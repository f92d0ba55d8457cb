//! The network: one namespace per node slot, one for the clients and one for
//! the sinks, each joined by a veth pair to one bridge in the harness's own
//! namespace.
//!
//! Every link can be cut on its own because every namespace has its own
//! address and its own iptables: a rule in node slot 2 that drops 10.231.0.11
//! cuts slot 1 ↔ slot 2 and nothing else. The harness itself talks to the
//! admin ports from the bridge address (.254), which no fault ever names, so
//! it can always observe the cluster.
//!
//! Everything created here has the `jl-` prefix. `cleanup_leftovers` removes
//! all of it, and the processes inside, so a run that was killed outright is
//! cleaned up by the next one (or by `jepsen-like clean`).

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

/// Why the network could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A command (`ip`, `iptables`, `tc`) failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed.
        stderr: String,
    },
    /// A namespace could not be entered.
    #[error("entering network namespace {ns}: {source}")]
    Setns {
        /// The namespace.
        ns: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl TopologyError {
    /// Whether trying again may help: never, these are set-up errors.
    #[allow(dead_code)] // the error contract; the harness reports every error as is
    pub fn retryable(&self) -> bool {
        false
    }
}

/// Name prefix of everything the harness creates.
const PREFIX: &str = "jl-";
/// The bridge, in the harness's namespace.
const BRIDGE: &str = "jl-br";
/// The /24 every address is in.
const SUBNET: [u8; 3] = [10, 231, 0];
/// The bridge's own address: the harness's view of every namespace.
pub const HARNESS_HOST: u8 = 254;
/// The clients' namespace and host number.
pub const CLIENTS: (&str, u8) = ("jl-clients", 100);
/// The sinks' namespace and host number (Prometheus, Loki, S3).
pub const SINKS: (&str, u8) = ("jl-sinks", 200);

/// The address of host number `host` in the harness subnet.
pub fn ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], host)
}

/// The namespace of node slot `slot` (1-based).
pub fn slot_ns(slot: usize) -> String {
    format!("{PREFIX}n{slot}")
}

/// The host number of node slot `slot`.
pub fn slot_host(slot: usize) -> u8 {
    10 + slot as u8
}

/// The interface name inside a namespace (`tc` attaches to it).
pub fn inner_if(ns: &str) -> String {
    format!("{ns}-e")
}

/// Runs a command and returns its stdout, or the error naming it.
pub fn run(program: &str, args: &[&str]) -> Result<String, TopologyError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| TopologyError::Command {
            command: command.clone(),
            stderr: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(TopologyError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `program args` inside namespace `ns`.
pub fn run_in(ns: &str, program: &str, args: &[&str]) -> Result<String, TopologyError> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// The created network; dropping it removes everything.
pub struct Topology {
    namespaces: Vec<String>,
    /// The host's bridge-nf-call-iptables before the run, to restore.
    bridge_nf: Option<String>,
}

/// Whether bridged frames traverse the host's iptables (br_netfilter).
const BRIDGE_NF: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

impl Topology {
    /// Creates the bridge and the namespaces for `slots` node slots plus the
    /// clients and the sinks, after removing anything a previous run left.
    pub fn create(slots: usize) -> Result<Topology, TopologyError> {
        cleanup_leftovers();
        let mut topo = Topology {
            namespaces: Vec::new(),
            bridge_nf: None,
        };
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", ip(HARNESS_HOST)),
                "dev",
                BRIDGE,
            ],
        )?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        // Bridged frames must not pass the host's own iptables (a Docker
        // host, say, drops forwarded traffic by policy). The host's setting
        // is put back when the topology is dropped.
        topo.bridge_nf = std::fs::read_to_string(BRIDGE_NF).ok();
        if topo.bridge_nf.is_some() {
            let _ = std::fs::write(BRIDGE_NF, "0");
        }
        let mut hosts: Vec<(String, u8)> =
            (1..=slots).map(|s| (slot_ns(s), slot_host(s))).collect();
        hosts.push((CLIENTS.0.to_string(), CLIENTS.1));
        hosts.push((SINKS.0.to_string(), SINKS.1));
        for (ns, host) in hosts {
            topo.add_namespace(&ns, host)?;
        }
        Ok(topo)
    }

    fn add_namespace(&mut self, ns: &str, host: u8) -> Result<(), TopologyError> {
        run("ip", &["netns", "add", ns])?;
        self.namespaces.push(ns.to_string());
        let outer = format!("{ns}-b");
        let inner = inner_if(ns);
        run(
            "ip",
            &[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", ns,
            ],
        )?;
        run("ip", &["link", "set", &outer, "master", BRIDGE])?;
        run("ip", &["link", "set", &outer, "up"])?;
        let addr = format!("{}/24", ip(host));
        run("ip", &["-n", ns, "addr", "add", &addr, "dev", &inner])?;
        run("ip", &["-n", ns, "link", "set", &inner, "up"])?;
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Removes every rule and qdisc the nemesis added, in every namespace.
    pub fn heal_all(&self) -> Result<(), TopologyError> {
        // Every namespace is healed even if one fails; the first error is
        // returned after.
        let mut first = Ok(());
        for ns in &self.namespaces {
            if let Err(e) = run_in(ns, "iptables", &["-w", "-F"]) {
                first = first.and(Err(e));
            }
            // Deleting a root qdisc that is not there fails; that is fine.
            let _ = run_in(ns, "tc", &["qdisc", "del", "dev", &inner_if(ns), "root"]);
        }
        first
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(v) = &self.bridge_nf {
            let _ = std::fs::write(BRIDGE_NF, v.trim());
        }
        cleanup_leftovers();
    }
}

/// Kills every process in a `jl-` namespace, then deletes the namespaces
/// and the bridge (deleting a namespace deletes its veth and its rules).
pub fn cleanup_leftovers() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        if !ns.starts_with(PREFIX) {
            continue;
        }
        if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill(2) on pids that live in our own namespace.
                unsafe {
                    libc::kill(pid, libc::SIGCONT);
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let _ = run("ip", &["netns", "del", ns]);
    }
    let _ = run("ip", &["link", "del", BRIDGE]);
}

/// A single-threaded tokio runtime whose thread lives in one network
/// namespace, so every socket its tasks open is in that namespace.
///
/// Network namespaces are per thread (`setns(CLONE_NEWNET)`), and tokio's
/// current-thread runtime runs every task on the thread that drives it.
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    /// Starts the runtime thread inside `ns`.
    pub fn start(ns: &str) -> Result<NsRuntime, TopologyError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let ns_name = ns.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("ns-{ns}"))
            .spawn(move || {
                let entered = enter(&ns_name).and_then(|()| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|source| TopologyError::Setns {
                            ns: ns_name.clone(),
                            source,
                        })
                });
                match entered {
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async {
                            let _ = stop_rx.await;
                        });
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|source| TopologyError::Setns {
                ns: ns.to_string(),
                source,
            })?;
        let handle = ready_rx.recv().map_err(|_| TopologyError::Setns {
            ns: ns.to_string(),
            source: std::io::Error::other("runtime thread exited"),
        })??;
        Ok(NsRuntime {
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Spawns work whose sockets belong to this namespace.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Moves the calling thread into network namespace `ns`.
fn enter(ns: &str) -> Result<(), TopologyError> {
    let err = |source| TopologyError::Setns {
        ns: ns.to_string(),
        source,
    };
    let f = File::open(format!("/run/netns/{ns}")).map_err(err)?;
    // SAFETY: setns(2) on an fd we own; affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(())
}
