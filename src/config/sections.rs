//! The tables of a node's configuration file, with their defaults.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::NodeConfig;

/// Bind addresses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// OTLP gRPC.
    pub otlp_grpc: SocketAddr,
    /// OTLP HTTP.
    pub otlp_http: SocketAddr,
    /// Peer gRPC (Raft and forwarded writes).
    pub peer: SocketAddr,
    /// Admin HTTP (status, membership, health, metrics).
    pub admin: SocketAddr,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            otlp_grpc: SocketAddr::from(([0, 0, 0, 0], 4317)),
            otlp_http: SocketAddr::from(([0, 0, 0, 0], 4318)),
            peer: SocketAddr::from(([0, 0, 0, 0], 4400)),
            admin: SocketAddr::from(([0, 0, 0, 0], 4480)),
        }
    }
}

/// Advertised `host:port` strings; empty means "same as listen".
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Advertise {
    /// Peer address other members dial.
    pub peer: String,
    /// Admin address other members and tools call.
    pub admin: String,
}

/// How the cluster is formed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// When true and this node's storage is empty, it initialises the cluster
    /// with `initial_members` on first start. Set it on exactly one node.
    pub bootstrap: bool,
    /// Voters of a freshly bootstrapped cluster (must include this node).
    pub initial_members: Vec<InitialMember>,
    /// Admin `host:port` of members to ask for a place in the cluster. A
    /// node with empty storage asks them to add it as a learner and
    /// promote it; a node with storage never asks (it rejoins as it was).
    /// With `bootstrap` as well, the node initialises a new cluster only if
    /// every listed member answers and none holds a cluster yet.
    pub join: Vec<String>,
}

/// One voter of the initial membership.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InitialMember {
    /// Its node id.
    pub id: u64,
    /// Its peer `host:port`.
    pub peer_addr: String,
    /// Its admin `host:port`.
    pub admin_addr: String,
    /// `data` (default) or `witness`; must match that node's own `role`.
    #[serde(default)]
    pub role: crate::raft::Role,
}

/// Raft timing and retention.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSection {
    /// Leader heartbeat period.
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomised election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomised election timeout.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many applied entries.
    pub snapshot_every_entries: u64,
    /// Most entries in one AppendEntries RPC.
    pub max_entries_per_append: u64,
    /// With no consumer configured (no sink, archive disabled), keep every
    /// entry. False lets such a node drop entries right behind snapshots.
    /// With consumers, entries are always kept until all of them are done.
    pub retain_unconsumed: bool,
    /// Entries Raft keeps behind a snapshot, so that a follower that lags a
    /// little catches up from the log rather than from a snapshot.
    pub log_keep_entries: u64,
    /// Disk budget of the retained log. At or above it the leader refuses
    /// new writes (429 / UNAVAILABLE with a retry hint) until the sinks and
    /// the archive catch up and trimming frees space.
    pub max_log_bytes: u64,
    /// Page cache of the node's database. Unset: 256 MiB on a data node
    /// (recent entries are read back by the exporters and the archiver),
    /// 64 MiB on a witness (it only writes).
    pub db_cache_bytes: Option<usize>,
}

impl NodeConfig {
    /// The database page cache this node uses (see `raft.db_cache_bytes`).
    pub fn db_cache_bytes(&self) -> usize {
        self.raft.db_cache_bytes.unwrap_or(match self.role {
            crate::raft::Role::Data => 256 << 20,
            crate::raft::Role::Witness => 64 << 20,
        })
    }
}

impl Default for RaftSection {
    fn default() -> Self {
        RaftSection {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_every_entries: 20_000,
            max_entries_per_append: 64,
            retain_unconsumed: true,
            log_keep_entries: 10_000,
            max_log_bytes: 16 << 30,
            db_cache_bytes: None,
        }
    }
}

