//! The client side of the peer service: openraft's network factory plus the
//! write-forwarding call, over one reused tonic channel per peer.
//!
//! Channels are created lazily, keyed by peer address, and shared by every
//! RPC to that peer (HTTP/2 multiplexes them). Each call carries a deadline;
//! openraft applies its own backoff after `Unreachable`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use super::{codec, LogId, Member, NodeId, TypeConfig, Vote};
use crate::pb;
use crate::pb::peer::peer_client::PeerClient;
use crate::store::{carry, LogStore};

/// Size of one InstallSnapshot chunk.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// The non-entry fields of AppendEntries, carried as JSON.
#[derive(Serialize, Deserialize)]
pub struct AppendHeader {
    /// The leader's vote.
    pub vote: Vote,
    /// Log id preceding the entries.
    pub prev_log_id: Option<LogId>,
    /// The leader's commit position.
    pub leader_commit: Option<LogId>,
}

/// Why a peer call failed. `retryable()` is true for transport trouble and
/// timeouts, false when the peer understood and refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// The address is not a valid endpoint.
    #[error("invalid peer address {addr}: {message}")]
    BadAddress {
        /// The address.
        addr: String,
        /// Why.
        message: String,
    },
    /// The call failed with a gRPC status.
    #[error("peer {addr} answered {code:?}: {message}")]
    Status {
        /// The peer.
        addr: String,
        /// The gRPC code.
        code: Code,
        /// The message.
        message: String,
    },
    /// A reply could not be decoded.
    #[error("peer {addr} sent an undecodable reply: {message}")]
    Decode {
        /// The peer.
        addr: String,
        /// Why.
        message: String,
    },
}

impl PeerError {
    /// Whether the same call may succeed later.
    pub fn retryable(&self) -> bool {
        match self {
            PeerError::Status { code, .. } => {
                matches!(
                    code,
                    Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
                )
            }
            PeerError::BadAddress { .. } | PeerError::Decode { .. } => false,
        }
    }

    /// True when the peer could not be reached at all (nothing was sent or
    /// nothing was answered), so openraft should back off.
    fn is_unreachable(&self) -> bool {
        matches!(
            self,
            PeerError::Status {
                code: Code::Unavailable,
                ..
            } | PeerError::BadAddress { .. }
        )
    }

    fn into_rpc(self) -> RPCError<TypeConfig> {
        if self.is_unreachable() {
            RPCError::Unreachable(Unreachable::new(&self))
        } else {
            RPCError::Network(NetworkError::new(&self))
        }
    }
}

/// Settings of peer connections.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Default deadline of one RPC when openraft gives none.
    pub rpc_timeout: Duration,
    /// Largest message in either direction.
    pub max_message_bytes: usize,
}

/// The pool of channels to peers, shared by Raft replication and forwarding.
#[derive(Clone)]
pub struct PeerClients {
    settings: PeerSettings,
    /// Mutual TLS to peers (`None`: plaintext); replaced by `set_tls`.
    tls: Arc<std::sync::RwLock<Option<crate::tls::ClientTls>>>,
    channels: Arc<Mutex<HashMap<String, PeerClient<Channel>>>>,
}

impl PeerClients {
    /// Creates an empty pool; with `tls`, every channel is mutual TLS.
    pub fn new(settings: PeerSettings, tls: Option<crate::tls::ClientTls>) -> Self {
        PeerClients {
            settings,
            tls: Arc::new(std::sync::RwLock::new(tls)),
            channels: Arc::default(),
        }
    }

    /// New channels present `tls` from now on. The cached channels are
    /// dropped (calls in flight finish on theirs) so the next call
    /// connects with the new identity.
    pub fn set_tls(&self, tls: crate::tls::ClientTls) {
        *self
            .tls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tls);
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    /// The connection settings.
    pub fn settings(&self) -> &PeerSettings {
        &self.settings
    }

