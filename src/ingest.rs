//! OTLP ingest: the gRPC (4317) and HTTP (4318) receivers every member runs.
//!
//! Protocol code depends only on [`IngestHandler`]; it never imports Raft or
//! storage. A handler takes one decoded, validated request and resolves once
//! the request is committed (or refused).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::pb::log::IngestRequest;

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
    /// Too many bytes are waiting for commit on this node.
    #[error("too much data in flight on this node; retry after {retry_after:?}")]
    Overloaded {
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
    /// Anything else; the data may or may not be committed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SubmitError {
    /// Whether a client should retry the same request.
    pub fn retryable(&self) -> bool {
        !matches!(self, SubmitError::TooLarge(_))
    }

    /// The retry hint to send, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SubmitError::Overloaded { retry_after } | SubmitError::NoLeader { retry_after, .. } => {
                Some(*retry_after)
            }
            SubmitError::ShuttingDown | SubmitError::Internal(_) => Some(Duration::from_secs(1)),
            SubmitError::TooLarge(_) => None,
        }
    }

    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SubmitError::Overloaded { .. } => "overloaded",
            SubmitError::NoLeader { .. } => "no_leader",
            SubmitError::TooLarge(_) => "too_large",
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
