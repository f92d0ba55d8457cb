//! The Prometheus remote-write sink: request building, sending with the
//! remote-write 1.0 headers, and marker read-back.

use bytes::Bytes;

use super::{marker, request};
use crate::config::sink::SinkConfig;
use crate::export::http::{Answer, HttpService};
use crate::export::sink::{Batch, Holding, Sink};
use crate::export::ExportError;
use crate::raft::Entry;
use crate::state::SinkState;

/// Headers remote write 1.0 requires.
const HEADERS: [(&str, &str); 4] = [
    ("Content-Encoding", "snappy"),
    ("Content-Type", "application/x-protobuf"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    (
        "User-Agent",
        concat!("otelraft/", env!("CARGO_PKG_VERSION")),
    ),
];

/// Exports metrics to one Prometheus remote-write endpoint.
pub struct PrometheusSink {
    name: String,
    http: HttpService,
    query_base: String,
}

impl PrometheusSink {
    /// A sink named `name`.
    pub fn new(name: &str, config: &SinkConfig) -> Result<Self, ExportError> {
        Ok(PrometheusSink {
            name: name.to_string(),
            http: HttpService::new(name, config)?,
            query_base: config.query_base(),
        })
    }
}

impl Sink for PrometheusSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn build(&self, state: &SinkState, entries: &[Entry]) -> Batch {
        match request::build(&self.name, state, entries) {
            Ok(batch) => batch,
            Err(message) => {
                // Snappy over an in-memory buffer does not fail in practice;
                // if it does, the range is dead-lettered, never dropped.
                let mut batch = Batch::new(state.cursor, state);
                batch.to = entries.last().map_or(state.cursor, |e| e.log_id.index);
                batch.refused_whole(0, &message);
                batch
            }
        }
    }

    async fn send(&self, body: Bytes) -> Result<Answer, ExportError> {
        self.http.post(body, &HEADERS).await
    }

    async fn delivered_beyond(&self, state: &SinkState) -> Result<Option<u64>, ExportError> {
        marker::read_marker(&self.http, &self.name, &self.query_base, state).await
    }

    /// Prometheus stores a request atomically and refuses a repeat as out
    /// of order, after which the exporter reads the marker: sending again
    /// is the read-back.
    async fn holding(&self, _body: &Bytes) -> Result<Holding, ExportError> {
        Ok(Holding::Unknown)
    }
}
