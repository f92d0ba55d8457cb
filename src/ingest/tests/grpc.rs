//! OTLP/gRPC end to end: the generated tonic clients against `serve_grpc`.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tonic::Code;

use super::{fixtures, node_labels, one_decode_per_connection, Protocol, TestServer, NODE_ID};
use crate::ingest::rpc_status::{RetryInfo, RpcStatus, RETRY_INFO_TYPE_URL};
use crate::ingest::SubmitError;
use crate::pb::log::Signal;

const LIMIT: usize = 1 << 20;

async fn channel(server: &TestServer) -> Channel {
    Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

async fn logs_client(server: &TestServer) -> LogsServiceClient<Channel> {
    LogsServiceClient::new(channel(server).await)
}

#[tokio::test]
async fn all_three_signals_are_submitted_with_labels() {
    let server = TestServer::start(Protocol::Grpc, LIMIT).await;
    let channel = channel(&server).await;
    LogsServiceClient::new(channel.clone())
        .export(fixtures::logs(2))
        .await
        .expect("logs");
    MetricsServiceClient::new(channel.clone())
        .export(fixtures::metrics(3))
        .await
        .expect("metrics");
    TraceServiceClient::new(channel)
        .export(fixtures::traces(4))
        .await
        .expect("traces");

    let submitted = server.handler.submitted();
    let summary: Vec<_> = submitted
        .iter()
        .map(|r| (r.signal, r.records, r.origin_node))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Signal::Logs as i32, 2, NODE_ID),
            (Signal::Metrics as i32, 3, NODE_ID),
            (Signal::Traces as i32, 4, NODE_ID)
        ]
    );
    let logs = ExportLogsServiceRequest::decode(submitted[0].payload.clone()).unwrap();
    assert_eq!(
        node_labels(logs.resource_logs.into_iter().map(|r| r.resource).collect()),
        vec!["node-7"]
    );
    let metrics = ExportMetricsServiceRequest::decode(submitted[1].payload.clone()).unwrap();
    assert_eq!(
        node_labels(
            metrics
                .resource_metrics
                .into_iter()
                .map(|r| r.resource)
                .collect()
        ),
        vec!["node-7"]
    );
    let traces = ExportTraceServiceRequest::decode(submitted[2].payload.clone()).unwrap();
    assert_eq!(
        traces.resource_spans[0].scope_spans[0].spans,
        fixtures::traces(4).resource_spans[0].scope_spans[0].spans
    );
    assert_eq!(
        server.metric("otelraft_ingest_records_accepted_total{signal=\"metrics\"}"),
        3.0
    );
    server.stop().await;
}

#[tokio::test]
async fn gzip_requests_and_responses() {
    let server = TestServer::start(Protocol::Grpc, LIMIT).await;
    let mut client = logs_client(&server)
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    client.export(fixtures::logs(5)).await.expect("gzip export");
    assert_eq!(server.handler.submitted()[0].records, 5);
    server.stop().await;
}

