//! Test support for otelraft's integration tests and the jepsen-like
//! harness. Nothing here ships in the `otelraft` binary.
//!
//! # Layout
//!
//! - [`cluster`]: real `otelraft` processes on loopback ports; kill, stop,
//!   pause, restart, status, CLI runs.
//! - [`load`]: a steady logs client that records what was acked and when.
//! - [`loki`]: a strict in-process Loki receiver with Loki's duplicate
//!   detection; [`loki::decode`] parses its selectors and push bodies.
//! - [`metrics`]: OTLP metric requests (gauges, delta sums) posted to a node.
//! - [`peer`]: calls to a member's peer port with a certificate of our
//!   choosing, and hand-built Raft messages.
//! - [`prometheus`]: Debian's `prometheus` with the remote-write receiver on.
//! - [`s3`]: an s3s-fs server with SigV4 and conditional puts.
//! - [`steady`]: the hostile-input suite's OpenTelemetry SDK client and its
//!   sinks, with the exactly-once delivery check.

pub mod cluster;
pub mod load;
pub mod loki;
pub mod metrics;
pub mod peer;
pub mod prometheus;
pub mod s3;
pub mod steady;
