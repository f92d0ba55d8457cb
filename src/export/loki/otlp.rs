//! OTLP log requests merged into one request for Loki 3's native OTLP
//! endpoint (`POST /otlp/v1/logs`, protobuf).
//!
//! Loki does the OTLP-to-stream mapping itself on this path; the exporter
//! only concatenates the committed requests of a batch and makes each record
//! deterministic and distinguishable:
//!
//! - every record gets the attribute [`RECORD_ID_ATTRIBUTE`] =
//!   `"<raft index>:<ordinal>"` (Loki stores it as the structured metadata
//!   `otelraft_record`), so distinct records with equal time and body are not
//!   merged by Loki's duplicate detection, while a resend is identical;
//! - a record with neither a time nor an observed time gets the entry's
//!   proposal time as its observed time. Otherwise Loki would stamp it with
//!   its own clock on arrival, and a resend would become a second copy.
//!
//! Nothing here reads the wall clock or a random source.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;

use super::request::record_id;
use crate::export::budget::{Budget, OverBudget, PER_STRING_BYTES};

/// What the id attribute adds to a record in memory.
const ID_COST: usize = RECORD_ID_ATTRIBUTE.len() + 48 + 4 * PER_STRING_BYTES;

#[cfg(test)]
mod tests;

/// The attribute that carries the record id on the OTLP path. Its sanitised
/// form is [`super::request::RECORD_ID_NAME`], the name the push sink uses.
pub const RECORD_ID_ATTRIBUTE: &str = "otelraft.record";

/// Accumulates committed OTLP log requests into one request body.
#[derive(Debug, Default)]
pub struct OtlpLogsBuilder {
    merged: ExportLogsServiceRequest,
    records: usize,
}

impl OtlpLogsBuilder {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one committed log entry's request, stamping its records (see the
    /// module docs). `index` is the entry's Raft index, `proposed_unix_nanos`
    /// its proposal time. Returns the number of records added. The request
    /// is kept as it is plus an id per record, which is charged to `budget`
    /// first; `OverBudget` adds nothing.
    pub fn add_entry(
        &mut self,
        index: u64,
        proposed_unix_nanos: u64,
        mut req: ExportLogsServiceRequest,
        budget: &mut Budget,
    ) -> Result<usize, OverBudget> {
        let records: usize = req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        budget.charge(
            req.encoded_len()
                .saturating_add(records.saturating_mul(ID_COST)),
        )?;
        let mut ordinal: u64 = 0;
        for resource_logs in &mut req.resource_logs {
            for scope_logs in &mut resource_logs.scope_logs {
                for record in &mut scope_logs.log_records {
                    stamp_record(record, index, ordinal, proposed_unix_nanos);
                    ordinal += 1;
                }
            }
        }
        self.merged.resource_logs.extend(req.resource_logs);
        let added = usize::try_from(ordinal).unwrap_or(usize::MAX);
        self.records = self.records.saturating_add(added);
        Ok(added)
    }

    /// Records added so far, to size batches.
    pub fn records(&self) -> usize {
        self.records
    }

    /// True when no record has been added, so the caller can skip the send.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The `ExportLogsServiceRequest` protobuf: the added requests'
    /// `resource_logs` concatenated in log order.
    pub fn finish(self) -> Vec<u8> {
        self.merged.encode_to_vec()
    }
}

/// Adds the record id (replacing any attribute of that name, which would
/// make the id ambiguous) and fills in a missing time.
fn stamp_record(record: &mut LogRecord, index: u64, ordinal: u64, proposed_unix_nanos: u64) {
    record.attributes.retain(|kv| kv.key != RECORD_ID_ATTRIBUTE);
    record.attributes.push(KeyValue {
        key: RECORD_ID_ATTRIBUTE.to_string(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(record_id(index, ordinal))),
        }),
        ..Default::default()
    });
    if record.time_unix_nano == 0 && record.observed_time_unix_nano == 0 {
        record.observed_time_unix_nano = proposed_unix_nanos;
    }
}
