//! `cluster.join`: how a node finds its place without an operator, for
//! deployments that start every member from the same template (a
//! Kubernetes StatefulSet).
//!
//! Rules, in order:
//! - A node that is a voter in its own stored membership does nothing: a
//!   restarted or rescheduled member with its volume rejoins as it was, with
//!   no membership change.
//! - A node the cluster lists as a learner is promoted (a crash between the
//!   two steps of a join left it there).
//! - A node the cluster lists (as a voter or a learner) while its own
//!   storage is empty lost its disk. Rejoining under the same id would let
//!   it vote without the entries it once acknowledged, or run its log
//!   backwards under the leader, so it refuses and says what to do. Until a
//!   node with empty storage is found absent from the leader's own
//!   membership it answers no Raft RPC at all (`Node::is_admitted`).
//! - A node the cluster does not list asks to be added as a learner (a
//!   witness: as a witness) and then promoted.
//! - A node with `cluster.bootstrap` initialises a new cluster only when
//!   every member in `cluster.join` answers and none holds a cluster.
//!   An unreachable member might hold one, so the node waits instead.

use std::sync::Arc;
use std::time::Duration;

use openraft::type_config::async_runtime::WatchReceiver;

use crate::node::membership::{ChangeReply, JoinRequest, NodeRequest};
use crate::node::Node;
use crate::peer::admin_client::{AdminClient, ClientError, MEMBERSHIP_TIMEOUT};
use crate::raft::{NodeId, Role};

/// Pause between attempts that may succeed soon (a member starting up, a
/// leader election).
const RETRY: Duration = Duration::from_secs(2);
/// Pause after a refusal only an operator can resolve.
const RETRY_REFUSED: Duration = Duration::from_secs(60);

/// What one attempt found.
enum Step {
    /// This node is a voter: nothing more to do.
    Done,
    /// Try again after `RETRY`; says why.
    Wait(String),
    /// Try again after `RETRY_REFUSED`; an operator must act.
    Refused(String),
}

/// Runs the join rules until this node is a voter or starts draining. Does
/// nothing when `cluster.join` is empty.
pub async fn run(node: Arc<Node>) {
    if node.config().cluster.join.is_empty() {
        return;
    }
    let mut last_reason = String::new();
    while !node.gate().is_draining() {
        let pause = match attempt(&node).await {
            Step::Done => return,
            Step::Wait(reason) => {
                // Said once per new reason: a join may wait minutes for
                // its peers to start.
                if reason != last_reason {
                    tracing::info!(node_id = node.id(), %reason, "join: waiting");
                    last_reason = reason;
                }
                RETRY
            }
            Step::Refused(reason) => {
                tracing::error!(node_id = node.id(), %reason, "join: refused");
                last_reason = reason;
                RETRY_REFUSED
            }
        };
        tokio::time::sleep(pause).await;
    }
}

