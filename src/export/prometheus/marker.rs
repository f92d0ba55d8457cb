//! Reads the export-cursor marker back from Prometheus' query API.
//!
//! The only batch whose fate a new leader does not know is the one right
//! after the replicated cursor; its marker sample, if it landed, has a
//! timestamp after `state.marker_ms`. One instant query of
//! `max_over_time(otelraft_export_cursor{otelraft_sink="<name>"}[w])`
//! evaluated an hour past now (clock skew between members) over a window
//! reaching back to `state.marker_ms` returns the largest index any batch
//! recorded, or nothing.
//!
//! Every matcher includes `otelraft_cluster="<this cluster's id>"`: another
//! cluster writing to the same Prometheus under the same sink name, or a
//! cluster bootstrapped again against it, writes markers of its own that
//! would otherwise be taken as this cluster's batches.

use super::request::{
    MARKER_CLUSTER_LABEL, MARKER_METRIC, MARKER_RESTORE_LABEL, MARKER_SINK_LABEL,
};
use crate::export::http::HttpService;
use crate::export::ExportError;
use crate::state::SinkState;

/// The labels a marker series has: `max_over_time` drops `__name__`, and
/// only a restored cluster adds its restore id.
const MARKER_LABELS: [&str; 4] = [
    "__name__",
    MARKER_SINK_LABEL,
    MARKER_CLUSTER_LABEL,
    MARKER_RESTORE_LABEL,
];

/// How far past this node's clock the query looks, to cover other
/// members' clocks running ahead.
const SKEW_MS: i64 = 3600 * 1000;

/// The largest marker value in the sink newer than `state.marker_ms`
/// (inclusive), as a log index; `None` if the series has no such sample.
///
/// After `otelraft restore` (`state.restore` set) this cluster's markers
/// carry the restore's id as a label. The sink may also hold markers of the
/// lost cluster, whose indices past the restore point name entries this
/// cluster never had: those (any other or no restore id) count only up to
/// the restore point, and only while the cursor is below it. They carry
/// the lost cluster's id, which the restored state keeps; if the archive
/// no longer held it, any cluster's markers may be the lost cluster's.
///
/// A state without a cluster id (the exporter proposes one before it
/// settles) is refused rather than matched against every cluster.
pub async fn read_marker(
    http: &HttpService,
    sink: &str,
    query_base: &str,
    state: &SinkState,
) -> Result<Option<u64>, ExportError> {
    let now = crate::clock::unix_millis();
    let query = Query {
        http,
        sink,
        query_base,
        from_ms: state.marker_ms,
        eval_ms: now.max(state.marker_ms + 1) + SKEW_MS,
    };
    if !crate::state::is_cluster_id(&state.cluster_id) {
        return Err(ExportError::Protocol {
            sink: sink.to_string(),
            message: "the cluster has no identity yet; its markers cannot be told from others'"
                .into(),
        });
    }
    let any_cluster = format!("{MARKER_SINK_LABEL}=\"{sink}\"");
    let sink_matcher = format!(
        "{any_cluster},{MARKER_CLUSTER_LABEL}=\"{}\"",
        state.cluster_id
    );
    let Some(restore) = state.restore else {
        return query.max_of(&sink_matcher).await;
    };
    let id = restore.at_ms;
    let ours = query
        .max_of(&format!("{sink_matcher},{MARKER_RESTORE_LABEL}=\"{id}\""))
        .await?;
    if state.cursor >= restore.upto {
        return Ok(ours);
    }
    let lost = if restore.continues_cluster {
        &sink_matcher
    } else {
        &any_cluster
    };
    let theirs = query
        .max_of(&format!("{lost},{MARKER_RESTORE_LABEL}!=\"{id}\""))
        .await?
        .map(|index| index.min(restore.upto));
    Ok(ours.max(theirs))
}

struct Query<'a> {
    http: &'a HttpService,
    sink: &'a str,
    query_base: &'a str,
    from_ms: i64,
    eval_ms: i64,
}

impl Query<'_> {
    /// The largest marker value of the series `matchers` select, over
    /// `[from_ms, eval_ms]`: one instant query of `max_over_time`.
    async fn max_of(&self, matchers: &str) -> Result<Option<u64>, ExportError> {
        let window_ms = (self.eval_ms - self.from_ms).max(1);
        let query = format!("max_over_time({MARKER_METRIC}{{{matchers}}}[{window_ms}ms])");
        let eval_ms = self.eval_ms;
        let time = format!("{}.{:03}", eval_ms / 1000, eval_ms % 1000);
        let url = format!("{}/api/v1/query", self.query_base);
        let doc = self
            .http
            .get_json(&url, &[("query", query), ("time", time)], &[])
            .await?;
        parse_vector_max(&doc).map_err(|message| ExportError::Protocol {
            sink: self.sink.to_string(),
            message,
        })
    }
}

/// The largest value in an instant-vector answer, as an index.
fn parse_vector_max(doc: &serde_json::Value) -> Result<Option<u64>, String> {
    if doc.get("status").and_then(|s| s.as_str()) != Some("success") {
        return Err(format!("query failed: {doc}"));
    }
    let Some(result) = doc.pointer("/data/result").and_then(|r| r.as_array()) else {
        return Err(format!("no data.result in {doc}"));
    };
    let mut best: Option<u64> = None;
    for item in result {
        // Only the marker's own label set: a series that merely has the
        // marker's name and sink label among others was not written by an
        // exporter (ingest refuses such names; this is the second guard).
        let labels = item.get("metric").and_then(|m| m.as_object());
        let own = labels.is_none_or(|m| m.keys().all(|k| MARKER_LABELS.contains(&k.as_str())));
        if !own {
            continue;
        }
        let text = item
            .pointer("/value/1")
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("no value in {item}"))?;
        let value: f64 = text
            .parse()
            .map_err(|_| format!("marker value {text:?} is not a number"))?;
        if !(value.is_finite() && value >= 0.0) {
            return Err(format!("marker value {text:?} is not an index"));
        }
        let index = value as u64;
        best = Some(best.map_or(index, |b| b.max(index)));
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_vector_means_no_marker() {
        let doc = json!({"status":"success","data":{"resultType":"vector","result":[]}});
        assert_eq!(parse_vector_max(&doc), Ok(None));
    }

    #[test]
    fn marker_value_is_the_index() {
        let doc = json!({"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"otelraft_sink":"p"},"value":[1700000000.5,"1234"]}
        ]}});
        assert_eq!(parse_vector_max(&doc), Ok(Some(1234)));
    }

    #[test]
    fn a_series_with_more_than_the_markers_labels_is_not_a_marker() {
        let doc = json!({"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"otelraft_sink":"p","job":"spoofer"},"value":[1700000000.5,"99999999"]},
            {"metric":{"otelraft_sink":"p","otelraft_restore":"17"},"value":[1700000000.5,"12"]},
            {"metric":{"otelraft_sink":"p"},"value":[1700000000.5,"10"]}
        ]}});
        assert_eq!(parse_vector_max(&doc), Ok(Some(12)));
    }

    #[test]
    fn errors_and_garbage_are_refused() {
        let doc = json!({"status":"error","error":"bad query"});
        assert!(parse_vector_max(&doc).is_err());
        let doc = json!({"status":"success","data":{"result":[{"value":[1,"NaN"]}]}});
        assert!(parse_vector_max(&doc).is_err());
    }
}
