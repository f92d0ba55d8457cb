use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, summary_data_point::ValueAtQuantile,
    ExponentialHistogram, Gauge, Histogram, ScopeMetrics, Sum, Summary,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::*;
use crate::export::budget::Budget;

const FALLBACK: i64 = 999;
const T1: u64 = 1_700_000_000_123_456_789;
const T1_MS: i64 = 1_700_000_000_123;

fn any(value: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(value) })
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: any(any_value::Value::StringValue(value.to_string())),
        ..Default::default()
    }
}

fn kv_any(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: any(value),
        ..Default::default()
    }
}

fn number(
    attributes: Vec<KeyValue>,
    time: u64,
    value: number_data_point::Value,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        time_unix_nano: time,
        value: Some(value),
        ..Default::default()
    }
}

fn double(value: f64) -> NumberDataPoint {
    number(vec![], T1, number_data_point::Value::AsDouble(value))
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.to_string(),
        unit: unit.to_string(),
        data: Some(data),
        ..Default::default()
    }
}

fn gauge(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    metric(
        name,
        unit,
        Data::Gauge(Gauge {
            data_points: points,
        }),
    )
}

fn sum(
    name: &str,
    temporality: AggregationTemporality,
    monotonic: bool,
    points: Vec<NumberDataPoint>,
) -> Metric {
    metric(
        name,
        "",
        Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: monotonic,
        }),
    )
}

fn histogram(
    name: &str,
    temporality: AggregationTemporality,
    points: Vec<HistogramDataPoint>,
) -> Metric {
    metric(
        name,
        "s",
        Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: temporality as i32,
        }),
    )
}

