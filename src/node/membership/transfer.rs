//! Leadership transfer: to a named voter (`transfer-leader`), or away from a
//! leader that is about to leave or stop (`step_aside`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::safety::{reachable, settled_membership};
use super::{claim, wait_caught_up, ChangeReply, MembershipError};
use crate::node::Node;
use crate::raft::{Member, NodeId, Role};

/// How long a leadership transfer may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the leader must do before it can remove itself: hand over to the
/// most up-to-date reachable data voter other than `leaving`. Holds the
/// membership slot while it does.
pub async fn step_aside(node: &Node, leaving: NodeId) -> Result<NodeId, MembershipError> {
    let _op = claim(
        node,
        format!("hand leadership away before {leaving} leaves"),
    )?;
    let (voters, nodes) = settled_membership(node)?;
    // When no other data voter answers as willing (all draining or down,
    // as when the whole cluster stops), say so now rather than after
    // waiting for the reachable set to fill.
    let mut willing = false;
    for to in voters
        .iter()
        .filter(|id| **id != leaving && nodes.get(id).is_some_and(|n| n.role == Role::Data))
    {
        if draining_state(node, &nodes, *to).await == Some(false) {
            willing = true;
            break;
        }
    }
    if !willing {
        return Err(MembershipError::Unsafe(format!(
            "node {leaving} leads and no other data voter can take over: every one is draining or does not answer"
        )));
    }
    let up = reachable(node).await?;
    let m = node.raft_metrics();
    let matched = |id: &NodeId| {
        m.replication
            .as_ref()
            .and_then(|r| r.get(id).cloned().flatten())
            .map_or(0, |l| l.index)
    };
    let mut candidates: Vec<NodeId> = voters
        .iter()
        .filter(|id| **id != leaving && up.contains(id))
        .filter(|id| nodes.get(id).is_some_and(|n| n.role == Role::Data))
        .copied()
        .collect();
    candidates.sort_by_key(|id| std::cmp::Reverse(matched(id)));
    // A draining member refuses leadership; when the whole cluster stops,
    // every candidate drains, and waiting for one of them would only
    // delay the stop.
    let mut draining = Vec::new();
    for to in candidates {
        if target_drains(node, &nodes, to).await {
            draining.push(to);
            continue;
        }
        match transfer(node, to, TRANSFER_TIMEOUT).await {
            // It may have taken over just before it began to drain: then
            // leadership has moved, and there is nothing left to hand off.
            Err(MembershipError::TargetDraining(id)) => {
                if let Some((leader, _)) = node.leader().filter(|(l, _)| *l != leaving) {
                    return Ok(leader);
                }
                if !node.is_leader() {
                    return Err(MembershipError::NoLeader);
                }
                draining.push(id);
            }
            other => return other.map(|()| to),
        }
    }
    Err(MembershipError::Unsafe(if draining.is_empty() {
        format!("node {leaving} leads and no other reachable data voter can take over")
    } else {
        format!(
            "node {leaving} leads and no other data voter can take over: {draining:?} are draining"
        )
    }))
}

/// Whether `to` is draining, by its own `NodeInfo` answer; `None` when it
/// does not answer as itself.
async fn draining_state(node: &Node, nodes: &BTreeMap<NodeId, Member>, to: NodeId) -> Option<bool> {
    let member = nodes.get(&to)?;
    let info = node.peers().node_info(&member.peer_addr).await.ok()?;
    (info.node_id == to).then_some(info.draining)
}

/// Whether `to` says it is draining. An unanswered question is not a yes:
/// the transfer itself then decides.
async fn target_drains(node: &Node, nodes: &BTreeMap<NodeId, Member>, to: NodeId) -> bool {
    draining_state(node, nodes, to).await == Some(true)
}

/// Hands leadership to `to` and waits until this node sees it lead; `to`
/// first gets up to `catch_up` to hold every entry this node has.
pub async fn transfer(node: &Node, to: NodeId, catch_up: Duration) -> Result<(), MembershipError> {
    let (voters, nodes) = settled_membership(node)?;
    if !voters.contains(&to) {
        return Err(MembershipError::UnknownNode(to));
    }
    if nodes.get(&to).is_some_and(|n| n.role == Role::Witness) {
        return Err(MembershipError::Unsafe(format!(
            "node {to} is a witness and never leads"
        )));
    }
    let deadline = Instant::now() + TRANSFER_TIMEOUT;
    while !reachable(node).await?.contains(&to) {
        if Instant::now() >= deadline {
            return Err(MembershipError::Unsafe(format!(
                "node {to} has not answered the leader recently; it cannot take over"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // openraft ignores a transfer to a node whose log is behind.
    wait_caught_up(node, to, catch_up).await?;
    node.raft()
        .trigger()
        .transfer_leader(to)
        .await
        .map_err(|e| MembershipError::Raft(e.to_string()))?;
    // The target refuses a transfer while it drains (see `peer`); openraft
    // only logs that refusal, so it is asked directly while we wait.
    let deadline = Instant::now() + TRANSFER_TIMEOUT;
    let mut asked = Instant::now();
    while Instant::now() < deadline {
        if node.leader().is_some_and(|(id, _)| id == to) {
            return Ok(());
        }
        if asked.elapsed() >= Duration::from_millis(200) {
            if target_drains(node, &nodes, to).await {
                return Err(MembershipError::TargetDraining(to));
            }
            asked = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(MembershipError::Raft(format!(
        "node {to} did not take over within {} s",
        TRANSFER_TIMEOUT.as_secs()
    )))
}

/// `transfer-leader`: hands leadership to `to`, one operation at a time.
pub async fn transfer_leader(node: &Node, to: NodeId) -> Result<ChangeReply, MembershipError> {
    if to == node.id() {
        return Ok(ChangeReply {
            message: format!("node {to} already leads"),
            log_index: None,
        });
    }
    let _op = claim(node, format!("transfer-leader {to}"))?;
    transfer(node, to, TRANSFER_TIMEOUT).await?;
    Ok(ChangeReply {
        message: format!("node {to} is now the leader"),
        log_index: None,
    })
}
