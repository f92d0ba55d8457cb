//! A real Prometheus (Debian's `prometheus` package) for export tests:
//! started on a free loopback port with a temporary TSDB, no scrape jobs,
//! and the remote-write receiver on. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The Prometheus binary: `$OTELRAFT_TEST_PROMETHEUS` or `prometheus` on PATH.
fn binary() -> String {
    std::env::var("OTELRAFT_TEST_PROMETHEUS").unwrap_or_else(|_| "prometheus".to_string())
}

/// One Prometheus process.
pub struct Prometheus {
    pub addr: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Prometheus {
    /// Starts Prometheus and waits until it is ready.
    pub async fn start() -> Prometheus {
        let port = crate::cluster::free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("prometheus.yml"),
            "global:\n  scrape_interval: 1h\nscrape_configs: []\n",
        )
        .expect("config");
        let mut p = Prometheus {
            addr: format!("127.0.0.1:{port}"),
            dir,
            child: None,
        };
        p.restart().await;
        p
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("tsdb")
    }

    /// (Re)starts the process on the same port and TSDB directory.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "prometheus already running");
        let log = std::fs::File::create(self.dir.path().join("prometheus.log")).expect("log");
        let child = Command::new(binary())
            .arg(format!(
                "--config.file={}",
                self.dir.path().join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", self.data_dir().display()))
            .arg(format!("--web.listen-address={}", self.addr))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus (CI installs Debian's prometheus; see .ci/run)");
        self.child = Some(child);
        let client = reqwest::Client::new();
        let url = format!("http://{}/-/ready", self.addr);
        let ready = crate::cluster::wait_until(Duration::from_secs(60), || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let r = client.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        assert!(ready.is_some(), "prometheus not ready:\n{}", self.log());
    }

    /// SIGKILLs the process (the TSDB directory stays).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The remote-write endpoint.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Prometheus' own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Runs an instant query at `time_s` (seconds); returns `data.result`.
    pub async fn query(&self, promql: &str, time_s: f64) -> Vec<Value> {
        let resp: Value = reqwest::Client::new()
            .get(format!("http://{}/api/v1/query", self.addr))
            .query(&[
                ("query", promql.to_string()),
                ("time", format!("{time_s:.3}")),
            ])
            .send()
            .await
            .expect("query prometheus")
            .json()
            .await
            .expect("query answer is JSON");
        assert_eq!(resp["status"], "success", "query {promql} failed: {resp}");
        resp["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every raw sample of the series matching `selector` within the last
    /// `window` before `time_s`, as (labels, [(ts_ms, value)]).
    pub async fn samples(
        &self,
        selector: &str,
        window: &str,
        time_s: f64,
    ) -> Vec<(Value, Vec<(i64, f64)>)> {
        self.query(&format!("{selector}[{window}]"), time_s)
            .await
            .into_iter()
            .map(|series| {
                let points = series["values"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| {
                        let ts = (p[0].as_f64().expect("ts") * 1000.0).round() as i64;
                        let v: f64 = p[1].as_str().expect("value").parse().expect("number");
                        (ts, v)
                    })
                    .collect();
                (series["metric"].clone(), points)
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `OTELRAFT_SINKS__<NAME>__*` overrides for a remote-write sink.
pub fn sink_env(name: &str, prometheus: &Prometheus) -> Vec<(String, String)> {
    let upper = name.to_ascii_uppercase();
    vec![
        (
            format!("OTELRAFT_SINKS__{upper}__KIND"),
            "prometheus_remote_write".to_string(),
        ),
        (
            format!("OTELRAFT_SINKS__{upper}__ENDPOINT"),
            prometheus.write_url(),
        ),
        (
            format!("OTELRAFT_SINKS__{upper}__RETRY_MAX_MS"),
            "1000".to_string(),
        ),
        (
            format!("OTELRAFT_SINKS__{upper}__TIMEOUT_MS"),
            "5000".to_string(),
        ),
    ]
}
