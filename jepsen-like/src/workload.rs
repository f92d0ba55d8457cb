//! The workload: concurrent OTLP clients, each sending small requests of
//! logs or metrics, over gRPC or HTTP, to a random member, one at a time.
//!
//! Every record carries a unique id (`Op::record_id`). An operation is never
//! retried: a retry would be a second operation with the same ids, and the
//! checker could no longer tell a retry from a duplicate.
//!
//! Classification, which the checker's verdicts rest on:
//! - `Ok`: 200 / OK.
//! - `Fail`: nothing can have been committed. A 4xx; a connection that was
//!   never made; or a refusal the server makes before proposing (`no leader
//!   available`, `node is shutting down`, an in-flight or log budget).
//! - `Unknown`: everything else, timeouts first.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use crate::history::{record_id, Clock, Op, Outcome, Protocol, Signal};
use crate::sinks::ID_LABEL;

/// Longest a client waits for an answer before calling it unknown. Below
/// the nodes' 5 s commit timeout on purpose: a client stuck on a paused or
/// isolated member stops measuring the rest of the cluster, so it gives up
/// early (Jepsen's clients do the same) and moves on to another member.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);
/// Most records per request.
const MAX_RECORDS: u32 = 5;
/// Pause between a client's operations.
const THINK: Duration = Duration::from_millis(5);
/// Pause after an operation that did not succeed, as an OTLP exporter
/// backs off, so a fast-failing member does not flood the history.
const BACKOFF: Duration = Duration::from_millis(50);
/// The metric every workload point belongs to.
pub const METRIC: &str = "jl_probe";
/// The prefix of every workload log body.
pub const BODY_PREFIX: &str = "jl-";

/// Refusals the server makes before anything is proposed. `internal error`
/// wraps a forward whose outcome is unknown, so it is checked first.
const DEFINITE_REFUSALS: [&str; 4] = [
    "no leader available",
    "node is shutting down",
    "too much data in flight",
    "is at its budget",
];

/// The members clients may send to, kept current by the harness.
#[derive(Clone, Default)]
pub struct Targets(Arc<RwLock<Vec<(u64, Ipv4Addr)>>>);

impl Targets {
    /// Replaces the list.
    pub fn set(&self, targets: Vec<(u64, Ipv4Addr)>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = targets;
    }

    /// The current list.
    pub fn get(&self) -> Vec<(u64, Ipv4Addr)> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn pick(&self, rng: &mut StdRng) -> Option<(u64, Ipv4Addr)> {
        let t = self.0.read().unwrap_or_else(|p| p.into_inner());
        if t.is_empty() {
            return None;
        }
        Some(t[rng.random_range(0..t.len())])
    }
}

/// Shared by all clients of a run.
#[derive(Clone)]
pub struct Workload {
    /// Where to send.
    pub targets: Targets,
    /// The run's clock.
    pub clock: Clock,
    /// Next operation number.
    pub next_op: Arc<AtomicU64>,
    /// Set to stop the clients after their current operation.
    pub stop: Arc<AtomicBool>,
    /// Completed operations.
    pub ops: mpsc::UnboundedSender<Op>,
}

/// One client's loop; spawn it on the clients namespace's runtime.
pub async fn client(w: Workload, client: u32, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(client) << 32));
    let http = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(CLIENT_TIMEOUT)
        .build()
    {
        Ok(h) => h,
        Err(_) => return,
    };
    while !w.stop.load(Ordering::SeqCst) {
        let Some((node, ip)) = w.targets.pick(&mut rng) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let op = w.next_op.fetch_add(1, Ordering::SeqCst);
        let protocol = if rng.random_bool(0.5) {
            Protocol::Grpc
        } else {
            Protocol::Http
        };
        let signal = if rng.random_bool(0.5) {
            Signal::Logs
        } else {
            Signal::Metrics
        };
        let records = rng.random_range(1..=MAX_RECORDS);
        let invoke_ms = w.clock.now_ms();
        let result = tokio::time::timeout(
            CLIENT_TIMEOUT,
            send(&http, ip, protocol, signal, op, records),
        )
        .await
        .unwrap_or_else(|_| Err((Outcome::Unknown, "client timeout".to_string())));
        let (outcome, error) = match result {
            Ok(()) => (Outcome::Ok, None),
            Err((o, e)) => (o, Some(e)),
        };
        let pause = if outcome == Outcome::Ok {
            THINK
        } else {
            BACKOFF
        };
        let _ = w.ops.send(Op {
            op,
            client,
            node,
            protocol,
            signal,
            records,
            invoke_ms,
            complete_ms: w.clock.now_ms(),
            outcome,
            error,
        });
        tokio::time::sleep(pause).await;
    }
}

type SendResult = Result<(), (Outcome, String)>;

