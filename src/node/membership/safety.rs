//! Quorum safety: the checks every voter-set change passes before anything
//! is written (see the module doc of `membership`), and the membership and
//! reachable set they are checked against.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::MembershipError;
use crate::node::Node;
use crate::raft::{Member, NodeId, Role};

/// The facts a voter-set change is checked against.
#[derive(Debug, Clone)]
pub struct VoterChange<'a> {
    /// Voters now.
    pub current: &'a BTreeSet<NodeId>,
    /// Voters after the change.
    pub next: &'a BTreeSet<NodeId>,
    /// Every member's role.
    pub roles: &'a BTreeMap<NodeId, Role>,
    /// Members the leader heard from recently (itself included).
    pub reachable: &'a BTreeSet<NodeId>,
}

fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

fn ids(set: &BTreeSet<NodeId>) -> String {
    set.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses a voter-set change that would lose data, could not commit, or
/// (unless `force`) would remove the cluster's last margin for failure.
///
/// Raft commits a joint change only with a quorum of the current voters and
/// a quorum of the next ones, so both must be reachable now.
pub fn check_voters(c: &VoterChange<'_>, force: bool) -> Result<(), MembershipError> {
    let role = |id: &NodeId| c.roles.get(id).copied().unwrap_or_default();
    let witnesses = c.next.iter().filter(|id| role(id) == Role::Witness).count();
    let data = c.next.len() - witnesses;
    if data == 0 {
        return Err(MembershipError::Unsafe(format!(
            "the voters would be {{{}}}: no data voter would remain, and a witness never leads",
            ids(c.next)
        )));
    }
    if witnesses > data {
        return Err(MembershipError::Unsafe(format!(
            "the voters would be {{{}}}: {witnesses} witnesses would outnumber {data} data voters, so a quorum could commit with one data copy and, once data voters fail, no member could lead or export",
            ids(c.next)
        )));
    }
    let up = |set: &BTreeSet<NodeId>| set.iter().filter(|id| c.reachable.contains(id)).count();
    let (up_now, up_next) = (up(c.current), up(c.next));
    if up_now < quorum(c.current.len()) {
        return Err(MembershipError::Unsafe(format!(
            "only {up_now} of the voters {{{}}} are reachable, fewer than the quorum of {}: no change can commit until more of them are back",
            ids(c.current),
            quorum(c.current.len())
        )));
    }
    if up_next < quorum(c.next.len()) {
        return Err(MembershipError::Unsafe(format!(
            "the cluster would lose quorum: the new voters {{{}}} need {} of them, but only {up_next} are reachable",
            ids(c.next),
            quorum(c.next.len())
        )));
    }
    let margin_now = up_now - quorum(c.current.len());
    let margin_next = up_next - quorum(c.next.len());
    if margin_next == 0 && margin_now > 0 && !force {
        return Err(MembershipError::Unsafe(format!(
            "after this change the voters {{{}}} would survive no further failure ({up_next} reachable, quorum {}), while today the cluster survives {margin_now}; add a replacement first (`admin replace`), or pass --force",
            ids(c.next),
            quorum(c.next.len())
        )));
    }
    Ok(())
}

/// [`check_voters`] for moving from `voters` to `next`, against the members
/// this leader can reach now.
pub(super) async fn check_next(
    node: &Node,
    voters: &BTreeSet<NodeId>,
    nodes: &BTreeMap<NodeId, Member>,
    next: &BTreeSet<NodeId>,
    force: bool,
) -> Result<(), MembershipError> {
    let roles: BTreeMap<NodeId, Role> = nodes.iter().map(|(id, m)| (*id, m.role)).collect();
    check_voters(
        &VoterChange {
            current: voters,
            next,
            roles: &roles,
            reachable: &reachable(node).await?,
        },
        force,
    )
}

/// The current membership's voters and every member's role; refuses while
/// a joint (two-step) change is still in flight.
pub(super) fn settled_membership(
    node: &Node,
) -> Result<(BTreeSet<NodeId>, BTreeMap<NodeId, Member>), MembershipError> {
    let m = node.raft_metrics();
    let membership = m.membership_config.membership();
    if membership.get_joint_config().len() > 1 {
        return Err(MembershipError::ChangeInProgress(
            "a joint membership change has not finished yet".into(),
        ));
    }
    let voters = membership.voter_ids().collect();
    let nodes = membership
        .nodes()
        .map(|(id, member)| (*id, member.clone()))
        .collect();
    Ok((voters, nodes))
}

/// The members the leader heard from recently. A leader that took over a
/// moment ago may not have every answer yet, so a set that lacks members is
/// given a heartbeat round and up to two election timeouts to fill.
pub(super) async fn reachable(node: &Node) -> Result<BTreeSet<NodeId>, MembershipError> {
    let all = node
        .raft_metrics()
        .membership_config
        .membership()
        .nodes()
        .count();
    let deadline =
        Instant::now() + Duration::from_millis(node.config().raft.election_timeout_max_ms * 2);
    let mut nudged = false;
    loop {
        let up = node.reachable_members().ok_or(MembershipError::NoLeader)?;
        if up.len() >= all || Instant::now() >= deadline {
            return Ok(up);
        }
        if !nudged {
            let _ = node.raft().trigger().heartbeat().await;
            nudged = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
