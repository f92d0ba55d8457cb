//! Durable storage for one node: the Raft log, the vote, the state machine
//! and its snapshot, all in a single redb file, `<data_dir>/otelraft.redb`.
//!
//! The on-disk format (tables, key and value encodings, invariants, crash
//! behaviour) is specified in `docs/storage-format.md`.
//!
//! # Write path
//!
//! One OS thread (see [`writer`]) owns every redb write transaction. Async
//! callers send it operations over a channel; each time it wakes it drains
//! the whole queue, applies the operations in submission order in one write
//! transaction and commits once. Durable operations cost one fsync per
//! batch, however many callers contributed to it (group commit); lazy ones
//! (committed log id, state-machine state) ride along with the next fsync.
//!
//! # Ordering and visibility invariants
//!
//! - Log I/O (append, truncate, purge, vote) is applied in the order the
//!   single [`LogStore`] handle submitted it: there is one queue and one
//!   consumer.
//! - An appended entry is readable the moment `append` returns (it sits in an
//!   in-memory overlay until its commit), and is durable when its `IOFlushed`
//!   callback fires.
//! - Replies and callbacks of a batch fire only after that batch's commit
//!   returned and after the overlay was updated for it.
//! - The state machine never holds OTLP payloads: the data is stored once, in
//!   the log.

/// Name of the file that marks a data directory whose restore has not
/// finished; `otelraft serve` refuses to start on it.
pub const RESTORING_FILE: &str = "RESTORING";

pub mod carry;
mod log;
mod state_machine;
mod tables;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::raft::codec::CodecError;
use crate::raft::{Entry, LogId, StoredMembership};

pub use self::log::LogStore;
pub use self::state_machine::{apply_entry, SnapshotBuilder, StateMachineStore};

/// File name of the node's database inside its data directory.
pub const DB_FILE_NAME: &str = "otelraft.redb";

/// Opens (creating if needed) the node's database under `data_dir` and
/// starts its writer thread.
///
/// Both returned handles share the database and the writer; the writer thread
/// exits once every clone of both handles is dropped, which also closes the
/// file. Fails with [`StoreError::Locked`] if another process (or another
/// open handle in this process) holds the file.
pub async fn open(
    data_dir: &Path,
    metrics: Arc<Metrics>,
) -> Result<(LogStore, StateMachineStore), StoreError> {
    open_with_cache(data_dir, metrics, DEFAULT_CACHE_BYTES).await
}

/// redb's own default page cache.
pub const DEFAULT_CACHE_BYTES: usize = 1 << 30;

/// [`open`] with a page cache of `cache_bytes` (a witness needs little).
pub async fn open_with_cache(
    data_dir: &Path,
    metrics: Arc<Metrics>,
    cache_bytes: usize,
) -> Result<(LogStore, StateMachineStore), StoreError> {
    let data_dir = data_dir.to_path_buf();
    let opened =
        tokio::task::spawn_blocking(move || tables::open_db(&data_dir, cache_bytes)).await??;
    opened.figures.publish(&metrics);
    let shared = Arc::new(opened.db);
    let overlay = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let handle = writer::spawn(writer::WriterInit {
        db: shared.clone(),
        overlay: overlay.clone(),
        metrics,
        persisted_applied: opened.state.sm.last_applied,
        log_bytes: opened.state.log_bytes,
        raft_first: opened.state.last_purged.map_or(0, |l| l.index + 1),
    })?;
    let log = LogStore::new(
        shared.clone(),
        overlay,
        handle.clone(),
        opened.state.vote,
        opened.state.committed,
        opened.state.last_purged,
    );
    let sm = StateMachineStore::new(shared, handle, opened.state.sm);
    Ok((log, sm))
}

