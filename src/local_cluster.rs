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

use crate::admin::client::AdminClient;
use crate::admin::status::Status;

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
    /// The cluster did not elect a leader in time.
    #[error("no leader elected within {0:?}; see the node logs in the cluster directory")]
    NoLeader(Duration),
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
    crate::certs::write_file(path, &format!("{token}\n"), true)
        .map_err(io(format!("write {}", path.display())))?;
    Ok(token)
}

/// The TOML config of node `me` in a cluster of `nodes`; with `tls_dir`,
/// TLS with the certificates `otelraft certs` made there and `[auth]` with
/// the token files next to it.
pub fn node_config(
    me: &LocalNode,
    nodes: &[LocalNode],
    data_dir: &Path,
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
    if let Some(tls_dir) = tls_dir {
        let (cert, key) = crate::certs::node_files(tls_dir, me.id);
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

/// Sends SIGTERM so the node drains; SIGKILL after `grace`.
async fn stop(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid we spawned and still own.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// Starts the cluster in `dir`, prints its endpoints, and runs until Ctrl-C.
/// With `witness`, node 3 is a witness.
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
    let tls_dir = dir.join("tls");
    let client_tls = if tls {
        let missing: Vec<u64> = nodes
            .iter()
            .map(|n| n.id)
            .filter(|id| !crate::certs::node_files(&tls_dir, *id).0.exists())
            .collect();
        if !missing.is_empty() {
            crate::certs::generate(&crate::certs::CertsRequest {
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
    let mut children = Vec::new();
    for n in &nodes {
        let config_path = dir.join(format!("node{}.toml", n.id));
        let data_dir = dir.join(format!("node{}", n.id));
        let node_tls = tls.then_some(tls_dir.as_path());
        std::fs::write(&config_path, node_config(n, &nodes, &data_dir, node_tls))
            .map_err(io(format!("write {}", config_path.display())))?;
        let log_path = dir.join(format!("node{}.log", n.id));
        let log = std::fs::File::create(&log_path)
            .map_err(io(format!("create {}", log_path.display())))?;
        let err = log.try_clone().map_err(io("clone log handle"))?;
        let child = Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("start node {}", n.id)))?;
        children.push(child);
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
    let wait = Duration::from_secs(30);
    let deadline = Instant::now() + wait;
    let probe = AdminClient::with_tls(
        &format!("{scheme}://{}", nodes[0].addr(4480)),
        Duration::from_secs(5),
        client_tls.as_ref(),
    )
    .map_err(|e| LocalClusterError::Certs(e.to_string()))?
    .with_token(admin_token.as_deref());
    let leader = loop {
        let status: Result<Status, _> = probe.get_json("/admin/v1/status").await;
        if let Ok(Status {
            leader_id: Some(l), ..
        }) = status
        {
            break Some(l);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let Some(leader) = leader else {
        for c in &mut children {
            stop(c, Duration::from_secs(5)).await;
        }
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
    wait_for_signal().await;
    println!("stopping...");
    for c in &mut children {
        stop(c, Duration::from_secs(10)).await;
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
