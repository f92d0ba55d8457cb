//! Runs real `otelraft` processes for integration tests: configs in a temp
//! dir, free loopback ports, kill/stop/pause/restart, status and inspection.
//! Every process is killed when the `TestCluster` drops, even on panic.

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value;

/// Path of the binary under test: `CARGO_BIN_EXE_otelraft` when set, else
/// `otelraft` in the target directory of the running test (cargo puts test
/// executables in `target/<profile>/deps/` and builds the binary beside
/// that folder before it runs an integration test of the package).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_otelraft") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe
        .parent()
        .expect("the test executable's folder")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("otelraft");
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build --bins` first",
        path.display()
    );
    path
}

/// Ports handed out by this process, below the kernel's ephemeral range
/// (32768+) so that neither an outgoing connection nor a `bind(:0)` elsewhere
/// can take one between our probe and the node's own bind. Each test process
/// starts at its own pid-derived offset; the counter never hands out a port
/// twice within a process.
static NEXT_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
const PORT_BASE: u32 = 12000;
const PORT_SPAN: u32 = 20000;

/// A loopback port that was free when probed and has not been handed out
/// before by this process.
pub fn free_port() -> u16 {
    use std::sync::atomic::Ordering;
    let offset = (std::process::id() * 7919) % PORT_SPAN;
    for _ in 0..PORT_SPAN {
        let n = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let port = (PORT_BASE + (offset + n) % PORT_SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free loopback port in {PORT_BASE}..{}",
        PORT_BASE + PORT_SPAN
    )
}

/// One node process and its addresses.
pub struct TestNode {
    pub id: u64,
    pub grpc: String,
    pub http: String,
    pub peer: String,
    pub admin: String,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub env: Vec<(String, String)>,
    /// The cluster CA when the node runs TLS (`Options::tls`).
    pub ca: Option<PathBuf>,
    /// Tokens when the node runs `[auth]` (`Options::auth`).
    pub ingest_token: Option<String>,
    pub admin_token: Option<String>,
    child: Option<Child>,
}

impl TestNode {
    fn new(dir: &std::path::Path, id: u64) -> TestNode {
        TestNode {
            id,
            grpc: format!("127.0.0.1:{}", free_port()),
            http: format!("127.0.0.1:{}", free_port()),
            peer: format!("127.0.0.1:{}", free_port()),
            admin: format!("127.0.0.1:{}", free_port()),
            config_path: dir.join(format!("node{id}.toml")),
            data_dir: dir.join(format!("node{id}")),
            log_path: dir.join(format!("node{id}.log")),
            env: Vec::new(),
            ca: None,
            ingest_token: None,
            admin_token: None,
            child: None,
        }
    }

    fn scheme(&self) -> &'static str {
        if self.ca.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// URL of the admin API (`https://` with TLS).
    pub fn admin_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.admin)
    }

    /// URL of the OTLP HTTP receiver (`https://` with TLS).
    pub fn http_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.http)
    }

    /// `request` with the admin token, when the node runs `[auth]`.
    pub fn admin_request(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.admin_token {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
    }

    /// An HTTP client that trusts the cluster CA when the node runs TLS.
    pub fn client(&self, timeout: Duration) -> reqwest::Client {
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(ca) = &self.ca {
            let pem = std::fs::read(ca).expect("read the test CA");
            let roots = reqwest::Certificate::from_pem_bundle(&pem).expect("test CA parses");
            builder = builder.tls_certs_only(roots);
        }
        builder.build().expect("HTTP client")
    }

    /// Starts the process (appending to its log file).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let err = log.try_clone().expect("log handle");
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        cmd.env("OTELRAFT_LOG", "info,openraft=warn");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn otelraft"));
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on a child we own.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait for a clean exit (SIGKILL after 20 s).
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// SIGTERM without waiting; see [`TestNode::wait_exit`].
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits up to `timeout` for the process to exit and reaps it; returns
    /// its exit status, or None if it is still running (it is left so).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.child.as_mut()?;
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The node's whole log output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGSTOP.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGHUP.
    pub fn hangup(&self) {
        self.signal(libc::SIGHUP);
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Waits until the started process answers `/health/live`, so a
    /// command that needs it does not race its start-up.
    pub async fn wait_live(&self, timeout: Duration) {
        let url = format!("{}/health/live", self.admin_url());
        let client = self.client(Duration::from_secs(2));
        let up = wait_until(timeout, || async {
            let r = client.get(&url).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        assert!(
            up.is_some(),
            "node {} did not come up within {timeout:?}\n{}",
            self.id,
            self.log_tail()
        );
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The process's peak resident memory so far (`VmHWM`), while running.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The node's log output so far (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `GET /admin/v1/status`, or None when unreachable.
    pub async fn status(&self) -> Option<Value> {
        let resp = self
            .admin_request(
                self.client(Duration::from_secs(2))
                    .get(format!("{}/admin/v1/status", self.admin_url())),
            )
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// Committed record count for `signal` according to this node's status.
    pub async fn committed_records(&self, signal: &str) -> Option<u64> {
        let s = self.status().await?;
        Some(s["signals"][signal]["records"].as_u64().unwrap_or(0))
    }

    /// Runs `otelraft inspect` on the (stopped) node and returns its entries.
    pub fn inspect(&self) -> Vec<Value> {
        assert!(
            self.child.is_none(),
            "inspect needs node {} stopped",
            self.id
        );
        let out = Command::new(binary())
            .arg("inspect")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output()
            .expect("inspect");
        assert!(
            out.status.success(),
            "inspect failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("inspect prints JSON lines"))
            .collect()
    }

    /// Every log record body string in the node's committed log.
    pub fn log_bodies(&self) -> Vec<String> {
        let mut bodies = Vec::new();
        for e in self.inspect() {
            if e["kind"] != "ingest" || e["signal"] != "logs" {
                continue;
            }
            for rl in e["otlp"]["resourceLogs"].as_array().into_iter().flatten() {
                for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                    for lr in sl["logRecords"].as_array().into_iter().flatten() {
                        if let Some(s) = lr["body"]["stringValue"].as_str() {
                            bodies.push(s.to_string());
                        }
                    }
                }
            }
        }
        bodies
    }
}

/// Options for a test cluster.
#[derive(Clone, Default)]
pub struct Options {
    /// Nodes to create.
    pub nodes: usize,
    /// Nodes that are initial voters (the rest are created but not started
    /// nor members). Defaults to all.
    pub voters: Option<usize>,
    /// Extra `OTELRAFT_*` overrides for every node.
    pub env: Vec<(String, String)>,
    /// Ids of the nodes configured with `role = "witness"`.
    pub witnesses: Vec<u64>,
    /// Form the cluster with `cluster.join` instead of a static membership:
    /// node 1 has `bootstrap` and lists only itself, every node joins
    /// through all the others. No node is started; the test starts them.
    pub join: bool,
    /// TLS on every listener and mutual TLS between members, with
    /// certificates from `otelraft certs` in `<dir>/tls`.
    pub tls: bool,
    /// `[auth]`: ingest and admin tokens in `<dir>/ingest.token` and
    /// `<dir>/admin.token`.
    pub auth: bool,
}

/// A set of node processes in one temp dir.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<TestNode>,
}

impl TestCluster {
    /// Writes configs and starts the voters; node 1 bootstraps.
    pub async fn start(opts: Options) -> TestCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes: Vec<TestNode> = (1..=opts.nodes as u64)
            .map(|id| TestNode::new(dir.path(), id))
            .collect();
        let voters = opts.voters.unwrap_or(opts.nodes);
        let mut members = String::new();
        let role = |id: u64| {
            if opts.witnesses.contains(&id) {
                "witness"
            } else {
                "data"
            }
        };
        for n in nodes.iter().take(voters) {
            members.push_str(&format!(
                "\n[[cluster.initial_members]]\nid = {}\npeer_addr = \"{}\"\nadmin_addr = \"{}\"\nrole = \"{}\"\n",
                n.id,
                n.peer,
                n.admin,
                role(n.id)
            ));
        }
        let join_list = format!(
            "join = [{}]\n",
            nodes
                .iter()
                .map(|n| format!("\"{}\"", n.admin))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let tls_dir = dir.path().join("tls");
        if opts.tls {
            let ids: Vec<String> = nodes.iter().map(|n| n.id.to_string()).collect();
            let (ok, out) = run_cli(
                Command::new(binary())
                    .arg("certs")
                    .arg("--dir")
                    .arg(&tls_dir)
                    .arg("--nodes")
                    .arg(ids.join(",")),
            );
            assert!(ok, "otelraft certs failed: {out}");
        }
        for n in nodes.iter_mut() {
            let cluster_section = if opts.join {
                let own = if n.id == 1 {
                    format!(
                        "\n[[cluster.initial_members]]\nid = 1\npeer_addr = \"{}\"\nadmin_addr = \"{}\"\nrole = \"{}\"\n",
                        n.peer,
                        n.admin,
                        role(1)
                    )
                } else {
                    String::new()
                };
                format!("bootstrap = {}\n{join_list}{own}", n.id == 1)
            } else if n.id == 1 {
                format!("bootstrap = true\n{members}")
            } else {
                "bootstrap = false\n".to_string()
            };
            let config = format!(
                "node_id = {id}\nrole = \"{role}\"\ndata_dir = {data:?}\n\n[listen]\notlp_grpc = \"{g}\"\notlp_http = \"{h}\"\npeer = \"{p}\"\nadmin = \"{a}\"\n\n[raft]\nheartbeat_interval_ms = 100\nelection_timeout_min_ms = 600\nelection_timeout_max_ms = 1200\n\n[cluster]\n{cluster_section}",
                id = n.id,
                role = role(n.id),
                data = n.data_dir.display().to_string(),
                g = n.grpc,
                h = n.http,
                p = n.peer,
                a = n.admin,
            );
            // One archive for the cluster, as a deployment must have: a
            // directory every node shares (tests with S3 override it).
            let config = format!(
                "{config}\n[archive]\ndir = {:?}\n",
                dir.path().join("archive").display().to_string()
            );
            let config = if opts.auth {
                let ingest = dir.path().join("ingest.token");
                let admin = dir.path().join("admin.token");
                std::fs::write(&ingest, format!("{TEST_INGEST_TOKEN}\n")).expect("token file");
                std::fs::write(&admin, format!("{TEST_ADMIN_TOKEN}\n")).expect("token file");
                n.ingest_token = Some(TEST_INGEST_TOKEN.to_string());
                n.admin_token = Some(TEST_ADMIN_TOKEN.to_string());
                format!(
                    "{config}\n[auth]\nenabled = true\ningest_tokens_file = {:?}\nadmin_tokens_file = {:?}\n",
                    ingest.display().to_string(),
                    admin.display().to_string()
                )
            } else {
                config
            };
            let config = if opts.tls {
                n.ca = Some(tls_dir.join("ca.pem"));
                format!(
                    "{config}\n{}",
                    tls_section(&tls_dir, &format!("node-{}", n.id))
                )
            } else {
                config
            };
            std::fs::write(&n.config_path, config).expect("write config");
            n.env = opts.env.clone();
        }
        if opts.join {
            return TestCluster { dir, nodes };
        }
        for n in nodes.iter_mut().take(voters) {
            n.start();
        }
        let cluster = TestCluster { dir, nodes };
        cluster.wait_for_leader(Duration::from_secs(30)).await;
        cluster
    }

    /// Node by id (1-based).
    pub fn node(&mut self, id: u64) -> &mut TestNode {
        &mut self.nodes[(id - 1) as usize]
    }

    /// The leader id, once every running node agrees on it.
    pub async fn wait_for_leader(&self, timeout: Duration) -> u64 {
        let found = wait_until(timeout, || async {
            let mut leader = None;
            for n in self.nodes.iter().filter(|n| n.is_running()) {
                let l = n.status().await?["leader_id"].as_u64()?;
                if leader.is_some_and(|x| x != l) {
                    return None;
                }
                leader = Some(l);
            }
            leader
        })
        .await;
        match found {
            Some(l) => l,
            None => panic!("no agreed leader within {timeout:?}\n{}", self.logs()),
        }
    }

    /// A running node that is not the leader.
    pub async fn a_follower(&self) -> u64 {
        let leader = self.wait_for_leader(Duration::from_secs(30)).await;
        self.nodes
            .iter()
            .find(|n| n.is_running() && n.id != leader)
            .map(|n| n.id)
            .expect("a follower")
    }

    /// Tails of every node's log, for panic messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- node {} ---\n{}\n", n.id, n.log_tail()))
            .collect()
    }

    /// Waits until every running node has applied at least `records`
    /// records of `signal` (for checks while load is still running).
    pub async fn wait_all_reach(&self, signal: &str, records: u64, timeout: Duration) {
        let ok = wait_until(timeout, || async {
            for n in self.nodes.iter().filter(|n| n.is_running()) {
                if n.committed_records(signal).await? < records {
                    return None;
                }
            }
            Some(())
        })
        .await;
        assert!(
            ok.is_some(),
            "nodes did not all reach {records} {signal} records\n{}",
            self.logs()
        );
    }

    /// Waits until every running node reports at least `records` committed
    /// `signal` records, and they all agree (once the load has stopped).
    pub async fn wait_for_records(&self, signal: &str, records: u64, timeout: Duration) {
        let ok = wait_until(timeout, || async {
            let mut counts = Vec::new();
            for n in self.nodes.iter().filter(|n| n.is_running()) {
                counts.push(n.committed_records(signal).await?);
            }
            (counts.iter().all(|c| *c >= records) && counts.windows(2).all(|w| w[0] == w[1]))
                .then_some(())
        })
        .await;
        if ok.is_none() {
            let mut counts = Vec::new();
            for n in self.nodes.iter().filter(|n| n.is_running()) {
                counts.push((n.id, n.committed_records(signal).await));
            }
            panic!(
                "nodes did not all reach {records} {signal} records: {counts:?}\n{}",
                self.logs()
            );
        }
    }

    /// Waits until `sink`'s cursor on the leader reached the newest ingest
    /// entry and its exporter is idle-waiting; returns the sink's status.
    pub async fn wait_exported(&self, sink: &str, timeout: Duration) -> Value {
        let done = wait_until(timeout, || async {
            let leader = self.wait_for_leader(Duration::from_secs(30)).await;
            let st = self.nodes[(leader - 1) as usize].status().await?;
            let s = st["sinks"][sink].clone();
            (s["lag_entries"] == 0 && s["phase"] == "caught_up").then_some(s)
        })
        .await;
        if let Some(s) = done {
            return s;
        }
        let mut statuses = String::new();
        for n in self.nodes.iter().filter(|n| n.is_running()) {
            statuses.push_str(&format!("node {}: {:?}\n", n.id, n.status().await));
        }
        panic!(
            "sink {sink} did not catch up within {timeout:?}\n{statuses}\n{}",
            self.logs()
        )
    }

    /// Waits until the leader reports every content entry archived and no
    /// seal pending; returns the leader's archive status.
    pub async fn wait_archived(&self, timeout: Duration) -> Value {
        let found = wait_until(timeout, || async {
            for n in self.nodes.iter().filter(|n| n.is_running()) {
                let s = n.status().await?;
                if s["role"] != "leader" {
                    continue;
                }
                let a = &s["archive"];
                if a["lag_entries"] == 0 && a["pending"].is_null() && a["blocks"].as_u64()? > 0 {
                    return Some(a.clone());
                }
            }
            None
        })
        .await;
        match found {
            Some(a) => a,
            None => panic!(
                "archive did not catch up within {timeout:?}\n{}",
                self.logs()
            ),
        }
    }

    /// Sum of a metric over every running node's `/metrics`, counting the
    /// lines whose name starts with `name` and that contain `label_filter`.
    pub async fn metric_sum(&self, name: &str, label_filter: &str) -> f64 {
        let mut total = 0.0;
        for n in self.nodes.iter().filter(|n| n.is_running()) {
            let url = format!("{}/metrics", n.admin_url());
            let request = n.admin_request(n.client(Duration::from_secs(5)).get(url));
            let Ok(resp) = request.send().await else {
                continue;
            };
            let text = resp.text().await.unwrap_or_default();
            for line in text.lines() {
                if line.starts_with(name) && line.contains(label_filter) {
                    if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                        total += v;
                    }
                }
            }
        }
        total
    }

    /// Stops every running node gracefully.
    pub fn stop_all(&mut self) {
        for n in self.nodes.iter_mut() {
            n.stop();
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for n in self.nodes.iter_mut() {
            n.resume();
            n.kill();
        }
    }
}

/// Polls `check` every 100 ms until it returns Some or `timeout` passes.
pub async fn wait_until<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub use otelraft::cli::bench::logs_request;

/// POSTs a logs request as protobuf; returns the HTTP status (or None on a
/// transport error, which counts as "unknown" outcome).
pub async fn post_logs(
    client: &reqwest::Client,
    node: &TestNode,
    bodies: &[String],
) -> Option<u16> {
    let body = logs_request(bodies).encode_to_vec();
    let request = client.post(format!("{}/v1/logs", node.http_url()));
    let request = match &node.ingest_token {
        Some(t) => request.bearer_auth(t),
        None => request,
    };
    let resp = request
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .ok()?;
    Some(resp.status().as_u16())
}

/// Runs `tests/sdk/<script>` (the official OpenTelemetry Python SDK) with
/// `args`, panics with its output unless it succeeds, and returns stdout.
pub async fn run_sdk_script(script: &str, args: Vec<String>) -> String {
    let path = format!("{}/../tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let out =
        tokio::task::spawn_blocking(move || Command::new("python3").arg(path).args(args).output())
            .await
            .expect("join")
            .expect("python3 runs (CI installs the OpenTelemetry SDK; see .ci/run)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "SDK client {script} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `otelraft <args> --config <node's config>` with the node's
/// environment (the archive tools, restore); returns (success,
/// stdout+stderr).
pub fn node_cli(node: &TestNode, args: &[&str]) -> (bool, String) {
    node_cli_with(node, args, &[])
}

/// [`node_cli`] with `extra` overrides on top of the node's environment.
pub fn node_cli_with(node: &TestNode, args: &[&str], extra: &[(String, String)]) -> (bool, String) {
    run_cli(
        Command::new(binary())
            .args(args)
            .arg("--config")
            .arg(&node.config_path)
            .envs(node.env.iter().cloned())
            .envs(extra.iter().cloned()),
    )
}

/// The ingest token of clusters started with `Options::auth`.
pub const TEST_INGEST_TOKEN: &str = "test-ingest-token-0123456789";
/// The admin token of clusters started with `Options::auth`.
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The `[tls]` section with the certificate `<name>.pem` from
/// `dir` (as `otelraft certs` names them) and `dir/ca.pem`.
pub fn tls_section(dir: &std::path::Path, name: &str) -> String {
    format!(
        "[tls]\nenabled = true\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n",
        dir.join(format!("{name}.pem")).display().to_string(),
        dir.join(format!("{name}-key.pem")).display().to_string(),
        dir.join("ca.pem").display().to_string(),
    )
}

/// Runs `cmd`; returns (success, stdout+stderr).
pub fn run_cli(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run otelraft CLI");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs `tests/sdk/send.py` against `node`: `count` log records over the
/// SDK's gRPC exporter and `count` over its HTTP exporter, with bodies
/// `<prefix>-grpc-<n>` and `<prefix>-http-<n>`. Returns its JSON report.
pub async fn send_logs_with_sdk(node: &TestNode, prefix: &str, count: usize) -> String {
    let mut args = vec![
        "--grpc".to_string(),
        node.grpc.clone(),
        "--http".to_string(),
        node.http_url(),
        "--prefix".to_string(),
        prefix.to_string(),
        "--count".to_string(),
        count.to_string(),
    ];
    if let Some(ca) = &node.ca {
        args.push("--ca".to_string());
        args.push(ca.display().to_string());
    }
    if let Some(token) = &node.ingest_token {
        args.push("--token".to_string());
        args.push(token.clone());
    }
    run_sdk_script("send.py", args).await
}

/// Runs the admin CLI against `node`; returns (success, stdout+stderr).
pub fn admin_cli(node: &TestNode, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(binary());
    cmd.arg("admin").arg("--endpoint").arg(node.admin_url());
    if let Some(ca) = &node.ca {
        cmd.arg("--ca").arg(ca);
    }
    if let Some(token) = &node.admin_token {
        cmd.env("OTELRAFT_ADMIN_TOKEN", token);
    }
    run_cli(cmd.args(args))
}
