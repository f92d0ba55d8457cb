//! Unit tests of the storage module: restart, group commit, state-machine
//! persistence and re-apply, corruption handling.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use openraft::storage::{
    IOFlushed, RaftLogReader, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine,
};
use openraft::type_config::TypeConfigExt;
use openraft::{EntryPayload, Membership, StorageHelper};
use redb::Durability;

use super::tables::LOG;
use super::*;
use crate::pb::log::command::Kind;
use crate::pb::log::{ArchiveSeal, Archived, CursorAdvance, IngestRequest, Signal};
use crate::raft::codec::{self, log_id};
use crate::raft::{Member, TypeConfig, Vote};
use crate::state::tests::{blank, normal};
use crate::state::{apply_entry, SignalTotals, SmState};

fn ingest(term: u64, index: u64, signal: Signal, records: u64, payload: &'static [u8]) -> Entry {
    normal(
        term,
        index,
        Kind::Ingest(IngestRequest {
            signal: signal as i32,
            payload: Bytes::from_static(payload),
            records,
            ..Default::default()
        }),
    )
}

fn cursor(term: u64, index: u64, sink: &str, from: u64, at: u64) -> Entry {
    normal(
        term,
        index,
        Kind::Cursor(CursorAdvance {
            sink: sink.into(),
            from_index: from,
            index: at,
            ..Default::default()
        }),
    )
}

fn membership(term: u64, index: u64) -> Entry {
    let nodes: BTreeMap<u64, Member> = [(
        1,
        Member {
            peer_addr: "127.0.0.1:1".into(),
            admin_addr: "127.0.0.1:2".into(),
            ..Default::default()
        },
    )]
    .into();
    let m = Membership::new(vec![BTreeSet::from([1])], nodes).expect("valid membership");
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Membership(m),
    }
}

/// Entries 0..=10 exercising every command kind (openraft logs start at 0).
fn mixed_entries() -> Vec<Entry> {
    vec![
        blank(1, 0),
        membership(1, 1),
        ingest(1, 2, Signal::Logs, 3, b"abcde"),
        ingest(1, 3, Signal::Metrics, 7, b"xy"),
        cursor(1, 4, "s1", 0, 2),
        // A stale advance: it starts from 0, but the cursor is at 2.
        cursor(1, 5, "s1", 0, 1),
        normal(
            1,
            6,
            Kind::Seal(ArchiveSeal {
                first_index: 0,
                last_index: 5,
                term: 1,
                ..Default::default()
            }),
        ),
        normal(
            1,
            7,
            Kind::Archived(Archived {
                first_index: 0,
                last_index: 5,
                key: "k/0-5".into(),
                checksum: "dead01".into(),
                size: 10,
                uncompressed_bytes: 20,
            }),
        ),
        ingest(2, 8, Signal::Traces, 11, b"t"),
        cursor(2, 9, "s2", 0, 8),
        ingest(2, 10, Signal::Logs, 1, b"z"),
    ]
}

/// Opens the store, waiting while the previous handles' writer thread is
/// still closing the file (it exits once every handle is dropped).
async fn reopen(dir: &Path, metrics: Arc<Metrics>) -> (LogStore, StateMachineStore) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open(dir, metrics.clone()).await {
            Ok(stores) => return stores,
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("reopen failed: {e}"),
        }
    }
}

/// Appends and waits until the entries are durable.
async fn append_durable(log: &mut LogStore, entries: Vec<Entry>) {
    let (tx, rx) = TypeConfig::oneshot();
    log.append(entries, IOFlushed::signal(tx))
        .await
        .expect("append queued");
    rx.await.expect("callback fired").expect("append durable");
}

async fn apply_all(sm: &mut StateMachineStore, entries: &[Entry]) {
    let items: Vec<Result<_, io::Error>> = entries.iter().cloned().map(|e| Ok((e, None))).collect();
    sm.apply(futures::stream::iter(items)).await.expect("apply");
}

