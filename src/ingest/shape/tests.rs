//! The scan against what `prost` really allocates, measured by a counting
//! allocator on the test's own thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use super::*;

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size as isize - layout.size() as isize);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Peak heap bytes, above what was live before, of decoding `bytes` as `T`.
fn decode_peak<T: Message + Default>(bytes: &[u8]) -> u64 {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let decoded = T::decode(bytes).unwrap();
    let peak = PEAK.with(Cell::get) - base;
    drop(decoded);
    peak as u64
}

fn no() -> bool {
    false
}

/// Checks the scan of `request` against a real decode: records as counted,
/// heap at least what `prost` allocated, and not wildly more.
fn check<T: Message + Default>(request: &T, signal: Signal, records: u64) -> Shape {
    let bytes = request.encode_to_vec();
    let shape = scan_protobuf(&bytes, signal, &IngestLimits::default(), &no).unwrap();
    let peak = decode_peak::<T>(&bytes);
    assert_eq!(shape.records, records);
    assert!(
        shape.heap_bytes >= peak,
        "estimate {} below the {peak} bytes prost allocated",
        shape.heap_bytes
    );
    assert!(
        shape.heap_bytes <= 4 * peak + 4096,
        "estimate {} far above the {peak} bytes prost allocated",
        shape.heap_bytes
    );
    shape
}

/// 4 KiB of text: a field the scan misses shows as a shortfall.
fn text() -> String {
    "x".repeat(4096)
}

fn blob() -> Vec<u8> {
    vec![7u8; 4096]
}

fn attributes() -> Vec<KeyValue> {
    let nested = AnyValue {
        value: Some(Value::KvlistValue(KeyValueList {
            values: vec![KeyValue {
                key: text(),
                value: Some(AnyValue {
                    value: Some(Value::ArrayValue(ArrayValue {
                        values: vec![
                            AnyValue {
                                value: Some(Value::StringValue(text())),
                            },
                            AnyValue {
                                value: Some(Value::BytesValue(blob())),
                            },
                        ],
                    })),
                }),
                ..Default::default()
            }],
        })),
    };
    vec![
        KeyValue {
            key: text(),
            value: Some(nested),
            ..Default::default()
        },
        KeyValue {
            key: "plain".into(),
            value: Some(AnyValue {
                value: Some(Value::IntValue(3)),
            }),
            ..Default::default()
        },
    ]
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: attributes(),
        entity_refs: vec![EntityRef {
            schema_url: text(),
            r#type: text(),
            id_keys: vec![text(), text()],
            description_keys: vec![text()],
        }],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: text(),
        version: text(),
        attributes: attributes(),
        ..Default::default()
    })
}

fn exemplars() -> Vec<Exemplar> {
    vec![Exemplar {
        filtered_attributes: attributes(),
        span_id: blob(),
        trace_id: blob(),
        ..Default::default()
    }]
}

fn every_metric() -> ExportMetricsServiceRequest {
    let number = || NumberDataPoint {
        attributes: attributes(),
        exemplars: exemplars(),
        ..Default::default()
    };
    let metric = |data| Metric {
        name: text(),
        description: text(),
        unit: text(),
        metadata: attributes(),
        data: Some(data),
    };
    let metrics = vec![
        metric(Data::Gauge(Gauge {
            data_points: vec![number(), number()],
        })),
        metric(Data::Sum(Sum {
            data_points: vec![number()],
            ..Default::default()
        })),
        metric(Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: attributes(),
                bucket_counts: vec![5; 600],
                explicit_bounds: vec![1.5; 599],
                exemplars: exemplars(),
                ..Default::default()
            }],
            ..Default::default()
        })),
        metric(Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                attributes: attributes(),
                positive: Some(Buckets {
                    offset: 1,
                    bucket_counts: vec![1; 700],
                }),
                negative: Some(Buckets {
                    offset: -1,
                    bucket_counts: vec![300; 500],
                }),
                exemplars: exemplars(),
                ..Default::default()
            }],
            ..Default::default()
        })),
        metric(Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                attributes: attributes(),
                quantile_values: vec![ValueAtQuantile::default(); 300],
                ..Default::default()
            }],
        })),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics,
                schema_url: text(),
            }],
            schema_url: text(),
        }],
    }
}

fn every_log() -> ExportLogsServiceRequest {
    let record = || LogRecord {
        severity_text: text(),
        body: attributes().remove(0).value,
        attributes: attributes(),
        trace_id: blob(),
        span_id: blob(),
        event_name: text(),
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: vec![record(), record(), record()],
                schema_url: text(),
            }],
            schema_url: text(),
        }],
    }
}

fn every_span() -> ExportTraceServiceRequest {
    let span = || Span {
        trace_id: blob(),
        span_id: blob(),
        trace_state: text(),
        parent_span_id: blob(),
        name: text(),
        attributes: attributes(),
        events: vec![Event {
            name: text(),
            attributes: attributes(),
            ..Default::default()
        }],
        links: vec![Link {
            trace_id: blob(),
            span_id: blob(),
            trace_state: text(),
            attributes: attributes(),
            ..Default::default()
        }],
        status: Some(Status {
            message: text(),
            code: 2,
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: vec![span(), span()],
                schema_url: text(),
            }],
            schema_url: text(),
        }],
    }
}

#[test]
fn the_scan_covers_what_prost_allocates_for_every_message_kind() {
    check(&every_metric(), Signal::Metrics, 6);
    check(&every_log(), Signal::Logs, 3);
    check(&every_span(), Signal::Traces, 2);
}

