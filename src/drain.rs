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

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::node::Node;
use crate::raft::NodeId;

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

/// The drain's own state: its single outcome, once one ran.
#[derive(Default)]
pub struct Drain {
    report: tokio::sync::Mutex<Option<DrainReport>>,
}

/// Drains `node` (see the module doc). A second call waits for the first
/// and returns its report, unless the node leads again (an election it had
/// already entered when the drain began), in which case it hands off again.
pub async fn drain(node: &Node, state: &Drain) -> DrainReport {
    let mut done = state.report.lock().await;
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
    let gate = node.gate();
    gate.stop_accepting();
    // A draining node must not become leader: it would take forwarded
    // writes it cannot finish. It stops campaigning, refuses leadership
    // transfers (see `peer`), and takes no forwarded write from now on.
    node.raft().runtime_config().elect(false);
    gate.close_forwarded_writes();
    let local_done = gate.local_requests().wait_idle(deadline).await;

    let mut handed_off_to = None;
    let mut problems = Vec::new();
    if !local_done {
        problems.push(format!(
            "{} accepted requests still unfinished",
            gate.local_requests().count()
        ));
    }
    if node.is_leader() {
        if !gate.forwarded_requests().wait_idle(deadline).await {
            problems.push(format!(
                "{} forwarded requests still unfinished",
                gate.forwarded_requests().count()
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, crate::node::membership::step_aside(node, node.id())).await
        {
            Ok(Ok(to)) => handed_off_to = Some(to),
            Ok(Err(e)) => problems.push(format!("leadership not handed off: {e}")),
            Err(_) => problems.push("leadership hand-off did not finish in time".to_string()),
        }
    }
    let unfinished_requests = gate.local_requests().count() + gate.forwarded_requests().count();
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
