//! The otelraft processes: one per node slot, each in its slot's namespace.
//!
//! A slot is a namespace and an address; a node is an id with a data
//! directory. They differ because membership changes retire ids for good: a
//! replaced node's slot is wiped and later hosts a node with a fresh id.
//!
//! Every node's peer port is reached through its slot's delaying proxy
//! (`<slot ip>:4401` → `127.0.0.1:4400` inside the slot), so the latency
//! fault applies to all Raft traffic into that node.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::topology::{ip, slot_host, slot_ns};

/// The proxy port every node advertises as its peer address.
pub const PEER_PROXY_PORT: u16 = 4401;

/// Why a node could not be started or changed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Files or the process could not be created.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The cluster did not reach the expected state in time.
    #[error("{0}")]
    Timeout(String),
}

impl NodeError {
    /// Whether trying again may help.
    #[allow(dead_code)] // the error contract; the harness reports every error as is
    pub fn retryable(&self) -> bool {
        matches!(self, NodeError::Timeout(_))
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeError {
    let what = what.into();
    move |source| NodeError::Io { what, source }
}

/// A member's role in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Holds and exports data.
    Data,
    /// Votes and keeps the log, nothing more.
    Witness,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Data => "data",
            Role::Witness => "witness",
        }
    }
}

/// One otelraft process and its files.
pub struct NodeProc {
    /// Node id.
    pub id: u64,
    /// Its role.
    pub role: Role,
    /// The slot (namespace) it lives in.
    pub slot: usize,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its config file.
    pub config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
    killed: bool,
}

impl NodeProc {
    /// Its address.
    pub fn ip(&self) -> Ipv4Addr {
        ip(slot_host(self.slot))
    }

    /// `http://<ip>:4480`.
    pub fn admin_url(&self) -> String {
        format!("http://{}:4480", self.ip())
    }

    /// Whether the process is running (paused counts as running).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Whether it is stopped with SIGSTOP.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Starts the process (a no-op if it runs).
    pub fn start(&mut self, otelraft: &Path, env: &[(String, String)]) -> Result<(), NodeError> {
        if self.is_running() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io(format!("open {}", self.log.display())))?;
        let err = log.try_clone().map_err(io("clone log handle"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &slot_ns(self.slot)])
            .arg(otelraft)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("OTELRAFT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io(format!("start node {}", self.id)))?;
        self.child = Some(child);
        self.paused = false;
        self.killed = false;
        Ok(())
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    /// Whether the last stop was the harness's own doing.
    pub fn killed_by_nemesis(&self) -> bool {
        self.killed
    }

    /// How the process ended, if it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        self.killed = true;
        self.signal(libc::SIGCONT);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    /// Whether its log contains `needle`.
    pub fn log_mentions(&self, needle: &str) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|t| t.contains(needle))
    }

    /// SIGTERM (the node drains), SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGTERM);
        let deadline = tokio::time::Instant::now() + grace;
        while self.is_running() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
    }

    /// SIGSTOP.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How every node is configured, apart from its id and slot.
pub struct NodeSettings {
    /// The otelraft binary.
    pub otelraft: PathBuf,
    /// Where node directories go.
    pub dir: PathBuf,
    /// `OTELRAFT_*` variables for every node (the S3 credentials).
    pub env: Vec<(String, String)>,
    /// Extra TOML appended to every config (sinks, archive).
    pub extra_toml: String,
}

/// A member of the initial membership: id, slot, role.
pub type InitialMember = (u64, usize, Role);

impl NodeSettings {
    /// Writes the config of node `id` in `slot` and returns the process
    /// handle (not started). `members` is written only when `bootstrap`.
    pub fn create(
        &self,
        id: u64,
        slot: usize,
        role: Role,
        bootstrap: bool,
        members: &[InitialMember],
    ) -> Result<NodeProc, NodeError> {
        let dir = self.dir.join(format!("node{id}"));
        std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
        let data_dir = dir.join("data");
        let config = dir.join("node.toml");
        let ip = ip(slot_host(slot));
        let mut toml = format!(
            "node_id = {id}\nrole = \"{role}\"\ndata_dir = {data:?}\n\n\
             [listen]\notlp_grpc = \"{ip}:4317\"\notlp_http = \"{ip}:4318\"\n\
             peer = \"127.0.0.1:4400\"\nadmin = \"{ip}:4480\"\n\n\
             [advertise]\npeer = \"{ip}:{PEER_PROXY_PORT}\"\nadmin = \"{ip}:4480\"\n\n\
             [raft]\nheartbeat_interval_ms = 100\nelection_timeout_min_ms = 600\n\
             election_timeout_max_ms = 1200\nsnapshot_every_entries = 400\nlog_keep_entries = 100\n\n\
             [ingest]\ncommit_timeout_ms = 5000\n\n\
             [cluster]\nbootstrap = {bootstrap}\n",
            role = role.as_str(),
            data = data_dir.display().to_string(),
        );
        if bootstrap {
            for (mid, mslot, mrole) in members {
                let mip = crate::topology::ip(slot_host(*mslot));
                toml.push_str(&format!(
                    "\n[[cluster.initial_members]]\nid = {mid}\npeer_addr = \"{mip}:{PEER_PROXY_PORT}\"\nadmin_addr = \"{mip}:4480\"\nrole = \"{}\"\n",
                    mrole.as_str()
                ));
            }
        }
        toml.push('\n');
        toml.push_str(&self.extra_toml);
        std::fs::write(&config, toml).map_err(io(format!("write {}", config.display())))?;
        Ok(NodeProc {
            id,
            role,
            slot,
            data_dir,
            config,
            log: dir.join("node.log"),
            child: None,
            paused: false,
            killed: false,
        })
    }
}

/// The status document of the node at `admin_url`, if it answers in time.
pub async fn status(http: &reqwest::Client, admin_url: &str) -> Option<Value> {
    let resp = http
        .get(format!("{admin_url}/admin/v1/status"))
        .timeout(Duration::from_millis(1500))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}
