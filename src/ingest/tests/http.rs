//! OTLP/HTTP end to end: reqwest against `serve_http` on port 0.

use std::io::Write;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use prost::Message;

use super::{fixtures, node_labels, one_decode_per_connection, Protocol, TestServer, NODE_ID};
use crate::ingest::rpc_status::RpcStatus;
use crate::ingest::SubmitError;
use crate::pb::log::Signal;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";
const LIMIT: usize = 1 << 20;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

async fn post(
    server: &TestServer,
    path: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}{path}", server.addr))
        .header("content-type", content_type)
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    request.send().await.expect("request sent")
}

/// Asserts an error answer: status, a protobuf google.rpc.Status body whose
/// message contains `needle`, and nothing submitted.
async fn expect_protobuf_error(
    server: &TestServer,
    response: reqwest::Response,
    status: u16,
    needle: &str,
) -> RpcStatus {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["content-type"], PROTOBUF);
    let body = RpcStatus::decode(response.bytes().await.unwrap()).expect("Status body");
    assert!(
        body.message.contains(needle),
        "message {:?} lacks {needle:?}",
        body.message
    );
    assert!(
        server.handler.submitted().is_empty(),
        "refused request was submitted"
    );
    body
}

#[tokio::test]
async fn protobuf_logs_are_labelled_submitted_and_counted() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    let response = post(
        &server,
        "/v1/logs",
        PROTOBUF,
        None,
        fixtures::logs(3).encode_to_vec(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], PROTOBUF);
    assert!(
        response.bytes().await.unwrap().is_empty(),
        "empty ExportLogsServiceResponse"
    );

    let submitted = server.handler.submitted();
    assert_eq!(submitted.len(), 1);
    let request = &submitted[0];
    assert_eq!(request.signal, Signal::Logs as i32);
    assert_eq!(request.records, 3);
    assert_eq!(request.origin_node, NODE_ID);
    assert!(request.received_unix_nanos > 1_600_000_000_000_000_000);
    let payload = ExportLogsServiceRequest::decode(request.payload.clone()).unwrap();
    assert_eq!(
        payload.resource_logs[0].scope_logs[0].log_records,
        fixtures::logs(3).resource_logs[0].scope_logs[0].log_records
    );
    let resources = payload
        .resource_logs
        .into_iter()
        .map(|r| r.resource)
        .collect();
    assert_eq!(node_labels(resources), vec!["node-7"]);

    assert_eq!(
        server.metric("otelraft_ingest_records_accepted_total{signal=\"logs\"}"),
        3.0
    );
    assert_eq!(
        server.metric("otelraft_ingest_bytes_accepted_total{signal=\"logs\"}"),
        request.payload.len() as f64
    );
    assert_eq!(server.metric("otelraft_ingest_ack_seconds_count"), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn json_metrics_keep_string_encoded_int64() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    let body = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
        "scopeMetrics":[{"scope":{"name":"lib"},"metrics":[
          {"name":"queue.depth","unit":"1","gauge":{"dataPoints":[
             {"asInt":"42","timeUnixNano":"1544712660300000000","attributes":[{"key":"shard","value":{"intValue":"9007199254740993"}}]}]}},
          {"name":"bytes.sent","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[
             {"asDouble":1.5,"startTimeUnixNano":"1544712660300000000","timeUnixNano":"1544712661300000000"}]}}]}]}]}"#;
    let response = post(&server, "/v1/metrics", JSON, None, body.as_bytes().to_vec()).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], JSON);
    assert_eq!(response.text().await.unwrap(), "{}");

    let submitted = server.handler.submitted();
    assert_eq!(submitted.len(), 1);
    assert_eq!(submitted[0].signal, Signal::Metrics as i32);
    assert_eq!(submitted[0].records, 2);
    let payload = ExportMetricsServiceRequest::decode(submitted[0].payload.clone()).unwrap();
    let metrics = &payload.resource_metrics[0].scope_metrics[0].metrics;
    let Some(Data::Gauge(gauge)) = &metrics[0].data else {
        panic!("gauge expected: {:?}", metrics[0])
    };
    let point = &gauge.data_points[0];
    assert_eq!(point.value, Some(number_data_point::Value::AsInt(42)));
    assert_eq!(point.time_unix_nano, 1_544_712_660_300_000_000);
    let shard = point.attributes[0]
        .value
        .as_ref()
        .and_then(|v| v.value.clone());
    assert_eq!(
        shard,
        Some(Value::IntValue(9_007_199_254_740_993)),
        "int64 beyond f64 precision survives"
    );
    let Some(Data::Sum(sum)) = &metrics[1].data else {
        panic!("sum expected")
    };
    assert_eq!(
        sum.data_points[0].value,
        Some(number_data_point::Value::AsDouble(1.5))
    );
    assert!(sum.is_monotonic);
    let resources = payload
        .resource_metrics
        .into_iter()
        .map(|r| r.resource)
        .collect();
    assert_eq!(node_labels(resources), vec!["node-7"]);
    server.stop().await;
}

