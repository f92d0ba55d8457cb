//! A running member: Raft over the redb store, the submit path ingest calls,
//! and the queries admin needs.
//!
//! The submit path is where "acknowledge only after commit" is enforced: a
//! request resolves with a `Receipt` only when `client_write` on the leader
//! has returned, which openraft does after the entry is committed (durable on
//! a quorum) and applied. Concurrent requests become concurrent
//! `client_write`s; openraft batches them into one append, and the store's
//! single writer turns each append into one fsync.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::errors::{ClientWriteError, RaftError};
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::Instant as _;
use openraft::{RaftMetrics, ServerState, SnapshotPolicy};
use tokio::sync::Semaphore;

use crate::config::NodeConfig;
use crate::drain::{DrainReport, InFlight};
use crate::ingest::{IngestHandler, Receipt, SubmitError, SubmitFuture};
use crate::metrics::{self, Metrics};
use crate::pb::log::{command::Kind, Command, IngestRequest};
use crate::raft::network::{NetworkFactory, PeerClients, PeerError, PeerSettings};
use crate::raft::{Member, NodeId, Raft, Role};
use crate::store::{self, LogStore, SmState, StateMachineStore};

/// How long to wait between looks for a leader while a request waits.
const LEADER_POLL: Duration = Duration::from_millis(50);

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
    /// The token settings could not be used.
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthConfigError),
    /// The TLS files could not be used.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A server stopped with an error.
    #[error("{what} server failed: {message}")]
    Server {
        /// Which server.
        what: &'static str,
        /// Its error.
        message: String,
    },
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
    /// Bytes of requests this node has accepted but not yet answered.
    inflight: Arc<Semaphore>,
    /// False once a drain began: new local requests are refused.
    accepting: AtomicBool,
    /// False once a draining leader stops taking forwarded writes.
    forwarded_open: AtomicBool,
    /// Local OTLP requests between acceptance and answer.
    local_requests: Arc<InFlight>,
    /// Forwarded writes this node, as leader, is committing.
    forwarded_requests: Arc<InFlight>,
    /// The outcome of the drain, once one ran (see `drain::drain`).
    drain: tokio::sync::Mutex<Option<DrainReport>>,
    /// False while a node that must join (`cluster.join`, empty storage)
    /// has not yet been found absent from the cluster: until then it
    /// answers no vote and no append, because the cluster may still count
    /// it as a voter that had entries and votes this empty store lacks.
    admitted: AtomicBool,
    /// What this node's exporters are doing (leader only does anything).
    export_progress: crate::export::Registry,
    /// What this node's archiver is doing.
    archive_progress: crate::archive::progress::Progress,
    /// When an append from a leader last succeeded here (ms since `started`,
    /// plus one; 0 = never). A follower is ready only while this is fresh.
    leader_contact: AtomicU64,
    started: Instant,
    /// The membership operation running on this node (as leader), if any:
    /// operations run one at a time.
    membership_op: std::sync::Mutex<Option<(String, Instant)>>,
    /// On a witness: what it knows of each data voter's durable progress.
    witness: crate::witness::Floors,
}

/// Held while a membership operation runs; frees the slot when dropped.
pub struct MembershipOp<'a> {
    node: &'a Node,
}