/// OTLP receiver settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    /// Largest request accepted, measured after decompression.
    pub max_request_bytes: usize,
    /// Bytes of requests that may wait for commit on this node at once.
    /// Above it, requests get 429 / UNAVAILABLE with a retry hint.
    pub max_inflight_bytes: usize,
    /// Resource attribute that carries the receiving node's name.
    pub node_label_key: String,
    /// How long a request may wait for its commit before the client is told
    /// to retry.
    pub commit_timeout_ms: u64,
    /// Bytes that requests being read and decoded may hold at once: raw
    /// bodies, decompressed bodies and decoded requests, each reserved
    /// before it is allocated. A request that needs more is refused with
    /// 413 / RESOURCE_EXHAUSTED; one that finds it in use, with 429 /
    /// UNAVAILABLE and a retry hint.
    pub decode_memory_bytes: usize,
    /// Requests decompressed and decoded at once, on the blocking pool.
    pub decode_concurrency: usize,
    /// How long a request waits for a decode slot before it is refused with
    /// 429 / UNAVAILABLE.
    pub decode_wait_ms: u64,
    /// What one request may contain (`[ingest.limits]`).
    pub limits: IngestLimits,
}

/// Limits on the structure of a request, checked at ingest: a request that
/// breaks one is refused whole with 400 / INVALID_ARGUMENT naming the item.
/// The defaults are far above what SDKs send (the OpenTelemetry SDKs'
/// default attribute count limit is 128; OTel instrument names are at most
/// 255 characters).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestLimits {
    /// Bytes of a metric, span or scope name.
    pub max_name_bytes: usize,
    /// Bytes of an attribute key.
    pub max_attribute_key_bytes: usize,
    /// Encoded bytes of an attribute value (nested lists and maps included).
    pub max_attribute_value_bytes: usize,
    /// Attributes of one resource, scope, record, span, event, link or
    /// data point.
    pub max_attributes: usize,
    /// Buckets of one histogram data point (explicit bounds, or the
    /// positive plus negative buckets of an exponential histogram).
    pub max_buckets: usize,
    /// Log records, data points or spans in one request.
    pub max_records: usize,
    /// Nesting of attribute values and log bodies (arrays and maps), counted
    /// in protobuf requests; JSON ones are held to `serde_json`'s 128 levels.
    pub max_value_depth: u32,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_name_bytes: 1024,
            max_attribute_key_bytes: 1024,
            max_attribute_value_bytes: 128 << 10,
            max_attributes: 1024,
            max_buckets: 4096,
            max_records: 100_000,
            max_value_depth: 24,
        }
    }
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            max_request_bytes: 16 << 20,
            max_inflight_bytes: 96 << 20,
            node_label_key: "otelraft.node".to_string(),
            commit_timeout_ms: 10_000,
            decode_memory_bytes: 192 << 20,
            decode_concurrency: 2,
            decode_wait_ms: 5_000,
            limits: IngestLimits::default(),
        }
    }
}

/// Member-to-member RPC settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PeerSection {
    /// TCP connect timeout.
    pub connect_timeout_ms: u64,
    /// Timeout of one Raft RPC (AppendEntries, Vote).
    pub rpc_timeout_ms: u64,
    /// Largest peer message; must exceed the largest request plus framing.
    pub max_message_bytes: usize,
    /// Entry bytes one AppendEntries carries at most (always at least one
    /// entry); a lagging follower catches up in messages of this size.
    pub max_append_bytes: usize,
    /// Bytes of a snapshot a follower accepts (it holds the whole snapshot
    /// in memory while installing it). The replicated state must stay
    /// below it for a lagging follower to catch up by snapshot.
    pub max_snapshot_bytes: usize,
}

impl Default for PeerSection {
    fn default() -> Self {
        PeerSection {
            connect_timeout_ms: 1_000,
            rpc_timeout_ms: 2_000,
            max_message_bytes: 1 << 30,
            max_append_bytes: 32 << 20,
            max_snapshot_bytes: 1 << 30,
        }
    }
}

/// Graceful stop settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DrainSection {
    /// Longest a drain waits for in-flight requests and the leadership
    /// hand-off before the node stops anyway. Keep the service manager's
    /// stop timeout above it.
    pub timeout_ms: u64,
}

impl Default for DrainSection {
    fn default() -> Self {
        DrainSection { timeout_ms: 30_000 }
    }
}
