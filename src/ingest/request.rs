//! What the shared pipeline needs from each OTLP export request type, so one
//! generic path serves logs, metrics and traces.

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use super::resource;
use super::validate::{self, Rejected};
use crate::config::IngestLimits;
use crate::pb::log::Signal;

/// Checks an encoded request the way a receiver checked it before it was
/// proposed: at most `max_bytes`, decodable as `signal`'s request, valid,
/// and holding `records` records. The leader runs it on forwarded writes,
/// which it must not commit on a member's word alone.
pub fn check_encoded(
    signal: Signal,
    payload: &[u8],
    records: u64,
    max_bytes: usize,
    limits: &IngestLimits,
) -> Result<(), String> {
    if payload.len() > max_bytes {
        return Err(format!(
            "{} bytes exceed the limit of {max_bytes}",
            payload.len()
        ));
    }
    match signal {
        Signal::Logs => check::<ExportLogsServiceRequest>(payload, records, limits),
        Signal::Metrics => check::<ExportMetricsServiceRequest>(payload, records, limits),
        Signal::Traces => check::<ExportTraceServiceRequest>(payload, records, limits),
        Signal::Unspecified => Err("no signal".to_string()),
    }
}

fn check<T: OtlpRequest>(
    payload: &[u8],
    records: u64,
    limits: &IngestLimits,
) -> Result<(), String> {
    let mut request = T::decode(payload).map_err(|e| format!("not an {}: {e}", T::TYPE_NAME))?;
    // The receiver added its node label to every resource after its own
    // check: one attribute more than the client sent is the receiver's.
    let labelled = IngestLimits {
        max_attributes: limits.max_attributes.saturating_add(1),
        ..limits.clone()
    };
    request.reject_invalid(&labelled).into_result()?;
    match request.records() {
        n if n == records => Ok(()),
        n => Err(format!("{n} records, but the write says {records}")),
    }
}

/// An `Export*ServiceRequest`: decodable from protobuf and OTLP JSON, with a
/// record count, validation and the resource processor.
pub(crate) trait OtlpRequest:
    prost::Message + Default + serde::de::DeserializeOwned + Send + 'static
{
    /// The signal this request type carries.
    const SIGNAL: Signal;
    /// The protobuf message name, for error messages.
    const TYPE_NAME: &'static str;
    /// The `Export*ServiceResponse` a gRPC call answers with.
    type Response: prost::Message + Default + Send + 'static;
    /// Log records, data points or spans.
    fn records(&self) -> u64;
    /// Removes every item that fails a check (see `validate`) and says what
    /// went. What is left is valid.
    fn reject_invalid(&mut self, limits: &IngestLimits) -> Rejected;
    /// The answer to a request of which `rejected` records were refused,
    /// with `message` saying why: OTLP's `partial_success`.
    fn partial_success(rejected: u64, message: String) -> Self::Response;
    /// The answer's `partial_success` in OTLP/JSON (int64 as a string, as
    /// the protobuf JSON mapping writes it).
    fn partial_success_json(rejected: u64, message: &str) -> serde_json::Value {
        serde_json::json!({
            "partialSuccess": {
                Self::REJECTED_FIELD: rejected.to_string(),
                "errorMessage": message,
            }
        })
    }
    /// The JSON name of the response's rejected count.
    const REJECTED_FIELD: &'static str;
    /// Applies the resource processor to every resource in the request.
    fn label_resources(&mut self, key: &str, value: &str);
}

impl OtlpRequest for ExportLogsServiceRequest {
    const SIGNAL: Signal = Signal::Logs;
    const TYPE_NAME: &'static str = "ExportLogsServiceRequest";
    type Response = ExportLogsServiceResponse;

    fn records(&self) -> u64 {
        validate::count_logs(self)
    }

    const REJECTED_FIELD: &'static str = "rejectedLogRecords";

    fn reject_invalid(&mut self, limits: &IngestLimits) -> Rejected {
        validate::reject_invalid_logs(self, limits)
    }

