//! One run, in order: network, sinks, proxies, cluster; load and nemesis;
//! final heal; drain; stop; check; report.
//!
//! Ordering that the verdict relies on:
//! 1. the final heal happens before the load stops, so recovery is measured;
//! 2. the load has stopped (every client answered or timed out) before the
//!    drain starts, so nothing new is committed while the harness waits for
//!    export and archive to reach the end of the log;
//! 3. the sinks are read only after the drain, and the logs only after the
//!    nodes stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::checker::{self, Holdings, Verdict};
use crate::history::{Clock, History, Op, Sample, Signal, SinkLag};
use crate::nemesis::{self, FaultKind};
use crate::nodes::{NodeSettings, PEER_PROXY_PORT};
use crate::proxy::Delay;
use crate::sinks::{sink_addr, PromRecorder};
use crate::topology::{ip, slot_host, NsRuntime, Topology, SINKS};
use crate::workload::{Targets, Workload};
use crate::world::{leader_of, World, LOKI_PORT, PROM_PORT, S3_PORT};

/// `jepsen-like run` options.
#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// Seconds of load with faults (the final heal comes after them).
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// Fault mix: all, smoke, or a family (partition, kill, pause, loss,
    /// bandwidth, latency, sink, membership), comma-separated.
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Seed of the fault schedule and the clients.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 12)]
    clients: u32,
    /// `three` (3 data voters) or `witness` (2 data voters + a witness).
    #[arg(long, default_value = "three")]
    topology: String,
    /// The otelraft binary (default: next to this one).
    #[arg(long)]
    otelraft: Option<PathBuf>,
    /// Output directory (default: target/jepsen-like/<nemesis>-seed<N>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Exit 0 only if the checker finds the run INVALID: the checker's own
    /// test, against a build that acknowledges before commit.
    #[arg(long)]
    expect_invalid: bool,
    /// Seconds to wait for export and archive to drain after the load.
    #[arg(long, default_value_t = 180)]
    drain_timeout: u64,
}

/// Seconds the load runs on after the final heal, to measure recovery.
const TAIL_SECS: u64 = 6;
/// The file that marks a directory as a run's own (safe to replace).
const RUN_MARKER: &str = ".jepsen-like-run";
/// Quiet seconds before the first fault.
const WARMUP_MS: u64 = 3_000;

