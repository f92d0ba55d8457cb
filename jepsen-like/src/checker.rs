//! The checker: what every observer holds, against what the clients were
//! told.
//!
//! Observers are the two sinks (what Prometheus and Loki store, as recorded
//! in front of them), the archive, and the committed log (the archive plus
//! the retained log of the final leader, joined by log index). For each:
//! - **lost**: acked, never delivered;
//! - **duplicated**: delivered as more than one distinct point, line or log
//!   entry;
//! - **unexpected**: delivered, never sent;
//! - **failed but delivered**: the client was told it failed;
//! - **recovered**: the outcome was unknown and it was delivered (allowed).
//!
//! A run is valid only if the first four are zero for every observer.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::history::{Op, Outcome, Signal};
use crate::workload::{BODY_PREFIX, METRIC};

/// Examples kept per count, to start debugging from.
const EXAMPLES: usize = 10;

/// One observer's verdict.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    /// `prometheus`, `loki`, `archive` or `committed-log`.
    pub observer: String,
    /// Acked records this observer should hold.
    pub acked: u64,
    /// Distinct record ids it holds.
    pub delivered: u64,
    /// Acked, not held.
    pub lost: u64,
    /// Held more than once.
    pub duplicated: u64,
    /// Held, never sent.
    pub unexpected: u64,
    /// Held, though the client was told the request failed.
    pub failed_but_delivered: u64,
    /// Unknown outcome, held.
    pub recovered: u64,
    /// Unknown outcome, not held.
    pub unknown_not_delivered: u64,
    /// Identical repeats the sink absorbed (Prometheus ignores an identical
    /// sample, Loki an identical entry): informational, not duplicates.
    pub repeats_absorbed: u64,
    /// A few ids per non-zero count.
    pub examples: HashMap<String, Vec<String>>,
}

impl Verdict {
    /// No lost, duplicated, unexpected or failed-but-delivered record.
    pub fn valid(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.unexpected == 0
            && self.failed_but_delivered == 0
    }
}

/// What an observer holds: per record id, how many distinct copies.
#[derive(Default)]
pub struct Holdings {
    /// Distinct copies per id.
    pub copies: HashMap<String, u64>,
    /// Identical repeats absorbed.
    pub repeats_absorbed: u64,
}

/// The sent records of one signal (or both), by outcome.
struct Sent {
    outcome: HashMap<String, Outcome>,
}

impl Sent {
    fn of(ops: &[Op], signal: Option<Signal>) -> Sent {
        let mut outcome = HashMap::new();
        for op in ops.iter().filter(|o| signal.is_none_or(|s| o.signal == s)) {
            for i in 0..op.records {
                outcome.insert(op.record_id(i), op.outcome);
            }
        }
        Sent { outcome }
    }
}

/// Compares `held` with the records of `ops` of `signal` (both if `None`).
/// Ids of the other signal are not unexpected: they belong to another sink.
pub fn judge(observer: &str, ops: &[Op], signal: Option<Signal>, held: &Holdings) -> Verdict {
    let sent = Sent::of(ops, signal);
    let all_sent: HashSet<String> = if signal.is_some() {
        Sent::of(ops, None).outcome.into_keys().collect()
    } else {
        HashSet::new()
    };
    let mut v = Verdict {
        observer: observer.to_string(),
        repeats_absorbed: held.repeats_absorbed,
        ..Verdict::default()
    };
    let example = |v: &mut Verdict, what: &str, id: &str| {
        let list = v.examples.entry(what.to_string()).or_default();
        if list.len() < EXAMPLES {
            list.push(id.to_string());
        }
    };
    for (id, outcome) in &sent.outcome {
        let copies = held.copies.get(id).copied().unwrap_or(0);
        match (outcome, copies) {
            (Outcome::Ok, 0) => {
                v.lost += 1;
                example(&mut v, "lost", id);
            }
            (Outcome::Fail, 1..) => {
                v.failed_but_delivered += 1;
                example(&mut v, "failed_but_delivered", id);
            }
            (Outcome::Unknown, 0) => v.unknown_not_delivered += 1,
            (Outcome::Unknown, 1..) => v.recovered += 1,
            _ => {}
        }
        if *outcome == Outcome::Ok {
            v.acked += 1;
        }
        if copies > 1 {
            v.duplicated += 1;
            example(&mut v, "duplicated", id);
        }
    }
    for id in held.copies.keys() {
        if !sent.outcome.contains_key(id) && !all_sent.contains(id) {
            v.unexpected += 1;
            example(&mut v, "unexpected", id);
        }
    }
    v.delivered = held.copies.len() as u64;
    v
}

