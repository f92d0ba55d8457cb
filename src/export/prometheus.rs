//! Prometheus remote write 1.0 sink.
//!
//! - [`naming`]: OTLP metric, unit and attribute names to Prometheus names.
//! - [`mapping`]: OTLP data points to samples (sums, gauges, histograms,
//!   summaries, `target_info`).

pub mod mapping;
pub mod naming;
