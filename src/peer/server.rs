//! The server side of the peer service: Raft RPCs from other members and
//! client writes forwarded by followers and learners.
//!
//! Every handler converts between the wire form and openraft's types and
//! delegates; nothing here holds state of its own.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use openraft::Snapshot;
use tonic::{Request, Response, Status, Streaming};

use super::authorize::{authorize, PeerCall};
use super::wire::{submit_status, AppendHeader};
use crate::node::{Node, Submitter};
use crate::pb;
use crate::pb::peer::peer_server::{Peer, PeerServer};
use crate::raft::{codec, SnapshotMeta, TypeConfig, Vote};

/// The peer gRPC service of one node.
pub struct PeerService {
    node: Arc<Node>,
    /// Where forwarded writes go.
    submitter: Submitter,
}

impl PeerService {
    /// Wraps `node` as a tonic service with the configured message limit;
    /// forwarded writes go to `submitter`.
    pub fn server(
        node: Arc<Node>,
        submitter: Submitter,
        max_message_bytes: usize,
    ) -> PeerServer<PeerService> {
        PeerServer::new(PeerService { node, submitter })
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }
}

fn json_reply<T: serde::Serialize>(v: &T) -> Result<Response<pb::peer::JsonReply>, Status> {
    let json = serde_json::to_vec(v).map_err(|e| Status::internal(format!("encode reply: {e}")))?;
    Ok(Response::new(pb::peer::JsonReply {
        json: Bytes::from(json),
    }))
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(bytes)
        .map_err(|e| Status::invalid_argument(format!("{what} does not decode: {e}")))
}

fn raft_status<E: std::fmt::Display>(e: E) -> Status {
    Status::unavailable(format!("raft: {e}"))
}

impl PeerService {
    /// What `authorize` needs to know about a vote request. The log is read
    /// only when the answer matters: TLS on and a candidate this node's
    /// membership does not list.
    async fn vote_call(&self, rpc: &VoteRequest<TypeConfig>) -> Result<PeerCall, Status> {
        let candidate = rpc.vote.leader_id().node_id;
        let newer_log = if self.node.tls_enabled() && !self.node.knows_member(candidate) {
            self.node
                .log_is_newer(rpc.last_log_id.as_ref())
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?
        } else {
            false
        };
        Ok(PeerCall::Vote {
            candidate,
            newer_log,
        })
    }

    /// Raft RPCs are refused until the node is admitted (see
    /// `Node::is_admitted`); nothing else is.
    fn check_admitted(&self) -> Result<(), Status> {
        if self.node.gate().is_admitted() {
            Ok(())
        } else {
            Err(Status::unavailable(format!(
                "node {} has empty storage and has not been admitted to the cluster yet (cluster.join)",
                self.node.id()
            )))
        }
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        request: Request<pb::peer::AppendEntriesRequest>,
    ) -> Result<Response<pb::peer::JsonReply>, Status> {
        self.check_admitted()?;
        let header: AppendHeader = parse("append header", &request.get_ref().header_json)?;
        let leader = header.vote.leader_id().node_id;
        authorize(&self.node, &request, PeerCall::Replicate { leader })?;
        let msg = request.into_inner();
        let entries = msg
            .entries
            .into_iter()
            .map(codec::from_pb)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let rpc = AppendEntriesRequest::<TypeConfig> {
            vote: header.vote,
            prev_log_id: header.prev_log_id,
            leader_commit: header.leader_commit,
            entries,
        };
        let resp = self
            .node
            .raft()
            .append_entries(rpc)
            .await
            .map_err(raft_status)?;
        if matches!(resp, openraft::raft::AppendEntriesResponse::Success) {
            self.node.note_leader_contact();
        }
        json_reply(&resp)
    }

    async fn vote(
        &self,
        request: Request<pb::peer::JsonMessage>,
    ) -> Result<Response<pb::peer::JsonReply>, Status> {
        self.check_admitted()?;
        let rpc: VoteRequest<TypeConfig> = parse("vote request", &request.get_ref().json)?;
        let call = self.vote_call(&rpc).await?;
        authorize(&self.node, &request, call)?;
        json_reply(&self.node.raft().vote(rpc).await.map_err(raft_status)?)
    }

