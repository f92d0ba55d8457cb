//! The single writer thread: every redb write transaction of the node runs
//! here, one batch at a time (group commit).
//!
//! Invariants:
//! - Operations are applied in the order they were sent; the channel is the
//!   only way in and this thread its only consumer.
//! - A batch is one write transaction. It is committed with
//!   `Durability::Immediate` (one fsync) if it holds any durable operation,
//!   otherwise with `Durability::None`; redb makes a `None` commit durable
//!   together with the next `Immediate` one and never reorders commits, so a
//!   crash leaves a prefix of the committed batches.
//! - Callbacks and replies of a batch fire only after its commit returned and
//!   after the overlay no longer needs to hold the entries it made durable.
//! - After a failed commit the writer refuses every later operation: the
//!   on-disk state is still a valid prefix, but the caller's view (overlay,
//!   openraft's in-memory log) has diverged from it and only a restart can
//!   reconcile them.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use openraft::storage::IOFlushed;
use redb::{Database, Durability, Table};
use tokio::sync::{mpsc, oneshot, watch};

use super::tables::{self, meta_key, snap_key, LOG, META, SNAPSHOT};
use super::StoreError;
use crate::metrics::Metrics;
use crate::raft::{Entry, LogId, TypeConfig};

/// Appended entries that may not be durable yet, by index. Shared by the log
/// handles (insert, truncate) and the writer (remove once durable).
pub(super) type Overlay = Arc<Mutex<BTreeMap<u64, Entry>>>;

/// Locks the overlay. Every critical section leaves the map consistent
/// (single insert/remove/split calls), so a poisoned lock is still usable.
pub(super) fn lock(overlay: &Overlay) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
    overlay.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Operations waiting in the queue at most; senders wait when it is full.
const QUEUE_DEPTH: usize = 4096;
/// A batch stops draining after this many operations ...
const MAX_BATCH_OPS: usize = 4096;
/// ... or after this many bytes of appended entries, to bound the size of a
/// single transaction.
const MAX_BATCH_BYTES: usize = 64 << 20;

/// Where a durable operation's outcome goes.
pub(super) type Reply = oneshot::Sender<Result<(), StoreError>>;

/// State-machine state to persist.
pub(super) struct SmPersist {
    /// `SmState` JSON.
    pub json: Bytes,
    /// `last_applied` of that state; older states than the one already
    /// persisted are skipped (a snapshot built concurrently with `apply` may
    /// arrive after a newer lazy persist).
    pub applied: Option<LogId>,
    /// Write even if older (installing a snapshot replaces the state).
    pub replace: bool,
}

/// One unit of work for the writer.
pub(super) enum Op {
    /// Insert encoded entries; durable.
    Append {
        /// Log id and encoded `LogEntry` of each entry.
        entries: Vec<(LogId, Vec<u8>)>,
        callback: IOFlushed<TypeConfig>,
    },
    /// Store the vote (JSON); durable.
    SaveVote { json: Vec<u8>, reply: Reply },
    /// Store the committed log id (JSON); lazy, only the newest in a batch is written.
    SaveCommitted { json: Vec<u8> },
    /// Delete every entry after `last` (all if `None`); durable.
    TruncateAfter { last: Option<LogId>, reply: Reply },
    /// Record `log_id` as last purged (`json`): the entries up to it leave
    /// Raft's log. Their rows are deleted only up to the trim point; the
    /// rest stay readable for the exporters and the archiver. Durable.
    Purge {
        log_id: LogId,
        json: Vec<u8>,
        reply: Reply,
    },
    /// Raise the trim point: every consumer is done with the entries below
    /// `below`, so their rows may go once Raft has purged them too. Lazy: a
    /// trim lost in a crash is simply done again.
    Trim { below: u64 },
    /// Store the state-machine state; lazy, only the newest in a batch is written.
    PersistSm(SmPersist),
    /// Replace the snapshot and store the state-machine state with it; durable.
    /// When installing a received snapshot, `carried` replaces every row at
    /// or below the snapshot's last index: the committed entries the state
    /// still needs (not yet consumed), sent along with it.
    SaveSnapshot {
        meta_json: Vec<u8>,
        data: Bytes,
        id: String,
        sm: SmPersist,
        carried: Option<Vec<(u64, Bytes)>>,
        reply: Reply,
    },
}

impl Op {
    fn is_durable(&self) -> bool {
        !matches!(
            self,
            Op::SaveCommitted { .. } | Op::PersistSm(_) | Op::Trim { .. }
        )
    }

    fn append_bytes(&self) -> usize {
        match self {
            Op::Append { entries, .. } => entries.iter().map(|(_, b)| b.len()).sum(),
            _ => 0,
        }
    }

