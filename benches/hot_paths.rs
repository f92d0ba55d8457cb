//! Criterion benchmarks of the hot paths a request takes through a node.
//!
//! Run with `cargo bench --bench hot_paths` (add `-- <group>` to pick one).
//! Every group uses only the crate's public API.
//!
//! - `ingest_http`: one OTLP/HTTP export through `ingest::http_router`, driven
//!   in-process (no socket) with a handler that commits at once. Covers what
//!   the receiver does before Raft: header checks, body read, bounded gunzip,
//!   protobuf or JSON decode, validation, the resource label, the one
//!   re-encode of the payload and the `IngestRequest`. Decode plus re-encode
//!   of 500 records dominate (allocation-heavy prost/serde work); the
//!   `spawn_blocking` hop around decode and axum routing add a few µs.
//!   Throughput is the uncompressed body (for `gzip`, the protobuf before
//!   compression: the repeated bodies shrink ~75x on the wire).
//! - `log_entry`: from the decoded request to the bytes of a log row: the
//!   pipeline's `encode_to_vec` of the labelled request (the payload every
//!   replica stores), then `IngestRequest` -> `Command` -> `Entry` ->
//!   `raft::codec::encode`, which `LogStore::append` runs for every entry
//!   (and AppendEntries sends the same `LogEntry`). Bounded by memcpy of the
//!   payload and protobuf framing.
//! - `store_append`: `RaftLogStorage::append` on a redb store in a temp dir,
//!   waiting for the `IOFlushed` callbacks, that is until the entries are
//!   durable. One 110 KB entry per append; `1` waits for each append before
//!   the next, `64` queues 64 appends back to back the way openraft does and
//!   then waits for all, so the writer thread group-commits them. fsync
//!   dominates: the figures are the disk's flush latency far more than
//!   otelraft's CPU, and they vary with the filesystem and with other I/O on
//!   the machine. Rows are purged and trimmed between iterations (untimed)
//!   so the file does not grow.
//! - `prometheus_remote_write`: `export::prometheus::request::build` over 10
//!   committed metrics entries (200 data points each: sums, gauges and
//!   histograms of 20 series sets), against a sink state that already knows
//!   every series: decode each payload, map OTLP to samples, ordering checks,
//!   the `WriteRequest` encode and snappy. Throughput is samples.
//! - `archive_seal`: `archive::block::seal` of one block as the archiver cuts
//!   it (default `block_max_bytes`, 8 MiB of varied log entries from
//!   `bench::realistic`): per-entry decode check, zstd level 3, SHA-256.
//!   zstd dominates; repeated bodies would compress much faster, hence the
//!   varied payloads.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use flate2::write::GzEncoder;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::EntryPayload;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use otelraft::archive::block::{self, RawEntry};
use otelraft::cli::bench::realistic::{self, string_kv};
use otelraft::config::archive::ArchiveConfig;
use otelraft::export::prometheus::request;
use otelraft::ingest::{http_router, Ingest, IngestHandler, IngestSettings, Receipt, SubmitFuture};
use otelraft::metrics::Metrics;
use otelraft::pb::log::{command::Kind, Command, IngestRequest, Signal};
use otelraft::raft::codec::{self, log_id};
use otelraft::raft::{Entry, TypeConfig};
use otelraft::state::{SeriesMarkState, SinkState};
use otelraft::store;
use prost::Message;
use tower::ServiceExt;

/// Records and bytes per record of the standard request, as `otelraft bench`
/// sends by default.
const RECORDS: usize = 500;
const RECORD_BYTES: usize = 200;

/// Nanoseconds of the first metrics scrape.
const T0: u64 = 1_714_560_000_000_000_000;
/// Scrape interval.
const SCRAPE_NANOS: u64 = 15_000_000_000;

// ---------------------------------------------------------------- fixtures

