//! Table definitions, key names and value encodings of the database file,
//! and the read helpers shared by the writer, the readers and offline dump.
//!
//! `docs/storage-format.md` is the specification; keep the two in step.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use redb::{
    Database, DatabaseError, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition,
};
use serde::de::DeserializeOwned;

use super::{StoreError, DB_FILE_NAME};
use crate::metrics::Metrics;
use crate::raft::{codec, Entry, LogId, Vote};
use crate::state::SmState;

/// Log index -> `pb::log::LogEntry` protobuf bytes (see `raft::codec`).
/// Invariant: keys are contiguous and the entry stored at key `i` has index
/// `i`. Keys above the last purged index are Raft's log; keys at or below it
/// are committed entries retained for the consumers (sinks and archive)
/// until the trim point passes them.
pub(super) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");

/// Small named values; see the `meta_key` constants.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The one current snapshot; see the `snap_key` constants. Its keys are
/// always written together in one transaction.
pub(super) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

/// Keys of the `meta` table.
pub(super) mod meta_key {
    /// Vote JSON; written with an fsync before `save_vote` returns.
    pub const VOTE: &str = "vote";
    /// Committed log id JSON; written lazily (no fsync of its own).
    pub const COMMITTED: &str = "committed";
    /// Last purged log id JSON; written in the same transaction as the purge.
    pub const LAST_PURGED: &str = "last_purged";
    /// `SmState` JSON; written lazily, or durably with a snapshot.
    pub const SM_STATE: &str = "sm_state";
    /// Sum of the encoded sizes of all rows of `log`, u64 little-endian;
    /// updated in the same transaction as every change of `log`.
    pub const LOG_BYTES: &str = "log_bytes";
}

/// Keys of the `snapshot` table.
pub(super) mod snap_key {
    /// `SnapshotMeta` JSON.
    pub const META: &str = "meta";
    /// Snapshot data: `SmState` JSON.
    pub const DATA: &str = "data";
    /// Diagnostic id `<term>-<node>-<index>-<unix_ms>` (UTF-8); openraft 0.10
    /// identifies snapshots by their last log id and does not read it.
    pub const ID: &str = "id";
}

/// What `open` recovers from the meta table.
pub(super) struct Recovered {
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub sm: SmState,
    pub log_bytes: u64,
    pub last_purged: Option<LogId>,
}

/// An open database, its recovered state and its log figures.
pub(super) struct Opened {
    pub db: Database,
    pub state: Recovered,
    pub figures: LogFigures,
}

/// The log gauges, as of one transaction.
pub(super) struct LogFigures {
    pub entries: u64,
    pub bytes: u64,
    pub first_index: u64,
}

impl LogFigures {
    pub(super) fn publish(&self, metrics: &Metrics) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        metrics.log_entries.set(clamp(self.entries));
        metrics.log_bytes.set(clamp(self.bytes));
        metrics.log_first_index.set(clamp(self.first_index));
    }
}

/// Reads the log gauges; `bytes` is the caller's running `log_bytes` counter.
pub(super) fn log_figures(
    log: &impl ReadableTable<u64, &'static [u8]>,
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    bytes: u64,
) -> Result<LogFigures, StoreError> {
    let first_index = match log.first()? {
        Some((k, _)) => k.value(),
        None => {
            let purged: Option<LogId> =
                get_json(meta, meta_key::LAST_PURGED, "last purged log id")?;
            purged.map_or(0, |p| p.index.saturating_add(1))
        }
    };
    Ok(LogFigures {
        entries: log.len()?,
        bytes,
        first_index,
    })
}

pub(super) fn open_error(path: &Path, e: DatabaseError) -> StoreError {
    match e {
        DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
            path: path.to_path_buf(),
        },
        other => StoreError::Open {
            path: path.to_path_buf(),
            source: other.into(),
        },
    }
}

/// Opens or creates `<dir>/otelraft.redb`, makes sure every table exists and
/// reads the persisted meta values. Blocking.
pub(super) fn open_db(dir: &Path, cache_bytes: usize) -> Result<Opened, StoreError> {
    super::durable_dir::create(dir)?;
    let path: PathBuf = dir.join(DB_FILE_NAME);
    let new_file = !path.exists();
    let warned = std::sync::atomic::AtomicBool::new(false);
    let shown = path.display().to_string();
    let db = redb::Builder::new()
        .set_cache_size(cache_bytes)
        .set_repair_callback(move |_| {
            if !warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(path = %shown, "database was not closed cleanly; repairing it");
            }
        })
        .create(&path)
        .map_err(|e| open_error(&path, e))?;

    // Creating the tables up front means a read transaction never has to
    // treat a missing table as "empty". Their commit fsyncs a new file;
    // then the directory entry naming it is made durable, before anything
    // in the file is acknowledged.
    let txn = db.begin_write()?;
    {
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.open_table(SNAPSHOT)?;
    }
    txn.commit()?;
    if new_file {
        super::durable_dir::sync(dir)?;
    }

    let read = db.begin_read()?;
    let meta = read.open_table(META)?;
    let state = Recovered {
        vote: get_json(&meta, meta_key::VOTE, "vote")?,
        committed: get_json(&meta, meta_key::COMMITTED, "committed log id")?,
        sm: get_json(&meta, meta_key::SM_STATE, "state machine state")?.unwrap_or_default(),
        log_bytes: get_u64(&meta, meta_key::LOG_BYTES)?.unwrap_or(0),
        last_purged: get_json(&meta, meta_key::LAST_PURGED, "last purged log id")?,
    };
    let log = read.open_table(LOG)?;
    let figures = log_figures(&log, &meta, state.log_bytes)?;
    drop((log, meta, read));
    Ok(Opened { db, state, figures })
}

