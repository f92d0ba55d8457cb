//! Total loss: every data directory destroyed, a new cluster restored from
//! the bucket (s3s-fs, signatures checked) with `otelraft restore`, and
//! export to a real Prometheus carried on without a gap or a resend. And
//! `otelraft archive replay`, which backfills Prometheus and Loki (the
//! strict test receiver) from the bucket.

use std::time::Duration;
use testkit::cluster;

use serde_json::Value;
use testkit::cluster::{node_cli, node_cli_with, post_logs, Options, TestCluster, TestNode};
use testkit::loki::LokiReceiver;
use testkit::metrics::{gauge, http, now_ms, point, post_metrics, request};
use testkit::prometheus::{sink_env, Prometheus};
use testkit::s3::S3Server;

const SINK: &str = "prom";
const WAIT: Duration = Duration::from_secs(90);

/// One request pair per step: a log record `<phase>-<i>` and one sample of
/// `restore_probe{phase}` with value `i`, both acknowledged.
struct Phase {
    name: &'static str,
    base_ms: i64,
    steps: usize,
}

impl Phase {
    fn new(name: &'static str, steps: usize) -> Phase {
        Phase {
            name,
            base_ms: now_ms() - 60_000,
            steps,
        }
    }

    fn body(&self, i: usize) -> String {
        format!("restore-{}-{i:04}", self.name)
    }

    fn samples(&self) -> Vec<(i64, f64)> {
        (0..self.steps)
            .map(|i| (self.base_ms + i as i64 * 10, i as f64))
            .collect()
    }

    /// Sends every step to the nodes in turn; panics unless each is acked.
    async fn send(&self, cluster: &TestCluster) {
        let client = http();
        let running: Vec<&TestNode> = cluster.nodes.iter().filter(|n| n.is_running()).collect();
        for (i, (ts, v)) in self.samples().into_iter().enumerate() {
            let node = running[i % running.len()];
            assert_eq!(
                post_logs(&client, node, &[self.body(i)]).await,
                Some(200),
                "log {i} of phase {}",
                self.name
            );
            let req = request(vec![gauge(
                "restore_probe",
                vec![point(&[("phase", self.name)], ts, v)],
            )]);
            assert_eq!(
                post_metrics(&client, node, &req).await,
                Some(200),
                "metric {i} of phase {}",
                self.name
            );
        }
    }