fn request(
    resource: Vec<KeyValue>,
    scope: Option<InstrumentationScope>,
    metrics: Vec<Metric>,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope,
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn run(req: &ExportMetricsServiceRequest) -> (Vec<MappedSample>, Vec<Unmappable>) {
    let (mut out, mut refused) = (Vec::new(), Vec::new());
    map_metrics(
        req,
        FALLBACK,
        &mut Budget::new(usize::MAX),
        &mut out,
        &mut refused,
    )
    .expect("an unlimited budget");
    (out, refused)
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn name_of(sample: &MappedSample) -> &str {
    sample
        .labels
        .iter()
        .find(|(k, _)| k == "__name__")
        .map_or("", |(_, v)| v.as_str())
}

fn label<'a>(sample: &'a MappedSample, key: &str) -> Option<&'a str> {
    sample
        .labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn gauge_maps_to_one_sample_with_sorted_labels() {
    let point = number(
        vec![kv("http.method", "GET"), kv("a", "1")],
        T1,
        number_data_point::Value::AsInt(42),
    );
    let (out, refused) = run(&request(
        vec![],
        None,
        vec![gauge("queue.depth", "{item}", vec![point])],
    ));
    assert!(refused.is_empty());
    assert_eq!(
        out,
        vec![MappedSample {
            labels: labels(&[
                ("__name__", "queue_depth"),
                ("a", "1"),
                ("http_method", "GET")
            ]),
            timestamp_ms: T1_MS,
            value: 42.0,
        }]
    );
}

#[test]
fn monotonic_cumulative_sum_is_a_total_counter() {
    let m = metric(
        "http.server.requests",
        "{request}",
        Data::Sum(Sum {
            data_points: vec![double(7.5)],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
    );
    let (out, _) = run(&request(vec![], None, vec![m]));
    assert_eq!(name_of(&out[0]), "http_server_requests_total");
    assert_eq!(out[0].value, 7.5);

    let already = sum(
        "jobs_total",
        AggregationTemporality::Cumulative,
        true,
        vec![double(1.0)],
    );
    let (out, _) = run(&request(vec![], None, vec![already]));
    assert_eq!(name_of(&out[0]), "jobs_total");
}

#[test]
fn non_monotonic_cumulative_sum_is_gauge_named() {
    let m = sum(
        "pool.size",
        AggregationTemporality::Cumulative,
        false,
        vec![double(-3.0)],
    );
    let (out, refused) = run(&request(vec![], None, vec![m]));
    assert!(refused.is_empty());
    assert_eq!(name_of(&out[0]), "pool_size");
    assert_eq!(out[0].value, -3.0);
}

#[test]
fn gauge_unit_suffixes_and_ratio() {
    let metrics = vec![
        gauge("cpu.utilization", "1", vec![double(0.5)]),
        gauge("memory.usage", "By", vec![double(1.0)]),
        gauge("net.throughput", "By/s", vec![double(2.0)]),
    ];
    let (out, _) = run(&request(vec![], None, metrics));
    let names: Vec<&str> = out.iter().map(name_of).collect();
    assert_eq!(
        names,
        [
            "cpu_utilization_ratio",
            "memory_usage_bytes",
            "net_throughput_bytes_per_second"
        ]
    );
}

#[test]
fn delta_sums_and_histograms_are_refused() {
    let delta_sum = sum(
        "events",
        AggregationTemporality::Delta,
        true,
        vec![double(4.0), double(5.0)],
    );
    let point = HistogramDataPoint {
        time_unix_nano: 0,
        count: 2,
        sum: Some(3.25),
        ..Default::default()
    };
    let delta_hist = histogram("latency", AggregationTemporality::Delta, vec![point]);
    let (out, refused) = run(&request(vec![], None, vec![delta_sum, delta_hist]));
    assert!(out.is_empty(), "no samples and therefore no target_info");
    // One refusal per metric, counting its points and stamped with the
    // first: the name is not copied once per point.
    let expected = |subject: &str, count, timestamp_ms, value| Unmappable {
        reason: Reason::DeltaTemporality,
        subject: subject.to_string(),
        count,
        timestamp_ms,
        value,
    };
    assert_eq!(
        refused,
        vec![
            expected("events", 2, T1_MS, 4.0),
            expected("latency", 1, FALLBACK, 3.25)
        ]
    );
}

#[test]
fn unspecified_temporality_is_unsupported() {
    let m = sum(
        "odd",
        AggregationTemporality::Unspecified,
        true,
        vec![double(1.0)],
    );
    let (out, refused) = run(&request(vec![], None, vec![m]));
    assert!(out.is_empty());
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].reason, Reason::Unsupported);
    assert_eq!(refused[0].subject, "odd");
}

#[test]
fn histogram_buckets_are_cumulative_with_inf_sum_and_count() {
    let point = HistogramDataPoint {
        attributes: vec![kv("route", "/a")],
        time_unix_nano: T1,
        count: 10,
        sum: Some(12.5),
        bucket_counts: vec![1, 2, 3, 4],
        explicit_bounds: vec![0.005, 1.0, 2.5],
        ..Default::default()
    };
    let m = histogram(
        "rpc.duration",
        AggregationTemporality::Cumulative,
        vec![point],
    );
    let (out, refused) = run(&request(vec![], None, vec![m]));
    assert!(refused.is_empty());
    let rows: Vec<(&str, Option<&str>, f64)> = out
        .iter()
        .map(|s| (name_of(s), label(s, "le"), s.value))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("rpc_duration_seconds_bucket", Some("0.005"), 1.0),
            ("rpc_duration_seconds_bucket", Some("1"), 3.0),
            ("rpc_duration_seconds_bucket", Some("2.5"), 6.0),
            ("rpc_duration_seconds_bucket", Some("+Inf"), 10.0),
            ("rpc_duration_seconds_sum", None, 12.5),
            ("rpc_duration_seconds_count", None, 10.0),
        ]
    );
    assert!(out
        .iter()
        .all(|s| label(s, "route") == Some("/a") && s.timestamp_ms == T1_MS));
}

#[test]
fn histogram_without_sum_or_buckets_and_malformed_histograms() {
    let bare = HistogramDataPoint {
        time_unix_nano: T1,
        count: 4,
        ..Default::default()
    };
    let mismatched = HistogramDataPoint {
        time_unix_nano: T1,
        count: 1,
        sum: Some(2.0),
        bucket_counts: vec![1, 0],
        explicit_bounds: vec![1.0, 2.0],
        ..Default::default()
    };
    let m = histogram(
        "h",
        AggregationTemporality::Cumulative,
        vec![bare, mismatched],
    );
    let (out, refused) = run(&request(vec![], None, vec![m]));
    let rows: Vec<(&str, Option<&str>, f64)> = out
        .iter()
        .map(|s| (name_of(s), label(s, "le"), s.value))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("h_seconds_bucket", Some("+Inf"), 4.0),
            ("h_seconds_count", None, 4.0)
        ]
    );
    assert_eq!(
        refused,
        vec![Unmappable {
            reason: Reason::Unsupported,
            subject: "h".to_string(),
            count: 1,
            timestamp_ms: T1_MS,
            value: 2.0
        }]
    );
}