#[test]
fn a_field_the_table_missed_would_show_as_a_shortfall() {
    // The same request, scanned as if its spans' fields were unknown: the
    // check above would fail, so it can catch a missing table entry.
    let bytes = every_span().encode_to_vec();
    let shape = scan_protobuf(&bytes, Signal::Logs, &IngestLimits::default(), &no).unwrap();
    let peak = decode_peak::<ExportTraceServiceRequest>(&bytes);
    assert!(shape.heap_bytes < peak, "{} vs {peak}", shape.heap_bytes);
}

#[test]
fn a_million_empty_spans_are_seen_for_what_they_decode_to() {
    // Two bytes each on the wire, 264 once decoded: the 518 MB request of
    // issue 20, at half the count.
    let request = crate::ingest::tests::fixtures::empty_spans(1_000_000);
    let limits = IngestLimits {
        max_records: 2_000_000,
        ..IngestLimits::default()
    };
    let bytes = request.encode_to_vec();
    assert!(bytes.len() < 2_100_000);
    let shape = scan_protobuf(&bytes, Signal::Traces, &limits, &no).unwrap();
    let peak = decode_peak::<ExportTraceServiceRequest>(&bytes);
    assert!(shape.heap_bytes >= peak && shape.heap_bytes <= 2 * peak);
    assert!(shape.heap_bytes > 250_000_000, "{}", shape.heap_bytes);
}

#[test]
fn too_many_records_are_refused_before_the_scan_ends() {
    let bytes = crate::ingest::tests::fixtures::logs(11).encode_to_vec();
    let limits = IngestLimits {
        max_records: 10,
        ..IngestLimits::default()
    };
    let err = scan_protobuf(&bytes, Signal::Logs, &limits, &no).unwrap_err();
    assert!(
        matches!(err, IngestError::Invalid(ref m) if m.contains("max_records (10)")),
        "{err}"
    );
    assert!(scan_protobuf(&bytes, Signal::Logs, &IngestLimits::default(), &no).is_ok());
}

fn nested(depth: u32) -> AnyValue {
    let mut value = AnyValue {
        value: Some(Value::IntValue(1)),
    };
    for _ in 1..depth {
        value = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue {
                values: vec![value],
            })),
        };
    }
    value
}

#[test]
fn values_nested_deeper_than_the_limit_are_refused() {
    let mut request = crate::ingest::tests::fixtures::logs(1);
    let record = &mut request.resource_logs[0].scope_logs[0].log_records[0];
    record.body = Some(nested(24));
    let bytes = request.encode_to_vec();
    let shape = scan_protobuf(&bytes, Signal::Logs, &IngestLimits::default(), &no).unwrap();
    assert_eq!(shape.value_depth, 24);
    request.resource_logs[0].scope_logs[0].log_records[0].body = Some(nested(25));
    let bytes = request.encode_to_vec();
    let err = scan_protobuf(&bytes, Signal::Logs, &IngestLimits::default(), &no).unwrap_err();
    assert!(err.to_string().contains("max_value_depth (24)"), "{err}");
}

#[test]
fn malformed_wire_data_is_refused_as_undecodable() {
    for bytes in [
        &b"\x0a\x05ab"[..],       // length past the end
        &b"\x0a\x02\xff\xff"[..], // a bad varint inside
        &b"\x0b\x08\x01"[..],     // a group without its end
        &b"\x0f"[..],             // wire type 7
        &b"\x00\x01"[..],         // field number 0
        &b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"[..],
    ] {
        let err = scan_protobuf(bytes, Signal::Logs, &IngestLimits::default(), &no).unwrap_err();
        assert!(
            matches!(err, IngestError::Decode { .. }),
            "{bytes:?}: {err}"
        );
    }
}

#[test]
fn a_scan_stops_when_its_client_has_gone() {
    let request = crate::ingest::tests::fixtures::empty_spans(200_000);
    let limits = IngestLimits {
        max_records: 1_000_000,
        ..IngestLimits::default()
    };
    let err =
        scan_protobuf(&request.encode_to_vec(), Signal::Traces, &limits, &|| true).unwrap_err();
    assert!(err.to_string().contains("went away"), "{err}");
}

fn check_json<T: serde::Serialize + serde::de::DeserializeOwned>(request: &T, records: u64) {
    let json = serde_json::to_vec(request).unwrap();
    let shape = scan_json(&json, Signal::Logs, &IngestLimits::default(), &no).unwrap();
    assert_eq!(shape.records, records);
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let decoded = serde_json::from_slice::<T>(&json).unwrap();
    let peak = (PEAK.with(Cell::get) - base) as u64;
    drop(decoded);
    assert!(shape.heap_bytes >= peak, "{} vs {peak}", shape.heap_bytes);
}

#[test]
fn a_json_request_is_bounded_above_what_it_decodes_to() {
    check_json(&crate::ingest::tests::fixtures::logs(50), 50);
    check_json(&every_log(), 3);
    check_json(&every_span(), 2);
    check_json(&every_metric(), 6);
}

#[test]
fn malformed_json_is_refused() {
    for json in [&b"{\"a\":[1,2"[..], b"}", b"{\"a\":\"open}"] {
        assert!(scan_json(json, Signal::Logs, &IngestLimits::default(), &no).is_err());
    }
    let deep = "[".repeat(200) + &"]".repeat(200);
    assert!(scan_json(deep.as_bytes(), Signal::Logs, &IngestLimits::default(), &no).is_err());
}
