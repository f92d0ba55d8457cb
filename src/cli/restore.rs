//! `otelraft restore`: rebuilds a node's storage from the archive after the
//! cluster lost every disk.
//!
//! The archive holds every committed entry of a contiguous index range, so
//! replaying its blocks through the state machine's own `apply_entry`
//! yields the state the lost cluster had at the last archived index `L`.
//! Restore writes that state as an installed snapshot at `L`, the way a
//! follower installs one from its leader:
//!
//! - the snapshot's membership is the configured `cluster.initial_members`
//!   (the new machines), not the lost cluster's; their ids are never
//!   retired in it, and the lost cluster's members they do not reuse are;
//! - the archive cursor is `L`: the bucket already holds everything up to
//!   it, and the new cluster appends its next block after it;
//! - each sink keeps the cursor the archive recorded for it, and the
//!   entries it has not consumed yet are stored as retained rows, so the
//!   new leader exports them; the sink remembers the restore point (see
//!   `store::SinkRestore`) to tell the lost cluster's markers from its own;
//! - the vote is the term of `L`, so the first election of the new cluster
//!   starts above every term in the restored log.
//!
//! Restore exactly one node and start the others with empty data
//! directories: the restored node holds the newest log, wins the first
//! election and sends the others its snapshot. (Each restore has its own
//! id, so restoring several nodes would give them different states.)
//!
//! Ordering: a `RESTORING` marker file is made durable first; then the
//! snapshot (state, retained rows, last purged id) commits in one
//! transaction, then the vote, then the committed id; then the marker is
//! removed. `otelraft serve` refuses a data directory with the marker, so a
//! crash in between never starts a half-restored node (one that would
//! bootstrap a fresh cluster, or elect at a term below the restored log);
//! delete the database and the marker and run restore again.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use object_store::ObjectStoreExt;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{EntryPayload, Membership};
use prost::Message;

use crate::archive::reader::{self, BlockInfo};
use crate::archive::{Archive, ArchiveError};
use crate::config::NodeConfig;
use crate::metrics::Metrics;
use crate::node::members_map;
use crate::pb::log::command::Kind;
use crate::raft::{codec, LogId, SnapshotMeta, StoredMembership, Vote};
use crate::state::{apply_entry, ArchiveState, ArchivedBlock, SinkRestore, SinkState, SmState};
use crate::store::{self, durable_dir, StoreError};

/// The one error type of restore.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The data directory already holds a node's database.
    #[error("{} already exists: restore writes only into an empty data directory", path.display())]
    NotEmpty {
        /// The database file.
        path: PathBuf,
    },
    /// The configuration cannot describe the new cluster.
    #[error("{field}: {message}")]
    Config {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Reading the archive failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The archive holds nothing to restore, or not the range asked for.
    #[error("{0}")]
    Unusable(String),
    /// An archived entry does not decode, or is not where its block says.
    #[error("block {key}: {message}")]
    Entry {
        /// The block's key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Writing the node's database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RestoreError {
    /// Whether running restore again may succeed without changing anything:
    /// only when the object store or the disk failed transiently.
    pub fn retryable(&self) -> bool {
        match self {
            RestoreError::Archive(e) => e.retryable(),
            RestoreError::Store(e) => e.retryable(),
            RestoreError::NotEmpty { .. }
            | RestoreError::Config { .. }
            | RestoreError::Unusable(_)
            | RestoreError::Entry { .. } => false,
        }
    }
}

/// What `otelraft restore` may be told.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore only up to the block that ends at or before this index
    /// (default: the end of the contiguous archive).
    pub upto: Option<u64>,
    /// Move blocks after the restored range (left by `upto`, or beyond a
    /// gap) to `<prefix>/set-aside/<restore id>/`, where the restored
    /// cluster will not write. Without it such blocks make restore refuse.
    pub set_aside_later: bool,
}

pub use crate::store::RESTORING_FILE;

/// What a restore did, printed by the CLI.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    /// First index of the first block read.
    pub first_index: u64,
    /// The last restored entry: the snapshot's last log id.
    pub last_index: u64,
    /// Its term.
    pub last_term: u64,
    /// Blocks read (the second pass for retained rows not counted).
    pub blocks: u64,
    /// Block bytes downloaded, as stored.
    pub block_bytes: u64,
    /// The blocks' entry bytes before compression.
    pub uncompressed_bytes: u64,
    /// Entries replayed.
    pub entries: u64,
    /// Records restored, per signal.
    pub records: std::collections::BTreeMap<String, u64>,
    /// Entries kept as retained rows for the sinks to export.
    pub retained_rows: u64,
    /// Per sink: its restored cursor and where it came from.
    pub sinks: Vec<SinkReport>,
    /// Wall time of the whole restore, seconds.
    pub seconds: f64,
}