    async fn pre_vote(
        &self,
        request: Request<pb::peer::JsonMessage>,
    ) -> Result<Response<pb::peer::JsonReply>, Status> {
        self.check_admitted()?;
        let rpc: VoteRequest<TypeConfig> = parse("pre-vote request", &request.get_ref().json)?;
        let call = self.vote_call(&rpc).await?;
        authorize(&self.node, &request, call)?;
        json_reply(&self.node.raft().pre_vote(rpc).await.map_err(raft_status)?)
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::peer::JsonMessage>,
    ) -> Result<Response<pb::peer::JsonReply>, Status> {
        self.check_admitted()?;
        let rpc: TransferLeaderRequest<TypeConfig> =
            parse("transfer-leader request", &request.get_ref().json)?;
        let leader = rpc.from_leader().leader_id().node_id;
        authorize(&self.node, &request, PeerCall::Transfer { leader })?;
        // openraft would start an election here whatever `enable_elect`
        // says; a witness must never lead by transfer, nor a draining node
        // (it takes no writes and is about to stop).
        if self.node.is_witness() && *rpc.to_node_id() == self.node.id() {
            tracing::warn!(
                from = %rpc.from_leader(),
                "refused leadership transfer: this node is a witness"
            );
            return Err(Status::failed_precondition(
                "this node is a witness and never takes leadership",
            ));
        }
        if self.node.gate().is_draining() && *rpc.to_node_id() == self.node.id() {
            tracing::warn!(from = %rpc.from_leader(), "refused leadership transfer: this node is draining");
            return Err(Status::failed_precondition(
                "this node is draining and takes no leadership",
            ));
        }
        json_reply(
            &self
                .node
                .raft()
                .handle_transfer_leader(rpc)
                .await
                .map_err(raft_status)?,
        )
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::peer::SnapshotChunk>>,
    ) -> Result<Response<pb::peer::JsonReply>, Status> {
        self.check_admitted()?;
        // The first chunk says which leader sends the snapshot; the caller
        // is checked against it before the rest is read.
        let extensions = request.extensions().clone();
        let mut stream = request.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("snapshot stream is empty"))??;
        let vote: Vote = parse("snapshot vote", &first.vote_json)?;
        let mut probe = Request::new(());
        *probe.extensions_mut() = extensions;
        let leader = vote.leader_id().node_id;
        authorize(&self.node, &probe, PeerCall::Replicate { leader })?;
        let meta: SnapshotMeta = parse("snapshot meta", &first.meta_json)?;
        let cap = self.node.config().peer.max_snapshot_bytes;
        let data = collect_snapshot(first.data, stream, cap).await?;
        let snapshot = Snapshot {
            meta,
            snapshot: data,
        };
        let resp = self
            .node
            .raft()
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(raft_status)?;
        json_reply(&resp)
    }

    async fn node_info(
        &self,
        request: Request<pb::peer::NodeInfoRequest>,
    ) -> Result<Response<pb::peer::NodeInfoReply>, Status> {
        authorize(&self.node, &request, PeerCall::NodeInfo)?;
        let m = self.node.raft_metrics();
        Ok(Response::new(pb::peer::NodeInfoReply {
            node_id: self.node.id(),
            role: self.node.config().role.as_str().to_string(),
            durable_applied_next: self
                .node
                .log_store()
                .durable_applied()
                .map_or(0, |i| i.saturating_add(1)),
            leader: m.state == openraft::ServerState::Leader,
            term: m.current_term,
            recent_leader_contact: self.node.has_recent_leader_contact(),
            draining: self.node.gate().is_draining(),
        }))
    }

    async fn forward(
        &self,
        request: Request<pb::log::IngestRequest>,
    ) -> Result<Response<pb::peer::ForwardReply>, Status> {
        authorize(&self.node, &request, PeerCall::Forward)?;
        let log_index = self
            .submitter
            .accept_forwarded(request.into_inner())
            .await
            .map_err(|e| submit_status(&e))?;
        Ok(Response::new(pb::peer::ForwardReply { log_index }))
    }
}

/// The snapshot's bytes: `first`, then every chunk's, refused with
/// RESOURCE_EXHAUSTED as soon as they pass `cap` (`peer.max_snapshot_bytes`).
async fn collect_snapshot<S>(first: Bytes, mut rest: S, cap: usize) -> Result<Bytes, Status>
where
    S: futures::Stream<Item = Result<pb::peer::SnapshotChunk, Status>> + Unpin,
{
    let too_large = || {
        Status::resource_exhausted(format!(
            "snapshot exceeds peer.max_snapshot_bytes ({cap} bytes)"
        ))
    };
    if first.len() > cap {
        return Err(too_large());
    }
    let mut data = BytesMut::from(&first[..]);
    while let Some(chunk) = rest.next().await {
        let chunk = chunk?;
        if data.len() + chunk.data.len() > cap {
            return Err(too_large());
        }
        data.extend_from_slice(&chunk.data);
    }
    Ok(data.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        n: usize,
        size: usize,
    ) -> impl futures::Stream<Item = Result<pb::peer::SnapshotChunk, Status>> + Unpin {
        futures::stream::iter((0..n).map(move |_| {
            Ok(pb::peer::SnapshotChunk {
                data: Bytes::from(vec![1u8; size]),
                ..Default::default()
            })
        }))
    }

    #[tokio::test]
    async fn a_snapshot_over_the_cap_is_refused_before_it_is_all_held() {
        let data = collect_snapshot(Bytes::from_static(b"ab"), chunks(3, 10), 32)
            .await
            .unwrap();
        assert_eq!(data.len(), 32);
        let err = collect_snapshot(Bytes::from_static(b"ab"), chunks(1_000_000, 10), 100)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(
            err.message().contains("peer.max_snapshot_bytes"),
            "{}",
            err.message()
        );
    }
}
