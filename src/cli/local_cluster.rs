//! `otelraft local-cluster`: three nodes on 127.0.0.1-3 as separate
//! processes, with embedded defaults. Each node listens on the standard OTLP
//! ports of its own loopback address, so `127.0.0.2:4318` is node 2's OTLP
//! HTTP endpoint. Ctrl-C stops all three. With `--witness`, node 3 is a
//! witness: the 2 + witness deployment. With `--tls`, a development CA and
//! node certificates are made in `DIR/tls`, every listener runs TLS, and
//! the OTLP ports and the admin API need the tokens in `DIR/ingest.token`
//! and `DIR/admin.token`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::admin::status::Status;
use crate::peer::admin_client::AdminClient;

/// Why the local cluster could not run.
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    /// Files or processes could not be created.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificates for `--tls` could not be made or read.
    #[error("certificates: {0}")]
    Certs(String),
    /// Another process holds an address the cluster needs.
    #[error("node {node}'s {what} address {addr} {}", bind_problem(source))]
    PortTaken {
        /// The node that would bind it.
        node: u64,
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: String,
        /// The bind error.
        source: std::io::Error,
    },
    /// A node exited while the cluster was running.
    #[error("node {id} exited ({status}); see {}", log.display())]
    NodeExited {
        /// The node.
        id: u64,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
    },
    /// The cluster did not elect a leader in time.
    #[error("no leader elected within {0:?}; see the node logs in the cluster directory")]
    NoLeader(Duration),
}

fn bind_problem(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        format!("is taken ({e}); stop what holds it, or use the nodes already running")
    } else {
        format!("cannot be bound ({e}); local-cluster needs 127.0.0.1-3 on the loopback interface")
    }
}

impl LocalClusterError {
    /// Whether running again may help.
    pub fn retryable(&self) -> bool {
        matches!(self, LocalClusterError::NoLeader(_))
    }
}

/// Addresses of local node `i` (1-based).
pub struct LocalNode {
    /// Node id.
    pub id: u64,
    /// Loopback address it binds.
    pub ip: String,
    /// Its role.
    pub role: crate::raft::Role,
}

impl LocalNode {
    fn addr(&self, port: u16) -> String {
        format!("{}:{port}", self.ip)
    }
}

/// Where `--tls` keeps the ingest token, in the cluster directory.
pub const INGEST_TOKEN_FILE: &str = "ingest.token";
/// Where `--tls` keeps the admin token, in the cluster directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Writes a new random token to `path` (owner-only) unless it exists;
/// returns the token.
fn ensure_token(path: &Path) -> Result<String, LocalClusterError> {
    if let Ok(token) = crate::auth::first_token_in(path) {
        return Ok(token);
    }
    let token = hex::encode(rand::random::<[u8; 24]>());
    crate::cli::certs::write_file(path, &format!("{token}\n"), true)
        .map_err(io(format!("write {}", path.display())))?;
    Ok(token)
}

