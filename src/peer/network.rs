//! openraft's network over the peer service: one `PeerNetwork` per target,
//! every one sharing the channel pool of `client`.

use std::future::Future;

use bytes::Bytes;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

use super::client::{from_json, status_error, to_json, PeerClients, PeerError};
use super::wire::AppendHeader;
use crate::pb;
use crate::pb::peer::peer_client::PeerClient;
use crate::raft::{codec, Entry, Member, NodeId, TypeConfig, Vote};
use crate::store::{carry, LogStore};

/// Size of one InstallSnapshot chunk.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// openraft's factory: one `PeerNetwork` per target, all sharing the pool.
#[derive(Clone)]
pub struct NetworkFactory {
    clients: PeerClients,
    log: LogStore,
    serves_snapshots: bool,
}

impl NetworkFactory {
    /// Wraps the shared pool; `log` supplies the retained entries a snapshot
    /// carries (see `store::carry`). A witness passes `serves_snapshots =
    /// false`: it holds no data to carry, and its log is kept long enough
    /// that a data voter never needs one from it.
    pub fn new(clients: PeerClients, log: LogStore, serves_snapshots: bool) -> Self {
        NetworkFactory {
            clients,
            log,
            serves_snapshots,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Self::Network {
        PeerNetwork {
            target,
            addr: node.peer_addr.clone(),
            clients: self.clients.clone(),
            log: self.log.clone(),
            serves_snapshots: self.serves_snapshots,
        }
    }
}

/// Raft RPCs to one peer.
pub struct PeerNetwork {
    target: NodeId,
    addr: String,
    clients: PeerClients,
    log: LogStore,
    serves_snapshots: bool,
}

impl PeerNetwork {
    fn request<T>(&self, msg: T, option: &RPCOption) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(
            option
                .hard_ttl()
                .min(self.clients.settings().rpc_timeout.max(option.soft_ttl())),
        );
        req
    }

    async fn json_call<Req, Resp, F, Fut>(
        &self,
        msg: &Req,
        option: &RPCOption,
        call: F,
    ) -> Result<Resp, PeerError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(PeerClient<Channel>, tonic::Request<pb::peer::JsonMessage>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<pb::peer::JsonReply>, tonic::Status>>,
    {
        let client = self.clients.client(&self.addr)?;
        let json = to_json(&self.addr, msg)?;
        let req = self.request(pb::peer::JsonMessage { json }, option);
        let reply = call(client, req)
            .await
            .map_err(|s| status_error(&self.addr, s))?;
        from_json(&self.addr, &reply.into_inner().json)
    }
}

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = Bytes;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let header = AppendHeader {
            vote: rpc.vote,
            prev_log_id: rpc.prev_log_id,
            leader_commit: rpc.leader_commit,
        };
        let entries = encode_within(&rpc.entries, self.clients.settings().max_append_bytes)
            .map_err(|e| {
                PeerError::Encode {
                    addr: self.addr.clone(),
                    message: e.to_string(),
                }
                .into_rpc()
            })?;
        // Fewer entries than openraft asked for: a success covers only
        // those, which openraft takes as a partial success and goes on from.
        let cut_at = if entries.len() < rpc.entries.len() {
            let last_sent = entries.len().checked_sub(1);
            last_sent.and_then(|i| rpc.entries.get(i)).map(|e| e.log_id)
        } else {
            None
        };
        let msg = pb::peer::AppendEntriesRequest {
            header_json: to_json(&self.addr, &header).map_err(PeerError::into_rpc)?,
            entries,
        };
        let mut client = self
            .clients
            .client(&self.addr)
            .map_err(PeerError::into_rpc)?;
        let reply = client
            .append_entries(self.request(msg, &option))
            .await
            .map_err(|s| status_error(&self.addr, s).into_rpc())?;
        let response: AppendEntriesResponse<TypeConfig> =
            from_json(&self.addr, &reply.into_inner().json).map_err(PeerError::into_rpc)?;
        Ok(match (response, cut_at) {
            (AppendEntriesResponse::Success, Some(last)) => {
                AppendEntriesResponse::PartialSuccess(Some(last))
            }
            (response, _) => response,
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.json_call(&rpc, &option, |mut c, r| async move { c.vote(r).await })
            .await
            .map_err(PeerError::into_rpc)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.json_call(&rpc, &option, |mut c, r| async move { c.pre_vote(r).await })
            .await
            .map_err(PeerError::into_rpc)
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.json_call(&req, &option, |mut c, r| async move {
            c.transfer_leader(r).await
        })
        .await
        .map_err(PeerError::into_rpc)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::type_config::alias::SnapshotOf<TypeConfig, Bytes>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        if !self.serves_snapshots {
            tracing::error!(
                target_node = self.target,
                "a witness does not serve snapshots; node {} needs entries this witness no longer holds",
                self.target
            );
            let e = std::io::Error::other("a witness does not serve snapshots");
            return Err(StreamingError::Unreachable(Unreachable::new(&e)));
        }
        // The state plus every entry this node still retains up to the
        // snapshot's end: the receiver may need them to export or archive.
        let carried = match snapshot.meta.last_log_id {
            Some(last) => self
                .log
                .raw_rows(0, last.index, usize::MAX)
                .await
                .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?,
            None => Vec::new(),
        };
        let data = carry::wrap(&snapshot.snapshot, &carried);
        tracing::info!(
            target_node = self.target,
            carried_entries = carried.len(),
            bytes = data.len(),
            "sending snapshot"
        );
        drop(carried);
        let encode = |e: PeerError| StreamingError::Network(NetworkError::new(&e));
        let vote_json = to_json(&self.addr, &vote).map_err(encode)?;
        let meta_json = to_json(&self.addr, &snapshot.meta).map_err(encode)?;
        let mut chunks = Vec::with_capacity(data.len() / SNAPSHOT_CHUNK_BYTES + 1);
        let mut offset = 0;
        loop {
            let end = (offset + SNAPSHOT_CHUNK_BYTES).min(data.len());
            let first = offset == 0;
            chunks.push(pb::peer::SnapshotChunk {
                vote_json: if first {
                    vote_json.clone()
                } else {
                    Bytes::new()
                },
                meta_json: if first {
                    meta_json.clone()
                } else {
                    Bytes::new()
                },
                data: data.slice(offset..end),
            });
            offset = end;
            if offset >= data.len() {
                break;
            }
        }
        let mut client = self
            .clients
            .client(&self.addr)
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
        let mut req = tonic::Request::new(futures::stream::iter(chunks));
        req.set_timeout(option.hard_ttl());
        let call = client.install_snapshot(req);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            reply = call => {
                let reply = reply.map_err(|s| {
                    let e = status_error(&self.addr, s);
                    if e.is_unreachable() {
                        StreamingError::Unreachable(Unreachable::new(&e))
                    } else {
                        StreamingError::Network(NetworkError::new(&e))
                    }
                })?;
                from_json(&self.addr, &reply.into_inner().json).map_err(|e| StreamingError::Network(NetworkError::new(&e)))
            }
        }
    }
}

impl std::fmt::Debug for PeerNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerNetwork(node {} at {})", self.target, self.addr)
    }
}