#[tokio::test]
async fn json_traces_decode_hex_ids_and_create_missing_resource() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
        "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173",
        "name":"GET /","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
        "attributes":[{"key":"http.status_code","value":{"intValue":"200"}}],"status":{"code":1}}]}]}]}"#;
    let response = post(
        &server,
        "/v1/traces",
        "application/json; charset=utf-8",
        None,
        body.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "{:?}",
        response.text().await
    );

    let submitted = server.handler.submitted();
    assert_eq!(submitted.len(), 1);
    assert_eq!(submitted[0].signal, Signal::Traces as i32);
    assert_eq!(submitted[0].records, 1);
    let payload = ExportTraceServiceRequest::decode(submitted[0].payload.clone()).unwrap();
    let span = &payload.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.trace_id, hex("5b8efff798038103d269b633813fc60c"));
    assert_eq!(span.span_id, hex("eee19b7ec3c1b174"));
    assert_eq!(span.kind, 2);
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    let resources = payload
        .resource_spans
        .into_iter()
        .map(|r| r.resource)
        .collect();
    assert_eq!(
        node_labels(resources),
        vec!["node-7"],
        "absent resource is created with the label"
    );
    server.stop().await;
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn gzip_bodies_are_decompressed() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    let body = gzip(&fixtures::traces(5).encode_to_vec());
    let response = post(&server, "/v1/traces", PROTOBUF, Some("gzip"), body).await;
    assert_eq!(response.status().as_u16(), 200);
    let json = gzip(
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}"#,
    );
    let response = post(&server, "/v1/logs", JSON, Some("gzip"), json).await;
    assert_eq!(response.status().as_u16(), 200);

    let submitted = server.handler.submitted();
    assert_eq!(
        submitted.iter().map(|r| r.records).collect::<Vec<_>>(),
        vec![5, 1]
    );
    server.stop().await;
}

#[tokio::test]
async fn unsupported_media_type_and_encoding_are_415() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    let response = post(&server, "/v1/logs", "text/plain", None, b"hello".to_vec()).await;
    assert_eq!(response.status().as_u16(), 415);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("text/plain"),
        "{body}"
    );

    let response = post(
        &server,
        "/v1/logs",
        PROTOBUF,
        Some("br"),
        fixtures::logs(1).encode_to_vec(),
    )
    .await;
    expect_protobuf_error(&server, response, 415, "Content-Encoding \"br\"").await;
    assert_eq!(
        server.metric("otelraft_ingest_requests_refused_total{signal=\"logs\",reason=\"unsupported_media_type\"}"),
        2.0
    );
    server.stop().await;
}

