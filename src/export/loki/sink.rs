//! The two Loki sinks. Loki cannot report what it holds, so after a leader
//! change the first batch is resent; Loki drops entries identical to ones it
//! has (same stream, timestamp, line and structured metadata), and every
//! line carries its log position (`otelraft_record`), so a resend is
//! dropped entry by entry while distinct records never collapse.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

use super::otlp::OtlpLogsBuilder;
use super::request::{encode_push, PushBuilder};
use crate::config::sink::SinkConfig;
use crate::export::budget::{Budget, OverBudget, DERIVED_BYTES_PER_BATCH};
use crate::export::dead_letter::Reason;
use crate::export::http::{Answer, HttpService};
use crate::export::sink::{ingest_views, Batch, EntryView, Sink};
use crate::export::ExportError;
use crate::pb::log::Signal;
use crate::raft::Entry;
use crate::state::SinkState;

/// Which Loki endpoint a sink posts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LokiFormat {
    /// `/loki/api/v1/push`, protobuf with block snappy.
    Push,
    /// Loki 3's `/otlp/v1/logs`, OTLP protobuf.
    Otlp,
}

/// Exports logs to one Loki endpoint.
pub struct LokiSink {
    name: String,
    format: LokiFormat,
    http: HttpService,
}

impl LokiSink {
    /// A sink named `name` posting in `format`.
    pub fn new(name: &str, config: &SinkConfig, format: LokiFormat) -> Result<Self, ExportError> {
        Ok(LokiSink {
            name: name.to_string(),
            format,
            http: HttpService::new(name, config)?,
        })
    }

    fn build_push(state: &SinkState, entries: &[Entry]) -> Batch {
        let mut builder = PushBuilder::new();
        let mut batch = collect_logs(state, entries, |view, req, budget| {
            builder.add_entry(view.index, view.request.proposed_unix_nanos, &req, budget)
        });
        if builder.is_empty() {
            return batch;
        }
        match encode_push(&builder.finish()) {
            Ok(body) => batch.body = Some(Bytes::from(body)),
            Err(e) => batch.refused_whole(0, &format!("snappy: {e}")),
        }
        batch
    }

    fn build_otlp(state: &SinkState, entries: &[Entry]) -> Batch {
        let mut builder = OtlpLogsBuilder::new();
        let mut batch = collect_logs(state, entries, |view, req, budget| {
            builder.add_entry(view.index, view.request.proposed_unix_nanos, req, budget)
        });
        if !builder.is_empty() {
            batch.body = Some(Bytes::from(builder.finish()));
        }
        batch
    }
}

/// Decodes each logs entry of the range, calling `add` with it and the
/// batch's budget (see `export::budget`); entries that do not decode are
/// dead-lettered, and so is an entry that alone derives more than a batch
/// may hold. An entry that does not fit what is left ends the batch before
/// it. Returns the batch with `to` and `payload_bytes` filled in.
fn collect_logs(
    state: &SinkState,
    entries: &[Entry],
    mut add: impl FnMut(
        &EntryView<'_>,
        ExportLogsServiceRequest,
        &mut Budget,
    ) -> Result<usize, OverBudget>,
) -> Batch {
    let mut batch = Batch::new(state.cursor, state);
    batch.to = entries.last().map_or(state.cursor, |e| e.log_id.index);
    let mut budget = Budget::new(DERIVED_BYTES_PER_BATCH);
    for view in ingest_views(entries) {
        let payload = view.request.payload.len();
        if view.signal() != Signal::Logs {
            batch.payload_bytes += payload as u64;
            continue;
        }
        let req = match ExportLogsServiceRequest::decode(view.request.payload.as_ref()) {
            Ok(req) => req,
            Err(e) => {
                batch.payload_bytes += payload as u64;
                batch.dead_letter(view.index, Reason::Undecodable, &e.to_string(), 0, 0.0);
                continue;
            }
        };
        let mut entry_budget = budget.for_entry();
        match add(&view, req, &mut entry_budget) {
            Ok(added) => {
                budget.keep(entry_budget);
                batch.items += added as u64;
            }
            Err(OverBudget) if !budget.untouched() => {
                batch.to = view.index - 1;
                break;
            }
            Err(OverBudget) => batch.over_budget(view.index, payload),
        }
        batch.payload_bytes += payload as u64;
    }
    batch
}

impl Sink for LokiSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn build(&self, state: &SinkState, entries: &[Entry]) -> Batch {
        match self.format {
            LokiFormat::Push => Self::build_push(state, entries),
            LokiFormat::Otlp => Self::build_otlp(state, entries),
        }
    }

    async fn send(&self, body: Bytes) -> Result<Answer, ExportError> {
        // Both endpoints take protobuf; the push API's body is snappy
        // compressed without a Content-Encoding header, as Loki expects.
        self.http
            .post(body, &[("Content-Type", "application/x-protobuf")])
            .await
    }

    async fn delivered_beyond(&self, _state: &SinkState) -> Result<Option<u64>, ExportError> {
        Ok(None)
    }
}
