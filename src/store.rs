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
pub mod durable_dir;
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

use crate::metrics::Metrics;
use crate::raft::codec::CodecError;
use crate::raft::Entry;

pub use self::log::LogStore;
pub use self::state_machine::{SnapshotBuilder, StateMachineStore};

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
