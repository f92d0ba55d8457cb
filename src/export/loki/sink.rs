//! The two Loki sinks. Loki has no cursor to read back, so after a leader
//! change, a timeout or a retryable error the exporter asks Loki which of
//! the batch's lines it holds (`readback`: every line carries its log
//! position, `otelraft_record`) and sends only the others. Loki drops an
//! identical entry only within its stream's head block, so a blind resend
//! could store lines twice.

use std::collections::HashSet;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

use super::otlp::OtlpLogsBuilder;
use super::readback;
use super::request::{encode_push, PushBuilder};
use crate::config::sink::SinkConfig;
use crate::export::budget::{Budget, OverBudget, DERIVED_BYTES_PER_BATCH};
use crate::export::dead_letter::Reason;
use crate::export::http::{Answer, HttpService};
use crate::export::sink::{ingest_views, Batch, EntryView, Holding, Sink};
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
    /// `/loki/api/v1/query_range` under the sink's query base.
    query_url: String,
}

impl LokiSink {
    /// A sink named `name` posting in `format`.
    pub fn new(name: &str, config: &SinkConfig, format: LokiFormat) -> Result<Self, ExportError> {
        Ok(LokiSink {
            name: name.to_string(),
            format,
            http: HttpService::new(name, config)?,
            query_url: format!("{}/loki/api/v1/query_range", config.query_base()),
        })
    }

    /// The ids among `lines` that Loki holds, one query per probe; `None`
    /// when Loki refuses a query or answers past the cap (asking again
    /// would get the same answer, so the batch counts as unknown). A Loki
    /// that cannot be reached is an error, retried.
    async fn held(
        &self,
        lines: &[readback::ProbeLine],
    ) -> Result<Option<HashSet<String>>, ExportError> {
        let mut found = HashSet::new();
        for probe in readback::probes(lines) {
            let answer = self
                .http
                .get_json(
                    &self.query_url,
                    &probe.params(),
                    &[("X-Loki-Response-Encoding-Flags", "categorize-labels")],
                )
                .await;
            let doc = match answer {
                Ok(doc) => doc,
                Err(ExportError::Protocol { message, .. }) => {
                    tracing::warn!(sink = %self.name, %message, "Loki cannot answer the read-back; the batch is sent as it is");
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            let values = readback::found_lines(&doc, &mut found).map_err(|message| {
                ExportError::Protocol {
                    sink: self.name.clone(),
                    message,
                }
            })?;
            if values >= probe.limit() {
                // Only copies Loki already holds twice fill the limit; an id
                // cut off is sent again, which can only add one more copy.
                tracing::warn!(sink = %self.name, values, "a read-back answer reached its limit");
            }
        }
        Ok(Some(readback::confirmed(lines, &found)))
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

    async fn holding(&self, body: &Bytes) -> Result<Holding, ExportError> {
        let undecodable =
            |what: String| ExportError::Encode(format!("read-back of our own body: {what}"));
        // Held ids are a subset of the batch's, so a non-empty remainder
        // with some held is a proper part.
        let (held, rest) = match self.format {
            LokiFormat::Push => {
                let raw = snap::raw::Decoder::new()
                    .decompress_vec(body)
                    .map_err(|e| undecodable(e.to_string()))?;
                let mut req = crate::pb::loki::PushRequest::decode(raw.as_slice())
                    .map_err(|e| undecodable(e.to_string()))?;
                drop(raw);
                let Some(held) = self.held(&readback::push_lines(&req)).await? else {
                    return Ok(Holding::Unknown);
                };
                if held.is_empty() {
                    return Ok(Holding::Nothing);
                }
                readback::retain_push(&mut req, &held);
                let rest = match req.streams.is_empty() {
                    true => None,
                    false => Some(encode_push(&req).map_err(|e| undecodable(e.to_string()))?),
                };
                (held.len(), rest)
            }
            LokiFormat::Otlp => {
                let mut req = ExportLogsServiceRequest::decode(body.as_ref())
                    .map_err(|e| undecodable(e.to_string()))?;
                let Some(held) = self.held(&readback::otlp_lines(&req)).await? else {
                    return Ok(Holding::Unknown);
                };
                if held.is_empty() {
                    return Ok(Holding::Nothing);
                }
                readback::retain_otlp(&mut req, &held);
                let rest = (!req.resource_logs.is_empty()).then(|| req.encode_to_vec());
                (held.len(), rest)
            }
        };
        Ok(match rest {
            None => Holding::All,
            Some(rest) => Holding::Part {
                rest: Bytes::from(rest),
                held: held as u64,
            },
        })
    }
}