#[test]
fn summary_maps_quantiles_sum_and_count() {
    let point = SummaryDataPoint {
        time_unix_nano: T1,
        count: 8,
        sum: 40.0,
        quantile_values: vec![
            ValueAtQuantile {
                quantile: 0.99,
                value: 9.0,
            },
            ValueAtQuantile {
                quantile: 0.5,
                value: 4.0,
            },
        ],
        ..Default::default()
    };
    let m = metric(
        "gc.pause",
        "ms",
        Data::Summary(Summary {
            data_points: vec![point],
        }),
    );
    let (out, _) = run(&request(vec![], None, vec![m]));
    let rows: Vec<(&str, Option<&str>, f64)> = out
        .iter()
        .map(|s| (name_of(s), label(s, "quantile"), s.value))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("gc_pause_milliseconds", Some("0.5"), 4.0),
            ("gc_pause_milliseconds", Some("0.99"), 9.0),
            ("gc_pause_milliseconds_sum", None, 40.0),
            ("gc_pause_milliseconds_count", None, 8.0),
        ]
    );
}

#[test]
fn exponential_histograms_are_refused_as_one_item_counting_their_points() {
    let point = |sum| ExponentialHistogramDataPoint {
        time_unix_nano: T1,
        count: 3,
        sum,
        positive: Some(Buckets {
            offset: 0,
            bucket_counts: vec![3],
        }),
        ..Default::default()
    };
    let data = Data::ExponentialHistogram(ExponentialHistogram {
        data_points: vec![point(Some(6.0)), point(None)],
        aggregation_temporality: AggregationTemporality::Cumulative as i32,
    });
    let (out, refused) = run(&request(vec![], None, vec![metric("exp", "s", data)]));
    assert!(out.is_empty());
    let values: Vec<(Reason, &str, u64, f64)> = refused
        .iter()
        .map(|r| (r.reason, r.subject.as_str(), r.count, r.value))
        .collect();
    assert_eq!(
        values,
        vec![(Reason::Unsupported, "exp", 2, 6.0)],
        "one refusal counting both points, with the first one's value"
    );
}

#[test]
fn colliding_attribute_names_are_merged_in_key_order() {
    let attributes = vec![
        kv("a_b", "second"),
        kv("a.b", "first"),
        kv("a-b", ""),
        kv("a/b", "third"),
    ];
    let point = number(attributes, T1, number_data_point::Value::AsDouble(1.0));
    let (out, _) = run(&request(vec![], None, vec![gauge("g", "", vec![point])]));
    // Original keys sorted: "a.b" < "a/b" < "a_b"; "a-b" has an empty value.
    assert_eq!(
        out[0].labels,
        labels(&[("__name__", "g"), ("a_b", "first;third;second")])
    );
}

