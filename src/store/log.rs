//! The Raft log and vote: openraft's `RaftLogStorage` and `RaftLogReader`.
//!
//! Writes go to the writer thread; reads run on the blocking pool against an
//! MVCC read transaction merged with the overlay of not-yet-durable entries.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use futures::stream::{self, Stream, StreamExt};
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use redb::{Database, ReadTransaction, ReadableDatabase};

use super::tables::{self, meta_key, LOG, META};
use super::writer::{self, Op, Overlay, WriterHandle};
use super::StoreError;
use crate::raft::{codec, Entry, LogId, TypeConfig, Vote};

/// `limited_get_log_entries` returns at most this many entries ...
const LIMITED_MAX_ENTRIES: u64 = 256;
/// ... and stops after the first stored entry that brings the total encoded
/// size past this (replication batches stay bounded with large payloads;
/// a term of the node's memory bound).
const LIMITED_MAX_BYTES: usize = crate::config::memory::REPLICATION_READ_BYTES;

/// Handle to the node's Raft log and vote. Clones share everything, so a
/// clone serves as openraft's log reader and sees every append at once.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    overlay: Overlay,
    writer: WriterHandle,
    /// The last vote made durable; updated only after its commit.
    vote: RwLock<Option<Vote>>,
    /// The last committed log id handed to `save_committed` (persisted lazily).
    committed: Mutex<Option<LogId>>,
    /// The first index of Raft's log: everything below it is purged and,
    /// where still on disk, retained for consumers only. openraft's reads
    /// start here; it must never see a purged entry.
    raft_first: std::sync::atomic::AtomicU64,
}

impl LogStore {
    pub(super) fn new(
        db: Arc<Database>,
        overlay: Overlay,
        writer: WriterHandle,
        vote: Option<Vote>,
        committed: Option<LogId>,
        last_purged: Option<LogId>,
    ) -> Self {
        LogStore {
            inner: Arc::new(Inner {
                db,
                overlay,
                writer,
                vote: RwLock::new(vote),
                committed: Mutex::new(committed),
                raft_first: std::sync::atomic::AtomicU64::new(
                    last_purged.map_or(0, |l| l.index + 1),
                ),
            }),
        }
    }

    /// Puts `entries` in the overlay only, as if appended and not yet
    /// committed by the writer.
    #[cfg(test)]
    pub(super) fn hold_in_overlay(&self, entries: Vec<Entry>) {
        let mut overlay = writer::lock(&self.inner.overlay);
        overlay.extend(entries.into_iter().map(|e| (e.log_id.index, e)));
    }

    /// Becomes `Some(clean)` once every store handle is dropped and the
    /// writer has stopped (see `WriterHandle::closed`).
    pub fn closed(&self) -> tokio::sync::watch::Receiver<Option<bool>> {
        self.inner.writer.closed()
    }

    /// Reads the entries in `start..end_exclusive` that the log holds (purged
    /// ones are simply absent), for inspection and export while the node runs.
    pub async fn read_range(
        &self,
        start: u64,
        end_exclusive: u64,
    ) -> Result<Vec<Entry>, StoreError> {
        self.read(start..end_exclusive, None).await
    }

    /// Entries from `start` up to `end_exclusive`, stopping after the entry
    /// that brings the encoded size to `max_bytes` (at least one entry).
    /// For exporters and the archiver, which must bound their memory.
    ///
    /// Fails with [`StoreError::Hole`] if `start` was trimmed away while
    /// later entries exist: a consumer must never skip data silently.
    pub async fn read_batch(
        &self,
        start: u64,
        end_exclusive: u64,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.read(start..end_exclusive, Some(Limit { max_bytes }))
            .await
    }

    async fn read(
        &self,
        range: impl RangeBounds<u64>,
        limit: Option<Limit>,
    ) -> Result<Vec<Entry>, StoreError> {
        let Some((start, end)) = tables::half_open(&range) else {
            return Ok(Vec::new());
        };
        self.read_from(start, end, limit).await
    }

    /// openraft's reads: the same, but never below Raft's first index.
    async fn read_raft(
        &self,
        range: impl RangeBounds<u64>,
        limit: Option<Limit>,
    ) -> Result<Vec<Entry>, StoreError> {
        let Some((start, end)) = tables::half_open(&range) else {
            return Ok(Vec::new());
        };
        let first = self
            .inner
            .raft_first
            .load(std::sync::atomic::Ordering::SeqCst);
        let start = start.max(first);
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        self.read_from(start, end, limit).await
    }

