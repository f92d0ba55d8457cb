//! OTLP metrics to Prometheus samples (helper-owned).
//!
//! Implements the "OTLP Metric points to Prometheus" part of the
//! OpenTelemetry Prometheus compatibility specification for remote write
//! 1.0: gauges and cumulative sums become one sample per point, cumulative
//! histograms and summaries become their `_bucket`/quantile, `_sum` and
//! `_count` series, and each resource that produced samples and has
//! attributes becomes one `target_info` sample.
//! Delta temporality, unspecified temporality and exponential histograms
//! are refused rather than converted.
//!
//! Every sample carries the point attributes (sanitised, colliding names
//! merged with `;`), `otel_scope_name`/`otel_scope_version`, and `job` /
//! `instance` from `service.*`. When names collide, the labels the mapper
//! generates win: `__name__`, `le` and `quantile` over `job`/`instance`,
//! those over the scope labels, and the scope labels over attributes.
//!
//! The output is deterministic: request order (resource, scope, metric,
//! point, derived series), then the resource's `target_info`.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, ExponentialHistogramDataPoint,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, SummaryDataPoint,
};

use super::naming::{
    format_float, is_valid_label_name, is_valid_metric_name, label_name, label_value, metric_name,
    NameKind,
};
use crate::export::budget::{labels_cost, Budget, OverBudget, PER_STRING_BYTES};
use crate::export::dead_letter::Reason;

/// One Prometheus sample mapped from an OTLP data point, before the
/// per-series ordering checks.
#[derive(Clone, Debug, PartialEq)]
pub struct MappedSample {
    /// Label pairs sorted by name with unique names; `__name__` included.
    pub labels: Vec<(String, String)>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub value: f64,
}

/// OTLP points that remote write 1.0 cannot carry, with why: one point, or
/// every point of a metric refused for the same reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Unmappable {
    pub reason: Reason,
    /// The OTLP metric name, quoted (see `text::quote`).
    pub subject: String,
    /// Points refused.
    pub count: u64,
    /// The (first) point's timestamp.
    pub timestamp_ms: i64,
    pub value: f64,
}

/// The Prometheus staleness marker: a NaN with a fixed payload that tells
/// Prometheus the series ended (used for OTLP "no recorded value" points).
pub const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

/// The OTLP data point flag bit meaning "no recorded value".
const FLAG_NO_RECORDED_VALUE: u32 = 1;

/// Name of the per-resource info metric.
const TARGET_INFO: &str = "target_info";

/// Resource attributes that become `job` and `instance` instead of
/// `target_info` labels.
const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";

/// A label set under construction; a map keeps names unique and sorted.
type Labels = BTreeMap<String, String>;

/// Maps every data point of `req` in request order (resource, scope, metric,
/// point), appending to `out`; points that cannot be mapped go to `refused`.
/// `fallback_ts_ms` stamps points whose OTLP timestamp is zero. Everything
/// appended is charged to `budget` before it is allocated; `OverBudget`
/// leaves `out` and `refused` partly filled, for the caller to discard.
pub fn map_metrics(
    req: &ExportMetricsServiceRequest,
    fallback_ts_ms: i64,
    budget: &mut Budget,
    out: &mut Vec<MappedSample>,
    refused: &mut Vec<Unmappable>,
) -> Result<(), OverBudget> {
    for resource in &req.resource_metrics {
        map_resource(resource, fallback_ts_ms, budget, out, refused)?;
    }
    Ok(())
}

/// Where the samples of one point go, and the labels every series of the
/// current scope shares (`job`, `instance`, `otel_scope_*`).
struct Sink<'a> {
    fallback_ts_ms: i64,
    shared: &'a Labels,
    budget: &'a mut Budget,
    out: &'a mut Vec<MappedSample>,
    refused: &'a mut Vec<Unmappable>,
}

