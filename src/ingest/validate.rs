//! Record counting and the "bad data" checks, per signal.
//!
//! Only checks a user would agree mark broken data are made: malformed ids,
//! unnamed metrics, metrics without data, the structure limits. A failing
//! check removes the smallest item it concerns (a record, a data point, a
//! span, or the metric, scope or resource the failure is in) and the rest
//! of the request goes on: OTLP's `partial_success`. Reasons carry the OTLP
//! JSON path of the offending item.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, Metric, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::limits;
use crate::config::IngestLimits;

const TRACE_ID_LEN: usize = 16;
const SPAN_ID_LEN: usize = 8;

/// Log records in the request.
pub(crate) fn count_logs(request: &ExportLogsServiceRequest) -> u64 {
    let scopes = request.resource_logs.iter().flat_map(|r| &r.scope_logs);
    scopes.map(|s| s.log_records.len() as u64).sum()
}

/// Data points in the request, over every metric type.
pub(crate) fn count_metrics(request: &ExportMetricsServiceRequest) -> u64 {
    let scopes = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics);
    scopes
        .flat_map(|s| &s.metrics)
        .map(|m| data_points(m) as u64)
        .sum()
}

/// Spans in the request.
pub(crate) fn count_traces(request: &ExportTraceServiceRequest) -> u64 {
    let scopes = request.resource_spans.iter().flat_map(|r| &r.scope_spans);
    scopes.map(|s| s.spans.len() as u64).sum()
}

fn data_points(metric: &Metric) -> usize {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(e)) => e.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// What the checks took out of a request: the records removed with their
/// items, and the first reason, naming its item by OTLP JSON path.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rejected {
    pub records: u64,
    pub first: Option<String>,
}

impl Rejected {
    /// Keeps an item whose check passed; otherwise counts its `records` and
    /// keeps the first reason.
    fn keep(&mut self, check: Result<(), String>, records: u64) -> bool {
        match check {
            Ok(()) => true,
            Err(reason) => {
                self.records += records;
                self.first.get_or_insert(reason);
                false
            }
        }
    }

