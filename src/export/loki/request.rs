//! OTLP log records to a Loki push request (`POST /loki/api/v1/push`,
//! protobuf body, block-snappy compressed).
//!
//! The mapping follows Loki 3's own OTLP ingestion defaults, so logs look
//! the same in Loki whichever sink (push API or `/otlp/v1/logs`) carried
//! them:
//!
//! - **Stream labels** are the resource attributes Loki 3 promotes by default
//!   ([`PROMOTED_RESOURCE_ATTRIBUTES`]), with names sanitised
//!   (`service.name` becomes `service_name`). A resource without a service
//!   name gets `service_name="unknown_service"`, as in Loki.
//! - **Structured metadata** carries everything else: the remaining resource
//!   attributes, the scope, the record's attributes, severity, trace context,
//!   flags, and finally [`RECORD_ID_NAME`], the record's position in the Raft
//!   log.
//! - **Line** is the record's body as text ([`any_value_text`]).
//! - **Timestamp** is the record's time, else its observed time, else the
//!   time the entry was proposed.
//!
//! # Determinism
//!
//! The exporter may send the same batch twice (a retry, or a new leader
//! settling the one batch beyond the committed cursor). Loki drops an entry
//! only when its stream, timestamp, line and metadata equal an entry it
//! already has, so a resend must be byte-for-byte the same request. Nothing
//! here reads the wall clock or a random source: every value comes from the
//! committed entry, its Raft index and its proposal time, and streams are
//! emitted in a fixed (sorted) order. [`RECORD_ID_NAME`] names each record
//! for the read-back (`readback`). It does not keep two distinct records
//! with equal time and body in one stream apart in real Loki, whose
//! duplicate check ignores metadata (a known gap, `docs/export.md`).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;

use crate::export::budget::{Budget, OverBudget, PER_STRING_BYTES};
use crate::pb::loki::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};

#[cfg(test)]
mod tests;

/// Resource attributes that Loki 3 turns into stream labels by default
/// (`distributor.otlp_config` defaults). Matched on the original OTLP name.
pub const PROMOTED_RESOURCE_ATTRIBUTES: [&str; 18] = [
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// The stream label that identifies the service; always present.
pub const SERVICE_NAME_LABEL: &str = "service_name";

/// The service name Loki assigns when a resource has none.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// Structured-metadata name of the record id `"<raft index>:<ordinal>"`.
/// It makes two distinct records distinct for Loki's duplicate detection,
/// while a resend of the same record stays identical.
pub const RECORD_ID_NAME: &str = "otelraft_record";

/// Accumulates the log records of committed entries into one push request.
///
/// Streams are keyed by their label string, so the finished request lists
/// them in sorted order and, within a stream, entries in log order.
#[derive(Debug, Default)]
pub struct PushBuilder {
    streams: BTreeMap<String, Vec<EntryAdapter>>,
    lines: usize,
}

impl PushBuilder {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every log record of one committed log entry, in request order.
    ///
    /// `index` is the Raft log index of the entry, used in the record id;
    /// `proposed_unix_nanos` stamps records that carry no time of their own,
    /// so the timestamp never depends on when the export runs.
    /// Returns the number of lines added. What the lines derive (every
    /// line carries its resource's and scope's metadata) is charged to
    /// `budget` first; `OverBudget` adds nothing.
    pub fn add_entry(
        &mut self,
        index: u64,
        proposed_unix_nanos: u64,
        req: &ExportLogsServiceRequest,
        budget: &mut Budget,
    ) -> Result<usize, OverBudget> {
        budget.charge(derived_cost(req))?;
        let mut ordinal: u64 = 0;
        for resource_logs in &req.resource_logs {
            let has_records = resource_logs
                .scope_logs
                .iter()
                .any(|s| !s.log_records.is_empty());
            if !has_records {
                continue;
            }
            let attrs = resource_logs
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            let split = split_resource(attrs);
            let stream = self
                .streams
                .entry(format_labels(&split.labels))
                .or_default();
            for scope_logs in &resource_logs.scope_logs {
                let mut prefix = split.metadata.clone();
                prefix.extend(scope_metadata(scope_logs.scope.as_ref()));
                for record in &scope_logs.log_records {
                    let id = record_id(index, ordinal);
                    stream.push(push_entry(&prefix, record, proposed_unix_nanos, id));
                    ordinal += 1;
                }
            }
        }
        let added = usize::try_from(ordinal).unwrap_or(usize::MAX);
        self.lines = self.lines.saturating_add(added);
        Ok(added)
    }

    /// Lines (log records) added so far, to size batches.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// True when no line has been added, so the caller can skip the send.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// The push request: streams sorted by label string, entries in log
    /// order within each stream. `hash` is left 0 (Loki recomputes it).
    pub fn finish(self) -> PushRequest {
        let streams = self
            .streams
            .into_iter()
            .map(|(labels, entries)| StreamAdapter {
                labels,
                entries,
                hash: 0,
            })
            .collect();
        PushRequest { streams }
    }
}

/// One Loki entry for one log record.
fn push_entry(
    prefix: &[(String, String)],
    record: &LogRecord,
    proposed_unix_nanos: u64,
    id: String,
) -> EntryAdapter {
    let mut metadata = record_metadata(prefix, record);
    // The record id is ours: a user attribute of the same name would make
    // the name ambiguous, so it is dropped in favour of the id.
    metadata.retain(|(name, _)| name != RECORD_ID_NAME);
    metadata.push((RECORD_ID_NAME.to_string(), id));
    EntryAdapter {
        timestamp: Some(to_timestamp(record_time_nanos(record, proposed_unix_nanos))),
        line: body_text(record),
        structured_metadata: metadata
            .into_iter()
            .map(|(name, value)| LabelPairAdapter { name, value })
            .collect(),
    }
}

/// The record id `"<index>:<ordinal>"`: the Raft index of the entry and the
/// record's 0-based position within it. Shared with the OTLP sink so both
/// sinks identify a record the same way.
pub fn record_id(index: u64, ordinal: u64) -> String {
    format!("{index}:{ordinal}")
}

/// The time of a record in Unix nanoseconds: its own time, else its observed
/// time, else `proposed_unix_nanos` (the committed entry's proposal time).
/// Never the wall clock, so a resend carries the same timestamp.
pub fn record_time_nanos(record: &LogRecord, proposed_unix_nanos: u64) -> u64 {
    if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else if record.observed_time_unix_nano != 0 {
        record.observed_time_unix_nano
    } else {
        proposed_unix_nanos
    }
}

/// Unix nanoseconds as the push API's `Timestamp`.
pub fn to_timestamp(unix_nanos: u64) -> Timestamp {
    const NANOS_PER_SECOND: u64 = 1_000_000_000;
    // u64::MAX / 1e9 fits an i64 and the remainder fits an i32.
    Timestamp {
        seconds: i64::try_from(unix_nanos / NANOS_PER_SECOND).unwrap_or(i64::MAX),
        nanos: i32::try_from(unix_nanos % NANOS_PER_SECOND).unwrap_or(0),
    }
}

/// The log line of a record: its body as text ([`any_value_text`]); a
/// missing body is the empty line.
pub fn body_text(record: &LogRecord) -> String {
    record.body.as_ref().map(any_value_text).unwrap_or_default()
}

/// The resource attributes of one resource, split the way Loki 3 splits
/// them: promoted ones become stream labels, the rest structured metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceSplit {
    /// Stream labels, sorted by name; always includes `service_name`.
    pub labels: Vec<(String, String)>,
    /// The other resource attributes, sanitised names, in attribute order.
    pub metadata: Vec<(String, String)>,
}

