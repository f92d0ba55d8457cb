//! The batch builder against poison entries: what a hostile committed
//! entry can make it allocate, and where batches end.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use prost::Message;

use super::*;
use crate::export::budget::DERIVED_BYTES_PER_BATCH;
use crate::pb::log::command::Kind;
use crate::pb::log::IngestRequest;
use crate::state::tests::normal;
use crate::state::DEAD_LETTERS_KEPT;

/// 2026-01-01, in ns: every sample is near its entry's proposal time.
const NOW_NS: u64 = 1_767_225_600_000_000_000;

fn entry(index: u64, metrics: Vec<Metric>) -> Entry {
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    normal(
        1,
        index,
        Kind::Ingest(IngestRequest {
            signal: Signal::Metrics as i32,
            payload: Bytes::from(req.encode_to_vec()),
            records: 1,
            proposed_unix_nanos: NOW_NS,
            ..Default::default()
        }),
    )
}

fn gauge(name: &str, value: f64) -> Metric {
    Metric {
        name: name.to_string(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: NOW_NS,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

/// A cumulative histogram point whose `big` label value is copied into
/// each of its `buckets + 3` series.
fn wide_histogram(name: &str, big: usize, buckets: usize) -> Metric {
    Metric {
        name: name.to_string(),
        data: Some(Data::Histogram(Histogram {
            aggregation_temporality: 2,
            data_points: vec![HistogramDataPoint {
                time_unix_nano: NOW_NS,
                attributes: vec![KeyValue {
                    key: "big".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("x".repeat(big))),
                    }),
                    ..Default::default()
                }],
                count: 1,
                bucket_counts: vec![0; buckets + 1],
                explicit_bounds: (0..buckets).map(|b| b as f64).collect(),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

fn build_all(entries: &[Entry]) -> Batch {
    build("prom", &SinkState::default(), entries).expect("builds")
}

#[test]
fn a_sum_without_temporality_is_one_dead_letter_however_many_points_it_has() {
    // The 192-byte request: a 100 kB name and 10,000 empty points.
    let sum = Metric {
        name: "n".repeat(100_000),
        data: Some(Data::Sum(Sum {
            data_points: vec![NumberDataPoint::default(); 10_000],
            aggregation_temporality: 0,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let batch = build_all(&[entry(1, vec![sum])]);
    assert_eq!(batch.to, 1);
    assert_eq!(batch.dead_letters.len(), 1, "one letter, not one per point");
    assert_eq!(batch.dead_letter_counts["unsupported"], 10_000);
    let subject = &batch.dead_letters[0].subject;
    assert!(
        subject.len() < 300,
        "subject quoted: {} bytes",
        subject.len()
    );
    assert!(subject.ends_with("(100000 bytes)"), "{subject}");
}

#[test]
fn an_entry_that_derives_more_than_a_batch_may_hold_is_one_dead_letter_and_export_goes_on() {
    // 1 MiB copied into 103 series: over the 64 MiB budget on its own.
    let poison = entry(1, vec![wide_histogram("wide", 1 << 20, 100)]);
    let after = entry(2, vec![gauge("fine", 1.0)]);
    let batch = build_all(&[poison, after]);
    assert_eq!(
        batch.to, 2,
        "the batch covers the poison entry and the next"
    );
    assert_eq!(batch.dead_letter_counts["over_budget"], 1);
    assert_eq!(batch.dead_letters[0].index, 1);
    assert_eq!(batch.items, 1, "the next entry's sample is exported");
    assert!(batch.body.is_some());
}

// Two 40-series entries of a 1 MiB label overflow one budget; one fits.
const _: () = assert!(DERIVED_BYTES_PER_BATCH > 41 << 20 && DERIVED_BYTES_PER_BATCH < 80 << 20);

#[test]
fn an_entry_that_does_not_fit_what_is_left_starts_the_next_batch() {
    // Each derives 40 series of a 1 MiB label, over 40 MiB: one fits a
    // batch, two do not.
    let big = |index| {
        entry(
            index,
            vec![wide_histogram(&format!("h{index}"), 1 << 20, 38)],
        )
    };
    let entries = [big(1), big(2)];
    let first = build_all(&entries);
    assert_eq!(
        first.to, 1,
        "the batch ends before the entry that overflows"
    );
    assert!(first.dead_letters.is_empty());
    assert_eq!(first.items, 40);
    let payload = |e: &Entry| match &e.payload {
        openraft::EntryPayload::Normal(c) => match &c.kind {
            Some(Kind::Ingest(r)) => r.payload.len() as u64,
            _ => 0,
        },
        _ => 0,
    };
    assert_eq!(first.payload_bytes, payload(&entries[0]));
    let state = SinkState {
        cursor: 1,
        ..Default::default()
    };
    let second = build("prom", &state, &entries[1..]).expect("builds");
    assert_eq!((second.from, second.to, second.items), (1, 2, 40));
}

#[test]
fn dead_letters_past_the_kept_number_are_only_counted() {
    // Invalid label keys: refused point by point, each a letter.
    let points: Vec<NumberDataPoint> = (0..3 * DEAD_LETTERS_KEPT)
        .map(|i| NumberDataPoint {
            time_unix_nano: NOW_NS,
            attributes: vec![KeyValue {
                key: String::new(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(format!("v{i}"))),
                }),
                ..Default::default()
            }],
            value: Some(number_data_point::Value::AsDouble(1.0)),
            ..Default::default()
        })
        .collect();
    let bad = Metric {
        name: "bad_labels".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    };
    let batch = build_all(&[entry(1, vec![bad])]);
    assert_eq!(batch.dead_letters.len(), DEAD_LETTERS_KEPT);
    assert_eq!(
        batch.dead_letter_counts["invalid_labels"],
        3 * DEAD_LETTERS_KEPT as u64
    );
    let advance = batch.advance("prom", 1);
    assert_eq!(advance.dead_letters.len(), DEAD_LETTERS_KEPT);
    assert_eq!(
        advance.dead_letter_counts["invalid_labels"],
        3 * DEAD_LETTERS_KEPT as u64
    );
}

#[test]
fn a_restored_cluster_marks_its_own_marker_series() {
    let cluster = "0123456789abcdef0123456789abcdef";
    let plain = marker_series("prom", cluster, None, 7, 1_000);
    let names: Vec<&str> = plain.labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["__name__", MARKER_CLUSTER_LABEL, MARKER_SINK_LABEL]);
    let restore = SinkRestore {
        upto: 5,
        at_ms: 1_700_000_000_123,
        continues_cluster: true,
    };
    let restored = marker_series("prom", cluster, Some(restore), 7, 1_000);
    let labels: Vec<(&str, &str)> = restored
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("__name__", MARKER_METRIC),
            (MARKER_CLUSTER_LABEL, cluster),
            (MARKER_RESTORE_LABEL, "1700000000123"),
            (MARKER_SINK_LABEL, "prom"),
        ]
    );
    assert_eq!(restored.samples[0].value, 7.0);
}

#[test]
fn a_leader_with_a_fast_clock_does_not_move_the_marker_past_the_batch_s_samples() {
    const HOUR_NS: u64 = 3_600 * 1_000_000_000;
    let now_ms = (NOW_NS / 1_000_000) as i64;
    let mut fast = entry(1, vec![gauge("g", 1.0)]);
    if let Some(Kind::Ingest(req)) = ingest_kind(&mut fast) {
        req.proposed_unix_nanos = NOW_NS + HOUR_NS;
    }
    let batch = build_all(&[fast.clone()]);
    assert_eq!(batch.marker_ms, now_ms);
    assert_eq!(
        batch.max_sample_ms, now_ms,
        "Prometheus' head stays at the samples"
    );

    // The marker series stays strictly increasing however the samples lag.
    let state = SinkState {
        marker_ms: now_ms + 5,
        max_sample_ms: now_ms + 5,
        ..Default::default()
    };
    let batch = build("prom", &state, &[fast]).expect("builds");
    assert_eq!(batch.marker_ms, now_ms + 6);
}

fn ingest_kind(entry: &mut Entry) -> Option<&mut Kind> {
    match &mut entry.payload {
        openraft::EntryPayload::Normal(command) => command.kind.as_mut(),
        _ => None,
    }
}
