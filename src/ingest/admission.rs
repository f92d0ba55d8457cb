//! What a request must hold before the receiver works on it: bytes of the
//! decode budget, and one of the decode slots.
//!
//! Invariants:
//! - Every byte a request holds between reading its body and handing its
//!   encoded payload to the handler is reserved here first: the body as it
//!   arrives, the decompressed bytes as they are produced, and the decoded
//!   request's heap ([`super::shape`]) before `prost` allocates it. So the
//!   receivers' memory is at most `ingest.decode_memory_bytes`, plus what
//!   tonic holds of gRPC calls that are not yet handed over (see
//!   `docs/architecture.md`, "Memory bound").
//! - Reservations never wait once held: a request that needs more than is
//!   free is refused as overloaded (retryable), and a request that needs
//!   more than the whole budget is refused as too large (permanent). A
//!   request holding bytes therefore never blocks one that could finish.
//! - At most `ingest.decode_concurrency` requests decompress and decode at
//!   once, on the blocking pool, never on the executor that runs Raft.
//! - A request takes its connection's slot (`connections.
//!   decodes_per_connection`) before it queues for a node slot, and holds
//!   both until its decode ends. The node's queue is first come, first
//!   served, so a connection multiplexing many streams has at most that
//!   many places in it, and a well-behaved connection waits behind at most
//!   one request of each other connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{IngestError, SubmitError};
use crate::tls::WorkSlots;

/// Reservations are counted in KiB, so the semaphore's permit count stays
/// small whatever the budget.
const UNIT: u64 = 1024;

/// The decode budget and slots one node's receivers share.
#[derive(Debug)]
pub(crate) struct Admission {
    bytes: Arc<Semaphore>,
    total_bytes: u64,
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl Admission {
    /// A budget of `memory_bytes`, `slots` concurrent decodes, and `wait`
    /// for a slot before the request is refused as overloaded.
    pub(crate) fn new(memory_bytes: usize, slots: usize, wait: Duration) -> Self {
        let units = (memory_bytes as u64 / UNIT).max(1);
        Admission {
            bytes: Arc::new(Semaphore::new(units as usize)),
            total_bytes: units * UNIT,
            slots: Arc::new(Semaphore::new(slots.max(1))),
            wait,
        }
    }

    /// An empty reservation to grow as the request's bytes arrive.
    pub(crate) fn reservation(&self) -> Reservation {
        Reservation {
            budget: self.bytes.clone(),
            total_bytes: self.total_bytes,
            permit: None,
            bytes: 0,
        }
    }

    /// Waits, at most `wait` in all, for a slot of the request's connection
    /// (when it came through a listener), then for a node slot.
    pub(crate) async fn slot(
        &self,
        connection: Option<&WorkSlots>,
    ) -> Result<DecodeSlot, IngestError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let connection = match connection {
            Some(slots) => Some(
                self.acquire(
                    slots.semaphore(),
                    deadline,
                    "connections.decodes_per_connection",
                )
                .await?,
            ),
            None => None,
        };
        let node = self
            .acquire(self.slots.clone(), deadline, "ingest.decode_concurrency")
            .await?;
        Ok(DecodeSlot {
            _connection: connection,
            _node: node,
        })
    }

    async fn acquire(
        &self,
        slots: Arc<Semaphore>,
        deadline: tokio::time::Instant,
        field: &'static str,
    ) -> Result<OwnedSemaphorePermit, IngestError> {
        match tokio::time::timeout_at(deadline, slots.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(IngestError::Submit(SubmitError::ShuttingDown)),
            Err(_) => Err(overloaded(format!(
                "every decode slot ({field}) stayed busy for {} ms",
                self.wait.as_millis()
            ))),
        }
    }

    /// Bytes free in the budget now.
    #[cfg(test)]
    pub(crate) fn free_bytes(&self) -> u64 {
        self.bytes.available_permits() as u64 * UNIT
    }
}

/// The slots one decode holds until it ends.
#[derive(Debug)]
pub(crate) struct DecodeSlot {
    _connection: Option<OwnedSemaphorePermit>,
    _node: OwnedSemaphorePermit,
}

fn overloaded(reason: String) -> IngestError {
    IngestError::Submit(SubmitError::Overloaded {
        reason,
        retry_after: Duration::from_secs(1),
    })
}