/// The entries' wire form, in order, until the next would take the total
/// past `budget` bytes; always at least one entry, so a single entry larger
/// than the budget still replicates (the message cap allows for it).
fn encode_within(
    entries: &[Entry],
    budget: usize,
) -> Result<Vec<pb::log::LogEntry>, codec::CodecError> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for entry in entries {
        let encoded = codec::to_pb(entry)?;
        let len = prost::Message::encoded_len(&encoded);
        if !out.is_empty() && bytes.saturating_add(len) > budget {
            break;
        }
        bytes = bytes.saturating_add(len);
        out.push(encoded);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::log::command::Kind;
    use crate::pb::log::IngestRequest;
    use crate::state::tests::normal;

    fn entry(index: u64, payload_bytes: usize) -> Entry {
        normal(
            1,
            index,
            Kind::Ingest(IngestRequest {
                payload: Bytes::from(vec![7u8; payload_bytes]),
                ..Default::default()
            }),
        )
    }

    #[test]
    fn entries_are_sent_up_to_the_byte_budget_and_always_at_least_one() {
        let entries: Vec<Entry> = (1..=10).map(|i| entry(i, 1000)).collect();
        let one = prost::Message::encoded_len(&codec::to_pb(&entries[0]).expect("encodes"));
        let sent = encode_within(&entries, 3 * one + one / 2).expect("encodes");
        assert_eq!(sent.len(), 3, "three fit, the fourth would pass the budget");
        let sent = encode_within(&entries, usize::MAX).expect("encodes");
        assert_eq!(sent.len(), 10);
        let sent = encode_within(&entries, 1).expect("encodes");
        assert_eq!(sent.len(), 1, "an entry over the budget still goes, alone");
        assert!(encode_within(&[], 1).expect("encodes").is_empty());
    }
}
