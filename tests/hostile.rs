//! Hostile input against a real 3-node cluster exporting to a real
//! Prometheus and the strict Loki receiver, while the official OpenTelemetry
//! SDK writes steadily (issue 20's acceptance suite, one attack class per
//! test; `hostile_export.rs` and `hostile_peer.rs` hold the others). After
//! each attack every node is alive, its peak RSS stayed within the
//! documented bound, the bad requests got their documented refusal, and
//! every record the SDK had acknowledged reached both sinks exactly once.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use testkit::cluster::{Options, TestCluster};
use testkit::steady::{assert_rss_within, peak_rss, SdkWriter, Sinks};

/// The decode budget the suite configures: small, so that one bomb decoded
/// in full would show many times over in RSS.
const DECODE_MEMORY_BYTES: u64 = 64 << 20;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

fn empty_spans(n: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Sends an encoded `ExportTraceServiceRequest` over gRPC with gzip, as
/// bytes: the attacker never holds the decoded bomb.
async fn export_raw(url: &str, message: Bytes) -> tonic::Status {
    let channel = tonic::transport::Channel::from_shared(url.to_string())
        .expect("url")
        .connect()
        .await
        .expect("grpc connect");
    let mut grpc = tonic::client::Grpc::new(channel)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_encoding_message_size(usize::MAX);
    grpc.ready().await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    match grpc
        .unary(tonic::Request::new(message), path, RawCodec)
        .await
    {
        Ok(_) => tonic::Status::ok("accepted"),
        Err(status) => status,
    }
}

struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

async fn hostile_cluster(sinks: &Sinks) -> TestCluster {
    let mut env = sinks.env();
    env.extend([
        (
            "OTELRAFT_INGEST__MAX_REQUEST_BYTES".into(),
            (16 << 20).to_string(),
        ),
        (
            "OTELRAFT_INGEST__DECODE_MEMORY_BYTES".into(),
            DECODE_MEMORY_BYTES.to_string(),
        ),
        // Only the decode budget stands between a bomb and the heap.
        (
            "OTELRAFT_INGEST__LIMITS__MAX_RECORDS".into(),
            "100000000".into(),
        ),
    ]);
    TestCluster::start(Options {
        nodes: 3,
        env,
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn decode_bombs_over_both_transports_leave_every_node_within_its_memory_bound() {
    let sinks = Sinks::start().await;
    let cluster = hostile_cluster(&sinks).await;
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let writer = SdkWriter::start(&cluster, "bombs-steady");
    cluster
        .wait_all_reach("logs", 5, Duration::from_secs(60))
        .await;
    let before = peak_rss(&cluster);

    // Two million empty spans: 4 MB of protobuf, about 4 kB of gzip, and
    // 530 MB once decoded. JSON: two million `{}`s.
    let plain = Bytes::from(empty_spans(2_000_000).encode_to_vec());
    let protobuf = Arc::new(gzip(&plain));
    let spans = vec!["{}"; 2_000_000].join(",");
    let json = Arc::new(gzip(
        format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{spans}]}}]}}]}}"#).as_bytes(),
    ));
    let mut attacks = Vec::new();
    for k in 0..8usize {
        let node = &cluster.nodes[k % 3];
        let (http, grpc) = (node.http_url(), format!("http://{}", node.grpc));
        let (protobuf, json, plain) = (protobuf.clone(), json.clone(), plain.clone());
        attacks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut answers = Vec::new();
            for round in 0..3 {
                let answer = match (k + round) % 4 {
                    0 | 1 => {
                        let (ctype, body) = if k % 2 == 0 {
                            ("application/x-protobuf", protobuf.to_vec())
                        } else {
                            ("application/json", json.to_vec())
                        };
                        let response = client
                            .post(format!("{http}/v1/traces"))
                            .header("content-type", ctype)
                            .header("content-encoding", "gzip")
                            .body(body)
                            .send()
                            .await
                            .expect("the node answers");
                        let status = response.status().as_u16();
                        format!(
                            "http {status}: {}",
                            response.text().await.unwrap_or_default()
                        )
                    }
                    _ => {
                        let status = export_raw(&grpc, plain.clone()).await;
                        format!("grpc {:?}: {}", status.code(), status.message())
                    }
                };
                answers.push(answer);
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for attack in attacks {
        answers.extend(attack.await.expect("attack task"));
    }
    // Every bomb is refused as too large for the budget, or (while other
    // bombs hold it) as overloaded with a retry hint.
    for answer in &answers {
        let too_large = (answer.starts_with("http 413")
            || answer.starts_with("grpc ResourceExhausted"))
            && answer.contains("ingest.decode_memory_bytes");
        let busy = answer.starts_with("http 429") || answer.starts_with("grpc Unavailable");
        assert!(too_large || busy, "{answer}");
    }
    assert!(
        answers
            .iter()
            .filter(|a| a.contains("413") || a.contains("ResourceExhausted"))
            .count()
            >= 8,
        "{answers:#?}"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = writer.finish().await;
    sinks
        .assert_delivered(&cluster, "bombs-steady", &report)
        .await;
    // The documented bound: the baseline, plus the decode budget, plus one
    // request per decode slot that tonic frames (16 MiB each, 2 slots),
    // plus 64 MiB for allocator slack.
    let allowance = DECODE_MEMORY_BYTES + 2 * (16 << 20) + (64 << 20);
    assert_rss_within(&cluster, &before, allowance, "decode bombs");
}

/// The cluster with a short header-read and body timeout, so that held
/// connections are seen being closed within the test.
async fn impatient_cluster(sinks: &Sinks) -> TestCluster {
    let mut env = sinks.env();
    env.extend([
        (
            "OTELRAFT_CONNECTIONS__HEADER_READ_TIMEOUT_MS".into(),
            "2000".into(),
        ),
        (
            "OTELRAFT_CONNECTIONS__BODY_TIMEOUT_MS".into(),
            "2000".into(),
        ),
        ("OTELRAFT_CONNECTIONS__MAX_PER_CLIENT".into(), "300".into()),
    ]);
    TestCluster::start(Options {
        nodes: 3,
        env,
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_and_bodies_on_many_connections_are_dropped_while_a_steady_writer_goes_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sinks = Sinks::start().await;
    let cluster = impatient_cluster(&sinks).await;
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    // Its connections are open before the attack takes this client
    // address's share.
    let writer = SdkWriter::start(&cluster, "slow-steady");
    cluster
        .wait_all_reach("logs", 5, Duration::from_secs(60))
        .await;
    let target = cluster.nodes[0].http.clone();
    // 200 connections that never finish their headers, 100 that never
    // finish their bodies, and 50 more than this client's share.
    let mut held = Vec::new();
    for i in 0..350 {
        let Ok(mut conn) = tokio::net::TcpStream::connect(&target).await else {
            continue;
        };
        let start: &[u8] = if i < 200 {
            b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Ty"
        } else {
            b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100000\r\n\r\nabc"
        };
        let _ = conn.write_all(start).await;
        held.push(conn);
    }
    // Every held connection is closed by the node: by the timeouts, or at
    // once for those over the client's share.
    let deadline = Instant::now() + Duration::from_secs(30);
    let total = held.len();
    while !held.is_empty() && Instant::now() < deadline {
        let mut open = Vec::new();
        for mut conn in held.drain(..) {
            let mut buf = [0u8; 512];
            match tokio::time::timeout(Duration::from_millis(20), conn.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {}
                // An answer (the slow bodies get a 400), or nothing yet.
                Ok(Ok(_)) | Err(_) => open.push(conn),
            }
        }
        held = open;
        if !held.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(
        held.is_empty(),
        "{} of {total} held connections still open after 30 s",
        held.len()
    );
    let report = writer.finish().await;
    sinks
        .assert_delivered(&cluster, "slow-steady", &report)
        .await;
    for node in &cluster.nodes {
        assert!(node.is_running(), "node {} died", node.id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spoofed_export_marker_is_refused_at_ingest() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics,
        ScopeMetrics,
    };
    let sinks = Sinks::start().await;
    let cluster = impatient_cluster(&sinks).await;
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let marker = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "otelraft_export_cursor".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![KeyValue {
                                key: "otelraft_sink".into(),
                                value: Some(AnyValue {
                                    value: Some(Value::StringValue("prom".into())),
                                }),
                                ..Default::default()
                            }],
                            time_unix_nano: 1,
                            value: Some(number_data_point::Value::AsDouble(1e12)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let response = reqwest::Client::new()
        .post(format!("{}/v1/metrics", cluster.nodes[1].http_url()))
        .header("content-type", "application/x-protobuf")
        .body(marker.encode_to_vec())
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 400);
    let body = response.bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("reserved"), "{text}");
    assert_eq!(
        cluster.nodes[1].committed_records("metrics").await,
        Some(0),
        "the spoofed marker was committed"
    );
}