    fn partial_success(rejected: u64, message: String) -> Self::Response {
        Self::Response {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: rejected as i64,
                error_message: message,
            }),
        }
    }

    fn label_resources(&mut self, key: &str, value: &str) {
        for r in &mut self.resource_logs {
            resource::label(&mut r.resource, key, value);
        }
    }
}

impl OtlpRequest for ExportMetricsServiceRequest {
    const SIGNAL: Signal = Signal::Metrics;
    const TYPE_NAME: &'static str = "ExportMetricsServiceRequest";
    type Response = ExportMetricsServiceResponse;

    fn records(&self) -> u64 {
        validate::count_metrics(self)
    }

    const REJECTED_FIELD: &'static str = "rejectedDataPoints";

    fn reject_invalid(&mut self, limits: &IngestLimits) -> Rejected {
        validate::reject_invalid_metrics(self, limits)
    }

    fn partial_success(rejected: u64, message: String) -> Self::Response {
        Self::Response {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: rejected as i64,
                error_message: message,
            }),
        }
    }

    fn label_resources(&mut self, key: &str, value: &str) {
        for r in &mut self.resource_metrics {
            resource::label(&mut r.resource, key, value);
        }
    }
}

impl OtlpRequest for ExportTraceServiceRequest {
    const SIGNAL: Signal = Signal::Traces;
    const TYPE_NAME: &'static str = "ExportTraceServiceRequest";
    type Response = ExportTraceServiceResponse;

    fn records(&self) -> u64 {
        validate::count_traces(self)
    }

    const REJECTED_FIELD: &'static str = "rejectedSpans";

    fn reject_invalid(&mut self, limits: &IngestLimits) -> Rejected {
        validate::reject_invalid_traces(self, limits)
    }

    fn partial_success(rejected: u64, message: String) -> Self::Response {
        Self::Response {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: rejected as i64,
                error_message: message,
            }),
        }
    }

    fn label_resources(&mut self, key: &str, value: &str) {
        for r in &mut self.resource_spans {
            resource::label(&mut r.resource, key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::ingest::tests::fixtures;

    #[test]
    fn a_forwarded_write_is_checked_as_its_receiver_checked_it() {
        let logs = fixtures::logs(3).encode_to_vec();
        assert_eq!(
            check_encoded(Signal::Logs, &logs, 3, 1 << 20, &IngestLimits::default()),
            Ok(())
        );
        let err =
            check_encoded(Signal::Logs, &logs, 4, 1 << 20, &IngestLimits::default()).unwrap_err();
        assert!(err.contains("3 records"), "{err}");
        let err = check_encoded(Signal::Logs, &logs, 3, 10, &IngestLimits::default()).unwrap_err();
        assert!(err.contains("exceed"), "{err}");
        assert!(check_encoded(
            Signal::Metrics,
            b"\xff\xff\xff",
            1,
            1 << 20,
            &IngestLimits::default()
        )
        .is_err());
        assert!(check_encoded(
            Signal::Unspecified,
            &logs,
            3,
            1 << 20,
            &IngestLimits::default()
        )
        .is_err());
        // A resource at the attribute limit, labelled by its receiver.
        let limits = IngestLimits::default();
        let mut full = fixtures::logs(1);
        full.resource_logs[0]
            .resource
            .get_or_insert_with(Default::default)
            .attributes = (0..limits.max_attributes)
            .map(|i| opentelemetry_proto::tonic::common::v1::KeyValue {
                key: format!("k{i}"),
                ..Default::default()
            })
            .collect();
        assert!(full.reject_invalid(&limits).into_result().is_ok());
        full.label_resources("otelraft.node", "node-1");
        assert_eq!(
            check_encoded(Signal::Logs, &full.encode_to_vec(), 1, 1 << 20, &limits),
            Ok(())
        );
        // Valid protobuf, but data a receiver refuses: a span without ids.
        let mut traces = fixtures::traces(1);
        traces.resource_spans[0].scope_spans[0].spans[0]
            .trace_id
            .clear();
        let err = check_encoded(
            Signal::Traces,
            &traces.encode_to_vec(),
            1,
            1 << 20,
            &IngestLimits::default(),
        )
        .unwrap_err();
        assert!(err.contains("traceId"), "{err}");
    }
}
