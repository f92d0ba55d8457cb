use crate::export::budget::Budget;
use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::*;

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(v.to_string())),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value),
        ..Default::default()
    }
}

fn record(body: &str, time: u64) -> LogRecord {
    LogRecord {
        time_unix_nano: time,
        body: Some(s(body)),
        ..Default::default()
    }
}

fn resource_logs(attrs: Vec<KeyValue>, records: Vec<LogRecord>) -> ResourceLogs {
    ResourceLogs {
        resource: Some(Resource {
            attributes: attrs,
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn request(rls: Vec<ResourceLogs>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest { resource_logs: rls }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn metadata(e: &EntryAdapter) -> Vec<(String, String)> {
    e.structured_metadata
        .iter()
        .map(|p| (p.name.clone(), p.value.clone()))
        .collect()
}

#[test]
fn promoted_resource_attributes_become_sanitised_sorted_labels() {
    let split = split_resource(&[
        kv("service.name", s("checkout")),
        kv("host.name", s("h1")),
        kv("k8s.pod.name", s("pod-1")),
        kv("deployment.environment.name", s("prod")),
        kv("cloud.region", s("eu-west-1")),
    ]);
    assert_eq!(
        split.labels,
        pairs(&[
            ("cloud_region", "eu-west-1"),
            ("deployment_environment_name", "prod"),
            ("k8s_pod_name", "pod-1"),
            ("service_name", "checkout"),
        ])
    );
    assert_eq!(split.metadata, pairs(&[("host_name", "h1")]));
    assert_eq!(
        format_labels(&split.labels),
        r#"{cloud_region="eu-west-1", deployment_environment_name="prod", k8s_pod_name="pod-1", service_name="checkout"}"#
    );
}

#[test]
fn missing_or_empty_service_name_is_unknown_service() {
    let split = split_resource(&[kv("host.name", s("h1"))]);
    assert_eq!(split.labels, pairs(&[("service_name", "unknown_service")]));
    let split = split_resource(&[kv("service.name", s(""))]);
    assert_eq!(split.labels, pairs(&[("service_name", "unknown_service")]));
    assert_eq!(split.metadata, pairs(&[("service_name", "")]));
    let mut b = PushBuilder::new();
    b.add_entry(
        1,
        5,
        &request(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record("x", 1)],
                ..Default::default()
            }],
            ..Default::default()
        }]),
        &mut Budget::new(usize::MAX),
    )
    .unwrap();
    assert_eq!(
        b.finish().streams[0].labels,
        r#"{service_name="unknown_service"}"#
    );
}

#[test]
fn sanitize_replaces_invalid_characters_and_prefixes_digits() {
    assert_eq!(sanitize_name("service.name"), "service_name");
    assert_eq!(sanitize_name("http-status/code"), "http_status_code");
    assert_eq!(sanitize_name("héllo"), "h_llo");
    assert_eq!(sanitize_name("9lives"), "key_9lives");
    assert_eq!(sanitize_name(""), "key_");
    assert_eq!(sanitize_name("_ok"), "_ok");
    for n in ["service.name", "9lives", "", "a b", "ünï"] {
        assert!(is_valid_label_name(&sanitize_name(n)), "{n:?}");
    }
    assert!(!is_valid_label_name("1a"));
    assert!(!is_valid_label_name(""));
    assert!(!is_valid_label_name("a.b"));
}

