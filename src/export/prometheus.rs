//! Prometheus remote write 1.0 sink.
//!
//! - [`naming`]: OTLP metric, unit and attribute names to Prometheus names.
//! - [`mapping`]: OTLP data points to samples (sums, gauges, histograms,
//!   summaries, `target_info`).
//! - [`request`]: a log range to one atomic remote-write request, with the
//!   per-series ordering checks and the export-cursor marker sample.
//! - `marker`: reads the marker back after a leader change.
//! - `sink`: ties them to the HTTP service.

pub mod mapping;
mod marker;
pub mod naming;
pub mod request;
mod sink;

pub use self::sink::PrometheusSink;
