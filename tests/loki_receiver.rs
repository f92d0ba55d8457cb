//! Tests of the strict Loki test receiver itself, so integration tests of
//! the Loki sinks can trust what it reports.

use otelraft::export::budget::Budget;
use std::io::Write;
use testkit::loki;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use otelraft::export::loki::otlp::OtlpLogsBuilder;
use otelraft::export::loki::request::{encode_push, PushBuilder};
use otelraft::pb::loki::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use prost::Message;
use testkit::loki::LokiReceiver;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client")
}

fn entry(seconds: i64, line: &str, metadata: &[(&str, &str)]) -> EntryAdapter {
    EntryAdapter {
        timestamp: Some(Timestamp { seconds, nanos: 5 }),
        line: line.to_string(),
        structured_metadata: metadata
            .iter()
            .map(|(n, v)| LabelPairAdapter {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
    }
}

fn push_of(labels: &str, entries: Vec<EntryAdapter>) -> PushRequest {
    PushRequest {
        streams: vec![StreamAdapter {
            labels: labels.to_string(),
            entries,
            hash: 0,
        }],
    }
}

async fn post(url: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let resp = client()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

async fn post_push(rx: &LokiReceiver, req: &PushRequest) -> (u16, String) {
    post(
        &rx.push_url(),
        "application/x-protobuf",
        encode_push(req).unwrap(),
    )
    .await
}

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(v.to_string())),
    }
}

fn kv(key: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(v),
        ..Default::default()
    }
}

fn otlp_request() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("checkout")),
                    kv("k8s.namespace.name", s("shop")),
                    kv("host.name", s("node-7")),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_001,
                        severity_text: "INFO".into(),
                        severity_number: 9,
                        trace_id: vec![0x0a; 16],
                        attributes: vec![kv("http.route", s("/cart"))],
                        body: Some(s("paid")),
                        ..Default::default()
                    },
                    LogRecord {
                        body: Some(s("paid")),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn valid_push_is_stored_with_normalised_labels() {
    let rx = LokiReceiver::start().await;
    let req = push_of(
        r#"{job="api",  app="web"}"#,
        vec![
            entry(10, "hello", &[("trace_id", "ab")]),
            entry(11, "world", &[]),
        ],
    );
    let (status, body) = post_push(&rx, &req).await;
    assert_eq!(status, 204, "{body}");
    let stored = rx.stored();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].labels, r#"{app="web", job="api"}"#);
    assert_eq!(stored[0].timestamp_nanos, 10_000_000_005);
    assert_eq!(stored[0].line, "hello");
    assert_eq!(
        stored[0].metadata,
        vec![("trace_id".to_string(), "ab".to_string())]
    );
    assert_eq!(stored[1].line, "world");
    let stats = rx.stats();
    assert_eq!((stats.requests_ok, stats.entries_received), (1, 2));
    assert_eq!(stats.requests_rejected, 0);
}