#[test]
fn metadata_order_and_content() {
    let rl = ResourceLogs {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", s("svc")),
                kv("host.name", s("h1")),
                kv(
                    "process.pid",
                    AnyValue {
                        value: Some(Value::IntValue(42)),
                    },
                ),
            ],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                version: "1.2".into(),
                attributes: vec![kv("scope.attr", s("sa"))],
                ..Default::default()
            }),
            log_records: vec![LogRecord {
                time_unix_nano: 7,
                severity_text: "WARN".into(),
                severity_number: 13,
                trace_id: vec![0xab; 16],
                span_id: vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0f],
                flags: 1,
                attributes: vec![
                    kv("http.method", s("GET")),
                    kv(
                        "ok",
                        AnyValue {
                            value: Some(Value::BoolValue(true)),
                        },
                    ),
                    kv(
                        "ratio",
                        AnyValue {
                            value: Some(Value::DoubleValue(0.5)),
                        },
                    ),
                    kv("otelraft.record", s("forged")),
                ],
                body: Some(s("hello")),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut b = PushBuilder::new();
    assert_eq!(
        b.add_entry(12, 99, &request(vec![rl]), &mut Budget::new(usize::MAX))
            .unwrap(),
        1
    );
    let push = b.finish();
    assert_eq!(push.streams.len(), 1);
    assert_eq!(push.streams[0].labels, r#"{service_name="svc"}"#);
    let e = &push.streams[0].entries[0];
    assert_eq!(e.line, "hello");
    assert_eq!(
        metadata(e),
        pairs(&[
            ("host_name", "h1"),
            ("process_pid", "42"),
            ("scope_name", "lib"),
            ("scope_version", "1.2"),
            ("scope_attr", "sa"),
            ("http_method", "GET"),
            ("ok", "true"),
            ("ratio", "0.5"),
            ("severity_text", "WARN"),
            ("severity_number", "13"),
            ("trace_id", "abababababababababababababababab"),
            ("span_id", "010203040506070f"),
            ("flags", "1"),
            ("otelraft_record", "12:0"),
        ])
    );
}

#[test]
fn empty_trace_context_and_severity_are_omitted() {
    let mut b = PushBuilder::new();
    b.add_entry(
        3,
        1,
        &request(vec![resource_logs(vec![], vec![record("x", 1)])]),
        &mut Budget::new(usize::MAX),
    )
    .unwrap();
    let push = b.finish();
    assert_eq!(
        metadata(&push.streams[0].entries[0]),
        pairs(&[("otelraft_record", "3:0")])
    );
}

#[test]
fn timestamp_falls_back_from_time_to_observed_to_proposed() {
    let with_time = LogRecord {
        time_unix_nano: 1_700_000_000_123_456_789,
        observed_time_unix_nano: 5,
        ..Default::default()
    };
    let observed_only = LogRecord {
        observed_time_unix_nano: 2_000_000_001,
        ..Default::default()
    };
    let neither = LogRecord::default();
    assert_eq!(record_time_nanos(&with_time, 9), 1_700_000_000_123_456_789);
    assert_eq!(record_time_nanos(&observed_only, 9), 2_000_000_001);
    assert_eq!(record_time_nanos(&neither, 9), 9);
    let mut b = PushBuilder::new();
    b.add_entry(
        1,
        3_000_000_002,
        &request(vec![resource_logs(
            vec![],
            vec![with_time, observed_only, neither],
        )]),
        &mut Budget::new(usize::MAX),
    )
    .unwrap();
    let push = b.finish();
    let ts: Vec<_> = push.streams[0]
        .entries
        .iter()
        .map(|e| e.timestamp.unwrap())
        .collect();
    assert_eq!(
        ts,
        vec![
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_789
            },
            Timestamp {
                seconds: 2,
                nanos: 1
            },
            Timestamp {
                seconds: 3,
                nanos: 2
            },
        ]
    );
    assert_eq!(
        to_timestamp(u64::MAX),
        Timestamp {
            seconds: 18_446_744_073,
            nanos: 709_551_615
        }
    );
}

#[test]
fn record_ids_are_ordinals_across_the_whole_entry() {
    let req = request(vec![
        resource_logs(
            vec![kv("service.name", s("a"))],
            vec![record("1", 1), record("2", 1)],
        ),
        resource_logs(vec![kv("service.name", s("b"))], vec![record("3", 1)]),
        resource_logs(vec![kv("service.name", s("a"))], vec![record("4", 1)]),
    ]);
    let mut b = PushBuilder::new();
    assert_eq!(
        b.add_entry(40, 0, &req, &mut Budget::new(usize::MAX))
            .unwrap(),
        4
    );
    assert_eq!(
        b.add_entry(41, 0, &req, &mut Budget::new(usize::MAX))
            .unwrap(),
        4
    );
    assert_eq!(b.lines(), 8);
    let push = b.finish();
    let ids = |i: usize| -> Vec<(String, String)> {
        push.streams[i]
            .entries
            .iter()
            .map(|e| (e.line.clone(), metadata(e).last().unwrap().1.clone()))
            .collect()
    };
    assert_eq!(
        ids(0),
        pairs(&[
            ("1", "40:0"),
            ("2", "40:1"),
            ("4", "40:3"),
            ("1", "41:0"),
            ("2", "41:1"),
            ("4", "41:3")
        ])
    );
    assert_eq!(ids(1), pairs(&[("3", "40:2"), ("3", "41:2")]));
}

