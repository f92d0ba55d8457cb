use serde_json::json;

use super::*;
use crate::pb::loki::{EntryAdapter, LabelPairAdapter, StreamAdapter, Timestamp};

fn line(selector: &str, unix_nanos: u64, id: &str, bytes: usize) -> ProbeLine {
    ProbeLine {
        selector: selector.into(),
        unix_nanos,
        id: id.into(),
        bytes,
        line_hash: None,
    }
}

#[test]
fn a_probe_names_its_ids_grouped_by_log_index_over_their_time_range() {
    const T: u64 = 1_700_000_000_000_000_000;
    let probes = probes(&[
        line("{service_name=\"a\"}", T + 30, "12:0", 1),
        line("{service_name=\"b\"}", T + 5, "12:1", 1),
        line("{service_name=\"a\"}", T + 10, "12:2", 1),
        line("{service_name=\"a\"}", T + 20, "13:0", 1),
    ]);
    assert_eq!(probes.len(), 2, "one per stream");
    let a = &probes[0];
    assert_eq!(
        (a.start_nanos, a.end_nanos),
        (T + 10, T + 31),
        "end is exclusive"
    );
    assert_eq!(
        a.logql(),
        "{service_name=\"a\"} | otelraft_record=~\"12:(2|0)|13:0\"",
        "ids in time order"
    );
    assert_eq!(
        probes[1].logql(),
        "{service_name=\"b\"} | otelraft_record=~\"12:1\""
    );
    let params = a.params();
    assert!(params.contains(&("limit", "6".to_string())));
    assert!(params.contains(&("direction", "forward".to_string())));
}

#[test]
fn probes_are_cut_by_record_count_and_by_line_bytes() {
    let many: Vec<ProbeLine> = (0..PROBE_RECORDS + 1)
        .map(|i| line("{a=\"b\"}", i as u64, &format!("1:{i}"), 10))
        .collect();
    let cut = probes(&many);
    assert_eq!(
        cut.iter().map(|p| p.ids.len()).collect::<Vec<_>>(),
        vec![PROBE_RECORDS, 1]
    );
    let big = vec![
        line("{a=\"b\"}", 1, "1:0", PROBE_LINE_BYTES),
        line("{a=\"b\"}", 2, "2:0", 1),
        line("{a=\"b\"}", 3, "3:0", 1),
    ];
    let cut = probes(&big);
    assert_eq!(
        cut.iter().map(|p| p.ids.len()).collect::<Vec<_>>(),
        vec![1, 2],
        "a line of the whole budget goes alone"
    );
}

#[test]
fn found_lines_are_read_from_stream_labels_or_from_categorized_metadata() {
    let merged = json!({"status":"success","data":{"resultType":"streams","result":[
        {"stream":{"service_name":"a","otelraft_record":"1:0"},"values":[["10","x"]]},
        {"stream":{"service_name":"a","otelraft_record":"1:1"},"values":[["11","y"]]}
    ]}});
    let categorized = json!({"status":"success","data":{"resultType":"streams","encodingFlags":["categorize-labels"],"result":[
        {"stream":{"service_name":"a"},"values":[
            ["10","x",{"structuredMetadata":{"otelraft_record":"2:0"}}],
            ["11","y",{"structuredMetadata":{"otelraft_record":"2:1"}}]
        ]}
    ]}});
    let mut found = HashSet::new();
    assert_eq!(found_lines(&merged, &mut found), Ok(2));
    assert_eq!(found_lines(&categorized, &mut found), Ok(2));
    assert!(found.contains(&Found {
        id: "2:1".into(),
        unix_nanos: 11,
        line_hash: line_hash("y")
    }));
    assert_eq!(found.len(), 4);
    for bad in [
        json!({"status":"error","error":"parse error"}),
        json!({"status":"success","data":{"resultType":"matrix","result":[]}}),
        json!({"status":"success","data":{"resultType":"streams"}}),
    ] {
        assert!(found_lines(&bad, &mut HashSet::new()).is_err(), "{bad}");
    }
}

/// Another cluster writing the same stream reuses record ids: a line
/// with our id but another time or text is not ours, and is not skipped.
#[test]
fn a_line_counts_as_held_only_with_the_same_id_time_and_text() {
    let ours = |id: &str, ts: u64, text: Option<&str>| ProbeLine {
        line_hash: text.map(line_hash),
        ..line("{a=\"b\"}", ts, id, 1)
    };
    let lines = vec![
        ours("1:0", 10, Some("x")),
        ours("1:1", 11, Some("y")),
        ours("1:2", 12, Some("z")),
        ours("1:3", 13, None),
    ];
    let found: HashSet<Found> = [
        ("1:0", 10, "x"),     // ours
        ("1:1", 99, "y"),     // another time
        ("1:2", 12, "other"), // another text
        ("1:3", 13, "any"),   // a rendered body: id and time decide
    ]
    .into_iter()
    .map(|(id, unix_nanos, text)| Found {
        id: id.into(),
        unix_nanos,
        line_hash: line_hash(text),
    })
    .collect();
    let mut held: Vec<String> = confirmed(&lines, &found).into_iter().collect();
    held.sort();
    assert_eq!(held, vec!["1:0", "1:3"]);
}

