//! The state machine: counters, sink cursors and the archive index, kept in
//! memory as [`SmState`] and persisted as JSON.
//!
//! Persistence is lazy: after `apply` the state is queued for the next
//! commit (at most every [`PERSIST_INTERVAL`]), with no fsync of its own. A
//! crash can lose the newest applied entries; on restart openraft re-applies
//! them from the log up to the lazily saved committed id. Re-applying is
//! deterministic: the state is a pure function of the applied entries.
//!
//! Invariant: the persisted state is never older than the durable snapshot
//! (both are written in the same transaction when a snapshot is saved), so
//! the log below the snapshot is never needed to rebuild it.

use std::io;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::OptionalSend;
use redb::{Database, ReadableDatabase};

use super::carry;
use super::tables::{self, snap_key, SNAPSHOT};
use super::writer::{Op, SmPersist, WriterHandle};
use super::StoreError;
use crate::raft::{LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::state::{apply_entry, SmState};

/// The state is queued for persistence at most this often.
pub(super) const PERSIST_INTERVAL: Duration = Duration::from_millis(50);

/// A snapshot as openraft sees it: metadata plus `SmState` JSON.
type StoredSnapshot = Snapshot<
    openraft::type_config::alias::CommittedLeaderIdOf<TypeConfig>,
    crate::raft::NodeId,
    crate::raft::Member,
    Bytes,
>;

/// Handle to the node's state machine. Clones share the same state.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    writer: WriterHandle,
    state: RwLock<SmState>,
    persist: Mutex<PersistClock>,
}

#[derive(Default)]
struct PersistClock {
    /// When the state was last queued for persistence.
    last: Option<Instant>,
    /// A delayed persist is already scheduled.
    deferred: bool,
}

impl StateMachineStore {
    pub(super) fn new(db: Arc<Database>, writer: WriterHandle, state: SmState) -> Self {
        StateMachineStore {
            inner: Arc::new(Inner {
                db,
                writer,
                state: RwLock::new(state),
                persist: Mutex::new(PersistClock::default()),
            }),
        }
    }

    /// Whether `id` was removed from the cluster (ids are never reused);
    /// read under the lock, without copying the state.
    pub fn is_retired(&self, id: u64) -> bool {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .retired_ids
            .contains(&id)
    }

    /// A copy of the applied state, for the admin status endpoint. The
    /// series marks are shared, not copied; loops read what they need with
    /// [`StateMachineStore::read`] instead.
    pub fn view(&self) -> SmState {
        self.read(SmState::clone)
    }

    /// `f` of the applied state, under the read lock: a narrow read (one
    /// sink, the archive, a few positions) copies only what `f` returns.
    /// `f` must be quick; apply waits for it.
    pub fn read<R>(&self, f: impl FnOnce(&SmState) -> R) -> R {
        f(&self
            .inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// The state as JSON and its `last_applied`, taken under one lock.
    fn encode_state(&self) -> Result<(Bytes, Option<LogId>, StoredMembership), StoreError> {
        let st = self
            .inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let json = serde_json::to_vec(&*st).map_err(StoreError::json("state machine state"))?;
        Ok((Bytes::from(json), st.last_applied, st.membership.clone()))
    }

    async fn queue_persist(&self) -> Result<(), StoreError> {
        let (json, applied, _) = self.encode_state()?;
        self.inner
            .writer
            .send(Op::PersistSm(SmPersist {
                json,
                applied,
                replace: false,
            }))
            .await
    }

    /// Queues the state for the next commit, at most every
    /// [`PERSIST_INTERVAL`]; a call inside the interval schedules one
    /// delayed persist instead, so the newest state is queued within an
    /// interval of the last apply.
    async fn persist_lazily(&self) -> Result<(), StoreError> {
        let delay = {
            let mut clock = self
                .inner
                .persist
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match clock.last {
                Some(t) if t.elapsed() < PERSIST_INTERVAL => {
                    if clock.deferred {
                        return Ok(());
                    }
                    clock.deferred = true;
                    Some(PERSIST_INTERVAL.saturating_sub(t.elapsed()))
                }
                _ => {
                    clock.last = Some(Instant::now());
                    None
                }
            }
        };
        let Some(delay) = delay else {
            return self.queue_persist().await;
        };
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            {
                let mut clock = this
                    .inner
                    .persist
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                clock.deferred = false;
                clock.last = Some(Instant::now());
            }
            if let Err(e) = this.queue_persist().await {
                // Only a stopped writer gets here; the state is rebuilt by
                // re-applying the log on restart.
                tracing::debug!(error = %e, "deferred state persist dropped");
            }
        });
        Ok(())
    }

