//! `otelraft archive ls | cat`: the archive's blocks and entries for
//! operators, read through `archive::reader`; `verify` is the reader's.

use std::io::Write;

use object_store::path::Path;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use prost::Message;
use serde_json::{json, Value};

use crate::archive::block::{self, BlockError};
use crate::archive::reader::{list_blocks, list_objects, output};
use crate::archive::{Archive, ArchiveError};
use crate::pb::log::{command::Kind, log_entry::Payload, LogEntry, Signal};

/// `otelraft archive ls`: one row per block (key, first, last, entries,
/// size, modified), or one JSON object per line with `json`. Returns the
/// number of blocks.
pub async fn ls(
    archive: &Archive,
    out: &mut impl Write,
    json: bool,
) -> Result<usize, ArchiveError> {
    let listing = list_objects(archive).await?;
    if json {
        for b in &listing.blocks {
            let line = json!({
                "key": b.key,
                "first_index": b.first_index,
                "last_index": b.last_index,
                "entries": b.entries(),
                "size": b.size,
                "last_modified": b.last_modified,
            });
            writeln!(out, "{line}").map_err(output)?;
        }
        for key in &listing.foreign {
            tracing::warn!(key = %key, "object in the archive's blocks folder is not a block; ignored");
        }
        return Ok(listing.blocks.len());
    }

    let header = ["KEY", "FIRST", "LAST", "ENTRIES", "SIZE", "MODIFIED"];
    let rows: Vec<[String; 6]> = listing
        .blocks
        .iter()
        .map(|b| {
            [
                b.key.clone(),
                b.first_index.to_string(),
                b.last_index.to_string(),
                b.entries().to_string(),
                b.size.to_string(),
                b.last_modified.clone(),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let [kw, fw, lw, ew, sw, _] = width;
    writeln!(
        out,
        "{:<kw$}  {:>fw$}  {:>lw$}  {:>ew$}  {:>sw$}  {}",
        header[0], header[1], header[2], header[3], header[4], header[5]
    )
    .map_err(output)?;
    for [key, first, last, entries, size, modified] in &rows {
        writeln!(
            out,
            "{key:<kw$}  {first:>fw$}  {last:>lw$}  {entries:>ew$}  {size:>sw$}  {modified}"
        )
        .map_err(output)?;
    }
    let bytes: u64 = listing.blocks.iter().map(|b| b.size).sum();
    writeln!(
        out,
        "{} blocks, {bytes} bytes in {}",
        rows.len(),
        archive.location
    )
    .map_err(output)?;
    for key in &listing.foreign {
        writeln!(out, "not a block, ignored: {key}").map_err(output)?;
    }
    Ok(rows.len())
}

/// Renders an OTLP payload as OTLP JSON (the opentelemetry-proto serde
/// form), or says why it does not decode.
fn request_json(signal: Signal, payload: &[u8]) -> Value {
    fn render<M: Message + Default + serde::Serialize>(bytes: &[u8]) -> Value {
        match M::decode(bytes) {
            Ok(m) => serde_json::to_value(&m)
                .unwrap_or_else(|e| json!({ "render_error": e.to_string() })),
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

/// One archived entry as one JSON object: its log id, its kind and the
/// kind's fields; an Ingest entry's OTLP request as OTLP JSON.
pub fn entry_json(entry: &LogEntry) -> Value {
    let fields = match &entry.payload {
        Some(Payload::Blank(_)) => json!({ "kind": "blank" }),
        Some(Payload::MembershipJson(m)) => json!({
            "kind": "membership",
            "membership": serde_json::from_slice::<Value>(m)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(m).into_owned())),
        }),
        Some(Payload::Command(cmd)) => match &cmd.kind {
            Some(Kind::Ingest(r)) => {
                let signal = Signal::try_from(r.signal).unwrap_or(Signal::Unspecified);
                json!({
                    "kind": "ingest",
                    "signal": signal.name(),
                    "records": r.records,
                    "received_unix_nanos": r.received_unix_nanos,
                    "proposed_unix_nanos": r.proposed_unix_nanos,
                    "origin_node": r.origin_node,
                    "proposer_node": r.proposer_node,
                    "payload_bytes": r.payload.len(),
                    "otlp": request_json(signal, &r.payload),
                })
            }
            Some(Kind::Cursor(c)) => json!({
                "kind": "cursor",
                "sink": c.sink,
                "cursor": c.index,
                "from_index": c.from_index,
                "proposer_term": c.term,
                "delivered": c.delivered,
                "payload_bytes": c.payload_bytes,
                "marker_ms": c.marker_ms,
                "max_sample_ms": c.max_sample_ms,
                "series": c.series.len(),
                "dead_letters": c.dead_letters.len(),
                "dead_letter_counts": c.dead_letter_counts,
            }),
            Some(Kind::Archived(a)) => json!({
                "kind": "archived",
                "first_index": a.first_index,
                "last_index": a.last_index,
                "key": a.key,
                "checksum": a.checksum,
                "size": a.size,
                "uncompressed_bytes": a.uncompressed_bytes,
            }),
            Some(Kind::Seal(s)) => json!({
                "kind": "seal",
                "first_index": s.first_index,
                "last_index": s.last_index,
                "proposer_term": s.term,
                "after_trim": s.after_trim,
            }),
            // A command added to the protocol after this code: its variant
            // name, lower-cased, is still a useful kind.
            #[allow(unreachable_patterns)]
            Some(other) => {
                let debug = format!("{other:?}");
                let name = debug.split(['(', ' ', '{']).next().unwrap_or_default();
                json!({ "kind": name.to_ascii_lowercase() })
            }
            None => json!({ "kind": "empty" }),
        },
        None => json!({ "kind": "empty" }),
    };
    let mut obj = json!({
        "index": entry.index,
        "term": entry.term,
        "leader": entry.leader_node,
    });
    if let (Some(o), Value::Object(f)) = (obj.as_object_mut(), fields) {
        o.extend(f);
    }
    obj
}

/// [`entry_json`] as one line: the log id, the kind and the signal first,
/// the (long) OTLP request last, so a reader scanning the output finds what
/// an entry is at the start of its line.
pub fn entry_line(entry: &LogEntry) -> String {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        index: u64,
        term: u64,
        leader: u64,
        kind: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        signal: Option<Value>,
        #[serde(flatten)]
        rest: &'a serde_json::Map<String, Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        otlp: Option<Value>,
    }
    let mut value = entry_json(entry);
    let Some(fields) = value.as_object_mut() else {
        return value.to_string();
    };
    for key in ["index", "term", "leader"] {
        fields.remove(key);
    }
    let kind = fields.remove("kind").unwrap_or(Value::Null);
    let signal = fields.remove("signal");
    let otlp = fields.remove("otlp");
    let line = Line {
        index: entry.index,
        term: entry.term,
        leader: entry.leader_node,
        kind,
        signal,
        rest: fields,
        otlp,
    };
    serde_json::to_string(&line).unwrap_or_else(|_| entry_json(entry).to_string())
}

/// The key of the block `key_or_index` names: a log index (the first block
/// whose key range holds it), a full key, or a block's file name.
async fn resolve(archive: &Archive, key_or_index: &str) -> Result<String, ArchiveError> {
    let arg = key_or_index.trim();
    if let Ok(index) = arg.parse::<u64>() {
        let blocks = list_blocks(archive).await?;
        return blocks
            .into_iter()
            .find(|b| b.first_index <= index && index <= b.last_index)
            .map(|b| b.key)
            .ok_or_else(|| {
                ArchiveError::Missing(format!(
                    "no block in {} holds log index {index}",
                    archive.location
                ))
            });
    }
    let path = if arg.contains('/') {
        Path::parse(arg).map_err(|e| ArchiveError::Missing(format!("invalid key {arg:?}: {e}")))?
    } else {
        block::blocks_prefix(&archive.prefix).join(arg)
    };
    Ok(path.to_string())
}

/// `otelraft archive cat`: verifies the block named by `key_or_index` (a
/// block key, a block file name, or a log index, meaning the block that
/// holds it) and prints each of its entries as one JSON line (see
/// [`entry_json`]). Returns the number of entries printed.
pub async fn cat(
    archive: &Archive,
    out: &mut impl Write,
    key_or_index: &str,
) -> Result<u64, ArchiveError> {
    let key = resolve(archive, key_or_index).await?;
    let bytes = archive
        .get_if_present(&key)
        .await?
        .ok_or_else(|| ArchiveError::Missing(format!("no object {key} in {}", archive.location)))?;
    let opened = block::open(&bytes).map_err(|source: BlockError| ArchiveError::Block {
        key: key.clone(),
        source,
    })?;
    for entry in &opened.entries {
        writeln!(out, "{}", entry_line(entry)).map_err(output)?;
    }
    Ok(opened.entries.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::block::tests::raw_range;
    use crate::archive::reader::fixtures::{archive, put, put_bytes};

    #[tokio::test]
    async fn ls_lists_blocks_in_index_order() {
        let a = archive();
        put(&a, 100, 200).await;
        put(&a, 1, 99).await;
        put_bytes(&a, &Path::from("t/blocks/stray.tmp"), "x".into()).await;
        let blocks = list_blocks(&a).await.expect("lists");
        let ranges: Vec<(u64, u64)> = blocks
            .iter()
            .map(|b| (b.first_index, b.last_index))
            .collect();
        assert_eq!(ranges, vec![(1, 99), (100, 200)]);
        assert_eq!(blocks[0].entries(), 99);
        assert!(
            blocks[0].last_modified.contains('T'),
            "{}",
            blocks[0].last_modified
        );

        let mut out = Vec::new();
        assert_eq!(ls(&a, &mut out, false).await.expect("ls"), 2);
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("KEY"), "{text}");
        assert!(lines[1].starts_with(&blocks[0].key), "{text}");
        assert!(lines[2].starts_with(&blocks[1].key), "{text}");
        assert!(
            text.contains("not a block, ignored: t/blocks/stray.tmp"),
            "{text}"
        );

        let mut out = Vec::new();
        ls(&a, &mut out, true).await.expect("ls --json");
        let rows: Vec<Value> = String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["first_index"], 100);
        assert_eq!(rows[1]["entries"], 101);
    }

    #[tokio::test]
    async fn cat_prints_the_block_holding_an_index() {
        let a = archive();
        put(&a, 1, 10).await;
        put(&a, 11, 20).await;
        let mut out = Vec::new();
        assert_eq!(cat(&a, &mut out, "15").await.expect("cat"), 10);
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 10);
        let indices: Vec<u64> = lines.iter().filter_map(|l| l["index"].as_u64()).collect();
        assert_eq!(indices, (11..=20).collect::<Vec<_>>());

        // Index 12 is a logs ingest (see block::tests::raw_range).
        let logs = &lines[1];
        assert_eq!(
            (logs["kind"].as_str(), logs["signal"].as_str()),
            (Some("ingest"), Some("logs"))
        );
        assert_eq!(logs["records"], 3);
        let record = &logs["otlp"]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        let body = record["body"]["stringValue"].as_str().unwrap_or_default();
        assert!(body.len() > 50, "{logs}");
        assert!(text.contains("ip-10-0-12-34.eu-west-1.compute.internal"));
        assert_eq!(lines[2]["signal"], "metrics");
        assert!(lines[2]["otlp"]["resourceMetrics"].is_array());
        assert_eq!(lines[3]["signal"], "traces");
        assert!(lines[3]["otlp"]["resourceSpans"].is_array());
        let kinds: Vec<&str> = lines.iter().filter_map(|l| l["kind"].as_str()).collect();
        for kind in ["blank", "membership", "cursor"] {
            assert!(kinds.contains(&kind), "{kinds:?}");
        }
        let cursor = lines
            .iter()
            .find(|l| l["kind"] == "cursor")
            .expect("a cursor");
        assert_eq!(cursor["sink"], "prom");

        // By key and by file name: the same lines.
        let key = block::block_key("t", 11, 20).to_string();
        let mut by_key = Vec::new();
        cat(&a, &mut by_key, &key).await.expect("cat key");
        assert_eq!(String::from_utf8(by_key).expect("utf-8"), text);
        let name = key.rsplit('/').next().unwrap_or_default().to_string();
        let mut by_name = Vec::new();
        cat(&a, &mut by_name, &name).await.expect("cat name");
        assert_eq!(String::from_utf8(by_name).expect("utf-8"), text);

        assert!(matches!(
            cat(&a, &mut Vec::new(), "21").await,
            Err(ArchiveError::Missing(_))
        ));
        assert!(matches!(
            cat(&a, &mut Vec::new(), "t/blocks/nope.otrb").await,
            Err(ArchiveError::Missing(_))
        ));
    }

    #[tokio::test]
    async fn cat_of_a_corrupt_block_is_a_block_error() {
        let a = archive();
        let mut bad = block::seal(&raw_range(1, 3)).expect("seals").bytes.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        put_bytes(&a, &block::block_key("t", 1, 3), bad.into()).await;
        let err = cat(&a, &mut Vec::new(), "2").await.err();
        assert!(
            matches!(
                &err,
                Some(ArchiveError::Block {
                    source: BlockError::ChecksumMismatch { .. },
                    ..
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn entry_json_renders_bookkeeping_commands() {
        use crate::pb::log::{ArchiveSeal, Archived, Command};
        let archived = LogEntry {
            term: 4,
            leader_node: 2,
            index: 77,
            payload: Some(Payload::Command(Command {
                kind: Some(Kind::Archived(Archived {
                    first_index: 1,
                    last_index: 70,
                    key: "t/blocks/x".into(),
                    checksum: "ab".into(),
                    size: 10,
                    uncompressed_bytes: 20,
                })),
            })),
        };
        let v = entry_json(&archived);
        assert_eq!(
            v,
            json!({
                "index": 77, "term": 4, "leader": 2, "kind": "archived",
                "first_index": 1, "last_index": 70, "key": "t/blocks/x",
                "checksum": "ab", "size": 10, "uncompressed_bytes": 20
            })
        );
        let seal = LogEntry {
            payload: Some(Payload::Command(Command {
                kind: Some(Kind::Seal(ArchiveSeal {
                    first_index: 71,
                    last_index: 76,
                    term: 4,
                    ..Default::default()
                })),
            })),
            ..archived
        };
        assert_eq!(entry_json(&seal)["kind"], "seal");
        assert_eq!(entry_json(&seal)["last_index"], 76);
    }
}
