//! The leader-only export loop, one task per sink.
//!
//! Ordering, per sink and per term:
//! 1. Wait until this node leads in term `T`, then run a ReadIndex barrier so
//!    every advance committed by earlier leaders is applied here.
//! 2. Settle: ask the sink what it holds beyond the replicated cursor. If it
//!    holds the next batch already (the previous leader sent it and died
//!    before its advance committed), rebuild that batch from the log and
//!    commit its advance without sending it.
//! 3. Loop: build the next batch from the log, send it while the leader
//!    lease holds, and commit the advance before building the next one.
//!    After a send whose outcome is unknown (an unsettled takeover, a
//!    timeout, a retryable error), the sink is asked what it holds of the
//!    batch and only the rest is sent (`Sink::holding`).
//!
//! Fencing: a send starts only while this node leads term `T` and a quorum
//! acknowledged it within the election timeout, so no other leader can have
//! started. A request already on the wire when leadership moves is
//! byte-identical to the one the new leader builds for that range (batches
//! are pure functions of the log), and the sinks answer a repeat without
//! storing anything twice; the compare-and-set advance then refuses the
//! second record of the same range.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::dead_letter::Reason;
use super::http::Answer;
use super::progress::{ExportPhase, Registry};
use super::sink::{AnySink, Batch, Holding, Sink};
use super::ExportError;
use crate::backoff::Backoff;
use crate::config::sink::SinkConfig;
use crate::metrics;
use crate::node::{LeaderHandle, Node};
use crate::pb::log::{command::Kind, ClusterIdentity, Command};
use crate::state::SinkState;
use crate::store::StoreError;
use bytes::Bytes;

#[cfg(test)]
mod tests;

/// How often the export gauges are refreshed from the replicated state.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);

/// Longest wait for new entries before re-checking leadership.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// Starts one exporter task per configured sink, plus the task that keeps
/// the export gauges current. Every node runs them; they act only while the
/// node leads. Returns the tasks, which run until aborted.
pub fn spawn_exporters(
    node: &Arc<Node>,
    registry: &Registry,
) -> Result<Vec<tokio::task::JoinHandle<()>>, ExportError> {
    let mut tasks = Vec::new();
    for (name, config) in &node.config().sinks {
        registry.register(name, config.kind);
        tasks.push(spawn_one(
            node,
            registry,
            config,
            AnySink::new(name, config)?,
        ));
    }
    tasks.push(tokio::spawn(publish_gauges(node.clone(), registry.clone())));
    Ok(tasks)
}

fn spawn_one<N: LeaderHandle, S: Sink>(
    node: &Arc<N>,
    registry: &Registry,
    config: &SinkConfig,
    sink: S,
) -> tokio::task::JoinHandle<()> {
    let exporter = Exporter {
        node: node.clone(),
        registry: registry.clone(),
        config: config.clone(),
        sink,
    };
    tokio::spawn(exporter.run())
}

/// One sink's exporter, over any [`LeaderHandle`] (the node, or a test's
/// in-memory one).
struct Exporter<N, S> {
    node: Arc<N>,
    registry: Registry,
    config: SinkConfig,
    sink: S,
}

impl<N: LeaderHandle, S: Sink> Exporter<N, S> {
    async fn run(self) {
        let mut backoff = self.backoff();
        loop {
            let Some(term) = self.node.wait_for_leadership().await else {
                return; // Raft stopped.
            };
            let outcome = async {
                self.node
                    .barrier()
                    .await
                    .map_err(|e| ExportError::NotLeader(e.to_string()))?;
                self.ensure_identity().await?;
                let uncertain = self.settle(term).await?;
                self.export_while_leader(term, uncertain).await
            }
            .await;
            self.set_phase(ExportPhase::Idle);
            if let Err(e) = outcome {
                tracing::warn!(sink = self.sink.name(), term, error = %e, "exporter stopped; will resume when leading");
                self.registry
                    .update(self.sink.name(), |p| p.last_error = Some(e.to_string()));
                tokio::time::sleep(backoff.next_delay(None)).await;
            } else {
                backoff.reset();
            }
        }
    }