    /// Serialises the current state and stores it durably as the snapshot.
    async fn build(&self) -> Result<StoredSnapshot, StoreError> {
        let (data, applied, membership) = self.encode_state()?;
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
        };
        let meta_json = serde_json::to_vec(&meta).map_err(StoreError::json("snapshot meta"))?;
        let id = snapshot_id(applied.as_ref());
        let sm = SmPersist {
            json: data.clone(),
            applied,
            replace: false,
        };
        let snap_data = data.clone();
        self.inner
            .writer
            .call(|reply| Op::SaveSnapshot {
                meta_json,
                data: snap_data,
                id,
                sm,
                carried: None,
                reply,
            })
            .await?;
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }

    async fn install(&self, meta: &SnapshotMeta, data: Bytes) -> Result<(), StoreError> {
        let carried = carry::unwrap(data, meta.last_log_id.map(|l| l.index))?;
        let data = carried.json;
        let state: SmState =
            serde_json::from_slice(&data).map_err(StoreError::json("snapshot data"))?;
        if state.last_applied != meta.last_log_id || state.membership != meta.last_membership {
            return Err(StoreError::InconsistentSnapshot(format!(
                "meta says last applied {:?}, data says {:?}",
                meta.last_log_id, state.last_applied
            )));
        }
        let meta_json = serde_json::to_vec(meta).map_err(StoreError::json("snapshot meta"))?;
        let id = snapshot_id(meta.last_log_id.as_ref());
        let sm = SmPersist {
            json: data.clone(),
            applied: state.last_applied,
            replace: true,
        };
        // Durable first, then visible: a failed write leaves the old state in
        // memory, matching the disk.
        self.inner
            .writer
            .call(|reply| Op::SaveSnapshot {
                meta_json,
                data,
                id,
                sm,
                carried: carried.rows,
                reply,
            })
            .await?;
        *self
            .inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner) = state;
        Ok(())
    }

    async fn current_snapshot(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || {
            let read = db.begin_read()?;
            let table = read.open_table(SNAPSHOT)?;
            let Some(meta) =
                tables::get_json::<SnapshotMeta>(&table, snap_key::META, "snapshot meta")?
            else {
                return Ok(None);
            };
            let data = match redb::ReadableTable::get(&table, snap_key::DATA)? {
                Some(v) => Bytes::copy_from_slice(v.value()),
                None => {
                    return Err(StoreError::Malformed {
                        what: "snapshot data (meta present, data missing)",
                    })
                }
            };
            Ok(Some(Snapshot {
                meta,
                snapshot: data,
            }))
        })
        .await?
    }
}

/// `<term>-<node>-<index>-<unix_ms>`, for diagnostics only.
fn snapshot_id(last: Option<&LogId>) -> String {
    let ms = crate::clock::unix_millis();
    match last {
        Some(l) => format!(
            "{}-{}-{}-{ms}",
            l.leader_id.term, l.leader_id.node_id, l.index
        ),
        None => format!("0-0-0-{ms}"),
    }
}

/// Builds snapshots of a [`StateMachineStore`]; a cheap clone of it, handed to
/// openraft's snapshot task.
#[derive(Clone)]
pub struct SnapshotBuilder {
    sm: StateMachineStore,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Bytes;

    async fn build_snapshot(&mut self) -> Result<StoredSnapshot, io::Error> {
        Ok(self.sm.build().await?)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = Bytes;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let st = self
            .inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut applied_any = false;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            apply_entry(
                &mut self
                    .inner
                    .state
                    .write()
                    .unwrap_or_else(PoisonError::into_inner),
                &entry,
            );
            applied_any = true;
            if let Some(responder) = responder {
                responder.send(());
            }
        }
        if applied_any {
            self.persist_lazily().await?;
        }
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<Self::SnapshotBuilder> {
        Some(SnapshotBuilder { sm: self.clone() })
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { sm: self.clone() }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Bytes,
    ) -> Result<(), io::Error> {
        Ok(self.install(meta, snapshot).await?)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<StoredSnapshot>, io::Error> {
        Ok(self.current_snapshot().await?)
    }
}
