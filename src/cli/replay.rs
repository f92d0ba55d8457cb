//! `otelraft archive replay`: backfills a sink from a range of archived
//! blocks, outside the cluster.
//!
//! Batches are built by the same `Sink::build` the exporters use, over
//! consecutive ranges of archived entries, with a private cursor state that
//! starts just before `from`: the same names, labels and per-series ordering
//! checks, the same dead-letter rules. Nothing is committed through Raft;
//! the cluster's own cursors are untouched.
//!
//! The replay writes under its own sink name, `<name>-replay`, so its
//! Prometheus marker series never mixes with the cluster's (a new leader
//! would otherwise read the replay's index as its own). Loki lines carry the
//! same `otelraft_record` as the cluster's export of the same entry, so
//! replaying a range Loki already holds stores nothing twice. Prometheus
//! refuses samples older than a series' newest (out of order): replaying
//! into a Prometheus that already holds newer data dead-letters them, and
//! the report counts them.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::archive::reader::{self, BlockInfo};
use crate::archive::{Archive, ArchiveError};
use crate::backoff::Backoff;
use crate::config::sink::SinkConfig;
use crate::export::http::Answer;
use crate::export::sink::{AnySink, Batch, Holding, Sink};
use crate::export::ExportError;
use crate::pb::log::{command::Kind, log_entry::Payload};
use crate::raft::{codec, Entry};
use crate::state::SinkState;

/// Tries per batch before a replay gives up on an unreachable sink.
const MAX_ATTEMPTS: u32 = 10;

