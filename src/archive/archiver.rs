//! The leader's archive loop: seal, upload, record.
//!
//! Ordering, per block:
//! 1. Decide the range. The leader proposes `ArchiveSeal{first, last}` with
//!    `first` = the first index not yet archived, once the entries from it reach
//!    `block_max_bytes` or the oldest of them is `block_max_age_ms` old. The
//!    seal applies only if no other seal is pending, so exactly one range is
//!    settled per block, whoever leads.
//! 2. Upload the pending range with `PutMode::Create` under the key derived
//!    from it. The bytes are a pure function of the committed entries, so
//!    whichever leader uploads produces the same object; finding the object
//!    already there (a predecessor's upload) is success once its checksum
//!    matches.
//! 3. Record `Archived{range, key, checksum}` through Raft; that moves the
//!    archive cursor, which lets every member trim its log.
//!
//! Fencing: uploads start only while this node leads its term with a fresh
//! lease. A deposed leader can at worst finish uploading the committed
//! pending range, which is the same object.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::ServerState;

use super::block::{self, RawEntry, SealedBlock};
use super::bounds;
use super::progress::{ArchivePhase, Progress};
use super::store::{count_request, retry_backoff, Archive};
use super::ArchiveError;
use crate::config::archive::ArchiveConfig;
use crate::node::Node;
use crate::pb::log::{command::Kind, ArchiveSeal, Archived, Command};
use crate::raft::codec;
use crate::state::PendingSeal;

/// Longest wait for new entries before re-checking leadership and age.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// Opens the archive and starts its tasks: the archiver (acts only while
/// this node leads) and the store probe (every node). Does nothing but set
/// the phase when the archive is disabled.
/// Returns the tasks, which run until aborted.
pub fn spawn(
    node: &Arc<Node>,
    progress: Progress,
) -> Result<Vec<tokio::task::JoinHandle<()>>, ArchiveError> {
    let config = node.config().archive.clone();
    if !config.enabled {
        progress.update(|p| p.phase = ArchivePhase::Disabled);
        return Ok(Vec::new());
    }
    let archive = Archive::open(&config)?;
    progress.update(|p| {
        p.phase = ArchivePhase::Idle;
        p.location = archive.location.clone();
    });
    let probe = tokio::spawn(super::probe::run(
        node.clone(),
        progress.clone(),
        archive.clone(),
        config.clone(),
    ));
    let archiver = Archiver {
        node: node.clone(),
        progress,
        archive,
        config,
    };
    Ok(vec![probe, tokio::spawn(archiver.run())])
}

struct Archiver {
    node: Arc<Node>,
    progress: Progress,
    archive: Archive,
    config: ArchiveConfig,
}

impl Archiver {
    async fn run(self) {
        let mut backoff = retry_backoff(&self.config);
        loop {
            let Some(term) = self.node.wait_for_leadership().await else {
                return; // Raft stopped.
            };
            let outcome = async {
                self.node
                    .barrier()
                    .await
                    .map_err(|e| ArchiveError::NotLeader(e.to_string()))?;
                self.archive_while_leader(term).await
            }
            .await;
            self.set_phase(ArchivePhase::Idle);
            if let Err(e) = outcome {
                tracing::warn!(term, error = %e, "archiver stopped; will resume when leading");
                self.note_error(&e);
                tokio::time::sleep(backoff.next_delay(None)).await;
            } else {
                backoff.reset();
            }
        }
    }

    fn set_phase(&self, phase: ArchivePhase) {
        self.progress.update(|p| p.phase = phase);
    }

    fn note_error(&self, e: &ArchiveError) {
        self.progress.update(|p| p.last_error = Some(e.to_string()));
    }

    fn check_leading(&self, term: u64) -> Result<(), ArchiveError> {
        if self.node.leads_with_lease(term) {
            Ok(())
        } else {
            Err(ArchiveError::NotLeader(format!(
                "no longer leading term {term} with a fresh lease"
            )))
        }
    }