/// One sink's position after a restore.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkReport {
    /// The sink's name.
    pub name: String,
    /// Its restored cursor.
    pub cursor: u64,
    /// `archive`: the cursor the archive recorded; `new`: the archive never
    /// saw the sink, so it starts at the restore point (backfill it with
    /// `otelraft archive replay`).
    pub source: &'static str,
    /// Entries the sink had not consumed that are in no block any more
    /// (expired by retention): the cursor was raised past them.
    pub gone: Option<(u64, u64)>,
}

/// Rebuilds `config`'s node from its archive. See the module docs.
pub async fn restore(
    config: &NodeConfig,
    options: &RestoreOptions,
    out: &mut impl Write,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let db_path = config.data_dir.join(store::DB_FILE_NAME);
    if db_path.exists() {
        return Err(RestoreError::NotEmpty { path: db_path });
    }
    let membership = new_membership(config)?;
    if !config.archive.enabled {
        return Err(RestoreError::Config {
            field: "archive.enabled",
            message: "is false: there is no archive to restore from".into(),
        });
    }
    let archive = Archive::open(&config.archive)?;
    let listed = reader::list_blocks(&archive).await?;
    let chain = contiguous_chain(listed.clone(), options.upto)?;
    let (Some(first), Some(last)) = (chain.first(), chain.last()) else {
        return Err(RestoreError::Unusable(format!(
            "{} holds no block to restore",
            archive.location
        )));
    };
    let (first_index, last_block_index) = (first.first_index, last.last_index);
    let restore_id = crate::clock::unix_millis();
    let later: Vec<BlockInfo> = listed
        .into_iter()
        .filter(|b| b.last_index > last_block_index)
        .collect();
    if let Some(next) = later.first() {
        if !options.set_aside_later {
            return Err(RestoreError::Unusable(format!(
                "the archive holds {} blocks after index {last_block_index} (first: {}); the restored \
                 cluster would write its own blocks over that range. Pass --set-aside-later to move \
                 them to {}/set-aside/{restore_id}/ first",
                later.len(),
                next.key,
                archive.prefix
            )));
        }
    }
    let say = |out: &mut dyn Write, line: String| -> Result<(), RestoreError> {
        writeln!(out, "{line}").map_err(|e| RestoreError::Archive(ArchiveError::Output(e)))
    };
    say(
        out,
        format!(
            "restoring from {}: {} blocks, indices {first_index}..={last_block_index}",
            archive.location,
            chain.len()
        ),
    )?;

    // Pass 1: replay every entry.
    let mut state = SmState::default();
    let mut report = RestoreReport {
        first_index,
        last_index: 0,
        last_term: 0,
        blocks: 0,
        block_bytes: 0,
        uncompressed_bytes: 0,
        entries: 0,
        records: Default::default(),
        retained_rows: 0,
        sinks: Vec::new(),
        seconds: 0.0,
    };
    let mut archive_state = ArchiveState::default();
    let mut seeded = BTreeSet::new();
    let mut last_id: Option<LogId> = None;
    for info in &chain {
        let (opened, size) = reader::fetch_block(&archive, info).await?;
        for pb in opened.entries {
            let entry = codec::from_pb(pb).map_err(|e| RestoreError::Entry {
                key: info.key.clone(),
                message: e.to_string(),
            })?;
            let expected = last_id.map_or(first_index, |l| l.index + 1);
            if entry.log_id.index != expected {
                return Err(RestoreError::Entry {
                    key: info.key.clone(),
                    message: format!("entry {} where {expected} was expected", entry.log_id.index),
                });
            }
            if first_index > 0 {
                seed_sink(&mut state, &mut seeded, &entry);
            }
            apply_entry(&mut state, &entry);
            last_id = Some(entry.log_id);
            report.entries += 1;
        }
        let h = &opened.header;
        report.blocks += 1;
        report.block_bytes += size;
        report.uncompressed_bytes += h.uncompressed_len;
        archive_state.blocks += 1;
        archive_state.bytes += size;
        archive_state.uncompressed_bytes += h.uncompressed_len;
        archive_state.last_block = Some(ArchivedBlock {
            first_index: info.first_index,
            last_index: info.last_index,
            key: info.key.clone(),
            checksum: opened.checksum.clone(),
            size,
        });
    }
    let last_id =
        last_id.ok_or_else(|| RestoreError::Unusable("the blocks hold no entry".into()))?;
    archive_state.cursor = last_id.index;
    report.last_index = last_id.index;
    report.last_term = last_id.leader_id.term;
    for (signal, totals) in &state.signals {
        report.records.insert(signal.clone(), totals.records);
    }

    // The restored state as of `L`, for the new members.
    let stored_membership = StoredMembership::new(Some(last_id), membership);
    state.last_applied = Some(last_id);
    take_over_membership(&mut state, stored_membership.clone());
    state.archive = archive_state;
    // The restored cluster continues the lost one: it keeps its identity
    // (applied from the archive's `ClusterIdentity` entry, if a block
    // still holds it; else the new cluster's first leader proposes one).
    let restore_point = SinkRestore {
        upto: last_id.index,
        at_ms: restore_id,
        continues_cluster: !state.cluster_id.is_empty(),
    };
    state.restore = Some(restore_point);
    for name in config.sinks.keys() {
        if !state.sinks.contains_key(name) {
            state.sinks.insert(
                name.clone(),
                SinkState {
                    cursor: last_id.index,
                    ..SinkState::default()
                },
            );
            report.sinks.push(SinkReport {
                name: name.clone(),
                cursor: last_id.index,
                source: "new",
                gone: None,
            });
        }
    }
    for (name, sink) in state.sinks.iter_mut() {
        sink.restore = Some(restore_point);
        // Entries below the first block are gone; no sink can wait on them.
        let floor = first_index.saturating_sub(1);
        let gone = (sink.cursor < floor).then(|| (sink.cursor + 1, floor));
        sink.cursor = sink.cursor.max(floor);
        if config.sinks.contains_key(name) && !report.sinks.iter().any(|s| &s.name == name) {
            report.sinks.push(SinkReport {
                name: name.clone(),
                cursor: sink.cursor,
                source: "archive",
                gone,
            });
        }
    }
    report.sinks.sort_by(|a, b| a.name.cmp(&b.name));

    // Pass 2: the entries the configured sinks have not consumed.
    let rows = match state.retain_from(config.sinks.keys().map(String::as_str), false) {
        Some(from) if from <= last_id.index => retained_rows(&archive, &chain, from).await?,
        _ => Vec::new(),
    };
    report.retained_rows = rows.len() as u64;

    for block in &later {
        let from = object_store::path::Path::from(block.key.as_str());
        let name = from.filename().unwrap_or(block.key.as_str()).to_string();
        let to = object_store::path::Path::from(format!(
            "{}/set-aside/{restore_id}/{name}",
            archive.prefix
        ));
        archive
            .store
            .rename(&from, &to)
            .await
            .map_err(ArchiveError::store(block.key.clone()))?;
        say(out, format!("set aside {} as {to}", block.key))?;
    }
    if !later.is_empty() {
        // The restored cluster continues the archive from here: the lost
        // cluster's head past the restore point no longer applies.
        crate::archive::bounds::reset_head(&archive, last_id.index).await?;
    } else if let Some(head) = crate::archive::bounds::read_head(&archive)
        .await
        .ok()
        .flatten()
        .filter(|h| *h > last_id.index)
    {
        say(
            out,
            format!(
                "warning: the lost cluster recorded blocks through index {head}, but no block after {} is in the archive: entries {}..={head} are lost",
                last_id.index,
                last_id.index + 1
            ),
        )?;
    }
    write_node(config, &state, stored_membership, &rows).await?;
    report.seconds = started.elapsed().as_secs_f64();
    for s in &report.sinks {
        let how = match (s.source, s.gone) {
            ("new", _) => "not in the archive; starts at the restore point, backfill with `otelraft archive replay`".to_string(),
            (_, Some((a, b))) => format!("entries {a}..={b} it had not consumed are in no block any more (expired); later entries are exported again"),
            _ => "as the archive recorded it; later entries are exported again".to_string(),
        };
        say(out, format!("sink {}: cursor {} ({how})", s.name, s.cursor))?;
    }
    say(
        out,
        format!(
            "restored node {} at index {} (term {}): {} entries from {} blocks ({} bytes, {} uncompressed), {} retained rows, in {:.2}s",
            config.node_id,
            report.last_index,
            report.last_term,
            report.entries,
            report.blocks,
            report.block_bytes,
            report.uncompressed_bytes,
            report.retained_rows,
            report.seconds
        ),
    )?;
    Ok(report)
}