#[tokio::test]
async fn undecodable_bodies_are_400_with_the_failure_named() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    let response = post(
        &server,
        "/v1/logs",
        PROTOBUF,
        None,
        vec![0x0a, 0xff, 0xff, 0xff],
    )
    .await;
    let status = expect_protobuf_error(
        &server,
        response,
        400,
        "protobuf decode of ExportLogsServiceRequest failed",
    )
    .await;
    assert_eq!(status.code, tonic::Code::InvalidArgument as i32);

    let response = post(
        &server,
        "/v1/metrics",
        JSON,
        None,
        b"{\"resourceMetrics\": 7}".to_vec(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.headers().get("retry-after").is_none());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], 3);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("JSON decode of ExportMetricsServiceRequest failed"),
        "{body}"
    );

    let response = post(
        &server,
        "/v1/traces",
        PROTOBUF,
        Some("gzip"),
        b"not gzip".to_vec(),
    )
    .await;
    expect_protobuf_error(
        &server,
        response,
        400,
        "gzip decode of ExportTraceServiceRequest failed",
    )
    .await;
    assert_eq!(
        server.metric("otelraft_ingest_requests_refused_total{signal=\"logs\",reason=\"decode\"}"),
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn invalid_data_is_400_and_nothing_is_submitted() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    // Every span bad, so nothing is left to accept (one bad span among good
    // ones is a partial success: `tests/partial.rs`).
    let mut request = fixtures::traces(3);
    for span in &mut request.resource_spans[0].scope_spans[0].spans {
        span.trace_id = vec![1; 15];
    }
    let response = post(
        &server,
        "/v1/traces",
        PROTOBUF,
        None,
        request.encode_to_vec(),
    )
    .await;
    expect_protobuf_error(
        &server,
        response,
        400,
        "spans[0].traceId: must be 16 bytes, got 15",
    )
    .await;
    assert_eq!(
        server
            .metric("otelraft_ingest_records_refused_total{signal=\"traces\",reason=\"invalid\"}"),
        3.0
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_raw_body_is_413() {
    let server = TestServer::start(Protocol::Http, 16 * 1024).await;
    let body = fixtures::logs_with_body(1, &"x".repeat(40 * 1024)).encode_to_vec();
    let response = post(&server, "/v1/logs", PROTOBUF, None, body).await;
    expect_protobuf_error(
        &server,
        response,
        413,
        "request body exceeds the limit of 16384 bytes",
    )
    .await;
    assert_eq!(
        server
            .metric("otelraft_ingest_requests_refused_total{signal=\"logs\",reason=\"too_large\"}"),
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn gzip_bomb_is_413() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    let huge = fixtures::logs_with_body(1, &"a".repeat(64 << 20)).encode_to_vec();
    let bomb = gzip(&huge);
    drop(huge);
    assert!(
        bomb.len() < LIMIT / 4,
        "compressed body must be well under the limit: {}",
        bomb.len()
    );
    let response = post(&server, "/v1/logs", PROTOBUF, Some("gzip"), bomb).await;
    let status = expect_protobuf_error(&server, response, 413, "decompressed body exceeds").await;
    assert_eq!(status.code, tonic::Code::ResourceExhausted as i32);
    server.stop().await;
}

#[tokio::test]
async fn empty_requests_succeed_without_submit() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    let response = post(&server, "/v1/logs", PROTOBUF, None, Vec::new()).await;
    assert_eq!(response.status().as_u16(), 200);
    let response = post(&server, "/v1/metrics", JSON, None, b"{}".to_vec()).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "{}");
    // Resources and scopes but no records: still nothing to commit.
    let response = post(
        &server,
        "/v1/traces",
        JSON,
        None,
        br#"{"resourceSpans":[{"scopeSpans":[{}]}]}"#.to_vec(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(server.handler.submitted().is_empty());
    assert_eq!(server.metric("otelraft_ingest_ack_seconds_count"), 0.0);
    server.stop().await;
}

#[tokio::test]
async fn overloaded_handler_is_429_with_retry_after() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    server.handler.fail_with(SubmitError::Overloaded {
        reason: "too much data in flight on this node".into(),
        retry_after: Duration::from_millis(2500),
    });
    let response = post(
        &server,
        "/v1/logs",
        PROTOBUF,
        None,
        fixtures::logs(4).encode_to_vec(),
    )
    .await;
    assert_eq!(response.headers()["retry-after"], "3");
    let status = expect_protobuf_error(&server, response, 429, "too much data in flight").await;
    assert_eq!(status.code, tonic::Code::Unavailable as i32);
    assert_eq!(
        server
            .metric("otelraft_ingest_records_refused_total{signal=\"logs\",reason=\"overloaded\"}"),
        4.0
    );
    assert_eq!(
        server.metric("otelraft_ingest_records_accepted_total{signal=\"logs\"}"),
        0.0
    );
    server.stop().await;
}

#[tokio::test]
async fn unavailable_cluster_is_503_with_retry_after_and_too_large_is_413() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    server.handler.fail_with(SubmitError::NoLeader {
        reason: "election".into(),
        retry_after: Duration::from_secs(2),
    });
    let response = post(
        &server,
        "/v1/metrics",
        JSON,
        None,
        serde_json::to_vec(&fixtures::metrics(1)).unwrap(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no leader available"),
        "{body}"
    );

    server.handler.fail_with(SubmitError::ShuttingDown);
    let response = post(
        &server,
        "/v1/metrics",
        PROTOBUF,
        None,
        fixtures::metrics(1).encode_to_vec(),
    )
    .await;
    assert_eq!(response.headers()["retry-after"], "1");
    // A draining node tells the client to drop the connection, so no pooled
    // connection is reused just as the listener closes it.
    assert_eq!(response.headers()["connection"], "close");
    expect_protobuf_error(&server, response, 503, "shutting down").await;

    server
        .handler
        .fail_with(SubmitError::TooLarge("entry over 16 MiB".into()));
    let response = post(
        &server,
        "/v1/metrics",
        PROTOBUF,
        None,
        fixtures::metrics(1).encode_to_vec(),
    )
    .await;
    assert!(response.headers().get("retry-after").is_none());
    expect_protobuf_error(&server, response, 413, "entry over 16 MiB").await;
    server.stop().await;
}

#[tokio::test]
async fn only_post_is_routed() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    let response = reqwest::get(format!("http://{}/v1/logs", server.addr))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    server.stop().await;
}