    async fn archive_while_leader(&self, term: u64) -> Result<(), ArchiveError> {
        let mut rx = self.node.raft().metrics();
        // When this node first saw the current first unarchived index, for
        // ranges without an ingest stamp to age them by.
        let mut first_seen: Option<(u64, Instant)> = None;
        let mut open: Option<OpenBlock> = None;
        let mut retention_due = Instant::now();
        loop {
            {
                let m = rx.borrow_watched();
                if m.state != ServerState::Leader || m.current_term != term {
                    return Ok(());
                }
            }
            let (archive, last_content, applied) = self.node.read_state(|s| {
                let applied = s.last_applied.map_or(0, |l| l.index);
                (s.archive.clone(), s.last_content_index, applied)
            });
            if let Some(pending) = archive.pending {
                self.upload_and_record(term, pending, archive.blocks == 0)
                    .await?;
                continue;
            }
            if Instant::now() >= retention_due {
                retention_due = Instant::now() + retention_interval(&self.config);
                if let Err(e) = self.expire(term, archive.next_index()).await {
                    tracing::warn!(error = %e, "archive retention pass failed; will retry");
                    self.note_error(&e);
                }
            }
            if archive.next_index() > last_content {
                self.set_phase(ArchivePhase::CaughtUp);
                let _ = tokio::time::timeout(IDLE_WAIT, rx.changed()).await;
                continue;
            }
            let next = archive.next_index();
            let block = match open.take() {
                Some(block) if block.opened_at == next => block,
                _ => OpenBlock::new(next),
            };
            let block = self.measure(block, applied, archive.blocks).await?;
            let (first, last, full, proposed) = (
                block.first,
                block.last,
                block.full,
                block.proposed_unix_nanos,
            );
            open = Some(block);
            let age = match proposed.and_then(age_since) {
                Some(age) => age,
                None => match first_seen {
                    Some((index, at)) if index == first => at.elapsed(),
                    _ => {
                        first_seen = Some((first, Instant::now()));
                        Duration::ZERO
                    }
                },
            };
            let max_age = Duration::from_millis(self.config.block_max_age_ms);
            let Some(last) = last else {
                // Nothing applied past the cursor yet.
                let _ = tokio::time::timeout(IDLE_WAIT, rx.changed()).await;
                continue;
            };
            if !full && age < max_age {
                self.set_phase(ArchivePhase::Sealing);
                let wait = (max_age - age).min(IDLE_WAIT);
                let _ = tokio::time::timeout(wait, rx.changed()).await;
                continue;
            }
            self.set_phase(ArchivePhase::Sealing);
            let command = Command {
                kind: Some(Kind::Seal(ArchiveSeal {
                    first_index: first,
                    last_index: last,
                    term,
                    after_trim: first > next,
                })),
            };
            self.node
                .propose(command)
                .await
                .map_err(|e| ArchiveError::NotLeader(e.to_string()))?;
        }
    }

