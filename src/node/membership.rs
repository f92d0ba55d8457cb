//! Membership operations, run on the leader: add a learner or a witness,
//! promote, remove, replace, transfer leadership.
//!
//! Every operation follows the same order: claim the node's single
//! membership slot (so two operations never interleave), check the request
//! against the membership and the voters the leader can reach, wait for any
//! catch-up the change needs, and only then commit the change through
//! openraft's joint consensus. A refusal happens before anything is
//! written, so a refused call leaves the membership as it was.
//!
//! Quorum safety (see [`check_voters`]): a change is refused when either the
//! current or the new voter set lacks a reachable quorum (it could not
//! commit), when it would leave no data voter, and, unless forced, when it
//! would leave the cluster unable to survive one more failure while it can
//! today.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::errors::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use super::Node;
use crate::raft::{Member, NodeId, Role};

mod safety;
mod transfer;

use safety::{check_next, settled_membership};
pub use safety::{check_voters, VoterChange};
pub use transfer::{step_aside, transfer, transfer_leader};

/// Why a membership change or a hand-off did not happen. Each refusal
/// happens before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// No leader is known, so the change cannot be made now.
    #[error("no leader is known; retry once the cluster has elected one")]
    NoLeader,
    /// Another membership change has not finished.
    #[error("a membership change is already in progress: {0}")]
    ChangeInProgress(String),
    /// The node id is not a member (or not a learner, for promote).
    #[error("unknown node id {0}")]
    UnknownNode(NodeId),
    /// The request itself is wrong.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The change would put data or availability at risk; the message says
    /// which rule refused it and what to do instead.
    #[error("refused: {0}")]
    Unsafe(String),
    /// The node chosen to lead is draining and refuses leadership.
    #[error("node {0} is draining and takes no leadership; transfer to another member")]
    TargetDraining(NodeId),
    /// A node the call needs could not be reached.
    #[error("cannot reach node {id}: {message}")]
    Unreachable {
        /// The node.
        id: NodeId,
        /// What failed.
        message: String,
    },
    /// Raft failed in another way.
    #[error("raft: {0}")]
    Raft(String),
}

impl MembershipError {
    /// Whether repeating the same call later may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            MembershipError::NoLeader
                | MembershipError::ChangeInProgress(_)
                | MembershipError::Unreachable { .. }
        )
    }
}

/// Answer of a successful change.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeReply {
    /// What was done.
    pub message: String,
    /// Log index of the change, when it went through the log.
    pub log_index: Option<u64>,
}

/// What a failed membership write means.
fn write_error(
    e: RaftError<crate::raft::TypeConfig, ClientWriteError<crate::raft::TypeConfig>>,
) -> MembershipError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => MembershipError::NoLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => match c {
            ChangeMembershipError::InProgress(p) => {
                MembershipError::ChangeInProgress(p.to_string())
            }
            ChangeMembershipError::LearnerNotFound(l) => MembershipError::UnknownNode(l.node_id),
            other => MembershipError::BadRequest(other.to_string()),
        },
        other => MembershipError::Raft(other.to_string()),
    }
}

/// Held while a membership operation runs; frees the slot when dropped.
pub struct MembershipOp<'a> {
    node: &'a Node,
}

impl Drop for MembershipOp<'_> {
    fn drop(&mut self) {
        *self
            .node
            .membership_op
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Node {
    /// Claims the membership-operation slot for `what`, or says which
    /// operation holds it.
    pub fn begin_membership_op(&self, what: String) -> Result<MembershipOp<'_>, MembershipError> {
        let mut slot = self.membership_op.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((running, since)) = slot.as_ref() {
            return Err(MembershipError::ChangeInProgress(format!(
                "{running} (started {} s ago)",
                since.elapsed().as_secs()
            )));
        }
        *slot = Some((what, Instant::now()));
        Ok(MembershipOp { node: self })
    }
}

/// How long a new member may take to catch up before the call gives up.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(90);

/// A node to add: where to reach it and, optionally, the role it must have.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// Its node id: new, never used before in this cluster.
    pub id: NodeId,
    /// Its peer `host:port`.
    pub peer_addr: String,
    /// Its admin `host:port`.
    pub admin_addr: String,
    /// The role the caller expects; the node's own config decides, and a
    /// mismatch is refused. `None` takes what the node declares.
    #[serde(default)]
    pub role: Option<Role>,
}

/// Body of promote and remove.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRequest {
    /// The node.
    pub id: NodeId,
    /// Skip the refusals that exist to protect availability (not those
    /// that protect data or that a commit could never get past).
    #[serde(default)]
    pub force: bool,
}

/// Body of replace: `old` leaves, `new` takes its place.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplaceRequest {
    /// The member to retire.
    pub old: NodeId,
    /// The node that replaces it.
    pub new: JoinRequest,
    /// As for remove.
    #[serde(default)]
    pub force: bool,
}

