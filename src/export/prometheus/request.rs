//! Builds one remote-write request from a range of the log.
//!
//! Samples are taken in log order and checked against the newest exported
//! sample of their series (the replicated [`SinkState::series`], overlaid
//! with what this batch already took), so the request holds nothing that
//! Prometheus would refuse for ordering: a 2.42 request is atomic, and one
//! bad sample would sink all of it. The rules, in order:
//!
//! - labels must be valid and unique, or `invalid_labels`;
//! - more than [`MAX_FUTURE_MS`] past the entry's proposal time, or
//!   `too_far_in_future` (one such sample would push Prometheus' head
//!   forward and make everyone else's samples out of bounds);
//! - more than [`OUT_OF_BOUNDS_MS`] older than the newest sample exported
//!   before this batch, or `out_of_bounds`;
//! - older than the series' newest, or `out_of_order`;
//! - same timestamp, other value: `conflicting_value`;
//! - same timestamp and value: already in the sink, skipped (Prometheus
//!   would ignore it too).
//!
//! The request ends with the marker sample `otelraft_export_cursor`, whose
//! value is the batch's last log index; it is written atomically with the
//! data, so reading it back tells a new leader whether the batch landed.

use std::collections::HashMap;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

use super::mapping::{map_metrics, MappedSample};
use super::naming::{is_valid_label_name, is_valid_metric_name};
use crate::export::budget::{Budget, OverBudget, DERIVED_BYTES_PER_BATCH};
use crate::export::dead_letter::Reason;
use crate::export::sink::{ingest_views, Batch};
use crate::pb::log::{SeriesMark, Signal};
use crate::pb::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use crate::raft::Entry;
use crate::state::{SeriesMarkState, SinkRestore, SinkState};

/// Name of the marker series.
pub const MARKER_METRIC: &str = "otelraft_export_cursor";
/// Label naming the sink on the marker series.
pub const MARKER_SINK_LABEL: &str = "otelraft_sink";
/// Label a cluster built by `otelraft restore` adds to its marker series:
/// the restore's id (`SinkRestore::at_ms`), so its markers never mix with
/// those of the lost cluster, whose indices past the restore point it
/// reuses.
pub const MARKER_RESTORE_LABEL: &str = "otelraft_restore";

/// The marker's label naming the cluster that wrote it (`ClusterIdentity`).
pub const MARKER_CLUSTER_LABEL: &str = "otelraft_cluster";
/// Samples stamped further than this past their entry's proposal time are
/// refused.
pub const MAX_FUTURE_MS: i64 = 10 * 60 * 1000;
/// Prometheus refuses samples older than its newest minus half its 2 h
/// block range.
pub const OUT_OF_BOUNDS_MS: i64 = 3600 * 1000;

/// One series being filled in this batch.
struct SeriesBuf {
    labels: Vec<Label>,
    samples: Vec<Sample>,
}