#[test]
fn attribute_values_of_every_type_become_text() {
    let nested = any_value::Value::KvlistValue(KeyValueList {
        values: vec![kv("k", "v")],
    });
    let array = any_value::Value::ArrayValue(ArrayValue {
        values: vec![
            AnyValue {
                value: Some(any_value::Value::IntValue(1)),
            },
            AnyValue {
                value: Some(any_value::Value::StringValue("x".into())),
            },
            AnyValue {
                value: Some(any_value::Value::BoolValue(true)),
            },
            AnyValue {
                value: Some(nested),
            },
        ],
    });
    let attributes = vec![
        kv_any("int", any_value::Value::IntValue(-7)),
        kv_any("bool", any_value::Value::BoolValue(false)),
        kv_any("double", any_value::Value::DoubleValue(1.5)),
        kv_any("bytes", any_value::Value::BytesValue(b"hello".to_vec())),
        kv_any("array", array),
    ];
    let point = number(attributes, T1, number_data_point::Value::AsInt(1));
    let (out, _) = run(&request(vec![], None, vec![gauge("g", "", vec![point])]));
    assert_eq!(
        out[0].labels,
        labels(&[
            ("__name__", "g"),
            ("array", r#"[1,"x",true,{"k":"v"}]"#),
            ("bool", "false"),
            ("bytes", "aGVsbG8="),
            ("double", "1.5"),
            ("int", "-7"),
        ])
    );
}

#[test]
fn job_instance_scope_labels_and_target_info() {
    let resource = vec![
        kv("service.name", "api"),
        kv("service.namespace", "shop"),
        kv("service.instance.id", "pod-1"),
        kv("host.name", "node-a"),
        kv_any("process.pid", any_value::Value::IntValue(77)),
    ];
    let scope = InstrumentationScope {
        name: "io.meter".into(),
        version: "1.2".into(),
        ..Default::default()
    };
    let points = vec![
        number(vec![], T1, number_data_point::Value::AsInt(1)),
        number(
            vec![],
            T1 + 5_000_000_000,
            number_data_point::Value::AsInt(2),
        ),
    ];
    let (out, refused) = run(&request(
        resource,
        Some(scope),
        vec![gauge("up", "", points)],
    ));
    assert!(refused.is_empty());
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[0].labels,
        labels(&[
            ("__name__", "up"),
            ("instance", "pod-1"),
            ("job", "shop/api"),
            ("otel_scope_name", "io.meter"),
            ("otel_scope_version", "1.2"),
        ])
    );
    assert_eq!(
        out[2],
        MappedSample {
            labels: labels(&[
                ("__name__", "target_info"),
                ("host_name", "node-a"),
                ("instance", "pod-1"),
                ("job", "shop/api"),
                ("process_pid", "77"),
            ]),
            timestamp_ms: T1_MS + 5_000,
            value: 1.0,
        }
    );
}

#[test]
fn job_without_namespace_and_no_job_without_service_name() {
    let (out, _) = run(&request(
        vec![kv("service.name", "api")],
        None,
        vec![gauge("g", "", vec![double(1.0)])],
    ));
    assert_eq!(label(&out[0], "job"), Some("api"));
    assert_eq!(label(&out[0], "instance"), None);

    let resource = vec![
        kv("service.namespace", "shop"),
        kv("service.instance.id", "i-1"),
    ];
    let (out, _) = run(&request(
        resource,
        None,
        vec![gauge("g", "", vec![double(1.0)])],
    ));
    assert_eq!(label(&out[0], "job"), None);
    assert_eq!(label(&out[0], "instance"), Some("i-1"));
    assert_eq!(
        out[1].labels,
        labels(&[("__name__", "target_info"), ("instance", "i-1")])
    );
}

#[test]
fn generated_labels_win_over_attributes() {
    let attributes = vec![
        kv("job", "attr-job"),
        kv("le", "attr-le"),
        kv("otel.scope.name", "attr-scope"),
    ];
    let point = HistogramDataPoint {
        attributes,
        time_unix_nano: T1,
        count: 1,
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "real".into(),
        ..Default::default()
    };
    let m = histogram("h", AggregationTemporality::Cumulative, vec![point]);
    let (out, _) = run(&request(
        vec![kv("service.name", "svc")],
        Some(scope),
        vec![m],
    ));
    assert_eq!(label(&out[0], "job"), Some("svc"));
    assert_eq!(label(&out[0], "le"), Some("+Inf"));
    assert_eq!(label(&out[0], "otel_scope_name"), Some("real"));
    assert_eq!(
        label(&out[1], "le"),
        Some("attr-le"),
        "_count keeps the attribute"
    );
}

#[test]
fn no_recorded_value_emits_staleness_markers_for_every_series() {
    let stale_gauge = NumberDataPoint {
        time_unix_nano: T1,
        flags: 1,
        value: None,
        ..Default::default()
    };
    let stale_hist = HistogramDataPoint {
        time_unix_nano: T1,
        flags: 1,
        count: 2,
        sum: Some(1.0),
        bucket_counts: vec![1, 1],
        explicit_bounds: vec![1.0],
        ..Default::default()
    };
    let metrics = vec![
        gauge("g", "", vec![stale_gauge]),
        histogram("h", AggregationTemporality::Cumulative, vec![stale_hist]),
    ];
    let (out, refused) = run(&request(vec![], None, metrics));
    assert!(refused.is_empty());
    let names: Vec<&str> = out.iter().map(name_of).collect();
    assert_eq!(
        names,
        [
            "g",
            "h_seconds_bucket",
            "h_seconds_bucket",
            "h_seconds_sum",
            "h_seconds_count"
        ]
    );
    for sample in &out {
        assert_eq!(
            sample.value.to_bits(),
            0x7ff0_0000_0000_0002,
            "{}",
            name_of(sample)
        );
    }
}