    async fn read_from(
        &self,
        start: u64,
        end: Option<u64>,
        limit: Option<Limit>,
    ) -> Result<Vec<Entry>, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.read_blocking(start, end, limit)).await?
    }

    /// The highest applied index this node can no longer lose (see
    /// `WriterHandle::durable_applied`). A witness trims its log only behind
    /// every data voter's figure.
    pub fn durable_applied(&self) -> Option<u64> {
        self.inner.writer.durable_applied()
    }

    /// Tells the writer that every consumer is done with the entries below
    /// `below`; their rows are deleted once Raft has purged them as well.
    pub async fn trim(&self, below: u64) -> Result<(), StoreError> {
        self.inner.writer.send(Op::Trim { below }).await
    }

    /// The stored bytes of the rows in `start..=upto` that the node holds,
    /// oldest first, contiguous, stopping after the row that brings the
    /// total to `max_bytes`: what a snapshot ending at `upto` carries (from
    /// 0) and what an archive block holds.
    pub async fn raw_rows(
        &self,
        start: u64,
        upto: u64,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let end = upto.saturating_add(1);
            let (txn, pending) = inner.snapshot(start, Some(end))?;
            let table = txn.open_table(LOG)?;
            let mut rows = BTreeMap::new();
            let mut total = 0usize;
            let mut cut = None;
            for row in table.range(start..end)? {
                let (k, v) = row?;
                total += v.value().len();
                rows.insert(k.value(), Bytes::copy_from_slice(v.value()));
                if total >= max_bytes {
                    cut = Some(k.value());
                    break;
                }
            }
            for entry in pending {
                // Past a byte cut only the rows already read may be
                // replaced by newer overlay entries; otherwise overlay
                // entries extend the run until the budget is reached.
                match cut {
                    Some(c) if entry.log_id.index > c => break,
                    None if total >= max_bytes => break,
                    _ => {}
                }
                let bytes = Bytes::from(codec::encode(&entry).map_err(|source| {
                    StoreError::Unencodable {
                        index: entry.log_id.index,
                        source,
                    }
                })?);
                total += bytes.len();
                rows.insert(entry.log_id.index, bytes);
            }
            let mut expected = None;
            for &index in rows.keys() {
                if expected.is_some_and(|e| e != index) {
                    return Err(StoreError::Hole {
                        expected: expected.unwrap_or(index),
                        found: index,
                    });
                }
                expected = index.checked_add(1);
            }
            Ok(rows.into_iter().collect())
        })
        .await?
    }

    /// Only for tests: whether the redb table itself (not the overlay) holds
    /// `index`, i.e. whether an entry is durable.
    #[cfg(test)]
    pub(super) fn durable_contains(&self, index: u64) -> Result<bool, StoreError> {
        let read = self.inner.db.begin_read()?;
        let table = read.open_table(LOG)?;
        let found = redb::ReadableTable::get(&table, index)?.is_some();
        Ok(found)
    }

    /// Only for tests: the shared database, to plant corrupt rows.
    #[cfg(test)]
    pub(super) fn db(&self) -> Arc<Database> {
        self.inner.db.clone()
    }
}

#[derive(Clone, Copy)]
struct Limit {
    max_bytes: usize,
}

impl Inner {
    /// Opens a read transaction and copies the overlay's part of
    /// `[start, end)`, both under the overlay lock.
    ///
    /// Why under the lock: the writer commits a batch and only then, holding
    /// the same lock, drops the entries it made durable from the overlay.
    /// Holding the lock while taking the redb snapshot means the snapshot is
    /// either from before that commit (and the overlay still has the
    /// entries) or from after it (and the table has them). Without the lock a
    /// reader could open its snapshot before the commit and look at the
    /// overlay after the removal, missing entries that `append` had already
    /// made visible. Rows are read after releasing the lock: the snapshot is
    /// immutable, so appends need not wait for the read.
    fn snapshot(
        &self,
        start: u64,
        end: Option<u64>,
    ) -> Result<(ReadTransaction, Vec<Entry>), StoreError> {
        let overlay = writer::lock(&self.overlay);
        let txn = self.db.begin_read()?;
        let pending = match end {
            Some(end) => overlay.range(start..end).map(|(_, e)| e.clone()).collect(),
            None => overlay.range(start..).map(|(_, e)| e.clone()).collect(),
        };
        Ok((txn, pending))
    }