    /// Reports the batch outcome to whoever waits for this operation.
    fn complete(self, outcome: &Result<(), String>) {
        let result = || outcome.clone().map_err(StoreError::WriteFailed);
        match self {
            Op::Append { callback, .. } => callback.io_completed(result().map_err(Into::into)),
            Op::SaveVote { reply, .. }
            | Op::TruncateAfter { reply, .. }
            | Op::Purge { reply, .. }
            | Op::SaveSnapshot { reply, .. } => {
                // The waiter may have gone away (shutdown); nothing to tell then.
                let _ = reply.send(result());
            }
            Op::SaveCommitted { .. } | Op::PersistSm(_) | Op::Trim { .. } => {}
        }
    }
}

/// The sending side, cloned into every store handle.
#[derive(Clone)]
pub(super) struct WriterHandle {
    tx: mpsc::Sender<Op>,
    durable_applied: Arc<AtomicU64>,
    closed: watch::Receiver<Option<bool>>,
}

/// `durable_applied` encoding: index + 1, so 0 means "nothing applied".
fn encode_applied(applied: Option<LogId>) -> u64 {
    applied.map_or(0, |l| l.index.saturating_add(1))
}

impl WriterHandle {
    /// The highest index whose applied state is on disk, made durable by an
    /// fsync. Every entry up to it is committed and its row was written in
    /// that or an earlier transaction (appends are queued before applies),
    /// so this node cannot lose them. `None` before the first apply.
    pub fn durable_applied(&self) -> Option<u64> {
        self.durable_applied.load(Ordering::Acquire).checked_sub(1)
    }

    /// Becomes `Some(clean)` once the writer has stopped; `clean` says the
    /// database file was closed with it (nothing else still held it), so the
    /// next open needs no repair. Holding the receiver keeps nothing open.
    pub fn closed(&self) -> watch::Receiver<Option<bool>> {
        self.closed.clone()
    }

    /// Queues an operation without waiting for its outcome.
    pub async fn send(&self, op: Op) -> Result<(), StoreError> {
        self.tx
            .send(op)
            .await
            .map_err(|_| StoreError::WriterStopped)
    }

    /// Queues an operation and waits until the batch holding it committed.
    pub async fn call(&self, make: impl FnOnce(Reply) -> Op) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply)).await?;
        rx.await.map_err(|_| StoreError::WriterStopped)?
    }
}

/// What the writer needs at start.
pub(super) struct WriterInit {
    pub db: Arc<Database>,
    pub overlay: Overlay,
    pub metrics: Arc<Metrics>,
    /// `last_applied` of the persisted state-machine state.
    pub persisted_applied: Option<LogId>,
    /// The persisted `log_bytes` counter.
    pub log_bytes: u64,
    /// First index of Raft's log: the last purged index + 1, 0 if none.
    pub raft_first: u64,
}

/// Starts the writer thread. It exits when every [`WriterHandle`] is dropped
/// and the queue is empty, releasing its reference to the database.
pub(super) fn spawn(init: WriterInit) -> Result<WriterHandle, StoreError> {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let durable_applied = Arc::new(AtomicU64::new(encode_applied(init.persisted_applied)));
    let (closed_tx, closed) = watch::channel(None);
    let writer = Writer {
        closed: closed_tx,
        durable_applied: durable_applied.clone(),
        db: init.db,
        overlay: init.overlay,
        metrics: init.metrics,
        persisted_applied: init.persisted_applied,
        log_bytes: init.log_bytes,
        raft_first: init.raft_first,
        trim_below: 0,
        failed: None,
    };
    std::thread::Builder::new()
        .name("otelraft-store-writer".into())
        .spawn(move || writer.run(rx))?;
    Ok(WriterHandle {
        tx,
        durable_applied,
        closed,
    })
}