/// The one error type of a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the archive failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The sink could not be built, or stayed unreachable.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The range is not in the archive.
    #[error("{0}")]
    Range(String),
    /// An archived entry does not decode.
    #[error("block {key}: {message}")]
    Entry {
        /// The block's key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ReplayError {
    /// Whether running the same replay again may succeed: only when the
    /// object store or the sink failed transiently.
    pub fn retryable(&self) -> bool {
        match self {
            ReplayError::Archive(e) => e.retryable(),
            ReplayError::Export(e) => matches!(e, ExportError::Unavailable { .. }),
            ReplayError::Range(_) | ReplayError::Entry { .. } => false,
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplayReport {
    /// The name the replay wrote under.
    pub sink: String,
    /// First and last log index replayed.
    pub from: u64,
    /// Last index replayed.
    pub to: u64,
    /// Requests the sink accepted.
    pub requests: u64,
    /// Items (samples, lines) in accepted requests.
    pub delivered: u64,
    /// Items a read-back found in the sink already, which were not sent
    /// (Loki; Prometheus refuses repeats instead, as dead letters).
    pub already_held: u64,
    /// Items kept out, by reason (see docs/export.md).
    pub dead_letters: BTreeMap<String, u64>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Replays archived entries `from..=upto` (default: to the archive's end)
/// into the sink `name`, configured by `config`.
pub async fn replay(
    archive: &Archive,
    name: &str,
    config: &SinkConfig,
    from: u64,
    upto: Option<u64>,
    out: &mut impl Write,
) -> Result<ReplayReport, ReplayError> {
    let started = Instant::now();
    let replay_name = format!("{name}-replay");
    let sink = AnySink::new(&replay_name, config)?;
    // Index 0 is Raft's first membership entry: there is never data in it,
    // and the cursor state needs a predecessor index.
    let from = from.max(1);
    let blocks = blocks_for(reader::list_blocks(archive).await?, from, upto)?;
    let upto = upto.unwrap_or(u64::MAX);
    let mut state = SinkState {
        cursor: from - 1,
        ..SinkState::default()
    };
    let mut report = ReplayReport {
        sink: replay_name,
        from,
        to: from - 1,
        ..ReplayReport::default()
    };
    let mut pending: Vec<Entry> = Vec::new();
    let mut pending_bytes = 0usize;
    for info in &blocks {
        let (opened, _) = reader::fetch_block(archive, info).await?;
        for pb in opened.entries {
            if pb.index < from || pb.index > upto {
                continue;
            }
            pending_bytes += payload_len(&pb.payload);
            let entry = codec::from_pb(pb).map_err(|e| ReplayError::Entry {
                key: info.key.clone(),
                message: e.to_string(),
            })?;
            pending.push(entry);
            if pending.len() as u64 >= config.max_batch_entries
                || pending_bytes >= config.max_batch_bytes
            {
                send_batch(&sink, config, &mut state, &pending, &mut report).await?;
                pending.clear();
                pending_bytes = 0;
            }
        }
        writeln!(
            out,
            "replayed {} (through index {})",
            info.key,
            report.to.max(state.cursor)
        )
        .map_err(ArchiveError::Output)?;
    }
    if !pending.is_empty() {
        send_batch(&sink, config, &mut state, &pending, &mut report).await?;
    }
    report.to = state.cursor;
    report.seconds = started.elapsed().as_secs_f64();
    writeln!(
        out,
        "replayed indices {}..={} into {}: {} requests, {} items delivered, {} dead-lettered, in {:.2}s",
        report.from,
        report.to,
        report.sink,
        report.requests,
        report.delivered,
        report.dead_letters.values().sum::<u64>(),
        report.seconds
    )
    .map_err(ArchiveError::Output)?;
    Ok(report)
}

/// The blocks holding `from..=upto`, checked to be contiguous.
fn blocks_for(
    blocks: Vec<BlockInfo>,
    from: u64,
    upto: Option<u64>,
) -> Result<Vec<BlockInfo>, ReplayError> {
    let chosen: Vec<BlockInfo> = blocks
        .into_iter()
        .filter(|b| b.last_index >= from && upto.is_none_or(|u| b.first_index <= u))
        .collect();
    let Some(first) = chosen.first() else {
        return Err(ReplayError::Range(format!(
            "the archive holds no block at or after index {from}"
        )));
    };
    if first.first_index > from {
        return Err(ReplayError::Range(format!(
            "index {from} is in no block; the archive's first block after it starts at {}",
            first.first_index
        )));
    }
    for pair in chosen.windows(2) {
        if pair[1].first_index != pair[0].last_index + 1 {
            return Err(ReplayError::Range(format!(
                "the archive has a gap or an overlap between {} and {}; run `otelraft archive verify`",
                pair[0].key, pair[1].key
            )));
        }
    }
    Ok(chosen)
}

fn payload_len(payload: &Option<Payload>) -> usize {
    match payload {
        Some(Payload::Command(cmd)) => match &cmd.kind {
            Some(Kind::Ingest(req)) => req.payload.len(),
            _ => 0,
        },
        _ => 0,
    }
}

/// Builds, sends and records one batch. A refusal dead-letters the whole
/// request, as the exporter does; an unreachable sink is retried
/// [`MAX_ATTEMPTS`] times. The sink may hold the range already (an earlier
/// replay, or the cluster's own export): before every attempt it is asked
/// what it holds, and only the rest is sent.
async fn send_batch(
    sink: &AnySink,
    config: &SinkConfig,
    state: &mut SinkState,
    entries: &[Entry],
    report: &mut ReplayReport,
) -> Result<(), ReplayError> {
    let mut batch: Batch = sink.build(state, entries);
    // Items the sink held before this replay sent them.
    let mut held_here = 0;
    if let Some(full) = batch.body.clone() {
        let mut backoff = Backoff::new(
            Duration::from_millis(config.retry_initial_ms),
            Duration::from_millis(config.retry_max_ms),
        );
        loop {
            let attempt = async {
                let body = match sink.holding(&full).await? {
                    Holding::All => {
                        held_here = batch.items;
                        return Ok(None);
                    }
                    Holding::Part { rest, held } => {
                        held_here = held;
                        rest
                    }
                    Holding::Nothing | Holding::Unknown => full.clone(),
                };
                sink.send(body).await.map(Some)
            };
            match attempt.await {
                Ok(None) => break,
                Ok(Some(Answer::Accepted)) => {
                    report.requests += 1;
                    break;
                }
                Ok(Some(Answer::Refused { status, message })) => {
                    tracing::warn!(sink = sink.name(), status, %message, from = batch.from, to = batch.to, "sink refused a replayed batch; the items it did not keep are dead-lettered");
                    // Loki keeps the valid entries of a request it answers
                    // 400; a read-back that fails counts them all as refused.
                    match sink.holding(&full).await {
                        // What Loki kept of this send is delivered by it.
                        Ok(Holding::All) => {}
                        Ok(Holding::Part { held, .. }) => {
                            batch.refused_part(status, &message, held)
                        }
                        _ => batch.refused_whole(status, &message),
                    }
                    break;
                }
                Err(e) if backoff.attempts() + 1 >= MAX_ATTEMPTS => return Err(e.into()),
                Err(e) => {
                    let hint = match &e {
                        ExportError::Unavailable { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    tracing::warn!(sink = sink.name(), error = %e, "replayed batch not delivered; retrying");
                    tokio::time::sleep(backoff.next_delay(hint)).await;
                }
            }
        }
    }
    let advance = batch.advance(sink.name(), 0);
    report.already_held += held_here;
    report.delivered += advance.delivered.saturating_sub(held_here);
    for (reason, n) in &advance.dead_letter_counts {
        *report.dead_letters.entry(reason.clone()).or_default() += n;
    }
    state.apply_advance(&advance);
    report.to = state.cursor;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::reader::listed_block as block;

    #[test]
    fn the_blocks_of_a_range_must_cover_it() {
        let all = vec![block(0, 9), block(10, 19), block(20, 29), block(31, 40)];
        let chosen = blocks_for(all.clone(), 12, Some(25)).expect("covered");
        assert_eq!(
            chosen.iter().map(|b| b.first_index).collect::<Vec<_>>(),
            vec![10, 20]
        );
        assert!(blocks_for(all.clone(), 5, None).is_err(), "gap at 30");
        assert!(blocks_for(all.clone(), 41, None).is_err(), "past the end");
        let late_start = vec![block(10, 19)];
        assert!(blocks_for(late_start, 5, None).is_err(), "5 is expired");
    }
}