impl Sink<'_> {
    /// Charges and records a refusal.
    fn refuse(&mut self, refusal: Unmappable) -> Result<(), OverBudget> {
        self.budget
            .charge(refusal.subject.len() + 4 * PER_STRING_BYTES)?;
        self.refused.push(refusal);
        Ok(())
    }
}

/// What a sample with `labels` costs (its vector slot included).
fn sample_cost(labels: &Labels) -> usize {
    labels_cost(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))) + 2 * PER_STRING_BYTES
}

/// Maps one resource's metrics, then adds its `target_info` sample stamped
/// with the newest of the samples just mapped.
fn map_resource(
    resource: &ResourceMetrics,
    fallback_ts_ms: i64,
    budget: &mut Budget,
    out: &mut Vec<MappedSample>,
    refused: &mut Vec<Unmappable>,
) -> Result<(), OverBudget> {
    let attributes = resource
        .resource
        .as_ref()
        .map_or(&[][..], |r| &r.attributes[..]);
    let identity = job_and_instance(attributes);
    let first = out.len();
    for scope_metrics in &resource.scope_metrics {
        let mut shared = scope_labels(scope_metrics.scope.as_ref());
        shared.extend(identity.clone());
        let mut sink = Sink {
            fallback_ts_ms,
            shared: &shared,
            budget: &mut *budget,
            out: &mut *out,
            refused: &mut *refused,
        };
        for metric in &scope_metrics.metrics {
            map_metric(metric, &mut sink)?;
        }
    }
    let newest = out[first..].iter().map(|s| s.timestamp_ms).max();
    if let Some(timestamp_ms) = newest {
        push_target_info(attributes, identity, timestamp_ms, budget, out, refused)?;
    }
    Ok(())
}

/// `job` (`service.namespace/service.name`, or `service.name`) and
/// `instance` (`service.instance.id`), each only when non-empty.
fn job_and_instance(attributes: &[KeyValue]) -> Labels {
    let text = |key: &str| {
        attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| label_value(kv.value.as_ref()))
            .filter(|v| !v.is_empty())
    };
    let mut labels = Labels::new();
    if let Some(name) = text(SERVICE_NAME) {
        let job = match text(SERVICE_NAMESPACE) {
            Some(namespace) => format!("{namespace}/{name}"),
            None => name,
        };
        labels.insert("job".to_string(), job);
    }
    if let Some(instance) = text(SERVICE_INSTANCE_ID) {
        labels.insert("instance".to_string(), instance);
    }
    labels
}

/// `otel_scope_name` and `otel_scope_version`, each only when non-empty.
fn scope_labels(scope: Option<&InstrumentationScope>) -> Labels {
    let mut labels = Labels::new();
    if let Some(scope) = scope {
        for (name, value) in [
            ("otel_scope_name", &scope.name),
            ("otel_scope_version", &scope.version),
        ] {
            if !value.is_empty() {
                labels.insert(name.to_string(), value.clone());
            }
        }
    }
    labels
}

/// The `target_info` sample: the resource's non-identifying attributes plus
/// `job` and `instance`; refused if an attribute key cannot be a label, and
/// left out for an empty resource (the spec asks for it only when the
/// resource is not empty; a label-less `target_info` identifies nothing).
fn push_target_info(
    attributes: &[KeyValue],
    identity: Labels,
    timestamp_ms: i64,
    budget: &mut Budget,
    out: &mut Vec<MappedSample>,
    refused: &mut Vec<Unmappable>,
) -> Result<(), OverBudget> {
    let identifying = [SERVICE_NAME, SERVICE_NAMESPACE, SERVICE_INSTANCE_ID];
    let others: Vec<&KeyValue> = attributes
        .iter()
        .filter(|kv| !identifying.contains(&kv.key.as_str()))
        .collect();
    match attribute_labels(others) {
        Some(mut labels) => {
            labels.extend(identity);
            if labels.is_empty() {
                return Ok(());
            }
            budget.charge(sample_cost(&labels) + TARGET_INFO.len())?;
            out.push(sample(labels, TARGET_INFO, None, timestamp_ms, 1.0));
        }
        None => refused.push(Unmappable {
            reason: Reason::InvalidLabels,
            subject: TARGET_INFO.to_string(),
            count: 1,
            timestamp_ms,
            value: 1.0,
        }),
    }
    Ok(())
}

