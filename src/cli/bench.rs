//! `otelraft bench`: an OTLP load generator for logs or metrics over HTTP
//! or gRPC. Each worker sends one request, waits for its acknowledgement,
//! and sends the next (closed loop), so every counted record was
//! acknowledged after a quorum commit. With `rate`, workers pace themselves
//! to that many records per second in total and latency is measured from
//! each request's scheduled time, so a slow server cannot hide queueing.
//!
//! It reports acknowledged records/s, payload MB/s, ack latency p50, p99
//! and max, refusals by HTTP/gRPC status and by the server's own reason,
//! and, given the members' admin endpoints, fsyncs per acknowledged request
//! and the members' CPU seconds per million records (each member reads its
//! own `/proc/self/stat` into `process_cpu_seconds_total`).

pub mod payload;
pub mod realistic;
pub mod scrape;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use tonic::transport::Channel;

pub use payload::{logs_request, metrics_request, Payload};

/// Which OTLP signal to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Log records (one record per body).
    Logs,
    /// Gauge data points (one per record, each its own series).
    Metrics,
}

/// What to send and where.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    /// OTLP HTTP base URLs (`http://host:4318`) or gRPC endpoints
    /// (`http://host:4317`); workers are spread across them.
    pub targets: Vec<String>,
    /// Use OTLP gRPC instead of HTTP.
    pub grpc: bool,
    /// Logs or metrics.
    pub signal: Signal,
    /// Concurrent workers.
    pub concurrency: usize,
    /// Records (log records or data points) per request.
    pub records: usize,
    /// Bytes of body per log record, or of padding attribute per point.
    pub record_bytes: usize,
    /// How long to send.
    pub duration: Duration,
    /// Records per second to offer in total; `None` sends as fast as the
    /// acknowledgements come back.
    pub rate: Option<f64>,
    /// Admin base URLs of the members, for fsyncs, CPU and refusals.
    pub admin: Vec<String>,
    /// Send varied service logs ([`realistic::logs`], a pool of distinct
    /// requests) instead of one request of `record_bytes` bodies repeated;
    /// `record_bytes` is then ignored.
    pub realistic: bool,
    /// The CA (PEM) of `https://` targets and admin URLs.
    pub ca_pem: Option<Vec<u8>>,
    /// Sent as `Authorization: Bearer <token>` with every OTLP request.
    pub token: Option<String>,
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
    /// The signal sent.
    pub signal: Signal,
    /// `grpc` or `http`.
    pub transport: &'static str,
    /// Workers.
    pub concurrency: usize,
    /// Records per request.
    pub records_per_request: usize,
    /// Encoded size of one request.
    pub request_bytes: usize,
    /// The offered rate, if paced.
    pub offered_records_per_second: Option<f64>,
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
    /// Refused or failed requests by HTTP/gRPC status, as the client saw them.
    pub refusals: BTreeMap<String, u64>,
    /// Refused requests by the servers' reason (`otelraft_ingest_requests_refused_total`).
    pub server_refusals: BTreeMap<String, u64>,
    /// Durable commits summed over the given members during the run.
    pub fsyncs: Option<u64>,
    /// `fsyncs / acked_requests`.
    pub fsyncs_per_acked_request: Option<f64>,
    /// CPU seconds the given members used during the run, summed.
    pub server_cpu_seconds: Option<f64>,
    /// `server_cpu_seconds` per million acknowledged records.
    pub server_cpu_seconds_per_million_records: Option<f64>,
}

struct WorkerResult {
    latencies_us: Vec<u64>,
    refusals: BTreeMap<String, u64>,
    acked_bytes: u64,
}