/// Runs and reports; the exit code says whether the verdict was the
/// expected one.
pub async fn main(args: RunArgs) -> ExitCode {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("jepsen-like: must run as root (network namespaces, iptables, tc)");
        return ExitCode::FAILURE;
    }
    let _lock = match single_instance() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("jepsen-like: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = tokio::select! {
        r = run(args.clone()) => r,
        _ = interrupted() => Err("interrupted; everything the run created was removed".to_string()),
    };
    // Whatever happened, nothing of the run outlives it.
    crate::topology::cleanup_leftovers();
    match outcome {
        Ok(v) if !args.expect_invalid && v.valid => ExitCode::SUCCESS,
        // The self-test must catch lost acks specifically, after a clean
        // drain: any other invalidity would prove nothing about the checker.
        Ok(v) if args.expect_invalid && v.drained && v.lost > 0 => ExitCode::SUCCESS,
        Ok(v) => {
            eprintln!(
                "jepsen-like: the run was {} (lost {}, drained {}) but --expect-invalid was {}",
                if v.valid { "valid" } else { "INVALID" },
                v.lost,
                v.drained,
                args.expect_invalid
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("jepsen-like: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Holds an exclusive lock for the run: a second run would delete the
/// first one's namespaces.
fn single_instance() -> Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    let path = "/run/jepsen-like.lock";
    let f = std::fs::File::create(path).map_err(|e| format!("create {path}: {e}"))?;
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!("another jepsen-like run holds {path}"));
    }
    Ok(f)
}

async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A helper process (Prometheus, s3s-fs) killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_in(ns: &str, program: &Path, args: &[String], log: &Path) -> Result<Daemon, String> {
    let file = std::fs::File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map(Daemon)
        .map_err(|e| format!("start {}: {e}", program.display()))
}

fn find_program(name: &str, env: &str) -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var(env) {
        return Ok(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("`{name}` not found on PATH (set {env}); .ci/run installs it"))
}

/// Everything the sinks namespace runs.
struct Sinks {
    prom: PromRecorder,
    loki: crate::loki::LokiReceiver,
    _daemons: Vec<Daemon>,
    s3_env: Vec<(String, String)>,
}

async fn start_sinks(rt: &NsRuntime, dir: &Path) -> Result<Sinks, String> {
    let prometheus = find_program("prometheus", "JEPSEN_PROMETHEUS")?;
    let s3s = find_program("s3s-fs", "OTELRAFT_TEST_S3S_FS")?;
    let prom_dir = dir.join("prometheus");
    let s3_dir = dir.join("s3");
    let bucket = "otelraft";
    std::fs::create_dir_all(s3_dir.join(bucket)).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&prom_dir).map_err(|e| e.to_string())?;
    let prom_cfg = prom_dir.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        "global:\n  scrape_interval: 1h\nscrape_configs: []\n",
    )
    .map_err(|e| e.to_string())?;
    let mut daemons = vec![spawn_in(
        SINKS.0,
        &prometheus,
        &[
            format!("--config.file={}", prom_cfg.display()),
            format!("--storage.tsdb.path={}", prom_dir.join("tsdb").display()),
            "--web.listen-address=127.0.0.1:9090".to_string(),
            "--web.enable-remote-write-receiver".to_string(),
        ],
        &dir.join("prometheus.log"),
    )?];
    // Credentials are made up per run; they are never a default in code.
    let access = format!("jl{}", rand::random::<u64>());
    let secret = format!("{:032x}", rand::random::<u128>());
    daemons.push(spawn_in(
        SINKS.0,
        &s3s,
        &[
            "--host".into(),
            ip(SINKS.1).to_string(),
            "--port".into(),
            S3_PORT.to_string(),
            "--access-key".into(),
            access.clone(),
            "--secret-key".into(),
            secret.clone(),
            s3_dir.display().to_string(),
        ],
        &dir.join("s3s-fs.log"),
    )?);
    let prom_listener = bind_in(rt, sink_addr(PROM_PORT)).await?;
    let prom = rt
        .handle()
        .spawn(PromRecorder::start(
            prom_listener,
            "http://127.0.0.1:9090".to_string(),
        ))
        .await
        .map_err(|e| e.to_string())?;
    let loki_addr = sink_addr(LOKI_PORT).to_string();
    let loki = rt
        .handle()
        .spawn(async move { crate::loki::LokiReceiver::start_on(&loki_addr).await })
        .await
        .map_err(|e| e.to_string())?;
    let http = reqwest::Client::new();
    let ready = format!("http://{}/-/ready", sink_addr(PROM_PORT));
    wait_for(
        "Prometheus to be ready",
        Duration::from_secs(60),
        || async {
            http.get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await?;
    let s3 = sink_addr(S3_PORT);
    wait_for("s3s-fs to listen", Duration::from_secs(60), || async {
        tokio::net::TcpStream::connect(s3).await.is_ok()
    })
    .await?;
    let s3_env = [
        ("OTELRAFT_ARCHIVE__S3__ACCESS_KEY_ID", access),
        ("OTELRAFT_ARCHIVE__S3__SECRET_ACCESS_KEY", secret),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec();
    Ok(Sinks {
        prom,
        loki,
        _daemons: daemons,
        s3_env,
    })
}

async fn bind_in(
    rt: &NsRuntime,
    addr: std::net::SocketAddr,
) -> Result<tokio::net::TcpListener, String> {
    rt.handle()
        .spawn(async move { tokio::net::TcpListener::bind(addr).await })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("bind {addr}: {e}"))
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("timed out after {timeout:?} waiting for {what}"))
}