    /// The client for `addr`, creating its channel on first use. The channel
    /// connects lazily and reconnects by itself after failures.
    pub fn client(&self, addr: &str) -> Result<PeerClient<Channel>, PeerError> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let bad_address = |e: tonic::transport::Error| PeerError::BadAddress {
            addr: addr.to_string(),
            message: e.to_string(),
        };
        let tls = self
            .tls
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let endpoint = match &tls {
            Some(tls) => Endpoint::from_shared(format!("https://{addr}"))
                .and_then(|e| e.tls_config(tls.tonic()))
                .map_err(bad_address)?,
            None => Endpoint::from_shared(format!("http://{addr}")).map_err(bad_address)?,
        };
        let endpoint = endpoint
            .connect_timeout(self.settings.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let client = PeerClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(self.settings.max_message_bytes)
            .max_encoding_message_size(self.settings.max_message_bytes);
        channels.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// Hands a client request to the leader at `addr`; resolves when the
    /// leader has committed it.
    pub async fn forward(
        &self,
        addr: &str,
        request: pb::log::IngestRequest,
        timeout: Duration,
    ) -> Result<u64, PeerError> {
        let mut client = self.client(addr)?;
        let mut req = tonic::Request::new(request);
        req.set_timeout(timeout);
        let reply = client
            .forward(req)
            .await
            .map_err(|s| status_error(addr, s))?;
        Ok(reply.into_inner().log_index)
    }
}

/// What a peer says about itself (the `NodeInfo` RPC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its configured id.
    pub node_id: NodeId,
    /// Its configured role.
    pub role: crate::raft::Role,
    /// Highest index it has durably applied.
    pub durable_applied: Option<u64>,
    /// Whether it leads, in `term`.
    pub leader: bool,
    /// Its current term.
    pub term: u64,
    /// Whether a leader reached it recently.
    pub recent_leader_contact: bool,
    /// Whether it is draining, and so refuses leadership.
    pub draining: bool,
}

impl PeerClients {
    /// Asks the node at `addr` who it is; bounded by the RPC timeout.
    pub async fn node_info(&self, addr: &str) -> Result<PeerInfo, PeerError> {
        let mut client = self.client(addr)?;
        let mut req = tonic::Request::new(pb::peer::NodeInfoRequest {});
        req.set_timeout(self.settings.rpc_timeout);
        let reply = client
            .node_info(req)
            .await
            .map_err(|s| status_error(addr, s))?
            .into_inner();
        let role = match reply.role.as_str() {
            "witness" => crate::raft::Role::Witness,
            "data" => crate::raft::Role::Data,
            other => {
                return Err(PeerError::Decode {
                    addr: addr.to_string(),
                    message: format!("unknown role `{other}`"),
                })
            }
        };
        Ok(PeerInfo {
            node_id: reply.node_id,
            role,
            durable_applied: reply.durable_applied_next.checked_sub(1),
            leader: reply.leader,
            term: reply.term,
            recent_leader_contact: reply.recent_leader_contact,
            draining: reply.draining,
        })
    }
}

fn status_error(addr: &str, s: tonic::Status) -> PeerError {
    PeerError::Status {
        addr: addr.to_string(),
        code: s.code(),
        message: s.message().to_string(),
    }
}

