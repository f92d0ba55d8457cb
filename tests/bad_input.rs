//! Refusals on a real cluster: each bad request gets its OTLP status and a
//! message, and the committed count does not move.

use std::io::Write;
use std::time::Duration;
use testkit::cluster;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use prost::Message;
use testkit::cluster::{logs_request, post_logs, Options, TestCluster};

const LIMIT: usize = 1 << 20;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    ctype: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Option<String>) {
    let mut req = client.post(url).header("content-type", ctype).body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp
        .bytes()
        .await
        .map(|b| String::from_utf8_lossy(&b).to_string())
        .unwrap_or_default();
    (status, body, retry)
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_unsupported_and_oversized_requests_are_refused_and_nothing_commits() {
    let cluster = TestCluster::start(Options {
        nodes: 3,
        env: vec![(
            "OTELRAFT_INGEST__MAX_REQUEST_BYTES".into(),
            LIMIT.to_string(),
        )],
        ..Default::default()
    })
    .await;
    let client = reqwest::Client::new();
    let follower = cluster.a_follower().await;
    let node = &cluster.nodes[(follower - 1) as usize];
    let url = format!("{}/v1/logs", node.http_url());
    // A baseline commit so counts are known to be flowing.
    assert_eq!(
        post_logs(&client, node, &["baseline".to_string()]).await,
        Some(200)
    );
    cluster
        .wait_for_records("logs", 1, Duration::from_secs(30))
        .await;

    let (s, body, _) = post(
        &client,
        &url,
        "application/x-protobuf",
        None,
        vec![0xff, 0xff, 0xff, 0x01],
    )
    .await;
    assert_eq!(s, 400, "garbage protobuf: {body}");
    assert!(
        body.to_lowercase().contains("decode") || body.to_lowercase().contains("protobuf"),
        "message names the failure: {body}"
    );

    let (s, body, _) = post(
        &client,
        &url,
        "application/json",
        None,
        b"{\"resourceLogs\": [{\"scopeLogs\": 5}]}".to_vec(),
    )
    .await;
    assert_eq!(s, 400, "bad JSON: {body}");
    assert!(!body.is_empty(), "a message explains the JSON error");

    let (s, body, _) = post(&client, &url, "text/plain", None, b"hello".to_vec()).await;
    assert_eq!(s, 415, "wrong content type: {body}");

    let big: Vec<String> = (0..(LIMIT / 1000 + 50))
        .map(|i| format!("{i:0>1000}"))
        .collect();
    let big_body = logs_request(&big).encode_to_vec();
    assert!(big_body.len() > LIMIT);
    let (s, body, retry) = post(
        &client,
        &url,
        "application/x-protobuf",
        None,
        big_body.clone(),
    )
    .await;
    assert_eq!(s, 413, "oversized body: {body}");
    assert!(retry.is_none(), "413 carries no retry hint");

    let bomb = gzip(&vec![b'a'; 64 * LIMIT]);
    assert!(bomb.len() < LIMIT / 4, "the bomb is small on the wire");
    let (s, body, _) = post(&client, &url, "application/x-protobuf", Some("gzip"), bomb).await;
    assert_eq!(s, 413, "gzip bomb is stopped while decompressing: {body}");

    let (s, body, _) = post(&client, &url, "application/json", None, b"{}".to_vec()).await;
    assert_eq!(s, 200, "an empty request is a valid no-op: {body}");

    // gRPC: invalid ids and an oversized message.
    let mut grpc = LogsServiceClient::connect(format!("http://{}", node.grpc))
        .await
        .expect("grpc connect");
    let mut bad = logs_request(&["bad-trace".to_string()]);
    bad.resource_logs[0].scope_logs[0].log_records[0].trace_id = vec![1, 2, 3];
    let err = grpc
        .export(bad)
        .await
        .expect_err("invalid trace id is refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let err = grpc
        .export(logs_request(&big))
        .await
        .expect_err("oversized gRPC is refused");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");

    // Nothing from any refused request was committed, anywhere.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in &cluster.nodes {
        assert_eq!(
            n.committed_records("logs").await,
            Some(1),
            "node {} count moved",
            n.id
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pressure_and_lost_quorum_answer_retryable_statuses_with_a_hint() {
    let cluster = TestCluster::start(Options {
        nodes: 3,
        env: vec![
            (
                "OTELRAFT_INGEST__MAX_REQUEST_BYTES".into(),
                (1usize << 20).to_string(),
            ),
            (
                "OTELRAFT_INGEST__MAX_INFLIGHT_BYTES".into(),
                (1usize << 20).to_string(),
            ),
            ("OTELRAFT_INGEST__COMMIT_TIMEOUT_MS".into(), "4000".into()),
        ],
        ..Default::default()
    })
    .await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let leader_node = &cluster.nodes[(leader - 1) as usize];
    let followers: Vec<&cluster::TestNode> =
        cluster.nodes.iter().filter(|n| n.id != leader).collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let url = format!("{}/v1/logs", leader_node.http_url());
    let bodies: Vec<String> = (0..600).map(|i| format!("{i:0>1000}")).collect();
    let body = logs_request(&bodies).encode_to_vec();
    assert!(body.len() > (1 << 19) && body.len() < (1 << 20));

    // With both followers paused nothing commits, so the first request holds
    // its bytes and the second finds the budget spent.
    for f in &followers {
        f.pause();
    }
    let first = {
        let client = client.clone();
        let url = url.clone();
        let body = body.clone();
        tokio::spawn(async move { post(&client, &url, "application/x-protobuf", None, body).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, msg, retry) = post(&client, &url, "application/x-protobuf", None, body.clone()).await;
    assert_eq!(s, 429, "over the in-flight budget: {msg}");
    assert!(retry.is_some(), "429 carries Retry-After");
    for f in &followers {
        f.resume();
    }
    let (s, msg, _) = first.await.expect("first request task");
    assert!(
        s == 200 || s == 503,
        "the held request either commits or asks for a retry: {s} {msg}"
    );

    // Without a quorum a member answers 503 with a retry hint.
    for f in &followers {
        f.pause();
    }
    let (s, msg, retry) = post(
        &client,
        &url,
        "application/x-protobuf",
        None,
        logs_request(&["x".into()]).encode_to_vec(),
    )
    .await;
    for f in &followers {
        f.resume();
    }
    assert_eq!(s, 503, "no quorum: {msg}");
    assert!(retry.is_some(), "503 carries Retry-After");
}