#[tokio::test]
async fn streamed_body_without_length_is_cut_at_the_limit() {
    use crate::ingest::IngestError;
    let chunks = (0..10).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![0u8; 1000])));
    let body = axum::body::Body::from_stream(futures::stream::iter(chunks));
    let admission = crate::ingest::admission::Admission::new(1 << 20, 1, Duration::from_secs(1));
    let deadline = Duration::from_secs(10);
    let err =
        crate::ingest::http::read_body(body, None, 4500, deadline, &mut admission.reservation())
            .await
            .unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::TooLarge {
                stage: "body",
                limit: 4500
            }
        ),
        "{err}"
    );
}

/// A server whose decode budget is 16 MiB and whose record limit would let
/// a million spans through: only the budget stands in the bomb's way.
fn budgeted() -> crate::ingest::IngestSettings {
    let mut settings = crate::ingest::tests::settings(LIMIT);
    settings.decode_memory_bytes = 16 << 20;
    settings.limits.max_records = 1_000_000;
    settings
}

#[tokio::test]
async fn a_decode_bomb_is_refused_before_it_is_decoded() {
    let server = TestServer::start_with(Protocol::Http, budgeted()).await;
    // 200,000 empty spans: 400 kB of protobuf, a few kB of gzip, 53 MB decoded.
    let bomb = gzip(&fixtures::empty_spans(200_000).encode_to_vec());
    assert!(bomb.len() < 8 << 10, "{}", bomb.len());
    let response = post(&server, "/v1/traces", PROTOBUF, Some("gzip"), bomb).await;
    let status = expect_protobuf_error(
        &server,
        response,
        413,
        "bytes at its decoded size, over ingest.decode_memory_bytes (16777216)",
    )
    .await;
    assert_eq!(status.code, tonic::Code::ResourceExhausted as i32);
    // The budget is whole again: an ordinary request goes through.
    let response = post(
        &server,
        "/v1/logs",
        PROTOBUF,
        None,
        fixtures::logs(3).encode_to_vec(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    server.stop().await;
}

#[tokio::test]
async fn more_records_than_the_limit_are_refused_as_invalid() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    let body = fixtures::empty_spans(100_001).encode_to_vec();
    let response = post(&server, "/v1/traces", PROTOBUF, None, body).await;
    expect_protobuf_error(&server, response, 400, "ingest.limits.max_records (100000)").await;
    let spans = vec!["{}"; 100_001].join(",");
    let json = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{spans}]}}]}}]}}"#);
    let response = post(&server, "/v1/traces", JSON, None, json.into_bytes()).await;
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.text().await.unwrap().contains("max_records"));
    assert!(server.handler.submitted().is_empty());
    server.stop().await;
}

/// A server with short connection timeouts and room for two connections
/// per client.
async fn strict_server() -> TestServer {
    strict_server_with(300).await
}

async fn strict_server_with(header_read_timeout_ms: u64) -> TestServer {
    let mut settings = crate::ingest::tests::settings(LIMIT);
    settings.connections.header_read_timeout_ms = header_read_timeout_ms;
    settings.connections.max_per_client = 2;
    settings.body_timeout = Duration::from_millis(300);
    TestServer::start_with(Protocol::Http, settings).await
}