    fn read_blocking(
        &self,
        start: u64,
        end: Option<u64>,
        limit: Option<Limit>,
    ) -> Result<Vec<Entry>, StoreError> {
        let end = match limit {
            Some(_) => Some(
                end.unwrap_or(u64::MAX)
                    .min(start.saturating_add(LIMITED_MAX_ENTRIES)),
            ),
            None => end,
        };
        let (txn, pending) = self.snapshot(start, end)?;
        let table = txn.open_table(LOG)?;
        let rows = match limit {
            None => {
                let mut rows = tables::read_log(&table, start, end)?;
                // The overlay is newer than the table for the same index.
                rows.extend(pending.into_iter().map(|e| (e.log_id.index, e)));
                rows
            }
            Some(limit) => {
                let iter = match end {
                    Some(end) => table.range(start..end)?,
                    None => table.range(start..)?,
                };
                budgeted(iter, pending, limit.max_bytes)?
            }
        };
        tables::check_contiguous(&rows)?;
        if limit.is_some() {
            // A consumer reading from a trimmed `start` must hear of it,
            // whether the next retained row is inside its window or past it
            // (a window of 256 entries that all were trimmed).
            let first = match rows.keys().next() {
                Some(&first) => Some(first),
                None => self.first_at_or_after(&table, start)?,
            };
            if let Some(found) = first.filter(|&first| first != start) {
                return Err(StoreError::Hole {
                    expected: start,
                    found,
                });
            }
        }
        Ok(rows.into_values().collect())
    }

    /// The first index at or after `start` held in `table` or the overlay.
    fn first_at_or_after(
        &self,
        table: &redb::ReadOnlyTable<u64, &'static [u8]>,
        start: u64,
    ) -> Result<Option<u64>, StoreError> {
        if let Some(row) = table.range(start..)?.next() {
            return Ok(Some(row?.0.value()));
        }
        let overlay = writer::lock(&self.overlay);
        Ok(overlay.range(start..).next().map(|(&index, _)| index))
    }

    fn read_vote(&self) -> Option<Vote> {
        *self.vote.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn log_state_blocking(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let (txn, overlay_last) = {
            let overlay = writer::lock(&self.overlay);
            let txn = self.db.begin_read()?;
            (txn, overlay.last_key_value().map(|(_, e)| e.log_id))
        };
        let meta = txn.open_table(META)?;
        let log = txn.open_table(LOG)?;
        let last_purged: Option<LogId> =
            tables::get_json(&meta, meta_key::LAST_PURGED, "last purged log id")?;
        let table_last = tables::last_log_id(&log)?;
        // The overlay wins a tie: it holds the newer entry for an index.
        let last = match (overlay_last, table_last) {
            (Some(o), Some(t)) => Some(if t.index > o.index { t } else { o }),
            (o, t) => o.or(t),
        };
        // Rows at or below the purge point are retained data, not log: with
        // nothing above it, the log ends at the purge point.
        let last = match (last, last_purged) {
            (Some(l), Some(p)) if l.index <= p.index => Some(p),
            (l, p) => l.or(p),
        };
        Ok(LogState {
            last_log_id: last,
            last_purged_log_id: last_purged,
        })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self.read_raft(range, None).await?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.inner.read_vote())
    }

