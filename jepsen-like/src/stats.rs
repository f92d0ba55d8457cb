//! Descriptive numbers for a run report: how many operations succeeded, how
//! available the cluster was while faults were active versus not, how long
//! acknowledgements took, and how quickly the cluster recovered after each
//! heal.
//!
//! Nothing here judges correctness (that is the checker's job); these numbers
//! say how well the cluster behaved, so runs can be compared with each other.
//! All times are milliseconds since the run started, as in [`History`].

use crate::history::{Fault, History, Op, Outcome, Sample, SinkLag};

/// The headline numbers of one run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    /// All operations in the history.
    pub operations: u64,
    /// Operations that ended [`Outcome::Ok`].
    pub ok: u64,
    /// Operations that ended [`Outcome::Fail`].
    pub fail: u64,
    /// Operations that ended [`Outcome::Unknown`].
    pub unknown: u64,
    /// Sum of `records` over all operations.
    pub records_sent: u64,
    /// Sum of `records` over ok operations.
    pub records_acked: u64,
    /// Ok fraction during versus outside fault windows.
    pub availability: Availability,
    /// Ack latency of ok operations.
    pub latency_ms: Latency,
    /// Recovery after each fault's heal, in fault order.
    pub heals: Vec<HealRecovery>,
}

/// Availability: the fraction of operations with outcome ok, split by
/// whether the operation was invoked inside a fault window.
///
/// A fault window is `[start_ms, end_ms]`, closed at both ends, with an open
/// fault (`end_ms == None`) closed by `History::healed_ms`. An op is "during"
/// if its `invoke_ms` falls in any window and "outside" otherwise. Only ops
/// invoked before `History::load_end_ms` count.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Availability {
    /// Ok fraction of ops invoked inside some fault window; `None` if none were.
    pub during_faults: Option<f64>,
    /// Ok fraction of ops invoked outside all fault windows; `None` if none were.
    pub outside_faults: Option<f64>,
    /// How many ops were invoked inside some fault window.
    pub ops_during_faults: u64,
    /// How many ops were invoked outside all fault windows.
    pub ops_outside_faults: u64,
}

/// Ack latency (`complete_ms - invoke_ms`) over ok operations, in
/// milliseconds. Percentiles are nearest-rank: the p-th percentile of `n`
/// sorted values is the value at 1-based rank `ceil(p * n / 100)`. All are
/// `None` when there are no ok operations.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Latency {
    /// Median, nearest-rank.
    pub p50: Option<f64>,
    /// 99th percentile, nearest-rank.
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

/// How the cluster recovered after one fault was healed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HealRecovery {
    /// The fault's kind.
    pub kind: String,
    /// The fault's detail.
    pub detail: String,
    /// When it was healed: its `end_ms`, or `History::healed_ms` if it was
    /// still open when the run ended.
    pub heal_ms: f64,
    /// Time from the heal to the earliest completion of an ok op invoked at
    /// or after the heal; `None` if there was none.
    pub first_ack_after_ms: Option<f64>,
    /// Time from the heal to the earliest sample at or after the heal in
    /// which every sink is drained; `None` if there was none. A sink is
    /// drained when it has no entries past its cursor or its oldest
    /// unexported entry is at most one second old. A sample with no sinks
    /// (no leader answered) never counts as drained.
    pub export_drained_after_ms: Option<f64>,
}

/// Computes the [`Summary`] of `h`. See the field types for definitions.
pub fn summarize(h: &History) -> Summary {
    Summary {
        operations: h.ops.len() as u64,
        ok: count_outcome(&h.ops, Outcome::Ok),
        fail: count_outcome(&h.ops, Outcome::Fail),
        unknown: count_outcome(&h.ops, Outcome::Unknown),
        records_sent: h.ops.iter().map(|o| u64::from(o.records)).sum(),
        records_acked: h
            .ops
            .iter()
            .filter(|o| is_ok(o))
            .map(|o| u64::from(o.records))
            .sum(),
        availability: availability(h),
        latency_ms: latency(&h.ops),
        heals: h.faults.iter().map(|f| heal_recovery(h, f)).collect(),
    }
}

fn is_ok(op: &Op) -> bool {
    op.outcome == Outcome::Ok
}

fn count_outcome(ops: &[Op], outcome: Outcome) -> u64 {
    ops.iter().filter(|o| o.outcome == outcome).count() as u64
}

/// When `f` was healed: open faults are closed by the final heal.
fn heal_time(f: &Fault, healed_ms: f64) -> f64 {
    f.end_ms.unwrap_or(healed_ms)
}

/// Ok and total counts of one group of operations.
#[derive(Default)]
struct Tally {
    total: u64,
    ok: u64,
}

impl Tally {
    fn add(&mut self, op: &Op) {
        self.total += 1;
        self.ok += u64::from(is_ok(op));
    }