    /// Extends `block` with the committed rows after its last measured one,
    /// up to `applied`, stopping at the row that fills it.
    ///
    /// Committed rows never change, so each row is read once per block: the
    /// check after every commit costs the new rows, not the whole unsealed
    /// range (which made it quadratic in the block size).
    ///
    /// A block's first read may find the log beginning past it: those
    /// entries were trimmed while the archive was off (enabled on a running
    /// cluster, or re-enabled), and waiting for them would hold the trim
    /// point, and so ingest, forever. The block then begins where the log
    /// does, and its seal says so (`after_trim`). Past the first row a
    /// missing row is an error: while the archive is on, nothing at or past
    /// its cursor is trimmed.
    async fn measure(
        &self,
        mut block: OpenBlock,
        applied: u64,
        blocks: u64,
    ) -> Result<OpenBlock, ArchiveError> {
        let from = block.last.map_or(block.first, |l| l + 1);
        if block.full || applied < from {
            return Ok(block);
        }
        let budget = self.config.block_max_bytes.saturating_sub(block.bytes);
        let rows = self
            .node
            .log_store()
            .raw_rows(from, applied, budget)
            .await?;
        match (rows.first(), block.last) {
            (Some(&(index, _)), _) if index == from => {}
            (Some(&(index, _)), None) => {
                if blocks == 0 {
                    tracing::warn!(
                        first_index = index,
                        "the log was trimmed before the archive was enabled: the archive begins at the first retained entry"
                    );
                } else {
                    tracing::error!(
                        from,
                        to = index - 1,
                        "entries were trimmed while the archive was off; the archive has a gap there"
                    );
                }
                block.first = index;
            }
            // Nothing retained up to `applied` yet: wait for new entries.
            (None, None) => return Ok(block),
            (Some(&(index, _)), Some(_)) => {
                return Err(ArchiveError::Missing(format!(
                    "log resumes at {index} but the block needs {from}"
                )))
            }
            (None, Some(_)) => {
                return Err(ArchiveError::Missing(format!(
                    "log has no entry at index {from} to archive"
                )))
            }
        }
        for (index, bytes) in &rows {
            block.bytes += bytes.len();
            block.last = Some(*index);
            if block.proposed_unix_nanos.is_none() {
                block.proposed_unix_nanos = proposal_stamp(bytes);
            }
        }
        block.full = block.bytes >= self.config.block_max_bytes;
        Ok(block)
    }

    /// Uploads the pending block (or finds it already stored) and records
    /// it. Retries store errors while this node keeps its lease. Before the
    /// cluster's first block, the bucket records where the archive begins;
    /// after each record, how far it reaches (see `bounds`).
    async fn upload_and_record(
        &self,
        term: u64,
        pending: PendingSeal,
        first_block: bool,
    ) -> Result<(), ArchiveError> {
        self.set_phase(ArchivePhase::Uploading);
        if first_block {
            self.record_origin(term, pending.first_index).await?;
        }
        let rows = self
            .node
            .log_store()
            .raw_rows(pending.first_index, pending.last_index, usize::MAX)
            .await?;
        let covers = rows.first().map(|(i, _)| *i) == Some(pending.first_index)
            && rows.last().map(|(i, _)| *i) == Some(pending.last_index);
        if !covers {
            return Err(ArchiveError::Missing(format!(
                "log does not hold the sealed range {}..={}",
                pending.first_index, pending.last_index
            )));
        }
        let raw: Vec<RawEntry> = rows
            .into_iter()
            .map(|(index, bytes)| RawEntry { index, bytes })
            .collect();
        let sealed = block::seal(&raw).map_err(|source| ArchiveError::Block {
            key: format!("{}..={}", pending.first_index, pending.last_index),
            source,
        })?;
        drop(raw);
        let key = block::block_key(&self.archive.prefix, sealed.first_index, sealed.last_index);
        let stored = self
            .retrying(term, "upload a block", || self.put_once(&key, &sealed))
            .await?;
        let command = Command {
            kind: Some(Kind::Archived(Archived {
                first_index: sealed.first_index,
                last_index: sealed.last_index,
                key: key.to_string(),
                checksum: stored.checksum,
                size: stored.size,
                uncompressed_bytes: sealed.uncompressed_bytes,
            })),
        };
        self.node
            .propose(command)
            .await
            .map_err(|e| ArchiveError::NotLeader(e.to_string()))?;
        self.progress.update(|p| p.last_error = None);
        tracing::debug!(key = %key, bytes = sealed.bytes.len(), "block archived");
        // The record is committed; a failed head write only leaves the head
        // behind until the next block raises it.
        self.check_leading(term)?;
        if let Err(e) = bounds::raise_head(&self.archive, sealed.last_index).await {
            tracing::warn!(error = %e, "recording the archive's head failed");
            self.note_error(&e);
        }
        Ok(())
    }