    /// What openraft applies, read a replication message's worth at a time
    /// (`limited_get_log_entries`) as the stream is consumed, so a large
    /// committed range is never held whole (openraft's default reads it all
    /// at once). A hole or a read error ends it with one `Err`, as a whole
    /// read fails; an empty read (past the last entry) ends it.
    async fn entries_stream<RB>(
        &mut self,
        range: RB,
    ) -> impl Stream<Item = Result<Entry, io::Error>> + OptionalSend
    where
        RB: RangeBounds<u64> + Clone + Debug + OptionalSend,
    {
        let bounds = tables::half_open(&range);
        let reader = self.clone();
        stream::unfold(bounds, move |bounds| {
            let reader = reader.clone();
            async move {
                let (next, end) = bounds?;
                let limit = Some(Limit {
                    max_bytes: LIMITED_MAX_BYTES,
                });
                match reader.read_raft(next..end.unwrap_or(u64::MAX), limit).await {
                    Err(e) => Some((vec![Err(io::Error::from(e))], None)),
                    Ok(entries) => {
                        let last = entries.last()?.log_id.index;
                        let rest = last
                            .checked_add(1)
                            .filter(|n| end.is_none_or(|e| *n < e))
                            .map(|n| (n, end));
                        Some((entries.into_iter().map(Ok).collect(), rest))
                    }
                }
            }
        })
        .flat_map(stream::iter)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self
            .read_raft(
                start..end,
                Some(Limit {
                    max_bytes: LIMITED_MAX_BYTES,
                }),
            )
            .await?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let inner = self.inner.clone();
        let state = tokio::task::spawn_blocking(move || inner.log_state_blocking())
            .await
            .map_err(StoreError::from)??;
        Ok(state)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let json = serde_json::to_vec(vote).map_err(StoreError::json("vote"))?;
        self.inner
            .writer
            .call(|reply| Op::SaveVote { json, reply })
            .await?;
        // Published only once durable: a reader never sees a vote that a
        // crash could take back.
        *self
            .inner
            .vote
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let json = serde_json::to_vec(&committed).map_err(StoreError::json("committed log id"))?;
        *self
            .inner
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = committed;
        // Lazy: durable with the next fsync. Losing it in a crash only means
        // re-applying from an older committed id, which openraft tolerates.
        self.inner.writer.send(Op::SaveCommitted { json }).await?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(*self
            .inner
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded: Vec<(LogId, Vec<u8>)> = entries
            .iter()
            .map(|e| codec::encode(e).map(|bytes| (e.log_id, bytes)))
            .collect::<Result<_, _>>()?;
        {
            // Visible to readers from here on, before the fsync.
            let mut overlay = writer::lock(&self.inner.overlay);
            for e in entries {
                overlay.insert(e.log_id.index, e);
            }
        }
        // Queued behind every earlier operation; the writer fires `callback`
        // after the commit that contains these entries.
        self.inner
            .writer
            .send(Op::Append {
                entries: encoded,
                callback,
            })
            .await?;
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        {
            // Entries above the cut stop being visible now; the table rows go
            // with the commit below. Until then a reader may still see old
            // durable rows above the cut, which is the pre-truncate log.
            let mut overlay = writer::lock(&self.inner.overlay);
            match &last_log_id {
                Some(l) => drop(overlay.split_off(&l.index.saturating_add(1))),
                None => overlay.clear(),
            }
        }
        // Awaited: a later append at the same indices must not be queued
        // before this truncation is durable (see writer::release_overlay).
        self.inner
            .writer
            .call(|reply| Op::TruncateAfter {
                last: last_log_id,
                reply,
            })
            .await?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let json = serde_json::to_vec(&log_id).map_err(StoreError::json("last purged log id"))?;
        // openraft treats the entries as gone from the moment it asks.
        self.inner
            .raft_first
            .fetch_max(log_id.index + 1, std::sync::atomic::Ordering::SeqCst);
        self.inner
            .writer
            .call(|reply| Op::Purge {
                log_id,
                json,
                reply,
            })
            .await?;
        Ok(())
    }
}

/// The entries of `table_rows` merged with the newer `overlay` (both in
/// index order), up to and including the first that brings their encoded
/// size to `max_bytes`. Each entry counts its encoded size wherever it is
/// held, table or overlay, so the batch that starts at an index ends at the
/// same index on every member that holds the same entries, however many of
/// them have reached the table yet.
fn budgeted(
    table_rows: redb::Range<'_, u64, &'static [u8]>,
    overlay: Vec<Entry>,
    max_bytes: usize,
) -> Result<BTreeMap<u64, Entry>, StoreError> {
    let mut rows = BTreeMap::new();
    let mut bytes = 0usize;
    let mut overlay = overlay.into_iter().peekable();
    let mut take = |rows: &mut BTreeMap<u64, Entry>, entry: Entry, size: usize| {
        rows.insert(entry.log_id.index, entry);
        bytes = bytes.saturating_add(size);
        bytes >= max_bytes
    };
    for row in table_rows {
        let (k, v) = row?;
        let key = k.value();
        while let Some(entry) = overlay.next_if(|e| e.log_id.index < key) {
            let size = size_of(&entry)?;
            if take(&mut rows, entry, size) {
                return Ok(rows);
            }
        }
        let full = match overlay.next_if(|e| e.log_id.index == key) {
            Some(newer) => {
                let size = size_of(&newer)?;
                take(&mut rows, newer, size)
            }
            None => take(
                &mut rows,
                tables::decode_entry(key, v.value())?,
                v.value().len(),
            ),
        };
        if full {
            return Ok(rows);
        }
    }
    for entry in overlay {
        let size = size_of(&entry)?;
        if take(&mut rows, entry, size) {
            break;
        }
    }
    Ok(rows)
}

/// An overlay entry's size as its table row will be.
fn size_of(entry: &Entry) -> Result<usize, StoreError> {
    codec::encoded_len(entry).map_err(|source| StoreError::Unencodable {
        index: entry.log_id.index,
        source,
    })
}
