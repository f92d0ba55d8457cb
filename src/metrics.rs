//! The node's own Prometheus metrics, served as text on the admin port.
//!
//! One `Metrics` value is created per node and shared by `Arc`. Modules
//! record into it; nothing here knows about Raft or storage, so every layer
//! may depend on it.

pub mod process;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels for ingest outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalLabels {
    /// `logs`, `metrics` or `traces`.
    pub signal: String,
}

/// Labels for refused ingest requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `logs`, `metrics` or `traces`.
    pub signal: String,
    /// A short machine-readable reason: `decode`, `too_large`, `overloaded`,
    /// `no_leader`, `unsupported_media_type`, `internal`, ...
    pub reason: String,
}

/// Labels for per-follower figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// The follower's node id.
    pub peer: String,
}

/// Labels for per-sink figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// The configured sink name.
    pub sink: String,
}

/// Labels for per-sink outcomes (request results, dead-letter reasons,
/// takeover outcomes).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkOutcomeLabels {
    /// The configured sink name.
    pub sink: String,
    /// What happened.
    pub outcome: String,
}

/// Every metric this node exports. Field names match the exported names
/// without the `otelraft_` prefix.
pub struct Metrics {
    registry: Registry,
    /// Records accepted (acknowledged after commit), by signal.
    pub ingest_records_accepted: Family<SignalLabels, Counter>,
    /// Request bytes accepted, by signal.
    pub ingest_bytes_accepted: Family<SignalLabels, Counter>,
    /// Records refused, by signal and reason.
    pub ingest_records_refused: Family<RefusalLabels, Counter>,
    /// Requests refused, by signal and reason.
    pub ingest_requests_refused: Family<RefusalLabels, Counter>,
    /// Bytes of requests currently waiting for their commit.
    pub ingest_inflight_bytes: Gauge,
    /// Seconds from receiving a request to acknowledging it.
    pub ingest_ack_seconds: Histogram,
    /// Current Raft term.
    pub raft_term: Gauge,
    /// Current leader id, or -1 when none is known.
    pub raft_leader_id: Gauge,
    /// 1 when this node is the leader.
    pub raft_is_leader: Gauge,
    /// Highest committed log index known to this node.
    pub raft_commit_index: Gauge,
    /// Highest log index applied to this node's state machine.
    pub raft_applied_index: Gauge,
    /// Entries a follower is behind the leader's last log index (leader only).
    pub raft_replication_lag_entries: Family<PeerLabels, Gauge>,
    /// Duration of each durable storage commit (one fsync).
    pub storage_fsync_seconds: Histogram,
    /// Log entries written per durable commit (group-commit width).
    pub storage_batch_entries: Histogram,
    /// Durable commits performed.
    pub storage_fsyncs: Counter,
    /// Entries currently held in the local log.
    pub log_entries: Gauge,
    /// Encoded bytes currently held in the local log.
    pub log_bytes: Gauge,
    /// First index still present in the local log.
    pub log_first_index: Gauge,
    /// `raft.max_log_bytes`: at this many retained bytes the leader refuses
    /// writes until trimming frees space (for dashboards and alerts).
    pub log_budget_bytes: Gauge,
    /// Each sink's replicated cursor (last handled log index).
    pub export_cursor: Family<SinkLabels, Gauge>,
    /// Applied entries past each sink's cursor.
    pub export_lag_entries: Family<SinkLabels, Gauge>,
    /// OTLP payload bytes applied past each sink's cursor.
    pub export_lag_bytes: Family<SinkLabels, Gauge>,
    /// Age of the oldest entry not yet exported (leader only; 0 when
    /// caught up).
    pub export_lag_seconds: Family<SinkLabels, Gauge<f64, AtomicU64>>,
    /// Items delivered, from the replicated state.
    pub export_delivered_items: Family<SinkLabels, Gauge>,
    /// Dead-lettered items by sink and reason, from the replicated state.
    pub export_dead_letters: Family<SinkOutcomeLabels, Gauge>,
    /// Requests this node sent, by sink and outcome (`accepted`,
    /// `refused`, `retryable_error`).
    pub export_requests: Family<SinkOutcomeLabels, Counter>,
    /// Requests this node sent for a range its predecessor may already have
    /// sent (after a takeover the sink could not settle by itself).
    pub export_resent_requests: Family<SinkLabels, Counter>,
    /// How each takeover settled the one uncertain batch:
    /// `already_delivered`, `not_delivered` or `unknown`.
    pub export_takeovers: Family<SinkOutcomeLabels, Counter>,
    /// Read-backs after a send of unknown outcome, by what the sink held
    /// of the batch: `none`, `part`, `all` (sinks that cannot tell resend
    /// and count `export_resent_requests` instead).
    pub export_readbacks: Family<SinkOutcomeLabels, Counter>,
    /// The replicated archive cursor (last archived log index).
    pub archive_cursor: Gauge,
    /// Content entries applied past the archive cursor.
    pub archive_lag_entries: Gauge,
    /// Blocks and bytes recorded as archived, from the replicated state.
    pub archive_blocks: Gauge,
    /// Bytes of block objects recorded as archived.
    pub archive_bytes: Gauge,
    /// Object-store requests this node made for the archive, by `op`
    /// (`put`, `get`, `list`, `delete`) and `outcome`.
    pub archive_requests: Family<ArchiveRequestLabels, Counter>,
    /// Wall time of block uploads that succeeded.
    pub archive_upload_seconds: Histogram,
    /// Blocks deleted by retention.
    pub archive_expired_blocks: Counter,
    /// Highest index every consumer is done with; rows up to it (and up to
    /// Raft's purge point) are deleted.
    pub log_trim_index: Gauge,
}

