//! Exactly-once export of committed entries to sinks; runs on the leader.
//!
//! # Layout
//!
//! - [`dead_letter`]: reason codes for items kept out of a sink.
//! - [`budget`]: what a batch may derive from its entries, charged before it is allocated.
//! - [`retry`]: which sink responses are retried, and the backoff between tries.
//! - [`http`]: the one HTTP client every sink sends through.
//! - [`prometheus`]: remote write 1.0 with the export-cursor marker series.
//! - [`loki`]: Loki push API (protobuf + snappy) and Loki 3's OTLP endpoint.
//! - `sink`: the trait a sink implements (build a batch, send it, recover),
//!   and `AnySink`, the configured sink of any kind.
//! - `runner`: the leader-only loop that reads the log from a sink's cursor,
//!   sends, and proposes the cursor advance through Raft.
//!
//! # Exactly once
//!
//! A sink's cursor lives in the replicated state machine. The exporter sends
//! one batch `(cursor, end]`, and only after the sink accepted it proposes
//! `CursorAdvance{from_index: cursor, index: end}`; the next batch is built
//! only after that advance is applied. So at most one batch beyond the
//! committed cursor can be in the sink, and a new leader settles that one
//! batch before it sends anything (see `docs/export.md`).

pub mod budget;
pub mod dead_letter;
pub mod http;
pub mod loki;
pub mod progress;
pub mod prometheus;
pub mod retry;
mod runner;
pub mod sink;

pub use self::progress::{ExportPhase, Registry, SinkProgress};
pub use self::runner::spawn_exporters;

/// The one error type of the export module.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The sink could not be reached, timed out, or answered 5xx/429.
    #[error("sink {sink}: {message}")]
    Unavailable {
        /// Sink name.
        sink: String,
        /// What happened.
        message: String,
        /// The sink's `Retry-After`, if any.
        retry_after: Option<std::time::Duration>,
    },
    /// The sink's answer could not be understood (for example a marker
    /// query that returns something other than a vector).
    #[error("sink {sink}: unexpected answer: {message}")]
    Protocol {
        /// Sink name.
        sink: String,
        /// What was wrong.
        message: String,
    },
    /// This node stopped leading, or the advance could not be committed.
    #[error("not exporting: {0}")]
    NotLeader(String),
    /// Reading the log failed.
    #[error("log read failed: {0}")]
    Store(#[from] crate::store::StoreError),
    /// A request could not be encoded.
    #[error("encoding a request failed: {0}")]
    Encode(String),
}

impl ExportError {
    /// Every export error is retried by the exporter loop (after a backoff,
    /// or after leadership settles); the data waits in the log meanwhile.
    /// `Encode` is a bug, but retrying keeps the data and the error visible.
    pub fn retryable(&self) -> bool {
        true
    }
}
