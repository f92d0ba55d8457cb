//! OTLP ingest: the gRPC (4317) and HTTP (4318) receivers every member runs.
//!
//! Protocol code depends only on [`IngestHandler`]; it never imports Raft or
//! storage. A handler takes one decoded, validated request and resolves once
//! the request is committed (or refused).
//!
//! One request travels: decode (content type, gzip, bounded size) -> validate
//! -> count records -> (zero records: answered with success, not submitted)
//! -> resource processor -> encode once as OTLP protobuf -> [`IngestHandler`]
//! -> answer. Both receivers share that path through [`Ingest`].
//!
//! - `admission`: the decode budget and slots a request holds first.
//! - `shape`: a request's records, depth and decoded size, read off the wire.
//! - `decode`: media types, content codings, bounded gunzip, protobuf/JSON.
//! - `request`: what each OTLP export request type provides (signal, count,
//!   validation, labelling); `validate` and `resource` hold the details.
//! - `pipeline`: the shared path above plus the ingest metrics.
//! - `grpc` / `http`: protocol adapters and status mapping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::pb::log::IngestRequest;

mod admission;
mod decode;
mod error;
mod grpc;
mod http;
mod limits;
mod pipeline;
mod request;
mod resource;
mod rpc_status;
mod shape;
mod validate;

#[cfg(fuzzing)]
pub mod fuzzing;
#[cfg(test)]
mod tests;

pub use error::IngestError;
pub use grpc::serve_grpc;
pub use http::{http_router, serve_http};
pub use request::check_encoded;

/// Settings the receivers need; the config module builds this from the node's
/// configuration so protocol code never reads configuration itself.
#[derive(Clone, Debug)]
pub struct IngestSettings {
    /// This node's id, stamped into every request as `origin_node`.
    pub node_id: u64,
    /// Resource attribute key added to every resource (e.g. `otelraft.node`).
    /// An empty key disables the resource processor.
    pub node_label_key: String,
    /// The value for `node_label_key`: the receiving node's name.
    pub node_label_value: String,
    /// Largest accepted request, in bytes, after decompression. Enforced while
    /// reading and while decompressing, so no request allocates more.
    pub max_request_bytes: usize,
    /// Tokens a request must carry; `None`: open.
    pub auth: Option<Arc<crate::auth::Tokens>>,
    /// What one request may contain.
    pub limits: crate::config::IngestLimits,
    /// Bytes every request being read or decoded holds at once.
    pub decode_memory_bytes: usize,
    /// Requests decompressed and decoded at once.
    pub decode_concurrency: usize,
    /// How long a request waits for a decode slot before it is refused as
    /// overloaded.
    pub decode_wait: Duration,
    /// How long a client may take to send a body.
    pub body_timeout: Duration,
    /// How long a request may take from its headers to its answer.
    pub request_timeout: Duration,
    /// Connection caps and timeouts of the two listeners.
    pub connections: crate::tls::ConnectionsSection,
}

impl IngestSettings {
    /// The default for `max_request_bytes`: 64 MiB.
    pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 << 20;
    /// The default for `decode_memory_bytes`: 512 MiB.
    pub const DEFAULT_DECODE_MEMORY_BYTES: usize = 512 << 20;
}

impl Default for IngestSettings {
    /// Defaults for tests and for the config module to start from.
    fn default() -> Self {
        IngestSettings {
            node_id: 0,
            node_label_key: "otelraft.node".to_string(),
            node_label_value: String::new(),
            max_request_bytes: Self::DEFAULT_MAX_REQUEST_BYTES,
            auth: None,
            limits: crate::config::IngestLimits::default(),
            decode_memory_bytes: Self::DEFAULT_DECODE_MEMORY_BYTES,
            decode_concurrency: 2,
            decode_wait: Duration::from_secs(5),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            connections: crate::tls::ConnectionsSection::default(),
        }
    }
}

/// The core both receivers share: where requests go, how they are stamped and
/// labelled, and where outcomes are counted.
pub struct Ingest {
    handler: Arc<dyn IngestHandler>,
    settings: IngestSettings,
    metrics: Arc<Metrics>,
    admission: admission::Admission,
    /// One limiter per refusal reason: a flood of one kind of bad request
    /// neither floods the log nor hides another kind.
    refusal_logs: std::sync::Mutex<
        std::collections::HashMap<&'static str, Arc<crate::log_limit::LogLimiter>>,
    >,
}

impl Ingest {
    /// Builds the shared core; wrap it in an `Arc` and hand it to
    /// [`serve_grpc`] and [`serve_http`].
    pub fn new(
        handler: Arc<dyn IngestHandler>,
        settings: IngestSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let admission = admission::Admission::new(
            settings.decode_memory_bytes,
            settings.decode_concurrency,
            settings.decode_wait,
        );
        Ingest {
            handler,
            settings,
            metrics,
            admission,
            refusal_logs: Default::default(),
        }
    }

    /// The settings this core was built with (the receivers read the size limit).
    pub fn settings(&self) -> &IngestSettings {
        &self.settings
    }
}

/// The outcome of a successful submit: the request is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The log index of the entry that carries the request.
    pub log_index: u64,
}

/// Why a submit did not commit. `retryable()` decides between OTLP's
/// retryable (429/503, UNAVAILABLE) and permanent answers.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// The cluster cannot take more right now: too many bytes wait for
    /// commit on this node, or the retained log is at its disk budget.
    #[error("{reason}; retry after {retry_after:?}")]
    Overloaded {
        /// Which limit was hit, for the client and the log.
        reason: String,
        /// Hint for the client.
        retry_after: Duration,
    },
    /// No leader is known, or the leader cannot be reached.
    #[error("no leader available: {reason}; retry after {retry_after:?}")]
    NoLeader {
        /// What went wrong, for the client and the log.
        reason: String,
        /// Hint for the client.
        retry_after: Duration,
    },
    /// The request alone exceeds what the cluster can accept in one entry.
    #[error("request too large: {0}")]
    TooLarge(String),
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// A forwarded write that is not what a receiver would have proposed
    /// (wrong size, undecodable, bad data, or a wrong record count).
    #[error("invalid forwarded write: {0}")]
    Invalid(String),
    /// Anything else; the data may or may not be committed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SubmitError {
    /// Whether a client should retry the same request.
    pub fn retryable(&self) -> bool {
        !matches!(self, SubmitError::TooLarge(_) | SubmitError::Invalid(_))
    }

    /// The retry hint to send, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SubmitError::Overloaded { retry_after, .. }
            | SubmitError::NoLeader { retry_after, .. } => Some(*retry_after),
            SubmitError::ShuttingDown | SubmitError::Internal(_) => Some(Duration::from_secs(1)),
            SubmitError::TooLarge(_) | SubmitError::Invalid(_) => None,
        }
    }

    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SubmitError::Overloaded { .. } => "overloaded",
            SubmitError::NoLeader { .. } => "no_leader",
            SubmitError::TooLarge(_) => "too_large",
            SubmitError::Invalid(_) => "invalid",
            SubmitError::ShuttingDown => "shutting_down",
            SubmitError::Internal(_) => "internal",
        }
    }
}

/// The future a handler returns.
pub type SubmitFuture = Pin<Box<dyn Future<Output = Result<Receipt, SubmitError>> + Send>>;

/// Where decoded requests go. Implemented by the cluster (commit through Raft)
/// and by test doubles in protocol tests.
pub trait IngestHandler: Send + Sync + 'static {
    /// Commits one request; resolves only after the commit (or refusal).
    fn submit(&self, request: IngestRequest) -> SubmitFuture;
}