#[test]
fn empty_resource_has_no_target_info() {
    let (out, _) = run(&request(
        vec![],
        None,
        vec![gauge("g", "", vec![double(1.0)])],
    ));
    assert_eq!(out.len(), 1);
    assert_eq!(name_of(&out[0]), "g");
}

#[test]
fn zero_timestamps_use_the_fallback_and_ints_become_floats() {
    let point = number(
        vec![],
        0,
        number_data_point::Value::AsInt(-9_007_199_254_740_993),
    );
    let (out, _) = run(&request(vec![], None, vec![gauge("g", "", vec![point])]));
    assert_eq!(out[0].timestamp_ms, FALLBACK);
    assert_eq!(out[0].value, -9_007_199_254_740_992.0);
}

#[test]
fn invalid_names_are_refused_as_invalid_labels() {
    let nameless = gauge("", "s", vec![double(3.0)]);
    let bad_key = number(
        vec![kv("", "v")],
        T1,
        number_data_point::Value::AsDouble(4.0),
    );
    let empty_bad_key = number(
        vec![kv("", "")],
        T1,
        number_data_point::Value::AsDouble(5.0),
    );
    let (out, refused) = run(&request(
        vec![],
        None,
        vec![nameless, gauge("ok", "", vec![bad_key, empty_bad_key])],
    ));
    let reasons: Vec<(Reason, &str, f64)> = refused
        .iter()
        .map(|r| (r.reason, r.subject.as_str(), r.value))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (Reason::InvalidLabels, "", 3.0),
            (Reason::InvalidLabels, "ok", 4.0)
        ]
    );
    assert_eq!(
        out[0].value, 5.0,
        "an empty value drops the attribute before its key is checked"
    );
    assert_eq!(out.len(), 1);
}

#[test]
fn metric_without_data_is_refused_once() {
    let empty = Metric {
        name: "nothing".into(),
        ..Default::default()
    };
    let (out, refused) = run(&request(vec![kv("service.name", "s")], None, vec![empty]));
    assert!(out.is_empty());
    assert_eq!(
        refused,
        vec![Unmappable {
            reason: Reason::Unsupported,
            subject: "nothing".into(),
            count: 1,
            timestamp_ms: FALLBACK,
            value: 0.0
        }]
    );
}

#[test]
fn invalid_resource_attribute_refuses_only_target_info() {
    let (out, refused) = run(&request(
        vec![kv("", "x")],
        None,
        vec![gauge("g", "", vec![double(1.0)])],
    ));
    assert_eq!(out.len(), 1);
    assert_eq!(name_of(&out[0]), "g");
    assert_eq!(refused.len(), 1);
    assert_eq!(
        (refused[0].reason, refused[0].subject.as_str()),
        (Reason::InvalidLabels, "target_info")
    );
}

#[test]
fn output_is_deterministic_and_in_request_order() {
    let mut req = request(
        vec![kv("service.name", "one")],
        None,
        vec![gauge("a", "", vec![double(1.0)])],
    );
    let second = request(
        vec![kv("service.name", "two")],
        None,
        vec![gauge("b", "", vec![double(2.0), double(3.0)])],
    );
    req.resource_metrics.extend(second.resource_metrics);
    let (first_out, first_refused) = run(&req);
    let (again_out, again_refused) = run(&req);
    assert_eq!(first_out, again_out);
    assert_eq!(first_refused, again_refused);
    let order: Vec<(&str, Option<&str>, f64)> = first_out
        .iter()
        .map(|s| (name_of(s), label(s, "job"), s.value))
        .collect();
    assert_eq!(
        order,
        vec![
            ("a", Some("one"), 1.0),
            ("target_info", Some("one"), 1.0),
            ("b", Some("two"), 2.0),
            ("b", Some("two"), 3.0),
            ("target_info", Some("two"), 1.0),
        ]
    );
}