    /// `Err` with the first reason if anything was rejected: the strict
    /// answer, for payloads that must arrive already clean.
    pub(crate) fn into_result(self) -> Result<(), String> {
        match self.first {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }
}

/// `Vec::retain_mut` with each item's index in the original order. An item
/// whose own contents `keep` emptied is dropped as well (`len` counts them),
/// so no empty shell is committed; one that arrived empty stays.
fn retain_indexed<T>(
    items: &mut Vec<T>,
    len: impl Fn(&T) -> usize,
    mut keep: impl FnMut(usize, &mut T) -> bool,
) {
    let mut index = 0;
    items.retain_mut(|item| {
        let before = len(item);
        let kept = keep(index, item);
        index += 1;
        kept && (before == 0 || len(item) > 0)
    });
}

/// Removes the log records that fail a check (malformed trace context, a
/// structure limit), with their whole scope or resource when the failure
/// is there. Log records may omit trace context, but present ids must be
/// well-formed.
pub(crate) fn reject_invalid_logs(
    request: &mut ExportLogsServiceRequest,
    l: &IngestLimits,
) -> Rejected {
    let mut out = Rejected::default();
    let scope_len = |s: &ScopeLogs| s.log_records.len();
    let resource_len = |r: &ResourceLogs| r.scope_logs.iter().map(scope_len).sum();
    retain_indexed(&mut request.resource_logs, resource_len, |ri, resource| {
        let check = limits::resource(resource.resource.as_ref(), l, &|| {
            format!("resourceLogs[{ri}]")
        });
        if !out.keep(check, resource_len(resource) as u64) {
            return false;
        }
        retain_indexed(&mut resource.scope_logs, scope_len, |si, scope| {
            let at = || format!("resourceLogs[{ri}].scopeLogs[{si}]");
            let check = limits::scope(scope.scope.as_ref(), l, &at);
            if !out.keep(check, scope.log_records.len() as u64) {
                return false;
            }
            retain_indexed(
                &mut scope.log_records,
                |_| 1,
                |li, record| {
                    let at = || format!("{}.logRecords[{li}]", at());
                    out.keep(check_log_record(record, l, &at), 1)
                },
            );
            true
        });
        true
    });
    out
}

fn check_log_record(
    record: &LogRecord,
    l: &IngestLimits,
    at: &dyn Fn() -> String,
) -> Result<(), String> {
    optional_id(&record.trace_id, TRACE_ID_LEN, "traceId", at)?;
    optional_id(&record.span_id, SPAN_ID_LEN, "spanId", at)?;
    limits::attributes(&record.attributes, l, at)
}

/// Removes the data points that fail a check, with their whole metric,
/// scope or resource when the failure is there. Every metric needs a name
/// and a data kind (gauge, sum, ...), and may not use a name or label the
/// exporter owns (see [`reserved_metric_name`]).
pub(crate) fn reject_invalid_metrics(
    request: &mut ExportMetricsServiceRequest,
    l: &IngestLimits,
) -> Rejected {
    let mut out = Rejected::default();
    let scope_len = |s: &ScopeMetrics| s.metrics.iter().map(data_points).sum();
    let resource_len = |r: &ResourceMetrics| r.scope_metrics.iter().map(scope_len).sum();
    retain_indexed(
        &mut request.resource_metrics,
        resource_len,
        |ri, resource| {
            let at = || format!("resourceMetrics[{ri}]");
            let attributes = resource
                .resource
                .as_ref()
                .map_or(&[][..], |r| &r.attributes[..]);
            let check = limits::resource(resource.resource.as_ref(), l, &at)
                .and_then(|()| no_reserved_labels(attributes, &|| format!("{}.resource", at())));
            if !out.keep(check, resource_len(resource) as u64) {
                return false;
            }
            retain_indexed(&mut resource.scope_metrics, scope_len, |si, scope| {
                let at = || format!("resourceMetrics[{ri}].scopeMetrics[{si}]");
                let attributes = scope.scope.as_ref().map_or(&[][..], |s| &s.attributes[..]);
                let check = limits::scope(scope.scope.as_ref(), l, &at)
                    .and_then(|()| no_reserved_labels(attributes, &|| format!("{}.scope", at())));
                if !out.keep(check, scope_len(scope) as u64) {
                    return false;
                }
                retain_indexed(&mut scope.metrics, data_points, |mi, metric| {
                    let at = || format!("{}.metrics[{mi}]", at());
                    if !out.keep(check_metric(metric, l, &at), data_points(metric) as u64) {
                        return false;
                    }
                    let keep_point = |pi: usize, attributes: &[KeyValue], buckets: usize| {
                        let at = || format!("{}.dataPoints[{pi}]", at());
                        no_reserved_labels(attributes, &at)
                            .and_then(|()| limits::attributes(attributes, l, &at))
                            .and_then(|()| limits::buckets(buckets, l, &at))
                    };
                    retain_points(metric, &mut out, &keep_point);
                    true
                });
                true
            });
            true
        },
    );
    out
}

/// The checks on a metric as a whole: name, reserved name, data kind.
fn check_metric(metric: &Metric, l: &IngestLimits, at: &dyn Fn() -> String) -> Result<(), String> {
    if metric.name.is_empty() {
        return Err(format!("{}.name: must not be empty", at()));
    }
    limits::name(&metric.name, l, at)?;
    if reserved_metric_name(&metric.name) {
        return Err(format!(
            "{}.name ({:?}): names beginning with \"otelraft\" are reserved for otelraft's own series",
            at(),
            crate::text::quote(&metric.name)
        ));
    }
    if metric.data.is_none() {
        return Err(format!(
            "{} ({:?}): has no data (gauge, sum, histogram, exponentialHistogram or summary)",
            at(),
            crate::text::quote(&metric.name)
        ));
    }
    Ok(())
}

/// The check on one data point: its index, attributes and bucket count.
type PointCheck<'a> = dyn Fn(usize, &[KeyValue], usize) -> Result<(), String> + 'a;

/// Removes the data points of `metric` that fail `check`.
fn retain_points(metric: &mut Metric, out: &mut Rejected, check: &PointCheck<'_>) {
    fn retain<P>(
        points: &mut Vec<P>,
        out: &mut Rejected,
        check: &PointCheck<'_>,
        attributes: impl Fn(&P) -> &[KeyValue],
        buckets: impl Fn(&P) -> usize,
    ) {
        retain_indexed(
            points,
            |_| 1,
            |pi, p| out.keep(check(pi, attributes(p), buckets(p)), 1),
        );
    }
    let side = |b: &Option<Buckets>| b.as_ref().map_or(0, |b| b.bucket_counts.len());
    match &mut metric.data {
        Some(Data::Gauge(g)) => retain(&mut g.data_points, out, check, |p| &p.attributes, |_| 0),
        Some(Data::Sum(s)) => retain(&mut s.data_points, out, check, |p| &p.attributes, |_| 0),
        Some(Data::Histogram(h)) => retain(
            &mut h.data_points,
            out,
            check,
            |p| &p.attributes,
            |p| p.bucket_counts.len().max(p.explicit_bounds.len()),
        ),
        Some(Data::ExponentialHistogram(e)) => retain(
            &mut e.data_points,
            out,
            check,
            |p| &p.attributes,
            |p| side(&p.positive) + side(&p.negative),
        ),
        Some(Data::Summary(s)) => retain(
            &mut s.data_points,
            out,
            check,
            |p| &p.attributes,
            |p| p.quantile_values.len(),
        ),
        None => {}
    }
}

/// Labels the exporter writes on its own series (the export-cursor
/// marker's sink name, cluster id and restore id).
const RESERVED_LABELS: [&str; 3] = ["otelraft_sink", "otelraft_cluster", "otelraft_restore"];

/// `name` as Prometheus would spell it, near enough to compare: every run
/// of characters other than ASCII letters and digits becomes one `_`, and
/// leading and trailing ones go.
fn normalised(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(64));
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// Whether a metric's Prometheus name would begin with the word
/// `otelraft` (`otelraft_export_cursor`, `otelraft.anything`): the
/// exporter's marker series lives there, and a client's series could spoof
/// it. Only the first few bytes are looked at.
pub(crate) fn reserved_metric_name(name: &str) -> bool {
    let head: String = name.chars().take(16).collect();
    let head = normalised(&head);
    head == "otelraft" || head.starts_with("otelraft_")
}

/// Refuses an attribute whose label name would be one of [`RESERVED_LABELS`].
fn no_reserved_labels(attributes: &[KeyValue], at: &dyn Fn() -> String) -> Result<(), String> {
    let longest = RESERVED_LABELS.iter().map(|l| l.len()).max().unwrap_or(0);
    for (ai, kv) in attributes.iter().enumerate() {
        // A key much longer than the names cannot normalise to one.
        if kv.key.len() > 4 * longest {
            continue;
        }
        if RESERVED_LABELS.contains(&normalised(&kv.key).as_str()) {
            return Err(format!(
                "{}.attributes[{ai}].key ({:?}): reserved for otelraft's own series",
                at(),
                kv.key
            ));
        }
    }
    Ok(())
}

/// Removes the spans that fail a check, with their whole scope or resource
/// when the failure is there. Spans must carry a non-zero 16-byte trace id
/// and 8-byte span id; a parent span id, if present, is 8 bytes.
pub(crate) fn reject_invalid_traces(
    request: &mut ExportTraceServiceRequest,
    l: &IngestLimits,
) -> Rejected {
    let mut out = Rejected::default();
    let scope_len = |s: &ScopeSpans| s.spans.len();
    let resource_len = |r: &ResourceSpans| r.scope_spans.iter().map(scope_len).sum();
    retain_indexed(&mut request.resource_spans, resource_len, |ri, resource| {
        let check = limits::resource(resource.resource.as_ref(), l, &|| {
            format!("resourceSpans[{ri}]")
        });
        if !out.keep(check, resource_len(resource) as u64) {
            return false;
        }
        retain_indexed(&mut resource.scope_spans, scope_len, |si, scope| {
            let at = || format!("resourceSpans[{ri}].scopeSpans[{si}]");
            let check = limits::scope(scope.scope.as_ref(), l, &at);
            if !out.keep(check, scope.spans.len() as u64) {
                return false;
            }
            retain_indexed(
                &mut scope.spans,
                |_| 1,
                |pi, span| {
                    let at = || format!("{}.spans[{pi}]", at());
                    out.keep(check_span(span, l, &at), 1)
                },
            );
            true
        });
        true
    });
    out
}

fn check_span(span: &Span, l: &IngestLimits, at: &dyn Fn() -> String) -> Result<(), String> {
    required_id(&span.trace_id, TRACE_ID_LEN, "traceId", at)?;
    required_id(&span.span_id, SPAN_ID_LEN, "spanId", at)?;
    optional_id(&span.parent_span_id, SPAN_ID_LEN, "parentSpanId", at)?;
    limits::name(&span.name, l, at)?;
    limits::attributes(&span.attributes, l, at)?;
    for (ei, event) in span.events.iter().enumerate() {
        let at = || format!("{}.events[{ei}]", at());
        limits::name(&event.name, l, &at)?;
        limits::attributes(&event.attributes, l, &at)?;
    }
    for (ki, link) in span.links.iter().enumerate() {
        limits::attributes(&link.attributes, l, &|| format!("{}.links[{ki}]", at()))?;
    }
    Ok(())
}

fn required_id(id: &[u8], len: usize, field: &str, at: &dyn Fn() -> String) -> Result<(), String> {
    if id.len() != len {
        return Err(format!(
            "{}.{field}: must be {len} bytes, got {}",
            at(),
            id.len()
        ));
    }
    if id.iter().all(|b| *b == 0) {
        return Err(format!("{}.{field}: must not be all zeros", at()));
    }
    Ok(())
}

fn optional_id(id: &[u8], len: usize, field: &str, at: &dyn Fn() -> String) -> Result<(), String> {
    if id.is_empty() || id.len() == len {
        Ok(())
    } else {
        Err(format!(
            "{}.{field}: must be empty or {len} bytes, got {}",
            at(),
            id.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
        NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
    };

    use super::*;
    use crate::ingest::tests::fixtures;

    fn validate_logs(r: &ExportLogsServiceRequest, l: &IngestLimits) -> Result<(), String> {
        reject_invalid_logs(&mut r.clone(), l).into_result()
    }

    fn validate_metrics(r: &ExportMetricsServiceRequest, l: &IngestLimits) -> Result<(), String> {
        reject_invalid_metrics(&mut r.clone(), l).into_result()
    }

    fn validate_traces(r: &ExportTraceServiceRequest, l: &IngestLimits) -> Result<(), String> {
        reject_invalid_traces(&mut r.clone(), l).into_result()
    }

    fn metric(name: &str, data: Option<Data>) -> Metric {
        Metric {
            name: name.to_string(),
            data,
            ..Default::default()
        }
    }

    #[test]
    fn metric_records_are_data_points_of_every_kind() {
        let metrics = vec![
            metric(
                "g",
                Some(Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint::default(); 2],
                })),
            ),
            metric(
                "s",
                Some(Data::Sum(Sum {
                    data_points: vec![NumberDataPoint::default(); 3],
                    ..Default::default()
                })),
            ),
            metric(
                "h",
                Some(Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint::default(); 4],
                    ..Default::default()
                })),
            ),
            metric(
                "e",
                Some(Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint::default(); 5],
                    ..Default::default()
                })),
            ),
            metric(
                "q",
                Some(Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint::default(); 6],
                })),
            ),
        ];
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(count_metrics(&request), 20);
        assert_eq!(validate_metrics(&request, &IngestLimits::default()), Ok(()));
    }

    #[test]
    fn the_exporters_own_names_and_labels_are_refused_with_their_path() {
        for reserved in [
            "otelraft_export_cursor",
            "otelraft.export.cursor",
            "otelraft",
            "__otelraft--x",
        ] {
            let mut request = fixtures::metrics(1);
            request.resource_metrics[0].scope_metrics[0].metrics[0].name = reserved.into();
            let err = validate_metrics(&request, &IngestLimits::default()).unwrap_err();
            assert!(
                err.contains("metrics[0].name") && err.contains("reserved"),
                "{err}"
            );
        }
        for fine in ["otelraftish", "my_otelraft_total", "otel.raft"] {
            let mut request = fixtures::metrics(1);
            request.resource_metrics[0].scope_metrics[0].metrics[0].name = fine.into();
            assert_eq!(
                validate_metrics(&request, &IngestLimits::default()),
                Ok(()),
                "{fine}"
            );
        }
        // The marker's label on a point, in any spelling Prometheus folds
        // to it.
        let mut request = fixtures::metrics(1);
        let metric = &mut request.resource_metrics[0].scope_metrics[0].metrics[0];
        if let Some(Data::Gauge(g)) = &mut metric.data {
            g.data_points[0]
                .attributes
                .push(opentelemetry_proto::tonic::common::v1::KeyValue {
                    key: "otelraft.sink".into(),
                    ..Default::default()
                });
        }
        let err = validate_metrics(&request, &IngestLimits::default()).unwrap_err();
        assert!(err.contains("dataPoints[0].attributes"), "{err}");
    }

    #[test]
    fn a_refusal_quotes_at_most_a_few_hundred_bytes_of_the_name() {
        let mut request = fixtures::metrics(1);
        let metric = &mut request.resource_metrics[0].scope_metrics[0].metrics[0];
        metric.name = "x".repeat(1_000_000);
        metric.data = None;
        let err = validate_metrics(&request, &IngestLimits::default()).unwrap_err();
        assert!(err.len() < 600, "{} bytes", err.len());
    }

    #[test]
    fn structure_over_the_limits_is_refused_naming_the_item_and_the_limit() {
        use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
        let l = IngestLimits::default();
        let kv = |key: String, value: String| KeyValue {
            key,
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value)),
            }),
            ..Default::default()
        };
        let mut request = fixtures::metrics(1);
        request.resource_metrics[0].scope_metrics[0].metrics[0].name = "n".repeat(100_000);
        let err = validate_metrics(&request, &l).unwrap_err();
        assert!(
            err.contains("metrics[0].name") && err.contains("max_name_bytes"),
            "{err}"
        );
        assert!(
            err.len() < 600,
            "the name is quoted, not echoed: {} bytes",
            err.len()
        );

        let mut logs = fixtures::logs(1);
        logs.resource_logs[0].scope_logs[0].log_records[0].attributes =
            (0..2000).map(|i| kv(format!("k{i}"), "v".into())).collect();
        let err = validate_logs(&logs, &l).unwrap_err();
        assert!(
            err.contains("logRecords[0].attributes") && err.contains("2000"),
            "{err}"
        );

        let mut logs = fixtures::logs(1);
        logs.resource_logs[0].scope_logs[0].log_records[0].attributes =
            vec![kv("big".into(), "x".repeat(1 << 20))];
        let err = validate_logs(&logs, &l).unwrap_err();
        assert!(err.contains("max_attribute_value_bytes"), "{err}");

        let mut traces = fixtures::traces(1);
        traces.resource_spans[0].scope_spans[0].spans[0].events =
            vec![opentelemetry_proto::tonic::trace::v1::span::Event {
                attributes: vec![kv("k".repeat(5000), "v".into())],
                ..Default::default()
            }];
        let err = validate_traces(&traces, &l).unwrap_err();
        assert!(
            err.contains("spans[0].events[0].attributes[0].key"),
            "{err}"
        );

        let wide = metric(
            "h",
            Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    bucket_counts: vec![0; 5001],
                    explicit_bounds: (0..5000).map(f64::from).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })),
        );
        let mut request = fixtures::metrics(1);
        request.resource_metrics[0].scope_metrics[0].metrics = vec![wide];
        let err = validate_metrics(&request, &l).unwrap_err();
        assert!(
            err.contains("dataPoints[0]") && err.contains("max_buckets"),
            "{err}"
        );
        let generous = IngestLimits {
            max_buckets: 10_000,
            ..IngestLimits::default()
        };
        assert_eq!(
            validate_metrics(&request, &generous),
            Ok(()),
            "limits are configurable"
        );
    }

    #[test]
    fn a_failure_removes_the_smallest_item_it_concerns_and_counts_its_records() {
        use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
        let l = IngestLimits::default();
        // Two resources of two scopes of 3 records; one bad record, one bad
        // scope (its name over the limit), one bad resource.
        let mut request = fixtures::logs(3);
        let scope = request.resource_logs[0].scope_logs[0].clone();
        request.resource_logs[0].scope_logs.push(scope);
        let resource = request.resource_logs[0].clone();
        request.resource_logs.push(resource);
        request.resource_logs[0].scope_logs[0].log_records[2].trace_id = vec![1; 2];
        request.resource_logs[0].scope_logs[1].scope = Some(InstrumentationScope {
            name: "s".repeat(l.max_name_bytes + 1),
            ..Default::default()
        });
        request.resource_logs[1]
            .resource
            .get_or_insert_with(Default::default)
            .attributes = vec![Default::default(); l.max_attributes + 1];
        let rejected = reject_invalid_logs(&mut request, &l);
        assert_eq!(rejected.records, 1 + 3 + 6);
        assert!(
            rejected
                .first
                .as_deref()
                .is_some_and(|r| r.contains("resourceLogs[0].scopeLogs[0].logRecords[2].traceId")),
            "{rejected:?}"
        );
        // Only the first scope of the first resource is left, with two
        // records; nothing empty is kept.
        assert_eq!(request.resource_logs.len(), 1);
        assert_eq!(request.resource_logs[0].scope_logs.len(), 1);
        assert_eq!(count_logs(&request), 2);
        assert_eq!(
            reject_invalid_logs(&mut request, &l),
            Rejected::default(),
            "what is left is valid"
        );
    }

    #[test]
    fn a_metric_whose_points_all_fail_goes_with_them_and_the_other_metrics_stay() {
        use opentelemetry_proto::tonic::common::v1::KeyValue;
        let mut request = fixtures::metrics(2);
        let mut marked = request.resource_metrics[0].scope_metrics[0].metrics[0].clone();
        marked.name = "marked".into();
        if let Some(Data::Gauge(g)) = &mut marked.data {
            for p in &mut g.data_points {
                p.attributes.push(KeyValue {
                    key: "otelraft_sink".into(),
                    ..Default::default()
                });
            }
        }
        request.resource_metrics[0].scope_metrics[0]
            .metrics
            .push(marked);
        let rejected = reject_invalid_metrics(&mut request, &IngestLimits::default());
        assert_eq!(rejected.records, 2);
        let names: Vec<&str> = request.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, vec!["requests"]);
        assert_eq!(count_metrics(&request), 2);
    }

    #[test]
    fn a_metric_without_data_is_reported_with_no_records_removed() {
        let mut request = fixtures::metrics(2);
        let empty = metric("nothing", None);
        request.resource_metrics[0].scope_metrics[0]
            .metrics
            .push(empty);
        let rejected = reject_invalid_metrics(&mut request, &IngestLimits::default());
        assert_eq!(rejected.records, 0);
        assert!(rejected.first.is_some_and(|r| r.contains("has no data")));
        assert_eq!(count_metrics(&request), 2);
    }

    #[test]
    fn log_and_span_counts() {
        assert_eq!(count_logs(&fixtures::logs(3)), 3);
        assert_eq!(count_traces(&fixtures::traces(4)), 4);
    }

    #[test]
    fn metric_without_name_or_data_is_invalid() {
        let mut request = fixtures::metrics(1);
        request.resource_metrics[0].scope_metrics[0].metrics[0]
            .name
            .clear();
        let err = validate_metrics(&request, &IngestLimits::default()).unwrap_err();
        assert!(err.contains("metrics[0].name"), "{err}");

        let mut request = fixtures::metrics(1);
        request.resource_metrics[0].scope_metrics[0].metrics[0].data = None;
        assert!(validate_metrics(&request, &IngestLimits::default())
            .unwrap_err()
            .contains("has no data"));
    }

    #[test]
    fn span_ids_are_checked() {
        assert_eq!(
            validate_traces(&fixtures::traces(2), &IngestLimits::default()),
            Ok(())
        );

        let mut request = fixtures::traces(2);
        request.resource_spans[0].scope_spans[0].spans[1].trace_id = vec![1, 2, 3];
        let err = validate_traces(&request, &IngestLimits::default()).unwrap_err();
        assert!(
            err.contains("spans[1].traceId: must be 16 bytes, got 3"),
            "{err}"
        );

        let mut request = fixtures::traces(1);
        request.resource_spans[0].scope_spans[0].spans[0].span_id = vec![0; 8];
        assert!(validate_traces(&request, &IngestLimits::default())
            .unwrap_err()
            .contains("spanId: must not be all zeros"));

        let mut request = fixtures::traces(1);
        request.resource_spans[0].scope_spans[0].spans[0].parent_span_id = vec![9; 4];
        assert!(validate_traces(&request, &IngestLimits::default())
            .unwrap_err()
            .contains("parentSpanId"));
    }

    #[test]
    fn log_ids_are_optional_but_well_formed() {
        let mut request = fixtures::logs(2);
        request.resource_logs[0].scope_logs[0].log_records[0]
            .trace_id
            .clear();
        request.resource_logs[0].scope_logs[0].log_records[0]
            .span_id
            .clear();
        assert_eq!(validate_logs(&request, &IngestLimits::default()), Ok(()));

        request.resource_logs[0].scope_logs[0].log_records[1].span_id = vec![1; 5];
        assert!(validate_logs(&request, &IngestLimits::default())
            .unwrap_err()
            .contains("logRecords[1].spanId"));
    }
}