/// The TOML config of node `me` in a cluster of `nodes`, archiving into
/// `archive_dir`, which every node shares; with `tls_dir`, TLS with the
/// certificates `otelraft certs` made there and `[auth]` with the token
/// files next to it.
pub fn node_config(
    me: &LocalNode,
    nodes: &[LocalNode],
    data_dir: &Path,
    archive_dir: &Path,
    tls_dir: Option<&Path>,
) -> String {
    let mut s = format!(
        "node_id = {}\nrole = \"{}\"\ndata_dir = {:?}\n\n[listen]\notlp_grpc = \"{}\"\notlp_http = \"{}\"\npeer = \"{}\"\nadmin = \"{}\"\n\n[cluster]\nbootstrap = {}\n",
        me.id,
        me.role,
        data_dir.display().to_string(),
        me.addr(4317),
        me.addr(4318),
        me.addr(4400),
        me.addr(4480),
        me.id == 1,
    );
    for n in nodes {
        s.push_str(&format!(
            "\n[[cluster.initial_members]]\nid = {}\npeer_addr = \"{}\"\nadmin_addr = \"{}\"\nrole = \"{}\"\n",
            n.id,
            n.addr(4400),
            n.addr(4480),
            n.role
        ));
    }
    s.push_str(&format!(
        "\n[archive]\ndir = {:?}\n",
        archive_dir.display().to_string()
    ));
    if let Some(tls_dir) = tls_dir {
        let (cert, key) = crate::cli::certs::node_files(tls_dir, me.id);
        let dir = tls_dir.parent().unwrap_or(tls_dir);
        s.push_str(&format!(
            "\n[tls]\nenabled = true\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n\n[auth]\nenabled = true\ningest_tokens_file = {:?}\nadmin_tokens_file = {:?}\n",
            cert.display().to_string(),
            key.display().to_string(),
            tls_dir.join("ca.pem").display().to_string(),
            dir.join(INGEST_TOKEN_FILE).display().to_string(),
            dir.join(ADMIN_TOKEN_FILE).display().to_string(),
        ));
    }
    s
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalClusterError {
    let what = what.into();
    move |source| LocalClusterError::Io { what, source }
}

/// How long the nodes get to drain and close their databases after Ctrl-C
/// before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How many of a failed node's last log lines are printed.
const LOG_TAIL_LINES: usize = 20;

/// One node process.
struct Running {
    id: u64,
    child: Child,
    log: PathBuf,
}

/// Refuses to start when another process holds one of the cluster's
/// addresses, naming the node and the address: a node that fails to bind
/// would otherwise leave the others waiting for it.
fn check_ports_free(nodes: &[LocalNode]) -> Result<(), LocalClusterError> {
    for n in nodes {
        for (what, port) in [
            ("OTLP gRPC", 4317),
            ("OTLP HTTP", 4318),
            ("peer", 4400),
            ("admin", 4480),
        ] {
            let addr = n.addr(port);
            if let Err(source) = std::net::TcpListener::bind(&addr) {
                return Err(LocalClusterError::PortTaken {
                    node: n.id,
                    what,
                    addr,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// The last `LOG_TAIL_LINES` lines of a node's log (read from its last
/// 64 KiB).
fn log_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let len = file.metadata().map_or(0, |m| m.len());
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 << 10)));
        let _ = file.read_to_end(&mut bytes);
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Resolves when the first node exits, with its id and exit status.
async fn first_exit(nodes: &mut [Running]) -> (u64, std::io::Result<std::process::ExitStatus>) {
    let waits = nodes.iter_mut().map(|n| {
        let id = n.id;
        Box::pin(async move { (id, n.child.wait().await) })
    });
    futures::future::select_all(waits).await.0
}

/// How a node ended, when it was stopped on purpose: a clean exit (it was
/// sent SIGTERM and drained) or a kill from outside (a failover test).
/// A non-zero exit or a crash is a failure.
fn stopped_on_purpose(status: &std::io::Result<std::process::ExitStatus>) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let status = status.as_ref().ok()?;
    match status.signal() {
        Some(libc::SIGKILL | libc::SIGTERM | libc::SIGINT) => Some(status.to_string()),
        Some(_) => None,
        None => status.success().then(|| "stopped cleanly".to_string()),
    }
}

fn signal(child: &Child, signal: libc::c_int) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on a child we spawned and have not yet reaped.
        unsafe {
            libc::kill(pid as libc::pid_t, signal);
        }
    }
}

/// The signals that stop the cluster, listened to from before the first
/// node starts until the last one is gone, so none is missed between two
/// waits. SIGHUP counts too: a closed terminal must not leave nodes behind.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> Result<StopSignals, LocalClusterError> {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind| signal(kind).map_err(io("listen for signals"));
        Ok(StopSignals {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            hangup: listen(SignalKind::hangup())?,
        })
    }

    /// Resolves at the next stop signal.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }
}