/// Builds the batch for `entries` (which follow `state.cursor`).
pub fn build(sink: &str, state: &SinkState, entries: &[Entry]) -> Result<Batch, String> {
    let mut batch = Batch::new(state.cursor, state);
    batch.to = entries.last().map_or(state.cursor, |e| e.log_id.index);
    let oob_floor = state.max_sample_ms.saturating_sub(OUT_OF_BOUNDS_MS);
    let mut marks: HashMap<u64, SeriesMarkState> = HashMap::new();
    // Series in first-seen order, so the request bytes are deterministic.
    let mut order: Vec<u64> = Vec::new();
    let mut bufs: HashMap<u64, SeriesBuf> = HashMap::new();
    let mut last_proposed_ms = 0i64;
    let mut newest_taken_ms = i64::MIN;
    let mut mapped = Vec::new();
    let mut refused = Vec::new();
    let mut budget = Budget::new(DERIVED_BYTES_PER_BATCH);
    for view in ingest_views(entries) {
        if view.signal() != Signal::Metrics {
            batch.payload_bytes += view.request.payload.len() as u64;
            last_proposed_ms = last_proposed_ms.max(view.proposed_ms());
            continue;
        }
        let req = match ExportMetricsServiceRequest::decode(view.request.payload.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                batch.payload_bytes += view.request.payload.len() as u64;
                last_proposed_ms = last_proposed_ms.max(view.proposed_ms());
                batch.dead_letter(view.index, Reason::Undecodable, &e.to_string(), 0, 0.0);
                continue;
            }
        };
        mapped.clear();
        refused.clear();
        let mut entry_budget = budget.for_entry();
        let outcome = map_metrics(
            &req,
            view.proposed_ms(),
            &mut entry_budget,
            &mut mapped,
            &mut refused,
        );
        if outcome == Err(OverBudget) {
            mapped.clear();
            refused.clear();
            if !budget.untouched() {
                // What earlier entries derived leaves too little: the batch
                // ends before this entry, which starts the next one.
                batch.to = view.index - 1;
                break;
            }
            // Alone over a whole budget: poison, kept out as one item.
            batch.payload_bytes += view.request.payload.len() as u64;
            last_proposed_ms = last_proposed_ms.max(view.proposed_ms());
            batch.over_budget(view.index, view.request.payload.len());
            continue;
        }
        budget.keep(entry_budget);
        batch.payload_bytes += view.request.payload.len() as u64;
        last_proposed_ms = last_proposed_ms.max(view.proposed_ms());
        for r in refused.drain(..) {
            batch.dead_letters_of(
                view.index,
                r.reason,
                &r.subject,
                r.count,
                r.timestamp_ms,
                r.value,
            );
        }
        for sample in mapped.drain(..) {
            let verdict = check(&sample, view.proposed_ms(), oob_floor, state, &marks);
            match verdict {
                Check::Take(hash) => {
                    marks.insert(
                        hash,
                        SeriesMarkState {
                            timestamp_ms: sample.timestamp_ms,
                            value_bits: sample.value.to_bits(),
                        },
                    );
                    batch.max_sample_ms = batch.max_sample_ms.max(sample.timestamp_ms);
                    newest_taken_ms = newest_taken_ms.max(sample.timestamp_ms);
                    let buf = bufs.entry(hash).or_insert_with(|| {
                        order.push(hash);
                        SeriesBuf {
                            labels: to_labels(&sample.labels),
                            samples: Vec::new(),
                        }
                    });
                    buf.samples.push(Sample {
                        value: sample.value,
                        timestamp: sample.timestamp_ms,
                    });
                    batch.items += 1;
                }
                Check::AlreadyExported => {}
                Check::Refuse(reason) => {
                    // The subject is made only while the batch keeps letters.
                    let subject = if batch.keeps_letters() {
                        series_text(&sample.labels)
                    } else {
                        String::new()
                    };
                    batch.dead_letter(
                        view.index,
                        reason,
                        &subject,
                        sample.timestamp_ms,
                        sample.value,
                    )
                }
            }
        }
    }
    if order.is_empty() {
        return Ok(batch);
    }
    let mut timeseries: Vec<TimeSeries> = order
        .iter()
        .filter_map(|h| bufs.remove(h))
        .map(|b| TimeSeries {
            labels: b.labels,
            samples: b.samples,
        })
        .collect();
    batch.marker_ms = marker_ms(state.marker_ms, last_proposed_ms, newest_taken_ms);
    // The marker moves Prometheus' head too, so it counts for the
    // out-of-bounds floor of later batches.
    batch.max_sample_ms = batch.max_sample_ms.max(batch.marker_ms);
    timeseries.push(marker_series(
        sink,
        &state.cluster_id,
        state.restore,
        batch.to,
        batch.marker_ms,
    ));
    let mut series: Vec<SeriesMark> = marks
        .into_iter()
        .map(|(series, m)| SeriesMark {
            series,
            timestamp_ms: m.timestamp_ms,
            value_bits: m.value_bits,
        })
        .collect();
    series.sort_by_key(|m| m.series);
    batch.series = series;
    let encoded = WriteRequest {
        timeseries,
        metadata: Vec::new(),
    }
    .encode_to_vec();
    let body = snap::raw::Encoder::new()
        .compress_vec(&encoded)
        .map_err(|e| format!("snappy: {e}"))?;
    batch.body = Some(Bytes::from(body));
    Ok(batch)
}