/// Splits resource attributes into stream labels and structured metadata.
///
/// A promoted attribute with an empty value, or a repeat of one already
/// promoted, is kept as metadata rather than lost (Loki drops empty labels).
/// Without a usable `service.name` the stream gets
/// `service_name="unknown_service"`.
pub fn split_resource(attrs: &[KeyValue]) -> ResourceSplit {
    let mut split = ResourceSplit::default();
    for kv in attrs {
        let name = sanitize_name(&kv.key);
        let value = kv.value.as_ref().map(any_value_text).unwrap_or_default();
        let promote = PROMOTED_RESOURCE_ATTRIBUTES.contains(&kv.key.as_str())
            && !value.is_empty()
            && !split.labels.iter().any(|(n, _)| *n == name);
        if promote {
            split.labels.push((name, value));
        } else {
            split.metadata.push((name, value));
        }
    }
    if !split.labels.iter().any(|(n, _)| n == SERVICE_NAME_LABEL) {
        split
            .labels
            .push((SERVICE_NAME_LABEL.to_string(), UNKNOWN_SERVICE.to_string()));
    }
    split.labels.sort();
    split
}

/// Structured metadata of an instrumentation scope: `scope_name` and
/// `scope_version` when non-empty, then the scope's attributes.
pub fn scope_metadata(scope: Option<&InstrumentationScope>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(scope) = scope else {
        return out;
    };
    if !scope.name.is_empty() {
        out.push(("scope_name".to_string(), scope.name.clone()));
    }
    if !scope.version.is_empty() {
        out.push(("scope_version".to_string(), scope.version.clone()));
    }
    push_attributes(&mut out, &scope.attributes);
    out
}

/// Structured metadata of one record: `prefix` (resource and scope
/// metadata), then the record's attributes, `severity_text`,
/// `severity_number`, `trace_id`, `span_id` (lowercase hex), `flags` and
/// `event_name`, each only when set. The order is fixed so that the same
/// record always yields the same metadata.
pub fn record_metadata(prefix: &[(String, String)], record: &LogRecord) -> Vec<(String, String)> {
    let mut out = prefix.to_vec();
    push_attributes(&mut out, &record.attributes);
    if !record.severity_text.is_empty() {
        out.push(("severity_text".to_string(), record.severity_text.clone()));
    }
    if record.severity_number != 0 {
        out.push((
            "severity_number".to_string(),
            record.severity_number.to_string(),
        ));
    }
    if !record.trace_id.is_empty() {
        out.push(("trace_id".to_string(), hex::encode(&record.trace_id)));
    }
    if !record.span_id.is_empty() {
        out.push(("span_id".to_string(), hex::encode(&record.span_id)));
    }
    if record.flags != 0 {
        out.push(("flags".to_string(), record.flags.to_string()));
    }
    if !record.event_name.is_empty() {
        out.push(("event_name".to_string(), record.event_name.clone()));
    }
    out
}