fn entry(id: &str, ts: i64) -> EntryAdapter {
    EntryAdapter {
        timestamp: Some(Timestamp {
            seconds: ts,
            nanos: 5,
        }),
        line: format!("line {id}"),
        structured_metadata: vec![LabelPairAdapter {
            name: RECORD_ID_NAME.into(),
            value: id.into(),
        }],
    }
}

#[test]
fn a_push_request_keeps_only_the_entries_loki_does_not_hold() {
    let mut req = PushRequest {
        streams: vec![
            StreamAdapter {
                labels: "{service_name=\"a\"}".into(),
                entries: vec![entry("1:0", 1), entry("1:1", 2)],
                ..Default::default()
            },
            StreamAdapter {
                labels: "{service_name=\"b\"}".into(),
                entries: vec![entry("2:0", 3)],
                ..Default::default()
            },
        ],
    };
    let lines = push_lines(&req);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0].unix_nanos, 1_000_000_005);
    assert_eq!(lines[2].selector, "{service_name=\"b\"}");
    let held: HashSet<String> = ["1:1", "2:0"].into_iter().map(String::from).collect();
    retain_push(&mut req, &held);
    assert_eq!(req.streams.len(), 1, "a stream left empty is dropped");
    assert_eq!(req.streams[0].entries.len(), 1);
    assert_eq!(req.streams[0].entries[0].line, "line 1:0");
}

#[test]
fn an_otlp_request_is_probed_by_service_name_and_keeps_only_what_is_missing() {
    use opentelemetry_proto::tonic::common::v1::{AnyValue as Any, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let string = |s: &str| {
        Some(Any {
            value: Some(AnyValue::StringValue(s.into())),
        })
    };
    let record = |id: &str, time: u64, observed: u64| LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: observed,
        body: string("hello"),
        attributes: vec![KeyValue {
            key: RECORD_ID_ATTRIBUTE.into(),
            value: string(id),
            ..Default::default()
        }],
        ..Default::default()
    };
    let resource = |service: Option<&str>, records: Vec<LogRecord>| ResourceLogs {
        resource: Some(Resource {
            attributes: service
                .map(|s| KeyValue {
                    key: "service.name".into(),
                    value: string(s),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut req = ExportLogsServiceRequest {
        resource_logs: vec![
            resource(Some("shop"), vec![record("1:0", 7, 0), record("1:1", 0, 9)]),
            resource(None, vec![record("2:0", 11, 0)]),
        ],
    };
    let lines = otlp_lines(&req);
    let seen: Vec<(&str, u64, &str)> = lines
        .iter()
        .map(|l| (l.selector.as_str(), l.unix_nanos, l.id.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("{service_name=\"shop\"}", 7, "1:0"),
            ("{service_name=\"shop\"}", 9, "1:1"),
            ("{service_name=\"unknown_service\"}", 11, "2:0"),
        ]
    );
    let held: HashSet<String> = ["1:0", "1:1"].into_iter().map(String::from).collect();
    retain_otlp(&mut req, &held);
    assert_eq!(req.resource_logs.len(), 1);
    assert_eq!(otlp_lines(&req)[0].id, "2:0");
}

/// Loki refuses a query longer than `max_query_length`, reads a short
/// integer as seconds and an `end` past int64 not at all: one record from
/// 1970 or from far ahead must not make the read-back unanswerable.
#[test]
fn probes_span_at_most_an_hour_and_keep_to_bounds_loki_reads_as_nanoseconds() {
    const NOW: u64 = 1_700_000_000_000_000_000;
    let cut = probes(&[
        line("{a=\"b\"}", 0, "1:0", 1),
        line("{a=\"b\"}", NOW, "1:1", 1),
        line("{a=\"b\"}", NOW + PROBE_SPAN_NANOS, "1:2", 1),
        line("{a=\"b\"}", NOW + PROBE_SPAN_NANOS + 1, "1:3", 1),
        line("{a=\"b\"}", u64::MAX, "1:4", 1),
    ]);
    let spans: Vec<(u64, u64, usize)> = cut
        .iter()
        .map(|p| (p.start_nanos, p.end_nanos, p.ids.len()))
        .collect();
    assert_eq!(
        spans,
        vec![
            (10_000_000_000, 10_000_000_001, 1),
            (NOW, NOW + PROBE_SPAN_NANOS + 1, 2),
            (NOW + PROBE_SPAN_NANOS + 1, NOW + PROBE_SPAN_NANOS + 2, 1),
            (i64::MAX as u64 - 1, i64::MAX as u64, 1),
        ]
    );
}
