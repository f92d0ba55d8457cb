//! The way out of the 2 + witness hazard (`docs/operations.md`): the
//! witness leads just long enough to give a data voter the entries it
//! missed, then hands leadership to it.
//!
//! The hazard: data node B was down while leader A and witness W committed
//! entries; then A is lost. B cannot win an election, because W refuses to
//! vote for a log older than its own, and W never campaigns by itself. Every
//! acknowledged entry is on W. The hand-over, run against W's admin port:
//!
//! 1. Refuse when a leader is alive (nothing to recover) or no data voter
//!    answers (nobody to hand over to).
//! 2. Start an election on W (step 1 made sure no leader is alive). B
//!    grants its vote, W's log being newer.
//! 3. As leader, W replicates its log to B. W accepts no client writes,
//!    exports nothing and archives nothing meanwhile (`cluster`, `server`).
//! 4. Once B holds W's last entry, W transfers leadership to B.
//!
//! Each step is idempotent, so running the command again after a failure
//! continues where it stopped.

use std::time::{Duration, Instant};

use openraft::ServerState;
use serde::{Deserialize, Serialize};

use super::membership::{ChangeReply, MembershipError};
use super::Node;
use crate::raft::{NodeId, Role};

/// How long the witness waits to be elected.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(15);

/// Body of `witness-handover`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HandoverRequest {
    /// The data voter to hand over to; default: the reachable data voter
    /// holding the most.
    #[serde(default)]
    pub to: Option<NodeId>,
}

/// Makes this witness leader. A real election, not a pre-vote: the data
/// node has been campaigning and may hold a higher term than the witness,
/// which it rejects in a pre-vote; a rejected round teaches the witness
/// that term, so the next round can win. The caller has checked that no
/// leader is alive, so no healthy leader is disturbed.
async fn elect(node: &Node, to: NodeId) -> Result<(), MembershipError> {
    let deadline = Instant::now() + ELECTION_TIMEOUT;
    let round = Duration::from_millis(node.config().raft.election_timeout_max_ms * 2);
    loop {
        tracing::warn!(to, "witness hand-over: the witness stands for election");
        node.raft()
            .trigger()
            .elect(false)
            .await
            .map_err(|e| MembershipError::Raft(e.to_string()))?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let standing = node.raft_metrics().current_term;
        let round_end = Instant::now() + round;
        while Instant::now() < round_end {
            let m = node.raft_metrics();
            if m.state == ServerState::Leader {
                return Ok(());
            }
            // A rejection taught us a higher term: stand again at once.
            if m.current_term > standing {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if Instant::now() >= deadline {
            return Err(MembershipError::Raft(format!(
                "the witness was not elected within {} s: node {to} may hold a newer log or be unreachable; see the witness's log",
                ELECTION_TIMEOUT.as_secs()
            )));
        }
    }
}

/// Runs the hand-over on this node, which must be the witness.
pub async fn run(node: &Node, req: HandoverRequest) -> Result<ChangeReply, MembershipError> {
    if !node.is_witness() {
        return Err(MembershipError::BadRequest(
            "this node is not a witness; run witness-handover against the witness's admin address"
                .into(),
        ));
    }
    let _op = node.begin_membership_op("witness-handover".into())?;
    let m = node.raft_metrics();
    let membership = m.membership_config.membership().clone();
    if !membership.voter_ids().any(|v| v == node.id()) {
        return Err(MembershipError::BadRequest(
            "this witness is not a voter".into(),
        ));
    }
    // Who is alive, what they hold, and whether a leader is: a leader that
    // the witness or any data voter heard from a moment ago may only be cut
    // off from the witness, and an election would depose it.
    if node.has_recent_leader_contact() {
        return Err(MembershipError::BadRequest(format!(
            "this witness heard from leader {} moments ago; the cluster needs no hand-over",
            m.current_leader.map_or("?".into(), |l| l.to_string())
        )));
    }
    let mut candidates = Vec::new();
    for id in membership.voter_ids().filter(|id| *id != node.id()) {
        let Some(member) = membership.get_node(&id) else {
            continue;
        };
        match node.peers().node_info(&member.peer_addr).await {
            Ok(info) if info.node_id == id => {
                if info.leader || info.recent_leader_contact {
                    return Err(MembershipError::BadRequest(format!(
                        "node {id} {} (term {}); the cluster needs no hand-over",
                        if info.leader {
                            "leads"
                        } else {
                            "heard from a leader moments ago"
                        },
                        info.term
                    )));
                }
                if member.role == Role::Data {
                    candidates.push((id, info.durable_applied));
                }
            }
            Ok(_) | Err(_) => {}
        }
    }
    let to = match req.to {
        Some(to) => {
            if !candidates.iter().any(|(id, _)| *id == to) {
                return Err(MembershipError::Unreachable {
                    id: to,
                    message: "it is not a reachable data voter; start it first".into(),
                });
            }
            to
        }
        None => candidates
            .iter()
            .max_by_key(|(_, applied)| *applied)
            .map(|(id, _)| *id)
            .ok_or_else(|| {
                MembershipError::Unsafe(
                    "no data voter answers; start the surviving data node first".into(),
                )
            })?,
    };

    if m.state != ServerState::Leader {
        elect(node, to).await?;
    }
    let last = node.raft_metrics().last_log_index.unwrap_or(0);
    tracing::warn!(
        to,
        last,
        "witness hand-over: the witness leads; catching up"
    );
    super::membership::transfer(node, to, super::membership::CATCH_UP_TIMEOUT).await?;
    tracing::warn!(to, last, "witness hand-over: done");
    Ok(ChangeReply {
        message: format!(
            "node {to} now leads and holds every entry the witness held (up to index {last})"
        ),
        log_index: Some(last),
    })
}
