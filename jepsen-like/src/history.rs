//! What a run records: client operations, fault windows and cluster samples.
//!
//! Times are milliseconds since the run started (`Clock`), so one run's files
//! line up with each other and with the plot without wall-clock arithmetic.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The run's time origin.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    /// Starts the clock now.
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    /// Milliseconds since the start.
    pub fn now_ms(&self) -> f64 {
        self.0.elapsed().as_secs_f64() * 1000.0
    }
}

/// How an operation ended, from the client's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Acknowledged: every record must be delivered exactly once.
    Ok,
    /// Refused in a way that guarantees nothing was committed (a 4xx, a
    /// connection refused, or a "no leader"/"overloaded" refusal that the
    /// server makes before proposing): no record may be delivered.
    Fail,
    /// Timed out or failed after the request may have been proposed:
    /// delivery is allowed but not required.
    Unknown,
}

/// The OTLP transport an operation used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OTLP/gRPC on 4317.
    Grpc,
    /// OTLP/HTTP protobuf on 4318.
    Http,
}

/// The OTLP signal an operation carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// Log records; delivered to Loki.
    Logs,
    /// Gauge points; delivered to Prometheus.
    Metrics,
}

/// One client request. Its records have ids `"{op}-{i}"` for `i` in
/// `0..records`, carried in the log body (`jl-{op}-{i}`) or in the metric
/// point's `jl_id` attribute.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Op {
    /// Unique operation number.
    pub op: u64,
    /// Which client sent it.
    pub client: u32,
    /// The node id it was sent to.
    pub node: u64,
    /// Transport.
    pub protocol: Protocol,
    /// Signal.
    pub signal: Signal,
    /// Records in the request.
    pub records: u32,
    /// When the request was sent.
    pub invoke_ms: f64,
    /// When the answer (or the timeout) came.
    pub complete_ms: f64,
    /// The classification the checker relies on.
    pub outcome: Outcome,
    /// The error, if not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Op {
    /// The id of record `i` of this operation.
    pub fn record_id(&self, i: u32) -> String {
        record_id(self.op, i)
    }
}

/// The id of record `i` of operation `op`.
pub fn record_id(op: u64, i: u32) -> String {
    format!("{op}-{i}")
}

/// One fault the nemesis applied, from injection to heal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fault {
    /// The fault family: `partition`, `kill`, `pause`, `loss`, `bandwidth`,
    /// `latency`, `sink`, `membership`.
    pub kind: String,
    /// What exactly was done, e.g. `isolate leader n2`.
    pub detail: String,
    /// When it was injected.
    pub start_ms: f64,
    /// When it was healed (`None` if the run ended first; the final heal
    /// then closes it).
    pub end_ms: Option<f64>,
    /// Anything that went wrong injecting or healing it (a membership
    /// change the cluster refused, say). A refused fault is not a failure of
    /// the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Export lag of one sink as the leader reported it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SinkLag {
    /// Log entries past the sink's cursor.
    pub entries: u64,
    /// Age of the oldest unexported entry, if the leader knows it.
    pub seconds: Option<f64>,
}

/// The cluster as the harness saw it at one instant (polled every 500 ms).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sample {
    /// When.
    pub t_ms: f64,
    /// The leader, if one answered as leader.
    pub leader: Option<u64>,
    /// The leader's commit index.
    pub committed: Option<u64>,
    /// Per sink, from the leader's status.
    pub sinks: BTreeMap<String, SinkLag>,
    /// Entries the leader has not archived yet.
    pub archive_lag_entries: Option<u64>,
}

/// Everything one run recorded.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct History {
    /// Client operations, in completion order.
    pub ops: Vec<Op>,
    /// Faults, in injection order.
    pub faults: Vec<Fault>,
    /// Cluster samples, in time order.
    pub samples: Vec<Sample>,
    /// When the final heal happened (all faults removed).
    pub healed_ms: f64,
    /// When the load stopped.
    pub load_end_ms: f64,
}