    /// Asserts Prometheus holds exactly this phase's samples.
    async fn assert_in(&self, prom: &Prometheus) {
        let t = now_ms() as f64 / 1000.0 + 1.0;
        let selector = format!(r#"restore_probe{{phase="{}"}}"#, self.name);
        let stored = prom.samples(&selector, "30m", t).await;
        assert_eq!(
            stored.len(),
            1,
            "one series for phase {}: {stored:?}",
            self.name
        );
        assert_eq!(
            stored[0].1,
            self.samples(),
            "phase {}: every acked sample, once",
            self.name
        );
    }
}

/// An S3 server, a Prometheus, and a 3-node cluster archiving to the one
/// under `prefix` and exporting to the other.
async fn start(prefix: &str) -> (S3Server, Prometheus, TestCluster) {
    let s3 = S3Server::start().await;
    let prom = Prometheus::start().await;
    let mut env = s3.fast_archive_env(prefix);
    env.extend(sink_env(SINK, &prom));
    let cluster = TestCluster::start(Options {
        nodes: 3,
        env,
        ..Default::default()
    })
    .await;
    (s3, prom, cluster)
}

/// Asserts the sink status shows no dead-lettered item.
fn assert_no_dead_letters(sink: &Value) {
    let total: u64 = sink["dead_letters"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(u64::MAX);
    assert_eq!(total, 0, "nothing dead-lettered: {sink}");
}

async fn leader_status(cluster: &TestCluster) -> Value {
    let leader = cluster.wait_for_leader(WAIT).await;
    cluster.nodes[(leader - 1) as usize]
        .status()
        .await
        .expect("leader status")
}

/// SIGKILLs every node and deletes every data directory.
fn destroy(cluster: &mut TestCluster) {
    for n in cluster.nodes.iter_mut() {
        n.kill();
        std::fs::remove_dir_all(&n.data_dir).expect("delete data dir");
    }
}

/// `otelraft restore` on node 1; returns its JSON report.
fn restore(cluster: &TestCluster, extra: &[&str]) -> Value {
    let mut args = vec!["restore", "--json"];
    args.extend_from_slice(extra);
    let (ok, out) = node_cli(&cluster.nodes[0], &args);
    assert!(ok, "restore failed:\n{out}");
    let last = out.lines().last().expect("report line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("report is JSON ({e}):\n{out}"))
}

fn start_all(cluster: &mut TestCluster) {
    for n in cluster.nodes.iter_mut() {
        n.start();
    }
}

fn archive_cli(node: &TestNode, args: &[&str]) -> (bool, String) {
    let mut all = vec!["archive"];
    all.extend_from_slice(args);
    node_cli(node, &all)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_restored_from_the_bucket_holds_what_was_acked_and_exports_it_once() {
    let (_s3, mut prom, mut cluster) = start("loss").await;

    // Phase a reaches Prometheus; phase b only the archive.
    let a = Phase::new("a", 30);
    a.send(&cluster).await;
    cluster.wait_exported(SINK, WAIT).await;
    prom.kill();
    let b = Phase::new("b", 30);
    b.send(&cluster).await;
    let archived = cluster.wait_archived(WAIT).await;
    let before = leader_status(&cluster).await;
    let sink_cursor = before["sinks"][SINK]["cursor"].as_u64().expect("cursor");
    let archive_cursor = archived["cursor"].as_u64().expect("archive cursor");
    assert!(
        sink_cursor < archive_cursor,
        "phase b must be archived but not exported: sink {sink_cursor}, archive {archive_cursor}"
    );

    destroy(&mut cluster);
    prom.restart().await;
    let report = restore(&cluster, &[]);
    assert_eq!(report["first_index"], 0, "{report}");
    assert_eq!(
        report["last_index"].as_u64(),
        Some(archive_cursor),
        "{report}"
    );
    assert_eq!(report["records"]["logs"], 60, "{report}");
    assert_eq!(report["records"]["metrics"], 60, "{report}");
    assert_eq!(report["sinks"][0]["name"], SINK, "{report}");
    assert_eq!(
        report["sinks"][0]["cursor"].as_u64(),
        Some(sink_cursor),
        "{report}"
    );
    assert!(
        report["retained_rows"].as_u64() >= Some(archive_cursor - sink_cursor),
        "the entries the sink has not consumed are kept: {report}"
    );

    // Restoring over a node's data is refused.
    let (ok, out) = node_cli(&cluster.nodes[0], &["restore"]);
    assert!(!ok && out.contains("empty data directory"), "{out}");

    // Node 1 holds the restored log; 2 and 3 start empty and catch up.
    start_all(&mut cluster);
    cluster.wait_for_records("logs", 60, WAIT).await;
    cluster.wait_for_records("metrics", 60, WAIT).await;
    let c = Phase::new("c", 30);
    c.send(&cluster).await;
    cluster.wait_for_records("logs", 90, WAIT).await;
    let sink = cluster.wait_exported(SINK, WAIT).await;
    assert_no_dead_letters(&sink);
    for phase in [&a, &b, &c] {
        phase.assert_in(&prom).await;
    }
    // The restored cluster continues the lost one under its name.
    let after = leader_status(&cluster).await;
    assert_eq!(
        after["cluster_id"].as_str().map(str::len),
        Some(32),
        "{after}"
    );
    assert_eq!(after["cluster_id"], before["cluster_id"], "{after}");

    // The new cluster archives after the restored range: one history.
    let archived = cluster.wait_archived(WAIT).await;
    assert!(
        archived["cursor"].as_u64() > Some(archive_cursor),
        "{archived}"
    );
    let (ok, out) = archive_cli(&cluster.nodes[0], &["verify"]);
    assert!(
        ok && out.contains("OK"),
        "archive verify after restore:\n{out}"
    );
    let (ok, dump) = archive_cli(&cluster.nodes[0], &["cat", "--all"]);
    assert!(ok, "{dump}");
    for phase in [&a, &b, &c] {
        for i in 0..phase.steps {
            let body = phase.body(i);
            assert_eq!(dump.matches(&body).count(), 1, "{body} archived once");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_behind_the_sink_neither_skips_new_data_nor_resends_old() {
    let (s3, prom, mut cluster) = start("behind").await;
    let a = Phase::new("a", 40);
    a.send(&cluster).await;
    let exported = cluster.wait_exported(SINK, WAIT).await;
    cluster.wait_archived(WAIT).await;
    let sink_cursor = exported["cursor"].as_u64().expect("cursor");

    // Restore only up to a block boundary well behind what Prometheus
    // holds: the sink's markers then name indices the new cluster reuses.
    let (ok, listing) = archive_cli(&cluster.nodes[0], &["ls", "--json"]);
    assert!(ok, "{listing}");
    let lasts: Vec<u64> = listing
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|b| b["last_index"].as_u64())
        .filter(|last| *last + 20 < sink_cursor && *last > 10)
        .collect();
    let upto = *lasts.last().expect("a block boundary well behind the sink");
    destroy(&mut cluster);
    let upto_arg = upto.to_string();
    let (ok, out) = node_cli(&cluster.nodes[0], &["restore", "--upto", &upto_arg]);
    assert!(
        !ok && out.contains("--set-aside-later"),
        "the later blocks would be overwritten; restore must refuse:\n{out}"
    );
    let report = restore(&cluster, &["--upto", &upto_arg, "--set-aside-later"]);
    assert_eq!(report["last_index"].as_u64(), Some(upto), "{report}");
    let objects: Vec<String> = s3.objects().into_iter().map(|(k, _)| k).collect();
    assert!(
        objects.iter().any(|k| k.starts_with("behind/set-aside/")),
        "later blocks set aside: {objects:?}"
    );

    // A restore that did not finish leaves a directory `serve` refuses.
    let unfinished = &cluster.nodes[2];
    std::fs::create_dir_all(&unfinished.data_dir).expect("data dir");
    let marker = unfinished.data_dir.join("RESTORING");
    std::fs::write(&marker, b"").expect("marker");
    let (ok, out) = tokio::task::block_in_place(|| node_cli(unfinished, &["serve"]));
    assert!(!ok && out.contains("did not finish"), "{out}");
    std::fs::remove_file(&marker).expect("remove marker");

    start_all(&mut cluster);
    cluster.wait_for_leader(WAIT).await;
    let c = Phase::new("c", 40);
    c.send(&cluster).await;
    let sink = cluster.wait_exported(SINK, WAIT).await;
    assert!(sink["cursor"].as_u64() > Some(sink_cursor), "{sink}");
    c.assert_in(&prom).await;
    a.assert_in(&prom).await;
    assert_no_dead_letters(&sink);
    // The new cluster archived the reused range itself: one history again.
    cluster.wait_archived(WAIT).await;
    let (ok, out) = archive_cli(&cluster.nodes[0], &["verify"]);
    assert!(ok, "archive verify after a restore with --upto:\n{out}");
}

/// `otelraft archive replay --json <args>` with node 1's config plus `env`,
/// run off the async workers (the Loki receiver serves on them); returns
/// the JSON report.
async fn replay(cluster: &TestCluster, args: &[&str], env: &[(String, String)]) -> Value {
    let mut all = vec!["archive", "replay", "--json"];
    all.extend_from_slice(args);
    let (ok, out) = tokio::task::block_in_place(|| node_cli_with(&cluster.nodes[0], &all, env));
    assert!(ok, "replay failed:\n{out}");
    let last = out.lines().last().expect("report line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("report is JSON ({e}):\n{out}"))
}

fn dead_lettered(report: &Value) -> u64 {
    report["dead_letters"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread")]
async fn archive_replay_backfills_prometheus_and_loki_from_the_bucket() {
    let s3 = S3Server::start().await;
    let cluster = TestCluster::start(Options {
        nodes: 3,
        env: s3.fast_archive_env("replay"),
        ..Default::default()
    })
    .await;
    let r = Phase::new("r", 30);
    r.send(&cluster).await;
    cluster.wait_archived(WAIT).await;

    // Sinks the cluster never had, configured for the replay only.
    let prom = Prometheus::start().await;
    let loki = LokiReceiver::start().await;
    let mut env = sink_env(SINK, &prom);
    env.extend([
        ("OTELRAFT_SINKS__LK__KIND".to_string(), "loki".to_string()),
        ("OTELRAFT_SINKS__LK__ENDPOINT".to_string(), loki.push_url()),
        (
            "OTELRAFT_SINKS__LK__MAX_BATCH_ENTRIES".to_string(),
            "8".to_string(),
        ),
    ]);

    let report = replay(&cluster, &["--to", "prometheus"], &env).await;
    assert_eq!(report["sink"], "prom-replay", "{report}");
    assert_eq!(dead_lettered(&report), 0, "{report}");
    r.assert_in(&prom).await;

    let report = replay(&cluster, &["--to", "loki"], &env).await;
    assert_eq!(dead_lettered(&report), 0, "{report}");
    assert!(
        report["requests"].as_u64() >= Some(3),
        "batches of 8: {report}"
    );
    let mut lines: Vec<String> = loki.stored().into_iter().map(|l| l.line).collect();
    lines.sort();
    let expected: Vec<String> = (0..r.steps).map(|i| r.body(i)).collect();
    assert_eq!(lines, expected, "every archived record, once");

    // A second replay of the same range stores nothing twice: the replay
    // reads Loki back and sends none of it, Prometheus refuses the
    // out-of-order samples (counted).
    let again = replay(&cluster, &["--to", "lk"], &env).await;
    assert_eq!(
        again["already_held"].as_u64(),
        Some(r.steps as u64),
        "{again}"
    );
    assert_eq!(loki.stored().len(), r.steps);
    assert_eq!(loki.stats().duplicates_dropped, 0, "nothing was sent again");
    let again = replay(&cluster, &["--to", "prom", "--from", "1"], &env).await;
    assert!(dead_lettered(&again) > 0, "{again}");
    r.assert_in(&prom).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_added_after_trimming_records_the_gap_and_replay_fills_it() {
    let s3 = S3Server::start().await;
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        env: s3.fast_archive_env("late-sink"),
        ..Default::default()
    })
    .await;
    let old = Phase::new("old", 60);
    old.send(&cluster).await;
    cluster.wait_archived(WAIT).await;
    // Trimmed behind the archive on every member (no sink holds it back).
    let trimmed = cluster::wait_until(WAIT, || async {
        let mut firsts = Vec::new();
        for n in &cluster.nodes {
            firsts.push(n.status().await?["retained_log"]["first_index"].as_u64()?);
        }
        firsts.iter().all(|f| *f > 20).then_some(firsts)
    })
    .await;
    assert!(trimmed.is_some(), "log not trimmed\n{}", cluster.logs());

    // Every member now gets a Loki sink the cluster never had.
    let loki = LokiReceiver::start().await;
    for n in cluster.nodes.iter_mut() {
        n.stop();
        n.env.extend([
            ("OTELRAFT_SINKS__LK__KIND".to_string(), "loki".to_string()),
            ("OTELRAFT_SINKS__LK__ENDPOINT".to_string(), loki.push_url()),
        ]);
        n.start();
    }
    let new = Phase::new("new", 10);
    new.send(&cluster).await;
    let sink = cluster.wait_exported("lk", WAIT).await;
    assert!(
        sink["dead_letters"]["trimmed"].as_u64() > Some(0),
        "the trimmed range is recorded: {sink}"
    );
    let stored: Vec<String> = loki.stored().into_iter().map(|l| l.line).collect();
    for i in 0..new.steps {
        assert_eq!(stored.iter().filter(|l| **l == new.body(i)).count(), 1);
    }
    let missing: Vec<String> = (0..old.steps)
        .map(|i| old.body(i))
        .filter(|b| !stored.contains(b))
        .collect();
    assert!(
        !missing.is_empty(),
        "older entries were trimmed before the sink"
    );

    // The dead letter names the range; replay backfills exactly it.
    let leader = cluster.wait_for_leader(WAIT).await;
    let letters: Value = reqwest::get(format!(
        "{}/admin/v1/dead-letters",
        cluster.nodes[(leader - 1) as usize].admin_url()
    ))
    .await
    .expect("dead letters")
    .json()
    .await
    .expect("json");
    let text = letters.to_string();
    let hint = text
        .split("otelraft archive replay ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no replay hint in {text}"));
    let args: Vec<&str> = hint.split_whitespace().collect();
    replay(&cluster, &args, &[]).await;
    let stored: Vec<String> = loki.stored().into_iter().map(|l| l.line).collect();
    for i in 0..old.steps {
        assert_eq!(
            stored.iter().filter(|l| **l == old.body(i)).count(),
            1,
            "{} once after the backfill",
            old.body(i)
        );
    }
}
