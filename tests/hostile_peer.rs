//! Hostile traffic on the peer port against a real 3-node cluster that
//! exports to a real Prometheus and the strict Loki receiver, while the
//! official OpenTelemetry SDK writes steadily (issue 20's acceptance suite):
//! a backlog many times a peer message to a paused follower, and forged
//! peer calls against a cluster with TLS, mutual TLS and `[auth]` on.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use otelraft::pb::log::{IngestRequest, Signal};
use otelraft::pb::peer::peer_client::PeerClient;
use prost::Message;
use testkit::cluster::{Options, TestCluster, TestNode};
use testkit::peer::{assert_denied, certs, peer_client, term, vote_for};
use testkit::steady::{assert_rss_within, peak_rss, SdkWriter, Sinks};

const MIB: u64 = 1 << 20;
const MAX_REQUEST_BYTES: u64 = 16 * MIB;
const MAX_MESSAGE_BYTES: u64 = 48 * MIB;
const MAX_APPEND_BYTES: u64 = 16 * MIB;
const DB_CACHE_BYTES: u64 = 64 * MIB;

/// `spans` spans, each with a 100 kB attribute: about 100 kB per span on
/// the wire.
fn heavy_traces(batch: usize, spans: usize) -> Vec<u8> {
    let spans = (0..spans)
        .map(|i| Span {
            trace_id: vec![0x5a; 16],
            span_id: ((batch * 1000 + i + 1) as u64).to_be_bytes().to_vec(),
            name: format!("backlog-{batch}-{i}"),
            attributes: vec![KeyValue {
                key: "payload".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("p".repeat(100_000))),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

async fn post_traces(node: &TestNode, body: Vec<u8>) -> u16 {
    node.client(Duration::from_secs(60))
        .post(format!("{}/v1/traces", node.http_url()))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("answered")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_many_peer_messages_long_reaches_a_paused_follower_in_bounded_memory() {
    let sinks = Sinks::start().await;
    let mut env = sinks.env();
    env.extend([
        (
            "OTELRAFT_INGEST__MAX_REQUEST_BYTES".to_string(),
            MAX_REQUEST_BYTES.to_string(),
        ),
        (
            "OTELRAFT_PEER__MAX_MESSAGE_BYTES".to_string(),
            MAX_MESSAGE_BYTES.to_string(),
        ),
        (
            "OTELRAFT_PEER__MAX_APPEND_BYTES".to_string(),
            MAX_APPEND_BYTES.to_string(),
        ),
        (
            "OTELRAFT_RAFT__DB_CACHE_BYTES".to_string(),
            DB_CACHE_BYTES.to_string(),
        ),
    ]);
    let cluster = TestCluster::start(Options {
        nodes: 3,
        env,
        ..Default::default()
    })
    .await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let paused = cluster.a_follower().await;
    let (lead, stopped) = (
        &cluster.nodes[(leader - 1) as usize],
        &cluster.nodes[(paused - 1) as usize],
    );
    let running: Vec<&TestNode> = cluster.nodes.iter().filter(|n| n.id != paused).collect();
    let writer = SdkWriter::start_on(&running, "backlog-steady");
    cluster
        .wait_all_reach("logs", 5, Duration::from_secs(60))
        .await;
    let before = peak_rss(&cluster);

    // 24 requests of 12 MB each while the follower is stopped: 288 MB,
    // six times what one peer message may carry.
    stopped.pause();
    let batches = 24;
    let spans = 120;
    for batch in 0..batches {
        assert_eq!(
            post_traces(lead, heavy_traces(batch, spans)).await,
            200,
            "batch {batch}"
        );
    }
    let total = (batches * spans) as u64;
    stopped.resume();
    cluster
        .wait_all_reach("traces", total, Duration::from_secs(180))
        .await;
    // No snapshot exists below `raft.snapshot_every_entries` (20,000), so
    // the follower caught up by AppendEntries alone.
    let entries = lead.status().await.expect("status")["retained_log"]["entries"]
        .as_u64()
        .unwrap_or(u64::MAX);
    assert!(
        entries < 20_000,
        "{entries} entries: a snapshot may have been sent"
    );

    let report = writer.finish().await;
    sinks
        .assert_delivered(&cluster, "backlog-steady", &report)
        .await;
    // The baseline, plus the page cache, plus what the peer path holds at
    // once (a message being built or decoded, and its entries, for each of
    // two followers), plus the in-flight requests that carried the backlog,
    // plus 64 MiB of slack.
    let allowance = DB_CACHE_BYTES + 4 * MAX_MESSAGE_BYTES + 2 * MAX_REQUEST_BYTES + 64 * MIB;
    assert_rss_within(&cluster, &before, allowance, "append backlog");
}

/// A leadership transfer from `leader` at `term` to `to`.
fn transfer_from(leader: u64, term: u64, to: u64) -> otelraft::pb::peer::JsonMessage {
    use otelraft::raft::{TypeConfig, Vote};
    let rpc = openraft::raft::TransferLeaderRequest::<TypeConfig>::new(
        Vote::new_committed(term, leader),
        to,
        None,
    );
    otelraft::pb::peer::JsonMessage {
        json: serde_json::to_vec(&rpc).expect("JSON").into(),
    }
}

/// A logs request with one record, encoded.
fn one_log(body: &str) -> Vec<u8> {
    testkit::cluster::logs_request(&[body.to_string()]).encode_to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_peer_calls_on_a_cluster_with_auth_on_are_refused_and_change_nothing() {
    let sinks = Sinks::start().await;
    let cluster = TestCluster::start(Options {
        nodes: 3,
        tls: true,
        auth: true,
        env: sinks.env(),
        ..Default::default()
    })
    .await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let lead = &cluster.nodes[(leader - 1) as usize];
    let follower = &cluster.nodes[(cluster.a_follower().await - 1) as usize];
    let writer = SdkWriter::start(&cluster, "forged-steady");
    cluster
        .wait_all_reach("logs", 5, Duration::from_secs(60))
        .await;
    let term_before = term(lead).await;
    let tls = cluster.dir.path().join("tls");
    let ca = tls.join("ca.pem");
    // A certificate from the cluster CA for node 9, which no membership
    // lists.
    certs(&tls, "9");
    let ingest = |body: &str| IngestRequest {
        signal: Signal::Logs as i32,
        payload: one_log(body).into(),
        records: 1,
        ..Default::default()
    };

    // Plaintext to the peer port: no handshake, no call.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", lead.peer))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    let refused = PeerClient::new(plain)
        .forward(ingest("forgery-plaintext"))
        .await
        .expect_err("plaintext must not reach the peer service");
    assert_ne!(refused.code(), tonic::Code::Ok);

    for target in [lead, follower] {
        let mut outsider = peer_client(target, &tls, "node-9", &ca).await;
        let vote = outsider
            .vote(vote_for(9, term_before + 10))
            .await
            .expect_err("a vote from a non-member");
        assert_denied(&vote, "not in this node's membership");
        let forward = outsider
            .forward(ingest("forgery-outsider"))
            .await
            .expect_err("a write forwarded by a non-member");
        assert_denied(&forward, "not in this node's membership");
        let transfer = outsider
            .transfer_leader(transfer_from(9, term_before + 10, target.id))
            .await
            .expect_err("a transfer from a non-member");
        assert_denied(&transfer, "not in this node's membership");
        // A member's certificate speaking for another member.
        let mut others = [1u64, 2, 3].into_iter().filter(|id| *id != target.id);
        let (impostor, other) = (others.next().unwrap_or(1), others.next().unwrap_or(2));
        let vote = peer_client(target, &tls, &format!("node-{impostor}"), &ca)
            .await
            .vote(vote_for(other, term_before + 10))
            .await
            .expect_err("a member speaking for another");
        assert_denied(&vote, &format!("may not speak for node {other}"));
    }

    // A member forwarding what no receiver would have accepted: the leader
    // checks the payload itself.
    let mut member = peer_client(lead, &tls, &format!("node-{}", follower.id), &ca).await;
    let forged = [
        IngestRequest {
            signal: Signal::Logs as i32,
            payload: vec![0xff; 64].into(),
            records: 1,
            ..Default::default()
        },
        IngestRequest {
            records: 1000,
            ..ingest("forgery-count")
        },
        IngestRequest {
            signal: Signal::Metrics as i32,
            ..ingest("forgery-signal")
        },
    ];
    for request in forged {
        let status = member
            .forward(request)
            .await
            .expect_err("an invalid forwarded write");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }

    let report = writer.finish().await;
    sinks
        .assert_delivered(&cluster, "forged-steady", &report)
        .await;
    for n in &cluster.nodes {
        assert!(n.is_running(), "node {} died", n.id);
        let status = n.status().await.expect("status");
        assert_eq!(status["term"].as_u64(), Some(term_before), "node {}", n.id);
        assert_eq!(status["leader_id"].as_u64(), Some(leader), "node {}", n.id);
        assert_eq!(
            n.committed_records("logs").await,
            Some(report.logs),
            "node {}: only the SDK's records are committed",
            n.id
        );
    }
    assert!(
        !sinks
            .loki
            .stored()
            .iter()
            .any(|l| l.line.starts_with("forgery-")),
        "a forged record reached Loki"
    );
}
