//! The hostile-input suite's well-behaved client and its sinks: the
//! official OpenTelemetry Python SDK writing steadily (`tests/sdk/steady.py`)
//! to a cluster that exports to a real Prometheus and the strict Loki
//! receiver, and the check that everything it had acknowledged reached both
//! exactly once, with no sink cursor and no trim point stuck.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{wait_until, TestCluster, TestNode};
use crate::loki::LokiReceiver;
use crate::prometheus::{self, Prometheus};

/// The sink names the suite configures.
pub const PROMETHEUS_SINK: &str = "prom";
pub const LOKI_SINK: &str = "loki";

/// A real Prometheus and the Loki receiver, for a cluster to export to.
pub struct Sinks {
    pub prometheus: Prometheus,
    pub loki: LokiReceiver,
}

impl Sinks {
    pub async fn start() -> Sinks {
        Sinks {
            prometheus: Prometheus::start().await,
            loki: LokiReceiver::start().await,
        }
    }

    /// The `OTELRAFT_SINKS__*` overrides for both sinks.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = prometheus::sink_env(PROMETHEUS_SINK, &self.prometheus);
        let upper = LOKI_SINK.to_ascii_uppercase();
        env.extend([
            (format!("OTELRAFT_SINKS__{upper}__KIND"), "loki".to_string()),
            (
                format!("OTELRAFT_SINKS__{upper}__ENDPOINT"),
                self.loki.push_url(),
            ),
            (
                format!("OTELRAFT_SINKS__{upper}__RETRY_MAX_MS"),
                "1000".to_string(),
            ),
        ]);
        env
    }

    /// Asserts that every record was acknowledged within 10 s, that every
    /// one is in Loki exactly once and was never resent, that Prometheus holds the writer's
    /// counter at its final value, that both sinks caught up, and that
    /// every node's trim point reached the sinks' cursors.
    pub async fn assert_delivered(&self, cluster: &TestCluster, prefix: &str, report: &Report) {
        assert!(
            report.slowest_ms < 10_000,
            "{prefix}: the SDK waited {} ms for an acknowledgement",
            report.slowest_ms
        );
        let prom = cluster
            .wait_exported(PROMETHEUS_SINK, Duration::from_secs(120))
            .await;
        let loki = cluster
            .wait_exported(LOKI_SINK, Duration::from_secs(120))
            .await;
        let wanted: Vec<String> = (0..report.written)
            .map(|i| format!("{prefix}-{i:06}"))
            .collect();
        let stored = wait_until(Duration::from_secs(60), || async {
            let mut stored: BTreeMap<String, usize> = BTreeMap::new();
            for line in self.loki.stored() {
                if line.line.starts_with(prefix) {
                    *stored.entry(line.line).or_default() += 1;
                }
            }
            wanted
                .iter()
                .all(|w| stored.contains_key(w))
                .then_some(stored)
        })
        .await
        .unwrap_or_else(|| panic!("not every acknowledged {prefix} record reached Loki"));
        assert!(
            stored.values().all(|n| *n == 1),
            "a record stored twice: {:?}",
            stored.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
        );
        let stats = self.loki.stats();
        assert_eq!(
            stats.duplicates_dropped, 0,
            "entries were sent to Loki twice: {stats:?}"
        );

        let series = format!("{}_writes_total", prefix.replace('-', "_"));
        let counted = wait_until(Duration::from_secs(60), || async {
            let t = crate::metrics::now_ms() as f64 / 1000.0 + 1.0;
            let found = self.prometheus.query(&series, t).await;
            let value: f64 = found.first()?["value"][1].as_str()?.parse().ok()?;
            (value as u64 == report.written).then_some(value)
        })
        .await;
        assert!(
            counted.is_some(),
            "Prometheus never showed {series} = {}",
            report.written
        );

        let cursor = |s: &Value| s["cursor"].as_u64().unwrap_or(0);
        let floor = cursor(&prom).min(cursor(&loki));
        for node in cluster.nodes.iter().filter(|n| n.is_running()) {
            let trimmed = wait_until(Duration::from_secs(60), || async {
                let st = node.status().await?;
                let trim = st["retained_log"]["trim_index"].as_u64()?;
                (trim >= floor).then_some(trim)
            })
            .await;
            assert!(
                trimmed.is_some(),
                "node {}'s trim point stayed below the sinks' cursor {floor}: {:?}",
                node.id,
                node.status().await.map(|s| s["retained_log"].clone())
            );
        }
        eprintln!(
            "{prefix}: {} records acknowledged, slowest in {} ms; sink cursors {} / {}, all trim points at or past {floor}",
            report.logs,
            report.slowest_ms,
            cursor(&prom),
            cursor(&loki)
        );
    }
}