/// Makes `next` (the new machines) the restored state's membership. The
/// new members may reuse any id, the lost cluster's retired ones included:
/// their data directories are new, and a retired id in the state would get
/// every peer call they make refused. The lost cluster's last members that
/// `next` does not reuse are retired, as a membership change would retire
/// them, so a surviving old disk cannot rejoin under its id.
fn take_over_membership(state: &mut SmState, next: StoredMembership) {
    let reused = member_ids(&next);
    let old = member_ids(&state.membership);
    state.retired_ids.extend(old.difference(&reused));
    state.retired_ids.retain(|id| !reused.contains(id));
    state.membership = next;
}

/// Every id in a membership, voters and learners.
fn member_ids(membership: &StoredMembership) -> BTreeSet<u64> {
    membership.membership().nodes().map(|(id, _)| *id).collect()
}

/// The voters of the new cluster: every configured initial member.
fn new_membership(
    config: &NodeConfig,
) -> Result<Membership<crate::raft::NodeId, crate::raft::Member>, RestoreError> {
    let members = &config.cluster.initial_members;
    if !members.iter().any(|m| m.id == config.node_id) {
        return Err(RestoreError::Config {
            field: "cluster.initial_members",
            message: format!(
                "must list the restored cluster's voters, including this node ({})",
                config.node_id
            ),
        });
    }
    let voters: BTreeSet<u64> = members.iter().map(|m| m.id).collect();
    Membership::new(vec![voters], members_map(members)).map_err(|e| RestoreError::Config {
        field: "cluster.initial_members",
        message: e.to_string(),
    })
}