    /// Records where the cluster's archive begins, before its first block.
    /// An unreadable origin record does not stop archiving: `verify`
    /// reports it.
    async fn record_origin(&self, term: u64, first_index: u64) -> Result<(), ArchiveError> {
        let origin = self
            .retrying(term, "record the archive's origin", || async {
                match bounds::ensure_origin(&self.archive, first_index).await {
                    Err(e) if !e.retryable() => {
                        tracing::error!(error = %e, "the archive's origin record is unusable");
                        self.note_error(&e);
                        Ok(None)
                    }
                    other => other.map(Some),
                }
            })
            .await?;
        if origin.is_some_and(|o| o != first_index) {
            tracing::warn!(
                origin,
                first_index,
                location = %self.archive.location,
                "the archive already records another origin: another cluster may share this prefix"
            );
        }
        Ok(())
    }

    /// Runs `op` until it succeeds, backing off after each failure, while
    /// this node keeps its lease.
    async fn retrying<T, F, Fut>(&self, term: u64, what: &str, op: F) -> Result<T, ArchiveError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, ArchiveError>>,
    {
        let mut backoff = retry_backoff(&self.config);
        loop {
            self.check_leading(term)?;
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.set_phase(ArchivePhase::Retrying);
                    tracing::warn!(error = %e, "archive: {what} failed; retrying");
                    self.note_error(&e);
                    tokio::time::sleep(backoff.next_delay(None)).await;
                }
            }
        }
    }

    /// One create-only upload. An object already under the key is accepted
    /// if it is this block: byte-identical, or (after an upgrade changed
    /// the compressor's output) a valid block of the same entries.
    async fn put_once(
        &self,
        key: &object_store::path::Path,
        sealed: &SealedBlock,
    ) -> Result<Stored, ArchiveError> {
        let started = Instant::now();
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let payload = PutPayload::from_bytes(sealed.bytes.clone());
        let outcome = self.archive.store.put_opts(key, payload, options).await;
        count_request(self.node.metrics(), "put", &outcome);
        match outcome {
            Ok(_) => {
                self.node
                    .metrics()
                    .archive_upload_seconds
                    .observe(started.elapsed().as_secs_f64());
                Ok(Stored {
                    checksum: sealed.checksum.clone(),
                    size: sealed.bytes.len() as u64,
                })
            }
            Err(object_store::Error::AlreadyExists { .. }) => {
                let existing = self.get(key).await?;
                let found =
                    block::checksum_of(&existing).map_err(|source| ArchiveError::Block {
                        key: key.to_string(),
                        source,
                    })?;
                if found == sealed.checksum || same_entries(&existing, sealed) {
                    tracing::info!(key = %key, "block already in the archive (a previous leader uploaded it); recording it");
                    return Ok(Stored {
                        checksum: found,
                        size: existing.len() as u64,
                    });
                }
                Err(ArchiveError::Conflict {
                    key: key.to_string(),
                    expected: sealed.checksum.clone(),
                    found,
                })
            }
            Err(source) => Err(ArchiveError::Store {
                key: key.to_string(),
                source,
            }),
        }
    }

    async fn get(&self, key: &object_store::path::Path) -> Result<Bytes, ArchiveError> {
        let outcome = match self.archive.store.get(key).await {
            Ok(r) => {
                super::store::check_object_size(key.as_ref(), r.meta.size)?;
                r.bytes().await
            }
            Err(e) => Err(e),
        };
        count_request(self.node.metrics(), "get", &outcome);
        outcome.map_err(ArchiveError::store(key.to_string()))
    }

    /// Deletes recorded blocks (those ending before `next_index`) uploaded
    /// longer ago than the retention: only the run that starts at the
    /// oldest block and has no hole, so the bucket's `expired` record
    /// (raised first) accounts for exactly what is gone.
    async fn expire(&self, term: u64, next_index: u64) -> Result<(), ArchiveError> {
        if self.config.retention_days <= 0.0 {
            return Ok(());
        }
        let retention = Duration::from_secs_f64(self.config.retention_days * 86_400.0);
        let now = crate::clock::since_epoch();
        let horizon_ms = now.saturating_sub(retention).as_millis() as i64;
        let prefix = block::blocks_prefix(&self.archive.prefix);
        let mut listing = self.archive.store.list(Some(&prefix));
        let mut blocks = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(ArchiveError::store(prefix.to_string()))?;
            if let Some((first, last)) =
                block::parse_block_key(&self.archive.prefix, &meta.location)
            {
                blocks.push((first, last, meta));
            }
        }
        blocks.sort_by_key(|(first, _, _)| *first);
        let mut expired = Vec::new();
        let mut reach: Option<u64> = None;
        for (first, last, meta) in blocks {
            let contiguous = reach.is_none_or(|r| first == r + 1);
            // Only blocks the cluster recorded: a pending block's object
            // must stay until its record commits.
            let due = last < next_index && meta.last_modified.timestamp_millis() < horizon_ms;
            if !contiguous || !due {
                break;
            }
            reach = Some(last);
            expired.push(meta.location);
        }
        let Some(reach) = reach else {
            return Ok(());
        };
        // Recorded before the deletes, so the bucket never lacks a block
        // that no record accounts for.
        self.check_leading(term)?;
        bounds::raise_expired(&self.archive, reach + 1).await?;
        for key in expired {
            self.check_leading(term)?;
            let outcome = self.archive.store.delete(&key).await;
            count_request(self.node.metrics(), "delete", &outcome);
            outcome.map_err(ArchiveError::store(key.to_string()))?;
            self.node.metrics().archive_expired_blocks.inc();
            tracing::info!(key = %key, "archive block expired by retention");
        }
        Ok(())
    }
}