    /// `None` for an empty group, so "no data" is never reported as 0 or 1.
    fn fraction(&self) -> Option<f64> {
        (self.total > 0).then(|| self.ok as f64 / self.total as f64)
    }
}

fn availability(h: &History) -> Availability {
    let windows: Vec<(f64, f64)> = h
        .faults
        .iter()
        .map(|f| (f.start_ms, heal_time(f, h.healed_ms)))
        .collect();
    let mut during = Tally::default();
    let mut outside = Tally::default();
    for op in h.ops.iter().filter(|o| o.invoke_ms < h.load_end_ms) {
        let in_fault = windows
            .iter()
            .any(|&(start, end)| start <= op.invoke_ms && op.invoke_ms <= end);
        if in_fault {
            during.add(op);
        } else {
            outside.add(op);
        }
    }
    Availability {
        during_faults: during.fraction(),
        outside_faults: outside.fraction(),
        ops_during_faults: during.total,
        ops_outside_faults: outside.total,
    }
}

fn latency(ops: &[Op]) -> Latency {
    // Non-finite durations would poison the sort order and the maximum.
    let mut sorted: Vec<f64> = ops
        .iter()
        .filter(|o| is_ok(o))
        .map(|o| o.complete_ms - o.invoke_ms)
        .filter(|d| d.is_finite())
        .collect();
    sorted.sort_by(f64::total_cmp);
    Latency {
        p50: nearest_rank(&sorted, 50),
        p99: nearest_rank(&sorted, 99),
        max: sorted.last().copied(),
    }
}

/// The `percent`-th nearest-rank percentile of ascending `sorted`: the value
/// at 1-based rank `ceil(percent * n / 100)`, clamped to `1..=n`. Integer
/// arithmetic keeps e.g. p99 of 100 values at exactly rank 99.
fn nearest_rank(sorted: &[f64], percent: u64) -> Option<f64> {
    let n = sorted.len() as u64;
    if n == 0 {
        return None;
    }
    let rank = (percent * n).div_ceil(100).clamp(1, n);
    sorted.get((rank - 1) as usize).copied()
}

fn heal_recovery(h: &History, f: &Fault) -> HealRecovery {
    let heal = heal_time(f, h.healed_ms);
    HealRecovery {
        kind: f.kind.clone(),
        detail: f.detail.clone(),
        heal_ms: heal,
        first_ack_after_ms: first_ack_after(&h.ops, heal),
        export_drained_after_ms: drained_after(&h.samples, heal),
    }
}

fn first_ack_after(ops: &[Op], heal: f64) -> Option<f64> {
    ops.iter()
        .filter(|o| is_ok(o) && o.invoke_ms >= heal)
        .map(|o| o.complete_ms)
        .min_by(f64::total_cmp)
        .map(|t| t - heal)
}

fn drained_after(samples: &[Sample], heal: f64) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.t_ms >= heal && all_sinks_drained(s))
        .map(|s| s.t_ms)
        .min_by(f64::total_cmp)
        .map(|t| t - heal)
}

/// An empty sink map means no leader answered, which is not "drained".
fn all_sinks_drained(s: &Sample) -> bool {
    !s.sinks.is_empty() && s.sinks.values().all(sink_drained)
}