#[tokio::test]
async fn malformed_snappy_is_refused_and_nothing_is_stored() {
    let rx = LokiReceiver::start().await;
    let plain = push_of(r#"{a="b"}"#, vec![entry(1, "x", &[])]).encode_to_vec();
    let (status, body) = post(&rx.push_url(), "application/x-protobuf", plain.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("snappy"), "{body}");
    // The framed snappy format is not what Loki accepts either.
    let mut framed = snap::write::FrameEncoder::new(Vec::new());
    framed.write_all(&plain).unwrap();
    let (status, _) = post(
        &rx.push_url(),
        "application/x-protobuf",
        framed.into_inner().unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(rx.stored().is_empty());
    let stats = rx.stats();
    assert_eq!((stats.requests_ok, stats.requests_rejected), (0, 2));
    assert_eq!(stats.rejections[0].0, 400);
}

#[tokio::test]
async fn bad_protobuf_is_refused() {
    let rx = LokiReceiver::start().await;
    let body = snap::raw::Encoder::new().compress_vec(&[0xff; 32]).unwrap();
    let (status, text) = post(&rx.push_url(), "application/x-protobuf", body).await;
    assert_eq!(status, 400);
    assert!(text.contains("protobuf"), "{text}");
    assert!(rx.stored().is_empty());
}

#[tokio::test]
async fn wrong_content_type_is_refused() {
    let rx = LokiReceiver::start().await;
    let body = encode_push(&push_of(r#"{a="b"}"#, vec![entry(1, "x", &[])])).unwrap();
    let (status, _) = post(&rx.push_url(), "text/plain", body).await;
    assert_eq!(status, 415);
    assert_eq!(rx.stats().requests_rejected, 1);
}

#[tokio::test]
async fn invalid_streams_and_entries_refuse_the_whole_request() {
    let rx = LokiReceiver::start().await;
    let good = StreamAdapter {
        labels: r#"{a="b"}"#.into(),
        entries: vec![entry(1, "good", &[])],
        hash: 0,
    };
    let mut no_ts = entry(1, "x", &[]);
    no_ts.timestamp = None;
    let mut negative = entry(1, "x", &[]);
    negative.timestamp = Some(Timestamp {
        seconds: -1,
        nanos: 0,
    });
    let bad: Vec<(&str, Vec<EntryAdapter>)> = vec![
        ("{}", vec![entry(1, "x", &[])]),
        ("", vec![entry(1, "x", &[])]),
        (r#"{a="1", a="2"}"#, vec![entry(1, "x", &[])]),
        (r#"{a.b="1"}"#, vec![entry(1, "x", &[])]),
        (r#"{1a="1"}"#, vec![entry(1, "x", &[])]),
        (r#"{a=~"1"}"#, vec![entry(1, "x", &[])]),
        (r#"{a=""}"#, vec![entry(1, "x", &[])]),
        (r#"{a="b"}"#, vec![no_ts]),
        (r#"{a="b"}"#, vec![negative]),
        (r#"{a="b"}"#, vec![entry(1, "x", &[("bad.name", "v")])]),
    ];
    let n = bad.len() as u64;
    for (labels, entries) in bad {
        let req = PushRequest {
            streams: vec![
                good.clone(),
                StreamAdapter {
                    labels: labels.into(),
                    entries,
                    hash: 0,
                },
            ],
        };
        let (status, body) = post_push(&rx, &req).await;
        assert_eq!(status, 400, "{labels}: {body}");
    }
    assert!(rx.stored().is_empty(), "{:?}", rx.stored());
    let stats = rx.stats();
    assert_eq!(stats.requests_rejected, n);
    assert_eq!(stats.entries_received, 0);
}

#[tokio::test]
async fn duplicate_resend_is_stored_once() {
    let rx = LokiReceiver::start().await;
    let req = push_of(
        r#"{a="b"}"#,
        vec![
            entry(1, "x", &[("otelraft_record", "1:0")]),
            entry(1, "x", &[("otelraft_record", "1:1")]),
        ],
    );
    assert_eq!(post_push(&rx, &req).await.0, 204);
    assert_eq!(post_push(&rx, &req).await.0, 204);
    // Same labels written in another order are the same stream.
    let mut reordered = req.clone();
    reordered.streams[0].labels = r#"{ a = "b" }"#.into();
    assert_eq!(post_push(&rx, &reordered).await.0, 204);
    assert_eq!(
        rx.stored().len(),
        2,
        "distinct record ids are distinct entries"
    );
    let stats = rx.stats();
    assert_eq!(stats.entries_received, 6);
    assert_eq!(stats.duplicates_dropped, 4);
    assert_eq!(stats.requests_ok, 3);
}

#[tokio::test]
async fn unavailable_answers_503_until_restored() {
    let rx = LokiReceiver::start().await;
    let req = push_of(r#"{a="b"}"#, vec![entry(1, "x", &[])]);
    rx.set_unavailable(true);
    assert_eq!(post_push(&rx, &req).await.0, 503);
    let otlp = otlp_request().encode_to_vec();
    assert_eq!(
        post(&rx.otlp_url(), "application/x-protobuf", otlp).await.0,
        503
    );
    assert!(rx.stored().is_empty());
    rx.set_unavailable(false);
    assert_eq!(post_push(&rx, &req).await.0, 204);
    let stats = rx.stats();
    assert_eq!((stats.requests_unavailable, stats.requests_ok), (2, 1));
    assert_eq!(rx.stored().len(), 1);
}

#[tokio::test]
async fn json_push_is_accepted_strictly() {
    let rx = LokiReceiver::start().await;
    let body = serde_json::json!({"streams": [{
        "stream": {"job": "api"},
        "values": [["1000000005", "hello"], ["1000000006", "there", {"trace_id": "ab"}]]
    }]});
    let (status, text) = post(
        &rx.push_url(),
        "application/json",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 204, "{text}");
    let stored = rx.stored();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].labels, r#"{job="api"}"#);
    assert_eq!(stored[1].timestamp_nanos, 1_000_000_006);
    assert_eq!(stored[1].meta("trace_id"), Some("ab"));
    for bad in [
        serde_json::json!({"streams": [{"stream": {}, "values": [["1", "x"]]}]}),
        serde_json::json!({"streams": [{"stream": {"a.b": "c"}, "values": [["1", "x"]]}]}),
        serde_json::json!({"streams": [{"stream": {"a": "b"}, "values": [[1, "x"]]}]}),
        serde_json::json!({"streams": [{"stream": {"a": "b"}, "values": [["-1", "x"]]}]}),
        serde_json::json!({"streams": [{"stream": {"a": "b"}, "values": [["1"]]}]}),
        serde_json::json!({"streams": [{"stream": {"a": "b"}, "values": [["1", "x", {"b.c": "d"}]]}]}),
        serde_json::json!({"streams": [], "extra": 1}),
    ] {
        let (status, text) = post(
            &rx.push_url(),
            "application/json",
            bad.to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {text}");
    }
    assert_eq!(rx.stored().len(), 2);
}

#[tokio::test]
async fn otlp_endpoint_stores_records_with_loki_style_labels() {
    let rx = LokiReceiver::start().await;
    let mut builder = OtlpLogsBuilder::new();
    builder
        .add_entry(
            21,
            1_800_000_000_000_000_000,
            otlp_request(),
            &mut Budget::new(usize::MAX),
        )
        .unwrap();
    let body = builder.finish();
    let (status, _) = post(&rx.otlp_url(), "application/x-protobuf", body.clone()).await;
    assert_eq!(status, 200);
    // gzip is accepted too, and the resend is deduplicated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&body).unwrap();
    let resp = client()
        .post(rx.otlp_url())
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(
        ExportLogsServiceResponse::decode(bytes.as_ref()).unwrap(),
        ExportLogsServiceResponse::default()
    );
    let stored = rx.stored();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(
        stored[0].labels,
        r#"{k8s_namespace_name="shop", service_name="checkout"}"#
    );
    assert_eq!(stored[0].timestamp_nanos, 1_700_000_000_000_000_001);
    assert_eq!(stored[0].meta("host_name"), Some("node-7"));
    assert_eq!(stored[0].meta("http_route"), Some("/cart"));
    assert_eq!(stored[0].meta("otelraft_record"), Some("21:0"));
    assert_eq!(stored[1].meta("otelraft_record"), Some("21:1"));
    assert_eq!(stored[1].timestamp_nanos, 1_800_000_000_000_000_000);
    assert_eq!(rx.stats().duplicates_dropped, 2);

    // A record with no time at all is refused: Loki would stamp it itself.
    let mut timeless = otlp_request();
    timeless.resource_logs[0].scope_logs[0]
        .log_records
        .truncate(1);
    timeless.resource_logs[0].scope_logs[0].log_records[0].time_unix_nano = 0;
    let (status, _) = post(
        &rx.otlp_url(),
        "application/x-protobuf",
        timeless.encode_to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post(&rx.otlp_url(), "application/x-protobuf", vec![0xff; 8]).await;
    assert_eq!(status, 400);
    let (status, _) = post(&rx.otlp_url(), "application/json", b"{}".to_vec()).await;
    assert_eq!(status, 415);
    assert_eq!(rx.stored().len(), 2);
}

#[tokio::test]
async fn push_builder_round_trip_through_the_receiver() {
    let rx = LokiReceiver::start().await;
    let mut other = otlp_request();
    other.resource_logs[0].resource = None;
    let mut builder = PushBuilder::new();
    builder
        .add_entry(
            30,
            1_900_000_000_000_000_000,
            &otlp_request(),
            &mut Budget::new(usize::MAX),
        )
        .unwrap();
    builder
        .add_entry(
            31,
            1_900_000_000_500_000_000,
            &other,
            &mut Budget::new(usize::MAX),
        )
        .unwrap();
    assert_eq!(builder.lines(), 4);
    let req = builder.finish();
    let (status, body) = post_push(&rx, &req).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(post_push(&rx, &req).await.0, 204, "resend");
    let stored = rx.stored();
    assert_eq!(stored.len(), 4);
    assert_eq!(rx.stats().duplicates_dropped, 4);

    // Streams arrive sorted by label string.
    let checkout = r#"{k8s_namespace_name="shop", service_name="checkout"}"#;
    let unknown = r#"{service_name="unknown_service"}"#;
    let labels: Vec<_> = stored.iter().map(|l| l.labels.as_str()).collect();
    assert_eq!(labels, [checkout, checkout, unknown, unknown]);

    let first = &stored[0];
    assert_eq!(first.line, "paid");
    assert_eq!(first.timestamp_nanos, 1_700_000_000_000_000_001);
    let md: Vec<(&str, &str)> = first
        .metadata
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        md,
        [
            ("host_name", "node-7"),
            ("http_route", "/cart"),
            ("severity_text", "INFO"),
            ("severity_number", "9"),
            ("trace_id", "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"),
            ("otelraft_record", "30:0"),
        ]
    );
    // No time of its own: stamped with the proposal time.
    assert_eq!(stored[1].timestamp_nanos, 1_900_000_000_000_000_000);
    assert_eq!(stored[1].meta("otelraft_record"), Some("30:1"));
    assert_eq!(stored[3].timestamp_nanos, 1_900_000_000_500_000_000);
    assert_eq!(stored[3].meta("otelraft_record"), Some("31:1"));

    // The push sink and the OTLP sink land the same lines, labels and times.
    let otlp_rx = LokiReceiver::start().await;
    let mut otlp = OtlpLogsBuilder::new();
    otlp.add_entry(
        30,
        1_900_000_000_000_000_000,
        otlp_request(),
        &mut Budget::new(usize::MAX),
    )
    .unwrap();
    otlp.add_entry(
        31,
        1_900_000_000_500_000_000,
        other,
        &mut Budget::new(usize::MAX),
    )
    .unwrap();
    let (status, _) = post(&otlp_rx.otlp_url(), "application/x-protobuf", otlp.finish()).await;
    assert_eq!(status, 200);
    let key = |l: &loki::StoredLine| {
        (
            l.labels.clone(),
            l.timestamp_nanos,
            l.line.clone(),
            l.meta("otelraft_record").map(str::to_string),
        )
    };
    let mut via_push: Vec<_> = stored.iter().map(key).collect();
    let mut via_otlp: Vec<_> = otlp_rx.stored().iter().map(key).collect();
    via_push.sort();
    via_otlp.sort();
    assert_eq!(via_push, via_otlp);
}

/// Loki drops a repeat only while the first copy is in the stream's head
/// block. Once 256 KiB more were written to that stream the head was cut,
/// and the same entry is stored a second time; another stream's writes do
/// not cut it.
#[tokio::test]
async fn a_repeat_is_dropped_only_while_its_first_copy_is_in_the_head_block() {
    let rx = LokiReceiver::start().await;
    let first = push_of(
        r#"{a="b"}"#,
        vec![entry(1, "x", &[("otelraft_record", "1:0")])],
    );
    assert_eq!(post_push(&rx, &first).await.0, 204);
    let filler = |stream: &str, n: usize| {
        let line = "f".repeat(64 << 10);
        let entries = (0..n)
            .map(|i| {
                entry(
                    2 + i as i64,
                    &line,
                    &[("otelraft_record", &format!("2:{i}"))],
                )
            })
            .collect();
        push_of(stream, entries)
    };
    assert_eq!(post_push(&rx, &filler(r#"{a="other"}"#, 8)).await.0, 204);
    assert_eq!(post_push(&rx, &first).await.0, 204);
    assert_eq!(rx.stats().duplicates_dropped, 1, "still in the head block");
    // 256 KiB fill the head; the next entry starts a new one.
    assert_eq!(post_push(&rx, &filler(r#"{a="b"}"#, 5)).await.0, 204);
    assert_eq!(post_push(&rx, &first).await.0, 204);
    let stats = rx.stats();
    assert_eq!((stats.duplicates_dropped, stats.duplicates_stored), (1, 1));
    let copies = rx.stored().iter().filter(|l| l.line == "x").count();
    assert_eq!(copies, 2, "Loki keeps a repeat from an older block");
}

/// The query API answers the read-back's log query over HTTP, with
/// structured metadata in the stream labels or, when asked, categorized.
#[tokio::test]
async fn the_query_api_finds_records_by_id_in_a_stream_and_time_range() {
    let rx = LokiReceiver::start().await;
    let req = push_of(
        r#"{service_name="a"}"#,
        vec![
            entry(1, "x", &[("otelraft_record", "7:0")]),
            entry(2, "y", &[("otelraft_record", "7:1")]),
            entry(3, "z", &[("otelraft_record", "8:0")]),
        ],
    );
    assert_eq!(post_push(&rx, &req).await.0, 204);
    let url = format!("{}/loki/api/v1/query_range", rx.base_url());
    let query = |flags: Option<&'static str>| {
        let mut r = client().get(&url).query(&[
            (
                "query",
                r#"{service_name="a"} | otelraft_record=~"7:(0|1)|8:0""#,
            ),
            ("start", "1000000005"),
            ("end", "3000000005"),
            ("limit", "10"),
            ("direction", "forward"),
        ]);
        if let Some(f) = flags {
            r = r.header("X-Loki-Response-Encoding-Flags", f);
        }
        r.send()
    };
    let doc: serde_json::Value = query(None).await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = doc["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream"]["otelraft_record"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["7:0", "7:1"], "the end is exclusive: 8:0 is out");
    let doc: serde_json::Value = query(Some("categorize-labels"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let values = doc["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values[1][2]["structuredMetadata"]["otelraft_record"], "7:1");
    let bad = client()
        .get(&url)
        .query(&[("query", r#"{service_name="a"} |= "x""#)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad.status().as_u16(),
        400,
        "a line filter is not in the subset"
    );
    assert_eq!(rx.stats().queries, 2);
}