/// Stops every node at once: SIGTERM (each drains and closes its database
/// cleanly), then SIGKILL for those still running after `STOP_GRACE` or at
/// a second stop signal. Returns how long it took.
async fn stop_all(nodes: &mut [Running], signals: &mut StopSignals) -> Duration {
    let started = Instant::now();
    for n in nodes.iter() {
        signal(&n.child, libc::SIGTERM);
    }
    let all_exited = futures::future::join_all(nodes.iter_mut().map(|n| n.child.wait()));
    tokio::select! {
        _ = all_exited => {}
        _ = tokio::time::sleep(STOP_GRACE) => {
            eprintln!("nodes still running after {STOP_GRACE:?}: killing them");
        }
        _ = signals.next() => eprintln!("second interrupt: killing the nodes"),
    }
    for n in nodes.iter_mut() {
        let _ = n.child.start_kill();
        let _ = n.child.wait().await;
    }
    started.elapsed()
}

/// A node exited while the cluster should be running: prints its last log
/// lines, stops the others and returns the error.
async fn node_failed(
    nodes: &mut [Running],
    signals: &mut StopSignals,
    id: u64,
    status: std::io::Result<std::process::ExitStatus>,
) -> LocalClusterError {
    let status = match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("unknown status ({e})"),
    };
    let log = nodes
        .iter()
        .find(|n| n.id == id)
        .map(|n| n.log.clone())
        .unwrap_or_default();
    eprintln!(
        "node {id} exited ({status}); the last lines of {}:\n{}",
        log.display(),
        log_tail(&log)
    );
    eprintln!("stopping the other nodes");
    stop_all(nodes, signals).await;
    LocalClusterError::NodeExited { id, status, log }
}

