//! One sink's replicated export state: its cursor, the newest exported
//! sample of each series, and the dead letters.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::pb::log::CursorAdvance;

/// What the cluster knows of one sink: its cursor and what it needs to keep
/// per-series ordering and to settle an uncertain batch after a failover.
///
/// Changed only by applying `CursorAdvance` commands, so every member holds
/// the same value for the same applied index.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SinkState {
    /// Every log index `<= cursor` has been delivered or dead-lettered.
    pub cursor: u64,
    /// Term of the leader that proposed the last applied advance.
    pub term: u64,
    /// Timestamp (ms) of the newest marker sample written to the sink.
    pub marker_ms: i64,
    /// Largest sample timestamp (ms) ever exported to the sink.
    pub max_sample_ms: i64,
    /// Series hash -> newest exported sample, for series exported within
    /// [`SERIES_RETENTION_MS`] of `max_sample_ms`. Older series are
    /// forgotten: any sample for them is out of bounds anyway.
    pub series: SeriesMarks,
    /// Items (samples, log lines) delivered.
    pub delivered: u64,
    /// Payload bytes of all entries up to `cursor`, whether or not they held
    /// data for this sink; with the ingest totals this gives the byte lag.
    pub payload_bytes: u64,
    /// Advances applied (one per batch the sink accepted).
    pub batches: u64,
    /// Dead-lettered items by reason code, since the sink was first used.
    pub dead_letter_counts: BTreeMap<String, u64>,
    /// The newest [`DEAD_LETTERS_KEPT`] dead-lettered items, oldest first.
    pub dead_letters: VecDeque<DeadLetterItem>,
    /// Set by `otelraft restore`: where the restored log ends, and the
    /// restore's id. Markers the sink holds without that id were written by
    /// the lost cluster, whose indices past `upto` are not this cluster's;
    /// see `export::prometheus::marker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<SinkRestore>,
    /// The cluster's identity, filled in from the state by `SmState::sink`
    /// (never stored per sink): the marker's `otelraft_cluster` label.
    #[serde(skip)]
    pub cluster_id: String,
}

/// The restore point of a sink's cursor, written once by `otelraft restore`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SinkRestore {
    /// Last index of the restored log: the lost cluster's entries up to it
    /// are this cluster's entries too.
    pub upto: u64,
    /// Wall-clock time of the restore, ms: the restore's id, which this
    /// cluster's Prometheus markers carry as the `otelraft_restore` label.
    pub at_ms: i64,
    /// Whether the restored state carries the lost cluster's identity (the
    /// archive held its `ClusterIdentity` entry). Then the lost cluster's
    /// markers are told apart from other clusters' by it; otherwise any
    /// marker without this restore's id may be the lost cluster's.
    #[serde(default)]
    pub continues_cluster: bool,
}

impl SinkState {
    /// Applies an advance only if it starts where the sink's cursor is (compare
    /// and set) and moves it forward. An advance proposed by a deposed leader,
    /// or a repeat of one already applied, therefore changes nothing; the
    /// series marks it carries were computed from exactly the state it replaces.
    pub fn apply_advance(&mut self, c: &CursorAdvance) {
        let sink = self;
        if c.from_index != sink.cursor || c.index <= sink.cursor {
            return;
        }
        sink.cursor = c.index;
        sink.term = c.term;
        sink.batches = sink.batches.saturating_add(1);
        sink.delivered = sink.delivered.saturating_add(c.delivered);
        sink.payload_bytes = sink.payload_bytes.saturating_add(c.payload_bytes);
        sink.marker_ms = sink.marker_ms.max(c.marker_ms);
        sink.max_sample_ms = sink.max_sample_ms.max(c.max_sample_ms);
        // Copy on write: readers hold the map they were handed, so the
        // map is copied here only while one of them still holds it.
        let series = Arc::make_mut(&mut sink.series);
        for mark in &c.series {
            series.insert(
                mark.series,
                SeriesMarkState {
                    timestamp_ms: mark.timestamp_ms,
                    value_bits: mark.value_bits,
                },
            );
        }
        let horizon = sink.max_sample_ms.saturating_sub(SERIES_RETENTION_MS);
        series.retain(|_, m| m.timestamp_ms >= horizon);
        for (reason, n) in &c.dead_letter_counts {
            let count = sink.dead_letter_counts.entry(reason.clone()).or_default();
            *count = count.saturating_add(*n);
        }
        for d in &c.dead_letters {
            sink.dead_letters.push_back(DeadLetterItem {
                index: d.index,
                reason: d.reason.clone(),
                // Quoted again here: an advance written before subjects
                // were bounded must not grow the state either.
                subject: crate::text::quote(&d.subject).into_owned(),
                timestamp_ms: d.timestamp_ms,
                value: d.value,
                detail: crate::text::quote(&d.detail).into_owned(),
            });
        }
        while sink.dead_letters.len() > DEAD_LETTERS_KEPT {
            sink.dead_letters.pop_front();
        }
    }
}

/// Series hash -> newest exported sample. Shared, not copied, by every
/// reader of a [`SinkState`].
pub type SeriesMarks = Arc<BTreeMap<u64, SeriesMarkState>>;

/// The newest exported sample of one series.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SeriesMarkState {
    /// Sample timestamp, ms.
    pub timestamp_ms: i64,
    /// IEEE-754 bits of the sample value.
    pub value_bits: u64,
}

/// One item kept out of a sink, as applied from a `CursorAdvance`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DeadLetterItem {
    /// Log index of the entry that carried it.
    pub index: u64,
    /// Reason code (see `export::dead_letter::Reason`).
    pub reason: String,
    /// Series labels, metric name or stream.
    pub subject: String,
    /// Sample or line timestamp, ms.
    pub timestamp_ms: i64,
    /// Sample value (0 for log lines).
    pub value: f64,
    /// The sink's own message, if it refused the item itself.
    pub detail: String,
}

/// Dead-lettered items kept per sink in the replicated state; older ones
/// remain counted, and their data stays in the log and the archive.
pub const DEAD_LETTERS_KEPT: usize = 1000;

/// Series not exported for this long (relative to the sink's newest sample)
/// are dropped from [`SinkState::series`]. Prometheus refuses samples more
/// than an hour older than its newest, so two hours is safely past that.
pub const SERIES_RETENTION_MS: i64 = 2 * 3600 * 1000;