/// Bytes of the decode budget one request holds; released when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<Semaphore>,
    total_bytes: u64,
    permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
}

impl Reservation {
    /// Reserves `more` bytes for `stage`, without waiting.
    pub(crate) fn grow(&mut self, more: u64, stage: &'static str) -> Result<(), IngestError> {
        let wanted = self.bytes.saturating_add(more);
        if wanted > self.total_bytes {
            return Err(IngestError::OverBudget {
                stage,
                needed: wanted,
                limit: self.total_bytes,
            });
        }
        let held = self.permit.as_ref().map_or(0, |p| p.num_permits() as u64);
        let needed = wanted.div_ceil(UNIT);
        if needed > held {
            let extra = u32::try_from(needed - held).unwrap_or(u32::MAX);
            let permit = self
                .budget
                .clone()
                .try_acquire_many_owned(extra)
                .map_err(|_| {
                    overloaded(format!(
                        "the decode budget (ingest.decode_memory_bytes, {} bytes) is in use by other requests",
                        self.total_bytes
                    ))
                })?;
            match &mut self.permit {
                Some(held) => held.merge(permit),
                None => self.permit = Some(permit),
            }
        }
        self.bytes = wanted;
        Ok(())
    }

    /// Gives back all but `keep` bytes (what is still alive).
    pub(crate) fn shrink_to(&mut self, keep: u64) {
        if keep >= self.bytes {
            return;
        }
        self.bytes = keep;
        let needed = keep.div_ceil(UNIT) as usize;
        if let Some(permit) = &mut self.permit {
            let surplus = permit.num_permits().saturating_sub(needed);
            if surplus > 0 {
                drop(permit.split(surplus));
            }
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_takes_bytes_and_gives_them_back_when_dropped() {
        let admission = Admission::new(1 << 20, 1, Duration::from_secs(1));
        let mut a = admission.reservation();
        a.grow(600 << 10, "body").unwrap();
        assert_eq!(admission.free_bytes(), 424 << 10);
        let mut b = admission.reservation();
        let err = b.grow(500 << 10, "body").unwrap_err();
        assert!(err.retryable(), "{err}");
        a.shrink_to(100 << 10);
        assert_eq!(admission.free_bytes(), 924 << 10);
        b.grow(500 << 10, "body").unwrap();
        drop(a);
        drop(b);
        assert_eq!(admission.free_bytes(), 1 << 20);
    }

    #[test]
    fn a_request_larger_than_the_whole_budget_is_refused_for_good() {
        let admission = Admission::new(1 << 20, 1, Duration::from_secs(1));
        let mut r = admission.reservation();
        r.grow(1 << 19, "body").unwrap();
        let err = r.grow(1 << 20, "decoded size").unwrap_err();
        assert!(!err.retryable(), "{err}");
        assert!(err.to_string().contains("decoded size"), "{err}");
        assert_eq!(r.bytes(), 1 << 19);
    }

    #[tokio::test]
    async fn a_busy_slot_turns_into_a_retryable_refusal_after_the_wait() {
        let admission = Admission::new(1 << 20, 1, Duration::from_millis(50));
        let held = admission.slot(None).await.unwrap();
        let err = admission.slot(None).await.unwrap_err();
        assert!(err.retryable(), "{err}");
        assert!(
            err.to_string().contains("ingest.decode_concurrency"),
            "{err}"
        );
        drop(held);
        assert!(admission.slot(None).await.is_ok());
    }

    #[tokio::test]
    async fn a_connection_waits_behind_its_own_decode_and_leaves_the_node_slots_to_others() {
        let admission = Admission::new(1 << 20, 2, Duration::from_millis(50));
        let busy = WorkSlots::new(1);
        let held = admission.slot(Some(&busy)).await.unwrap();
        // Its second stream waits for the connection's slot, not a node slot.
        let err = admission.slot(Some(&busy)).await.unwrap_err();
        assert!(err.retryable(), "{err}");
        assert!(
            err.to_string()
                .contains("connections.decodes_per_connection"),
            "{err}"
        );
        // The node's other slot is still free for another connection.
        let other = admission.slot(Some(&WorkSlots::new(1))).await.unwrap();
        drop(held);
        assert!(admission.slot(Some(&busy)).await.is_ok());
        drop(other);
    }
}
