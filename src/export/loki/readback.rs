//! What Loki holds of a batch, read back through its query API before
//! anything is sent again.
//!
//! Loki drops a repeated entry only while the first copy is still in its
//! stream's head block (256 KiB by default); a repeat of an older entry is
//! stored twice. So after a send whose outcome is unknown (a timeout, a
//! 5xx, or a previous leader's send before a takeover) the exporter asks
//! instead of resending: every line carries its record id
//! (`otelraft_record = "<log index>:<ordinal>"`), and one log query per
//! stream and chunk of ids finds the ones Loki has:
//!
//! ```text
//! {service_name="shop", ...} | otelraft_record=~"12:(0|1|2)|13:0"
//! ```
//!
//! over `[earliest, latest + 1 ns)` of the chunk's timestamps. What is found
//! is left out of the request; what is not is sent. Record ids are unique
//! within one cluster's log, but another cluster writing the same streams
//! reuses them, so a line counts as held only if its timestamp and its
//! text match too: what is skipped is then an entry Loki holds verbatim.
//!
//! Bounds: a chunk names at most [`PROBE_RECORDS`] ids and
//! [`PROBE_LINE_BYTES`] of line text, so its URL stays a few KiB and its
//! answer stays under the query response cap (`http::MAX_QUERY_RESPONSE_BYTES`).
//! The push API's streams are selected by their exact labels; the OTLP
//! endpoint's streams by `service_name` alone, which Loki always sets, so
//! the read-back does not depend on which resource attributes a Loki
//! installation promotes to labels.

use std::collections::{BTreeMap, HashSet};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use serde_json::Value;

use super::otlp::RECORD_ID_ATTRIBUTE;
use super::request::{format_labels, RECORD_ID_NAME, SERVICE_NAME_LABEL, UNKNOWN_SERVICE};
use crate::pb::loki::PushRequest;

/// Most record ids one query names.
pub const PROBE_RECORDS: usize = 500;

/// Most line and metadata bytes one query may return (one longer line
/// goes alone); a quarter of the answer cap, for JSON escaping and copies.
pub const PROBE_LINE_BYTES: usize = 4 << 20;

/// Longest time range one query spans: far inside Loki's
/// `max_query_length` (721 h by default), whatever timestamps the records
/// carry.
pub const PROBE_SPAN_NANOS: u64 = 3600 * 1_000_000_000;

/// Query bounds are kept where Loki reads an integer as nanoseconds (more
/// than 10 digits) and within an `int64`.
const MIN_BOUND_NANOS: u64 = 10_000_000_000;
const MAX_BOUND_NANOS: u64 = i64::MAX as u64;

/// One line of a batch, as the read-back looks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeLine {
    /// The stream selector that finds it.
    pub selector: String,
    /// Its Loki timestamp, Unix nanoseconds.
    pub unix_nanos: u64,
    /// Its record id.
    pub id: String,
    /// Its line length.
    pub bytes: usize,
    /// Hash of the line as Loki stores it, or `None` where Loki renders
    /// the line itself (a non-string OTLP body): then id and time decide.
    pub line_hash: Option<u64>,
}

/// A line a read-back found: id, time and a hash of its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Found {
    pub id: String,
    pub unix_nanos: u64,
    pub line_hash: u64,
}

/// A stable hash of a line's text.
pub fn line_hash(line: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    line.hash(&mut h);
    h.finish()
}

/// The ids of `lines` that `found` confirms: same id and time, and the
/// same text where it is compared.
pub fn confirmed(lines: &[ProbeLine], found: &HashSet<Found>) -> HashSet<String> {
    let loose: HashSet<(&str, u64)> = found
        .iter()
        .map(|f| (f.id.as_str(), f.unix_nanos))
        .collect();
    lines
        .iter()
        .filter(|l| match l.line_hash {
            Some(line_hash) => found.contains(&Found {
                id: l.id.clone(),
                unix_nanos: l.unix_nanos,
                line_hash,
            }),
            None => loose.contains(&(l.id.as_str(), l.unix_nanos)),
        })
        .map(|l| l.id.clone())
        .collect()
}

