//! Graceful stop (SIGTERM, `otelraft admin drain`): a draining node takes
//! no new OTLP requests, lets the ones it accepted finish, and hands
//! leadership to the most up-to-date data voter when it leads.
//!
//! Order, and why:
//! 1. `/health/ready` fails and new local requests are refused with a retry
//!    hint, so load balancers and OTLP exporters move to other members.
//! 2. Requests this node already accepted finish: each was counted before it
//!    checked whether the node was accepting, so none slips past the wait.
//! 3. Forwarded writes are refused as "not leader": nothing was proposed
//!    for them, and the follower that forwarded one waits for the next
//!    leader instead of failing its client. Forwarded writes already
//!    accepted finish. The node stops campaigning and refuses leadership
//!    transfers, so it cannot become a leader that takes no writes.
//! 4. Leadership moves only then, so no proposal of this leader is left
//!    waiting for an answer that a deposed leader could no longer give.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::cluster::Node;
use crate::raft::NodeId;

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

/// What a drain did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrainReport {
    /// True when every accepted request finished and, if this node led,
    /// leadership moved, all within `drain.timeout_ms`.
    pub complete: bool,
    /// The node that took over leadership from this one, if it led.
    pub handed_off_to: Option<NodeId>,
    /// Local and forwarded requests still unfinished at the deadline.
    pub unfinished_requests: usize,
    /// How long the drain took.
    pub elapsed_ms: u64,
    /// What happened, for the operator.
    pub message: String,
}

/// Drains `node` (see the module doc). A second call waits for the first
/// and returns its report, unless the node leads again (an election it had
/// already entered when the drain began), in which case it hands off again.
pub async fn drain(node: &Node) -> DrainReport {
    let mut done = node.drain_slot().lock().await;
    if let Some(report) = done.as_ref().filter(|_| !node.is_leader()) {
        return report.clone();
    }
    let report = run(node).await;
    *done = Some(report.clone());
    report
}

async fn run(node: &Node) -> DrainReport {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(node.config().drain.timeout_ms);
    tracing::info!(node_id = node.id(), "draining: refusing new requests");
    node.stop_accepting();
    // A draining node must not become leader: it would take forwarded
    // writes it cannot finish. It stops campaigning, refuses leadership
    // transfers (see `peer`), and takes no forwarded write from now on.
    node.raft().runtime_config().elect(false);
    node.close_forwarded_writes();
    let local_done = node.local_requests().wait_idle(deadline).await;

    let mut handed_off_to = None;
    let mut problems = Vec::new();
    if !local_done {
        problems.push(format!(
            "{} accepted requests still unfinished",
            node.local_requests().count()
        ));
    }
    if node.is_leader() {
        if !node.forwarded_requests().wait_idle(deadline).await {
            problems.push(format!(
                "{} forwarded requests still unfinished",
                node.forwarded_requests().count()
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, crate::admin::membership::step_aside(node, node.id()))
            .await
        {
            Ok(Ok(to)) => handed_off_to = Some(to),
            Ok(Err(e)) => problems.push(format!("leadership not handed off: {e}")),
            Err(_) => problems.push("leadership hand-off did not finish in time".to_string()),
        }
    }
    let unfinished_requests = node.local_requests().count() + node.forwarded_requests().count();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let complete = problems.is_empty();
    let message = if complete {
        match handed_off_to {
            Some(to) => format!("drained; leadership handed to node {to}"),
            None => "drained".to_string(),
        }
    } else {
        format!("drain incomplete: {}", problems.join("; "))
    };
    if complete {
        tracing::info!(node_id = node.id(), elapsed_ms, handed_off_to, "{message}");
    } else {
        tracing::warn!(
            node_id = node.id(),
            elapsed_ms,
            unfinished_requests,
            "{message}"
        );
    }
    DrainReport {
        complete,
        handed_off_to,
        unfinished_requests,
        elapsed_ms,
        message,
    }
}