/// The blocks from the first one on, as long as each starts right after the
/// previous one, and (with `upto`) ends at or before it. A gap ends the
/// archive's usable part: restoring past it would invent a history.
fn contiguous_chain(
    blocks: Vec<BlockInfo>,
    upto: Option<u64>,
) -> Result<Vec<BlockInfo>, RestoreError> {
    let mut chain: Vec<BlockInfo> = Vec::new();
    for b in blocks {
        if upto.is_some_and(|u| b.last_index > u) {
            break;
        }
        if let Some(prev) = chain.last() {
            if b.first_index != prev.last_index + 1 {
                return Err(RestoreError::Unusable(format!(
                    "the archive has a gap or an overlap: {} ends at {}, {} starts at {}; \
                     run `otelraft archive verify`, or restore up to the gap with \
                     --upto {} --set-aside-later",
                    prev.key, prev.last_index, b.key, b.first_index, prev.last_index
                )));
            }
        }
        chain.push(b);
    }
    Ok(chain)
}

/// Sinks whose history starts before the archive does: when the archive
/// does not start at index 0, a sink's earlier advances are gone, so its
/// cursor starts where the first advance the archive shows says it stood,
/// and moves forward to any later advance's starting point. Every
/// advance's `from_index` was the sink's true cursor when it was proposed,
/// so this never passes the true cursor, and the compare-and-set of the
/// real chain then applies. (A deposed leader's stale advance can come
/// first, with a lower `from_index`; the next real advance corrects it.)
fn seed_sink(state: &mut SmState, seeded: &mut BTreeSet<String>, entry: &crate::raft::Entry) {
    let EntryPayload::Normal(cmd) = &entry.payload else {
        return;
    };
    let Some(Kind::Cursor(c)) = &cmd.kind else {
        return;
    };
    let sink = state.sinks.entry(c.sink.clone()).or_insert_with(|| {
        seeded.insert(c.sink.clone());
        SinkState {
            cursor: c.from_index,
            ..SinkState::default()
        }
    });
    if seeded.contains(&c.sink) && c.from_index > sink.cursor {
        sink.cursor = c.from_index;
    }
}

/// Entries `from..=last of chain`, as stored log rows.
async fn retained_rows(
    archive: &Archive,
    chain: &[BlockInfo],
    from: u64,
) -> Result<Vec<(u64, Bytes)>, RestoreError> {
    let mut rows = Vec::new();
    for info in chain.iter().filter(|b| b.last_index >= from) {
        let (opened, _) = reader::fetch_block(archive, info).await?;
        for pb in opened.entries.into_iter().filter(|e| e.index >= from) {
            rows.push((pb.index, Bytes::from(pb.encode_to_vec())));
        }
    }
    Ok(rows)
}