async fn attempt(node: &Node) -> Step {
    let me = node.id();
    let initialized = match node.raft().is_initialized().await {
        Ok(i) => i,
        Err(e) => return Step::Wait(format!("raft: {e}")),
    };
    let local_voter = node
        .raft()
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == me);
    if initialized && local_voter {
        tracing::info!(node_id = me, "join: this node is a voter");
        return Step::Done;
    }

    let (cluster, unreachable) = survey(node).await;
    let Some(cluster) = cluster else {
        if initialized {
            return Step::Wait(
                "no member in cluster.join answered with the cluster's membership".into(),
            );
        }
        if !node.config().cluster.bootstrap {
            return Step::Wait("no member in cluster.join holds a cluster yet".into());
        }
        if !unreachable.is_empty() {
            return Step::Wait(format!(
                "bootstrap waits until every member in cluster.join answers (unreachable: {})",
                unreachable.join(", ")
            ));
        }
        node.gate().admit();
        return match node.bootstrap_now().await {
            Ok(()) => Step::Wait("bootstrapped; waiting to see this node as a voter".into()),
            Err(e) => Step::Wait(format!("bootstrap failed: {e}")),
        };
    };

    // Decide on the leader's own view: a lagging member may not list this
    // node yet, or still list it as a learner.
    let via = cluster
        .leader_id
        .and_then(|l| cluster.members.iter().find(|m| m.id == l))
        .map(|m| m.admin_addr.clone());
    let Some(via) = via else {
        return Step::Wait("the cluster has no leader right now".into());
    };
    let leader_view = match node.admin_client(&via, Duration::from_secs(3)) {
        Ok(client) => client.get_json::<MemberView>("/admin/v1/status").await,
        Err(e) => Err(e),
    };
    let cluster = match leader_view {
        Ok(s) if s.role == "leader" => s,
        Ok(_) => return Step::Wait(format!("{via} no longer leads")),
        Err(e) => return Step::Wait(format!("asking the leader at {via}: {e}")),
    };
    let listed = cluster.members.iter().find(|m| m.id == me);
    if !initialized {
        if let Some(m) = listed {
            // Empty storage but a member: its disk was lost. As a voter it
            // could vote without the entries it acknowledged; as a learner
            // its log would run backwards under the leader's feet.
            return Step::Refused(format!(
                "the cluster lists node {me} as a {} but this node's storage is empty: its \
                 data was lost. Remove it with `otelraft admin remove --id {me} --force`, then \
                 start this node with a new node_id (ids are never reused)",
                m.role
            ));
        }
        // Absent from the leader's membership: nothing this empty store
        // lacks can be counted on by the cluster.
        node.gate().admit();
    } else if listed.is_some_and(|m| m.role == "voter") {
        // Our own log will show it once the leader reaches us.
        return Step::Wait("the cluster lists this node as a voter; catching up".into());
    }
    let client = match node.admin_client(&via, MEMBERSHIP_TIMEOUT) {
        Ok(client) => client,
        Err(e) => return Step::Wait(format!("asking the leader at {via}: {e}")),
    };
    let config = node.config();
    let join = JoinRequest {
        id: me,
        peer_addr: config.advertise.peer.clone(),
        admin_addr: config.advertise.admin.clone(),
        role: Some(config.role),
    };
    let outcome = match config.role {
        // add-witness adds (or reuses) the learner and promotes it.
        Role::Witness => post(&client, "/admin/v1/add-witness", &join).await,
        Role::Data => {
            let added = if listed.is_none() {
                post(&client, "/admin/v1/add-learner", &join).await
            } else {
                Ok(())
            };
            match added {
                Ok(()) => {
                    let promote = NodeRequest {
                        id: me,
                        force: false,
                    };
                    post(&client, "/admin/v1/promote", &promote).await
                }
                Err(e) => Err(e),
            }
        }
    };
    match outcome {
        Ok(()) => {
            tracing::info!(node_id = me, via = %via, "join: added and promoted");
            Step::Wait("joined; waiting to see this node as a voter".into())
        }
        Err(e) if e.retryable() => Step::Wait(format!("asking {via}: {e}")),
        Err(e) => Step::Refused(format!("asking {via}: {e}")),
    }
}

async fn post<B: serde::Serialize>(
    client: &AdminClient,
    path: &str,
    body: &B,
) -> Result<(), ClientError> {
    client
        .post_json::<_, ChangeReply>(path, body)
        .await
        .map(|_| ())
}

/// What join reads of another member's `admin status` document.
#[derive(Debug, serde::Deserialize)]
struct MemberView {
    /// `leader`, `follower`, `learner`, …
    role: String,
    /// The leader it knows.
    leader_id: Option<NodeId>,
    /// Its membership.
    members: Vec<ListedMember>,
}

/// One member in that document.
#[derive(Debug, serde::Deserialize)]
struct ListedMember {
    id: NodeId,
    /// `voter` or `learner`.
    role: String,
    admin_addr: String,
}

/// Asks every member in `cluster.join` (but this node) for its status.
/// Returns the most useful view of an existing cluster (one that knows a
/// leader, else any with a membership) and the members that did not answer.
async fn survey(node: &Node) -> (Option<MemberView>, Vec<String>) {
    let own = &node.config().advertise.admin;
    let mut best: Option<MemberView> = None;
    let mut unreachable = Vec::new();
    for addr in node.config().cluster.join.iter().filter(|a| *a != own) {
        let answer = match node.admin_client(addr, Duration::from_secs(3)) {
            Ok(client) => client.get_json::<MemberView>("/admin/v1/status").await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(status) if status.members.is_empty() => {}
            Ok(status) => {
                let better = match &best {
                    None => true,
                    Some(b) => b.leader_id.is_none() && status.leader_id.is_some(),
                };
                if better {
                    best = Some(status);
                }
            }
            Err(e) => {
                tracing::debug!(member = %addr, error = %e, "join: member did not answer");
                unreachable.push(addr.clone());
            }
        }
    }
    (best, unreachable)
}
