//! The submit path that ingest calls: the in-flight budget, then commit
//! through whichever member leads.
//!
//! This is where "acknowledge only after commit" is enforced: a request
//! resolves with a `Receipt` only when `client_write` on the leader has
//! returned, which openraft does after the entry is committed (durable on a
//! quorum) and applied. Concurrent requests become concurrent
//! `client_write`s; openraft batches them into one append, and the store's
//! single writer turns each append into one fsync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::{Node, ProposeError};
use crate::clock;
use crate::ingest::{IngestHandler, Receipt, SubmitError, SubmitFuture};
use crate::metrics::Metrics;
use crate::pb::log::{command::Kind, Command, IngestRequest, Signal};
use crate::peer::wire;

/// How long to wait between looks for a leader while a request waits.
const LEADER_POLL: Duration = Duration::from_millis(50);

/// Submits requests through a node; ingest holds it as its
/// `IngestHandler`, and the peer service hands it forwarded writes.
#[derive(Clone)]
pub struct Submitter {
    node: Arc<Node>,
    /// Bytes of requests this node has accepted but not yet answered.
    inflight: Arc<Semaphore>,
}

impl Submitter {
    /// The submit path of `node`, with its in-flight budget
    /// (`ingest.max_inflight_bytes`).
    pub fn new(node: Arc<Node>) -> Submitter {
        let inflight = Arc::new(Semaphore::new(node.config().ingest.max_inflight_bytes));
        Submitter { node, inflight }
    }

    /// Reserves `bytes` of the in-flight budget until the returned guard
    /// drops (also when a client disconnects and the request is cancelled).
    fn reserve(&self, bytes: usize) -> Result<Reservation, SubmitError> {
        let max = self.node.config().ingest.max_inflight_bytes;
        if bytes > max {
            return Err(SubmitError::TooLarge(format!(
                "{bytes} bytes exceed ingest.max_inflight_bytes ({max})"
            )));
        }
        let permits = u32::try_from(bytes.max(1))
            .map_err(|_| SubmitError::TooLarge(format!("{bytes} bytes")))?;
        let Ok(permit) = self.inflight.clone().try_acquire_many_owned(permits) else {
            return Err(SubmitError::Overloaded {
                reason: "too much data in flight on this node".to_string(),
                retry_after: Duration::from_secs(1),
            });
        };
        let metrics = self.node.metrics().clone();
        metrics.ingest_inflight_bytes.inc_by(bytes as i64);
        Ok(Reservation {
            _permit: permit,
            bytes: bytes as i64,
            metrics,
        })
    }

    /// Proposes `request` on this node, which must be the leader; resolves
    /// once it is committed and applied. `NoLeader` means nothing was
    /// proposed here, so the caller may retry elsewhere.
    pub async fn write_as_leader(&self, mut request: IngestRequest) -> Result<u64, SubmitError> {
        let node = &self.node;
        // No "accepting" check here: a request that got past it in
        // `submit_owned` must be allowed to finish while the node drains.
        if node.is_witness() {
            // It leads only to hand over to a data node; clients retry.
            return Err(SubmitError::NoLeader {
                reason: "the witness leads only until a data node takes over".to_string(),
                retry_after: Duration::from_secs(1),
            });
        }
        let retained = node.metrics().log_bytes.get();
        let budget = node.config().raft.max_log_bytes;
        if u64::try_from(retained).unwrap_or(0) >= budget {
            return Err(SubmitError::Overloaded {
                reason: format!(
                    "the retained log ({retained} bytes) is at its budget (raft.max_log_bytes = {budget}) until sinks and the archive catch up"
                ),
                retry_after: Duration::from_secs(5),
            });
        }
        request.proposed_unix_nanos = clock::unix_nanos();
        request.proposer_node = node.id();
        let command = Command {
            kind: Some(Kind::Ingest(request)),
        };
        match node.propose(command).await {
            Ok(index) => Ok(index),
            Err(ProposeError::NotLeader { leader }) => Err(SubmitError::NoLeader {
                reason: format!("node {} is not the leader (leader: {leader:?})", node.id()),
                retry_after: Duration::from_secs(1),
            }),
            Err(e @ (ProposeError::Unknown(_) | ProposeError::Stopped(_))) => {
                Err(SubmitError::Internal(e.to_string()))
            }
        }
    }

