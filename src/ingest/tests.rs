//! Shared test support: a recording handler, request fixtures and servers on
//! port 0. Protocol tests live in `tests/http.rs` and `tests/grpc.rs`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{
    Ingest, IngestError, IngestHandler, IngestSettings, Receipt, SubmitError, SubmitFuture,
};
use crate::metrics::Metrics;
use crate::pb::log::IngestRequest;
use crate::tls::{Incoming, Listener};

mod grpc;
mod http;
mod partial;

/// Records every submitted request, or refuses all with a preset error.
#[derive(Default)]
pub(crate) struct RecordingHandler {
    submitted: Mutex<Vec<IngestRequest>>,
    fail_with: Mutex<Option<SubmitError>>,
}

impl RecordingHandler {
    pub(crate) fn fail_with(&self, error: SubmitError) {
        *self.fail_with.lock().unwrap() = Some(error);
    }

    pub(crate) fn submitted(&self) -> Vec<IngestRequest> {
        self.submitted.lock().unwrap().clone()
    }
}

impl IngestHandler for RecordingHandler {
    fn submit(&self, request: IngestRequest) -> SubmitFuture {
        let result = match self.fail_with.lock().unwrap().clone() {
            Some(error) => Err(error),
            None => {
                let mut submitted = self.submitted.lock().unwrap();
                submitted.push(request);
                Ok(Receipt {
                    log_index: submitted.len() as u64,
                })
            }
        };
        Box::pin(async move { result })
    }
}

pub(crate) const NODE_ID: u64 = 7;
pub(crate) const LABEL_KEY: &str = "otelraft.node";
pub(crate) const LABEL_VALUE: &str = "node-7";

pub(crate) fn settings(max_request_bytes: usize) -> IngestSettings {
    IngestSettings {
        node_id: NODE_ID,
        node_label_key: LABEL_KEY.to_string(),
        node_label_value: LABEL_VALUE.to_string(),
        max_request_bytes,
        auth: None,
        ..IngestSettings::default()
    }
}

/// Two node decode slots, one per connection, and no wait for either: a
/// request that finds no slot free at once is refused. Room for 16 MiB
/// requests.
pub(crate) fn one_decode_per_connection() -> IngestSettings {
    let mut settings = settings(16 << 20);
    settings.decode_memory_bytes = 256 << 20;
    settings.decode_concurrency = 2;
    settings.connections.decodes_per_connection = 1;
    settings.decode_wait = std::time::Duration::from_millis(1);
    settings
}

/// A receiver on 127.0.0.1:0 with a recording handler; `stop` shuts it down
/// through the oneshot and checks it exited cleanly.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) handler: Arc<RecordingHandler>,
    pub(crate) metrics: Arc<Metrics>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), IngestError>>,
}

#[derive(Clone, Copy)]
pub(crate) enum Protocol {
    Http,
    Grpc,
}

impl TestServer {
    pub(crate) async fn start(protocol: Protocol, max_request_bytes: usize) -> TestServer {
        Self::start_with(protocol, settings(max_request_bytes)).await
    }

    pub(crate) async fn start_with(protocol: Protocol, settings: IngestSettings) -> TestServer {
        let handler = Arc::new(RecordingHandler::default());
        let metrics = Arc::new(Metrics::new());
        let limits = crate::tls::ConnLimits::from_section(&settings.connections, None);
        let ingest = Arc::new(Ingest::new(handler.clone(), settings, metrics.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stop) = oneshot::channel::<()>();
        let stop = async move {
            let _ = stop.await;
        };
        let task = match protocol {
            Protocol::Http => {
                let incoming = Incoming::new(listener, Listener::OtlpHttp, None, limits).unwrap();
                tokio::spawn(super::serve_http(incoming, ingest, stop))
            }
            Protocol::Grpc => {
                let incoming = Incoming::new(listener, Listener::OtlpGrpc, None, limits).unwrap();
                tokio::spawn(super::serve_grpc(incoming, ingest, stop))
            }
        };
        TestServer {
            addr,
            handler,
            metrics,
            shutdown,
            task,
        }
    }

    pub(crate) async fn stop(self) {
        let _ = self.shutdown.send(());
        let result = tokio::time::timeout(std::time::Duration::from_secs(10), self.task).await;
        result
            .expect("server stops")
            .expect("server task")
            .expect("server exits cleanly");
    }

    /// The value of one rendered metric sample, e.g.
    /// `otelraft_ingest_records_accepted_total{signal="logs"}`; 0 if absent.
    pub(crate) fn metric(&self, sample: &str) -> f64 {
        let rendered = self.metrics.render();
        let line = rendered.lines().find(|l| {
            l.strip_prefix(sample)
                .is_some_and(|rest| rest.starts_with(' '))
        });
        line.and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

/// Valid requests with `n` records each.
pub(crate) mod fixtures {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics,
        ScopeMetrics,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    pub(crate) fn string_value(s: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(Value::StringValue(s.to_string())),
        })
    }

    fn resource() -> Option<Resource> {
        Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: string_value("checkout"),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    pub(crate) fn logs(n: usize) -> ExportLogsServiceRequest {
        logs_with_body(n, "hello")
    }

    pub(crate) fn logs_with_body(n: usize, body: &str) -> ExportLogsServiceRequest {
        let records = (0..n)
            .map(|i| LogRecord {
                time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                body: string_value(body),
                trace_id: vec![0xab; 16],
                span_id: vec![0xcd; 8],
                ..Default::default()
            })
            .collect();
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(),
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    pub(crate) fn metrics(n: usize) -> ExportMetricsServiceRequest {
        let points = (0..n)
            .map(|i| NumberDataPoint {
                value: Some(number_data_point::Value::AsInt(i as i64)),
                ..Default::default()
            })
            .collect();
        let metric = Metric {
            name: "requests".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: points,
            })),
            ..Default::default()
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![metric],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// `n` spans with nothing in them: two bytes each on the wire, 264 once
    /// decoded.
    pub(crate) fn empty_spans(n: usize) -> ExportTraceServiceRequest {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default(); n],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    pub(crate) fn traces(n: usize) -> ExportTraceServiceRequest {
        let spans = (0..n)
            .map(|i| Span {
                trace_id: vec![0x11; 16],
                span_id: vec![i as u8 + 1; 8],
                name: format!("span-{i}"),
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

/// The node label of every resource in a submitted payload.
pub(crate) fn node_labels(
    resources: Vec<Option<opentelemetry_proto::tonic::resource::v1::Resource>>,
) -> Vec<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    resources
        .into_iter()
        .map(|r| {
            let r = r.expect("resource present");
            let attr = r
                .attributes
                .iter()
                .find(|a| a.key == LABEL_KEY)
                .expect("label present");
            match attr.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                other => panic!("label is not a string: {other:?}"),
            }
        })
        .collect()
}
