//! Exporter amplification against a real 3-node cluster exporting to a real
//! Prometheus and the strict Loki receiver, while the official OpenTelemetry
//! SDK writes steadily (issue 20's acceptance suite). Each request is tiny
//! on the wire and valid at ingest, but asks a sink to derive far more than
//! its entry: a metric name copied into 10,000 dead letters, a resource
//! attribute copied into every Loki line, a histogram's labels copied once
//! per bucket. Each is committed and answered 200; its sink dead-letters it
//! within a bounded record and goes on; the leader's memory stays within
//! the documented bound; the SDK's records reach both sinks exactly once;
//! and no sink cursor or trim point is stuck.

use std::io::Write;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;
use testkit::cluster::{admin_cli, Options, TestCluster, TestNode};
use testkit::metrics::{now_ms, request};
use testkit::steady::{assert_rss_within, peak_rss, SdkWriter, Sinks, LOKI_SINK, PROMETHEUS_SINK};

/// What one batch may derive, per sink (`export::budget`).
const DERIVED_BYTES_PER_BATCH: u64 = 64 << 20;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

fn string(s: String) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    })
}

/// Posts a gzip protobuf body; returns the status.
async fn post(node: &TestNode, path: &str, body: Vec<u8>) -> u16 {
    let zipped = gzip(&body);
    eprintln!(
        "{path}: {} bytes of protobuf, {} gzipped",
        body.len(),
        zipped.len()
    );
    reqwest::Client::new()
        .post(format!("{}{path}", node.http_url()))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(zipped)
        .send()
        .await
        .expect("answered")
        .status()
        .as_u16()
}

/// The request: one Sum with no temporality, a 100 kB name and
/// 10,000 empty points. One dead letter per point, each with a copy of
/// the name, once took a leader to 2.8 GB.
fn named_sum_bomb() -> Vec<u8> {
    request(vec![Metric {
        name: "n".repeat(100_000),
        data: Some(Data::Sum(Sum {
            data_points: vec![NumberDataPoint::default(); 10_000],
            aggregation_temporality: 0,
            is_monotonic: true,
        })),
        ..Default::default()
    }])
    .encode_to_vec()
}

/// 10,000 log records under one resource with a 120 kB attribute, which
/// Loki's structured metadata would copy onto every line: 1.2 GB.
fn resource_metadata_bomb() -> Vec<u8> {
    let records = (0..10_000)
        .map(|i| LogRecord {
            time_unix_nano: (now_ms() as u64) * 1_000_000,
            body: string(format!("amplified-{i}")),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    KeyValue {
                        key: "service.name".into(),
                        value: string("amplifier".into()),
                        ..Default::default()
                    },
                    KeyValue {
                        key: "big".into(),
                        value: string("x".repeat(120_000)),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// One cumulative histogram point with 1,000 labels and 4,096 buckets:
/// each bucket is a series carrying every label, 450 MB in all.
fn histogram_label_bomb() -> Vec<u8> {
    let attributes = (0..1000)
        .map(|i| KeyValue {
            key: format!("label_{i}"),
            value: string("v".repeat(40)),
            ..Default::default()
        })
        .collect();
    let bounds: Vec<f64> = (0..4095).map(f64::from).collect();
    request(vec![Metric {
        name: "amplified_latency".into(),
        data: Some(Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes,
                time_unix_nano: (now_ms() as u64) * 1_000_000,
                count: 1,
                bucket_counts: vec![0; 4096],
                explicit_bounds: bounds,
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }])
    .encode_to_vec()
}

/// The replicated dead-letter record of `sink`: its newest letters.
fn newest_letters(node: &TestNode, sink: &str) -> Vec<Value> {
    let (ok, text) = admin_cli(node, &["dead-letters", "--sink", sink]);
    assert!(ok, "{text}");
    let report: Value = serde_json::from_str(&text).expect("JSON");
    report[sink]["newest"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_that_would_derive_gigabytes_are_dead_lettered_in_bounded_memory_while_the_sdk_writes(
) {
    let sinks = Sinks::start().await;
    let mut env = sinks.env();
    // Ingest refuses a 100 kB name now; raised so the entry commits, as it
    // does in logs written before the limit existed.
    env.push((
        "OTELRAFT_INGEST__LIMITS__MAX_NAME_BYTES".into(),
        "200000".into(),
    ));
    let cluster = TestCluster::start(Options {
        nodes: 3,
        env,
        ..Default::default()
    })
    .await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let node = &cluster.nodes[(leader - 1) as usize];
    let writer = SdkWriter::start(&cluster, "amp-steady");
    // The SDK's first records are in before the baseline is taken.
    cluster
        .wait_all_reach("logs", 5, Duration::from_secs(60))
        .await;
    let before = peak_rss(&cluster);

    let attacks = [
        ("/v1/metrics", named_sum_bomb(), PROMETHEUS_SINK),
        ("/v1/logs", resource_metadata_bomb(), LOKI_SINK),
        ("/v1/metrics", histogram_label_bomb(), PROMETHEUS_SINK),
    ];
    for (path, body, sink) in attacks {
        assert_eq!(post(node, path, body).await, 200, "{path}");
        let status = cluster.wait_exported(sink, Duration::from_secs(120)).await;
        eprintln!(
            "{sink} after {path}: dead letters {}",
            status["dead_letters"]
        );
    }

    let report = writer.finish().await;
    sinks
        .assert_delivered(&cluster, "amp-steady", &report)
        .await;

    // Each bomb is in its sink's dead-letter count, and the replicated
    // record of them stays small.
    let status = node.status().await.expect("status");
    let prom = &status["sinks"][PROMETHEUS_SINK]["dead_letters"];
    let loki = &status["sinks"][LOKI_SINK]["dead_letters"];
    assert_eq!(prom["unsupported"], 10_000, "{prom}");
    assert!(prom["over_budget"].as_u64() >= Some(1), "{prom}");
    assert!(loki["over_budget"].as_u64() >= Some(1), "{loki}");
    let quoted = newest_letters(node, PROMETHEUS_SINK).iter().any(|l| {
        l["subject"]
            .as_str()
            .is_some_and(|s| s.ends_with("(100000 bytes)"))
    });
    assert!(quoted, "the 100 kB name is quoted with its length");
    for sink in [PROMETHEUS_SINK, LOKI_SINK] {
        let letters = newest_letters(node, sink);
        let bytes = serde_json::to_string(&letters).map_or(usize::MAX, |s| s.len());
        eprintln!("{sink}: {} letters kept, {bytes} bytes", letters.len());
        assert!(
            bytes < 64 << 10,
            "{sink}'s dead-letter record: {bytes} bytes"
        );
        for letter in &letters {
            let subject = letter["subject"].as_str().unwrap_or_default();
            assert!(subject.len() <= 256, "{subject}");
        }
    }
    assert!(
        !sinks
            .loki
            .stored()
            .iter()
            .any(|l| l.line.starts_with("amplified-")),
        "the over-budget entry's lines were not meant to reach Loki"
    );

    // The documented bound for export: the baseline, plus one batch's
    // derived data per sink, twice over for the allocator and the encoded
    // request, plus 64 MiB of slack.
    let allowance = 2 * 2 * DERIVED_BYTES_PER_BATCH + (64 << 20);
    assert_rss_within(&cluster, &before, allowance, "exporter amplification");
}