/// What the store holds for a block.
struct Stored {
    checksum: String,
    size: u64,
}

fn same_entries(existing: &[u8], sealed: &SealedBlock) -> bool {
    match (block::open(existing), block::open(&sealed.bytes)) {
        (Ok(a), Ok(b)) => a.entries == b.entries,
        _ => false,
    }
}

/// How often retention runs: often enough for short test retentions, at
/// most hourly.
fn retention_interval(config: &ArchiveConfig) -> Duration {
    let retention = Duration::from_secs_f64((config.retention_days * 86_400.0).max(1.0));
    (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// The unsealed run of committed entries from `first`, as far as the
/// archiver has measured it.
struct OpenBlock {
    /// The archive's next index when the block was opened.
    opened_at: u64,
    /// The block's first index: `opened_at`, or where the log begins if it
    /// was trimmed past it.
    first: u64,
    /// The last row measured; `None` before the first read.
    last: Option<u64>,
    /// Stored bytes of `first..=last`.
    bytes: usize,
    /// Proposal stamp of the first ingest entry in the run: the oldest.
    proposed_unix_nanos: Option<u64>,
    /// Reached `block_max_bytes`; no further rows belong to this block.
    full: bool,
}

impl OpenBlock {
    fn new(first: u64) -> Self {
        Self {
            opened_at: first,
            first,
            last: None,
            bytes: 0,
            proposed_unix_nanos: None,
            full: false,
        }
    }
}

/// The proposal stamp of a stored row, if it is an ingest entry.
fn proposal_stamp(row: &Bytes) -> Option<u64> {
    match codec::decode(row.clone()).ok()?.payload {
        openraft::EntryPayload::Normal(Command {
            kind: Some(Kind::Ingest(r)),
        }) => Some(r.proposed_unix_nanos),
        _ => None,
    }
}

/// Time since a proposal stamp (zero for a stamp from the future).
fn age_since(proposed_unix_nanos: u64) -> Option<Duration> {
    let now = crate::clock::since_epoch();
    Some(now.saturating_sub(Duration::from_nanos(proposed_unix_nanos)))
}
