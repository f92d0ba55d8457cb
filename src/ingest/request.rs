//! What the shared pipeline needs from each OTLP export request type, so one
//! generic path serves logs, metrics and traces.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::{resource, validate};
use crate::pb::log::Signal;

/// An `Export*ServiceRequest`: decodable from protobuf and OTLP JSON, with a
/// record count, validation and the resource processor.
pub(crate) trait OtlpRequest:
    prost::Message + Default + serde::de::DeserializeOwned + Send + 'static
{
    /// The signal this request type carries.
    const SIGNAL: Signal;
    /// The protobuf message name, for error messages.
    const TYPE_NAME: &'static str;
    /// Log records, data points or spans.
    fn records(&self) -> u64;
    /// `Err` names the first piece of bad data; the request must be refused.
    fn validate(&self) -> Result<(), String>;
    /// Applies the resource processor to every resource in the request.
    fn label_resources(&mut self, key: &str, value: &str);
}

impl OtlpRequest for ExportLogsServiceRequest {
    const SIGNAL: Signal = Signal::Logs;
    const TYPE_NAME: &'static str = "ExportLogsServiceRequest";

    fn records(&self) -> u64 {
        validate::count_logs(self)
    }

    fn validate(&self) -> Result<(), String> {
        validate::validate_logs(self)
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

    fn records(&self) -> u64 {
        validate::count_metrics(self)
    }

    fn validate(&self) -> Result<(), String> {
        validate::validate_metrics(self)
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

    fn records(&self) -> u64 {
        validate::count_traces(self)
    }

    fn validate(&self) -> Result<(), String> {
        validate::validate_traces(self)
    }

    fn label_resources(&mut self, key: &str, value: &str) {
        for r in &mut self.resource_spans {
            resource::label(&mut r.resource, key, value);
        }
    }
}
