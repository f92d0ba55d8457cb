//! The OTLP requests `otelraft bench` sends: logs with fixed-size bodies
//! (or varied service logs), and gauges with one data point per record.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::realistic::string_kv;

/// One request ready to send, in both encodings the transports need.
#[derive(Clone)]
pub enum Payload {
    /// A logs request.
    Logs(ExportLogsServiceRequest, Bytes),
    /// A metrics request.
    Metrics(ExportMetricsServiceRequest, Bytes),
}

impl Payload {
    /// The protobuf body.
    pub fn body(&self) -> &Bytes {
        match self {
            Payload::Logs(_, b) | Payload::Metrics(_, b) => b,
        }
    }

    /// The OTLP/HTTP path.
    pub fn path(&self) -> &'static str {
        match self {
            Payload::Logs(..) => "/v1/logs",
            Payload::Metrics(..) => "/v1/metrics",
        }
    }

    /// Wraps a logs request.
    pub fn logs(request: ExportLogsServiceRequest) -> Self {
        let body = Bytes::from(request.encode_to_vec());
        Payload::Logs(request, body)
    }

    /// Wraps a metrics request.
    pub fn metrics(request: ExportMetricsServiceRequest) -> Self {
        let body = Bytes::from(request.encode_to_vec());
        Payload::Metrics(request, body)
    }
}

fn bench_resource() -> Resource {
    Resource {
        attributes: vec![string_kv("service.name", "otelraft-bench")],
        ..Default::default()
    }
}

/// An OTLP logs request with one record per body, under a
/// `service.name = otelraft-bench` resource. Shared with the tests.
pub fn logs_request(bodies: &[String]) -> ExportLogsServiceRequest {
    let log_records = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            severity_text: "INFO".into(),
            severity_number: 9,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(body.clone())),
            }),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(bench_resource()),
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A metrics request of `points` gauge data points, each a distinct series
/// (`point = i`) with an attribute value of `attr_bytes` bytes.
pub fn metrics_request(points: usize, attr_bytes: usize) -> ExportMetricsServiceRequest {
    let pad = "x".repeat(attr_bytes);
    let data_points = (0..points)
        .map(|i| NumberDataPoint {
            attributes: vec![
                string_kv("point", &i.to_string()),
                KeyValue {
                    key: "pad".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(pad.clone())),
                    }),
                    ..Default::default()
                },
            ],
            time_unix_nano: 1_700_000_000_000_000_000,
            value: Some(number_data_point::Value::AsDouble(i as f64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(bench_resource()),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "bench_value".into(),
                    unit: "1".into(),
                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
