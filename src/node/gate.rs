//! The gate in front of the node: whether it takes part in Raft yet
//! (admission, for a node that joins), whether it takes new requests
//! (draining), and the requests between acceptance and answer.
//!
//! Ordering, which a drain relies on: a request enters the count first and
//! checks the gate second. A drain closes the gate first and waits for the
//! count second, so no request slips past the wait.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

/// Counts requests in progress so a drain can wait until none is left.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// One request in progress; counted until dropped.
pub struct InFlightGuard {
    of: Arc<InFlight>,
}

impl InFlight {
    /// Counts one more request until the guard drops. Callers enter first
    /// and check whether they may proceed second (see the module doc).
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard { of: self.clone() }
    }

    /// Requests in progress now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until no request is in progress or `deadline` passes; true if
    /// idle.
    pub async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let idle = self.idle.notified();
            if self.count() == 0 {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            // A guard dropped between the check and here still wakes us:
            // `notified()` was created before the check.
            let _ = tokio::time::timeout(left, idle).await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.of.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.of.idle.notify_waiters();
        }
    }
}

/// Admission and draining, and the requests in progress.
pub struct Gate {
    /// False while a node that must join (`cluster.join`, empty storage)
    /// has not yet been found absent from the cluster: until then it
    /// answers no vote and no append, because the cluster may still count
    /// it as a voter that had entries and votes this empty store lacks.
    admitted: AtomicBool,
    /// False once a drain began: new local requests are refused.
    accepting: AtomicBool,
    /// False once a draining leader stops taking forwarded writes.
    forwarded_open: AtomicBool,
    /// Local OTLP requests between acceptance and answer.
    local: Arc<InFlight>,
    /// Forwarded writes this node, as leader, is committing.
    forwarded: Arc<InFlight>,
}

impl Gate {
    /// An open gate; `admitted` is false for a node that must join first.
    pub fn new(admitted: bool) -> Gate {
        Gate {
            admitted: AtomicBool::new(admitted),
            accepting: AtomicBool::new(true),
            forwarded_open: AtomicBool::new(true),
            local: Arc::default(),
            forwarded: Arc::default(),
        }
    }

    /// Whether this node may take part in Raft (see the `admitted` field).
    pub fn is_admitted(&self) -> bool {
        self.admitted.load(Ordering::SeqCst)
    }

    /// Lets this node take part in Raft: `join` found it absent from the
    /// cluster (or a learner, which never votes), or it bootstraps.
    pub fn admit(&self) {
        self.admitted.store(true, Ordering::SeqCst);
    }

    /// Stops taking new requests (requests already accepted still finish).
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Whether new local requests are taken.
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// Whether a drain has begun.
    pub fn is_draining(&self) -> bool {
        !self.is_accepting()
    }

    /// Refuses forwarded writes from now on, as a leader that is about to
    /// hand over (see `drain`).
    pub fn close_forwarded_writes(&self) {
        self.forwarded_open.store(false, Ordering::SeqCst);
    }

    /// Whether forwarded writes are taken.
    pub fn forwarded_open(&self) -> bool {
        self.forwarded_open.load(Ordering::SeqCst)
    }

    /// Local OTLP requests in progress.
    pub fn local_requests(&self) -> &Arc<InFlight> {
        &self.local
    }

    /// Forwarded writes in progress on this leader.
    pub fn forwarded_requests(&self) -> &Arc<InFlight> {
        &self.forwarded
    }
}