impl Drop for MembershipOp<'_> {
    fn drop(&mut self) {
        *self
            .node
            .membership_op
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }
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

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Node {
    /// Opens storage and starts Raft. Listeners are started by `serve`.
    /// `client_tls`: what the node presents when it calls other members
    /// (from the same files `server::run` serves with; `None`: plaintext).
    pub async fn open(
        config: NodeConfig,
        metrics: Arc<Metrics>,
        client_tls: Option<crate::tls::ClientTls>,
    ) -> Result<Arc<Node>, NodeError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| NodeError::Store(store::StoreError::from(e)))?;
        let marker = config.data_dir.join(crate::restore::RESTORING_FILE);
        if marker.exists() {
            return Err(NodeError::RestoreUnfinished { path: marker });
        }
        let (log, sm) =
            store::open_with_cache(&config.data_dir, metrics.clone(), config.db_cache_bytes())
                .await?;
        let tokens = crate::auth::Tokens::load(&config.auth)?.map(Arc::new);
        let clients = PeerClients::new(
            PeerSettings {
                connect_timeout: Duration::from_millis(config.peer.connect_timeout_ms),
                rpc_timeout: Duration::from_millis(config.peer.rpc_timeout_ms),
                max_message_bytes: config.peer.max_message_bytes,
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
        let inflight = Arc::new(Semaphore::new(config.ingest.max_inflight_bytes));
        metrics
            .log_budget_bytes
            .set(i64::try_from(config.raft.max_log_bytes).unwrap_or(i64::MAX));
        let empty = !raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let admitted = AtomicBool::new(!empty || config.cluster.join.is_empty());
        Ok(Arc::new(Node {
            admitted,
            config,
            raft,
            log,
            sm,
            clients,
            client_tls: std::sync::RwLock::new(client_tls),
            tokens,
            metrics,
            inflight,
            accepting: AtomicBool::new(true),
            forwarded_open: AtomicBool::new(true),
            local_requests: Arc::default(),
            forwarded_requests: Arc::default(),
            drain: tokio::sync::Mutex::new(None),
            export_progress: crate::export::Registry::default(),
            archive_progress: crate::archive::progress::Progress::default(),
            leader_contact: AtomicU64::new(0),
            started: Instant::now(),
            membership_op: std::sync::Mutex::new(None),
            witness: crate::witness::Floors::default(),
        }))
    }

    /// Whether this node is configured as a witness.
    pub fn is_witness(&self) -> bool {
        self.config.role == Role::Witness
    }

    /// A witness's view of the data voters' durable progress.
    pub fn witness_floors(&self) -> &crate::witness::Floors {
        &self.witness
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

    /// Claims the membership-operation slot for `what`, or says which
    /// operation holds it.
    pub fn begin_membership_op(&self, what: String) -> Result<MembershipOp<'_>, String> {
        let mut slot = self.membership_op.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((running, since)) = slot.as_ref() {
            return Err(format!(
                "{running} (started {} s ago)",
                since.elapsed().as_secs()
            ));
        }
        *slot = Some((what, Instant::now()));
        Ok(MembershipOp { node: self })
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

    /// The applied state machine contents.
    pub fn state(&self) -> SmState {
        self.sm.view()
    }

    /// The live progress of this node's exporters.
    pub fn export_progress(&self) -> &crate::export::Registry {
        &self.export_progress
    }

    /// The live progress of this node's archiver.
    pub fn archive_progress(&self) -> &crate::archive::progress::Progress {
        &self.archive_progress
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
    ) -> Result<crate::admin::client::AdminClient, crate::admin::client::ClientError> {
        let authorization = self.tokens.as_ref().and_then(|t| t.member_authorization());
        let tls = self
            .client_tls
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        crate::admin::client::AdminClient::for_member(addr, timeout, tls.as_ref(), authorization)
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

    /// Stops taking new requests (requests already accepted still finish).
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Whether this node may take part in Raft (see the `admitted` field).
    pub fn is_admitted(&self) -> bool {
        self.admitted.load(Ordering::SeqCst)
    }

    /// Lets this node take part in Raft: `join` found it absent from the
    /// cluster (or a learner, which never votes), or it bootstraps.
    pub fn admit(&self) {
        self.admitted.store(true, Ordering::SeqCst);
    }

    /// Whether a drain has begun.
    pub fn is_draining(&self) -> bool {
        !self.accepting.load(Ordering::SeqCst)
    }

    /// Refuses forwarded writes from now on, as a leader that is about to
    /// hand over (see `drain`).
    pub fn close_forwarded_writes(&self) {
        self.forwarded_open.store(false, Ordering::SeqCst);
    }

    /// Local OTLP requests in progress.
    pub fn local_requests(&self) -> &Arc<InFlight> {
        &self.local_requests
    }

    /// Forwarded writes in progress on this leader.
    pub fn forwarded_requests(&self) -> &Arc<InFlight> {
        &self.forwarded_requests
    }

    /// Where `drain::drain` keeps its single outcome.
    pub(crate) fn drain_slot(&self) -> &tokio::sync::Mutex<Option<DrainReport>> {
        &self.drain
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

    /// Proposes `request` on this node, which must be the leader; resolves
    /// once it is committed and applied. `NoLeader` means nothing was
    /// proposed here, so the caller may retry elsewhere.
    pub async fn write_as_leader(&self, mut request: IngestRequest) -> Result<u64, SubmitError> {
        // No "accepting" check here: a request that got past it in
        // `submit_owned` must be allowed to finish while the node drains.
        if self.is_witness() {
            // It leads only to hand over to a data node; clients retry.
            return Err(SubmitError::NoLeader {
                reason: "the witness leads only until a data node takes over".to_string(),
                retry_after: Duration::from_secs(1),
            });
        }
        let retained = self.metrics.log_bytes.get();
        let budget = self.config.raft.max_log_bytes;
        if u64::try_from(retained).unwrap_or(0) >= budget {
            return Err(SubmitError::Overloaded {
                reason: format!(
                    "the retained log ({retained} bytes) is at its budget (raft.max_log_bytes = {budget}) until sinks and the archive catch up"
                ),
                retry_after: Duration::from_secs(5),
            });
        }
        request.proposed_unix_nanos = now_nanos();
        request.proposer_node = self.id();
        let command = Command {
            kind: Some(Kind::Ingest(request)),
        };
        let timeout = Duration::from_millis(self.config.ingest.commit_timeout_ms);
        match tokio::time::timeout(timeout, self.raft.client_write(command)).await {
            Ok(Ok(resp)) => Ok(resp.log_id.index),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(SubmitError::NoLeader {
                    reason: format!(
                        "node {} is not the leader (leader: {:?})",
                        self.id(),
                        f.leader_id
                    ),
                    retry_after: Duration::from_secs(1),
                })
            }
            Ok(Err(e)) => Err(SubmitError::Internal(format!("raft write failed: {e}"))),
            Err(_) => Err(SubmitError::Internal(format!(
                "not committed within {} ms; the request may or may not be committed",
                timeout.as_millis()
            ))),
        }
    }

    /// Proposes a leader-only command (export cursor advances, archive
    /// records); never forwarded. Resolves once committed and applied here.
    pub async fn propose_as_leader(&self, command: Command) -> Result<u64, String> {
        let timeout = Duration::from_millis(self.config.ingest.commit_timeout_ms);
        match tokio::time::timeout(timeout, self.raft.client_write(command)).await {
            Ok(Ok(resp)) => Ok(resp.log_id.index),
            Ok(Err(e)) => Err(format!("proposal failed: {e}")),
            Err(_) => Err(format!(
                "proposal not committed within {} ms",
                timeout.as_millis()
            )),
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
    pub async fn barrier(&self) -> Result<(), String> {
        let read = self
            .raft
            .ensure_linearizable(openraft::ReadPolicy::ReadIndex)
            .await
            .map_err(|e| e.to_string())?;
        let want = read.index();
        let mut rx = self.raft.metrics();
        loop {
            if rx.borrow_watched().last_applied.map_or(0, |l| l.index) >= want {
                return Ok(());
            }
            rx.changed().await.map_err(|_| "raft stopped".to_string())?;
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

    /// Commits `request` through whichever member leads, forwarding when that
    /// is not this node. Waits for a leader up to the commit timeout.
    async fn commit_anywhere(&self, request: IngestRequest) -> Result<u64, SubmitError> {
        let timeout = Duration::from_millis(self.config.ingest.commit_timeout_ms);
        let deadline = Instant::now() + timeout;
        let leader_wait = Duration::from_millis(self.config.raft.election_timeout_max_ms * 3);
        let leader_deadline = Instant::now() + leader_wait.min(timeout);
        let retry = |reason: String| SubmitError::NoLeader {
            reason,
            retry_after: Duration::from_secs(1),
        };
        loop {
            let outcome = match self.leader() {
                None => Err(retry("no leader is known".to_string())),
                Some((id, _)) if id == self.id() => self.write_as_leader(request.clone()).await,
                Some((id, member)) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    match self
                        .clients
                        .forward(&member.peer_addr, request.clone(), remaining)
                        .await
                    {
                        Ok(index) => Ok(index),
                        Err(e) => Err(forward_error(id, e)),
                    }
                }
            };
            match outcome {
                // Only "nothing was proposed" answers are retried here; any
                // other failure may have committed, and the client decides.
                Err(SubmitError::NoLeader { reason, .. }) if Instant::now() < leader_deadline => {
                    tracing::debug!(%reason, "waiting for a leader");
                    tokio::time::sleep(LEADER_POLL).await;
                }
                other => return other,
            }
        }
    }

    /// Reserves `bytes` of the in-flight budget until the returned guard
    /// drops (also when a client disconnects and the request is cancelled).
    fn reserve(&self, bytes: usize) -> Result<Reservation, SubmitError> {
        if bytes > self.config.ingest.max_inflight_bytes {
            return Err(SubmitError::TooLarge(format!(
                "{bytes} bytes exceed ingest.max_inflight_bytes ({})",
                self.config.ingest.max_inflight_bytes
            )));
        }
        let permits = u32::try_from(bytes.max(1))
            .map_err(|_| SubmitError::TooLarge(format!("{bytes} bytes")))?;
        let Ok(permit) = self.inflight.clone().try_acquire_many_owned(permits) else {
            return Err(SubmitError::Overloaded {
                reason: "too much data in flight on this node".to_string(),
                retry_after: Duration::from_secs(1),
            });
        };
        self.metrics.ingest_inflight_bytes.inc_by(bytes as i64);
        Ok(Reservation {
            _permit: permit,
            bytes: bytes as i64,
            metrics: self.metrics.clone(),
        })
    }

    /// The leader's side of a forwarded write: the leader's own in-flight
    /// budget applies to it as to its local clients.
    pub async fn accept_forwarded(&self, request: IngestRequest) -> Result<u64, SubmitError> {
        let _in_flight = self.forwarded_requests.enter();
        if !self.forwarded_open.load(Ordering::SeqCst) {
            return Err(SubmitError::NoLeader {
                reason: format!("node {} is handing over leadership", self.id()),
                retry_after: Duration::from_secs(1),
            });
        }
        let _reservation = self.reserve(request.payload.len())?;
        self.write_as_leader(request).await
    }

    async fn submit_owned(self: Arc<Self>, request: IngestRequest) -> Result<Receipt, SubmitError> {
        // Counted before the check, so a drain that saw the count at zero
        // after refusing new requests cannot miss this one (see `drain`).
        let in_flight = self.local_requests.enter();
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        let reservation = self.reserve(request.payload.len())?;
        #[cfg(feature = "broken-ack-for-tests")]
        {
            // Deliberately wrong (see Cargo.toml): acknowledge, then commit.
            tokio::spawn(async move {
                let _in_flight = in_flight;
                let _reservation = reservation;
                let _ = self.commit_anywhere(request).await;
            });
            return Ok(Receipt { log_index: 0 });
        }
        #[allow(unreachable_code)]
        let log_index = self.commit_anywhere(request).await?;
        drop(reservation);
        drop(in_flight);
        Ok(Receipt { log_index })
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

    /// `/health/ready`: `Ok` when this node can do its job now, else why not.
    ///
    /// A data node is ready when it can get a request committed: it leads
    /// and a quorum acknowledged it recently, or it heard from a leader
    /// recently. A witness is ready when it is voting and up to date: a
    /// voter, in recent contact with a leader, holding every entry the
    /// leader has reported committed.
    pub fn readiness(&self) -> Result<(), String> {
        if self.is_draining() {
            return Err("draining: this node takes no new requests".into());
        }
        let m = self.raft_metrics();
        if m.running_state.is_err() {
            return Err("raft has stopped".into());
        }
        let Some(leader) = m.current_leader else {
            return Err("no leader known".into());
        };
        let fresh = Duration::from_millis(self.config.raft.election_timeout_max_ms * 2);
        if let Some(recorded) = m.membership_config.membership().get_node(&self.id()) {
            if recorded.role != self.config.role {
                return Err(format!(
                    "the membership records this node as {} but its config says role = \"{}\"",
                    recorded.role, self.config.role
                ));
            }
        }
        if m.state == ServerState::Leader {
            if self.is_witness() {
                return Err("the witness leads only until a data node takes over".into());
            }
            let acked = m
                .last_quorum_acked
                .as_ref()
                .is_some_and(|at| at.elapsed() <= fresh);
            return if acked {
                Ok(())
            } else {
                Err("leader without a recent quorum".into())
            };
        }
        if !self.has_recent_leader_contact() {
            return Err(format!("no recent contact with leader {leader}"));
        }
        if self.is_witness() {
            let voter = m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == self.id());
            if !voter {
                return Err("the witness is not a voter yet".into());
            }
            let last = m.last_log_index.unwrap_or(0);
            let committed = m.cluster_committed.map_or(0, |l| l.index);
            if last < committed {
                return Err(format!(
                    "behind: holds up to index {last}, the leader committed {committed}"
                ));
            }
        }
        Ok(())
    }

    /// Whether `/health/ready` answers 200 (see [`Node::readiness`]).
    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
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

fn forward_error(leader: NodeId, e: PeerError) -> SubmitError {
    match &e {
        PeerError::Status { code, message, .. } => match *code {
            crate::peer::NOT_LEADER => SubmitError::NoLeader {
                reason: message.clone(),
                retry_after: Duration::from_secs(1),
            },
            tonic::Code::ResourceExhausted => SubmitError::Overloaded {
                reason: message.clone(),
                retry_after: Duration::from_secs(1),
            },
            tonic::Code::OutOfRange => SubmitError::TooLarge(message.clone()),
            // The leader may have been reached: the outcome is unknown.
            tonic::Code::DeadlineExceeded => {
                SubmitError::Internal(format!("forward to leader {leader}: {e}"))
            }
            // Unreachable before anything was sent: safe to call NoLeader,
            // but not to retry blindly here (the bytes may be in flight).
            tonic::Code::Unavailable => {
                SubmitError::Internal(format!("leader {leader} unavailable: {e}"))
            }
            _ => SubmitError::Internal(format!("forward to leader {leader}: {e}")),
        },
        _ => SubmitError::Internal(format!("forward to leader {leader}: {e}")),
    }
}

/// Bytes reserved from the in-flight budget; released on drop.
struct Reservation {
    _permit: tokio::sync::OwnedSemaphorePermit,
    bytes: i64,
    metrics: Arc<Metrics>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.metrics.ingest_inflight_bytes.dec_by(self.bytes);
    }
}

/// The handle ingest holds: submit through this node.
#[derive(Clone)]
pub struct NodeHandler(pub Arc<Node>);

impl IngestHandler for NodeHandler {
    fn submit(&self, request: IngestRequest) -> SubmitFuture {
        Box::pin(self.0.clone().submit_owned(request))
    }
}
