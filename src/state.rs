//! The replicated state machine's model, pure: what every member derives
//! from the applied log, and how one entry changes it.
//!
//! It holds counters and positions, never OTLP payloads; it is small enough
//! to be the snapshot itself. Nothing here does I/O: `store` persists the
//! state and feeds it entries, and the same [`apply_entry`] rebuilds it in
//! `otelraft restore`.
//!
//! Invariant: the state is a pure function of the applied entries, in
//! order. Every change is a compare-and-set on the state as applied so far,
//! so a deposed leader's late proposal, or a repeat, changes nothing.

mod apply;
mod archive;
mod sink;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::raft::{LogId, StoredMembership};

pub use self::apply::{apply_entry, is_cluster_id};
pub use self::archive::{ArchiveState, ArchivedBlock, PendingSeal};
pub use self::sink::{
    DeadLetterItem, SeriesMarkState, SeriesMarks, SinkRestore, SinkState, DEAD_LETTERS_KEPT,
    SERIES_RETENTION_MS,
};

/// Everything the state machine knows, kept in memory and persisted as JSON.
///
/// It holds counters and positions, never OTLP payloads; it is small enough
/// to be the snapshot itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SmState {
    /// The last log entry applied to this state.
    pub last_applied: Option<LogId>,
    /// The membership of the last applied membership entry.
    pub membership: StoredMembership,
    /// Ingest totals keyed by `Signal::name()` (`logs`, `metrics`, `traces`).
    pub signals: BTreeMap<String, SignalTotals>,
    /// Index of the newest applied ingest entry: exporters are caught up
    /// when their cursor reaches it (the entries after it are Raft's and the
    /// exporters' own bookkeeping, with nothing to export).
    #[serde(default)]
    pub last_ingest_index: u64,
    /// Index of the newest applied entry other than a blank or the
    /// archive's own bookkeeping (seal, archived): the archiver is caught up
    /// when its cursor reaches it, so an idle cluster does not archive its
    /// own archive records forever.
    #[serde(default)]
    pub last_content_index: u64,
    /// Export state of each sink that has ever advanced, by sink name.
    pub sinks: BTreeMap<String, SinkState>,
    /// Where the archive stands.
    #[serde(default)]
    pub archive: ArchiveState,
    /// Set by `otelraft restore`; sinks without a restore point of their
    /// own (configured after the restore) use this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<SinkRestore>,
    /// Ids of every node that has left the membership. Ids are never
    /// reused: a returning machine joins under a new id, so a stale process
    /// with an old id and old log can never be mistaken for a member.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub retired_ids: BTreeSet<u64>,
    /// The cluster's identity (`ClusterIdentity`), empty until the first
    /// one is applied.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_id: String,
}

impl SmState {
    /// The state of sink `name` as its exporter sees it: as applied, or
    /// fresh, with the cluster's restore point if it has none of its own.
    pub fn sink(&self, name: &str) -> SinkState {
        let mut sink = self.sinks.get(name).cloned().unwrap_or_default();
        if sink.restore.is_none() {
            sink.restore = self.restore;
        }
        sink.cluster_id.clone_from(&self.cluster_id);
        sink
    }

    /// The lowest index some configured consumer (the named sinks and, if
    /// `archive` is true, the archive) still needs: entries below it may be
    /// trimmed. `None` when nothing consumes.
    pub fn retain_from<'a>(
        &self,
        sinks: impl IntoIterator<Item = &'a str>,
        archive: bool,
    ) -> Option<u64> {
        let sinks = sinks
            .into_iter()
            .map(|name| self.sinks.get(name).map_or(0, |s| s.cursor) + 1);
        let archive = archive.then(|| self.archive.next_index());
        sinks.chain(archive).min()
    }
}

/// Running totals of applied ingest requests for one signal.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SignalTotals {
    /// Ingest requests applied.
    pub requests: u64,
    /// Records (log records, data points, spans) in those requests.
    pub records: u64,
    /// Encoded OTLP payload bytes in those requests.
    pub payload_bytes: u64,
}
