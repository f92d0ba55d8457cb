//! The client side of the peer service: one reused tonic channel per peer,
//! shared by Raft replication (`network`) and write forwarding.
//!
//! Channels are created lazily, keyed by peer address, and shared by every
//! RPC to that peer (HTTP/2 multiplexes them). Each call carries a deadline;
//! openraft applies its own backoff after `Unreachable`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::errors::{NetworkError, RPCError, Unreachable};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::pb;
use crate::pb::peer::peer_client::PeerClient;
use crate::raft::{NodeId, TypeConfig};

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
    /// A request could not be encoded; nothing was sent.
    #[error("a request to peer {addr} does not encode: {message}")]
    Encode {
        /// The peer.
        addr: String,
        /// Why.
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
            PeerError::BadAddress { .. } | PeerError::Encode { .. } | PeerError::Decode { .. } => {
                false
            }
        }
    }

    /// True when the peer could not be reached at all (nothing was sent or
    /// nothing was answered), so openraft should back off.
    pub(super) fn is_unreachable(&self) -> bool {
        matches!(
            self,
            PeerError::Status {
                code: Code::Unavailable,
                ..
            } | PeerError::BadAddress { .. }
        )
    }

    pub(super) fn into_rpc(self) -> RPCError<TypeConfig> {
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
    /// Entry bytes one AppendEntries carries at most (at least one entry).
    pub max_append_bytes: usize,
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

pub(super) fn status_error(addr: &str, s: tonic::Status) -> PeerError {
    PeerError::Status {
        addr: addr.to_string(),
        code: s.code(),
        message: s.message().to_string(),
    }
}

/// A message as JSON; a message that does not serialise is an error here,
/// never an empty payload on the wire.
pub(super) fn to_json<T: Serialize>(addr: &str, v: &T) -> Result<Bytes, PeerError> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| PeerError::Encode {
            addr: addr.to_string(),
            message: e.to_string(),
        })
}

pub(super) fn from_json<T: DeserializeOwned>(addr: &str, bytes: &[u8]) -> Result<T, PeerError> {
    serde_json::from_slice(bytes).map_err(|e| PeerError::Decode {
        addr: addr.to_string(),
        message: e.to_string(),
    })
}