/// A handler that commits every request at once; it keeps the last one when
/// asked, so later groups start from exactly what the pipeline produced.
#[derive(Default)]
struct InstantCommit {
    keep: bool,
    last: Mutex<Option<IngestRequest>>,
}

impl IngestHandler for InstantCommit {
    fn submit(&self, request: IngestRequest) -> SubmitFuture {
        if self.keep {
            *self.last.lock().unwrap() = Some(request);
        } else {
            black_box(&request);
        }
        Box::pin(async { Ok(Receipt { log_index: 1 }) })
    }
}

fn router(handler: Arc<InstantCommit>) -> Router {
    let settings = IngestSettings {
        node_id: 1,
        node_label_value: "bench-1".to_string(),
        ..IngestSettings::default()
    };
    http_router(Arc::new(Ingest::new(
        handler,
        settings,
        Arc::new(Metrics::new()),
    )))
}

async fn post(
    router: &Router,
    path: &str,
    content_type: &str,
    gzip: bool,
    body: &Bytes,
) -> StatusCode {
    let mut req = Request::post(path).header(header::CONTENT_TYPE, content_type);
    if gzip {
        req = req.header(header::CONTENT_ENCODING, "gzip");
    }
    let req = req.body(Body::from(body.clone())).unwrap();
    router.clone().oneshot(req).await.unwrap().status()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn logs_request() -> ExportLogsServiceRequest {
    otelraft::cli::bench::logs_request(&vec!["x".repeat(RECORD_BYTES); RECORDS])
}

/// One scrape of a service: 20 metrics (sums, gauges, histograms with 8
/// bounds) of 10 points each, every point at the scrape's timestamp.
fn scrape_request(scrape: u64) -> ExportMetricsServiceRequest {
    let time_unix_nano = T0 + scrape * SCRAPE_NANOS;
    let attrs = |p: u64| {
        vec![
            string_kv("http.method", ["GET", "POST"][(p % 2) as usize]),
            string_kv("http.route", &format!("/api/v1/items/{p}")),
        ]
    };
    let number = |p: u64| NumberDataPoint {
        attributes: attrs(p),
        start_time_unix_nano: T0,
        time_unix_nano,
        value: Some(number_data_point::Value::AsDouble((scrape * 10 + p) as f64)),
        ..Default::default()
    };
    let histogram = |p: u64| HistogramDataPoint {
        attributes: attrs(p),
        start_time_unix_nano: T0,
        time_unix_nano,
        count: 9 * (scrape + 1),
        sum: Some(100.0 * (scrape + 1) as f64),
        bucket_counts: vec![scrape + 1; 9],
        explicit_bounds: vec![5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
        ..Default::default()
    };
    let cumulative = AggregationTemporality::Cumulative as i32;
    let metrics = (0..20u64)
        .map(|m| {
            let data = match m % 3 {
                0 => Data::Sum(Sum {
                    data_points: (0..10).map(number).collect(),
                    aggregation_temporality: cumulative,
                    is_monotonic: true,
                }),
                1 => Data::Gauge(Gauge {
                    data_points: (0..10).map(number).collect(),
                }),
                _ => Data::Histogram(Histogram {
                    data_points: (0..10).map(histogram).collect(),
                    aggregation_temporality: cumulative,
                }),
            };
            Metric {
                name: format!("bench.metric_{m}"),
                unit: "ms".to_string(),
                data: Some(data),
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    string_kv("service.name", "checkout"),
                    string_kv("service.instance.id", "pod-1"),
                    string_kv("host.name", "ip-10-0-12-34"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "otelraft-bench".to_string(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A committed ingest entry at `index`, stamped as `write_as_leader` does.
fn ingest_entry(index: u64, mut request: IngestRequest) -> Entry {
    request.proposed_unix_nanos = request.received_unix_nanos;
    request.proposer_node = 1;
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(Command {
            kind: Some(Kind::Ingest(request)),
        }),
    }
}

fn ingest_request(signal: Signal, records: u64, payload: Vec<u8>, at: u64) -> IngestRequest {
    IngestRequest {
        signal: signal as i32,
        payload: payload.into(),
        records,
        received_unix_nanos: at,
        origin_node: 1,
        ..Default::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The `IngestRequest` the receiver submits for the standard logs request.
fn pipeline_output() -> IngestRequest {
    let handler = Arc::new(InstantCommit {
        keep: true,
        ..Default::default()
    });
    let body = Bytes::from(logs_request().encode_to_vec());
    let router = router(handler.clone());
    let status = runtime().block_on(post(
        &router,
        "/v1/logs",
        "application/x-protobuf",
        false,
        &body,
    ));
    assert_eq!(status, StatusCode::OK);
    let request = handler.last.lock().unwrap().take();
    request.expect("the handler saw the request")
}

// ------------------------------------------------------------------ groups

fn ingest_http(c: &mut Criterion) {
    let rt = runtime();
    let router = router(Arc::new(InstantCommit::default()));
    let logs = logs_request();
    let proto = logs.encode_to_vec();
    let cases = [
        (
            "logs_500x200B_protobuf",
            "/v1/logs",
            "application/x-protobuf",
            false,
            proto.clone(),
        ),
        (
            "logs_500x200B_protobuf_gzip",
            "/v1/logs",
            "application/x-protobuf",
            true,
            proto.clone(),
        ),
        (
            "logs_500x200B_json",
            "/v1/logs",
            "application/json",
            false,
            serde_json::to_vec(&logs).unwrap(),
        ),
        (
            "metrics_200_points_protobuf",
            "/v1/metrics",
            "application/x-protobuf",
            false,
            scrape_request(0).encode_to_vec(),
        ),
    ];
    let mut group = c.benchmark_group("ingest_http");
    for (name, path, content_type, gz, plain) in cases {
        group.throughput(Throughput::Bytes(plain.len() as u64));
        let body = Bytes::from(if gz { gzip(&plain) } else { plain });
        let status = rt.block_on(post(&router, path, content_type, gz, &body));
        assert_eq!(status, StatusCode::OK, "{name} is accepted");
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(post(&router, path, content_type, gz, &body)))
        });
    }
    group.finish();
}

fn log_entry(c: &mut Criterion) {
    let submitted = pipeline_output();
    // The labelled request, as the pipeline holds it just before encoding.
    let labelled = ExportLogsServiceRequest::decode(submitted.payload.clone()).unwrap();
    let row = codec::encode(&ingest_entry(1, submitted.clone())).expect("encodes");

    let mut group = c.benchmark_group("log_entry");
    group.throughput(Throughput::Bytes(submitted.payload.len() as u64));
    group.bench_function("payload_encode_500_records", |b| {
        b.iter(|| black_box(&labelled).encode_to_vec())
    });
    group.throughput(Throughput::Bytes(row.len() as u64));
    group.bench_function("ingest_request_to_log_row", |b| {
        b.iter(|| codec::encode(&ingest_entry(7, black_box(&submitted).clone())).expect("encodes"))
    });
    group.finish();
}

fn store_append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let (mut log, _sm) = rt
        .block_on(store::open(dir.path(), metrics.clone()))
        .unwrap();
    let request = pipeline_output();
    let entry_bytes = codec::encode(&ingest_entry(1, request.clone()))
        .expect("encodes")
        .len() as u64;
    let mut next = 1u64;

    let mut group = c.benchmark_group("store_append");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    for appends in [1u64, 64] {
        let (mut timed_fsyncs, mut timed_appends) = (0i64, 0u64);
        group.throughput(Throughput::Bytes(appends * entry_bytes));
        group.bench_function(format!("{appends}x110KB_until_durable"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let fsyncs = metrics.storage_fsyncs.get();
                        let start = Instant::now();
                        let mut flushed = Vec::with_capacity(appends as usize);
                        for _ in 0..appends {
                            let (tx, rx) = TypeConfig::oneshot();
                            let entry = ingest_entry(next, request.clone());
                            log.append([entry], IOFlushed::signal(tx)).await.unwrap();
                            flushed.push(rx);
                            next += 1;
                        }
                        for rx in flushed {
                            rx.await.unwrap().unwrap();
                        }
                        timed += start.elapsed();
                        timed_fsyncs += metrics.storage_fsyncs.get() as i64 - fsyncs as i64;
                        timed_appends += appends;
                        // Untimed: drop the rows so the file stays small.
                        log.trim(next).await.unwrap();
                        log.purge(log_id(1, 1, next - 1)).await.unwrap();
                    }
                    timed
                })
            })
        });
        eprintln!(
            "store_append/{appends}: {:.3} fsyncs per append ({timed_fsyncs} for {timed_appends})",
            timed_fsyncs as f64 / timed_appends.max(1) as f64
        );
    }
    group.finish();
}

