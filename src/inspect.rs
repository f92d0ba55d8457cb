//! `otelraft inspect`: prints a stopped node's log as JSON lines, one entry
//! per line, with OTLP payloads rendered as OTLP JSON. Read-only.

use std::io::Write;
use std::path::Path;

use openraft::EntryPayload;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use prost::Message;
use serde_json::{json, Value};

use crate::pb::log::{command::Kind, Signal};
use crate::raft::Entry;
use crate::store::{self, StoreError};

fn payload_json(signal: Signal, payload: &[u8]) -> Value {
    fn render<M: Message + Default + serde::Serialize>(bytes: &[u8]) -> Value {
        match M::decode(bytes) {
            Ok(m) => serde_json::to_value(&m).unwrap_or(Value::Null),
            Err(e) => json!({ "decode_error": e.to_string() }),
        }
    }
    match signal {
        Signal::Logs => render::<ExportLogsServiceRequest>(payload),
        Signal::Metrics => render::<ExportMetricsServiceRequest>(payload),
        Signal::Traces => render::<ExportTraceServiceRequest>(payload),
        Signal::Unspecified => Value::Null,
    }
}

/// Renders one entry as a JSON object.
pub fn entry_json(entry: &Entry) -> Value {
    let id = &entry.log_id;
    let base =
        json!({ "index": id.index, "term": id.leader_id.term, "leader": id.leader_id.node_id });
    let extra = match &entry.payload {
        EntryPayload::Blank => json!({ "kind": "blank" }),
        EntryPayload::Membership(m) => json!({ "kind": "membership", "membership": m }),
        EntryPayload::Normal(cmd) => match &cmd.kind {
            Some(Kind::Ingest(r)) => {
                let signal = Signal::try_from(r.signal).unwrap_or(Signal::Unspecified);
                json!({
                    "kind": "ingest",
                    "signal": signal.name(),
                    "records": r.records,
                    "received_unix_nanos": r.received_unix_nanos,
                    "origin_node": r.origin_node,
                    "proposed_unix_nanos": r.proposed_unix_nanos,
                    "proposer_node": r.proposer_node,
                    "otlp": payload_json(signal, &r.payload),
                })
            }
            Some(Kind::Cursor(c)) => json!({ "kind": "cursor", "sink": c.sink, "cursor": c.index }),
            Some(Kind::Archived(a)) => json!({
                "kind": "archived", "first_index": a.first_index, "last_index": a.last_index,
                "key": a.key, "checksum": a.checksum, "size": a.size
            }),
            Some(Kind::Seal(s)) => json!({
                "kind": "seal", "first_index": s.first_index, "last_index": s.last_index
            }),
            None => json!({ "kind": "empty" }),
        },
    };
    let mut obj = base;
    if let (Some(o), Value::Object(e)) = (obj.as_object_mut(), extra) {
        o.extend(e);
    }
    obj
}

/// Writes every entry of the node at `data_dir` to `out`.
pub fn dump(data_dir: &Path, out: &mut impl Write) -> Result<usize, StoreError> {
    let entries = store::dump_offline(data_dir)?;
    for e in &entries {
        writeln!(out, "{}", entry_json(e)).map_err(StoreError::from)?;
    }
    Ok(entries.len())
}
