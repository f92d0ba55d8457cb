//! OTLP metrics to Prometheus samples (helper-owned; interface only).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

use crate::export::dead_letter::Reason;

/// One Prometheus sample mapped from an OTLP data point, before the
/// per-series ordering checks.
#[derive(Clone, Debug, PartialEq)]
pub struct MappedSample {
    /// Label pairs sorted by name with unique names; `__name__` included.
    pub labels: Vec<(String, String)>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub value: f64,
}

/// An OTLP point that remote write 1.0 cannot carry, with why.
#[derive(Clone, Debug, PartialEq)]
pub struct Unmappable {
    pub reason: Reason,
    /// The OTLP metric name (and the Prometheus name when known).
    pub subject: String,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// Maps every data point of `req` in request order (resource, scope, metric,
/// point), appending to `out`; points that cannot be mapped go to `refused`.
/// `fallback_ts_ms` stamps points whose OTLP timestamp is zero.
pub fn map_metrics(
    req: &ExportMetricsServiceRequest,
    fallback_ts_ms: i64,
    out: &mut Vec<MappedSample>,
    refused: &mut Vec<Unmappable>,
) {
    let _ = (req, fallback_ts_ms, out, refused);
}