fn expected_state(entries: &[Entry]) -> SmState {
    let mut st = SmState::default();
    for e in entries {
        apply_entry(&mut st, e);
    }
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_log_vote_purge_and_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Arc::new(Metrics::new());
    let entries: Vec<Entry> = (1..=20)
        .map(|i| {
            if i % 2 == 0 {
                ingest(1, i, Signal::Logs, i, b"payload")
            } else {
                blank(1, i)
            }
        })
        .collect();
    let vote = Vote::new_committed(3, 2);
    {
        let (mut log, _sm) = reopen(dir.path(), metrics.clone()).await;
        append_durable(&mut log, entries.clone()).await;
        log.trim(4).await.expect("trim");
        log.purge(log_id(1, 1, 3)).await.expect("purge");
        log.truncate_after(Some(log_id(1, 1, 15)))
            .await
            .expect("truncate");
        log.save_committed(Some(log_id(1, 1, 12)))
            .await
            .expect("save committed");
        // Durable, and it fsyncs the lazily written committed id with it.
        log.save_vote(&vote).await.expect("save vote");

        let err = dump_offline(dir.path()).expect_err("the file is held by the open store");
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(
            err.to_string().contains(DB_FILE_NAME),
            "error names the file: {err}"
        );
        assert!(err.retryable());
    }

    let (mut log, _sm) = reopen(dir.path(), metrics.clone()).await;
    let want: Vec<Entry> = entries[3..15].to_vec();
    assert_eq!(log.read_range(0, 100).await.expect("read"), want);
    assert_eq!(log.read_vote().await.expect("vote"), Some(vote));
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(log_id(1, 1, 12))
    );
    let st = log.get_log_state().await.expect("log state");
    assert_eq!(st.last_purged_log_id, Some(log_id(1, 1, 3)));
    assert_eq!(st.last_log_id, Some(log_id(1, 1, 15)));
    assert_eq!(metrics.log_entries.get(), 12);
    assert_eq!(metrics.log_first_index.get(), 4);
    let bytes: usize = want
        .iter()
        .map(|e| codec::encode(e).expect("encodes").len())
        .sum();
    assert_eq!(
        metrics.log_bytes.get(),
        bytes as i64,
        "byte counter survives purge, truncate and restart"
    );
    drop((log, _sm));

    // The offline dump sees the same log once the node is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let dumped = loop {
        match dump_offline(dir.path()) {
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => break other.expect("dump"),
        }
    };
    assert_eq!(dumped, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_fsyncs_and_ack_only_when_durable() {
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 50;
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Arc::new(Metrics::new());
    let (log, _sm) = reopen(dir.path(), metrics.clone()).await;

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let mut log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 0..PER_TASK {
                let index = t * PER_TASK + i + 1;
                let (tx, rx) = TypeConfig::oneshot();
                log.append(
                    [ingest(1, index, Signal::Logs, 1, b"x")],
                    IOFlushed::signal(tx),
                )
                .await
                .expect("append");
                // Visible as soon as append returns, flushed or not.
                let got = log.read_range(index, index + 1).await.expect("read");
                assert_eq!(got.len(), 1, "entry {index} readable right after append");
                pending.push((index, rx));
            }
            for (index, rx) in pending {
                rx.await.expect("callback fired").expect("durable");
                assert!(
                    log.durable_contains(index).expect("read table"),
                    "entry {index} acked before its commit"
                );
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }

    let appends = TASKS * PER_TASK;
    let fsyncs = metrics.storage_fsyncs.get();
    assert!(
        fsyncs < appends,
        "group commit: {fsyncs} fsyncs for {appends} appends"
    );
    assert_eq!(metrics.log_entries.get(), appends as i64);
    let all = log.read_range(1, appends + 1).await.expect("read all");
    assert_eq!(all.len() as u64, appends);

    // A batch of lazy operations alone costs no fsync.
    let before = metrics.storage_fsyncs.get();
    let mut log2 = log.clone();
    log2.save_committed(Some(log_id(1, 1, appends)))
        .await
        .expect("save committed");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        metrics.storage_fsyncs.get(),
        before,
        "lazy ops commit without fsync"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_machine_persists_and_reapplies_from_persisted_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Arc::new(Metrics::new());
    let entries = mixed_entries();
    let want = expected_state(&entries);
    assert_eq!(
        want.sinks.get("s1").map(|s| s.cursor),
        Some(2),
        "an advance that does not start at the cursor is ignored"
    );
    assert_eq!(
        want.signals["logs"],
        SignalTotals {
            requests: 2,
            records: 4,
            payload_bytes: 6
        }
    );
    assert_eq!(want.archive.cursor, 5);
    assert_eq!(want.archive.pending, None);
    assert_eq!(
        want.archive
            .last_block
            .as_ref()
            .map(|b| b.checksum.as_str()),
        Some("dead01")
    );

    // A node that persisted its state after entry 5, learnt that 10 is
    // committed, and stopped before applying 6..=10.
    {
        let (mut log, mut sm) = reopen(dir.path(), metrics.clone()).await;
        append_durable(&mut log, entries.clone()).await;
        log.save_vote(&Vote::new_committed(2, 1))
            .await
            .expect("vote");
        apply_all(&mut sm, &entries[..6]).await;
        log.save_committed(Some(log_id(2, 1, 10)))
            .await
            .expect("committed");
        // A durable op, so the lazy state and committed id reach the disk.
        log.save_vote(&Vote::new_committed(2, 1))
            .await
            .expect("vote");
    }
    {
        let (mut log, mut sm) = reopen(dir.path(), metrics.clone()).await;
        assert_eq!(
            sm.applied_state().await.expect("applied").0,
            Some(log_id(1, 1, 5))
        );
        assert_eq!(sm.view(), expected_state(&entries[..6]));
        StorageHelper::new(&mut log, &mut sm)
            .with_id(1)
            .get_initial_state()
            .await
            .expect("initial state");
        assert_eq!(
            sm.view(),
            want,
            "re-applying 6..=10 on the persisted state is deterministic"
        );

        // A snapshot stores the state durably with it.
        let mut builder = sm.try_create_snapshot_builder(true).await.expect("builder");
        let snap = builder.build_snapshot().await.expect("build");
        assert_eq!(snap.meta.last_log_id, Some(log_id(2, 1, 10)));
        assert_eq!(
            serde_json::from_slice::<SmState>(&snap.snapshot).expect("json"),
            want
        );
    }
    let (_log, mut sm) = reopen(dir.path(), metrics.clone()).await;
    assert_eq!(sm.view(), want);
    let snap = sm
        .get_current_snapshot()
        .await
        .expect("read snapshot")
        .expect("a snapshot");
    assert_eq!(snap.meta.last_log_id, Some(log_id(2, 1, 10)));

    // Installing a snapshot replaces the state, also on disk.
    let other = tempfile::tempdir().expect("tempdir");
    let (_log2, mut sm2) = reopen(other.path(), metrics.clone()).await;
    sm2.install_snapshot(&snap.meta, snap.snapshot.clone())
        .await
        .expect("install");
    assert_eq!(sm2.view(), want);
    drop((_log2, sm2));
    let (_log2, sm2) = reopen(other.path(), metrics.clone()).await;
    assert_eq!(sm2.view(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_state_is_persisted_lazily_without_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Arc::new(Metrics::new());
    let entries = mixed_entries();
    {
        let (mut log, mut sm) = reopen(dir.path(), metrics.clone()).await;
        append_durable(&mut log, entries.clone()).await;
        // Two applies inside one persist interval: the second is deferred,
        // not dropped.
        apply_all(&mut sm, &entries[..3]).await;
        apply_all(&mut sm, &entries[3..]).await;
        tokio::time::sleep(super::state_machine::PERSIST_INTERVAL * 3).await;
        log.save_vote(&Vote::new_committed(1, 1))
            .await
            .expect("vote");
    }
    let (_log, sm) = reopen(dir.path(), metrics).await;
    assert_eq!(sm.view(), expected_state(&entries));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_entries_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _sm) = reopen(dir.path(), Arc::new(Metrics::new())).await;
    append_durable(&mut log, vec![blank(1, 1), blank(1, 2), blank(1, 3)]).await;

    let db = log.db();
    let plant = |index: u64, bytes: Vec<u8>| {
        let mut txn = db.begin_write().expect("txn");
        txn.set_durability(Durability::Immediate)
            .expect("durability");
        {
            let mut t = txn.open_table(LOG).expect("table");
            t.insert(index, bytes.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    };
    plant(4, vec![0xff, 0xff, 0xff]);

    let err = log
        .try_get_log_entries(1..5)
        .await
        .expect_err("garbage does not decode");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let err = log
        .read_range(4, 5)
        .await
        .expect_err("garbage does not decode");
    assert!(matches!(err, StoreError::Corrupt { index: 4, .. }), "{err}");
    assert!(!err.retryable());
    assert!(
        log.get_log_state().await.is_err(),
        "the last entry is the corrupt one"
    );
    // Entries before the broken one still read.
    assert_eq!(log.read_range(1, 4).await.expect("read").len(), 3);

    // A valid entry under the wrong key is caught too.
    plant(4, codec::encode(&blank(1, 7)).expect("encodes"));
    let err = log.read_range(4, 5).await.expect_err("misplaced");
    assert!(
        matches!(err, StoreError::Misplaced { key: 4, found: 7 }),
        "{err}"
    );

    plant(4, vec![0xff]);
    drop((log, _sm, db));
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        match dump_offline(dir.path()) {
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => break other.expect_err("corrupt"),
        }
    };
    assert!(matches!(err, StoreError::Corrupt { index: 4, .. }), "{err}");
}

#[tokio::test]
async fn dump_offline_names_a_missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = dump_offline(dir.path()).expect_err("no database");
    assert!(err.to_string().contains(DB_FILE_NAME), "{err}");
}

/// Purged rows stay readable until every consumer is done with them; rows
/// go only at or below both the trim point and the purge point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_rows_are_retained_until_trimmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Arc::new(Metrics::new());
    let entries: Vec<Entry> = (1..=10)
        .map(|i| ingest(1, i, Signal::Logs, 1, b"payload"))
        .collect();
    let (mut log, _sm) = reopen(dir.path(), metrics.clone()).await;
    append_durable(&mut log, entries.clone()).await;

    log.purge(log_id(1, 1, 6)).await.expect("purge");
    let st = log.get_log_state().await.expect("log state");
    assert_eq!(st.last_purged_log_id, Some(log_id(1, 1, 6)));
    assert_eq!(st.last_log_id, Some(log_id(1, 1, 10)));
    assert_eq!(
        log.read_batch(1, 11, usize::MAX).await.expect("read").len(),
        10,
        "purged but unconsumed rows are still readable"
    );

    // Trim below the purge point: rows below the trim point go.
    log.trim(3).await.expect("trim");
    log.purge(log_id(1, 1, 6))
        .await
        .expect("purge again (flushes the lazy trim)");
    let err = log
        .read_batch(1, 11, usize::MAX)
        .await
        .expect_err("trimmed start");
    assert_hole(&err, 1, 3);
    assert_eq!(
        log.read_batch(3, 11, usize::MAX).await.expect("read").len(),
        8
    );
    // A window that lies wholly below the trim point is a hole too, not an
    // empty read: a consumer behind a long trimmed run must not stall.
    let err = log
        .read_batch(1, 2, usize::MAX)
        .await
        .expect_err("window wholly trimmed");
    assert_hole(&err, 1, 3);
    assert!(
        log.read_batch(11, 20, usize::MAX)
            .await
            .expect("read")
            .is_empty(),
        "past the end is empty, not a hole"
    );

    // Trim past the purge point: rows stop at the purge point.
    log.trim(10).await.expect("trim");
    log.purge(log_id(1, 1, 6)).await.expect("purge again");
    assert_eq!(metrics.log_first_index.get(), 7);
    let rest = log.read_batch(7, 11, usize::MAX).await.expect("read");
    assert_eq!(rest, entries[6..].to_vec());

    // Everything purged: the log ends at the purge point, not at a
    // retained row below it.
    log.purge(log_id(1, 1, 10)).await.expect("purge all");
    let st = log.get_log_state().await.expect("log state");
    assert_eq!(st.last_log_id, Some(log_id(1, 1, 10)));
}

/// A batch's end depends on the entries, not on how many of them the writer
/// has committed yet: the leader that reads entries still in its overlay
/// and a new leader that reads them from its table cut the same batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_budget_counts_overlay_entries_as_it_counts_table_rows() {
    let entries: Vec<Entry> = (1..=8)
        .map(|i| ingest(1, i, Signal::Logs, 1, b"0123456789abcdef0123456789abcdef"))
        .collect();
    let size = codec::encode(&entries[0]).unwrap().len();
    let budget = 6 * size;

    let stored = tempfile::tempdir().expect("tempdir");
    let (mut all_stored, _sm) = reopen(stored.path(), Arc::new(Metrics::new())).await;
    append_durable(&mut all_stored, entries.clone()).await;
    let from_table = all_stored.read_batch(1, 9, budget).await.expect("read");
    assert_eq!(from_table, entries[..6].to_vec());

    let half = tempfile::tempdir().expect("tempdir");
    let (mut half_stored, _sm) = reopen(half.path(), Arc::new(Metrics::new())).await;
    append_durable(&mut half_stored, entries[..4].to_vec()).await;
    half_stored.hold_in_overlay(entries[4..].to_vec());
    let merged = half_stored.read_batch(1, 9, budget).await.expect("read");
    assert_eq!(
        merged, from_table,
        "the same batch, whatever is still in the overlay"
    );
    // And with everything still in the overlay.
    let none = tempfile::tempdir().expect("tempdir");
    let (none_stored, _sm) = reopen(none.path(), Arc::new(Metrics::new())).await;
    none_stored.hold_in_overlay(entries.clone());
    assert_eq!(
        none_stored.read_batch(1, 9, budget).await.expect("read"),
        from_table
    );
}

