//! The node core: Raft over the redb store, the peer clients, the config
//! and the metrics, and the queries every duty asks (who leads, with a
//! lease; propose; barrier). It knows no duty: the drain, the witness, the
//! trimmer, join, export and archive each own their state and see the node
//! from above (`docs/architecture.md`).
//!
//! # Layout
//!
//! - [`gate`]: admission (for a node that joins) and draining, and the
//!   requests between acceptance and answer.
//! - [`submit`]: the submit path ingest calls (`IngestHandler`).
//! - [`readiness`]: whether this node can do its job now.
//! - [`membership`]: membership changes and leadership hand-off, the
//!   domain logic that the admin API and the drain call.
//! - [`handover`]: the 2 + witness hazard's way out.
//! - [`LeaderHandle`]: what a leader-only duty (export, archive) needs
//!   from the node, as a trait a test can implement.

pub mod gate;
pub mod handover;
mod leader;
pub mod membership;
mod readiness;
pub mod submit;

pub use gate::{Gate, InFlight};
pub use leader::LeaderHandle;
pub use submit::Submitter;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::errors::{ClientWriteError, RaftError};
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::Instant as _;
use openraft::{RaftMetrics, ServerState, SnapshotPolicy};

use crate::config::{Material, NodeConfig};
use crate::metrics::{self, Metrics};
use crate::pb::log::Command;
use crate::peer::client::{PeerClients, PeerSettings};
use crate::peer::network::NetworkFactory;
use crate::raft::{Member, NodeId, Role, TypeConfig};
use crate::state::SmState;
use crate::store::{self, LogStore, StateMachineStore};

/// Why a node could not start. Start-up errors are not retryable by the
/// process itself; the operator (or systemd) decides.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Storage failed to open.
    #[error("storage: {0}")]
    Store(#[from] store::StoreError),
    /// openraft refused the configuration or failed fatally.
    #[error("raft: {0}")]
    Raft(String),
    /// A listener could not be bound.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `otelraft restore` did not finish on this data directory.
    #[error("{} exists: an `otelraft restore` into this data directory did not finish; delete the directory's database and that file, and run restore again", path.display())]
    RestoreUnfinished {
        /// The marker file.
        path: std::path::PathBuf,
    },
    /// The files the configuration names (TLS, tokens, secrets) could not
    /// be used.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// A server stopped with an error.
    #[error("{what} server failed: {message}")]
    Server {
        /// Which server.
        what: &'static str,
        /// Its error.
        message: String,
    },
}

/// The openraft handle over this node's store.
pub type Raft = openraft::Raft<TypeConfig, StateMachineStore>;

/// Why a proposal did not go through. Only `NotLeader` proves that
/// nothing was proposed; after `Unknown` the entry may yet commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// This node does not lead; `leader` is the one it knows, if any.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows.
        leader: Option<NodeId>,
    },
    /// The proposal may or may not commit: it timed out, or Raft failed
    /// after taking it.
    #[error("outcome unknown: {0}; the entry may or may not be committed")]
    Unknown(String),
    /// Raft has stopped on this node.
    #[error("raft stopped: {0}")]
    Stopped(String),
}

impl NodeError {
    /// Start-up failures need an operator.
    pub fn retryable(&self) -> bool {
        matches!(self, NodeError::Bind { .. })
    }
}

/// One member of the cluster.
pub struct Node {
    config: NodeConfig,
    raft: Raft,
    log: LogStore,
    sm: StateMachineStore,
    clients: PeerClients,
    /// How this node calls other members' admin APIs (`None`: plaintext).
    client_tls: std::sync::RwLock<Option<crate::tls::ClientTls>>,
    /// The ingest and admin tokens (`None`: `[auth]` is off).
    tokens: Option<Arc<crate::auth::Tokens>>,
    metrics: Arc<Metrics>,
    /// Admission, draining and the requests in progress.
    gate: Gate,
    /// When an append from a leader last succeeded here (ms since `started`,
    /// plus one; 0 = never). A follower is ready only while this is fresh.
    leader_contact: AtomicU64,
    started: Instant,
    /// The membership operation running on this node (as leader), if any:
    /// operations run one at a time (see `membership`).
    membership_op: std::sync::Mutex<Option<(String, Instant)>>,
}