/// The TOML every node shares: the two sinks and the archive.
fn shared_toml() -> String {
    let s = ip(SINKS.1);
    format!(
        "[sinks.prom]\nkind = \"prometheus_remote_write\"\nendpoint = \"http://{s}:{PROM_PORT}/api/v1/write\"\n\
         timeout_ms = 3000\nretry_max_ms = 1000\n\n\
         [sinks.loki]\nkind = \"loki\"\nendpoint = \"http://{s}:{LOKI_PORT}/loki/api/v1/push\"\n\
         timeout_ms = 3000\nretry_max_ms = 1000\n\n\
         [archive]\nblock_max_bytes = 262144\nblock_max_age_ms = 2000\nrequest_timeout_ms = 3000\n\
         retry_max_ms = 1000\n\n\
         [archive.s3]\nendpoint = \"http://{s}:{S3_PORT}\"\nbucket = \"otelraft\"\nregion = \"us-east-1\"\nallow_http = true\n"
    )
}

/// The verdict `main` turns into an exit code.
struct Verdicts {
    valid: bool,
    drained: bool,
    lost: u64,
}

async fn run(args: RunArgs) -> Result<Verdicts, String> {
    let kinds = parse_nemesis(&args.nemesis)?;
    let witness = match args.topology.as_str() {
        "three" => false,
        "witness" => true,
        other => {
            return Err(format!(
                "--topology: `{other}` is neither `three` nor `witness`"
            ))
        }
    };
    let otelraft = match &args.otelraft {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("otelraft"),
    };
    if !otelraft.is_file() {
        return Err(format!(
            "otelraft binary {} not found (build it, or pass --otelraft)",
            otelraft.display()
        ));
    }
    let out = args.out.clone().unwrap_or_else(|| {
        crate::default_out_root().join(format!(
            "{}-{}-seed{}{}",
            args.topology,
            args.nemesis.replace(',', "+"),
            args.seed,
            if args.expect_invalid {
                "-expect-invalid"
            } else {
                ""
            }
        ))
    });
    // Processes of a killed run may still write into this directory.
    crate::topology::cleanup_leftovers();
    if out.exists() {
        if !out.join(RUN_MARKER).exists() {
            return Err(format!(
                "{} exists and is not a jepsen-like run directory; not removing it",
                out.display()
            ));
        }
        std::fs::remove_dir_all(&out).map_err(|e| format!("remove {}: {e}", out.display()))?;
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    std::fs::write(out.join(RUN_MARKER), "").map_err(|e| e.to_string())?;
    let out = out.canonicalize().map_err(|e| e.to_string())?;
    tracing::info!(out = %out.display(), seed = args.seed, nemesis = %args.nemesis, time_s = args.time, "run starts");

    // Three members plus one free slot for membership changes.
    let voters = 3;
    let slots = voters + 1;
    let topo = Topology::create(slots).map_err(|e| e.to_string())?;
    let sinks_rt = NsRuntime::start(SINKS.0).map_err(|e| e.to_string())?;
    let clients_rt = NsRuntime::start(crate::topology::CLIENTS.0).map_err(|e| e.to_string())?;
    let mut slot_rts = Vec::new();
    let mut delays = Vec::new();
    for slot in 1..=slots {
        let rt = NsRuntime::start(&crate::topology::slot_ns(slot)).map_err(|e| e.to_string())?;
        let delay = Delay::default();
        let listen = std::net::SocketAddr::from((ip(slot_host(slot)), PEER_PROXY_PORT));
        let listener = bind_in(&rt, listen).await?;
        let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], 4400));
        rt.handle()
            .spawn(crate::proxy::serve(listener, upstream, delay.clone()));
        delays.push(delay);
        slot_rts.push(rt);
    }
    let sinks = start_sinks(&sinks_rt, &out).await?;

    let targets = Targets::default();
    let mut world = World {
        settings: NodeSettings {
            otelraft: otelraft.clone(),
            dir: out.join("nodes"),
            env: sinks.s3_env.clone(),
            extra_toml: shared_toml(),
        },
        slots: (0..slots).map(|_| None).collect(),
        delays,
        targets: targets.clone(),
        next_id: 1,
        http: reqwest::Client::new(),
        crashes: Vec::new(),
    };
    world
        .bootstrap(voters, witness)
        .await
        .map_err(|e| e.to_string())?;
    let world = tokio::sync::Mutex::new(world);

    let clock = Clock::start();
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample(targets.clone(), clock, stop_sampling.clone()));
    let (ops_tx, mut ops_rx) = mpsc::unbounded_channel::<Op>();
    let load = Workload {
        targets: targets.clone(),
        clock,
        next_op: Arc::new(AtomicU64::new(1)),
        stop: Arc::new(AtomicBool::new(false)),
        ops: ops_tx,
    };
    let mut clients = Vec::new();
    for c in 0..args.clients {
        clients.push(clients_rt.handle().spawn(crate::workload::client(
            load.clone(),
            c,
            args.seed,
        )));
    }

    let time_ms = args.time * 1000;
    let plan = nemesis::schedule(args.seed, &kinds, time_ms, WARMUP_MS);
    let mut faults = nemesis::run(&plan, &world, &topo, clock).await;
    let remaining = time_ms as f64 - clock.now_ms();
    if remaining > 0.0 {
        tokio::time::sleep(Duration::from_millis(remaining as u64)).await;
    }
    world.lock().await.heal_everything(&topo)?;
    let healed_ms = clock.now_ms();
    for f in &mut faults {
        f.end_ms.get_or_insert(healed_ms);
    }
    tracing::info!("final heal; load continues for {TAIL_SECS} s");
    tokio::time::sleep(Duration::from_secs(TAIL_SECS)).await;
    load.stop.store(true, Ordering::SeqCst);
    for c in clients {
        let _ = c.await;
    }
    let load_end_ms = clock.now_ms();
    drop(load);
    let mut ops = Vec::new();
    while let Some(op) = ops_rx.recv().await {
        ops.push(op);
    }
    tracing::info!(
        ops = ops.len(),
        "load stopped; waiting for export and archive to drain"
    );

    let drain_started = clock.now_ms();
    let drained = {
        let w = world.lock().await;
        wait_drained(&w, Duration::from_secs(args.drain_timeout)).await
    };
    let drain_s = (clock.now_ms() - drain_started) / 1000.0;
    stop_sampling.store(true, Ordering::SeqCst);
    let samples = sampler.await.unwrap_or_default();
    let prom = sinks.prom.snapshot();
    let loki_lines = sinks.loki.stored();
    let loki_stats = sinks.loki.stats();

    // The logs are read from stopped nodes.
    let mut w = world.into_inner();
    let final_leader = drained.as_ref().ok().copied();
    // An unreadable observer makes the run invalid; the history is still
    // written.
    let (logs, archive_entries, collect_error) = match collect_logs(&mut w, final_leader).await {
        Ok((l, a)) => (l, a, None),
        Err(e) => (Vec::new(), Vec::new(), Some(e)),
    };
    let mut crashes = std::mem::take(&mut w.crashes);
    for p in w.slots.iter().flatten() {
        if p.log_mentions("panicked") {
            crashes.push(format!("n{} panicked (see its node.log)", p.id));
        }
    }

    let history = History {
        ops,
        faults,
        samples,
        healed_ms,
        load_end_ms,
    };
    let mut verdicts = vec![
        checker::judge(
            "prometheus",
            &history.ops,
            Some(Signal::Metrics),
            &prom_holdings(&prom),
        ),
        checker::judge(
            "loki",
            &history.ops,
            Some(Signal::Logs),
            &loki_holdings(&loki_lines, loki_stats.duplicates_dropped),
        ),
    ];
    let archive_held = checker::holdings_of_entries(archive_entries.iter());
    verdicts.push(checker::judge("archive", &history.ops, None, &archive_held));
    let leader_log = final_leader
        .and_then(|id| logs.iter().find(|(n, _)| *n == id))
        .or_else(|| logs.first())
        .map(|(_, l)| l.as_slice())
        .unwrap_or_default();
    let committed = checker::holdings_of_entries(archive_entries.iter().chain(leader_log.iter()));
    verdicts.push(checker::judge(
        "committed-log",
        &history.ops,
        None,
        &committed,
    ));
    // Every source of entries (the archive, each data member's log) must
    // agree on every index that two of them hold.
    let mut sources: Vec<(String, &[Value])> =
        vec![("archive".to_string(), archive_entries.as_slice())];
    sources.extend(logs.iter().map(|(id, l)| (format!("n{id}"), l.as_slice())));
    let mut divergent = Vec::new();
    for (i, (a_name, a)) in sources.iter().enumerate() {
        for (b_name, b) in sources.iter().skip(i + 1) {
            for index in checker::divergent(a, b) {
                divergent.push(json!({"index": index, "sources": [a_name, b_name]}));
            }
        }
    }
    let lost: u64 = verdicts.iter().map(|v| v.lost).sum();
    let valid = verdicts.iter().all(Verdict::valid)
        && divergent.is_empty()
        && drained.is_ok()
        && crashes.is_empty()
        && collect_error.is_none();
    let summary = crate::stats::summarize(&history);
    let results = json!({
        "valid": valid,
        "seed": args.seed,
        "nemesis": args.nemesis,
        "topology": args.topology,
        "time_s": args.time,
        "clients": args.clients,
        "summary": summary,
        "checks": verdicts,
        "divergent_entries": divergent,
        "crashes": crashes,
        "collect_error": collect_error,
        "drained": drained.as_ref().map(|_| true).unwrap_or(false),
        "drain_error": drained.as_ref().err(),
        "drain_s": drain_s,
        "prometheus_writes": {"accepted": prom.writes_accepted, "refused": prom.writes_refused},
        "loki_receiver": {"requests_ok": loki_stats.requests_ok, "rejected": loki_stats.requests_rejected,
            "rejections": loki_stats.rejections.iter().take(10).map(|(s, r)| format!("{s} {r}")).collect::<Vec<_>>()},
        "faults": history.faults,
        "plan": plan,
    });
    write_report(&out, &history, &results, &args)?;
    print_summary(&results, &out);
    Ok(Verdicts {
        valid,
        drained: drained.is_ok(),
        lost,
    })
}