    /// Proposes the cluster's identity if the applied state has none: the
    /// first leader that exports names the cluster (also one restored from
    /// an archive that no longer held the name). The newest identity
    /// applied wins, so the exporters of one node propose one at a time and
    /// look again under the lock: a second proposal would rename the
    /// cluster under the first exporter's markers.
    async fn ensure_identity(&self) -> Result<(), ExportError> {
        static PROPOSING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        if self.node.read_state(|s| !s.cluster_id.is_empty()) {
            return Ok(());
        }
        let _one_at_a_time = PROPOSING.lock().await;
        if self.node.read_state(|s| !s.cluster_id.is_empty()) {
            return Ok(());
        }
        let id = format!("{:032x}", rand::random::<u128>());
        tracing::info!(sink = self.sink.name(), cluster_id = %id, "proposing the cluster's identity");
        let command = Command {
            kind: Some(Kind::Identity(ClusterIdentity { id })),
        };
        self.node
            .propose(command)
            .await
            .map_err(|e| ExportError::NotLeader(e.to_string()))?;
        Ok(())
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.config.retry_initial_ms),
            Duration::from_millis(self.config.retry_max_ms),
        )
    }

    fn set_phase(&self, phase: ExportPhase) {
        self.registry.update(self.sink.name(), |p| {
            p.phase = phase;
            if matches!(phase, ExportPhase::Idle | ExportPhase::CaughtUp) {
                p.oldest_unexported_ms = None;
            }
        });
    }

    fn sink_state(&self) -> SinkState {
        self.node.read_state(|s| s.sink(self.sink.name()))
    }

    /// Finds out whether the sink already holds the batch after the cursor,
    /// and records it if so. Retries until the sink answers or leadership
    /// is lost. True when the sink could not tell, so the first batch may
    /// repeat the previous leader's last one.
    async fn settle(&self, term: u64) -> Result<bool, ExportError> {
        self.set_phase(ExportPhase::Settling);
        let mut backoff = self.backoff();
        let state = self.sink_state();
        let held = loop {
            self.check_leading(term)?;
            match self.sink.delivered_beyond(&state).await {
                Ok(held) => break held,
                Err(e) => {
                    self.note_error(&e);
                    tokio::time::sleep(backoff.next_delay(retry_after(&e))).await;
                }
            }
        };
        // Every batch a leader sent covered committed entries, which are
        // applied here after the barrier: a marker beyond them was not
        // written by this cluster (a spoofed series, or another cluster
        // writing to the same sink) and proves nothing.
        let applied = self
            .node
            .read_state(|s| s.last_applied.map_or(0, |l| l.index));
        let held = match held {
            Some(to) if to > applied => {
                tracing::warn!(
                    sink = self.sink.name(),
                    claimed = to,
                    applied,
                    "the sink's marker claims an index this cluster never applied; ignoring it"
                );
                self.node
                    .metrics()
                    .export_takeovers
                    .get_or_create(&metrics::sink_outcome(self.sink.name(), "untrusted_marker"))
                    .inc();
                None
            }
            other => other,
        };
        let outcome = match held {
            Some(to) if to > state.cursor => {
                let batch = self.rebuild(&state, to).await?;
                self.commit(&batch, term).await?;
                tracing::info!(
                    sink = self.sink.name(),
                    from = state.cursor,
                    to,
                    "previous leader's batch found in the sink; recorded without resending"
                );
                "already_delivered"
            }
            Some(_) => "not_delivered",
            None => "unknown",
        };
        self.node
            .metrics()
            .export_takeovers
            .get_or_create(&metrics::sink_outcome(self.sink.name(), outcome))
            .inc();
        Ok(outcome == "unknown")
    }

    /// The batch `(state.cursor, to]`, whatever the batch limits say: the
    /// range the sink reported holding. Entries at its start may have been
    /// trimmed from this log; the sink holds them, so the batch covers the
    /// whole range all the same.
    async fn rebuild(&self, state: &SinkState, to: u64) -> Result<Batch, ExportError> {
        let applied = self
            .node
            .read_state(|s| s.last_applied.map_or(0, |l| l.index));
        if applied < to {
            return Err(ExportError::Protocol {
                sink: self.sink.name().to_string(),
                message: format!(
                    "sink reports index {to}, which is not in the local log (applied {applied})"
                ),
            });
        }
        let entries = self.node.read_range(state.cursor + 1, to + 1).await?;
        let mut batch = self.sink.build(state, &entries);
        batch.to = to;
        Ok(batch)
    }

    fn check_leading(&self, term: u64) -> Result<(), ExportError> {
        if self.node.leads_with_lease(term) {
            Ok(())
        } else {
            Err(ExportError::NotLeader(format!(
                "no longer leading term {term} with a fresh lease"
            )))
        }
    }

    async fn export_while_leader(&self, term: u64, uncertain: bool) -> Result<(), ExportError> {
        // The first batch after an unsettled takeover may repeat what the
        // previous leader sent: it is read back before it is sent.
        let mut may_repeat = uncertain;
        let mut watch = self.node.watch();
        loop {
            if !self.node.leads(term) {
                return Ok(());
            }
            let (state, applied, last_ingest) = self.node.read_state(|s| {
                let applied = s.last_applied.map_or(0, |l| l.index);
                (s.sink(self.sink.name()), applied, s.last_ingest_index)
            });
            // Only ingest entries hold data; the advances this loop commits
            // must not count as new work.
            if last_ingest <= state.cursor {
                self.set_phase(ExportPhase::CaughtUp);
                self.node.changed(&mut watch, IDLE_WAIT).await;
                continue;
            }
            let end = applied.min(state.cursor + self.config.max_batch_entries);
            let read = self
                .node
                .read_batch(state.cursor + 1, end + 1, self.config.max_batch_bytes)
                .await;
            let entries = match read {
                Err(StoreError::Hole { expected, found }) if expected == state.cursor + 1 => {
                    self.skip_trimmed(&state, found, term).await?;
                    continue;
                }
                other => other?,
            };
            if entries.is_empty() {
                return Err(ExportError::Protocol {
                    sink: self.sink.name().to_string(),
                    message: format!("log has no entry at index {}", state.cursor + 1),
                });
            }
            let oldest = super::sink::ingest_views(&entries)
                .first()
                .map(|v| v.proposed_ms());
            self.registry.update(self.sink.name(), |p| {
                p.phase = ExportPhase::Exporting;
                p.oldest_unexported_ms = oldest;
            });
            let mut batch = self.sink.build(&state, &entries);
            // The batch holds what it needs; the entries are not kept
            // through the send (`config::memory` counts them once).
            drop(entries);
            if batch.body.is_some() {
                // Either way the batch is in the sink now; `AlreadyHeld`
                // only means this node did not put it there.
                let _delivery = self.deliver(&mut batch, &state, term, may_repeat).await?;
            }
            may_repeat = false;
            self.commit(&batch, term).await?;
        }
    }

    /// Sends `batch` until the sink accepts or refuses it, retrying
    /// retryable failures with backoff while this node keeps its lease.
    ///
    /// After a send whose outcome is unknown (`uncertain`: a takeover the
    /// cursor could not settle, then any retryable failure, which may have
    /// come after the sink stored the request), the sink is asked what it
    /// holds before anything is sent again, and only the rest is sent. A
    /// failed read-back is retried like a failed send; nothing goes out
    /// blind.
    async fn deliver(
        &self,
        batch: &mut Batch,
        state: &SinkState,
        term: u64,
        may_repeat: bool,
    ) -> Result<Delivery, ExportError> {
        let mut backoff = self.backoff();
        let Some(full) = batch.body.clone() else {
            return Ok(Delivery::Sent);
        };
        let mut uncertain = may_repeat;
        loop {
            self.check_leading(term)?;
            let (body, repeat) = if uncertain {
                match self.read_back(&full).await {
                    Ok(Holding::All) => return Ok(Delivery::AlreadyHeld),
                    Ok(Holding::Part { rest, .. }) => (rest, false),
                    Ok(Holding::Nothing) => (full.clone(), false),
                    Ok(Holding::Unknown) => (full.clone(), true),
                    Err(e) => {
                        self.set_phase(ExportPhase::Retrying);
                        self.note_error(&e);
                        tokio::time::sleep(backoff.next_delay(retry_after(&e))).await;
                        continue;
                    }
                }
            } else {
                (full.clone(), false)
            };
            // The read-back took time: the lease is checked again right
            // before the send.
            self.check_leading(term)?;
            let answer = self.sink.send(body).await;
            let outcome = match &answer {
                Ok(Answer::Accepted) => "accepted",
                Ok(Answer::Refused { .. }) => "refused",
                Err(_) => "retryable_error",
            };
            let m = self.node.metrics();
            m.export_requests
                .get_or_create(&metrics::sink_outcome(self.sink.name(), outcome))
                .inc();
            if repeat {
                m.export_resent_requests
                    .get_or_create(&metrics::sink(self.sink.name()))
                    .inc();
            }
            match answer {
                Ok(Answer::Accepted) => {
                    self.registry
                        .update(self.sink.name(), |p| p.last_error = None);
                    return Ok(Delivery::Sent);
                }
                Ok(Answer::Refused { status, message }) => {
                    // A refusal of a repeat means the sink holds the range
                    // already (a deposed leader's late request, or our own
                    // send whose advance did not commit). Ask before
                    // declaring anything dead.
                    let applied = self
                        .node
                        .read_state(|s| s.last_applied.map_or(0, |l| l.index));
                    let held = self.sink.delivered_beyond(state).await;
                    // A marker beyond the applied log is not ours (see settle).
                    if let Ok(Some(held)) = held.map(|h| h.filter(|i| *i <= applied)) {
                        if held >= batch.to {
                            return Ok(Delivery::AlreadyHeld);
                        }
                        if held > batch.from {
                            // The sink holds part of this range from another
                            // leader's differently sized batch: settle again.
                            return Err(ExportError::Protocol {
                                sink: self.sink.name().to_string(),
                                message: format!("sink holds up to index {held}, inside this batch; settling again"),
                            });
                        }
                    }
                    // Loki refuses a request with 400 while keeping its
                    // valid entries: only what it lacks is dead.
                    match self.read_back(&full).await? {
                        Holding::All => return Ok(Delivery::AlreadyHeld),
                        Holding::Part { held, .. } => {
                            tracing::error!(sink = self.sink.name(), status, %message, from = batch.from, to = batch.to, held, "sink refused part of a batch; the items it did not keep are dead-lettered");
                            batch.refused_part(status, &message, held);
                            return Ok(Delivery::Sent);
                        }
                        Holding::Nothing | Holding::Unknown => {}
                    }
                    tracing::error!(sink = self.sink.name(), status, %message, from = batch.from, to = batch.to, "sink refused a batch the exporter's checks did not predict; its items are dead-lettered");
                    batch.refused_whole(status, &message);
                    return Ok(Delivery::Sent);
                }
                Err(e) => {
                    uncertain = true;
                    self.set_phase(ExportPhase::Retrying);
                    self.note_error(&e);
                    tokio::time::sleep(backoff.next_delay(retry_after(&e))).await;
                }
            }
        }
    }

    /// Asks the sink what it holds of `body`, and counts the answer.
    async fn read_back(&self, body: &Bytes) -> Result<Holding, ExportError> {
        let holding = self.sink.holding(body).await?;
        let outcome = match &holding {
            Holding::Unknown => return Ok(holding),
            Holding::Nothing => "none",
            Holding::Part { held, .. } => {
                tracing::info!(
                    sink = self.sink.name(),
                    held,
                    "the sink holds part of the batch; sending the rest"
                );
                "part"
            }
            Holding::All => "all",
        };
        self.node
            .metrics()
            .export_readbacks
            .get_or_create(&metrics::sink_outcome(self.sink.name(), outcome))
            .inc();
        Ok(holding)
    }

    /// The entries after the cursor up to `found - 1` are gone from this
    /// leader's log: trimmed before this sink consumed them. Waiting would
    /// stall the sink forever, so the range is recorded as dead-lettered
    /// (reason `trimmed`, naming the range to backfill from the archive)
    /// and export goes on from `found`.
    async fn skip_trimmed(
        &self,
        state: &SinkState,
        found: u64,
        term: u64,
    ) -> Result<(), ExportError> {
        let (from, to) = (state.cursor + 1, found - 1);
        let name = self.sink.name();
        tracing::error!(sink = name, from, to, "entries were trimmed before this sink consumed them; skipping them, backfill with `otelraft archive replay`");
        let mut batch = Batch::new(state.cursor, state);
        batch.to = to;
        let subject = format!("log entries {from}..={to}");
        if let Some(d) = batch.dead_letters_of(
            from,
            Reason::Trimmed,
            &subject,
            1,
            0,
            (to - from + 1) as f64,
        ) {
            d.detail = format!(
                "backfill with `otelraft archive replay --to {name} --from {from} --upto {to}`"
            );
        }
        self.commit(&batch, term).await
    }

    /// Commits the batch's advance through Raft; returns once applied here.
    async fn commit(&self, batch: &Batch, term: u64) -> Result<(), ExportError> {
        let command = Command {
            kind: Some(Kind::Cursor(batch.advance(self.sink.name(), term))),
        };
        self.node
            .propose(command)
            .await
            .map_err(|e| ExportError::NotLeader(e.to_string()))?;
        Ok(())
    }

    fn note_error(&self, e: &ExportError) {
        tracing::warn!(sink = self.sink.name(), error = %e, "export attempt failed; retrying");
        self.registry
            .update(self.sink.name(), |p| p.last_error = Some(e.to_string()));
    }
}