/// The openraft settings derived from ours.
fn raft_config(c: &NodeConfig) -> Result<openraft::Config, NodeError> {
    let r = &c.raft;
    let witness = c.role == Role::Witness;
    let config = openraft::Config {
        // A witness never campaigns on its own; only the documented
        // hand-over (`admin witness-handover`) makes it a candidate.
        enable_elect: !witness,
        cluster_name: "otelraft".to_string(),
        heartbeat_interval: r.heartbeat_interval_ms,
        election_timeout_min: r.election_timeout_min_ms,
        election_timeout_max: r.election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_every_entries),
        // Raft's own log may be purged behind snapshots: the rows the sinks
        // and the archive still need are retained apart from it (see
        // `store::tables::LOG`) and travel with snapshots.
        //
        // A witness purges only on its own schedule (`witness::run`), behind
        // every data voter, so as a temporary leader it can always replicate
        // from its log instead of needing a snapshot.
        max_in_snapshot_log_to_keep: if witness {
            u64::MAX
        } else {
            r.log_keep_entries
        },
        purge_batch_size: 1,
        max_payload_entries: r.max_entries_per_append,
        install_snapshot_timeout: c.peer.rpc_timeout_ms.max(10_000),
        ..Default::default()
    };
    config
        .validate()
        .map_err(|e| NodeError::Raft(e.to_string()))
}