fn sink_drained(lag: &SinkLag) -> bool {
    lag.entries == 0 || lag.seconds.is_some_and(|s| s <= 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Protocol, Signal};
    use std::collections::BTreeMap;

    fn op(n: u64, invoke_ms: f64, complete_ms: f64, outcome: Outcome, records: u32) -> Op {
        Op {
            op: n,
            client: 0,
            node: 1,
            protocol: Protocol::Grpc,
            signal: Signal::Logs,
            records,
            invoke_ms,
            complete_ms,
            outcome,
            error: None,
        }
    }

    fn fault(kind: &str, start_ms: f64, end_ms: Option<f64>) -> Fault {
        Fault {
            kind: kind.to_string(),
            detail: format!("{kind} detail"),
            start_ms,
            end_ms,
            note: None,
        }
    }

    fn sample(t_ms: f64, sinks: &[(&str, u64, Option<f64>)]) -> Sample {
        let sinks: BTreeMap<String, SinkLag> = sinks
            .iter()
            .map(|&(name, entries, seconds)| (name.to_string(), SinkLag { entries, seconds }))
            .collect();
        Sample {
            t_ms,
            sinks,
            ..Sample::default()
        }
    }

    #[test]
    fn counts_outcomes_and_records() {
        let h = History {
            ops: vec![
                op(0, 0.0, 10.0, Outcome::Ok, 3),
                op(1, 0.0, 10.0, Outcome::Fail, 2),
                op(2, 0.0, 10.0, Outcome::Unknown, 4),
                op(3, 0.0, 10.0, Outcome::Ok, 1),
            ],
            load_end_ms: 100.0,
            ..History::default()
        };
        let s = summarize(&h);
        assert_eq!((s.operations, s.ok, s.fail, s.unknown), (4, 2, 1, 1));
        assert_eq!((s.records_sent, s.records_acked), (10, 4));
    }

    #[test]
    fn availability_splits_on_closed_windows_and_ignores_late_ops() {
        let h = History {
            ops: vec![
                op(0, 500.0, 510.0, Outcome::Ok, 1),
                op(1, 1000.0, 1010.0, Outcome::Fail, 1),
                op(2, 1500.0, 1510.0, Outcome::Ok, 1),
                op(3, 2000.0, 2010.0, Outcome::Unknown, 1),
                op(4, 3000.0, 3010.0, Outcome::Ok, 1),
                op(5, 5500.0, 5510.0, Outcome::Fail, 1),
                op(6, 12_000.0, 12_010.0, Outcome::Fail, 1),
            ],
            faults: vec![
                fault("partition", 1000.0, Some(2000.0)),
                fault("kill", 5000.0, None),
            ],
            healed_ms: 6000.0,
            load_end_ms: 10_000.0,
            ..History::default()
        };
        let a = summarize(&h).availability;
        assert_eq!(a.ops_during_faults, 4);
        assert_eq!(a.ops_outside_faults, 2);
        assert_eq!(a.during_faults, Some(0.25));
        assert_eq!(a.outside_faults, Some(1.0));
    }

    #[test]
    fn availability_is_none_without_ops_in_a_group() {
        let h = History {
            ops: vec![op(0, 1.0, 2.0, Outcome::Fail, 1)],
            load_end_ms: 100.0,
            ..History::default()
        };
        let a = summarize(&h).availability;
        assert_eq!(a.during_faults, None);
        assert_eq!(a.outside_faults, Some(0.0));
    }

    #[test]
    fn latency_is_nearest_rank_over_ok_ops() {
        let mut ops: Vec<Op> = (1..=100)
            .rev()
            .map(|i| op(i, 1000.0, 1000.0 + i as f64, Outcome::Ok, 1))
            .collect();
        ops.push(op(101, 0.0, 5000.0, Outcome::Fail, 1));
        let h = History {
            ops,
            ..History::default()
        };
        let l = summarize(&h).latency_ms;
        assert_eq!(l.p50, Some(50.0));
        assert_eq!(l.p99, Some(99.0));
        assert_eq!(l.max, Some(100.0));
    }

    #[test]
    fn latency_of_one_value_and_of_none() {
        assert_eq!(nearest_rank(&[7.0], 50), Some(7.0));
        assert_eq!(nearest_rank(&[7.0], 99), Some(7.0));
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(summarize(&History::default()).latency_ms.max, None);
    }

    #[test]
    fn heal_recovery_measures_first_ack_and_drain() {
        let h = History {
            ops: vec![
                op(0, 900.0, 1200.0, Outcome::Ok, 1),
                op(1, 1010.0, 1020.0, Outcome::Fail, 1),
                op(2, 1100.0, 1500.0, Outcome::Ok, 1),
                op(3, 1050.0, 1700.0, Outcome::Ok, 1),
            ],
            faults: vec![
                fault("partition", 100.0, Some(1000.0)),
                fault("sink", 3000.0, None),
            ],
            samples: vec![
                sample(900.0, &[("loki", 0, None)]),
                sample(1200.0, &[]),
                sample(1500.0, &[("loki", 5, Some(3.0))]),
                sample(2000.0, &[("loki", 0, None), ("prometheus", 7, Some(0.5))]),
            ],
            healed_ms: 5000.0,
            load_end_ms: 4000.0,
        };
        let heals = summarize(&h).heals;
        assert_eq!(heals.len(), 2);
        assert_eq!(heals[0].heal_ms, 1000.0);
        assert_eq!(heals[0].first_ack_after_ms, Some(500.0));
        assert_eq!(heals[0].export_drained_after_ms, Some(1000.0));
        assert_eq!(heals[1].kind, "sink");
        assert_eq!(heals[1].heal_ms, 5000.0);
        assert_eq!(heals[1].first_ack_after_ms, None);
        assert_eq!(heals[1].export_drained_after_ms, None);
    }

    #[test]
    fn sink_with_old_backlog_is_not_drained() {
        assert!(!sink_drained(&SinkLag {
            entries: 3,
            seconds: None
        }));
        assert!(!sink_drained(&SinkLag {
            entries: 3,
            seconds: Some(1.5)
        }));
        assert!(sink_drained(&SinkLag {
            entries: 3,
            seconds: Some(1.0)
        }));
        assert!(sink_drained(&SinkLag {
            entries: 0,
            seconds: Some(9.0)
        }));
    }
}
