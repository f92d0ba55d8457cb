//! Record counting and the "bad data" checks, per signal.
//!
//! Only checks a user would agree mark broken data are made: malformed ids,
//! unnamed metrics, metrics without data. A failing check refuses the whole
//! request. Error messages carry the OTLP JSON path of the offending item.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, Metric};

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

/// Log records may omit trace context, but present ids must be well-formed.
pub(crate) fn validate_logs(
    request: &ExportLogsServiceRequest,
    l: &IngestLimits,
) -> Result<(), String> {
    for (ri, resource) in request.resource_logs.iter().enumerate() {
        limits::resource(resource.resource.as_ref(), l, &|| {
            format!("resourceLogs[{ri}]")
        })?;
        for (si, scope) in resource.scope_logs.iter().enumerate() {
            limits::scope(scope.scope.as_ref(), l, &|| {
                format!("resourceLogs[{ri}].scopeLogs[{si}]")
            })?;
            for (li, record) in scope.log_records.iter().enumerate() {
                let at = || format!("resourceLogs[{ri}].scopeLogs[{si}].logRecords[{li}]");
                optional_id(&record.trace_id, TRACE_ID_LEN, "traceId", &at)?;
                optional_id(&record.span_id, SPAN_ID_LEN, "spanId", &at)?;
                limits::attributes(&record.attributes, l, &at)?;
            }
        }
    }
    Ok(())
}

/// Every metric needs a name and a data kind (gauge, sum, ...), and may not
/// use a name or label the exporter owns (see [`reserved_metric_name`]).
pub(crate) fn validate_metrics(
    request: &ExportMetricsServiceRequest,
    l: &IngestLimits,
) -> Result<(), String> {
    for (ri, resource) in request.resource_metrics.iter().enumerate() {
        limits::resource(resource.resource.as_ref(), l, &|| {
            format!("resourceMetrics[{ri}]")
        })?;
        let attributes = resource
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes[..]);
        no_reserved_labels(attributes, &|| format!("resourceMetrics[{ri}].resource"))?;
        for (si, scope) in resource.scope_metrics.iter().enumerate() {
            limits::scope(scope.scope.as_ref(), l, &|| {
                format!("resourceMetrics[{ri}].scopeMetrics[{si}]")
            })?;
            if let Some(scope) = &scope.scope {
                no_reserved_labels(&scope.attributes, &|| {
                    format!("resourceMetrics[{ri}].scopeMetrics[{si}].scope")
                })?;
            }
            for (mi, metric) in scope.metrics.iter().enumerate() {
                let at = format!("resourceMetrics[{ri}].scopeMetrics[{si}].metrics[{mi}]");
                if metric.name.is_empty() {
                    return Err(format!("{at}.name: must not be empty"));
                }
                limits::name(&metric.name, l, &|| at.clone())?;
                if reserved_metric_name(&metric.name) {
                    return Err(format!(
                        "{at}.name ({:?}): names beginning with \"otelraft\" are reserved for otelraft's own series",
                        crate::text::quote(&metric.name)
                    ));
                }
                if metric.data.is_none() {
                    return Err(format!(
                        "{at} ({:?}): has no data (gauge, sum, histogram, exponentialHistogram or summary)",
                        crate::text::quote(&metric.name)
                    ));
                }
                for (pi, attributes) in point_attributes(metric).enumerate() {
                    let at = || format!("{at}.dataPoints[{pi}]");
                    no_reserved_labels(attributes, &at)?;
                    limits::attributes(attributes, l, &at)?;
                }
                for (pi, buckets) in point_buckets(metric).enumerate() {
                    limits::buckets(buckets, l, &|| format!("{at}.dataPoints[{pi}]"))?;
                }
            }
        }
    }
    Ok(())
}

/// Labels the exporter writes on its own series (the export-cursor
/// marker's sink name and restore id).
const RESERVED_LABELS: [&str; 2] = ["otelraft_sink", "otelraft_restore"];

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
fn no_reserved_labels(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    at: &dyn Fn() -> String,
) -> Result<(), String> {
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

/// The buckets of every histogram or summary data point of `metric`.
fn point_buckets(metric: &Metric) -> Box<dyn Iterator<Item = usize> + '_> {
    match &metric.data {
        Some(Data::Histogram(h)) => Box::new(
            h.data_points
                .iter()
                .map(|p| p.bucket_counts.len().max(p.explicit_bounds.len())),
        ),
        Some(Data::ExponentialHistogram(e)) => Box::new(e.data_points.iter().map(|p| {
            let side = |b: &Option<_>| {
                b.as_ref()
                    .map_or(0, |b: &opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets| b.bucket_counts.len())
            };
            side(&p.positive) + side(&p.negative)
        })),
        Some(Data::Summary(s)) => Box::new(s.data_points.iter().map(|p| p.quantile_values.len())),
        _ => Box::new(std::iter::empty()),
    }
}

/// The attributes of every data point of `metric`, in order.
fn point_attributes(
    metric: &Metric,
) -> Box<dyn Iterator<Item = &[opentelemetry_proto::tonic::common::v1::KeyValue]> + '_> {
    match &metric.data {
        Some(Data::Gauge(g)) => Box::new(g.data_points.iter().map(|p| &p.attributes[..])),
        Some(Data::Sum(s)) => Box::new(s.data_points.iter().map(|p| &p.attributes[..])),
        Some(Data::Histogram(h)) => Box::new(h.data_points.iter().map(|p| &p.attributes[..])),
        Some(Data::ExponentialHistogram(e)) => {
            Box::new(e.data_points.iter().map(|p| &p.attributes[..]))
        }
        Some(Data::Summary(s)) => Box::new(s.data_points.iter().map(|p| &p.attributes[..])),
        None => Box::new(std::iter::empty()),
    }
}

/// Spans must carry a non-zero 16-byte trace id and 8-byte span id; a parent
/// span id, if present, is 8 bytes.
pub(crate) fn validate_traces(
    request: &ExportTraceServiceRequest,
    l: &IngestLimits,
) -> Result<(), String> {
    for (ri, resource) in request.resource_spans.iter().enumerate() {
        limits::resource(resource.resource.as_ref(), l, &|| {
            format!("resourceSpans[{ri}]")
        })?;
        for (si, scope) in resource.scope_spans.iter().enumerate() {
            limits::scope(scope.scope.as_ref(), l, &|| {
                format!("resourceSpans[{ri}].scopeSpans[{si}]")
            })?;
            for (pi, span) in scope.spans.iter().enumerate() {
                let at = || format!("resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]");
                required_id(&span.trace_id, TRACE_ID_LEN, "traceId", &at)?;
                required_id(&span.span_id, SPAN_ID_LEN, "spanId", &at)?;
                optional_id(&span.parent_span_id, SPAN_ID_LEN, "parentSpanId", &at)?;
                limits::name(&span.name, l, &at)?;
                limits::attributes(&span.attributes, l, &at)?;
                for (ei, event) in span.events.iter().enumerate() {
                    let at = || format!("{}.events[{ei}]", at());
                    limits::name(&event.name, l, &at)?;
                    limits::attributes(&event.attributes, l, &at)?;
                }
                for (ki, link) in span.links.iter().enumerate() {
                    limits::attributes(&link.attributes, l, &|| format!("{}.links[{ki}]", at()))?;
                }
            }
        }
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