fn push_attributes(out: &mut Vec<(String, String)>, attrs: &[KeyValue]) {
    for kv in attrs {
        let value = kv.value.as_ref().map(any_value_text).unwrap_or_default();
        out.push((sanitize_name(&kv.key), value));
    }
}

/// An OTLP attribute name as a Loki label name: every character outside
/// `[a-zA-Z0-9_]` becomes `_`, and a leading digit gets a `key_` prefix (as
/// Loki's OTLP normaliser does). An empty name becomes `key_`.
pub fn sanitize_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    }
    out
}

/// Loki's label names follow Prometheus' rule `[a-zA-Z_][a-zA-Z0-9_]*`.
pub use crate::export::prometheus::naming::is_valid_label_name;

/// An OTLP value as text, for lines, labels and metadata values:
/// strings as-is; booleans, integers and doubles as their literal
/// (non-finite doubles as `NaN`, `+Inf`, `-Inf`); bytes as lowercase hex;
/// arrays and key-value lists as compact JSON (key-value lists as objects in
/// attribute order, bytes inside them as hex strings); an empty value as "".
pub fn any_value_text(value: &AnyValue) -> String {
    match &value.value {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BytesValue(b)) => hex::encode(b),
        Some(Value::DoubleValue(d)) => double_text(*d),
        Some(other) => {
            let mut out = String::new();
            write_json(Some(other), &mut out);
            out
        }
    }
}

fn double_text(d: f64) -> String {
    if d.is_nan() {
        "NaN".to_string()
    } else if d.is_infinite() {
        if d > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        serde_json::Number::from_f64(d)
            .map(|n| n.to_string())
            .unwrap_or_else(|| d.to_string())
    }
}

/// Compact JSON of an OTLP value. Written by hand so that key-value lists
/// keep their order (and duplicates) whatever serde_json features are on.
fn write_json(value: Option<&Value>, out: &mut String) {
    match value {
        None => out.push_str("null"),
        Some(Value::StringValue(s)) => write_json_string(s, out),
        Some(Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => out.push_str(&i.to_string()),
        Some(Value::StringValueStrindex(i)) => out.push_str(&i.to_string()),
        Some(Value::DoubleValue(d)) if d.is_finite() => out.push_str(&double_text(*d)),
        Some(Value::DoubleValue(d)) => write_json_string(&double_text(*d), out),
        Some(Value::BytesValue(b)) => write_json_string(&hex::encode(b), out),
        Some(Value::ArrayValue(array)) => {
            out.push('[');
            for (i, item) in array.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item.value.as_ref(), out);
            }
            out.push(']');
        }
        Some(Value::KvlistValue(list)) => {
            out.push('{');
            for (i, kv) in list.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(&kv.key, out);
                out.push(':');
                write_json(kv.value.as_ref().and_then(|v| v.value.as_ref()), out);
            }
            out.push('}');
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A label set as a LogQL stream selector `{a="x", b="y"}`: names sorted
/// (so equal sets give equal strings, which is what keys a stream), values
/// with backslash, double quote and newline escaped.
pub fn format_labels(labels: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = labels.iter().collect();
    sorted.sort();
    let mut out = String::from("{");
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(value, &mut out);
        out.push('"');
    }
    out.push('}');
    out
}

fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The push body: the protobuf `PushRequest`, compressed with *block*
/// snappy (`snap::raw`), which is what Loki's push endpoint expects for
/// `Content-Type: application/x-protobuf` (the framed/stream format is
/// refused by Loki).
pub fn encode_push(req: &PushRequest) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec())
}

/// An upper bound on what the push lines of `req` take in memory, computed
/// without allocating: every line carries a copy of its resource's and
/// scope's attributes (as labels or metadata), its own attributes, body and
/// id. Encoded lengths stand for the text each value becomes.
pub fn derived_cost(req: &ExportLogsServiceRequest) -> usize {
    let attrs_cost = |attrs: &[KeyValue]| -> usize {
        attrs
            .iter()
            .map(|kv| {
                kv.key.len()
                    + kv.value.as_ref().map_or(0, |v| v.encoded_len())
                    + 2 * PER_STRING_BYTES
            })
            .sum()
    };
    let mut total = 0usize;
    for resource_logs in &req.resource_logs {
        let resource = resource_logs
            .resource
            .as_ref()
            .map_or(0, |r| attrs_cost(&r.attributes));
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_logs.scope.as_ref().map_or(0, |s| {
                s.name.len() + s.version.len() + attrs_cost(&s.attributes) + 2 * PER_STRING_BYTES
            });
            for record in &scope_logs.log_records {
                let line = 2 * record.encoded_len() + 8 * PER_STRING_BYTES;
                total = total.saturating_add(resource + scope + line);
            }
        }
    }
    total
}
