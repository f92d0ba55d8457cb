//! Calls to a member's peer port as an outsider would make them: with a
//! certificate of our choosing, and openraft's messages built by hand.

use std::path::Path;
use std::time::Duration;

use openraft::raft::VoteRequest;
use otelraft::pb::peer::peer_client::PeerClient;
use otelraft::pb::peer::JsonMessage;
use otelraft::raft::{LogId, TypeConfig, Vote};

use crate::cluster::{binary, run_cli, TestNode};

/// `otelraft certs` into `dir` for `nodes` (a new CA unless `dir` has one).
pub fn certs(dir: &Path, nodes: &str) {
    let (ok, out) = run_cli(
        std::process::Command::new(binary())
            .arg("certs")
            .arg("--dir")
            .arg(dir)
            .arg("--nodes")
            .arg(nodes),
    );
    assert!(ok, "otelraft certs failed: {out}");
}

/// A peer-service client presenting `name`'s certificate from `dir`,
/// trusting the cluster CA `ca`.
pub async fn peer_client(
    node: &TestNode,
    dir: &Path,
    name: &str,
    ca: &Path,
) -> PeerClient<tonic::transport::Channel> {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let tls = otelraft::tls::ClientTls::from_files(ca, Some((&cert, &key))).expect("client TLS");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", node.peer))
        .expect("endpoint")
        .tls_config(tls.tonic())
        .expect("tls config")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    PeerClient::new(channel)
}

/// A vote request for `candidate` at `term`.
pub fn vote_for(candidate: u64, term: u64) -> JsonMessage {
    vote_with_log(candidate, term, None)
}

/// A vote request for `candidate` at `term` whose last log id is `last`.
pub fn vote_with_log(candidate: u64, term: u64, last: Option<LogId>) -> JsonMessage {
    let rpc = VoteRequest::<TypeConfig>::new(Vote::new(term, candidate), last);
    JsonMessage {
        json: serde_json::to_vec(&rpc).expect("vote JSON").into(),
    }
}

/// `status` is PERMISSION_DENIED and its message says `why`.
pub fn assert_denied(status: &tonic::Status, why: &str) {
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains(why), "{status:?}");
}

/// The Raft term `node` reports.
pub async fn term(node: &TestNode) -> u64 {
    node.status().await.expect("status")["term"]
        .as_u64()
        .expect("term")
}