impl Node {
    /// Opens storage and starts Raft. Listeners are started by `serve`.
    /// `material`: the TLS the node presents when it calls other members
    /// (from the same files `server::run` serves with) and the tokens, as
    /// loaded once at start-up.
    pub async fn open(
        config: NodeConfig,
        metrics: Arc<Metrics>,
        material: &Material,
    ) -> Result<Arc<Node>, NodeError> {
        let client_tls = material.client_tls.clone();
        let tokens = material.tokens.clone();
        store::durable_dir::create(&config.data_dir)
            .map_err(|e| NodeError::Store(store::StoreError::from(e)))?;
        let marker = config.data_dir.join(store::RESTORING_FILE);
        if marker.exists() {
            return Err(NodeError::RestoreUnfinished { path: marker });
        }
        let (log, sm) =
            store::open_with_cache(&config.data_dir, metrics.clone(), config.db_cache_bytes())
                .await?;
        let clients = PeerClients::new(
            PeerSettings {
                connect_timeout: Duration::from_millis(config.peer.connect_timeout_ms),
                rpc_timeout: Duration::from_millis(config.peer.rpc_timeout_ms),
                max_message_bytes: config.peer.max_message_bytes,
                max_append_bytes: config.peer.max_append_bytes,
            },
            client_tls.clone(),
        );
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config(&config)?),
            NetworkFactory::new(clients.clone(), log.clone(), config.role != Role::Witness),
            log.clone(),
            sm.clone(),
        )
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        metrics
            .log_budget_bytes
            .set(i64::try_from(config.raft.max_log_bytes).unwrap_or(i64::MAX));
        let empty = !raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let gate = Gate::new(!empty || config.cluster.join.is_empty());
        Ok(Arc::new(Node {
            gate,
            config,
            raft,
            log,
            sm,
            clients,
            client_tls: std::sync::RwLock::new(client_tls),
            tokens,
            metrics,
            leader_contact: AtomicU64::new(0),
            started: Instant::now(),
            membership_op: std::sync::Mutex::new(None),
        }))
    }

    /// Whether this node is configured as a witness.
    pub fn is_witness(&self) -> bool {
        self.config.role == Role::Witness
    }

    /// Records that a leader's append just succeeded here.
    pub fn note_leader_contact(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.leader_contact.store(ms + 1, Ordering::Relaxed);
    }

    /// How long ago a leader's append last succeeded here.
    pub fn since_leader_contact(&self) -> Option<Duration> {
        let at = self.leader_contact.load(Ordering::Relaxed).checked_sub(1)?;
        Some(
            self.started
                .elapsed()
                .saturating_sub(Duration::from_millis(at)),
        )
    }

    /// Whether a leader's append reached this node within twice the
    /// maximum election timeout: a leader was alive a moment ago.
    pub fn has_recent_leader_contact(&self) -> bool {
        let fresh = Duration::from_millis(self.config.raft.election_timeout_max_ms * 2);
        self.since_leader_contact().is_some_and(|d| d <= fresh)
    }

    /// The members (voters and learners) the leader heard from within the
    /// maximum election timeout, itself included; `None` when this node
    /// does not lead.
    pub fn reachable_members(&self) -> Option<std::collections::BTreeSet<NodeId>> {
        let m = self.raft_metrics();
        let acks = m.heartbeat.as_ref()?;
        let recent = Duration::from_millis(self.config.raft.election_timeout_max_ms);
        Some(
            m.membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .filter(|id| {
                    *id == self.id()
                        || acks
                            .get(id)
                            .and_then(|at| at.as_ref())
                            .is_some_and(|at| at.elapsed() < recent)
                })
                .collect(),
        )
    }

    /// A copy of openraft's current metrics (role, term, indexes, membership).
    pub fn raft_metrics(&self) -> RaftMetrics<crate::raft::TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.node_id
    }

    /// The openraft handle (peer service and admin use it).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The log store, for inspection.
    pub fn log_store(&self) -> &LogStore {
        &self.log
    }

    /// A copy of the applied state machine contents (series marks shared),
    /// for status reports.
    pub fn state(&self) -> SmState {
        self.sm.view()
    }

    /// `f` of the applied state, read under its lock without copying the
    /// rest; what loops use.
    pub fn read_state<R>(&self, f: impl FnOnce(&SmState) -> R) -> R {
        self.sm.read(f)
    }

    /// Shared metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The peer channel pool.
    pub fn peers(&self) -> &PeerClients {
        &self.clients
    }

    /// A client for another member's admin API at `addr` (host:port), over
    /// TLS with this node's certificate when the cluster runs TLS.
    pub fn admin_client(
        &self,
        addr: &str,
        timeout: Duration,
    ) -> Result<crate::peer::admin_client::AdminClient, crate::peer::admin_client::ClientError>
    {
        let authorization = self.tokens.as_ref().and_then(|t| t.member_authorization());
        let tls = self
            .client_tls
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        crate::peer::admin_client::AdminClient::for_member(
            addr,
            timeout,
            tls.as_ref(),
            authorization,
        )
    }

    /// Calls other members with `tls` from now on (a reloaded certificate).
    pub fn set_client_tls(&self, tls: crate::tls::ClientTls) {
        self.clients.set_tls(tls.clone());
        *self
            .client_tls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tls);
    }

    /// The token sets, when `[auth]` is on.
    pub fn tokens(&self) -> Option<&Arc<crate::auth::Tokens>> {
        self.tokens.as_ref()
    }

    /// Whether `id` is in this node's membership (voter or learner), or
    /// this node has no membership yet (it is joining and must hear from
    /// whoever leads).
    pub fn knows_member(&self, id: NodeId) -> bool {
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        let membership = m.membership_config.membership();
        membership.nodes().next().is_none() || membership.get_node(&id).is_some()
    }

    /// Whether node `id` was removed from the cluster.
    pub fn is_retired(&self, id: NodeId) -> bool {
        self.sm.is_retired(id)
    }

    /// Whether `last` (a candidate's last log id) is newer than this node's
    /// own last log id.
    pub async fn log_is_newer(&self, last: Option<&crate::raft::LogId>) -> Result<bool, NodeError> {
        use openraft::storage::RaftLogStorage;
        let mut log = self.log.clone();
        let state = log
            .get_log_state()
            .await
            .map_err(|e| NodeError::Raft(format!("reading the log state: {e}")))?;
        Ok(last > state.last_log_id.as_ref())
    }

    /// Whether the cluster runs TLS (and members authenticate each other).
    pub fn tls_enabled(&self) -> bool {
        self.config.tls.enabled
    }

    /// What this node describes itself as in a membership.
    pub fn member(&self) -> Member {
        Member {
            peer_addr: self.config.advertise.peer.clone(),
            admin_addr: self.config.advertise.admin.clone(),
            role: self.config.role,
        }
    }

    /// Admission, draining and the requests in progress.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Whether this node is the Raft leader now.
    pub fn is_leader(&self) -> bool {
        self.raft_metrics().state == ServerState::Leader
    }

    /// Becomes `Some(clean)` once storage has closed, after the node and
    /// every task holding it are gone (see `server::run`).
    pub fn storage_closed(&self) -> tokio::sync::watch::Receiver<Option<bool>> {
        self.log.closed()
    }

    /// The leader this node currently knows, with its address.
    pub fn leader(&self) -> Option<(NodeId, Member)> {
        // Borrowed, not cloned: this runs on every request.
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        let id = m.current_leader?;
        let member = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, member))
    }

    /// Initialises a new cluster with `members` as voters, when
    /// `cluster.bootstrap` is set and storage is empty. Idempotent across
    /// restarts: an initialised node does nothing.
    ///
    /// With `cluster.join` set the decision is `join::run`'s, which first
    /// makes sure no listed member holds a cluster already.
    pub async fn bootstrap_if_configured(&self) -> Result<(), NodeError> {
        if !self.config.cluster.bootstrap || !self.config.cluster.join.is_empty() {
            return Ok(());
        }
        self.bootstrap_now().await
    }

    /// Initialises a new cluster with `cluster.initial_members` unless this
    /// node's storage already holds one.
    pub async fn bootstrap_now(&self) -> Result<(), NodeError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        let members = members_map(&self.config.cluster.initial_members);
        tracing::info!(node_id = self.id(), voters = ?members.keys().collect::<Vec<_>>(), "bootstrapping cluster");
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another start already initialised it: fine.
            Err(RaftError::APIError(e)) => {
                tracing::info!(error = %e, "bootstrap skipped");
                Ok(())
            }
            Err(e) => Err(NodeError::Raft(e.to_string())),
        }
    }

    /// Proposes `command` on this node, which must lead; resolves once it
    /// is committed and applied here. Never forwarded: a follower's client
    /// write goes through `submit`, which forwards before proposing.
    pub async fn propose(&self, command: Command) -> Result<u64, ProposeError> {
        let timeout = Duration::from_millis(self.config.ingest.commit_timeout_ms);
        match tokio::time::timeout(timeout, self.raft.client_write(command)).await {
            Ok(Ok(resp)) => Ok(resp.log_id.index),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(ProposeError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Ok(Err(RaftError::Fatal(e))) => Err(ProposeError::Stopped(e.to_string())),
            Ok(Err(e)) => Err(ProposeError::Unknown(format!("raft write failed: {e}"))),
            Err(_) => Err(ProposeError::Unknown(format!(
                "not committed within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// Resolves with the term once this node leads; `None` once Raft has
    /// stopped. The leader-only tasks (exporters, archiver) start here.
    pub async fn wait_for_leadership(&self) -> Option<u64> {
        let mut rx = self.raft.metrics();
        loop {
            {
                let m = rx.borrow_watched();
                if m.running_state.is_err() {
                    return None;
                }
                if m.state == ServerState::Leader {
                    return Some(m.current_term);
                }
            }
            rx.changed().await.ok()?;
        }
    }

    /// Waits until everything committed before this call is applied here
    /// (a ReadIndex barrier). A new leader runs it before acting on the
    /// replicated state, so it sees every earlier leader's records.
    pub async fn barrier(&self) -> Result<(), ProposeError> {
        let read = self
            .raft
            .ensure_linearizable(openraft::ReadPolicy::ReadIndex)
            .await
            .map_err(|e| match e {
                RaftError::APIError(openraft::errors::LinearizableReadError::ForwardToLeader(
                    f,
                )) => ProposeError::NotLeader {
                    leader: f.leader_id,
                },
                RaftError::Fatal(e) => ProposeError::Stopped(e.to_string()),
                other => ProposeError::Unknown(other.to_string()),
            })?;
        let want = read.index();
        let mut rx = self.raft.metrics();
        loop {
            if rx.borrow_watched().last_applied.map_or(0, |l| l.index) >= want {
                return Ok(());
            }
            rx.changed()
                .await
                .map_err(|_| ProposeError::Stopped("raft stopped".to_string()))?;
        }
    }

    /// True while this node leads `term` and a quorum acknowledged it
    /// within the minimum election timeout: no other node can have become
    /// leader since. Exporters check it before each send.
    pub fn leads_with_lease(&self, term: u64) -> bool {
        let m = self.raft_metrics();
        if m.state != ServerState::Leader || m.current_term != term {
            return false;
        }
        let lease = Duration::from_millis(self.config.raft.election_timeout_min_ms);
        let single_voter = m.membership_config.membership().voter_ids().count() == 1;
        single_voter
            || m.last_quorum_acked
                .as_ref()
                .is_some_and(|at| at.elapsed() < lease)
    }

    /// Mirrors Raft state into the metrics gauges until Raft shuts down.
    pub async fn publish_raft_metrics(self: Arc<Self>) {
        let mut rx = self.raft.metrics();
        loop {
            {
                let m = rx.borrow_and_update();
                self.metrics.raft_term.set(m.current_term as i64);
                self.metrics
                    .raft_leader_id
                    .set(m.current_leader.map_or(-1, |l| l as i64));
                self.metrics
                    .raft_is_leader
                    .set(i64::from(m.state == ServerState::Leader));
                self.metrics
                    .raft_commit_index
                    .set(m.local_committed.map_or(0, |l| l.index) as i64);
                self.metrics
                    .raft_applied_index
                    .set(m.last_applied.map_or(0, |l| l.index) as i64);
                self.metrics.raft_replication_lag_entries.clear();
                if let Some(repl) = &m.replication {
                    let last = m.last_log_index.unwrap_or(0);
                    for (peer, matched) in repl.iter() {
                        let lag = last.saturating_sub(matched.as_ref().map_or(0, |l| l.index));
                        self.metrics
                            .raft_replication_lag_entries
                            .get_or_create(&metrics::PeerLabels {
                                peer: peer.to_string(),
                            })
                            .set(lag as i64);
                    }
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The membership map openraft takes, from configured or requested members.
pub fn members_map(members: &[crate::config::InitialMember]) -> BTreeMap<NodeId, Member> {
    members
        .iter()
        .map(|m| {
            (
                m.id,
                Member {
                    peer_addr: m.peer_addr.clone(),
                    admin_addr: m.admin_addr.clone(),
                    role: m.role,
                },
            )
        })
        .collect()
}