/// Reads until the server closes the connection (or 10 s pass); returns
/// what it sent.
async fn until_closed(stream: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::AsyncWriteExt;
    let server = strict_server().await;
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-pro")
        .await
        .unwrap();
    assert!(
        until_closed(&mut slow).await.is_some(),
        "still open after 10 s"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    use tokio::io::AsyncWriteExt;
    let server = strict_server().await;
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let body = fixtures::logs(1).encode_to_vec();
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    idle.write_all(head.as_bytes()).await.unwrap();
    idle.write_all(&body).await.unwrap();
    let answer = until_closed(&mut idle).await.expect("closed within 10 s");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(server.handler.submitted().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_trickles_in_is_refused_after_the_body_timeout() {
    use tokio::io::AsyncWriteExt;
    let server = strict_server().await;
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(
        b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\nabc",
    )
    .await
    .unwrap();
    let answer = until_closed(&mut slow).await.expect("answered within 10 s");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("connections.body_timeout_ms"), "{answer}");
    assert!(server.handler.submitted().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn one_client_cannot_hold_more_connections_than_its_share() {
    // Headers may take a minute: a close within 10 s is the cap's doing.
    let server = strict_server_with(60_000).await;
    let mut a = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let _b = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // Let the accept loop count both before the third arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let answer = until_closed(&mut third).await.expect("closed");
    assert!(answer.is_empty(), "{answer}");
    // The first two are still served, and once one goes, a new one fits.
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    let still_open = tokio::time::timeout(Duration::from_millis(200), a.read(&mut byte)).await;
    assert!(still_open.is_err(), "the first connection was closed too");
    drop(a);
    assert!(
        wait_until_accepted(server.addr).await,
        "a freed slot was not reused"
    );
    server.stop().await;
}

/// Whether a new connection to `addr` stays open for a moment, trying for
/// up to 10 s (the server counts a closed connection out asynchronously).
async fn wait_until_accepted(addr: std::net::SocketAddr) -> bool {
    use tokio::io::AsyncReadExt;
    for _ in 0..50 {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut byte = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(200), conn.read(&mut byte))
            .await
            .is_err()
        {
            return true;
        }
    }
    false
}

/// Posts `body` (protobuf logs, gzip) on an HTTP/2 connection; the status
/// and the `google.rpc.Status` message of the answer.
async fn post_h2(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    addr: std::net::SocketAddr,
    body: bytes::Bytes,
) -> (u16, String) {
    let request = axum::http::Request::post(format!("http://{addr}/v1/logs"))
        .header("content-type", PROTOBUF)
        .header("content-encoding", "gzip")
        .body(())
        .unwrap();
    let mut ready = client.clone().ready().await.expect("connection ready");
    let (response, mut stream) = ready.send_request(request, false).unwrap();
    stream.send_data(body, true).unwrap();
    let response = response.await.expect("answer");
    let status = response.status().as_u16();
    let mut answer = Vec::new();
    let mut chunks = response.into_body();
    while let Some(chunk) = chunks.data().await {
        let chunk = chunk.expect("answer body");
        let _ = chunks.flow_control().release_capacity(chunk.len());
        answer.extend_from_slice(&chunk);
    }
    let message = RpcStatus::decode(&answer[..])
        .map(|s| s.message)
        .unwrap_or_default();
    (status, message)
}

async fn h2_connection(addr: std::net::SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn one_http2_connection_with_many_heavy_requests_leaves_a_decode_slot_to_another() {
    let server = TestServer::start_with(Protocol::Http, one_decode_per_connection()).await;
    // 8 MiB once decompressed: each takes a slot and decodes for a while.
    let heavy = bytes::Bytes::from(gzip(
        &fixtures::logs_with_body(1, &"a".repeat(8 << 20)).encode_to_vec(),
    ));
    let addr = server.addr;
    let busy = h2_connection(addr).await;
    let mut other = h2_connection(addr).await;
    let streams = (0..8).map(|_| {
        let mut client = busy.clone();
        let body = heavy.clone();
        async move { post_h2(&mut client, addr, body).await }
    });
    let (busy_answers, other_answer) = tokio::join!(
        futures::future::join_all(streams),
        post_h2(&mut other, addr, heavy.clone())
    );
    assert_eq!(
        other_answer.0, 200,
        "the other connection finds a node slot free: {other_answer:?}"
    );
    let refused: Vec<_> = busy_answers
        .iter()
        .filter(|(status, _)| *status != 200)
        .collect();
    assert!(
        !refused.is_empty(),
        "the busy connection's requests queued behind each other"
    );
    for (status, message) in refused {
        assert_eq!(*status, 429, "{message}");
        assert!(
            message.contains("connections.decodes_per_connection"),
            "refused for its own connection's slot, not the node's: {message}"
        );
    }
    server.stop().await;
}