/// Dispatches one metric on its data type and temporality.
fn map_metric(metric: &Metric, sink: &mut Sink<'_>) -> Result<(), OverBudget> {
    let Some(data) = &metric.data else {
        let timestamp_ms = sink.fallback_ts_ms;
        return sink.refuse(refusal(Reason::Unsupported, metric, 1, timestamp_ms, 0.0));
    };
    match data {
        Data::Gauge(gauge) => map_points(
            metric,
            NameKind::Gauge,
            &gauge.data_points,
            sink,
            number_series,
        ),
        Data::Sum(sum) => match temporality_refusal(sum.aggregation_temporality) {
            Some(reason) => refuse_all(metric, reason, &sum.data_points, sink),
            None => {
                let kind = if sum.is_monotonic {
                    NameKind::Counter
                } else {
                    NameKind::UpDownCounter
                };
                map_points(metric, kind, &sum.data_points, sink, number_series)
            }
        },
        Data::Histogram(histogram) => {
            match temporality_refusal(histogram.aggregation_temporality) {
                Some(reason) => refuse_all(metric, reason, &histogram.data_points, sink),
                None => map_points(
                    metric,
                    NameKind::Histogram,
                    &histogram.data_points,
                    sink,
                    histogram_series,
                ),
            }
        }
        Data::ExponentialHistogram(histogram) => {
            refuse_all(metric, Reason::Unsupported, &histogram.data_points, sink)
        }
        Data::Summary(summary) => map_points(
            metric,
            NameKind::Summary,
            &summary.data_points,
            sink,
            summary_series,
        ),
    }
}

/// Why a sum or histogram with this temporality is refused: delta is
/// `DeltaTemporality`, unspecified or unknown is `Unsupported`.
fn temporality_refusal(temporality: i32) -> Option<Reason> {
    match AggregationTemporality::try_from(temporality) {
        Ok(AggregationTemporality::Cumulative) => None,
        Ok(AggregationTemporality::Delta) => Some(Reason::DeltaTemporality),
        _ => Some(Reason::Unsupported),
    }
}

/// What the mapper needs from every OTLP data point type.
struct PointInfo<'a> {
    /// The point's attributes (become labels).
    attributes: &'a [KeyValue],
    /// The OTLP timestamp in nanoseconds (0 when unset).
    time_unix_nano: u64,
    /// Whether the "no recorded value" flag is set.
    stale: bool,
    /// The value recorded when the whole point is refused.
    headline: f64,
}

/// Gives every OTLP data point type the same [`PointInfo`] view.
trait Point {
    /// The shared fields of this point.
    fn info(&self) -> PointInfo<'_>;
}

/// Builds a [`PointInfo`] from the fields every point type has.
fn info(attributes: &[KeyValue], time_unix_nano: u64, flags: u32, headline: f64) -> PointInfo<'_> {
    let stale = flags & FLAG_NO_RECORDED_VALUE != 0;
    PointInfo {
        attributes,
        time_unix_nano,
        stale,
        headline,
    }
}

impl Point for NumberDataPoint {
    fn info(&self) -> PointInfo<'_> {
        let headline = number_value(self).unwrap_or(0.0);
        info(&self.attributes, self.time_unix_nano, self.flags, headline)
    }
}

impl Point for HistogramDataPoint {
    fn info(&self) -> PointInfo<'_> {
        let headline = self.sum.unwrap_or(0.0);
        info(&self.attributes, self.time_unix_nano, self.flags, headline)
    }
}