fn to_json<T: Serialize>(v: &T) -> Bytes {
    // openraft's messages are plain data; serialising them cannot fail.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

fn from_json<T: DeserializeOwned>(addr: &str, bytes: &[u8]) -> Result<T, PeerError> {
    serde_json::from_slice(bytes).map_err(|e| PeerError::Decode {
        addr: addr.to_string(),
        message: e.to_string(),
    })
}

/// openraft's factory: one `PeerNetwork` per target, all sharing the pool.
#[derive(Clone)]
pub struct NetworkFactory {
    clients: PeerClients,
    log: LogStore,
    serves_snapshots: bool,
}

impl NetworkFactory {
    /// Wraps the shared pool; `log` supplies the retained entries a snapshot
    /// carries (see `store::carry`). A witness passes `serves_snapshots =
    /// false`: it holds no data to carry, and its log is kept long enough
    /// that a data voter never needs one from it.
    pub fn new(clients: PeerClients, log: LogStore, serves_snapshots: bool) -> Self {
        NetworkFactory {
            clients,
            log,
            serves_snapshots,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Self::Network {
        PeerNetwork {
            target,
            addr: node.peer_addr.clone(),
            clients: self.clients.clone(),
            log: self.log.clone(),
            serves_snapshots: self.serves_snapshots,
        }
    }
}

/// Raft RPCs to one peer.
pub struct PeerNetwork {
    target: NodeId,
    addr: String,
    clients: PeerClients,
    log: LogStore,
    serves_snapshots: bool,
}

impl PeerNetwork {
    fn request<T>(&self, msg: T, option: &RPCOption) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(
            option
                .hard_ttl()
                .min(self.clients.settings.rpc_timeout.max(option.soft_ttl())),
        );
        req
    }

    async fn json_call<Req, Resp, F, Fut>(
        &self,
        msg: &Req,
        option: &RPCOption,
        call: F,
    ) -> Result<Resp, PeerError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(PeerClient<Channel>, tonic::Request<pb::peer::JsonMessage>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<pb::peer::JsonReply>, tonic::Status>>,
    {
        let client = self.clients.client(&self.addr)?;
        let req = self.request(pb::peer::JsonMessage { json: to_json(msg) }, option);
        let reply = call(client, req)
            .await
            .map_err(|s| status_error(&self.addr, s))?;
        from_json(&self.addr, &reply.into_inner().json)
    }
}

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = Bytes;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let header = AppendHeader {
            vote: rpc.vote,
            prev_log_id: rpc.prev_log_id,
            leader_commit: rpc.leader_commit,
        };
        let msg = pb::peer::AppendEntriesRequest {
            header_json: to_json(&header),
            entries: rpc.entries.iter().map(codec::to_pb).collect(),
        };
        let mut client = self
            .clients
            .client(&self.addr)
            .map_err(PeerError::into_rpc)?;
        let reply = client
            .append_entries(self.request(msg, &option))
            .await
            .map_err(|s| status_error(&self.addr, s).into_rpc())?;
        from_json(&self.addr, &reply.into_inner().json).map_err(PeerError::into_rpc)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.json_call(&rpc, &option, |mut c, r| async move { c.vote(r).await })
            .await
            .map_err(PeerError::into_rpc)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.json_call(&rpc, &option, |mut c, r| async move { c.pre_vote(r).await })
            .await
            .map_err(PeerError::into_rpc)
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.json_call(&req, &option, |mut c, r| async move {
            c.transfer_leader(r).await
        })
        .await
        .map_err(PeerError::into_rpc)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::type_config::alias::SnapshotOf<TypeConfig, Bytes>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        if !self.serves_snapshots {
            tracing::error!(
                target_node = self.target,
                "a witness does not serve snapshots; node {} needs entries this witness no longer holds",
                self.target
            );
            let e = std::io::Error::other("a witness does not serve snapshots");
            return Err(StreamingError::Unreachable(Unreachable::new(&e)));
        }
        // The state plus every entry this node still retains up to the
        // snapshot's end: the receiver may need them to export or archive.
        let carried = match snapshot.meta.last_log_id {
            Some(last) => self
                .log
                .raw_rows(0, last.index, usize::MAX)
                .await
                .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?,
            None => Vec::new(),
        };
        let data = carry::wrap(&snapshot.snapshot, &carried);
        tracing::info!(
            target_node = self.target,
            carried_entries = carried.len(),
            bytes = data.len(),
            "sending snapshot"
        );
        drop(carried);
        let mut chunks = Vec::with_capacity(data.len() / SNAPSHOT_CHUNK_BYTES + 1);
        let mut offset = 0;
        loop {
            let end = (offset + SNAPSHOT_CHUNK_BYTES).min(data.len());
            let first = offset == 0;
            chunks.push(pb::peer::SnapshotChunk {
                vote_json: if first { to_json(&vote) } else { Bytes::new() },
                meta_json: if first {
                    to_json(&snapshot.meta)
                } else {
                    Bytes::new()
                },
                data: data.slice(offset..end),
            });
            offset = end;
            if offset >= data.len() {
                break;
            }
        }
        let mut client = self
            .clients
            .client(&self.addr)
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
        let mut req = tonic::Request::new(futures::stream::iter(chunks));
        req.set_timeout(option.hard_ttl());
        let call = client.install_snapshot(req);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            reply = call => {
                let reply = reply.map_err(|s| {
                    let e = status_error(&self.addr, s);
                    if e.is_unreachable() {
                        StreamingError::Unreachable(Unreachable::new(&e))
                    } else {
                        StreamingError::Network(NetworkError::new(&e))
                    }
                })?;
                from_json(&self.addr, &reply.into_inner().json).map_err(|e| StreamingError::Network(NetworkError::new(&e)))
            }
        }
    }
}

impl std::fmt::Debug for PeerNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerNetwork(node {} at {})", self.target, self.addr)
    }
}
