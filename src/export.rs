//! Exactly-once export of committed entries to sinks; runs on the leader.
//!
//! # Layout
//!
//! - [`config`]: the `[[sinks]]` TOML sections and their validation.
//! - [`dead_letter`]: reason codes for items kept out of a sink.
//! - [`retry`]: which sink responses are retried, and the backoff between tries.
//! - [`http`]: the one HTTP client every sink sends through.
//! - [`prometheus`]: remote write 1.0 with the export-cursor marker series.
//! - [`loki`]: Loki push API (protobuf + snappy) and Loki 3's OTLP endpoint.
//! - `sink`: the trait a sink implements: build a batch, send it, recover.
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

pub mod config;
pub mod dead_letter;
pub mod http;
pub mod loki;
pub mod prometheus;
pub mod retry;