/// Labels of archive object-store requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArchiveRequestLabels {
    /// `put`, `get`, `list` or `delete`.
    pub op: String,
    /// `ok`, `already_exists`, `error`.
    pub outcome: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("otelraft");
        let latency = || Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        let m = Metrics {
            ingest_records_accepted: Family::default(),
            ingest_bytes_accepted: Family::default(),
            ingest_records_refused: Family::default(),
            ingest_requests_refused: Family::default(),
            ingest_inflight_bytes: Gauge::default(),
            ingest_ack_seconds: latency(),
            raft_term: Gauge::default(),
            raft_leader_id: Gauge::default(),
            raft_is_leader: Gauge::default(),
            raft_commit_index: Gauge::default(),
            raft_applied_index: Gauge::default(),
            raft_replication_lag_entries: Family::default(),
            storage_fsync_seconds: latency(),
            storage_batch_entries: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            storage_fsyncs: Counter::default(),
            log_entries: Gauge::default(),
            log_bytes: Gauge::default(),
            log_first_index: Gauge::default(),
            log_budget_bytes: Gauge::default(),
            export_cursor: Family::default(),
            export_lag_entries: Family::default(),
            export_lag_bytes: Family::default(),
            export_lag_seconds: Family::default(),
            export_delivered_items: Family::default(),
            export_dead_letters: Family::default(),
            export_requests: Family::default(),
            export_resent_requests: Family::default(),
            export_takeovers: Family::default(),
            export_readbacks: Family::default(),
            archive_cursor: Gauge::default(),
            archive_lag_entries: Gauge::default(),
            archive_blocks: Gauge::default(),
            archive_bytes: Gauge::default(),
            archive_requests: Family::default(),
            archive_upload_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            archive_expired_blocks: Counter::default(),
            log_trim_index: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "ingest_records_accepted",
            "Records acknowledged after commit",
            m.ingest_records_accepted.clone(),
        );
        r.register(
            "ingest_bytes_accepted",
            "Request bytes acknowledged after commit",
            m.ingest_bytes_accepted.clone(),
        );
        r.register(
            "ingest_records_refused",
            "Records refused",
            m.ingest_records_refused.clone(),
        );
        r.register(
            "ingest_requests_refused",
            "Requests refused",
            m.ingest_requests_refused.clone(),
        );
        r.register(
            "ingest_inflight_bytes",
            "Bytes of requests waiting for commit",
            m.ingest_inflight_bytes.clone(),
        );
        r.register(
            "ingest_ack_seconds",
            "Receive-to-acknowledge latency",
            m.ingest_ack_seconds.clone(),
        );
        r.register("raft_term", "Current Raft term", m.raft_term.clone());
        r.register(
            "raft_leader_id",
            "Known leader id, -1 if none",
            m.raft_leader_id.clone(),
        );
        r.register(
            "raft_is_leader",
            "1 on the leader",
            m.raft_is_leader.clone(),
        );
        r.register(
            "raft_commit_index",
            "Committed log index",
            m.raft_commit_index.clone(),
        );
        r.register(
            "raft_applied_index",
            "Applied log index",
            m.raft_applied_index.clone(),
        );
        r.register(
            "raft_replication_lag_entries",
            "Entries each follower is behind (leader only)",
            m.raft_replication_lag_entries.clone(),
        );
        r.register(
            "storage_fsync_seconds",
            "Duration of each durable commit",
            m.storage_fsync_seconds.clone(),
        );
        r.register(
            "storage_batch_entries",
            "Log entries per durable commit",
            m.storage_batch_entries.clone(),
        );
        r.register(
            "storage_fsyncs",
            "Durable commits",
            m.storage_fsyncs.clone(),
        );
        r.register(
            "log_entries",
            "Entries held in the local log",
            m.log_entries.clone(),
        );
        r.register(
            "log_bytes",
            "Encoded bytes held in the local log",
            m.log_bytes.clone(),
        );
        r.register(
            "log_first_index",
            "First index present in the local log",
            m.log_first_index.clone(),
        );
        r.register(
            "export_cursor",
            "Last log index handled by each sink",
            m.export_cursor.clone(),
        );
        r.register(
            "export_lag_entries",
            "Applied entries not yet exported",
            m.export_lag_entries.clone(),
        );
        r.register(
            "export_lag_bytes",
            "Applied payload bytes not yet exported",
            m.export_lag_bytes.clone(),
        );
        r.register(
            "export_lag_seconds",
            "Age of the oldest unexported entry (leader only)",
            m.export_lag_seconds.clone(),
        );
        r.register(
            "export_delivered_items",
            "Samples or log lines delivered to each sink",
            m.export_delivered_items.clone(),
        );
        r.register(
            "export_dead_letters",
            "Items kept out of each sink, by reason",
            m.export_dead_letters.clone(),
        );
        r.register(
            "export_requests",
            "Sink requests sent by this node, by outcome",
            m.export_requests.clone(),
        );
        r.register(
            "export_resent_requests",
            "Requests resent for a range a previous leader may have sent",
            m.export_resent_requests.clone(),
        );
        r.register(
            "export_takeovers",
            "How each exporter takeover settled the uncertain batch",
            m.export_takeovers.clone(),
        );
        r.register(
            "export_readbacks",
            "Read-backs of what a sink held of a batch whose send had an unknown outcome, by what it held",
            m.export_readbacks.clone(),
        );
        r.register(
            "archive_cursor",
            "Last log index recorded as archived",
            m.archive_cursor.clone(),
        );
        r.register(
            "archive_lag_entries",
            "Applied entries not yet archived",
            m.archive_lag_entries.clone(),
        );
        r.register(
            "archive_blocks",
            "Blocks recorded as archived",
            m.archive_blocks.clone(),
        );
        r.register(
            "archive_bytes",
            "Bytes of block objects recorded as archived",
            m.archive_bytes.clone(),
        );
        r.register(
            "archive_requests",
            "Object-store requests made by this node for the archive",
            m.archive_requests.clone(),
        );
        r.register(
            "archive_upload_seconds",
            "Wall time of successful block uploads",
            m.archive_upload_seconds.clone(),
        );
        r.register(
            "archive_expired_blocks",
            "Blocks deleted by archive retention",
            m.archive_expired_blocks.clone(),
        );
        r.register(
            "log_budget_bytes",
            "Retained log bytes at which the leader refuses writes (raft.max_log_bytes)",
            m.log_budget_bytes.clone(),
        );
        r.register(
            "log_trim_index",
            "Highest log index every sink and the archive are done with",
            m.log_trim_index.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Renders every metric in the Prometheus text exposition format,
    /// followed by the standard `process_*` metrics.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        // `encode` ends with the OpenMetrics `# EOF` line; the process
        // metrics go before it.
        let eof = out.rfind("# EOF").unwrap_or(out.len());
        out.insert_str(eof, &process::render());
        out
    }
}

/// Shorthand for the signal label.
pub fn signal(name: &str) -> SignalLabels {
    SignalLabels {
        signal: name.to_string(),
    }
}

/// Shorthand for the refusal labels.
pub fn refusal(signal: &str, reason: &str) -> RefusalLabels {
    RefusalLabels {
        signal: signal.to_string(),
        reason: reason.to_string(),
    }
}

/// Shorthand for the sink label.
pub fn sink(name: &str) -> SinkLabels {
    SinkLabels {
        sink: name.to_string(),
    }
}

/// Shorthand for the archive request labels.
pub fn archive_request(op: &str, outcome: &str) -> ArchiveRequestLabels {
    ArchiveRequestLabels {
        op: op.to_string(),
        outcome: outcome.to_string(),
    }
}

/// Shorthand for the sink outcome labels.
pub fn sink_outcome(name: &str, outcome: &str) -> SinkOutcomeLabels {
    SinkOutcomeLabels {
        sink: name.to_string(),
        outcome: outcome.to_string(),
    }
}
