//! Export to a real Prometheus (Debian's package, remote-write receiver on):
//! names and values from the OpenTelemetry SDK, exactly-once across a leader
//! kill and a sink outage, late samples diverted to the dead-letter record
//! while the rest of their batch is delivered. (Poison entries that would
//! derive gigabytes are in `tests/hostile_export.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::cluster;

use prost::Message;
use serde_json::Value;
use testkit::cluster::{admin_cli, wait_until, Options, TestCluster};
use testkit::metrics::{delta_sum, gauge, http, now_ms, point, post_metrics, request};
use testkit::prometheus::{sink_env, Prometheus};

const SINK: &str = "prom";

async fn start_cluster(prom: &Prometheus) -> TestCluster {
    TestCluster::start(Options {
        nodes: 3,
        env: sink_env(SINK, prom),
        ..Default::default()
    })
    .await
}

fn value_of(result: &[Value]) -> Vec<f64> {
    result
        .iter()
        .map(|r| {
            r["value"][1]
                .as_str()
                .expect("value")
                .parse()
                .expect("number")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_metrics_land_in_prometheus_with_spec_names_and_exactly_once_across_a_leader_kill() {
    let prom = Prometheus::start().await;
    let mut cluster = start_cluster(&prom).await;
    let follower = cluster.a_follower().await;
    let grpc = cluster.nodes[(follower - 1) as usize].grpc.clone();
    cluster::run_sdk_script("send_metrics.py", vec!["--grpc".into(), grpc]).await;
    cluster.wait_exported(SINK, Duration::from_secs(60)).await;

    let t = now_ms() as f64 / 1000.0 + 1.0;
    let sel = r#"job="shop/checkout",instance="i-1""#;
    let q = |expr: String| {
        let prom = &prom;
        async move { prom.query(&expr, t).await }
    };
    let a = q(format!(r#"orders_total{{{sel},route="/a"}}"#)).await;
    assert_eq!(value_of(&a), vec![5.0], "counter /a: {a:?}");
    assert_eq!(a[0]["metric"]["otel_scope_name"], "otelraft-export-test");
    let b = q(format!(r#"orders_total{{{sel},route="/b"}}"#)).await;
    assert_eq!(value_of(&b), vec![7.0], "counter /b: {b:?}");
    let g = q(format!(r#"temperature_celsius{{{sel},room="lab"}}"#)).await;
    assert_eq!(value_of(&g), vec![21.5], "gauge: {g:?}");
    let count = q(format!(r#"latency_seconds_count{{{sel},route="/a"}}"#)).await;
    assert_eq!(value_of(&count), vec![3.0], "histogram count: {count:?}");
    let sum = q(format!(r#"latency_seconds_sum{{{sel},route="/a"}}"#)).await;
    assert!(
        (value_of(&sum)[0] - 0.7).abs() < 1e-9,
        "histogram sum: {sum:?}"
    );
    let le5 = q(format!(
        r#"latency_seconds_bucket{{{sel},route="/a",le="5"}}"#
    ))
    .await;
    assert_eq!(value_of(&le5), vec![3.0], "bucket le=5: {le5:?}");
    let le0 = q(format!(
        r#"latency_seconds_bucket{{{sel},route="/a",le="0"}}"#
    ))
    .await;
    assert_eq!(value_of(&le0), vec![0.0], "bucket le=0: {le0:?}");
    let inf = q(format!(
        r#"latency_seconds_bucket{{{sel},route="/a",le="+Inf"}}"#
    ))
    .await;
    assert_eq!(value_of(&inf), vec![3.0], "bucket +Inf: {inf:?}");
    let info = q(format!(r#"target_info{{{sel}}}"#)).await;
    assert_eq!(info.len(), 1, "one target_info: {info:?}");
    assert_eq!(info[0]["metric"]["deployment_environment"], "test");
    // Resource attributes stay on target_info, not on every series.
    assert!(a[0]["metric"].get("deployment_environment").is_none());
    // Nothing else from the SDK: the exact set of metric names.
    let names: BTreeSet<String> = q(format!(r#"{{{sel}}}"#))
        .await
        .iter()
        .map(|r| r["metric"]["__name__"].as_str().unwrap_or("").to_string())
        .collect();
    let want: BTreeSet<String> = [
        "orders_total",
        "temperature_celsius",
        "latency_seconds_bucket",
        "latency_seconds_sum",
        "latency_seconds_count",
        "target_info",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(names, want);

    // Load with one sample per request per worker, to random members; kill
    // the leader in the middle of it.
    let acked: Arc<Mutex<Vec<(String, i64, f64)>>> = Arc::default();
    let sent: Arc<Mutex<Vec<(String, i64, f64)>>> = Arc::default();
    let targets: Vec<String> = cluster.nodes.iter().map(|n| n.http_url()).collect();
    let stop_at = Instant::now() + Duration::from_secs(9);
    let mut workers = Vec::new();
    for w in 0..4 {
        let (acked, sent, targets) = (acked.clone(), sent.clone(), targets.clone());
        workers.push(tokio::spawn(async move {
            let client = http();
            let worker = format!("w{w}");
            let mut last_ts = 0;
            let mut seq = 0.0;
            while Instant::now() < stop_at {
                let ts = now_ms().max(last_ts + 1);
                last_ts = ts;
                seq += 1.0;
                let req = request(vec![gauge(
                    "load_value",
                    vec![point(&[("worker", &worker)], ts, seq)],
                )]);
                sent.lock().unwrap().push((worker.clone(), ts, seq));
                let target = &targets[(seq as usize + w) % targets.len()];
                let status = client
                    .post(format!("{target}/v1/metrics"))
                    .header("content-type", "application/x-protobuf")
                    .body(req.encode_to_vec())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .ok();
                if status == Some(200) {
                    acked.lock().unwrap().push((worker.clone(), ts, seq));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster.node(leader).kill();
    for w in workers {
        w.await.expect("worker");
    }
    let new_leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    assert_ne!(new_leader, leader);
    cluster.wait_exported(SINK, Duration::from_secs(90)).await;

    let acked = acked.lock().unwrap().clone();
    let sent: BTreeSet<(String, i64, u64)> = sent
        .lock()
        .unwrap()
        .iter()
        .map(|(w, t, v)| (w.clone(), *t, *v as u64))
        .collect();
    assert!(acked.len() > 100, "too few acked requests: {}", acked.len());
    let t = now_ms() as f64 / 1000.0 + 1.0;
    let stored = prom.samples(r#"load_value{job="loadgen"}"#, "10m", t).await;
    let mut got: BTreeMap<(String, i64), Vec<f64>> = BTreeMap::new();
    for (labels, points) in stored {
        let w = labels["worker"].as_str().expect("worker label").to_string();
        for (ts, v) in points {
            got.entry((w.clone(), ts)).or_default().push(v);
        }
    }
    for (w, ts, v) in &acked {
        assert_eq!(
            got.get(&(w.clone(), *ts)),
            Some(&vec![*v]),
            "acked sample {w}@{ts}={v} is not in Prometheus exactly once"
        );
    }
    for ((w, ts), vs) in &got {
        for v in vs {
            assert!(
                sent.contains(&(w.clone(), *ts, *v as u64)),
                "Prometheus holds a sample nobody sent: {w}@{ts}={v}"
            );
        }
    }
    // A request whose outcome the client never learnt (the leader died under
    // it) may commit after later samples of its series; Prometheus would
    // refuse such a sample, so it is dead-lettered as out of order. Nothing
    // acked may be there, and nothing for any other reason.
    let (ok, text) = admin_cli(&cluster.nodes[(new_leader - 1) as usize], &["dead-letters"]);
    assert!(ok, "{text}");
    let report: Value = serde_json::from_str(&text).expect("dead-letters JSON");
    let counts = report[SINK]["counts"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(
        counts.keys().all(|k| k == "out_of_order"),
        "unexpected dead-letter reasons: {counts:?}"
    );
    let acked_set: BTreeSet<(i64, u64)> = acked.iter().map(|(_, t, v)| (*t, *v as u64)).collect();
    for item in report[SINK]["newest"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        // The workers share one resource identity (job, receiving node), so
        // their target_info samples interleave out of order: expected.
        if item["subject"]
            .as_str()
            .unwrap_or("")
            .starts_with("target_info{")
        {
            continue;
        }
        let key = (
            item["timestamp_ms"].as_i64().unwrap_or(0),
            item["value"].as_f64().unwrap_or(0.0) as u64,
        );
        assert!(
            !acked_set.contains(&key),
            "an acked sample was dead-lettered: {item}"
        );
    }
    assert_eq!(
        cluster
            .metric_sum("otelraft_export_requests_total", r#"outcome="refused""#)
            .await,
        0.0,
        "Prometheus refused a request"
    );
    let takeovers = cluster
        .metric_sum("otelraft_export_takeovers_total", "")
        .await;
    assert!(takeovers >= 1.0, "the new leader settled the cursor");
    eprintln!(
        "acked {} of {} samples; dead-lettered {:?}; resent after failover: {}; takeovers: {}",
        acked.len(),
        sent.len(),
        counts,
        cluster
            .metric_sum("otelraft_export_resent_requests_total", "")
            .await,
        takeovers
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prometheus_outage_delays_export_and_loses_nothing() {
    let mut prom = Prometheus::start().await;
    let cluster = start_cluster(&prom).await;
    let client = http();
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let node = &cluster.nodes[(leader % 3) as usize];
    let t0 = now_ms() - 30_000;
    let mut acked = Vec::new();
    let send = |i: i64| {
        request(vec![gauge(
            "outage_value",
            vec![point(&[], t0 + i * 10, i as f64)],
        )])
    };
    for i in 0..20 {
        assert_eq!(post_metrics(&client, node, &send(i)).await, Some(200));
        acked.push(i);
    }
    cluster.wait_exported(SINK, Duration::from_secs(60)).await;
    prom.kill();
    for i in 20..120 {
        assert_eq!(post_metrics(&client, node, &send(i)).await, Some(200));
        acked.push(i);
    }
    // The backlog waits in the log: lag is visible in status and /metrics.
    let lagging = wait_until(Duration::from_secs(30), || async {
        let st = cluster.nodes[(leader - 1) as usize].status().await?;
        let s = &st["sinks"][SINK];
        (s["lag_entries"].as_u64()? > 0 && s["phase"] == "retrying").then_some(s.clone())
    })
    .await
    .expect("lag rises while Prometheus is down");
    assert!(lagging["lag_bytes"].as_u64().unwrap_or(0) > 0, "{lagging}");
    assert!(
        cluster
            .metric_sum("otelraft_export_lag_entries", SINK)
            .await
            > 0.0
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    prom.restart().await;
    let done = cluster.wait_exported(SINK, Duration::from_secs(90)).await;
    assert_eq!(done["lag_seconds"], 0.0, "{done}");
    // Every member's gauge returns to zero (they refresh twice a second).
    let zero = wait_until(Duration::from_secs(10), || async {
        (cluster
            .metric_sum("otelraft_export_lag_entries", SINK)
            .await
            == 0.0)
            .then_some(())
    })
    .await;
    assert!(zero.is_some(), "export lag gauges stay above zero");
    let stored = prom
        .samples("outage_value", "10m", now_ms() as f64 / 1000.0 + 1.0)
        .await;
    assert_eq!(stored.len(), 1, "one series: {stored:?}");
    let points = &stored[0].1;
    let want: Vec<(i64, f64)> = acked.iter().map(|i| (t0 + i * 10, *i as f64)).collect();
    assert_eq!(points, &want, "every sample exactly once, in order");
}

#[tokio::test(flavor = "multi_thread")]
async fn late_and_conflicting_samples_are_dead_lettered_and_the_rest_delivered() {
    let prom = Prometheus::start().await;
    let cluster = start_cluster(&prom).await;
    let client = http();
    let follower = cluster.a_follower().await;
    let node = &cluster.nodes[(follower - 1) as usize];
    let t0 = now_ms() - 60_000;
    let first = request(vec![gauge(
        "late_value",
        vec![
            point(&[("k", "a")], t0, 1.0),
            point(&[("k", "a")], t0 + 2000, 2.0),
            point(&[("k", "b")], t0, 10.0),
        ],
    )]);
    assert_eq!(post_metrics(&client, node, &first).await, Some(200));
    cluster.wait_exported(SINK, Duration::from_secs(60)).await;
    let second = request(vec![
        gauge(
            "late_value",
            vec![
                point(&[("k", "a")], t0 + 1000, 3.0),  // older than a's newest
                point(&[("k", "a")], t0 + 2000, 99.0), // same time, other value
                point(&[("k", "a")], t0 + 2000, 2.0),  // an exact repeat: skipped
                point(&[("k", "b")], t0 + 1000, 11.0), // valid
            ],
        ),
        delta_sum("late_delta", vec![point(&[], t0 + 1000, 4.0)]),
    ]);
    assert_eq!(post_metrics(&client, node, &second).await, Some(200));
    let sink = cluster.wait_exported(SINK, Duration::from_secs(60)).await;
    let dl = &sink["dead_letters"];
    assert_eq!(dl["out_of_order"], 1, "{sink}");
    assert_eq!(dl["conflicting_value"], 1, "{sink}");
    assert_eq!(dl["delta_temporality"], 1, "{sink}");
    assert_eq!(
        dl.as_object()
            .map(|o| o.values().filter_map(|v| v.as_u64()).sum::<u64>()),
        Some(3),
        "{sink}"
    );
    let t = now_ms() as f64 / 1000.0 + 1.0;
    let mut stored: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for (labels, points) in prom.samples("late_value", "10m", t).await {
        stored.insert(labels["k"].as_str().expect("k").to_string(), points);
    }
    assert_eq!(stored["a"], vec![(t0, 1.0), (t0 + 2000, 2.0)]);
    assert_eq!(stored["b"], vec![(t0, 10.0), (t0 + 1000, 11.0)]);
    assert!(prom.samples("late_delta_total", "10m", t).await.is_empty());

    // The record is inspectable from any member, with the series and values.
    let (ok, text) = admin_cli(node, &["dead-letters", "--sink", SINK]);
    assert!(ok, "{text}");
    let report: Value = serde_json::from_str(&text).expect("dead-letters prints JSON");
    let newest = report[SINK]["newest"].as_array().expect("newest items");
    let reasons: Vec<(String, String, f64)> = newest
        .iter()
        .map(|d| {
            (
                d["reason"].as_str().unwrap_or("").to_string(),
                d["subject"].as_str().unwrap_or("").to_string(),
                d["value"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|(r, s, v)| r == "out_of_order" && s.contains("late_value") && *v == 3.0),
        "{report}"
    );
    assert!(
        reasons
            .iter()
            .any(|(r, _, v)| r == "conflicting_value" && *v == 99.0),
        "{report}"
    );
    assert!(
        reasons
            .iter()
            .any(|(r, s, _)| r == "delta_temporality" && s.contains("late_delta")),
        "{report}"
    );
}

/// Other clusters' export markers, written to the Prometheus a sink is
/// then added for: what a second cluster sharing the Prometheus and the
/// sink name, or the same Prometheus after a re-bootstrap, leaves there.
/// One as clusters wrote them before markers had a cluster id (at
/// `index`), one with another cluster's id (at `index + 2`).
async fn write_foreign_markers(prom: &Prometheus, index: u64) {
    use otelraft::pb::prometheus::{Label, Sample, TimeSeries, WriteRequest};
    let label = |name: &str, value: &str| Label {
        name: name.into(),
        value: value.into(),
    };
    let sample = |value: u64| Sample {
        value: value as f64,
        timestamp: now_ms(),
    };
    let req = WriteRequest {
        timeseries: vec![
            TimeSeries {
                labels: vec![
                    label("__name__", "otelraft_export_cursor"),
                    label("otelraft_sink", SINK),
                ],
                samples: vec![sample(index)],
            },
            TimeSeries {
                labels: vec![
                    label("__name__", "otelraft_export_cursor"),
                    label("otelraft_cluster", "ffffffffffffffffffffffffffffffff"),
                    label("otelraft_sink", SINK),
                ],
                samples: vec![sample(index + 2)],
            },
        ],
        ..Default::default()
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy");
    let status = http()
        .post(prom.write_url())
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("remote write")
        .status();
    assert!(status.is_success(), "{status}");
}

/// A sink added to a cluster with 20 committed requests, on a Prometheus
/// that holds other clusters' markers at indexes 10 and 12 under the same
/// sink name. Before markers carried the cluster's id, the new exporter
/// took such a marker for its own batch, recorded the entries up to it as
/// delivered without sending them, and their samples never reached
/// Prometheus.
#[tokio::test(flavor = "multi_thread")]
async fn another_cluster_s_marker_under_the_same_sink_name_is_not_taken_for_ours() {
    let prom = Prometheus::start().await;
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        ..Default::default()
    })
    .await;
    let client = http();
    let t0 = now_ms() - 60_000;
    for i in 0..20i64 {
        let req = request(vec![gauge(
            "shared_prom_gauge",
            vec![point(&[("step", &i.to_string())], t0 + i, i as f64)],
        )]);
        let node = &cluster.nodes[(i % 3) as usize];
        assert_eq!(post_metrics(&client, node, &req).await, Some(200));
    }
    write_foreign_markers(&prom, 10).await;

    cluster.stop_all();
    for node in &mut cluster.nodes {
        node.env.extend(sink_env(SINK, &prom));
        node.start();
    }
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let st = cluster.wait_exported(SINK, Duration::from_secs(90)).await;
    let found = wait_until(Duration::from_secs(30), || async {
        let t = now_ms() as f64 / 1000.0;
        let series = prom.query("count(shared_prom_gauge)", t).await;
        let n = value_of(&series).first().copied().unwrap_or(0.0);
        (n as i64 == 20).then_some(n)
    })
    .await;
    assert!(
        found.is_some(),
        "not every step reached Prometheus; sink state {st}"
    );
    let status = cluster.nodes[0].status().await.expect("status");
    let id = status["cluster_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(id.len(), 32, "{status}");
    let t = now_ms() as f64 / 1000.0 + 1.0;
    let ours = prom
        .query(
            &format!("last_over_time(otelraft_export_cursor{{otelraft_cluster=\"{id}\"}}[10m])"),
            t,
        )
        .await;
    assert_eq!(
        ours.len(),
        1,
        "this cluster's markers carry its id: {ours:?}"
    );
}