fn prometheus_remote_write(c: &mut Criterion) {
    const ENTRIES: u64 = 10;
    let entries = |first_scrape: u64| -> Vec<Entry> {
        (first_scrape..first_scrape + ENTRIES)
            .map(|scrape| {
                let payload = scrape_request(scrape).encode_to_vec();
                let at = T0 + scrape * SCRAPE_NANOS;
                ingest_entry(
                    scrape + 1,
                    ingest_request(Signal::Metrics, 200, payload, at),
                )
            })
            .collect()
    };
    // A sink that exported the previous 10 scrapes, so every series is known.
    let earlier = request::build("prom", &SinkState::default(), &entries(0)).unwrap();
    let state = SinkState {
        cursor: earlier.to,
        marker_ms: earlier.marker_ms,
        max_sample_ms: earlier.max_sample_ms,
        series: earlier
            .series
            .iter()
            .map(|m| {
                let mark = SeriesMarkState {
                    timestamp_ms: m.timestamp_ms,
                    value_bits: m.value_bits,
                };
                (m.series, mark)
            })
            .collect::<BTreeMap<_, _>>()
            .into(),
        ..SinkState::default()
    };
    let entries = entries(ENTRIES);
    let batch = request::build("prom", &state, &entries).unwrap();
    assert!(batch.dead_letters.is_empty(), "{:?}", batch.dead_letters);
    assert!(batch.body.is_some());

    let mut group = c.benchmark_group("prometheus_remote_write");
    group.throughput(Throughput::Elements(batch.items));
    group.bench_function("build_10_entries_x200_points", |b| {
        b.iter(|| request::build("prom", black_box(&state), black_box(&entries)).unwrap())
    });
    group.finish();
}