fn parse_nemesis(spec: &str) -> Result<Vec<FaultKind>, String> {
    let mut kinds = Vec::new();
    for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some(k) = FaultKind::of(name) else {
            return Err(format!(
                "--nemesis: unknown `{name}` (all, smoke, partition, kill, pause, loss, bandwidth, latency, sink, membership)"
            ));
        };
        kinds.extend(k);
    }
    Ok(kinds)
}

/// Samples the leader every 500 ms until told to stop.
async fn sample(targets: Targets, clock: Clock, stop: Arc<AtomicBool>) -> Vec<Sample> {
    let http = reqwest::Client::new();
    let mut samples = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let urls: Vec<(u64, String)> = targets
            .get()
            .into_iter()
            .map(|(id, ip)| (id, format!("http://{ip}:4480")))
            .collect();
        let t_ms = clock.now_ms();
        let mut s = Sample {
            t_ms,
            ..Sample::default()
        };
        if let Some((id, st)) = leader_of(&http, &urls).await {
            s.leader = Some(id);
            s.committed = st["commit_index"].as_u64();
            if let Some(sinks) = st["sinks"].as_object() {
                for (name, v) in sinks {
                    s.sinks.insert(
                        name.clone(),
                        SinkLag {
                            entries: v["lag_entries"].as_u64().unwrap_or(0),
                            seconds: v["lag_seconds"].as_f64(),
                        },
                    );
                }
            }
            s.archive_lag_entries = st["archive"]["lag_entries"].as_u64();
        }
        samples.push(s);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    samples
}

