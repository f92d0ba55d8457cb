use crate::export::budget::Budget;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::*;

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(v.to_string())),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value),
        ..Default::default()
    }
}

fn request(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s(service))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn record(body: &str, time: u64, observed: u64) -> LogRecord {
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: observed,
        body: Some(s(body)),
        ..Default::default()
    }
}

fn decoded(b: OtlpLogsBuilder) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest::decode(b.finish().as_slice()).unwrap()
}

fn record_ids(req: &ExportLogsServiceRequest) -> Vec<String> {
    req.resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .map(|r| {
            let ids: Vec<_> = r
                .attributes
                .iter()
                .filter(|kv| kv.key == RECORD_ID_ATTRIBUTE)
                .collect();
            assert_eq!(ids.len(), 1);
            match ids[0].value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                other => panic!("record id {other:?}"),
            }
        })
        .collect()
}

#[test]
fn concatenates_in_log_order_with_record_ids() {
    let mut b = OtlpLogsBuilder::new();
    assert!(b.is_empty());
    assert_eq!(
        b.add_entry(
            5,
            0,
            request("a", vec![record("1", 1, 0), record("2", 1, 0)]),
            &mut Budget::new(usize::MAX)
        )
        .unwrap(),
        2
    );
    let mut two = request("b", vec![record("3", 1, 0)]);
    two.resource_logs
        .extend(request("a", vec![record("4", 1, 0)]).resource_logs);
    assert_eq!(
        b.add_entry(6, 0, two, &mut Budget::new(usize::MAX))
            .unwrap(),
        2
    );
    assert_eq!(b.records(), 4);
    let out = decoded(b);
    assert_eq!(out.resource_logs.len(), 3);
    assert_eq!(record_ids(&out), ["5:0", "5:1", "6:0", "6:1"]);
}

#[test]
fn existing_record_id_attribute_is_replaced() {
    let mut rec = record("x", 1, 0);
    rec.attributes = vec![kv(RECORD_ID_ATTRIBUTE, s("forged")), kv("keep", s("me"))];
    let mut b = OtlpLogsBuilder::new();
    b.add_entry(9, 0, request("a", vec![rec]), &mut Budget::new(usize::MAX))
        .unwrap();
    let out = decoded(b);
    assert_eq!(record_ids(&out), ["9:0"]);
    let attrs = &out.resource_logs[0].scope_logs[0].log_records[0].attributes;
    assert_eq!(attrs[0].key, "keep");
}

#[test]
fn missing_time_gets_the_proposal_time_as_observed_time() {
    let mut b = OtlpLogsBuilder::new();
    b.add_entry(
        1,
        777,
        request(
            "a",
            vec![record("t", 5, 0), record("o", 0, 6), record("n", 0, 0)],
        ),
        &mut Budget::new(usize::MAX),
    )
    .unwrap();
    let out = decoded(b);
    let times: Vec<_> = out.resource_logs[0].scope_logs[0]
        .log_records
        .iter()
        .map(|r| (r.time_unix_nano, r.observed_time_unix_nano))
        .collect();
    assert_eq!(times, [(5, 0), (0, 6), (0, 777)]);
}

#[test]
fn building_twice_gives_identical_bytes() {
    let build = || {
        let mut b = OtlpLogsBuilder::new();
        b.add_entry(
            1,
            10,
            request("a", vec![record("x", 0, 0), record("y", 0, 0)]),
            &mut Budget::new(usize::MAX),
        )
        .unwrap();
        b.add_entry(
            2,
            20,
            request("b", vec![record("z", 3, 0)]),
            &mut Budget::new(usize::MAX),
        )
        .unwrap();
        b.finish()
    };
    assert_eq!(build(), build());
}

#[test]
fn record_id_matches_the_push_sink_metadata_name() {
    assert_eq!(
        crate::export::loki::request::sanitize_name(RECORD_ID_ATTRIBUTE),
        crate::export::loki::request::RECORD_ID_NAME
    );
}