struct Writer {
    /// Told when the writer stops; see `WriterHandle::closed`.
    closed: watch::Sender<Option<bool>>,
    /// Published after each durable commit; see `WriterHandle::durable_applied`.
    durable_applied: Arc<AtomicU64>,
    db: Arc<Database>,
    overlay: Overlay,
    metrics: Arc<Metrics>,
    persisted_applied: Option<LogId>,
    log_bytes: u64,
    /// First index of Raft's log. Rows below it are no longer Raft's log,
    /// only retained data.
    raft_first: u64,
    /// The consumers' trim point: the lowest index some consumer still
    /// needs. Invariant: a row is deleted only when its index is below both
    /// this and `raft_first`. Both are exclusive bounds, so index 0 (Raft's
    /// first entry) is never mistaken for "nothing".
    trim_below: u64,
    /// Set by the first failed commit; every later operation fails with it.
    failed: Option<String>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = first.append_bytes();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH_OPS && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(op) => {
                        bytes += op.append_bytes();
                        batch.push(op);
                    }
                    Err(_) => break,
                }
            }

            let outcome = match &self.failed {
                Some(reason) => Err(format!("refused after an earlier failed commit: {reason}")),
                None => match self.commit(&batch) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        tracing::error!(error = %e, ops = batch.len(), "storage commit failed; refusing further writes");
                        self.failed = Some(e.to_string());
                        Err(e.to_string())
                    }
                },
            };
            for op in batch {
                op.complete(&outcome);
            }
        }
        // Every handle is gone, so nothing can be queued any more. Dropping
        // the last reference closes the database: redb makes any pending
        // non-durable commit (the commit index, the state machine) durable
        // and marks the file clean, so the next start needs no repair.
        let Writer { db, closed, .. } = self;
        let last_holder = Arc::strong_count(&db) == 1;
        drop(db);
        if !last_holder {
            tracing::warn!("storage writer stopped while the database is still open elsewhere");
        }
        let _ = closed.send(Some(last_holder));
        tracing::debug!("storage writer stopped: every handle dropped");
    }

    /// Applies `batch` in order in one transaction, commits it, then releases
    /// the overlay entries it made durable.
    fn commit(&mut self, batch: &[Op]) -> Result<(), StoreError> {
        let durable = batch.iter().any(Op::is_durable);
        // Lazy operations overwrite a single key: only the newest counts.
        let newest_committed = batch
            .iter()
            .rposition(|op| matches!(op, Op::SaveCommitted { .. }));
        let newest_sm = batch.iter().rposition(|op| matches!(op, Op::PersistSm(_)));

        let mut log_bytes = self.log_bytes;
        let mut raft_first = self.raft_first;
        let mut trim_below = self.trim_below;
        let mut persisted_applied = self.persisted_applied;
        let mut appended = 0u64;

        let mut txn = self.db.begin_write()?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        let figures = {
            let mut log = txn.open_table(LOG)?;
            let mut meta = txn.open_table(META)?;
            let mut snap = txn.open_table(SNAPSHOT)?;
            let mut log_changed = false;
            for (i, op) in batch.iter().enumerate() {
                match op {
                    Op::Append { entries, .. } => {
                        for (log_id, bytes) in entries {
                            // Normally a fresh index; an overwrite (same index
                            // re-appended) must not double-count bytes.
                            if let Some(old) = log.insert(log_id.index, bytes.as_slice())? {
                                log_bytes = log_bytes.saturating_sub(old.value().len() as u64);
                            }
                            log_bytes += bytes.len() as u64;
                            appended += 1;
                        }
                        log_changed = true;
                    }
                    Op::SaveVote { json, .. } => {
                        meta.insert(meta_key::VOTE, json.as_slice())?;
                    }
                    Op::SaveCommitted { json } => {
                        if Some(i) == newest_committed {
                            meta.insert(meta_key::COMMITTED, json.as_slice())?;
                        }
                    }
                    Op::TruncateAfter { last, .. } => {
                        let from = last.as_ref().map_or(0, |l| l.index.saturating_add(1));
                        let removed =
                            remove_range(&mut log, (Bound::Included(from), Bound::Unbounded))?;
                        log_bytes = log_bytes.saturating_sub(removed);
                        log_changed = true;
                    }
                    Op::Purge { log_id, json, .. } => {
                        raft_first = raft_first.max(log_id.index.saturating_add(1));
                        let removed = remove_range(
                            &mut log,
                            (
                                Bound::Unbounded,
                                Bound::Excluded(raft_first.min(trim_below)),
                            ),
                        )?;
                        log_bytes = log_bytes.saturating_sub(removed);
                        meta.insert(meta_key::LAST_PURGED, json.as_slice())?;
                        log_changed = true;
                    }
                    Op::Trim { below } => {
                        trim_below = trim_below.max(*below);
                        let removed = remove_range(
                            &mut log,
                            (
                                Bound::Unbounded,
                                Bound::Excluded(raft_first.min(trim_below)),
                            ),
                        )?;
                        if removed > 0 {
                            log_bytes = log_bytes.saturating_sub(removed);
                            log_changed = true;
                        }
                    }
                    Op::PersistSm(p) => {
                        if Some(i) == newest_sm {
                            persist_sm(&mut meta, p, &mut persisted_applied)?;
                        }
                    }
                    Op::SaveSnapshot {
                        meta_json,
                        data,
                        id,
                        sm,
                        carried,
                        ..
                    } => {
                        if let (Some(carried), Some(last)) = (carried, sm.applied) {
                            let removed = remove_range(
                                &mut log,
                                (Bound::Unbounded, Bound::Included(last.index)),
                            )?;
                            log_bytes = log_bytes.saturating_sub(removed);
                            for (index, bytes) in carried {
                                if *index <= last.index {
                                    log.insert(*index, bytes.as_ref())?;
                                    log_bytes += bytes.len() as u64;
                                }
                            }
                            // Raft's log now starts after the snapshot, as
                            // openraft is about to record with its purge; a
                            // crash before that purge must not leave a
                            // last_purged below the carried rows.
                            let first = last.index.saturating_add(1);
                            if first > raft_first {
                                raft_first = first;
                                let json = serde_json::to_vec(&last)
                                    .map_err(StoreError::json("last purged log id"))?;
                                meta.insert(meta_key::LAST_PURGED, json.as_slice())?;
                            }
                            log_changed = true;
                        }
                        // openraft builds snapshots on a separate task, so a
                        // build can finish after a newer snapshot was
                        // installed; it must never replace the newer one
                        // (the log behind that one may already be purged).
                        if sm.replace || sm.applied >= stored_snapshot_last(&snap)? {
                            snap.insert(snap_key::META, meta_json.as_slice())?;
                            snap.insert(snap_key::DATA, data.as_ref())?;
                            snap.insert(snap_key::ID, id.as_bytes())?;
                        }
                        persist_sm(&mut meta, sm, &mut persisted_applied)?;
                    }
                }
            }
            if log_changed {
                meta.insert(meta_key::LOG_BYTES, log_bytes.to_le_bytes().as_slice())?;
                Some(tables::log_figures(&log, &meta, log_bytes)?)
            } else {
                None
            }
        };

        let started = Instant::now();
        txn.commit()?;
        if durable {
            self.metrics
                .storage_fsync_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.storage_fsyncs.inc();
            if appended > 0 {
                self.metrics.storage_batch_entries.observe(appended as f64);
            }
        }
        self.log_bytes = log_bytes;
        self.raft_first = raft_first;
        self.trim_below = trim_below;
        self.persisted_applied = persisted_applied;
        // A durable commit also makes every earlier lazy commit durable.
        if durable {
            self.durable_applied
                .store(encode_applied(persisted_applied), Ordering::Release);
        }
        if let Some(f) = figures {
            f.publish(&self.metrics);
        }
        self.release_overlay(batch);
        Ok(())
    }

    /// Drops overlay entries that this (committed) batch made durable.
    ///
    /// An appended entry is removed only if the overlay still holds the same
    /// log id at its index: a later truncate + re-append may have put a
    /// different, not yet durable entry there, which must stay visible.
    /// Purged indices go unconditionally: nothing at or below a purge point
    /// may be read again.
    fn release_overlay(&self, batch: &[Op]) {
        let mut overlay = lock(&self.overlay);
        for op in batch {
            match op {
                Op::Append { entries, .. } => {
                    for (log_id, _) in entries {
                        if overlay
                            .get(&log_id.index)
                            .is_some_and(|e| &e.log_id == log_id)
                        {
                            overlay.remove(&log_id.index);
                        }
                    }
                }
                Op::Purge { log_id, .. } => {
                    *overlay = overlay.split_off(&log_id.index.saturating_add(1));
                }
                Op::SaveSnapshot {
                    carried: Some(_),
                    sm,
                    ..
                } => {
                    if let Some(last) = sm.applied {
                        *overlay = overlay.split_off(&last.index.saturating_add(1));
                    }
                }
                _ => {}
            }
        }
    }
}