/// Writes the restored state into a new database, as an installed snapshot.
async fn write_node(
    config: &NodeConfig,
    state: &SmState,
    membership: StoredMembership,
    rows: &[(u64, Bytes)],
) -> Result<(), RestoreError> {
    let last = state
        .last_applied
        .ok_or_else(|| RestoreError::Unusable("nothing restored".into()))?;
    durable_dir::create(&config.data_dir).map_err(StoreError::Io)?;
    // The marker is durable before the database exists and removed only
    // after the vote is: a crash in between leaves a directory `serve`
    // refuses, never a half-restored node that bootstraps or votes low.
    let marker = config.data_dir.join(RESTORING_FILE);
    write_durably(&marker, &config.data_dir)?;
    let json = serde_json::to_vec(state).map_err(StoreError::json("restored state"))?;
    let data = store::carry::wrap(&json, rows);
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: membership,
    };
    let (mut log, mut sm) = store::open(&config.data_dir, Arc::new(Metrics::new())).await?;
    sm.install_snapshot(&meta, data)
        .await
        .map_err(StoreError::Io)?;
    log.save_vote(&Vote::new(last.leader_id.term, config.node_id))
        .await
        .map_err(StoreError::Io)?;
    log.save_committed(Some(last))
        .await
        .map_err(StoreError::Io)?;
    std::fs::remove_file(&marker).map_err(StoreError::Io)?;
    durable_dir::sync(&config.data_dir).map_err(StoreError::Io)?;
    Ok(())
}

fn write_durably(path: &std::path::Path, dir: &std::path::Path) -> Result<(), StoreError> {
    let file = std::fs::File::create(path).map_err(StoreError::Io)?;
    file.sync_all().map_err(StoreError::Io)?;
    durable_dir::sync(dir).map_err(StoreError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_members_may_reuse_retired_ids_and_unused_old_members_are_retired() {
        let member = |id: u64| crate::raft::Member {
            peer_addr: format!("127.0.0.{id}:4400"),
            admin_addr: format!("127.0.0.{id}:4480"),
            ..Default::default()
        };
        let membership = |ids: &[u64]| {
            let voters: BTreeSet<u64> = ids.iter().copied().collect();
            let nodes: std::collections::BTreeMap<u64, crate::raft::Member> =
                ids.iter().map(|id| (*id, member(*id))).collect();
            StoredMembership::new(None, Membership::new(vec![voters], nodes).unwrap())
        };
        // The lost cluster: members 1, 2, 5; ids 3 and 4 were removed.
        let mut state = SmState {
            membership: membership(&[1, 2, 5]),
            retired_ids: [3, 4].into(),
            ..SmState::default()
        };
        // The new machines reuse 1 and the retired 4, and add 6.
        take_over_membership(&mut state, membership(&[1, 4, 6]));
        assert_eq!(state.retired_ids, [2, 3, 5].into());
        assert_eq!(member_ids(&state.membership), [1, 4, 6].into());
    }
    use crate::archive::reader::listed_block as block;

    fn ranges(chain: &[BlockInfo]) -> Vec<(u64, u64)> {
        chain
            .iter()
            .map(|b| (b.first_index, b.last_index))
            .collect()
    }

    #[test]
    fn the_chain_stops_at_upto_and_refuses_a_gap() {
        let blocks = vec![block(0, 9), block(10, 19), block(20, 29), block(31, 40)];
        let chain = contiguous_chain(blocks.clone(), Some(25)).expect("contiguous up to 25");
        assert_eq!(ranges(&chain), vec![(0, 9), (10, 19)]);
        let chain = contiguous_chain(blocks.clone(), Some(29)).expect("contiguous up to 29");
        assert_eq!(ranges(&chain), vec![(0, 9), (10, 19), (20, 29)]);
        let err = contiguous_chain(blocks, None).expect_err("gap at 30");
        assert!(err.to_string().contains("--upto 29"), "{err}");
        assert!(!err.retryable());
    }

    #[test]
    fn a_sink_first_seen_mid_archive_starts_where_its_advance_does() {
        use crate::pb::log::{Command, CursorAdvance};
        let advance = |from_index, index| crate::raft::Entry {
            log_id: codec::log_id(3, 1, index + 1),
            payload: EntryPayload::Normal(Command {
                kind: Some(Kind::Cursor(CursorAdvance {
                    sink: "prom".into(),
                    from_index,
                    index,
                    ..Default::default()
                })),
            }),
        };
        let mut state = SmState::default();
        let mut seeded = BTreeSet::new();
        // A deposed leader's stale advance first, then the real chain.
        for entry in [advance(300, 320), advance(500, 510), advance(510, 520)] {
            seed_sink(&mut state, &mut seeded, &entry);
            apply_entry(&mut state, &entry);
        }
        assert_eq!(state.sinks["prom"].cursor, 520);

        // Without seeding the compare-and-set refuses the first advance.
        let mut unseeded = SmState::default();
        apply_entry(&mut unseeded, &advance(500, 510));
        assert_eq!(unseeded.sinks["prom"].cursor, 0);
    }
}