impl Point for ExponentialHistogramDataPoint {
    fn info(&self) -> PointInfo<'_> {
        let headline = self.sum.unwrap_or(0.0);
        info(&self.attributes, self.time_unix_nano, self.flags, headline)
    }
}

impl Point for SummaryDataPoint {
    fn info(&self) -> PointInfo<'_> {
        info(&self.attributes, self.time_unix_nano, self.flags, self.sum)
    }
}

/// One derived series of a point: name suffix, extra label, value.
type Series = (&'static str, Option<(&'static str, String)>, f64);

/// Maps each point through `series`, which lists the point's derived series
/// or `None` when the point's shape cannot be exported.
fn map_points<P: Point>(
    metric: &Metric,
    kind: NameKind,
    points: &[P],
    sink: &mut Sink<'_>,
    series: fn(&P) -> Option<Vec<Series>>,
) -> Result<(), OverBudget> {
    sink.budget
        .charge(metric.name.len() + metric.unit.len() + PER_STRING_BYTES)?;
    let name = metric_name(&metric.name, &metric.unit, kind);
    if !is_valid_metric_name(&name) {
        return refuse_all(metric, Reason::InvalidLabels, points, sink);
    }
    for point in points {
        let info = point.info();
        let timestamp_ms = timestamp_ms(info.time_unix_nano, sink.fallback_ts_ms);
        let mapped = attribute_labels(info.attributes)
            .ok_or(Reason::InvalidLabels)
            .and_then(|labels| {
                let derived = series(point).ok_or(Reason::Unsupported)?;
                Ok((labels, derived))
            });
        let (mut labels, derived) = match mapped {
            Ok(mapped) => mapped,
            Err(reason) => {
                sink.refuse(refusal(reason, metric, 1, timestamp_ms, info.headline))?;
                continue;
            }
        };
        // The point's own labels and the shared ones, then one copy of
        // them per derived series: charged before each is made.
        sink.budget
            .charge(sample_cost(&labels) + sample_cost(sink.shared))?;
        labels.extend(sink.shared.clone());
        let per_series = sample_cost(&labels) + name.len() + 2 * PER_STRING_BYTES;
        for (suffix, extra, value) in derived {
            let extra_len = extra.as_ref().map_or(0, |(k, v)| k.len() + v.len());
            sink.budget.charge(per_series + suffix.len() + extra_len)?;
            let value = if info.stale { STALE_NAN } else { value };
            let name = format!("{name}{suffix}");
            sink.out
                .push(sample(labels.clone(), &name, extra, timestamp_ms, value));
        }
    }
    Ok(())
}

/// Refuses every point of a metric for `reason`, as one refusal that counts
/// them (stamped with the first point), so the name is not copied per point.
fn refuse_all<P: Point>(
    metric: &Metric,
    reason: Reason,
    points: &[P],
    sink: &mut Sink<'_>,
) -> Result<(), OverBudget> {
    let Some(first) = points.first().map(Point::info) else {
        return Ok(());
    };
    let timestamp_ms = timestamp_ms(first.time_unix_nano, sink.fallback_ts_ms);
    let count = points.len() as u64;
    sink.refuse(refusal(reason, metric, count, timestamp_ms, first.headline))
}

/// A gauge or sum point: one series. A point with neither an int nor a
/// double value is refused unless it only marks staleness.
fn number_series(point: &NumberDataPoint) -> Option<Vec<Series>> {
    let stale = point.flags & FLAG_NO_RECORDED_VALUE != 0;
    let value = number_value(point).or(stale.then_some(STALE_NAN))?;
    Some(vec![("", None, value)])
}

/// The point's value as `f64` (ints converted).
fn number_value(point: &NumberDataPoint) -> Option<f64> {
    match point.value? {
        number_data_point::Value::AsDouble(v) => Some(v),
        number_data_point::Value::AsInt(v) => Some(v as f64),
    }
}