/// Index 0 is Raft's first entry (the initial membership): a purge with no
/// trim point yet, or a trim point of 0, keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_zero_is_kept_until_a_consumer_is_past_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Arc::new(Metrics::new());
    let entries = vec![
        membership(1, 0),
        ingest(1, 1, Signal::Logs, 1, b"a"),
        ingest(1, 2, Signal::Logs, 1, b"b"),
    ];
    let (mut log, _sm) = reopen(dir.path(), metrics.clone()).await;
    append_durable(&mut log, entries.clone()).await;
    log.purge(log_id(1, 1, 1)).await.expect("purge");
    log.trim(0).await.expect("trim");
    log.purge(log_id(1, 1, 1)).await.expect("purge again");
    assert_eq!(
        log.read_batch(0, 3, usize::MAX).await.expect("read"),
        entries
    );
    log.trim(1).await.expect("trim past row 0");
    log.purge(log_id(1, 1, 1)).await.expect("purge again");
    assert_eq!(
        log.read_batch(1, 3, usize::MAX).await.expect("read"),
        entries[1..].to_vec()
    );
    assert_eq!(metrics.log_first_index.get(), 1);
}

fn assert_hole(err: &StoreError, want_expected: u64, want_found: u64) {
    assert!(
        matches!(err, StoreError::Hole { expected, found } if *expected == want_expected && *found == want_found),
        "want a hole from {want_expected} to {want_found}, got {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_a_long_range_reads_it_a_message_s_worth_at_a_time() {
    // Ten entries of 1 MiB, the last one corrupt on disk. Read as one
    // piece (openraft's default), the range fails before anything is
    // applied, which shows it was all held at once; read in pieces of
    // `REPLICATION_READ_BYTES` plus one entry, the first pieces arrive
    // before the bad row is read.
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _sm) = reopen(dir.path(), Arc::new(Metrics::new())).await;
    let big = |index: u64| {
        normal(
            1,
            index,
            Kind::Ingest(IngestRequest {
                signal: Signal::Logs as i32,
                payload: Bytes::from(vec![7u8; 1 << 20]),
                records: 1,
                ..Default::default()
            }),
        )
    };
    append_durable(&mut log, (1..=10).map(big).collect()).await;
    // A sound range comes whole and in order, across pieces, and an open
    // range ends at the last entry the log holds.
    let sound: Vec<u64> = log
        .entries_stream(2..=9)
        .await
        .map(|i| i.expect("entry").log_id.index)
        .collect()
        .await;
    assert_eq!(sound, (2..=9).collect::<Vec<_>>());
    let open: Vec<u64> = log
        .entries_stream(5..)
        .await
        .map(|i| i.expect("entry").log_id.index)
        .collect()
        .await;
    assert_eq!(open, (5..=10).collect::<Vec<_>>());

    let db = log.db();
    {
        let mut txn = db.begin_write().expect("txn");
        txn.set_durability(Durability::Immediate)
            .expect("durability");
        {
            let mut t = txn.open_table(LOG).expect("table");
            t.insert(10, [0xffu8, 0xff, 0xff].as_slice())
                .expect("insert");
        }
        txn.commit().expect("commit");
    }

    let items: Vec<Result<Entry, io::Error>> = log.entries_stream(1..11).await.collect().await;
    let read: Vec<u64> = items
        .iter()
        .map_while(|i| i.as_ref().ok().map(|e| e.log_id.index))
        .collect();
    let piece = (crate::config::memory::REPLICATION_READ_BYTES >> 20) as u64;
    assert!(
        read.len() as u64 >= piece,
        "entries before the bad one: {read:?}"
    );
    assert_eq!(read, (1..=read.len() as u64).collect::<Vec<_>>());
    assert!(
        items.last().is_some_and(|i| i.is_err()),
        "the bad row ends the stream as an error"
    );
}