/// The marker's timestamp: its entries' newest proposal time, but never
/// past the newest sample the batch carries, and after the previous marker.
///
/// Invariant: the marker never moves Prometheus' head past where the
/// batch's own samples move it. A proposal time comes from the clock of the
/// leader that proposed the entry; a leader with a clock an hour fast
/// would otherwise push the head an hour ahead, and Prometheus would refuse
/// every real-time sample (other writers' too) as out of bounds for that
/// hour. The floor `previous + 1` keeps the marker series strictly
/// increasing, as Prometheus requires.
fn marker_ms(previous_ms: i64, last_proposed_ms: i64, newest_taken_ms: i64) -> i64 {
    last_proposed_ms
        .min(newest_taken_ms)
        .max(previous_ms.saturating_add(1))
}

enum Check {
    Take(u64),
    AlreadyExported,
    Refuse(Reason),
}

fn check(
    sample: &MappedSample,
    proposed_ms: i64,
    oob_floor: i64,
    state: &SinkState,
    marks: &HashMap<u64, SeriesMarkState>,
) -> Check {
    if !labels_valid(&sample.labels) {
        return Check::Refuse(Reason::InvalidLabels);
    }
    if sample.timestamp_ms > proposed_ms.saturating_add(MAX_FUTURE_MS) {
        return Check::Refuse(Reason::TooFarInFuture);
    }
    if sample.timestamp_ms < oob_floor {
        return Check::Refuse(Reason::OutOfBounds);
    }
    let hash = series_hash(&sample.labels);
    let newest = marks.get(&hash).or_else(|| state.series.get(&hash));
    match newest {
        Some(m) if sample.timestamp_ms < m.timestamp_ms => Check::Refuse(Reason::OutOfOrder),
        Some(m) if sample.timestamp_ms == m.timestamp_ms => {
            if m.value_bits == sample.value.to_bits() {
                Check::AlreadyExported
            } else {
                Check::Refuse(Reason::ConflictingValue)
            }
        }
        _ => Check::Take(hash),
    }
}

/// Sorted, unique, valid names; a valid metric name; no empty values.
fn labels_valid(labels: &[(String, String)]) -> bool {
    let mut has_name = false;
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 && labels[i - 1].0 >= *name {
            return false;
        }
        if name == "__name__" {
            if !is_valid_metric_name(value) {
                return false;
            }
            has_name = true;
        } else if !is_valid_label_name(name) || value.is_empty() {
            return false;
        }
    }
    has_name
}

/// FNV-1a over the sorted label pairs with separators: stable across
/// nodes, builds and versions, which `std`'s hasher does not promise.
pub fn series_hash(labels: &[(String, String)]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        feed(name.as_bytes());
        feed(&[0xff]);
        feed(value.as_bytes());
        feed(&[0xfe]);
    }
    h
}

fn to_labels(labels: &[(String, String)]) -> Vec<Label> {
    labels
        .iter()
        .map(|(name, value)| Label {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

/// `name{a="b", ...}` for dead-letter subjects.
pub fn series_text(labels: &[(String, String)]) -> String {
    let name = labels
        .iter()
        .find(|(k, _)| k == "__name__")
        .map_or("", |(_, v)| v.as_str());
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

fn marker_series(
    sink: &str,
    cluster_id: &str,
    restore: Option<SinkRestore>,
    index: u64,
    ts_ms: i64,
) -> TimeSeries {
    // Sorted by name, as remote write requires.
    let mut labels = vec![Label {
        name: "__name__".into(),
        value: MARKER_METRIC.into(),
    }];
    if !cluster_id.is_empty() {
        labels.push(Label {
            name: MARKER_CLUSTER_LABEL.into(),
            value: cluster_id.into(),
        });
    }
    if let Some(r) = restore {
        labels.push(Label {
            name: MARKER_RESTORE_LABEL.into(),
            value: r.at_ms.to_string(),
        });
    }
    labels.push(Label {
        name: MARKER_SINK_LABEL.into(),
        value: sink.into(),
    });
    TimeSeries {
        labels,
        samples: vec![Sample {
            value: index as f64,
            timestamp: ts_ms,
        }],
    }
}

#[cfg(test)]
mod tests;