/// One query: ids of one stream, and the time range that holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub selector: String,
    pub start_nanos: u64,
    pub end_nanos: u64,
    pub ids: Vec<String>,
}

impl Probe {
    /// The LogQL log query.
    pub fn logql(&self) -> String {
        format!(
            "{} | {RECORD_ID_NAME}=~\"{}\"",
            self.selector,
            id_regex(&self.ids)
        )
    }

    /// The `query_range` parameters. The limit leaves room for copies Loki
    /// already holds twice; see [`held_ids`].
    pub fn params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("query", self.logql()),
            ("start", self.start_nanos.to_string()),
            ("end", self.end_nanos.to_string()),
            ("limit", self.limit().to_string()),
            ("direction", "forward".to_string()),
        ]
    }

    pub fn limit(&self) -> usize {
        2 * self.ids.len()
    }
}

/// `12:(0|1)|13:0`: the ids grouped by log index. Ids hold only digits and
/// one colon (see `request::record_id`), so nothing needs escaping.
fn id_regex(ids: &[String]) -> String {
    let mut by_index: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for id in ids {
        let (index, ordinal) = id.split_once(':').unwrap_or((id.as_str(), ""));
        by_index.entry(index).or_default().push(ordinal);
    }
    let parts: Vec<String> = by_index
        .into_iter()
        .map(|(index, ordinals)| match ordinals.as_slice() {
            [one] => format!("{index}:{one}"),
            many => format!("{index}:({})", many.join("|")),
        })
        .collect();
    parts.join("|")
}

/// The queries that look for `lines`: per stream, in time order, chunks of
/// at most [`PROBE_RECORDS`] ids, [`PROBE_LINE_BYTES`] bytes and
/// [`PROBE_SPAN_NANOS`] of time. Bounds are clamped to what Loki reads as
/// nanoseconds; a line outside them is not found, and is sent.
pub fn probes(lines: &[ProbeLine]) -> Vec<Probe> {
    let mut streams: BTreeMap<&str, Vec<&ProbeLine>> = BTreeMap::new();
    for line in lines {
        streams.entry(&line.selector).or_default().push(line);
    }
    let mut out = Vec::new();
    for (selector, mut lines) in streams {
        lines.sort_by_key(|l| l.unix_nanos);
        let mut current: Option<(Probe, usize)> = None;
        for line in lines {
            let at = line.unix_nanos.clamp(MIN_BOUND_NANOS, MAX_BOUND_NANOS - 1);
            if let Some((probe, bytes)) = &current {
                if probe.ids.len() >= PROBE_RECORDS
                    || bytes + line.bytes > PROBE_LINE_BYTES
                    || at - probe.start_nanos > PROBE_SPAN_NANOS
                {
                    out.extend(current.take().map(|(p, _)| p));
                }
            }
            let (probe, bytes) = current.get_or_insert_with(|| {
                (
                    Probe {
                        selector: selector.to_string(),
                        start_nanos: at,
                        end_nanos: at + 1,
                        ids: Vec::new(),
                    },
                    0,
                )
            });
            probe.end_nanos = probe.end_nanos.max(at + 1);
            probe.ids.push(line.id.clone());
            *bytes += line.bytes;
        }
        out.extend(current.map(|(p, _)| p));
    }
    out
}

/// The lines in a `query_range` answer, and how many values it held.
/// Structured metadata is found in either place Loki 3 puts it: the
/// result stream's labels, or (with `categorize-labels`) each value's
/// third element.
pub fn found_lines(doc: &Value, into: &mut HashSet<Found>) -> Result<usize, String> {
    if doc["status"] != "success" || doc["data"]["resultType"] != "streams" {
        return Err(format!(
            "not a streams answer: {}",
            crate::text::quote(&doc.to_string())
        ));
    }
    let streams = doc["data"]["result"]
        .as_array()
        .ok_or("the answer has no result array")?;
    let mut values_seen = 0;
    for stream in streams {
        let in_labels = stream["stream"][RECORD_ID_NAME].as_str();
        let values = stream["values"]
            .as_array()
            .ok_or("a result stream has no values")?;
        for value in values {
            values_seen += 1;
            let id = in_labels.or_else(|| value[2]["structuredMetadata"][RECORD_ID_NAME].as_str());
            let unix_nanos = value[0].as_str().and_then(|t| t.parse::<u64>().ok());
            let line = value[1].as_str();
            if let (Some(id), Some(unix_nanos), Some(line)) = (id, unix_nanos, line) {
                into.insert(Found {
                    id: id.to_string(),
                    unix_nanos,
                    line_hash: line_hash(line),
                });
            }
        }
    }
    Ok(values_seen)
}