#[tokio::test]
async fn empty_request_succeeds_without_submit() {
    let server = TestServer::start(Protocol::Grpc, LIMIT).await;
    logs_client(&server)
        .await
        .export(ExportLogsServiceRequest::default())
        .await
        .expect("empty export");
    assert!(server.handler.submitted().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn bad_data_is_invalid_argument() {
    let server = TestServer::start(Protocol::Grpc, LIMIT).await;
    let mut request = fixtures::traces(1);
    request.resource_spans[0].scope_spans[0].spans[0].span_id = vec![1, 2];
    let status = TraceServiceClient::new(channel(&server).await)
        .export(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("spanId: must be 8 bytes, got 2"),
        "{}",
        status.message()
    );

    let mut request = fixtures::metrics(1);
    request.resource_metrics[0].scope_metrics[0].metrics[0]
        .name
        .clear();
    let status = MetricsServiceClient::new(channel(&server).await)
        .export(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(server.handler.submitted().is_empty());
    server.stop().await;
}

/// Field 1 as bytes: on the wire it claims to be a ResourceLogs message but
/// holds garbage, so the server's protobuf decode fails inside tonic.
#[derive(Clone, PartialEq, prost::Message)]
struct Garbage {
    #[prost(bytes = "vec", tag = "1")]
    resource_logs: Vec<u8>,
}

#[tokio::test]
async fn undecodable_protobuf_is_invalid_argument() {
    let server = TestServer::start(Protocol::Grpc, LIMIT).await;
    let mut grpc = tonic::client::Grpc::new(channel(&server).await);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    );
    let codec = tonic_prost::ProstCodec::<Garbage, Garbage>::default();
    let request = tonic::Request::new(Garbage {
        resource_logs: vec![0xff, 0xff, 0xff],
    });
    let status = grpc.unary(request, path, codec).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(server.handler.submitted().is_empty());
    server.stop().await;
}

fn retry_delay(status: &tonic::Status) -> Duration {
    let details = RpcStatus::decode(status.details()).expect("google.rpc.Status details");
    assert_eq!(details.code, status.code() as i32);
    let any = details
        .details
        .iter()
        .find(|a| a.type_url == RETRY_INFO_TYPE_URL)
        .expect("RetryInfo detail");
    let delay = RetryInfo::decode(any.value.as_slice())
        .unwrap()
        .retry_delay
        .expect("retry_delay");
    Duration::new(delay.seconds as u64, delay.nanos as u32)
}

#[tokio::test]
async fn cluster_refusals_are_unavailable_with_retry_info() {
    let server = TestServer::start(Protocol::Grpc, LIMIT).await;
    let mut client = logs_client(&server).await;

    server.handler.fail_with(SubmitError::Overloaded {
        reason: "too much data in flight on this node".into(),
        retry_after: Duration::from_secs(4),
    });
    let status = client.export(fixtures::logs(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("retry after 4s"),
        "{}",
        status.message()
    );
    assert_eq!(retry_delay(&status), Duration::from_secs(4));

    server.handler.fail_with(SubmitError::NoLeader {
        reason: "election".into(),
        retry_after: Duration::from_secs(2),
    });
    let status = client.export(fixtures::logs(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(retry_delay(&status), Duration::from_secs(2));

    server
        .handler
        .fail_with(SubmitError::Internal("disk".into()));
    let status = client.export(fixtures::logs(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("retry after 1s"),
        "{}",
        status.message()
    );

    server
        .handler
        .fail_with(SubmitError::TooLarge("entry too big".into()));
    let status = client.export(fixtures::logs(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.details().is_empty(),
        "too large must not carry RetryInfo"
    );

    assert!(server.handler.submitted().is_empty());
    assert_eq!(
        server
            .metric("otelraft_ingest_requests_refused_total{signal=\"logs\",reason=\"no_leader\"}"),
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_message_is_resource_exhausted() {
    let server = TestServer::start(Protocol::Grpc, 64 * 1024).await;
    let big = fixtures::logs_with_body(1, &"x".repeat(100 * 1024));
    let status = logs_client(&server).await.export(big).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.details().is_empty(), "no RetryInfo: not retryable");
    assert!(server.handler.submitted().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn gzip_bomb_is_resource_exhausted() {
    let server = TestServer::start(Protocol::Grpc, LIMIT).await;
    let bomb = fixtures::logs_with_body(1, &"a".repeat(16 << 20));
    let mut client = logs_client(&server)
        .await
        .send_compressed(CompressionEncoding::Gzip);
    let status = client.export(bomb).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(server.handler.submitted().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_decode_bomb_is_refused_before_it_is_decoded() {
    let mut settings = crate::ingest::tests::settings(LIMIT);
    settings.decode_memory_bytes = 16 << 20;
    settings.limits.max_records = 1_000_000;
    let server = TestServer::start_with(Protocol::Grpc, settings).await;
    let mut client =
        TraceServiceClient::new(channel(&server).await).send_compressed(CompressionEncoding::Gzip);
    let status = client
        .export(fixtures::empty_spans(200_000))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("over ingest.decode_memory_bytes"),
        "{status:?}"
    );
    assert!(status.details().is_empty(), "not retryable");
    // The budget is whole again.
    logs_client(&server)
        .await
        .export(fixtures::logs(2))
        .await
        .unwrap();
    server.stop().await;
}

/// Opens a logs Export stream on `client` and sends part of a message,
/// leaving the request body open.
fn open_stream(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    addr: std::net::SocketAddr,
) -> (h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>) {
    let request = axum::http::Request::post(format!(
        "http://{addr}/opentelemetry.proto.collector.logs.v1.LogsService/Export"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .expect("request");
    let (response, mut body) = client.send_request(request, false).expect("stream opens");
    // A message header announcing 100 bytes, and none of them.
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 100]), false)
        .expect("send");
    (response, body)
}

#[tokio::test]
async fn one_connection_holds_at_most_max_streams_per_connection_streams() {
    let mut settings = super::settings(LIMIT);
    settings.connections.max_streams_per_connection = 4;
    let server = TestServer::start_with(Protocol::Grpc, settings).await;
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let (client, mut connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    // The server says so in its SETTINGS.
    let advertised = tokio::time::timeout(
        Duration::from_secs(10),
        std::future::poll_fn(|cx| {
            use std::future::Future;
            if let std::task::Poll::Ready(done) = std::pin::Pin::new(&mut connection).poll(cx) {
                return std::task::Poll::Ready(Err(done));
            }
            if connection.max_concurrent_send_streams() == 4 {
                std::task::Poll::Ready(Ok(()))
            } else {
                std::task::Poll::Pending
            }
        }),
    )
    .await;
    assert!(
        matches!(advertised, Ok(Ok(()))),
        "SETTINGS_MAX_CONCURRENT_STREAMS never said 4: {advertised:?}"
    );
    tokio::spawn(async move {
        let _ = connection.await;
    });

    // Four streams held open take every slot: a fifth, complete request
    // (an empty export) is not served while they are open.
    let mut client = client.ready().await.expect("ready");
    let mut held: Vec<_> = (0..4)
        .map(|_| open_stream(&mut client, server.addr))
        .collect();
    let (fifth, mut fifth_body) = open_stream(&mut client, server.addr);
    fifth_body
        .send_data(bytes::Bytes::new(), true)
        .expect("end the fifth");
    let mut fifth = Box::pin(fifth);
    let early = tokio::time::timeout(Duration::from_millis(500), fifth.as_mut()).await;
    assert!(early.is_err(), "a fifth stream was served: {early:?}");

    // One of them ends (its body cut short, so it is refused); its slot
    // goes to the fifth.
    let (response, mut body) = held.remove(0);
    body.send_data(bytes::Bytes::new(), true)
        .expect("end stream");
    let answered = tokio::time::timeout(Duration::from_secs(10), response).await;
    assert!(answered.is_ok(), "the ended stream was never answered");
    let served = tokio::time::timeout(Duration::from_secs(10), fifth).await;
    assert!(
        matches!(&served, Ok(Ok(r)) if r.status() == 200),
        "the freed slot did not go to the fifth stream: {served:?}"
    );
    assert!(server.handler.submitted().is_empty());
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn one_connection_with_many_heavy_streams_leaves_a_decode_slot_to_another_connection() {
    let server = TestServer::start_with(Protocol::Grpc, one_decode_per_connection()).await;
    // 8 MiB bodies, gzip: each takes a slot and decodes for a while.
    let heavy = fixtures::logs_with_body(1, &"a".repeat(8 << 20));
    let busy = logs_client(&server)
        .await
        .send_compressed(CompressionEncoding::Gzip);
    let other = logs_client(&server)
        .await
        .send_compressed(CompressionEncoding::Gzip);
    let streams = (0..8).map(|_| {
        let mut client = busy.clone();
        let request = heavy.clone();
        async move { client.export(request).await }
    });
    let mut other_client = other.clone();
    let (busy_results, other_result) = tokio::join!(
        futures::future::join_all(streams),
        other_client.export(heavy.clone())
    );
    other_result.expect("the other connection finds a node slot free");
    let refused: Vec<_> = busy_results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .collect();
    assert!(
        !refused.is_empty(),
        "the busy connection's streams queued behind each other"
    );
    for status in refused {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status
                .message()
                .contains("connections.decodes_per_connection"),
            "refused for its own connection's slot, not the node's: {status:?}"
        );
    }
    server.stop().await;
}
