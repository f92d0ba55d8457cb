//! The Prometheus and Loki batch builders fed an arbitrary committed entry:
//! whatever its payload, building costs bounded memory and either exports
//! or dead-letters it.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use otelraft::config::sink::SinkConfig;
use otelraft::export::loki::{LokiFormat, LokiSink};
use otelraft::export::prometheus::PrometheusSink;
use otelraft::export::sink::Sink;
use otelraft::pb::log::{command::Kind, log_entry::Payload, Command, IngestRequest, LogEntry};
use otelraft::state::SinkState;
use prost::Message;

fn config(kind: &str) -> SinkConfig {
    let text = format!("kind = \"{kind}\"\nendpoint = \"http://127.0.0.1:9/\"\n");
    toml::from_str(&text).expect("sink config")
}

/// The three sinks, built once: building one makes an HTTP client.
fn sinks() -> &'static (PrometheusSink, LokiSink, LokiSink) {
    static SINKS: OnceLock<(PrometheusSink, LokiSink, LokiSink)> = OnceLock::new();
    SINKS.get_or_init(|| {
        (
            PrometheusSink::new("prom", &config("prometheus_remote_write")).expect("sink"),
            LokiSink::new("loki", &config("loki"), LokiFormat::Push).expect("sink"),
            LokiSink::new("otlp", &config("loki_otlp"), LokiFormat::Otlp).expect("sink"),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, payload)) = data.split_first() else {
        return;
    };
    let entry = LogEntry {
        term: 1,
        leader_node: 1,
        index: 7,
        payload: Some(Payload::Command(Command {
            kind: Some(Kind::Ingest(IngestRequest {
                signal: i32::from(choice % 4),
                payload: Bytes::copy_from_slice(payload),
                records: u64::from(choice >> 2),
                proposed_unix_nanos: 1_767_225_600_000_000_000,
                ..Default::default()
            })),
        })),
    };
    let Ok(entry) = otelraft::raft::codec::decode(Bytes::from(entry.encode_to_vec())) else {
        return;
    };
    let entries = [entry];
    let state = SinkState::default();
    let (prometheus, push, otlp) = sinks();
    let batch = prometheus.build(&state, &entries);
    assert!(batch.dead_letters.len() <= otelraft::state::DEAD_LETTERS_KEPT);
    assert_eq!(batch.to, 7);
    for loki in [push, otlp] {
        let batch = loki.build(&state, &entries);
        assert!(batch.dead_letters.len() <= otelraft::state::DEAD_LETTERS_KEPT);
        assert_eq!(batch.to, 7);
    }
});