/// The lines of a push request, with the exact stream selector.
pub fn push_lines(req: &PushRequest) -> Vec<ProbeLine> {
    let mut out = Vec::new();
    for stream in &req.streams {
        for entry in &stream.entries {
            let Some(id) = entry
                .structured_metadata
                .iter()
                .find(|p| p.name == RECORD_ID_NAME)
            else {
                continue;
            };
            let unix_nanos = entry.timestamp.as_ref().map_or(0, |t| {
                (t.seconds.max(0) as u64) * 1_000_000_000 + t.nanos.max(0) as u64
            });
            out.push(ProbeLine {
                selector: stream.labels.clone(),
                unix_nanos,
                id: id.value.clone(),
                bytes: entry.line.len()
                    + entry
                        .structured_metadata
                        .iter()
                        .map(|p| p.name.len() + p.value.len() + 8)
                        .sum::<usize>(),
                line_hash: Some(line_hash(&entry.line)),
            });
        }
    }
    out
}

/// Keeps only the push entries whose ids are not in `held`.
pub fn retain_push(req: &mut PushRequest, held: &HashSet<String>) {
    for stream in &mut req.streams {
        stream.entries.retain(|e| {
            !e.structured_metadata
                .iter()
                .any(|p| p.name == RECORD_ID_NAME && held.contains(&p.value))
        });
    }
    req.streams.retain(|s| !s.entries.is_empty());
}

/// The record id attribute of an OTLP record, as the OTLP builder set it.
fn otlp_record_id(record: &opentelemetry_proto::tonic::logs::v1::LogRecord) -> Option<&str> {
    record
        .attributes
        .iter()
        .find(|kv| kv.key == RECORD_ID_ATTRIBUTE)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

/// The lines of an OTLP request, selected by `service_name`.
pub fn otlp_lines(req: &ExportLogsServiceRequest) -> Vec<ProbeLine> {
    let mut out = Vec::new();
    for resource_logs in &req.resource_logs {
        let service = resource_logs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) if !s.is_empty() => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_else(|| UNKNOWN_SERVICE.to_string());
        let selector = format_labels(&[(SERVICE_NAME_LABEL.to_string(), service)]);
        for scope_logs in &resource_logs.scope_logs {
            for record in &scope_logs.log_records {
                let Some(id) = otlp_record_id(record) else {
                    continue;
                };
                let unix_nanos = if record.time_unix_nano != 0 {
                    record.time_unix_nano
                } else {
                    record.observed_time_unix_nano
                };
                out.push(ProbeLine {
                    selector: selector.clone(),
                    unix_nanos,
                    id: id.to_string(),
                    // The body and the attributes that become metadata.
                    bytes: prost::Message::encoded_len(record),
                    // Loki stores a string body as it is; other bodies it
                    // renders itself.
                    line_hash: match record.body.as_ref().and_then(|b| b.value.as_ref()) {
                        Some(AnyValue::StringValue(text)) => Some(line_hash(text)),
                        _ => None,
                    },
                });
            }
        }
    }
    out
}

/// Keeps only the OTLP records whose ids are not in `held`.
pub fn retain_otlp(req: &mut ExportLogsServiceRequest, held: &HashSet<String>) {
    for resource_logs in &mut req.resource_logs {
        for scope_logs in &mut resource_logs.scope_logs {
            scope_logs
                .log_records
                .retain(|r| !otlp_record_id(r).is_some_and(|id| held.contains(id)));
        }
        resource_logs
            .scope_logs
            .retain(|s| !s.log_records.is_empty());
    }
    req.resource_logs.retain(|r| !r.scope_logs.is_empty());
}

#[cfg(test)]
mod tests;
