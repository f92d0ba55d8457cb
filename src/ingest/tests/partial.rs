//! OTLP's `partial_success`, over both transports: the items that fail a
//! check are refused, the rest are committed, and the answer says how many
//! were rejected and why the first was.

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use tonic::transport::Channel;

use super::{fixtures, Protocol, TestServer};

const LIMIT: usize = 1 << 20;

/// Three log records, the second with a 5-byte span id.
fn logs_with_one_bad_record() -> ExportLogsServiceRequest {
    let mut request = fixtures::logs(3);
    request.resource_logs[0].scope_logs[0].log_records[1].span_id = vec![1; 5];
    request
}

async fn post(server: &TestServer, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/v1/logs", server.addr))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("answered")
}

/// The bodies of the log records in `request`, in order.
fn bodies(request: &ExportLogsServiceRequest) -> Vec<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let records = request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records);
    records
        .filter_map(|r| match r.body.as_ref().and_then(|b| b.value.clone()) {
            Some(Value::StringValue(s)) => Some(s),
            _ => None,
        })
        .collect()
}

/// The log records the handler was given, by body.
fn committed_bodies(server: &TestServer) -> Vec<String> {
    let mut all = Vec::new();
    for submitted in server.handler.submitted() {
        let payload = ExportLogsServiceRequest::decode(submitted.payload.clone()).expect("logs");
        assert_eq!(
            submitted.records,
            super::super::validate::count_logs(&payload),
            "the submit counts what its payload holds"
        );
        all.extend(bodies(&payload));
    }
    all
}

#[tokio::test]
async fn one_bad_log_record_is_rejected_and_the_others_are_committed_over_http_protobuf() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    let all = bodies(&fixtures::logs(3));
    let response = post(
        &server,
        "application/x-protobuf",
        logs_with_one_bad_record().encode_to_vec(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    let answer = ExportLogsServiceResponse::decode(response.bytes().await.expect("body"))
        .expect("an ExportLogsServiceResponse");
    let partial = answer.partial_success.expect("partial_success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("1 of 3")
            && partial.error_message.contains("logRecords[1].spanId"),
        "{}",
        partial.error_message
    );
    assert_eq!(
        committed_bodies(&server),
        vec![all[0].clone(), all[2].clone()]
    );
    assert_eq!(
        server.metric("otelraft_ingest_records_accepted_total{signal=\"logs\"}"),
        2.0
    );
    assert_eq!(
        server.metric("otelraft_ingest_records_refused_total{signal=\"logs\",reason=\"invalid\"}"),
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn the_json_answer_names_the_rejected_count_as_otlp_json_does() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    let json = serde_json::to_vec(&logs_with_one_bad_record()).expect("OTLP JSON");
    let response = post(&server, "application/json", json).await;
    assert_eq!(response.status().as_u16(), 200);
    let answer: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(
        answer["partialSuccess"]["rejectedLogRecords"], "1",
        "{answer}"
    );
    let message = answer["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("spanId"), "{answer}");
    assert_eq!(committed_bodies(&server).len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn over_grpc_a_bad_metric_and_a_bad_span_are_rejected_and_counted() {
    let server = TestServer::start(Protocol::Grpc, LIMIT).await;
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    // Two metrics of 4 points each; the second has a reserved name, so its
    // 4 points go.
    let mut metrics: ExportMetricsServiceRequest = fixtures::metrics(4);
    let mut reserved = metrics.resource_metrics[0].scope_metrics[0].metrics[0].clone();
    reserved.name = "otelraft_export_cursor".into();
    metrics.resource_metrics[0].scope_metrics[0]
        .metrics
        .push(reserved);
    let answer = MetricsServiceClient::new(channel.clone())
        .export(metrics)
        .await
        .expect("partly accepted")
        .into_inner();
    let partial = answer.partial_success.expect("partial_success");
    assert_eq!(partial.rejected_data_points, 4);
    assert!(
        partial.error_message.contains("metrics[1].name"),
        "{}",
        partial.error_message
    );

    let mut traces = fixtures::traces(3);
    traces.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![0; 16];
    let answer = TraceServiceClient::new(channel)
        .export(traces)
        .await
        .expect("partly accepted")
        .into_inner();
    let partial = answer.partial_success.expect("partial_success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("spans[0].traceId"),
        "{}",
        partial.error_message
    );

    let submitted = server.handler.submitted();
    let records: Vec<u64> = submitted.iter().map(|s| s.records).collect();
    assert_eq!(records, vec![4, 2]);
    let payload =
        ExportMetricsServiceRequest::decode(submitted[0].payload.clone()).expect("metrics");
    let names: Vec<&str> = payload.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        names,
        vec!["requests"],
        "the reserved metric is not committed"
    );
    assert!(matches!(
        payload.resource_metrics[0].scope_metrics[0].metrics[0].data,
        Some(Data::Gauge(_))
    ));
    server.stop().await;
}

#[tokio::test]
async fn a_request_with_nothing_valid_left_is_refused_whole() {
    let server = TestServer::start(Protocol::Http, LIMIT).await;
    let mut request = fixtures::logs(2);
    for record in &mut request.resource_logs[0].scope_logs[0].log_records {
        record.trace_id = vec![7; 3];
    }
    let response = post(&server, "application/x-protobuf", request.encode_to_vec()).await;
    assert_eq!(response.status().as_u16(), 400);
    assert!(server.handler.submitted().is_empty());
    assert_eq!(
        server.metric("otelraft_ingest_records_refused_total{signal=\"logs\",reason=\"invalid\"}"),
        2.0
    );
    server.stop().await;
}
