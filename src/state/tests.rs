//! The state model's rules, without storage: every change is a
//! compare-and-set on the state as applied.

use std::sync::Arc;

use openraft::EntryPayload;

use super::*;
use crate::pb::log::command::Kind;
use crate::pb::log::{ArchiveSeal, Archived, Command, CursorAdvance, SeriesMark};
use crate::raft::codec::log_id;
use crate::raft::Entry;

/// A blank entry at `index`, for tests that apply or store entries.
pub(crate) fn blank(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Blank,
    }
}

/// A command entry at `index`.
pub(crate) fn normal(term: u64, index: u64, kind: Kind) -> Entry {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(Command { kind: Some(kind) }),
    }
}

fn expected_state(entries: &[Entry]) -> SmState {
    let mut st = SmState::default();
    for e in entries {
        apply_entry(&mut st, e);
    }
    st
}

fn advance(from: u64, to: u64, series: &[(u64, i64)]) -> CursorAdvance {
    CursorAdvance {
        sink: "prom".into(),
        from_index: from,
        index: to,
        delivered: 1,
        series: series
            .iter()
            .map(|&(series, timestamp_ms)| SeriesMark {
                series,
                timestamp_ms,
                value_bits: 0,
            })
            .collect(),
        max_sample_ms: series.iter().map(|s| s.1).max().unwrap_or(0),
        ..Default::default()
    }
}

/// A seal applies only at the archive's next index with none pending, and
/// a record only for the pending range: a deposed leader's late seal or
/// record changes nothing.
#[test]
fn archive_seal_and_record_are_compare_and_set() {
    let seal = |i, first, last| {
        normal(
            1,
            i,
            Kind::Seal(ArchiveSeal {
                first_index: first,
                last_index: last,
                term: 1,
                ..Default::default()
            }),
        )
    };
    let record = |i, first, last| {
        normal(
            1,
            i,
            Kind::Archived(Archived {
                first_index: first,
                last_index: last,
                key: format!("k/{first}-{last}"),
                checksum: "c".into(),
                size: 1,
                uncompressed_bytes: 2,
            }),
        )
    };
    let entries = vec![
        blank(1, 0),
        seal(1, 1, 3), // refused: the archive starts at 0
        seal(2, 0, 1),
        seal(3, 0, 2),   // refused: a seal is pending
        record(4, 0, 2), // refused: not the pending range
        record(5, 0, 1),
        record(6, 0, 1), // refused: nothing pending any more
        seal(7, 0, 6),   // refused: 0 is archived
        seal(8, 2, 7),
    ];
    let st = expected_state(&entries);
    assert_eq!(st.archive.cursor, 1);
    assert_eq!(st.archive.blocks, 1);
    assert_eq!(st.archive.next_index(), 2);
    assert_eq!(
        st.archive.pending,
        Some(PendingSeal {
            first_index: 2,
            last_index: 7
        })
    );
    assert_eq!(
        st.archive.last_block.as_ref().map(|b| b.key.as_str()),
        Some("k/0-1")
    );
    assert_eq!(st.last_content_index, 0, "archive records are not content");
}

/// A seal may pass over entries only when it says they were trimmed
/// before the archive stored them, and only forward: the passed-over
/// entries are counted, never archived.
#[test]
fn a_seal_after_a_trim_begins_where_the_log_does_and_counts_what_it_passed() {
    let seal = |first, last, after_trim| ArchiveSeal {
        first_index: first,
        last_index: last,
        term: 1,
        after_trim,
    };
    let record = |first, last| Archived {
        first_index: first,
        last_index: last,
        key: format!("k/{first}-{last}"),
        ..Default::default()
    };
    let mut archive = ArchiveState::default();
    archive.apply_seal(&seal(300, 310, false)); // refused: not the next index
    assert_eq!(archive.pending, None);
    archive.apply_seal(&seal(300, 310, true));
    archive.apply_archived(&record(300, 310));
    assert_eq!((archive.next_index(), archive.skipped_entries), (311, 300));
    archive.apply_seal(&seal(200, 400, true)); // refused: behind the cursor
    assert_eq!(archive.pending, None);
    archive.apply_seal(&seal(500, 520, true));
    archive.apply_archived(&record(500, 520));
    assert_eq!((archive.next_index(), archive.skipped_entries), (521, 489));
    assert_eq!(archive.blocks, 2);
}