impl Drop for SdkWriter {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the SDK client reported when it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Records written to the SDK.
    pub written: u64,
    /// Records the server acknowledged.
    pub logs: u64,
    /// Records the SDK gave up on after its retries.
    pub failures: u64,
    /// The slowest acknowledgement, retries included.
    pub slowest_ms: u64,
    /// Metric exports that failed.
    pub metric_failures: u64,
}

/// `tests/sdk/steady.py` running against every member of a cluster.
pub struct SdkWriter {
    /// Taken by `finish`; killed on drop if a test fails first.
    child: Option<Child>,
    stop_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl SdkWriter {
    /// Starts writing records `<prefix>-NNNNNN` to every member in turn.
    pub fn start(cluster: &TestCluster, prefix: &str) -> SdkWriter {
        let nodes: Vec<&TestNode> = cluster.nodes.iter().collect();
        SdkWriter::start_on(&nodes, prefix)
    }

    /// Starts writing records `<prefix>-NNNNNN` to `nodes` in turn.
    pub fn start_on(nodes: &[&TestNode], prefix: &str) -> SdkWriter {
        let dir = tempfile::tempdir().expect("tempdir");
        let stop_file = dir.path().join("stop");
        let script = format!("{}/../tests/sdk/steady.py", env!("CARGO_MANIFEST_DIR"));
        let mut command = Command::new("python3");
        command.arg(script).arg("--http");
        for node in nodes {
            command.arg(node.http_url());
        }
        if let Some(ca) = &nodes[0].ca {
            command.arg("--ca").arg(ca);
        }
        if let Some(token) = &nodes[0].ingest_token {
            command.arg("--token").arg(token);
        }
        let child = command
            .arg("--prefix")
            .arg(prefix)
            .arg("--stop-file")
            .arg(&stop_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs (CI installs the OpenTelemetry SDK; see .ci/run)");
        SdkWriter {
            child: Some(child),
            stop_file,
            _dir: dir,
        }
    }

    /// Stops the writer, waits for it to flush, and asserts that the SDK
    /// dropped nothing.
    pub async fn finish(mut self) -> Report {
        std::fs::write(&self.stop_file, b"stop").expect("stop file");
        let child = self.child.take().expect("running until finish");
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .expect("join")
            .expect("the SDK client exits");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "the SDK client failed: {stdout}{stderr}"
        );
        let line: Value = stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("no report from the SDK client: {stdout}{stderr}"));
        let field = |name: &str| line[name].as_u64().unwrap_or(u64::MAX);
        let report = Report {
            written: field("written"),
            logs: field("logs"),
            failures: field("failures"),
            slowest_ms: field("slowest_ms"),
            metric_failures: field("metric_failures"),
        };
        assert!(report.written > 0, "{report:?}");
        assert_eq!(
            report.failures, 0,
            "the SDK gave up on records: {report:?}\n{stderr}"
        );
        assert_eq!(report.logs, report.written, "{report:?}");
        assert_eq!(report.metric_failures, 0, "{report:?}\n{stderr}");
        report
    }
}

/// Every node's peak RSS so far: the baseline an attack is measured from.
pub fn peak_rss(cluster: &TestCluster) -> Vec<u64> {
    cluster
        .nodes
        .iter()
        .map(|n| n.peak_rss_bytes().expect("the node runs"))
        .collect()
}

/// Asserts that every node is alive, that its peak RSS stayed within its
/// baseline `before` plus `allowance` (what the parts at work in `attack`
/// may hold), and that it stayed within the memory bound its configuration
/// documents (`config::memory`, logged by the node at start-up); prints
/// the figures.
pub fn assert_rss_within(cluster: &TestCluster, before: &[u64], allowance: u64, attack: &str) {
    for (n, before) in cluster.nodes.iter().zip(before) {
        assert!(n.is_running(), "node {} died", n.id);
        let peak = n.peak_rss_bytes().expect("rss");
        let bound = before + allowance;
        let documented = documented_bound(&n.log_text())
            .unwrap_or_else(|| panic!("node {} logged no memory bound", n.id));
        eprintln!(
            "{attack}: node {} peak RSS {} MiB before, {} MiB after (bound {} MiB; documented bound {} MiB)",
            n.id,
            before >> 20,
            peak >> 20,
            bound >> 20,
            documented >> 20
        );
        assert!(
            peak <= bound,
            "{attack}: node {} peaked at {} MiB, over {} MiB",
            n.id,
            peak >> 20,
            bound >> 20
        );
        assert!(
            peak <= documented,
            "{attack}: node {} peaked at {} MiB, over its documented bound of {} MiB",
            n.id,
            peak >> 20,
            documented >> 20
        );
    }
}

/// The bound a node logs at start-up (`memory_bound_mib=N`), in bytes.
fn documented_bound(log: &str) -> Option<u64> {
    let (_, rest) = log.split_once("memory_bound_mib=")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse::<u64>().ok().map(|mib| mib << 20)
}