fn archive_seal(c: &mut Criterion) {
    // Entries until the archiver's default byte cut, as `raw_rows` does.
    let max_bytes = ArchiveConfig::default().block_max_bytes;
    let (mut raw, mut total) = (Vec::new(), 0usize);
    for index in 1u64.. {
        let payload = realistic::logs(index, RECORDS).encode_to_vec();
        let request = ingest_request(Signal::Logs, RECORDS as u64, payload, T0 + index);
        let bytes = Bytes::from(codec::encode(&ingest_entry(index, request)).expect("encodes"));
        total += bytes.len();
        raw.push(RawEntry { index, bytes });
        if total >= max_bytes {
            break;
        }
    }
    let sealed = block::seal(&raw).unwrap();
    eprintln!(
        "archive_seal: {} entries, {} B -> {} B block",
        sealed.entries,
        total,
        sealed.bytes.len()
    );

    let mut group = c.benchmark_group("archive_seal");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.throughput(Throughput::Bytes(total as u64));
    group.bench_function(format!("seal_{}_entries_8MiB", raw.len()), |b| {
        b.iter(|| block::seal(black_box(&raw)).unwrap())
    });
    group.finish();
}

criterion_group!(
    benches,
    ingest_http,
    log_entry,
    store_append,
    prometheus_remote_write,
    archive_seal
);
criterion_main!(benches);
