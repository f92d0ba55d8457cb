//! `otelraft local-cluster` as a newcomer runs it: one archive that every
//! node writes, whichever leads; a failover that leaves it whole; a loud,
//! quick exit when a node cannot start; a fast stop on Ctrl-C.
//!
//! The cluster binds the standard ports on 127.0.0.1-3, so these tests
//! take turns.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value;
use testkit::cluster::{binary, logs_request, run_cli, wait_until};

/// One local cluster at a time: they share fixed addresses.
static PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `otelraft local-cluster` in a process group of its own, so the test
/// can send Ctrl-C to the group as a terminal would.
struct LocalCluster {
    child: Child,
    dir: PathBuf,
    out: PathBuf,
}

impl LocalCluster {
    fn start(dir: &Path, env: &[(&str, &str)]) -> LocalCluster {
        let out = dir.join("local-cluster.out");
        let file = std::fs::File::create(&out).expect("output file");
        let child = Command::new(binary())
            .arg("local-cluster")
            .arg("--dir")
            .arg(dir.join("cluster"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .process_group(0)
            .spawn()
            .expect("start local-cluster");
        LocalCluster {
            child,
            dir: dir.join("cluster"),
            out,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn config(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}.toml"))
    }

    /// Ctrl-C at the terminal: SIGINT to the whole process group.
    fn interrupt(&self) {
        // SAFETY: kill(2) on the process group of a child we spawned.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGINT);
        }
    }

    /// Waits up to `timeout` for local-cluster to exit.
    async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait_until(timeout, || {
            let status = self.child.try_wait().ok().flatten();
            async move { status }
        })
        .await
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: as in `interrupt`; SIGKILL the group we made.
            unsafe {
                libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = self.child.wait();
        }
        // The nodes have process groups of their own.
        for pid in node_pids(&self.dir).into_values() {
            // SAFETY: a node process this test's cluster started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// The pids of the running `otelraft serve` processes of the cluster in
/// `dir`, by node id (read from /proc).
fn node_pids(dir: &Path) -> HashMap<u64, libc::pid_t> {
    let mut pids = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        if args.get(1).map(String::as_str) != Some("serve") {
            continue;
        }
        for id in 1..=3u64 {
            let config = dir.join(format!("node{id}.toml")).display().to_string();
            if args.contains(&config) {
                pids.insert(id, pid);
            }
        }
    }
    pids
}

fn admin(id: u64) -> String {
    format!("http://127.0.0.{id}:4480")
}

async fn status(http: &reqwest::Client, id: u64) -> Option<Value> {
    http.get(format!("{}/admin/v1/status", admin(id)))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// The leader every node in `ids` agrees on.
async fn agreed_leader(http: &reqwest::Client, ids: &[u64]) -> Option<u64> {
    let mut leader = None;
    for id in ids {
        let l = status(http, *id).await?["leader_id"].as_u64()?;
        if leader.is_some_and(|x| x != l) {
            return None;
        }
        leader = Some(l);
    }
    leader
}

/// Sends `rounds` requests of 5 records each to node `to`; returns the
/// bodies of the acknowledged ones and how many requests failed.
async fn send(http: &reqwest::Client, to: u64, tag: &str, rounds: usize) -> (Vec<String>, usize) {
    let mut acked = Vec::new();
    let mut failed = 0;
    for r in 0..rounds {
        let bodies: Vec<String> = (0..5).map(|i| format!("{tag}-{r}-{i}")).collect();
        let sent = http
            .post(format!("http://127.0.0.{to}:4318/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .body(logs_request(&bodies).encode_to_vec())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => acked.extend(bodies),
            _ => failed += 1,
        }
    }
    (acked, failed)
}

#[tokio::test]
async fn every_node_sees_one_whole_archive_after_the_leader_is_killed_and_ctrl_c_stops_fast() {
    let _turn = PORTS.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Small blocks so the archive catches up in seconds.
    let mut cluster =
        LocalCluster::start(dir.path(), &[("OTELRAFT_ARCHIVE__BLOCK_MAX_AGE_MS", "500")]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    let first = wait_until(Duration::from_secs(60), || agreed_leader(&http, &[1, 2, 3])).await;
    let Some(first) = first else {
        panic!("no leader\n{}", cluster.output());
    };
    assert!(cluster.output().contains("archive (shared by every node)"));

    let follower = (1..=3).find(|id| *id != first).expect("a follower");
    let (mut acked, failed) = send(&http, follower, "before", 40).await;
    assert_eq!(failed, 0, "a healthy cluster acknowledges every request");
    // Let the first leader archive some of it, so both leaders write blocks.
    wait_until(Duration::from_secs(30), || async {
        (status(&http, first).await?["archive"]["blocks"].as_u64()? > 0).then_some(())
    })
    .await
    .expect("the first leader archives");

    let pids = node_pids(&cluster.dir);
    let leader_pid = *pids.get(&first).expect("the leader's process");
    // SAFETY: a node process this test's cluster started.
    unsafe {
        libc::kill(leader_pid, libc::SIGKILL);
    }
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != first).collect();
    let second = wait_until(Duration::from_secs(30), || async {
        agreed_leader(&http, &survivors)
            .await
            .filter(|l| *l != first)
    })
    .await
    .expect("a new leader");
    let (more, _) = send(&http, survivors[0], "after", 40).await;
    assert!(!more.is_empty(), "the survivors acknowledge writes");
    acked.extend(more);
    assert!(
        cluster.child.try_wait().ok().flatten().is_none(),
        "local-cluster keeps running when a node is killed\n{}",
        cluster.output()
    );
    assert!(
        cluster.output().contains(&format!("node {first} ended")),
        "{}",
        cluster.output()
    );

    // The new leader archives everything committed.
    wait_until(Duration::from_secs(60), || async {
        let a = &status(&http, second).await?["archive"];
        (a["lag_entries"] == 0 && a["pending"].is_null()).then_some(())
    })
    .await
    .expect("the archive catches up");

    // `archive verify` from every node's configuration sees one archive,
    // whole from index 0 to the cluster's head.
    let mut summaries = Vec::new();
    for id in 1..=3 {
        let (ok, out) = run_cli(
            Command::new(binary())
                .args(["archive", "verify", "--config"])
                .arg(cluster.config(id)),
        );
        assert!(ok, "verify from node {id}'s config:\n{out}");
        assert!(
            out.contains("origin   the cluster's archive began at index 0"),
            "{out}"
        );
        assert!(
            out.contains("head     the cluster recorded blocks through"),
            "{out}"
        );
        // A node that is down is not asked; a live one gives the cursor.
        if id != first {
            assert!(
                out.contains("cluster  the cluster's archive cursor is"),
                "{out}"
            );
        } else {
            assert!(out.contains("cluster  not asked"), "{out}");
        }
        assert!(out.trim_end().ends_with("OK"), "{out}");
        let summary = out
            .lines()
            .find(|l| l.contains(" blocks, "))
            .expect("summary line")
            .to_string();
        summaries.push(summary);
    }
    assert!(
        summaries.windows(2).all(|w| w[0] == w[1]),
        "every node sees the same archive: {summaries:?}"
    );
    println!("archive verify after the failover: {}", summaries[0]);

    // Every acknowledged record is in it once.
    let (ok, dump) = run_cli(
        Command::new(binary())
            .args(["archive", "cat", "--all", "--config"])
            .arg(cluster.config(second)),
    );
    assert!(ok, "{dump}");
    for body in &acked {
        let quoted = format!("\"{body}\"");
        assert_eq!(
            dump.matches(&quoted).count(),
            1,
            "{body} is in the archive once"
        );
    }

    // Ctrl-C stops the rest, each with a clean database close.
    let started = Instant::now();
    cluster.interrupt();
    let exit = cluster.wait_exit(Duration::from_secs(20)).await;
    let took = started.elapsed();
    let exit = exit.unwrap_or_else(|| panic!("local-cluster still running\n{}", cluster.output()));
    println!("Ctrl-C stopped the cluster in {took:?}");
    assert!(exit.success(), "{}", cluster.output());
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    assert!(
        node_pids(&cluster.dir).is_empty(),
        "no node is left running"
    );
    for id in survivors {
        let log =
            std::fs::read_to_string(cluster.dir.join(format!("node{id}.log"))).unwrap_or_default();
        assert!(log.contains("storage closed cleanly"), "node {id}:\n{log}");
    }
}

#[tokio::test]
async fn a_taken_port_makes_local_cluster_exit_naming_the_node_and_the_port() {
    let _turn = PORTS.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let holder = std::net::TcpListener::bind("127.0.0.2:4400").expect("hold node 2's peer port");
    let mut cluster = LocalCluster::start(dir.path(), &[]);
    let exit = cluster
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("local-cluster did not exit\n{}", cluster.output()));
    drop(holder);
    let out = cluster.output();
    assert!(!exit.success(), "{out}");
    assert!(
        out.contains("node 2's peer address 127.0.0.2:4400 is taken"),
        "{out}"
    );
    assert!(node_pids(&cluster.dir).is_empty(), "no node was started");
}

#[tokio::test]
async fn a_node_that_fails_to_start_stops_the_cluster_with_its_last_log_lines() {
    let _turn = PORTS.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Every node refuses this at start-up, naming the field.
    let mut cluster = LocalCluster::start(
        dir.path(),
        &[("OTELRAFT_RAFT__HEARTBEAT_INTERVAL_MS", "not-a-number")],
    );
    let exit = cluster
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("local-cluster did not exit\n{}", cluster.output()));
    let out = cluster.output();
    assert!(!exit.success(), "{out}");
    assert!(out.contains("exited (exit status: 1)"), "{out}");
    assert!(
        out.contains("heartbeat_interval_ms"),
        "the node's own error is shown: {out}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || async {
            node_pids(&cluster.dir).is_empty().then_some(())
        })
        .await
        .is_some(),
        "no node is left running"
    );
}