/// A gRPC client of the signal's service, with the authorization value
/// it sends.
#[derive(Clone)]
struct GrpcClient {
    service: GrpcService,
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

#[derive(Clone)]
enum GrpcService {
    Logs(LogsServiceClient<Channel>),
    Metrics(MetricsServiceClient<Channel>),
}

impl GrpcClient {
    async fn connect(target: &str, spec: &BenchSpec) -> Result<Self, BenchError> {
        let bad = |message: String| BenchError::Target {
            target: target.to_string(),
            message,
        };
        let endpoint = Channel::from_shared(target.to_string()).map_err(|e| bad(e.to_string()))?;
        let endpoint = match &spec.ca_pem {
            Some(ca) => endpoint
                .tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
                )
                .map_err(|e| bad(e.to_string()))?,
            None => endpoint,
        };
        let authorization = match &spec.token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| bad("the token is not a valid header value".into()))?,
            ),
            None => None,
        };
        let signal = spec.signal;
        let channel = endpoint.connect().await.map_err(|e| BenchError::Target {
            target: target.to_string(),
            message: e.to_string(),
        })?;
        let service = match signal {
            Signal::Logs => GrpcService::Logs(
                LogsServiceClient::new(channel).max_encoding_message_size(usize::MAX),
            ),
            Signal::Metrics => GrpcService::Metrics(
                MetricsServiceClient::new(channel).max_encoding_message_size(usize::MAX),
            ),
        };
        Ok(GrpcClient {
            service,
            authorization,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    async fn send(&mut self, payload: &Payload) -> Result<(), String> {
        let status = match (&self.service, payload) {
            (GrpcService::Logs(c), Payload::Logs(req, _)) => {
                let request = self.request(req.clone());
                c.clone().export(request).await.err()
            }
            (GrpcService::Metrics(c), Payload::Metrics(req, _)) => {
                let request = self.request(req.clone());
                c.clone().export(request).await.err()
            }
            _ => return Err("client and payload signals differ".to_string()),
        };
        match status {
            None => Ok(()),
            Some(s) => Err(format!("grpc {:?}", s.code())),
        }
    }
}

async fn send_http(
    client: &reqwest::Client,
    target: &str,
    payload: &Payload,
) -> Result<(), String> {
    match client
        .post(format!("{target}{}", payload.path()))
        .header("content-type", "application/x-protobuf")
        .body(payload.body().clone())
        .send()
        .await
    {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(format!("http {}", resp.status().as_u16())),
        Err(e) => Err(format!(
            "transport {}",
            if e.is_timeout() { "timeout" } else { "error" }
        )),
    }
}

fn payloads(spec: &BenchSpec) -> Vec<Payload> {
    match (spec.signal, spec.realistic) {
        (Signal::Logs, true) => (0..REALISTIC_POOL)
            .map(|seed| Payload::logs(realistic::logs(seed, spec.records)))
            .collect(),
        (Signal::Logs, false) => vec![Payload::logs(logs_request(&vec![
            "x".repeat(
                spec.record_bytes
            );
            spec.records
        ]))],
        (Signal::Metrics, _) => vec![Payload::metrics(metrics_request(
            spec.records,
            spec.record_bytes,
        ))],
    }
}

/// Runs the benchmark.
pub async fn run(spec: BenchSpec) -> Result<BenchReport, BenchError> {
    let pool: Arc<Vec<Payload>> = Arc::new(payloads(&spec));
    let request_bytes = pool.iter().map(|p| p.body().len()).sum::<usize>() / pool.len().max(1);
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(spec.concurrency);
    if let Some(ca) = &spec.ca_pem {
        let roots = reqwest::Certificate::from_pem_bundle(ca).map_err(|e| BenchError::Target {
            target: "--ca".into(),
            message: e.to_string(),
        })?;
        builder = builder.tls_certs_only(roots);
    }
    if let Some(token) = &spec.token {
        let mut headers = reqwest::header::HeaderMap::new();
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| BenchError::Target {
                target: "--token".into(),
                message: "not a valid header value".into(),
            })?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    let http = builder.build().map_err(|e| BenchError::Target {
        target: "http client".into(),
        message: e.to_string(),
    })?;
    let mut grpc_clients = Vec::new();
    if spec.grpc {
        for t in &spec.targets {
            grpc_clients.push(GrpcClient::connect(t, &spec).await?);
        }
    }
    // Each worker sends a request every `interval` when paced.
    let interval = spec
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(spec.concurrency as f64 * spec.records as f64 / r));
    let before = scrape::counters(&http, &spec.admin).await;
    let started = Instant::now();
    let deadline = started + spec.duration;
    let spec_concurrency = spec.concurrency;
    let mut tasks = Vec::new();
    for w in 0..spec.concurrency {
        let http = http.clone();
        let pool = pool.clone();
        let target = spec.targets[w % spec.targets.len()].clone();
        let mut grpc = grpc_clients.get(w % grpc_clients.len().max(1)).cloned();
        tasks.push(tokio::spawn(async move {
            let mut r = WorkerResult {
                latencies_us: Vec::new(),
                refusals: BTreeMap::new(),
                acked_bytes: 0,
            };
            let mut next = w;
            // Workers start spread over one interval, not all at once.
            let mut scheduled = interval.map_or(started, |i| {
                started + i.mul_f64(w as f64 / spec_concurrency as f64)
            });
            while scheduled < deadline {
                if interval.is_some() {
                    tokio::time::sleep_until(scheduled.into()).await;
                }
                let payload = &pool[next % pool.len()];
                next += spec_concurrency;
                let t0 = if interval.is_some() {
                    scheduled
                } else {
                    Instant::now()
                };
                let outcome = match &mut grpc {
                    Some(c) => c.send(payload).await,
                    None => send_http(&http, &target, payload).await,
                };
                match outcome {
                    Ok(()) => {
                        r.latencies_us.push(t0.elapsed().as_micros() as u64);
                        r.acked_bytes += payload.body().len() as u64;
                    }
                    Err(reason) => {
                        *r.refusals.entry(reason).or_default() += 1;
                        if interval.is_none() {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                scheduled = match interval {
                    Some(i) => scheduled + i,
                    None => Instant::now(),
                };
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
    let after = scrape::counters(&http, &spec.admin).await;
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i] as f64 / 1000.0
    };
    let acked = latencies.len() as u64;
    let records = acked as f64 * spec.records as f64;
    let server = match (before, after) {
        (Some(b), Some(a)) => Some(b.delta(&a)),
        _ => None,
    };
    let fsyncs = server.as_ref().map(|d| d.fsyncs.max(0.0) as u64);
    let cpu = server.as_ref().map(|d| d.cpu_seconds.max(0.0));
    Ok(BenchReport {
        signal: spec.signal,
        transport: if spec.grpc { "grpc" } else { "http" },
        concurrency: spec.concurrency,
        records_per_request: spec.records,
        request_bytes,
        offered_records_per_second: spec.rate,
        seconds,
        acked_requests: acked,
        records_per_second: records / seconds,
        payload_mb_per_second: acked_bytes as f64 / seconds / 1e6,
        latency_ms_p50: pct(0.50),
        latency_ms_p99: pct(0.99),
        latency_ms_max: latencies.last().map_or(0.0, |l| *l as f64 / 1000.0),
        refusals,
        server_refusals: server
            .map(|d| d.refused.into_iter().map(|(k, v)| (k, v as u64)).collect())
            .unwrap_or_default(),
        fsyncs,
        fsyncs_per_acked_request: fsyncs
            .filter(|_| acked > 0)
            .map(|f| f as f64 / acked as f64),
        server_cpu_seconds: cpu,
        server_cpu_seconds_per_million_records: cpu
            .filter(|_| records > 0.0)
            .map(|c| c / records * 1e6),
    })
}