/// The last log id covered by the stored snapshot, if any.
fn stored_snapshot_last(
    snap: &Table<'_, &'static str, &'static [u8]>,
) -> Result<Option<LogId>, StoreError> {
    let Some(stored) = redb::ReadableTable::get(snap, snap_key::META)? else {
        return Ok(None);
    };
    let meta: crate::raft::SnapshotMeta =
        serde_json::from_slice(stored.value()).map_err(|source| StoreError::Json {
            what: "snapshot meta",
            source,
        })?;
    Ok(meta.last_log_id)
}

/// Writes the state-machine state unless it is older than what is stored.
fn persist_sm(
    meta: &mut Table<'_, &'static str, &'static [u8]>,
    p: &SmPersist,
    persisted_applied: &mut Option<LogId>,
) -> Result<(), StoreError> {
    if !p.replace && p.applied < *persisted_applied {
        return Ok(());
    }
    meta.insert(meta_key::SM_STATE, p.json.as_ref())?;
    *persisted_applied = p.applied;
    Ok(())
}

/// Removes every row of `log` in `range`, returning the bytes removed.
fn remove_range(
    log: &mut Table<'_, u64, &'static [u8]>,
    range: (Bound<u64>, Bound<u64>),
) -> Result<u64, StoreError> {
    if let (Bound::Included(from), Bound::Included(to)) = (range.start_bound(), range.end_bound()) {
        if from > to {
            return Ok(0);
        }
    }
    let mut removed = 0u64;
    for row in log.extract_from_if::<u64, _>(range, |_, _| true)? {
        let (_, v) = row?;
        removed += v.value().len() as u64;
    }
    Ok(removed)
}
