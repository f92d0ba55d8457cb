//! `otelraft bench`: a closed-loop OTLP logs load generator. Each worker
//! sends one request, waits for its acknowledgement, and sends the next, so
//! every counted record was acknowledged after a quorum commit.
//!
//! It reports acknowledged records/s, payload MB/s, ack latency percentiles,
//! refusals by status, and, given the members' admin endpoints, the fsyncs
//! the cluster performed per acknowledged request.

pub mod realistic;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

/// What to send and where.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    /// OTLP HTTP base URLs (`http://host:4318`) or gRPC endpoints
    /// (`http://host:4317`); requests rotate across them.
    pub targets: Vec<String>,
    /// Use OTLP gRPC instead of HTTP.
    pub grpc: bool,
    /// Concurrent closed-loop workers.
    pub concurrency: usize,
    /// Log records per request.
    pub records: usize,
    /// Bytes of body per record.
    pub record_bytes: usize,
    /// How long to send.
    pub duration: Duration,
    /// Admin base URLs to read `otelraft_storage_fsyncs_total` from.
    pub admin: Vec<String>,
    /// Send varied service logs ([`realistic::logs`], a pool of distinct
    /// requests) instead of one request of `record_bytes` bodies repeated;
    /// `record_bytes` is then ignored.
    pub realistic: bool,
}

/// Distinct requests in the realistic pool: more than a zstd window's worth,
/// so archive blocks cannot compress one request against its repeats.
const REALISTIC_POOL: u64 = 256;

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A target could not be used.
    #[error("target {target}: {message}")]
    Target {
        /// The target.
        target: String,
        /// What failed.
        message: String,
    },
}

impl BenchError {
    /// Whether running again may help.
    pub fn retryable(&self) -> bool {
        true
    }
}

/// The measured outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// Seconds actually measured.
    pub seconds: f64,
    /// Requests acknowledged.
    pub acked_requests: u64,
    /// Records acknowledged per second.
    pub records_per_second: f64,
    /// Encoded request MB (10^6 bytes) acknowledged per second.
    pub payload_mb_per_second: f64,
    /// Ack latency percentiles in milliseconds.
    pub latency_ms_p50: f64,
    /// 99th percentile.
    pub latency_ms_p99: f64,
    /// Maximum.
    pub latency_ms_max: f64,
    /// Refused or failed requests by status.
    pub refusals: BTreeMap<String, u64>,
    /// Durable commits summed over the given members during the run.
    pub fsyncs: Option<u64>,
    /// `fsyncs / acked_requests`.
    pub fsyncs_per_acked_request: Option<f64>,
    /// Encoded size of one request.
    pub request_bytes: usize,
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
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("otelraft-bench".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn fsync_total(client: &reqwest::Client, admin: &[String]) -> Option<u64> {
    let mut total = 0.0;
    for base in admin {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("otelraft_storage_fsyncs_total "))?;
        total += line.split_whitespace().nth(1)?.parse::<f64>().ok()?;
    }
    Some(total as u64)
}

struct WorkerResult {
    latencies_us: Vec<u64>,
    refusals: BTreeMap<String, u64>,
    acked_bytes: u64,
}

/// Runs the benchmark.
pub async fn run(spec: BenchSpec) -> Result<BenchReport, BenchError> {
    let requests: Vec<ExportLogsServiceRequest> = if spec.realistic {
        (0..REALISTIC_POOL)
            .map(|seed| realistic::logs(seed, spec.records))
            .collect()
    } else {
        vec![logs_request(&vec![
            "x".repeat(spec.record_bytes);
            spec.records
        ])]
    };
    let pool: Arc<Vec<(ExportLogsServiceRequest, Bytes)>> = Arc::new(
        requests
            .into_iter()
            .map(|r| {
                let body = Bytes::from(r.encode_to_vec());
                (r, body)
            })
            .collect(),
    );
    let request_bytes = pool.iter().map(|(_, b)| b.len()).sum::<usize>() / pool.len().max(1);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(spec.concurrency)
        .build()
        .map_err(|e| BenchError::Target {
            target: "http client".into(),
            message: e.to_string(),
        })?;
    let mut grpc_clients = Vec::new();
    if spec.grpc {
        for t in &spec.targets {
            let c = LogsServiceClient::connect(t.clone())
                .await
                .map_err(|e| BenchError::Target {
                    target: t.clone(),
                    message: e.to_string(),
                })?
                .max_encoding_message_size(usize::MAX);
            grpc_clients.push(c);
        }
    }
    let fsyncs_before = fsync_total(&http, &spec.admin).await;
    let started = Instant::now();
    let deadline = started + spec.duration;
    let spec_concurrency = spec.concurrency;
    let mut tasks = Vec::new();
    for w in 0..spec.concurrency {
        let http = http.clone();
        let pool = pool.clone();
        let target = spec.targets[w % spec.targets.len()].clone();
        let grpc = grpc_clients.get(w % grpc_clients.len().max(1)).cloned();
        tasks.push(tokio::spawn(async move {
            let mut r = WorkerResult {
                latencies_us: Vec::new(),
                refusals: BTreeMap::new(),
                acked_bytes: 0,
            };
            let mut next = w;
            while Instant::now() < deadline {
                let (req, body) = &pool[next % pool.len()];
                next += spec_concurrency;
                let t0 = Instant::now();
                let outcome = match &grpc {
                    Some(c) => match c.clone().export(req.clone()).await {
                        Ok(_) => Ok(()),
                        Err(s) => Err(format!("grpc {:?}", s.code())),
                    },
                    None => match http
                        .post(format!("{target}/v1/logs"))
                        .header("content-type", "application/x-protobuf")
                        .body(body.clone())
                        .send()
                        .await
                    {
                        Ok(resp) if resp.status().is_success() => Ok(()),
                        Ok(resp) => Err(format!("http {}", resp.status().as_u16())),
                        Err(e) => Err(format!(
                            "transport {}",
                            if e.is_timeout() { "timeout" } else { "error" }
                        )),
                    },
                };
                match outcome {
                    Ok(()) => {
                        r.latencies_us.push(t0.elapsed().as_micros() as u64);
                        r.acked_bytes += body.len() as u64;
                    }
                    Err(reason) => {
                        *r.refusals.entry(reason).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            r
        }));
    }
    let mut latencies = Vec::new();
    let mut refusals = BTreeMap::new();
    let mut acked_bytes = 0u64;
    for t in tasks {
        if let Ok(r) = t.await {
            latencies.extend(r.latencies_us);
            acked_bytes += r.acked_bytes;
            for (k, v) in r.refusals {
                *refusals.entry(k).or_default() += v;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let fsyncs_after = fsync_total(&http, &spec.admin).await;
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i] as f64 / 1000.0
    };
    let acked = latencies.len() as u64;
    let fsyncs = match (fsyncs_before, fsyncs_after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    Ok(BenchReport {
        seconds,
        acked_requests: acked,
        records_per_second: (acked as f64 * spec.records as f64) / seconds,
        payload_mb_per_second: acked_bytes as f64 / seconds / 1e6,
        latency_ms_p50: pct(0.50),
        latency_ms_p99: pct(0.99),
        latency_ms_max: latencies.last().map_or(0.0, |l| *l as f64 / 1000.0),
        refusals,
        fsyncs,
        fsyncs_per_acked_request: fsyncs
            .filter(|_| acked > 0)
            .map(|f| f as f64 / acked as f64),
        request_bytes,
    })
}
