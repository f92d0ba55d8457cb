use std::collections::{BTreeMap, BTreeSet};

use object_store::path::Path;
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::cli::bench::realistic::string_kv;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::*;
use crate::pb::log::{Command, CursorAdvance, IngestRequest};

fn metrics(n: usize) -> ExportMetricsServiceRequest {
    let data_points = (0..n)
        .map(|i| NumberDataPoint {
            time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            value: Some(number_data_point::Value::AsInt(i as i64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", "checkout")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue_depth".into(),
                    data: Some(Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn traces(n: usize) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: vec![0x11; 16],
            span_id: vec![i as u8 + 1; 8],
            name: format!("GET /api/v1/orders/{i}"),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", "checkout")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn ingest(index: u64, signal: Signal, payload: Vec<u8>, records: u64) -> LogEntry {
    LogEntry {
        term: 2,
        leader_node: 1,
        index,
        payload: Some(Payload::Command(Command {
            kind: Some(Kind::Ingest(IngestRequest {
                signal: signal as i32,
                payload: Bytes::from(payload),
                records,
                received_unix_nanos: 1_000 + index,
                origin_node: 3,
                proposed_unix_nanos: 2_000 + index,
                proposer_node: 1,
                digest: Bytes::new(),
            })),
        })),
    }
}

fn membership_json() -> Bytes {
    let nodes: BTreeMap<u64, crate::raft::Member> = [(
        1,
        crate::raft::Member {
            peer_addr: "a:1".into(),
            admin_addr: "a:2".into(),
            ..Default::default()
        },
    )]
    .into();
    let m = openraft::Membership::new(vec![BTreeSet::from([1])], nodes).expect("valid membership");
    Bytes::from(serde_json::to_vec(&m).expect("serialises"))
}

/// One entry of every kind, at `first..first + 6`: logs, metrics and
/// traces ingests, a blank, a membership change and a cursor advance.
pub(crate) fn sample_entries(first: u64) -> Vec<LogEntry> {
    vec![
        ingest(
            first,
            Signal::Logs,
            crate::cli::bench::realistic::logs(first, 3).encode_to_vec(),
            3,
        ),
        ingest(first + 1, Signal::Metrics, metrics(4).encode_to_vec(), 4),
        ingest(first + 2, Signal::Traces, traces(5).encode_to_vec(), 5),
        LogEntry {
            term: 3,
            leader_node: 2,
            index: first + 3,
            payload: Some(Payload::Blank(true)),
        },
        LogEntry {
            term: 3,
            leader_node: 2,
            index: first + 4,
            payload: Some(Payload::MembershipJson(membership_json())),
        },
        LogEntry {
            term: 3,
            leader_node: 2,
            index: first + 5,
            payload: Some(Payload::Command(Command {
                kind: Some(Kind::Cursor(CursorAdvance {
                    sink: "prom".into(),
                    index: first + 2,
                    from_index: first,
                    term: 3,
                    delivered: 4,
                    ..Default::default()
                })),
            })),
        },
    ]
}

/// Raw entries `first..=last`, cycling through [`sample_entries`].
pub(crate) fn raw_range(first: u64, last: u64) -> Vec<RawEntry> {
    (first..=last)
        .map(|index| {
            let kinds = sample_entries(index);
            let mut e = kinds[(index % kinds.len() as u64) as usize].clone();
            e.index = index;
            raw(&e)
        })
        .collect()
}

fn raw(e: &LogEntry) -> RawEntry {
    RawEntry {
        index: e.index,
        bytes: Bytes::from(e.encode_to_vec()),
    }
}

#[test]
fn round_trip_keeps_every_entry_and_fills_the_header() {
    let entries = sample_entries(41);
    let raws: Vec<RawEntry> = entries.iter().map(raw).collect();
    let sealed = seal(&raws).expect("seals");
    assert_eq!((sealed.first_index, sealed.last_index), (41, 46));
    assert_eq!(sealed.entries, 6);
    assert_eq!(sealed.checksum.len(), 64);
    assert_eq!(&sealed.bytes[..8], BLOCK_MAGIC);

    let opened = open(&sealed.bytes).expect("opens");
    assert_eq!(opened.entries, entries);
    assert_eq!(opened.checksum, sealed.checksum);
    let h = &opened.header;
    assert_eq!((h.first_index, h.last_index, h.entry_count), (41, 46, 6));
    assert_eq!(h.uncompressed_len, sealed.uncompressed_bytes);
    assert_eq!(
        h.compressed_len as usize,
        sealed.bytes.len() - HEADER_LEN - TRAILER_LEN
    );
    assert_eq!(
        (h.logs_records, h.metrics_records, h.traces_records),
        (3, 4, 5)
    );
    assert_eq!(
        (h.first_proposed_unix_nanos, h.last_proposed_unix_nanos),
        (2_041, 2_043)
    );
    // The stored bytes are the log's bytes, not a re-encoding.
    let reencoded: Vec<Bytes> = opened
        .entries
        .iter()
        .map(|e| Bytes::from(e.encode_to_vec()))
        .collect();
    let original: Vec<Bytes> = raws.iter().map(|r| r.bytes.clone()).collect();
    assert_eq!(reencoded, original);
    assert_eq!(checksum_of(&sealed.bytes).ok(), Some(sealed.checksum));
    assert_eq!(
        read_header(&sealed.bytes[..HEADER_LEN]).ok(),
        Some(opened.header)
    );
}

#[test]
fn a_block_without_ingest_has_zero_times_and_counts() {
    let blank = LogEntry {
        term: 1,
        leader_node: 1,
        index: 0,
        payload: Some(Payload::Blank(true)),
    };
    let sealed = seal(&[raw(&blank)]).expect("seals");
    let h = open(&sealed.bytes).expect("opens").header;
    assert_eq!((h.first_index, h.last_index), (0, 0));
    assert_eq!(
        (
            h.first_proposed_unix_nanos,
            h.last_proposed_unix_nanos,
            h.logs_records
        ),
        (0, 0, 0)
    );
}

#[test]
fn sealing_is_deterministic() {
    let raws = raw_range(100, 160);
    let a = seal(&raws).expect("seals");
    let b = seal(&raws.clone()).expect("seals");
    assert_eq!(a, b);
    assert_eq!(a.bytes, b.bytes);
}

#[test]
fn every_flipped_byte_is_an_error() {
    let sealed = seal(&raw_range(7, 13)).expect("seals");
    for at in 0..sealed.bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = sealed.bytes.to_vec();
            bad[at] ^= bit;
            let err = open(&bad).err();
            assert!(err.is_some(), "flip at {at} went unnoticed");
            assert!(
                checksum_of(&bad).is_err(),
                "flip at {at} passed checksum_of"
            );
            // Outside the fields that frame the object (magic, version,
            // flags, compression, reserved, compressed length), only
            // the digest can notice.
            if at >= 16 && !(48..56).contains(&at) {
                assert!(
                    matches!(err, Some(BlockError::ChecksumMismatch { .. })),
                    "flip at {at}: {err:?}"
                );
            }
        }
    }
}

#[test]
fn truncated_or_extended_objects_are_refused() {
    let sealed = seal(&raw_range(1, 5)).expect("seals");
    for len in 0..sealed.bytes.len() {
        let err = open(&sealed.bytes[..len]).err();
        assert!(
            matches!(err, Some(BlockError::Truncated { .. })),
            "length {len}: {err:?}"
        );
    }
    let mut longer = sealed.bytes.to_vec();
    longer.push(0);
    assert!(matches!(
        open(&longer),
        Err(BlockError::TrailingBytes { .. })
    ));
    assert!(matches!(
        open(b"PAR1 definitely not a block, long enough to hold a header and a trailer, it is rather long indeed............................"),
        Err(BlockError::BadMagic)
    ));
}

#[test]
fn a_consistent_but_lying_header_is_refused() {
    // Rewrite a header field and re-sign: the digest passes, the body
    // check must not.
    let sealed = seal(&raw_range(1, 6)).expect("seals");
    let resign = |at: usize, value: u64| {
        let mut bad = sealed.bytes[..sealed.bytes.len() - TRAILER_LEN].to_vec();
        bad[at..at + 8].copy_from_slice(&value.to_le_bytes());
        let digest = Sha256::digest(&bad);
        bad.extend_from_slice(&digest);
        bad
    };
    for (at, value) in [(24, 7), (32, 5), (40, 3), (72, 99), (64, 1)] {
        let err = open(&resign(at, value)).err();
        assert!(
            matches!(
                err,
                Some(BlockError::CountMismatch { .. } | BlockError::Decompress(_))
            ),
            "field at {at}: {err:?}"
        );
    }
    let err = open(&resign(16, 2)).err();
    assert!(
        matches!(
            err,
            Some(BlockError::Entry { .. } | BlockError::CountMismatch { .. })
        ),
        "{err:?}"
    );
    assert!(matches!(
        open(&resign(40, MAX_UNCOMPRESSED_LEN + 1)),
        Err(BlockError::TooLarge(_))
    ));
}

#[test]
fn bad_input_to_seal_is_refused() {
    assert!(matches!(seal(&[]), Err(BlockError::Empty)));
    let mut raws = raw_range(1, 4);
    raws.remove(2);
    assert!(matches!(
        seal(&raws),
        Err(BlockError::NotContiguous {
            expected: 3,
            found: 4
        })
    ));
    let mut raws = raw_range(1, 4);
    raws[1].index = 9;
    assert!(matches!(seal(&raws), Err(BlockError::NotContiguous { .. })));
    // An entry whose bytes hold another index.
    let mut raws = raw_range(1, 4);
    raws[3].bytes = raws[2].bytes.clone();
    assert!(matches!(
        seal(&raws),
        Err(BlockError::Entry {
            position: 3,
            index: 4,
            ..
        })
    ));
    let mut raws = raw_range(1, 2);
    raws[1].bytes = Bytes::from_static(b"\xff\xff\xff");
    assert!(matches!(seal(&raws), Err(BlockError::Entry { .. })));
    assert!(!BlockError::Empty.retryable());
}

#[test]
fn keys_format_parse_and_sort_by_index() {
    let key = block_key("otelraft/c1", 1, 20);
    assert_eq!(
        key.as_ref(),
        "otelraft/c1/blocks/00000000000000000001-00000000000000000020.otrb"
    );
    assert_eq!(blocks_prefix("otelraft/c1").as_ref(), "otelraft/c1/blocks");
    assert_eq!(parse_block_key("otelraft/c1", &key), Some((1, 20)));
    assert_eq!(parse_block_key("otelraft", &key), None);
    assert_eq!(parse_block_key("otelraft/c2", &key), None);
    let max = block_key("p", u64::MAX, u64::MAX);
    assert_eq!(parse_block_key("p", &max), Some((u64::MAX, u64::MAX)));
    for foreign in [
        "p/blocks/1-2.otrb",
        "p/blocks/00000000000000000002-00000000000000000001.otrb",
        "p/blocks/00000000000000000001-00000000000000000002.tmp",
        "p/blocks/x/00000000000000000001-00000000000000000002.otrb",
        "p/other/00000000000000000001-00000000000000000002.otrb",
        "p/blocks/0000000000000000000+-00000000000000000002.otrb",
        "p/blocks/99999999999999999999-99999999999999999999.otrb",
    ] {
        assert_eq!(
            parse_block_key("p", &Path::from(foreign)),
            None,
            "{foreign}"
        );
    }

    let ranges = [
        (0, 0),
        (1, 9),
        (10, 99),
        (100, 100),
        (101, 1_000_000),
        (1_000_001, u64::MAX - 1),
        (u64::MAX, u64::MAX),
    ];
    let mut keys: Vec<String> = ranges
        .iter()
        .rev()
        .map(|&(a, b)| block_key("p", a, b).to_string())
        .collect();
    keys.sort();
    let parsed: Vec<(u64, u64)> = keys
        .iter()
        .filter_map(|k| parse_block_key("p", &Path::from(k.as_str())))
        .collect();
    assert_eq!(parsed, ranges);
}

#[test]
fn compression_ratio_on_realistic_logs() {
    let entries: Vec<RawEntry> = (0..8u64)
        .map(|i| {
            let index = 1_000 + i;
            raw(&ingest(
                index,
                Signal::Logs,
                crate::cli::bench::realistic::logs(i, 500).encode_to_vec(),
                500,
            ))
        })
        .collect();
    let sealed = seal(&entries).expect("seals");
    let ratio = sealed.uncompressed_bytes as f64 / sealed.bytes.len() as f64;
    println!(
        "realistic OTLP logs: {} entries x 500 records, {} bytes uncompressed, {} bytes sealed, ratio {ratio:.2}",
        sealed.entries,
        sealed.uncompressed_bytes,
        sealed.bytes.len()
    );
    assert!(ratio > 1.5, "ratio {ratio:.2}");

    // The bench's payload: one body repeated, so a best case.
    let bodies: Vec<String> = (0..500)
        .map(|i| format!("{i:06} benchmark log line {}", "x".repeat(170)))
        .collect();
    let bench = crate::cli::bench::logs_request(&bodies).encode_to_vec();
    let sealed = seal(&[raw(&ingest(1, Signal::Logs, bench, 500))]).expect("seals");
    println!(
        "bench OTLP logs: {} bytes uncompressed, {} bytes sealed, ratio {:.2}",
        sealed.uncompressed_bytes,
        sealed.bytes.len(),
        sealed.uncompressed_bytes as f64 / sealed.bytes.len() as f64
    );
}