async fn send(
    http: &reqwest::Client,
    ip: Ipv4Addr,
    protocol: Protocol,
    signal: Signal,
    op: u64,
    records: u32,
) -> SendResult {
    let now = now_nanos();
    match (protocol, signal) {
        (Protocol::Grpc, Signal::Logs) => {
            let mut c = LogsServiceClient::new(grpc_channel(ip)?);
            c.export(logs_request(op, records, now))
                .await
                .map(drop)
                .map_err(classify_grpc)
        }
        (Protocol::Grpc, Signal::Metrics) => {
            let mut c = MetricsServiceClient::new(grpc_channel(ip)?);
            c.export(metrics_request(op, records, now))
                .await
                .map(drop)
                .map_err(classify_grpc)
        }
        (Protocol::Http, Signal::Logs) => {
            let body = logs_request(op, records, now).encode_to_vec();
            post(http, format!("http://{ip}:4318/v1/logs"), body).await
        }
        (Protocol::Http, Signal::Metrics) => {
            let body = metrics_request(op, records, now).encode_to_vec();
            post(http, format!("http://{ip}:4318/v1/metrics"), body).await
        }
    }
}

/// A channel per request: a connection that the nemesis broke must not be
/// reused, and refused connections must show up as such.
fn grpc_channel(ip: Ipv4Addr) -> Result<tonic::transport::Channel, (Outcome, String)> {
    tonic::transport::Endpoint::from_shared(format!("http://{ip}:4317"))
        .map(|e| {
            e.connect_timeout(Duration::from_secs(1))
                .timeout(CLIENT_TIMEOUT)
                .connect_lazy()
        })
        .map_err(|e| (Outcome::Fail, format!("endpoint: {e}")))
}

async fn post(http: &reqwest::Client, url: String, body: Vec<u8>) -> SendResult {
    let resp = http
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            let outcome = if e.is_connect() {
                Outcome::Fail
            } else {
                Outcome::Unknown
            };
            (outcome, format!("http: {e}"))
        })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&resp.bytes().await.unwrap_or_default()).into_owned();
    let outcome = if status.is_client_error() && status.as_u16() != 429 {
        Outcome::Fail
    } else {
        refusal_outcome(&text)
    };
    Err((
        outcome,
        format!("HTTP {}: {}", status.as_u16(), text.trim()),
    ))
}

fn classify_grpc(s: tonic::Status) -> (Outcome, String) {
    use tonic::Code;
    let msg = s.message().to_string();
    let outcome = match s.code() {
        Code::InvalidArgument | Code::ResourceExhausted if !is_retry_hint(&s) => Outcome::Fail,
        // Refused by the client's own connector: no byte was sent. (A
        // server's "internal error" may quote a connect error of its own.)
        Code::Unavailable
            if msg.contains("tcp connect error") && !msg.contains("internal error") =>
        {
            Outcome::Fail
        }
        Code::Unavailable | Code::ResourceExhausted => refusal_outcome(&msg),
        _ => Outcome::Unknown,
    };
    (outcome, format!("gRPC {:?}: {msg}", s.code()))
}

/// RESOURCE_EXHAUSTED with RetryInfo is a retryable overload, not "too large".
fn is_retry_hint(s: &tonic::Status) -> bool {
    !s.details().is_empty()
}

fn refusal_outcome(message: &str) -> Outcome {
    if !message.contains("internal error") && DEFINITE_REFUSALS.iter().any(|m| message.contains(m))
    {
        Outcome::Fail
    } else {
        Outcome::Unknown
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", "jepsen-like".to_string())],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "jepsen-like".to_string(),
        ..Default::default()
    })
}

/// `records` log records with bodies `jl-{op}-{i}`.
pub fn logs_request(op: u64, records: u32, now: u64) -> ExportLogsServiceRequest {
    let log_records = (0..records)
        .map(|i| LogRecord {
            time_unix_nano: now,
            observed_time_unix_nano: now,
            severity_number: 9,
            severity_text: "INFO".to_string(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "{BODY_PREFIX}{}",
                    record_id(op, i)
                ))),
            }),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `records` points of the gauge `jl_probe`, each with its own `jl_id`.
pub fn metrics_request(op: u64, records: u32, now: u64) -> ExportMetricsServiceRequest {
    let data_points = (0..records)
        .map(|i| NumberDataPoint {
            attributes: vec![kv(ID_LABEL, record_id(op, i))],
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsInt(1)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![Metric {
                    name: METRIC.to_string(),
                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_made_before_proposing_count_as_failures() {
        assert_eq!(
            refusal_outcome("no leader available: no leader is known; retry after 1s"),
            Outcome::Fail
        );
        assert_eq!(
            refusal_outcome("too much data in flight on this node; retry after 1s"),
            Outcome::Fail
        );
        // A forward whose answer was lost wraps the leader's message.
        assert_eq!(
            refusal_outcome("internal error: forward to leader 2: node is shutting down"),
            Outcome::Unknown
        );
        assert_eq!(
            refusal_outcome("internal error: not committed within 5000 ms"),
            Outcome::Unknown
        );
    }
}