/// Reads and decodes a JSON value of a `&str`-keyed table.
pub(super) fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
    what: &'static str,
) -> Result<Option<T>, StoreError> {
    match table.get(key)? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(StoreError::json(what)),
    }
}

/// Reads a u64 little-endian value of a `&str`-keyed table.
pub(super) fn get_u64(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &'static str,
) -> Result<Option<u64>, StoreError> {
    match table.get(key)? {
        None => Ok(None),
        Some(v) => {
            let arr: [u8; 8] = v
                .value()
                .try_into()
                .map_err(|_| StoreError::Malformed { what: key })?;
            Ok(Some(u64::from_le_bytes(arr)))
        }
    }
}

/// Decodes the row stored at `key`, checking that the entry agrees with it.
pub(super) fn decode_entry(key: u64, value: &[u8]) -> Result<Entry, StoreError> {
    // One copy out of the page cache into an owned buffer; the decoded
    // payload then shares that buffer.
    let entry = codec::decode(Bytes::copy_from_slice(value))
        .map_err(|source| StoreError::Corrupt { index: key, source })?;
    if entry.log_id.index != key {
        return Err(StoreError::Misplaced {
            key,
            found: entry.log_id.index,
        });
    }
    Ok(entry)
}

/// Normalises any range of indices to `[start, end)`, `end == None` meaning
/// unbounded. Returns `None` for an empty range.
pub(super) fn half_open(range: &impl RangeBounds<u64>) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    match end {
        Some(e) if e <= start => None,
        _ => Some((start, end)),
    }
}

/// Reads and decodes the rows of `log` in `[start, end)`.
pub(super) fn read_log(
    table: &impl ReadableTable<u64, &'static [u8]>,
    start: u64,
    end: Option<u64>,
) -> Result<BTreeMap<u64, Entry>, StoreError> {
    let iter = match end {
        Some(end) => table.range(start..end)?,
        None => table.range(start..)?,
    };
    let mut out = BTreeMap::new();
    for row in iter {
        let (k, v) = row?;
        let key = k.value();
        out.insert(key, decode_entry(key, v.value())?);
    }
    Ok(out)
}

/// The log id of the last row of `log`, if any.
pub(super) fn last_log_id(
    table: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<Option<LogId>, StoreError> {
    match table.last()? {
        None => Ok(None),
        Some((k, v)) => Ok(Some(decode_entry(k.value(), v.value())?.log_id)),
    }
}

/// Checks that `entries` (ascending by key) are contiguous.
pub(super) fn check_contiguous(entries: &BTreeMap<u64, Entry>) -> Result<(), StoreError> {
    let mut expected: Option<u64> = None;
    for &index in entries.keys() {
        if let Some(expected) = expected {
            if index != expected {
                return Err(StoreError::Hole {
                    expected,
                    found: index,
                });
            }
        }
        expected = index.checked_add(1);
    }
    Ok(())
}

/// See [`super::dump_offline`].
pub(super) fn dump_offline(path: &Path) -> Result<Vec<Entry>, StoreError> {
    if !path.exists() {
        let e = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        return Err(StoreError::Open {
            path: path.to_path_buf(),
            source: redb::Error::Io(e),
        });
    }
    match ReadOnlyDatabase::open(path) {
        Ok(db) => dump_all(&db),
        Err(DatabaseError::RepairAborted) => {
            tracing::info!(path = %path.display(), "database was not shut down cleanly; repairing before reading");
            let db = Database::open(path).map_err(|e| open_error(path, e))?;
            dump_all(&db)
        }
        Err(e) => Err(open_error(path, e)),
    }
}

fn dump_all(db: &impl ReadableDatabase) -> Result<Vec<Entry>, StoreError> {
    let read = db.begin_read()?;
    let table = match read.open_table(LOG) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let entries = read_log(&table, 0, None)?;
    check_contiguous(&entries)?;
    Ok(entries.into_values().collect())
}