#[test]
fn streams_are_sorted_by_label_string_and_entries_keep_log_order() {
    let mut b = PushBuilder::new();
    b.add_entry(
        1,
        0,
        &request(vec![resource_logs(
            vec![kv("service.name", s("zeta"))],
            vec![record("z1", 9)],
        )]),
        &mut Budget::new(usize::MAX),
    )
    .unwrap();
    b.add_entry(
        2,
        0,
        &request(vec![resource_logs(
            vec![kv("service.name", s("alpha"))],
            vec![record("a1", 5)],
        )]),
        &mut Budget::new(usize::MAX),
    )
    .unwrap();
    b.add_entry(
        3,
        0,
        &request(vec![resource_logs(
            vec![kv("service.name", s("zeta"))],
            vec![record("z2", 1)],
        )]),
        &mut Budget::new(usize::MAX),
    )
    .unwrap();
    let push = b.finish();
    let labels: Vec<_> = push.streams.iter().map(|s| s.labels.as_str()).collect();
    assert_eq!(
        labels,
        [r#"{service_name="alpha"}"#, r#"{service_name="zeta"}"#]
    );
    let lines: Vec<_> = push.streams[1]
        .entries
        .iter()
        .map(|e| e.line.as_str())
        .collect();
    assert_eq!(lines, ["z1", "z2"]);
    assert!(push.streams.iter().all(|s| s.hash == 0));
}

#[test]
fn building_twice_gives_identical_bytes() {
    let req = request(vec![
        resource_logs(
            vec![
                kv("service.name", s("svc")),
                kv("k8s.pod.name", s("p")),
                kv("x", s("y")),
            ],
            vec![record("one", 0), record("two", 0)],
        ),
        resource_logs(vec![], vec![record("three", 0)]),
    ]);
    let build = || {
        let mut b = PushBuilder::new();
        b.add_entry(7, 1_000, &req, &mut Budget::new(usize::MAX))
            .unwrap();
        b.add_entry(8, 2_000, &req, &mut Budget::new(usize::MAX))
            .unwrap();
        encode_push(&b.finish()).unwrap()
    };
    let first = build();
    assert_eq!(first, build());
    assert!(!first.is_empty());
}

#[test]
fn any_value_text_kinds() {
    let v = |value| AnyValue { value: Some(value) };
    assert_eq!(any_value_text(&s("a\"b")), "a\"b");
    assert_eq!(any_value_text(&v(Value::IntValue(-3))), "-3");
    assert_eq!(any_value_text(&v(Value::DoubleValue(1.0))), "1.0");
    assert_eq!(any_value_text(&v(Value::DoubleValue(f64::NAN))), "NaN");
    assert_eq!(
        any_value_text(&v(Value::DoubleValue(f64::NEG_INFINITY))),
        "-Inf"
    );
    assert_eq!(any_value_text(&v(Value::BoolValue(false))), "false");
    assert_eq!(any_value_text(&v(Value::BytesValue(vec![0, 255]))), "00ff");
    assert_eq!(any_value_text(&AnyValue::default()), "");
    let nested = v(Value::KvlistValue(KeyValueList {
        values: vec![
            kv(
                "z",
                v(Value::ArrayValue(ArrayValue {
                    values: vec![
                        v(Value::IntValue(1)),
                        s("two\n"),
                        v(Value::BytesValue(vec![0xab])),
                        v(Value::DoubleValue(f64::INFINITY)),
                        AnyValue::default(),
                    ],
                })),
            ),
            kv("a", v(Value::BoolValue(true))),
        ],
    }));
    assert_eq!(
        any_value_text(&nested),
        r#"{"z":[1,"two\n","ab","+Inf",null],"a":true}"#
    );
    let parsed: serde_json::Value = serde_json::from_str(&any_value_text(&nested)).unwrap();
    assert_eq!(parsed["a"], serde_json::Value::Bool(true));
}

#[test]
fn body_kinds_become_lines() {
    let mut rec = record("", 1);
    assert_eq!(body_text(&rec), "");
    rec.body = None;
    assert_eq!(body_text(&rec), "");
    rec.body = Some(AnyValue {
        value: Some(Value::IntValue(5)),
    });
    assert_eq!(body_text(&rec), "5");
}

#[test]
fn empty_builder_and_records_free_resources() {
    let mut b = PushBuilder::new();
    assert!(b.is_empty());
    assert_eq!(
        b.add_entry(
            1,
            1,
            &request(vec![resource_logs(vec![], vec![])]),
            &mut Budget::new(usize::MAX)
        )
        .unwrap(),
        0
    );
    assert!(b.is_empty());
    assert!(b.finish().streams.is_empty());
}

#[test]
fn a_resource_attribute_copied_into_every_line_is_charged_before_anything_is_added() {
    // 1 MiB of resource attribute (metadata on every line) and 100 lines.
    let big = kv("host.note", s(&"x".repeat(1 << 20)));
    let records = (0..100).map(|i| record("line", i + 1)).collect();
    let req = request(vec![resource_logs(vec![big], records)]);
    assert!(derived_cost(&req) > 100 << 20);
    let mut b = PushBuilder::new();
    let mut budget = Budget::new(crate::export::budget::DERIVED_BYTES_PER_BATCH);
    assert_eq!(
        b.add_entry(1, 1, &req, &mut budget),
        Err(crate::export::budget::OverBudget)
    );
    assert!(b.is_empty(), "nothing was added");
    let small = request(vec![resource_logs(
        vec![kv("service.name", s("svc"))],
        vec![record("hi", 1)],
    )]);
    let mut fresh = Budget::new(crate::export::budget::DERIVED_BYTES_PER_BATCH);
    assert_eq!(b.add_entry(2, 1, &small, &mut fresh), Ok(1));
}