/// Record ids in one rendered log entry (`otelraft inspect` / `archive cat`
/// JSON), with repeats if the entry carries an id twice.
pub fn ids_in_entry(entry: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    if entry["kind"] != "ingest" {
        return ids;
    }
    let otlp = &entry["otlp"];
    for rl in otlp["resourceLogs"].as_array().into_iter().flatten() {
        for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
            for lr in sl["logRecords"].as_array().into_iter().flatten() {
                if let Some(id) = lr["body"]["stringValue"]
                    .as_str()
                    .and_then(|b| b.strip_prefix(BODY_PREFIX))
                {
                    ids.push(id.to_string());
                }
            }
        }
    }
    for rm in otlp["resourceMetrics"].as_array().into_iter().flatten() {
        for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
            for m in sm["metrics"].as_array().into_iter().flatten() {
                if m["name"] != METRIC {
                    continue;
                }
                for dp in m["gauge"]["dataPoints"].as_array().into_iter().flatten() {
                    for a in dp["attributes"].as_array().into_iter().flatten() {
                        if a["key"] == crate::sinks::ID_LABEL {
                            if let Some(id) = a["value"]["stringValue"].as_str() {
                                ids.push(id.to_string());
                            }
                        }
                    }
                }
            }
        }
    }
    ids
}

/// Holdings of a set of entries, one copy per (id, log index): the same
/// entry seen twice (in the archive and in the log) is one copy.
pub fn holdings_of_entries<'a>(entries: impl Iterator<Item = &'a Value>) -> Holdings {
    let mut seen: HashSet<(String, u64)> = HashSet::new();
    let mut h = Holdings::default();
    for e in entries {
        let index = e["index"].as_u64().unwrap_or(0);
        for id in ids_in_entry(e) {
            if seen.insert((id.clone(), index)) {
                *h.copies.entry(id).or_default() += 1;
            } else {
                h.repeats_absorbed += 1;
            }
        }
    }
    h
}

/// Indexes at which two sources (logs or the archive) hold different
/// entries: any rendered field differing (term, leader, kind, payload).
pub fn divergent(a: &[Value], b: &[Value]) -> Vec<u64> {
    let by_index: HashMap<u64, &Value> = a
        .iter()
        .filter_map(|e| e["index"].as_u64().map(|i| (i, e)))
        .collect();
    b.iter()
        .filter_map(|e| {
            let i = e["index"].as_u64()?;
            let other = by_index.get(&i)?;
            (*other != e).then_some(i)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Protocol;

    fn op(n: u64, records: u32, outcome: Outcome) -> Op {
        Op {
            op: n,
            client: 0,
            node: 1,
            protocol: Protocol::Http,
            signal: Signal::Logs,
            records,
            invoke_ms: 0.0,
            complete_ms: 1.0,
            outcome,
            error: None,
        }
    }

    fn held(ids: &[(&str, u64)]) -> Holdings {
        Holdings {
            copies: ids.iter().map(|(i, c)| (i.to_string(), *c)).collect(),
            repeats_absorbed: 0,
        }
    }

    #[test]
    fn every_anomaly_is_counted() {
        let ops = [
            op(1, 2, Outcome::Ok),
            op(2, 1, Outcome::Fail),
            op(3, 2, Outcome::Unknown),
        ];
        // 1-0 held twice, 1-1 lost, 2-0 failed but held, 3-0 recovered,
        // 3-1 not held, 9-0 never sent.
        let v = judge(
            "t",
            &ops,
            Some(Signal::Logs),
            &held(&[("1-0", 2), ("2-0", 1), ("3-0", 1), ("9-0", 1)]),
        );
        assert_eq!(
            (
                v.acked,
                v.lost,
                v.duplicated,
                v.failed_but_delivered,
                v.recovered,
                v.unknown_not_delivered,
                v.unexpected
            ),
            (2, 1, 1, 1, 1, 1, 1)
        );
        assert!(!v.valid());
        assert_eq!(v.examples["lost"], vec!["1-1".to_string()]);
    }

    #[test]
    fn a_clean_history_is_valid() {
        let ops = [op(1, 2, Outcome::Ok), op(2, 1, Outcome::Fail)];
        let v = judge("t", &ops, None, &held(&[("1-0", 1), ("1-1", 1)]));
        assert!(v.valid(), "{v:?}");
        assert_eq!(v.delivered, 2);
    }

    #[test]
    fn the_same_entry_from_archive_and_log_is_one_copy() {
        let e = serde_json::json!({"index": 7, "term": 1, "kind": "ingest", "signal": "logs",
            "otlp": {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "jl-4-0"}}]}]}]}});
        let mut other = e.clone();
        other["index"] = 8.into();
        let h = holdings_of_entries([&e, &e].into_iter());
        assert_eq!((h.copies["4-0"], h.repeats_absorbed), (1, 1));
        let h = holdings_of_entries([&e, &other].into_iter());
        assert_eq!(h.copies["4-0"], 2, "two log indexes are two commits");
    }
}