/// A histogram point: cumulative `_bucket` series per bound, `+Inf` (the
/// count), `_sum` when present, `_count`. `None` when the bucket counts do
/// not fit the bounds or the bounds are not strictly increasing.
fn histogram_series(point: &HistogramDataPoint) -> Option<Vec<Series>> {
    let bounds = &point.explicit_bounds;
    let counts = &point.bucket_counts;
    let increasing = bounds.windows(2).all(|w| w[0] < w[1]) && !bounds.iter().any(|b| b.is_nan());
    if !increasing || !(counts.is_empty() || counts.len() == bounds.len() + 1) {
        return None;
    }
    let mut series = Vec::with_capacity(bounds.len() + 3);
    let mut cumulative = 0u64;
    for (bound, count) in bounds.iter().zip(counts) {
        cumulative = cumulative.saturating_add(*count);
        if *bound != f64::INFINITY {
            series.push((
                "_bucket",
                Some(("le", format_float(*bound))),
                cumulative as f64,
            ));
        }
    }
    series.push((
        "_bucket",
        Some(("le", format_float(f64::INFINITY))),
        point.count as f64,
    ));
    if let Some(sum) = point.sum {
        series.push(("_sum", None, sum));
    }
    series.push(("_count", None, point.count as f64));
    Some(series)
}

/// A summary point: one series per quantile (lowest first), `_sum`,
/// `_count`.
fn summary_series(point: &SummaryDataPoint) -> Option<Vec<Series>> {
    let mut quantiles: Vec<_> = point.quantile_values.iter().collect();
    quantiles.sort_by(|a, b| a.quantile.total_cmp(&b.quantile));
    let mut series: Vec<Series> = quantiles
        .into_iter()
        .map(|q| ("", Some(("quantile", format_float(q.quantile))), q.value))
        .collect();
    series.push(("_sum", None, point.sum));
    series.push(("_count", None, point.count as f64));
    Some(series)
}

/// Attributes as labels: empty values dropped, keys sanitised, values of
/// keys that sanitise alike joined with `;` in order of the original keys.
/// `None` when a key cannot become a valid label name.
fn attribute_labels<'a>(attributes: impl IntoIterator<Item = &'a KeyValue>) -> Option<Labels> {
    let mut pairs: Vec<(&str, String)> = attributes
        .into_iter()
        .map(|kv| (kv.key.as_str(), label_value(kv.value.as_ref())))
        .filter(|(_, value)| !value.is_empty())
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut labels = Labels::new();
    for (key, value) in pairs {
        let name = label_name(key);
        if !is_valid_label_name(&name) {
            return None;
        }
        labels
            .entry(name)
            .and_modify(|joined| {
                joined.push(';');
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    Some(labels)
}

/// Builds a sample, adding `__name__` and the series' extra label last so
/// they win over attributes of the same name.
fn sample(
    mut labels: Labels,
    name: &str,
    extra: Option<(&str, String)>,
    timestamp_ms: i64,
    value: f64,
) -> MappedSample {
    if let Some((key, text)) = extra {
        labels.insert(key.to_string(), text);
    }
    labels.insert("__name__".to_string(), name.to_string());
    MappedSample {
        labels: labels.into_iter().collect(),
        timestamp_ms,
        value,
    }
}

/// An [`Unmappable`] for `count` points of `metric`.
fn refusal(
    reason: Reason,
    metric: &Metric,
    count: u64,
    timestamp_ms: i64,
    value: f64,
) -> Unmappable {
    Unmappable {
        reason,
        subject: crate::text::quote(&metric.name).into_owned(),
        count,
        timestamp_ms,
        value,
    }
}

/// OTLP nanoseconds to milliseconds; zero means "use the fallback".
fn timestamp_ms(time_unix_nano: u64, fallback_ts_ms: i64) -> i64 {
    if time_unix_nano == 0 {
        return fallback_ts_ms;
    }
    i64::try_from(time_unix_nano / 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