enum Delivery {
    Sent,
    AlreadyHeld,
}

fn retry_after(e: &ExportError) -> Option<Duration> {
    match e {
        ExportError::Unavailable { retry_after, .. } => *retry_after,
        _ => None,
    }
}

/// What the gauges show of one sink, copied out of the replicated state
/// without its series marks or dead letters.
struct SinkFigures<'a> {
    name: &'a str,
    cursor: u64,
    payload_bytes: u64,
    delivered: u64,
    dead_letter_counts: BTreeMap<String, u64>,
}

impl<'a> SinkFigures<'a> {
    fn of(name: &'a str, state: Option<&SinkState>) -> Self {
        SinkFigures {
            name,
            cursor: state.map_or(0, |s| s.cursor),
            payload_bytes: state.map_or(0, |s| s.payload_bytes),
            delivered: state.map_or(0, |s| s.delivered),
            dead_letter_counts: state
                .map(|s| s.dead_letter_counts.clone())
                .unwrap_or_default(),
        }
    }
}

/// Keeps the export gauges equal to the replicated state (every node) and
/// the local progress (leader).
async fn publish_gauges(node: Arc<Node>, registry: Registry) {
    loop {
        let (applied, total_bytes, sinks) = node.read_state(|state| {
            let total_bytes: u64 = state.signals.values().map(|t| t.payload_bytes).sum();
            let sinks: Vec<SinkFigures> = node
                .config()
                .sinks
                .keys()
                .map(|name| SinkFigures::of(name, state.sinks.get(name)))
                .collect();
            (state.last_ingest_index, total_bytes, sinks)
        });
        let progress = registry.snapshot();
        let m = node.metrics();
        for s in &sinks {
            let name = s.name;
            let l = metrics::sink(name);
            m.export_cursor.get_or_create(&l).set(s.cursor as i64);
            m.export_lag_entries
                .get_or_create(&l)
                .set(applied.saturating_sub(s.cursor) as i64);
            m.export_lag_bytes
                .get_or_create(&l)
                .set(total_bytes.saturating_sub(s.payload_bytes) as i64);
            m.export_delivered_items
                .get_or_create(&l)
                .set(s.delivered as i64);
            for reason in super::dead_letter::Reason::ALL {
                let n = s
                    .dead_letter_counts
                    .get(reason.as_str())
                    .copied()
                    .unwrap_or(0);
                m.export_dead_letters
                    .get_or_create(&metrics::sink_outcome(name, reason.as_str()))
                    .set(n as i64);
            }
            let lag_s = progress
                .get(name)
                .and_then(|p| p.oldest_unexported_ms)
                .filter(|_| applied > s.cursor)
                .map_or(0.0, |t| {
                    (crate::clock::unix_millis() - t).max(0) as f64 / 1000.0
                });
            m.export_lag_seconds.get_or_create(&l).set(lag_s);
        }
        if node.raft_metrics().running_state.is_err() {
            return;
        }
        tokio::time::sleep(PUBLISH_INTERVAL).await;
    }
}
