//! Which member may make which peer call, when the cluster runs TLS.
//!
//! The TLS handshake already proved that the caller holds a certificate
//! from the cluster CA; it names a node id (`tls::identity`). On top:
//! - Every call must come from a certificate that names a node.
//! - A call that speaks for a node (a vote for a candidate, entries from a
//!   leader, a leadership transfer) must come from that node: no member
//!   can impersonate another.
//! - Calls that could disturb the cluster (votes, transfers, forwarded
//!   writes) must come from a member this node's membership lists. A
//!   node with no membership yet (joining) accepts any cluster node.
//! - Entries and snapshots are accepted from an unlisted leader that
//!   proves who it is: a member that was down while that leader was added
//!   must still be able to catch up. Raft's own term checks then apply.

use tonic::{Request, Status};

use crate::cluster::Node;
use crate::raft::NodeId;
use crate::tls::ConnInfo;

/// The kinds of peer call, by what they may affect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PeerCall {
    /// Vote or pre-vote for `candidate`.
    Vote { candidate: NodeId },
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
    let claimed = match call {
        PeerCall::Vote { candidate } => Some(candidate),
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
    let must_be_member = matches!(
        call,
        PeerCall::Vote { .. } | PeerCall::Transfer { .. } | PeerCall::Forward
    );
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