    /// Commits `request` through whichever member leads, forwarding when
    /// that is not this node. Waits for a leader up to the commit timeout.
    async fn commit_anywhere(&self, request: IngestRequest) -> Result<u64, SubmitError> {
        let config = self.node.config();
        let timeout = Duration::from_millis(config.ingest.commit_timeout_ms);
        let deadline = Instant::now() + timeout;
        let leader_wait = Duration::from_millis(config.raft.election_timeout_max_ms * 3);
        let leader_deadline = Instant::now() + leader_wait.min(timeout);
        let retry = |reason: String| SubmitError::NoLeader {
            reason,
            retry_after: Duration::from_secs(1),
        };
        loop {
            let outcome = match self.node.leader() {
                None => Err(retry("no leader is known".to_string())),
                Some((id, _)) if id == self.node.id() => {
                    self.write_as_leader(request.clone()).await
                }
                Some((id, member)) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    match self
                        .node
                        .peers()
                        .forward(&member.peer_addr, request.clone(), remaining)
                        .await
                    {
                        Ok(index) => Ok(index),
                        Err(e) => Err(wire::submit_error(id, e)),
                    }
                }
            };
            match outcome {
                // Only "nothing was proposed" answers are retried here; any
                // other failure may have committed, and the client decides.
                Err(SubmitError::NoLeader { reason, .. }) if Instant::now() < leader_deadline => {
                    tracing::debug!(%reason, "waiting for a leader");
                    tokio::time::sleep(LEADER_POLL).await;
                }
                other => return other,
            }
        }
    }

    /// The leader's side of a forwarded write: the leader's own in-flight
    /// budget applies to it as to its local clients.
    pub async fn accept_forwarded(&self, request: IngestRequest) -> Result<u64, SubmitError> {
        let gate = self.node.gate();
        let _in_flight = gate.forwarded_requests().enter();
        if !gate.forwarded_open() {
            return Err(SubmitError::NoLeader {
                reason: format!("node {} is handing over leadership", self.node.id()),
                retry_after: Duration::from_secs(1),
            });
        }
        let _reservation = self.reserve(request.payload.len())?;
        // A member's word is not enough: the write is checked as the
        // receiver checked it, before it can enter the log.
        let signal = Signal::try_from(request.signal).unwrap_or(Signal::Unspecified);
        // The receiver's limit applies before it adds the node's resource
        // label, which grows the request a little; twice the limit covers
        // any request a receiver could have taken.
        let ingest = &self.node.config().ingest;
        let max = ingest.max_request_bytes.saturating_mul(2);
        let limits = &ingest.limits;
        crate::ingest::check_encoded(signal, &request.payload, request.records, max, limits)
            .map_err(|e| SubmitError::Invalid(crate::text::quote(&e).into_owned()))?;
        self.write_as_leader(request).await
    }

    async fn submit_owned(self, request: IngestRequest) -> Result<Receipt, SubmitError> {
        // Counted before the check, so a drain that saw the count at zero
        // after refusing new requests cannot miss this one (see `gate`).
        let gate = self.node.gate();
        let in_flight = gate.local_requests().enter();
        if !gate.is_accepting() {
            return Err(SubmitError::ShuttingDown);
        }
        let reservation = self.reserve(request.payload.len())?;
        #[cfg(feature = "broken-ack-for-tests")]
        {
            // Deliberately wrong (see Cargo.toml): acknowledge, then commit.
            tokio::spawn(async move {
                let _in_flight = in_flight;
                let _reservation = reservation;
                let _ = self.commit_anywhere(request).await;
            });
            return Ok(Receipt { log_index: 0 });
        }
        #[allow(unreachable_code)]
        let log_index = self.commit_anywhere(request).await?;
        drop(reservation);
        drop(in_flight);
        Ok(Receipt { log_index })
    }
}

impl IngestHandler for Submitter {
    fn submit(&self, request: IngestRequest) -> SubmitFuture {
        Box::pin(self.clone().submit_owned(request))
    }
}

/// Bytes reserved from the in-flight budget; released on drop.
struct Reservation {
    _permit: tokio::sync::OwnedSemaphorePermit,
    bytes: i64,
    metrics: Arc<Metrics>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.metrics.ingest_inflight_bytes.dec_by(self.bytes);
    }
}
