//! Which member may make which peer call, when the cluster runs TLS.
//!
//! The TLS handshake already proved that the caller holds a certificate
//! from the cluster CA; it names a node id (`tls::identity`). On top:
//! - Every call must come from a certificate that names a node, and not a
//!   node that was removed from the cluster (ids are never reused).
//! - A call that speaks for a node (a vote for a candidate, entries from a
//!   leader, a leadership transfer) must come from that node: no member
//!   can impersonate another.
//! - Transfers and forwarded writes must come from a member this node's
//!   membership lists. A node with no membership yet (joining) accepts any
//!   cluster node.
//! - Votes from a candidate this node's membership does not list are
//!   refused unless the candidate's log is newer than this node's: then
//!   this node's own view of the membership may be the stale one (it was
//!   down while the candidate was added), and refusing could leave a
//!   majority unable to elect anyone.
//! - Entries and snapshots are accepted from an unlisted leader that
//!   proves who it is, for the same reason: a member that was down while
//!   that leader was added must still be able to catch up. Raft's own term
//!   checks then apply.

use tonic::{Request, Status};

use crate::node::Node;
use crate::raft::NodeId;
use crate::tls::ConnInfo;

/// The kinds of peer call, by what they may affect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PeerCall {
    /// Vote or pre-vote for `candidate`; `newer_log`: its last log id is
    /// newer than this node's.
    Vote { candidate: NodeId, newer_log: bool },
    /// Append entries or install a snapshot, from `leader`.
    Replicate { leader: NodeId },
    /// Leadership transfer sent by `leader`.
    Transfer { leader: NodeId },
    /// A client write forwarded by a member.
    Forward,
    /// "Who are you?": open to any cluster node.
    NodeInfo,
}

/// Refuses `call` unless the caller's certificate allows it. Does nothing
/// when the cluster runs without TLS.
pub(crate) fn authorize<T>(
    node: &Node,
    request: &Request<T>,
    call: PeerCall,
) -> Result<(), Status> {
    if !node.tls_enabled() {
        return Ok(());
    }
    let info = request.extensions().get::<ConnInfo>();
    let Some(caller) = info.and_then(|i| i.node) else {
        return Err(refuse(
            info,
            call,
            "the peer certificate names no otelraft node (URI otelraft://node/<id>)".into(),
        ));
    };
    if node.is_retired(caller) {
        return Err(refuse(
            info,
            call,
            format!("node {caller} was removed from the cluster"),
        ));
    }
    let claimed = match call {
        PeerCall::Vote { candidate, .. } => Some(candidate),
        PeerCall::Replicate { leader } | PeerCall::Transfer { leader } => Some(leader),
        PeerCall::Forward | PeerCall::NodeInfo => None,
    };
    if let Some(claimed) = claimed.filter(|c| *c != caller) {
        return Err(refuse(
            info,
            call,
            format!("node {caller} may not speak for node {claimed}"),
        ));
    }
    let must_be_member = match call {
        PeerCall::Vote { newer_log, .. } => !newer_log,
        PeerCall::Transfer { .. } | PeerCall::Forward => true,
        PeerCall::Replicate { .. } | PeerCall::NodeInfo => false,
    };
    if must_be_member && !node.knows_member(caller) {
        return Err(refuse(
            info,
            call,
            format!("node {caller} is not in this node's membership"),
        ));
    }
    Ok(())
}

fn refuse(info: Option<&ConnInfo>, call: PeerCall, why: String) -> Status {
    tracing::warn!(
        remote = ?info.map(|i| i.remote),
        certificate_node = ?info.and_then(|i| i.node),
        ?call,
        reason = %why,
        "peer call refused"
    );
    Status::permission_denied(format!("refused: {why}"))
}