/// Starts the cluster in `dir`, prints its endpoints, and runs until Ctrl-C.
/// With `witness`, node 3 is a witness. Every node archives into one
/// directory, `DIR/archive`, so whichever node leads writes the same
/// archive.
pub async fn run(dir: PathBuf, witness: bool, tls: bool) -> Result<(), LocalClusterError> {
    std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
    let dir = dir
        .canonicalize()
        .map_err(io(format!("resolve {}", dir.display())))?;
    let exe = std::env::current_exe().map_err(io("find the otelraft binary"))?;
    let nodes: Vec<LocalNode> = (1..=3)
        .map(|id| LocalNode {
            id,
            ip: format!("127.0.0.{id}"),
            role: if witness && id == 3 {
                crate::raft::Role::Witness
            } else {
                crate::raft::Role::Data
            },
        })
        .collect();
    check_ports_free(&nodes)?;
    let tls_dir = dir.join("tls");
    let client_tls = if tls {
        let missing: Vec<u64> = nodes
            .iter()
            .map(|n| n.id)
            .filter(|id| !crate::cli::certs::node_files(&tls_dir, *id).0.exists())
            .collect();
        if !missing.is_empty() {
            crate::cli::certs::generate(&crate::cli::certs::CertsRequest {
                dir: tls_dir.clone(),
                nodes: missing,
                hosts: Vec::new(),
                days: 365,
                force: false,
            })
            .map_err(|e| LocalClusterError::Certs(e.to_string()))?;
        }
        ensure_token(&dir.join(INGEST_TOKEN_FILE))?;
        Some(
            crate::tls::ClientTls::from_files(&tls_dir.join("ca.pem"), None)
                .map_err(|e| LocalClusterError::Certs(e.to_string()))?,
        )
    } else {
        None
    };
    let admin_token = if tls {
        Some(ensure_token(&dir.join(ADMIN_TOKEN_FILE))?)
    } else {
        None
    };
    let scheme = if tls { "https" } else { "http" };
    let archive_dir = dir.join("archive");
    let mut signals = StopSignals::new()?;
    let mut running = Vec::new();
    for n in &nodes {
        let config_path = dir.join(format!("node{}.toml", n.id));
        let data_dir = dir.join(format!("node{}", n.id));
        let node_tls = tls.then_some(tls_dir.as_path());
        std::fs::write(
            &config_path,
            node_config(n, &nodes, &data_dir, &archive_dir, node_tls),
        )
        .map_err(io(format!("write {}", config_path.display())))?;
        let log_path = dir.join(format!("node{}.log", n.id));
        let log = std::fs::File::create(&log_path)
            .map_err(io(format!("create {}", log_path.display())))?;
        let err = log.try_clone().map_err(io("clone log handle"))?;
        // Each node gets a process group of its own, so a Ctrl-C at the
        // terminal reaches only this process, which then stops the nodes
        // together (and a second Ctrl-C kills them). Should this process
        // die without stopping them, the kernel sends each SIGTERM.
        let mut command = Command::new(&exe);
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: prctl(2) is async-signal-safe and touches only the child.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(io(format!("start node {}", n.id)));
        match child {
            Ok(child) => running.push(Running {
                id: n.id,
                child,
                log: log_path,
            }),
            Err(e) => {
                stop_all(&mut running, &mut signals).await;
                return Err(e);
            }
        }
    }
    println!("otelraft local cluster in {}", dir.display());
    for n in &nodes {
        println!(
            "  node {} ({}): OTLP gRPC {}  OTLP HTTP {scheme}://{}  admin {scheme}://{}  log {}/node{}.log",
            n.id,
            n.role,
            n.addr(4317),
            n.addr(4318),
            n.addr(4480),
            dir.display(),
            n.id
        );
    }
    println!(
        "  archive (shared by every node): {}",
        archive_dir.display()
    );
    let wait = Duration::from_secs(30);
    let probes = nodes
        .iter()
        .map(|n| {
            AdminClient::with_tls(
                &format!("{scheme}://{}", n.addr(4480)),
                Duration::from_secs(2),
                client_tls.as_ref(),
            )
            .map(|c| c.with_token(admin_token.as_deref()))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LocalClusterError::Certs(e.to_string()));
    let probes = match probes {
        Ok(p) => p,
        Err(e) => {
            stop_all(&mut running, &mut signals).await;
            return Err(e);
        }
    };
    let find_leader = async {
        loop {
            for probe in &probes {
                let status: Result<Status, _> = probe.get_json("/admin/v1/status").await;
                if let Ok(Status {
                    leader_id: Some(l), ..
                }) = status
                {
                    return l;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let leader = tokio::select! {
        leader = tokio::time::timeout(wait, find_leader) => leader,
        (id, status) = first_exit(&mut running) => {
            return Err(node_failed(&mut running, &mut signals, id, status).await);
        }
        _ = signals.next() => {
            println!("stopping...");
            let took = stop_all(&mut running, &mut signals).await;
            println!("stopped in {:.1} s", took.as_secs_f64());
            return Ok(());
        }
    };
    let Ok(leader) = leader else {
        stop_all(&mut running, &mut signals).await;
        return Err(LocalClusterError::NoLeader(wait));
    };
    if tls {
        println!(
            "leader: node {leader}. Try: otelraft admin --endpoint https://127.0.0.1:4480 --ca {} --token-file {} status",
            tls_dir.join("ca.pem").display(),
            dir.join(ADMIN_TOKEN_FILE).display()
        );
        println!(
            "OTLP clients: CA {}, header \"Authorization: Bearer <the token in {}>\"",
            tls_dir.join("ca.pem").display(),
            dir.join(INGEST_TOKEN_FILE).display()
        );
    } else {
        println!(
            "leader: node {leader}. Try: otelraft admin --endpoint http://127.0.0.1:4480 status"
        );
    }
    println!("Press Ctrl-C to stop all nodes.");
    while !running.is_empty() {
        tokio::select! {
            _ = signals.next() => break,
            (id, status) = first_exit(&mut running) => {
                if let Some(how) = stopped_on_purpose(&status) {
                    // Someone killed it on purpose (a failover test): the
                    // others go on, as a cluster would.
                    let config = dir.join(format!("node{id}.toml"));
                    println!(
                        "node {id} ended ({how}); the others keep running. \
                         Restart it with: {} serve --config {}",
                        exe.display(),
                        config.display()
                    );
                    running.retain(|n| n.id != id);
                    continue;
                }
                return Err(node_failed(&mut running, &mut signals, id, status).await);
            }
        }
    }
    if running.is_empty() {
        println!("every node has ended");
        return Ok(());
    }
    println!("stopping...");
    let took = stop_all(&mut running, &mut signals).await;
    println!("stopped in {:.1} s", took.as_secs_f64());
    Ok(())
}