/// Reads every log entry of a node's database that no process has open, in
/// index order; used by `otelraft inspect`.
///
/// The database is opened read-only. If it was not shut down cleanly redb
/// needs a repair pass before it can be read, and a read-only handle cannot
/// do that, so the file is then opened read-write once (the repair only
/// rewrites allocator metadata; no table content changes). Fails with
/// [`StoreError::Locked`] naming the file if a node is running on it.
pub fn dump_offline(data_dir: &Path) -> Result<Vec<Entry>, StoreError> {
    tables::dump_offline(&data_dir.join(DB_FILE_NAME))
}

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
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub retired_ids: std::collections::BTreeSet<u64>,
}

impl SmState {
    /// The state of sink `name` as its exporter sees it: as applied, or
    /// fresh, with the cluster's restore point if it has none of its own.
    pub fn sink(&self, name: &str) -> SinkState {
        let mut sink = self.sinks.get(name).cloned().unwrap_or_default();
        if sink.restore.is_none() {
            sink.restore = self.restore;
        }
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

/// The archive's replicated position. Changed only by applying
/// `ArchiveSeal` and `Archived` commands.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ArchiveState {
    /// Every log index `<= cursor` is in a block recorded as archived.
    pub cursor: u64,
    /// The range sealed for the next block, committed but not yet recorded
    /// as archived: whichever leader uploads it uses exactly this range.
    pub pending: Option<PendingSeal>,
    /// Blocks recorded.
    pub blocks: u64,
    /// Bytes of block objects recorded.
    pub bytes: u64,
    /// Entries' bytes before compression, in recorded blocks.
    pub uncompressed_bytes: u64,
    /// The newest recorded block.
    pub last_block: Option<ArchivedBlock>,
}

impl ArchiveState {
    /// The first index not yet archived: the archive covers the log from
    /// index 0 (Raft's first entry), so before the first block it is 0.
    pub fn next_index(&self) -> u64 {
        if self.blocks == 0 {
            0
        } else {
            self.cursor.saturating_add(1)
        }
    }
}

/// A committed seal decision.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingSeal {
    /// First index of the block.
    pub first_index: u64,
    /// Last index of the block, inclusive.
    pub last_index: u64,
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
    pub series: BTreeMap<u64, SeriesMarkState>,
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
    pub dead_letters: std::collections::VecDeque<DeadLetterItem>,
    /// Set by `otelraft restore`: where the restored log ends, and the
    /// restore's id. Markers the sink holds without that id were written by
    /// the lost cluster, whose indices past `upto` are not this cluster's;
    /// see `export::prometheus::marker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<SinkRestore>,
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
}

impl SinkState {
    /// Applies an advance only if it starts where the sink's cursor is (compare
    /// and set) and moves it forward. An advance proposed by a deposed leader,
    /// or a repeat of one already applied, therefore changes nothing; the
    /// series marks it carries were computed from exactly the state it replaces.
    pub fn apply_advance(&mut self, c: &crate::pb::log::CursorAdvance) {
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
        for mark in &c.series {
            sink.series.insert(
                mark.series,
                SeriesMarkState {
                    timestamp_ms: mark.timestamp_ms,
                    value_bits: mark.value_bits,
                },
            );
        }
        let horizon = sink.max_sample_ms.saturating_sub(SERIES_RETENTION_MS);
        sink.series.retain(|_, m| m.timestamp_ms >= horizon);
        for (reason, n) in &c.dead_letter_counts {
            let count = sink.dead_letter_counts.entry(reason.clone()).or_default();
            *count = count.saturating_add(*n);
        }
        for d in &c.dead_letters {
            sink.dead_letters.push_back(DeadLetterItem {
                index: d.index,
                reason: d.reason.clone(),
                subject: d.subject.clone(),
                timestamp_ms: d.timestamp_ms,
                value: d.value,
                detail: d.detail.clone(),
            });
        }
        while sink.dead_letters.len() > DEAD_LETTERS_KEPT {
            sink.dead_letters.pop_front();
        }
    }
}

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