/// Waits until the leader reports every sink and the archive at the end of
/// the log, and every member has applied the leader's commit index.
/// Returns the leader.
async fn wait_drained(w: &World, timeout: Duration) -> Result<u64, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("no leader answered");
    // Two consecutive polls must agree, so a stale leader's answer alone
    // cannot end the wait.
    let mut confirmed: Option<(u64, u64)> = None;
    while tokio::time::Instant::now() < deadline {
        if let Some((id, st)) = w.leader().await {
            let sinks_done = st["sinks"].as_object().is_some_and(|m| {
                m.values()
                    .all(|s| s["lag_entries"] == 0 && s["phase"] == "caught_up")
            });
            let archive_done =
                st["archive"]["lag_entries"] == 0 && st["archive"]["pending"].is_null();
            let commit = st["commit_index"].as_u64().unwrap_or(0);
            let mut behind = Vec::new();
            for (mid, url) in w.admin_urls() {
                let applied = crate::nodes::status(&w.http, &url)
                    .await
                    .and_then(|s| s["applied_index"].as_u64())
                    .unwrap_or(0);
                if applied < commit {
                    behind.push(mid);
                }
            }
            if sinks_done && archive_done && behind.is_empty() {
                if confirmed == Some((id, commit)) {
                    return Ok(id);
                }
                confirmed = Some((id, commit));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            confirmed = None;
            last = format!(
                "leader n{id}: sinks {}, archive {}, members behind {behind:?}",
                st["sinks"], st["archive"]["lag_entries"]
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!("not drained within {timeout:?}: {last}"))
}

/// Stops every node, then reads each data member's log and the archive.
async fn collect_logs(
    w: &mut World,
    leader: Option<u64>,
) -> Result<(Vec<(u64, Vec<Value>)>, Vec<Value>), String> {
    for p in w.slots.iter_mut().flatten() {
        p.stop(Duration::from_secs(10)).await;
    }
    let mut logs = Vec::new();
    for p in w
        .slots
        .iter()
        .flatten()
        .filter(|p| p.role == crate::nodes::Role::Data)
    {
        let mut buf = Vec::new();
        otelraft::cli::inspect::dump(&p.data_dir, &mut buf)
            .map_err(|e| format!("inspect n{}: {e}", p.id))?;
        logs.push((p.id, parse_lines(&buf)?));
    }
    let config = leader
        .and_then(|id| w.node(id))
        .or_else(|| w.slots.iter().flatten().next())
        .map(|p| p.config.clone())
        .ok_or("no member left to read the archive with")?;
    let out = tokio::process::Command::new(&w.settings.otelraft)
        .args(["archive", "cat", "--all", "--config"])
        .arg(&config)
        .envs(w.settings.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .map_err(|_| "archive cat did not finish within 120 s".to_string())?
        .map_err(|e| format!("archive cat: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "archive cat failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok((logs, parse_lines(&out.stdout)?))
}

fn parse_lines(buf: &[u8]) -> Result<Vec<Value>, String> {
    String::from_utf8_lossy(buf)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not a JSON line ({e}): {l}")))
        .collect()
}

fn prom_holdings(prom: &crate::sinks::PromRecord) -> Holdings {
    let mut h = Holdings::default();
    for (id, d) in &prom.by_id {
        h.copies.insert(id.clone(), d.points.len() as u64);
        h.repeats_absorbed += d.deliveries.saturating_sub(d.points.len() as u64);
    }
    h
}

fn loki_holdings(lines: &[crate::loki::StoredLine], dropped: u64) -> Holdings {
    let mut h = Holdings {
        repeats_absorbed: dropped,
        ..Holdings::default()
    };
    for l in lines {
        if let Some(id) = l.line.strip_prefix(crate::workload::BODY_PREFIX) {
            *h.copies.entry(id.to_string()).or_default() += 1;
        }
    }
    h
}

fn write_report(out: &Path, h: &History, results: &Value, args: &RunArgs) -> Result<(), String> {
    let write = |name: &str, body: String| {
        std::fs::write(out.join(name), body).map_err(|e| format!("write {name}: {e}"))
    };
    let lines = |items: Vec<String>| items.join("\n") + "\n";
    write(
        "history.jsonl",
        lines(
            h.ops
                .iter()
                .filter_map(|o| serde_json::to_string(o).ok())
                .collect(),
        ),
    )?;
    write(
        "samples.jsonl",
        lines(
            h.samples
                .iter()
                .filter_map(|s| serde_json::to_string(s).ok())
                .collect(),
        ),
    )?;
    write(
        "results.json",
        serde_json::to_string_pretty(results).map_err(|e| e.to_string())?,
    )?;
    let title = format!(
        "otelraft jepsen-like: {} nemesis, seed {}, {} s, {} ({})",
        args.nemesis,
        args.seed,
        args.time,
        args.topology,
        if results["valid"] == true {
            "valid"
        } else {
            "INVALID"
        }
    );
    write("plot.svg", crate::plot::svg(h, &title))
}

fn print_summary(r: &Value, out: &Path) {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let s = &r["summary"];
    println!(
        "\n{} nemesis={} seed={} topology={}  ops={} ok={} fail={} unknown={}  latency p50={:.0} p99={:.0} max={:.0} ms",
        if r["valid"] == true { "VALID" } else { "INVALID" },
        r["nemesis"].as_str().unwrap_or(""),
        r["seed"],
        r["topology"].as_str().unwrap_or(""),
        s["operations"],
        s["ok"],
        s["fail"],
        s["unknown"],
        s["latency_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
        s["latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
        s["latency_ms"]["max"].as_f64().unwrap_or(f64::NAN),
    );
    println!(
        "{:<14} {:>8} {:>9} {:>5} {:>10} {:>10} {:>12} {:>9} {:>8}",
        "observer",
        "acked",
        "delivered",
        "lost",
        "duplicated",
        "unexpected",
        "failed+deliv",
        "recovered",
        "absorbed"
    );
    for c in r["checks"].as_array().into_iter().flatten() {
        println!(
            "{:<14} {:>8} {:>9} {:>5} {:>10} {:>10} {:>12} {:>9} {:>8}",
            c["observer"].as_str().unwrap_or(""),
            n(&c["acked"]),
            n(&c["delivered"]),
            n(&c["lost"]),
            n(&c["duplicated"]),
            n(&c["unexpected"]),
            n(&c["failed_but_delivered"]),
            n(&c["recovered"]),
            n(&c["repeats_absorbed"]),
        );
    }
    if r["drained"] != true {
        println!("NOT DRAINED: {}", r["drain_error"]);
    }
    if r["crashes"].as_array().is_some_and(|d| !d.is_empty()) {
        println!("CRASHES: {}", r["crashes"]);
    }
    if !r["collect_error"].is_null() {
        println!("LOGS UNREADABLE: {}", r["collect_error"]);
    }
    if r["divergent_entries"]
        .as_array()
        .is_some_and(|d| !d.is_empty())
    {
        println!("DIVERGENT LOG ENTRIES: {}", r["divergent_entries"]);
    }
    println!(
        "report: {}/results.json, plot.svg, history.jsonl",
        out.display()
    );
}