/// An advance applies only from the sink's cursor and only forward: a
/// deposed leader's advance, or a repeat, changes nothing.
#[test]
fn an_advance_applies_only_from_the_cursor_and_forward() {
    let mut sink = SinkState::default();
    sink.apply_advance(&advance(0, 5, &[(1, 10)]));
    sink.apply_advance(&advance(0, 7, &[(1, 20)])); // stale: cursor is 5
    sink.apply_advance(&advance(5, 5, &[(1, 30)])); // not forward
    assert_eq!((sink.cursor, sink.batches, sink.delivered), (5, 1, 1));
    assert_eq!(sink.series.get(&1).map(|m| m.timestamp_ms), Some(10));
    sink.apply_advance(&advance(5, 9, &[(2, 40)]));
    assert_eq!((sink.cursor, sink.batches), (9, 2));
    assert_eq!(sink.series.len(), 2);
}

/// Series older than the retention horizon behind the newest sample are
/// forgotten.
#[test]
fn series_marks_past_the_retention_horizon_are_forgotten() {
    let mut sink = SinkState::default();
    sink.apply_advance(&advance(0, 1, &[(1, 0), (2, 1_000)]));
    sink.apply_advance(&advance(1, 2, &[(3, SERIES_RETENTION_MS + 500)]));
    let kept: Vec<u64> = sink.series.keys().copied().collect();
    assert_eq!(kept, vec![2, 3]);
}

/// Readers share the series marks: a copy of the state does not copy the
/// map, and a later advance leaves the reader's map as it was.
#[test]
fn a_copy_of_the_state_shares_the_series_marks_until_an_advance() {
    let mut state = SmState::default();
    state
        .sinks
        .entry("prom".into())
        .or_default()
        .apply_advance(&advance(0, 1, &[(1, 10)]));
    let held = state.sink("prom");
    assert!(Arc::ptr_eq(&held.series, &state.sinks["prom"].series));
    if let Some(sink) = state.sinks.get_mut("prom") {
        sink.apply_advance(&advance(1, 2, &[(2, 20)]));
    }
    assert_eq!(held.series.len(), 1, "the reader's marks do not move");
    assert_eq!(state.sinks["prom"].series.len(), 2);
}

/// A sink with no restore point of its own takes the cluster's.
#[test]
fn a_sink_without_its_own_restore_point_takes_the_clusters() {
    let state = SmState {
        restore: Some(SinkRestore {
            upto: 7,
            at_ms: 9,
            continues_cluster: false,
        }),
        ..Default::default()
    };
    assert_eq!(
        state.sink("new").restore,
        Some(SinkRestore {
            upto: 7,
            at_ms: 9,
            continues_cluster: false
        })
    );
    assert_eq!(state.sink("new").cursor, 0);
}

/// The newest identity applied names the cluster, so a member that
/// applied an earlier one as an empty command (a version without
/// identities) converges with the others; a malformed one changes nothing.
#[test]
fn the_newest_cluster_identity_applied_wins() {
    use crate::pb::log::ClusterIdentity;
    let identity = |index: u64, id: &str| {
        normal(
            1,
            index,
            Kind::Identity(ClusterIdentity { id: id.to_string() }),
        )
    };
    let mut state = SmState::default();
    apply_entry(&mut state, &identity(1, "not hex"));
    assert_eq!(state.cluster_id, "");
    let first = "0123456789abcdef0123456789abcdef";
    apply_entry(&mut state, &identity(2, first));
    assert_eq!(state.cluster_id, first);
    let newer = "fedcba9876543210fedcba9876543210";
    apply_entry(&mut state, &identity(3, newer));
    apply_entry(&mut state, &identity(4, "FEDCBA9876543210FEDCBA9876543210"));
    assert_eq!(state.cluster_id, newer);
    assert_eq!(
        state.sink("prom").cluster_id,
        newer,
        "every sink's view has it"
    );
    let json = serde_json::to_string(&state).unwrap();
    let back: SmState = serde_json::from_str(&json).unwrap();
    assert_eq!(back.cluster_id, newer);
}