/// Body of transfer-leader.
#[derive(Debug, Serialize, Deserialize)]
pub struct TransferRequest {
    /// The data voter that should lead.
    pub to: NodeId,
}

pub(super) fn claim(node: &Node, what: String) -> Result<MembershipOp<'_>, MembershipError> {
    node.begin_membership_op(what)
}

/// Refuses ids that are taken, reserved or retired.
fn check_new_id(
    node: &Node,
    nodes: &BTreeMap<NodeId, Member>,
    id: NodeId,
) -> Result<(), MembershipError> {
    if id == 0 {
        return Err(MembershipError::BadRequest("node id 0 is reserved".into()));
    }
    if nodes.contains_key(&id) {
        return Err(MembershipError::BadRequest(format!(
            "node {id} is already a member"
        )));
    }
    if node.read_state(|s| s.retired_ids.contains(&id)) {
        return Err(MembershipError::BadRequest(format!(
            "node id {id} belonged to a member that was removed; ids are never reused, pick a new one"
        )));
    }
    Ok(())
}

/// Asks the joining node who it is, so a wrong address or a role that its
/// config does not declare is refused before the membership changes.
/// A node that is still starting gets a few seconds to answer.
async fn verified_member(node: &Node, req: &JoinRequest) -> Result<Member, MembershipError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let info = loop {
        match node.peers().node_info(&req.peer_addr).await {
            Ok(info) => break info,
            Err(e) if Instant::now() >= deadline => {
                return Err(MembershipError::Unreachable {
                    id: req.id,
                    message: e.to_string(),
                })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    if info.node_id != req.id {
        return Err(MembershipError::BadRequest(format!(
            "the node at {} is node {}, not node {}",
            req.peer_addr, info.node_id, req.id
        )));
    }
    if let Some(expected) = req.role {
        if expected != info.role {
            return Err(MembershipError::BadRequest(format!(
                "node {} is configured with role = \"{}\", not \"{expected}\"; change its config and restart it first",
                req.id, info.role
            )));
        }
    }
    Ok(Member {
        peer_addr: req.peer_addr.clone(),
        admin_addr: req.admin_addr.clone(),
        role: info.role,
    })
}

/// Waits until `id` holds every entry the leader had when the wait began.
pub(super) async fn wait_caught_up(
    node: &Node,
    id: NodeId,
    timeout: Duration,
) -> Result<(), MembershipError> {
    let target = node.raft_metrics().last_log_index.unwrap_or(0);
    let deadline = Instant::now() + timeout;
    loop {
        let m = node.raft_metrics();
        let Some(replication) = m.replication.as_ref() else {
            return Err(MembershipError::NoLeader);
        };
        let matched = replication
            .get(&id)
            .and_then(|l| l.as_ref())
            .map_or(0, |l| l.index);
        if matched >= target {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(MembershipError::Unsafe(format!(
                "node {id} has not caught up after {} s: it holds up to index {matched}, the leader had {target}; check its log, or retry",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Adds `req` as a learner (when it is not one already) and waits until it
/// has caught up. Returns the log index of the learner entry, if written.
async fn add_and_catch_up(
    node: &Node,
    req: &JoinRequest,
    nodes: &BTreeMap<NodeId, Member>,
) -> Result<Option<u64>, MembershipError> {
    let index = if nodes.contains_key(&req.id) {
        None
    } else {
        check_new_id(node, nodes, req.id)?;
        let member = verified_member(node, req).await?;
        let resp = node
            .raft()
            .add_learner(req.id, member, false)
            .await
            .map_err(write_error)?;
        Some(resp.log_id.index)
    };
    wait_caught_up(node, req.id, CATCH_UP_TIMEOUT).await?;
    Ok(index)
}

async fn commit(
    node: &Node,
    change: ChangeMembers<NodeId, Member>,
) -> Result<u64, MembershipError> {
    node.raft()
        .change_membership(change, false)
        .await
        .map(|r| r.log_id.index)
        .map_err(write_error)
}

/// Refuses `req` when its id is taken by anything but the same learner at
/// the same addresses (an earlier call that timed out waiting for
/// catch-up), which is waited for again.
fn check_join(
    node: &Node,
    voters: &BTreeSet<NodeId>,
    nodes: &BTreeMap<NodeId, Member>,
    req: &JoinRequest,
) -> Result<(), MembershipError> {
    match nodes.get(&req.id) {
        Some(m)
            if !voters.contains(&req.id)
                && m.peer_addr == req.peer_addr
                && m.admin_addr == req.admin_addr
                && req.role.is_none_or(|r| r == m.role) =>
        {
            Ok(())
        }
        _ => check_new_id(node, nodes, req.id),
    }
}

/// `add-learner`: the node joins without a vote and catches up.
pub async fn add_learner(node: &Node, req: JoinRequest) -> Result<ChangeReply, MembershipError> {
    let _op = claim(node, format!("add-learner {}", req.id))?;
    let (voters, nodes) = settled_membership(node)?;
    check_join(node, &voters, &nodes, &req)?;
    let index = add_and_catch_up(node, &req, &nodes).await?;
    Ok(ChangeReply {
        message: format!("node {} added as learner and caught up", req.id),
        log_index: index,
    })
}

/// Makes learner `id` a voter once it has caught up.
async fn promote_learner(
    node: &Node,
    id: NodeId,
    force: bool,
) -> Result<ChangeReply, MembershipError> {
    let (voters, nodes) = settled_membership(node)?;
    let Some(member) = nodes.get(&id) else {
        return Err(MembershipError::UnknownNode(id));
    };
    if voters.contains(&id) {
        return Err(MembershipError::BadRequest(format!(
            "node {id} is already a voter"
        )));
    }
    match wait_caught_up(node, id, CATCH_UP_TIMEOUT).await {
        Err(MembershipError::Unsafe(why)) if !force => {
            return Err(MembershipError::Unsafe(format!("{why}; or pass --force")))
        }
        Err(MembershipError::Unsafe(_)) => {}
        other => other?,
    }
    let mut next = voters.clone();
    next.insert(id);
    check_next(node, &voters, &nodes, &next, force).await?;
    let index = commit(node, ChangeMembers::AddVoterIds(BTreeSet::from([id]))).await?;
    Ok(ChangeReply {
        message: format!("node {id} ({}) promoted to voter", member.role),
        log_index: Some(index),
    })
}

/// `promote`: a caught-up learner becomes a voter.
pub async fn promote(node: &Node, req: NodeRequest) -> Result<ChangeReply, MembershipError> {
    let _op = claim(node, format!("promote {}", req.id))?;
    promote_learner(node, req.id, req.force).await
}

/// `add-witness`: the node joins as a learner, catches up, and becomes a
/// voting witness. Its config must say `role = "witness"`.
pub async fn add_witness(
    node: &Node,
    mut req: JoinRequest,
) -> Result<ChangeReply, MembershipError> {
    let _op = claim(node, format!("add-witness {}", req.id))?;
    req.role = Some(Role::Witness);
    let (voters, nodes) = settled_membership(node)?;
    check_join(node, &voters, &nodes, &req)?;
    add_and_catch_up(node, &req, &nodes).await?;
    promote_learner(node, req.id, false).await
}

/// `remove`: a learner leaves at once; a voter leaves through a joint
/// change, after the quorum checks. The caller has made sure this node is
/// not the one leaving.
pub async fn remove(node: &Node, req: NodeRequest) -> Result<ChangeReply, MembershipError> {
    let _op = claim(node, format!("remove {}", req.id))?;
    let (voters, nodes) = settled_membership(node)?;
    if !nodes.contains_key(&req.id) {
        return Err(MembershipError::UnknownNode(req.id));
    }
    let change = if voters.contains(&req.id) {
        let mut next = voters.clone();
        next.remove(&req.id);
        check_next(node, &voters, &nodes, &next, req.force).await?;
        ChangeMembers::RemoveVoters(BTreeSet::from([req.id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([req.id]))
    };
    let index = commit(node, change).await?;
    Ok(ChangeReply {
        message: format!("node {} removed; its id is retired", req.id),
        log_index: Some(index),
    })
}

/// `replace`: the new node joins as a learner and catches up, then one
/// joint change swaps it in for the old one. Safe to run again after a
/// failure part-way: a new node that is already a learner is reused.
pub async fn replace(node: &Node, req: ReplaceRequest) -> Result<ChangeReply, MembershipError> {
    let _op = claim(node, format!("replace {} by {}", req.old, req.new.id))?;
    let (voters, nodes) = settled_membership(node)?;
    if !nodes.contains_key(&req.old) {
        return Err(MembershipError::UnknownNode(req.old));
    }
    if voters.contains(&req.new.id) {
        return Err(MembershipError::BadRequest(format!(
            "node {} is already a voter",
            req.new.id
        )));
    }
    add_and_catch_up(node, &req.new, &nodes).await?;
    let (voters, nodes) = settled_membership(node)?;
    if !voters.contains(&req.old) {
        let index = commit(node, ChangeMembers::RemoveNodes(BTreeSet::from([req.old]))).await?;
        return Ok(ChangeReply {
            message: format!("learner {} replaced by learner {}", req.old, req.new.id),
            log_index: Some(index),
        });
    }
    let mut next = voters.clone();
    next.remove(&req.old);
    next.insert(req.new.id);
    check_next(node, &voters, &nodes, &next, req.force).await?;
    let index = commit(node, ChangeMembers::ReplaceAllVoters(next)).await?;
    let role = nodes.get(&req.new.id).map_or(Role::Data, |m| m.role);
    Ok(ChangeReply {
        message: format!(
            "node {} replaced by node {} ({role}); id {} is retired",
            req.old, req.new.id, req.old
        ),
        log_index: Some(index),
    })
}

#[cfg(test)]
mod tests;