/// One `Archived` command as applied: the log range `first_index..=last_index`
/// is stored in the archive under `key`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ArchivedBlock {
    /// First log index in the block.
    pub first_index: u64,
    /// Last log index in the block, inclusive.
    pub last_index: u64,
    /// Archive object key.
    pub key: String,
    /// The block's checksum, lower-case hex.
    pub checksum: String,
    /// Size of the block object.
    #[serde(default)]
    pub size: u64,
}

/// The one error type of the storage module.
///
/// Converted into `io::Error` where openraft's traits require it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (or another open handle in this process) holds the
    /// database file.
    #[error("database {} is in use by another process (is a node running on this data directory?)", path.display())]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The database file could not be opened or created.
    #[error("cannot open database {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// redb's reason.
        source: redb::Error,
    },
    /// A redb operation failed.
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    /// A stored log entry does not decode.
    #[error("log entry at index {index} is corrupt: {source}")]
    Corrupt {
        /// The table key of the broken entry.
        index: u64,
        /// Why it does not decode.
        source: CodecError,
    },
    /// An entry could not be encoded (a membership that does not
    /// serialise); nothing was written.
    #[error("log entry {index} does not encode: {source}")]
    Unencodable {
        /// Its index.
        index: u64,
        /// Why.
        source: CodecError,
    },
    /// A stored log entry decodes but its own index disagrees with its key.
    #[error("log entry stored at index {key} claims index {found}")]
    Misplaced {
        /// The table key.
        key: u64,
        /// The index inside the entry.
        found: u64,
    },
    /// A read found a gap inside the requested range: the log is not
    /// contiguous, which must never happen.
    #[error("log hole: expected index {expected}, found {found}")]
    Hole {
        /// The next index that should have followed.
        expected: u64,
        /// The index that was found instead.
        found: u64,
    },
    /// A stored JSON value (vote, log id, state, snapshot meta) does not
    /// decode, or a value could not be encoded.
    #[error("{what} is not valid JSON: {source}")]
    Json {
        /// Which value.
        what: &'static str,
        /// serde's reason.
        source: serde_json::Error,
    },
    /// A stored value has the wrong shape (e.g. a counter of the wrong width).
    #[error("stored {what} is malformed")]
    Malformed {
        /// Which value.
        what: &'static str,
    },
    /// A snapshot's metadata disagrees with its data.
    #[error("snapshot is inconsistent: {0}")]
    InconsistentSnapshot(String),
    /// The batch this operation was part of failed to commit, or an earlier
    /// batch did and the writer refuses further writes.
    #[error("storage write failed: {0}")]
    WriteFailed(String),
    /// The writer thread is gone (every handle is shutting down).
    #[error("storage writer has stopped")]
    WriterStopped,
    /// Filesystem error outside redb (creating the data directory, spawning
    /// the writer thread).
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    /// A blocking storage task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl StoreError {
    /// Whether retrying the same operation later may succeed.
    ///
    /// True only for conditions outside the store's own state: a database
    /// held by another process, and transient OS errors. Corruption, writer
    /// failure and shutdown are permanent for this process.
    pub fn retryable(&self) -> bool {
        fn transient(e: &io::Error) -> bool {
            matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            )
        }
        match self {
            StoreError::Locked { .. } => true,
            StoreError::Io(e) => transient(e),
            StoreError::Db(redb::Error::Io(e)) => transient(e),
            StoreError::Open {
                source: redb::Error::Io(e),
                ..
            } => transient(e),
            _ => false,
        }
    }

    pub(crate) fn json(what: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
        move |source| StoreError::Json { what, source }
    }
}

impl From<StoreError> for io::Error {
    fn from(e: StoreError) -> Self {
        let kind = match &e {
            StoreError::Corrupt { .. }
            | StoreError::Misplaced { .. }
            | StoreError::Hole { .. }
            | StoreError::Json { .. }
            | StoreError::Malformed { .. }
            | StoreError::InconsistentSnapshot(_) => io::ErrorKind::InvalidData,
            StoreError::Locked { .. } => io::ErrorKind::WouldBlock,
            StoreError::Io(inner) => inner.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Every redb error type funnels into [`StoreError::Db`].
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
