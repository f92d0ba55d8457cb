//! Acceptance tests of the replicated ingestion core, on real processes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use testkit::cluster::{admin_cli, post_logs, wait_until, Options, TestCluster};

fn ids(prefix: &str, from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| format!("{prefix}-{i:06}"))
        .collect()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_elects_a_leader_and_every_node_reports_the_same_membership() {
    let cluster = TestCluster::start(Options {
        nodes: 3,
        ..Default::default()
    })
    .await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let mut memberships = Vec::new();
    for n in &cluster.nodes {
        let (ok, out) = admin_cli(n, &["status", "--json"]);
        assert!(ok, "admin status failed on node {}: {out}", n.id);
        let s: serde_json::Value = serde_json::from_str(&out).expect("status --json is JSON");
        assert_eq!(s["leader_id"].as_u64(), Some(leader));
        for field in [
            "node_id",
            "role",
            "term",
            "commit_index",
            "applied_index",
            "members",
            "sinks",
            "dead_letters",
        ] {
            assert!(s.get(field).is_some(), "status lacks `{field}`: {s}");
        }
        let members: BTreeSet<(u64, String, String)> = s["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| {
                (
                    m["id"].as_u64().unwrap_or(0),
                    m["role"].to_string(),
                    m["peer_addr"].to_string(),
                )
            })
            .collect();
        memberships.push(members);
    }
    assert_eq!(
        memberships[0].len(),
        3,
        "three members: {:?}",
        memberships[0]
    );
    let quorum = wait_until(Duration::from_secs(30), || async {
        let q = cluster.nodes[(leader - 1) as usize].status().await?["quorum"].clone();
        (q["voters_reachable"] == 3).then_some(q)
    })
    .await
    .expect("the leader hears from all three voters");
    assert_eq!(quorum["voters"], 3, "{quorum}");
    assert_eq!(quorum["quorum"], 2, "{quorum}");
    assert_eq!(quorum["failures_tolerated_by_design"], 1, "{quorum}");
    assert_eq!(quorum["failures_tolerated_now"], 1, "{quorum}");
    assert!(
        memberships.iter().all(|m| m == &memberships[0]),
        "membership differs: {memberships:?}"
    );
    let roles: Vec<String> = {
        let mut r = Vec::new();
        for n in &cluster.nodes {
            r.push(
                n.status().await.expect("status")["role"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        }
        r
    };
    assert_eq!(
        roles.iter().filter(|r| *r == "leader").count(),
        1,
        "exactly one leader: {roles:?}"
    );

    // Health and metrics are served on the admin port.
    let client = http();
    for n in &cluster.nodes {
        let live = client
            .get(format!("{}/health/live", n.admin_url()))
            .send()
            .await
            .expect("live");
        assert_eq!(live.status(), 200);
        let ready = wait_until(Duration::from_secs(10), || async {
            let r = client
                .get(format!("{}/health/ready", n.admin_url()))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
        assert!(ready.is_some(), "node {} never ready", n.id);
        let metrics = client
            .get(format!("{}/metrics", n.admin_url()))
            .send()
            .await
            .expect("metrics");
        let text = metrics.text().await.expect("metrics text");
        for name in [
            "otelraft_raft_term",
            "otelraft_raft_commit_index",
            "otelraft_storage_fsync_seconds_bucket",
            "otelraft_log_entries",
        ] {
            assert!(text.contains(name), "node {} /metrics lacks {name}", n.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acked_records_survive_a_leader_kill_and_reach_every_node() {
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        ..Default::default()
    })
    .await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = http();
    let mut acked: Vec<String> = Vec::new();
    let mut batch = 0;

    // Phase 1: steady traffic to every node, including the leader.
    for round in 0..30 {
        let target = (round % 3) + 1;
        let bodies = ids("pre", batch * 20, 20);
        batch += 1;
        if post_logs(&client, &cluster.nodes[(target - 1) as usize], &bodies).await == Some(200) {
            acked.extend(bodies);
        }
    }
    assert!(
        acked.len() >= 500,
        "most pre-kill requests ack: {}",
        acked.len()
    );

    // Phase 2: SIGKILL the leader; keep sending to a survivor until acks resume.
    cluster.node(leader).kill();
    let killed_at = Instant::now();
    let survivor = cluster
        .nodes
        .iter()
        .find(|n| n.is_running())
        .map(|n| n.id)
        .expect("survivor");
    let mut first_ack_after_kill = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut post_kill_acks = 0;
    while Instant::now() < deadline && post_kill_acks < 30 {
        let bodies = ids("post", batch * 20, 20);
        batch += 1;
        match post_logs(&client, &cluster.nodes[(survivor - 1) as usize], &bodies).await {
            Some(200) => {
                first_ack_after_kill.get_or_insert_with(|| killed_at.elapsed());
                acked.extend(bodies);
                post_kill_acks += 1;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let recovery = first_ack_after_kill
        .unwrap_or_else(|| panic!("no ack after leader kill\n{}", cluster.logs()));
    println!(
        "FIGURE time from leader SIGKILL to first ack on a survivor: {} ms",
        recovery.as_millis()
    );

    // With one voter down the new leader reports no margin left.
    let margin = wait_until(Duration::from_secs(30), || async {
        let l = cluster.wait_for_leader(Duration::from_secs(30)).await;
        let q = cluster.nodes[(l - 1) as usize].status().await?["quorum"].clone();
        (q["voters_reachable"] == 2 && q["failures_tolerated_now"] == 0).then_some(q)
    })
    .await;
    assert!(margin.is_some(), "quorum status after a kill");

    // Phase 3: restart the killed node, let it catch up, then compare logs.
    cluster.node(leader).start();
    let expected = acked.len() as u64;
    cluster
        .wait_for_records("logs", expected, Duration::from_secs(60))
        .await;
    cluster.stop_all();
    let acked_set: BTreeSet<&String> = acked.iter().collect();
    for n in &cluster.nodes {
        let bodies = n.log_bodies();
        let present: BTreeSet<&String> = bodies.iter().collect();
        let missing: Vec<&&String> = acked_set.difference(&present).take(5).collect();
        assert!(
            missing.is_empty(),
            "node {} lacks acked records, e.g. {missing:?}",
            n.id
        );
        let dupes = bodies.len() - present.len();
        assert_eq!(
            dupes, 0,
            "node {} holds duplicated records (no client retries were made)",
            n.id
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_cluster_restart_keeps_data_and_membership() {
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        ..Default::default()
    })
    .await;
    let client = http();
    let follower = cluster.a_follower().await;
    let bodies = ids("restart", 0, 200);
    for chunk in bodies.chunks(50) {
        assert_eq!(
            post_logs(&client, &cluster.nodes[(follower - 1) as usize], chunk).await,
            Some(200)
        );
    }
    cluster
        .wait_for_records("logs", 200, Duration::from_secs(30))
        .await;
    let before = cluster.nodes[0].status().await.expect("status");
    cluster.stop_all();
    for n in cluster.nodes.iter_mut() {
        n.start();
    }
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster
        .wait_for_records("logs", 200, Duration::from_secs(30))
        .await;
    let after = cluster.nodes[0].status().await.expect("status");
    assert_eq!(
        before["members"], after["members"],
        "membership changed across restart"
    );
    assert_eq!(after["signals"]["logs"]["records"].as_u64(), Some(200));
    // Still writable.
    let more = ids("restart-after", 0, 10);
    let target = cluster.a_follower().await;
    assert_eq!(
        post_logs(&client, &cluster.nodes[(target - 1) as usize], &more).await,
        Some(200)
    );
    cluster
        .wait_for_records("logs", 210, Duration::from_secs(30))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_learner_that_joins_after_purge_catches_up_from_a_snapshot() {
    let mut cluster = TestCluster::start(Options {
        nodes: 4,
        voters: Some(3),
        env: vec![("OTELRAFT_RAFT__LOG_KEEP_ENTRIES".into(), "0".into())],
        ..Default::default()
    })
    .await;
    let client = http();
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    for i in 0..20 {
        let bodies = ids("snap", i * 25, 25);
        assert_eq!(
            post_logs(&client, &cluster.nodes[(leader - 1) as usize], &bodies).await,
            Some(200)
        );
    }
    cluster
        .wait_for_records("logs", 500, Duration::from_secs(30))
        .await;
    let (ok, out) = admin_cli(&cluster.nodes[(leader - 1) as usize], &["snapshot"]);
    assert!(ok, "snapshot failed: {out}");
    let leader_node = &cluster.nodes[(leader - 1) as usize];
    let purged = wait_until(Duration::from_secs(20), || async {
        let s = leader_node.status().await?;
        s["purged_index"].as_u64().filter(|p| *p > 1)
    })
    .await;
    assert!(
        purged.is_some(),
        "leader never purged its log after the snapshot"
    );

    cluster.node(4).start();
    let n4 = &cluster.nodes[3];
    n4.wait_live(Duration::from_secs(30)).await;
    let (ok, out) = admin_cli(
        &cluster.nodes[0],
        &[
            "add-learner",
            "--id",
            "4",
            "--peer-addr",
            &n4.peer.clone(),
            "--admin-addr",
            &n4.admin.clone(),
        ],
    );
    assert!(ok, "add-learner failed: {out}\n{}", cluster.logs());
    let n4 = &cluster.nodes[3];
    let caught_up = wait_until(Duration::from_secs(30), || async {
        let s = n4.status().await?;
        (s["signals"]["logs"]["records"].as_u64() == Some(500)
            && s["snapshot_index"].as_u64().is_some())
        .then_some(s)
    })
    .await;
    let s = caught_up.unwrap_or_else(|| {
        panic!(
            "learner did not catch up from a snapshot\n{}",
            cluster.logs()
        )
    });
    assert_eq!(s["role"], "learner");
    // Promote it, and it takes part in commits.
    let (ok, out) = admin_cli(&cluster.nodes[0], &["promote", "--id", "4"]);
    assert!(ok, "promote failed: {out}");
    let more = ids("snap-after", 0, 10);
    assert_eq!(
        post_logs(&client, &cluster.nodes[3], &more).await,
        Some(200)
    );
    cluster
        .wait_for_records("logs", 510, Duration::from_secs(30))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_refusals_name_the_problem() {
    let cluster = TestCluster::start(Options {
        nodes: 3,
        ..Default::default()
    })
    .await;
    let n = &cluster.nodes[0];
    let (ok, out) = admin_cli(n, &["promote", "--id", "42"]);
    assert!(!ok && out.contains("unknown node id 42"), "{out}");
    let (ok, out) = admin_cli(n, &["init"]);
    assert!(!ok && out.contains("already initialised"), "{out}");
    let (ok, out) = admin_cli(n, &["transfer-leader", "--to", "9"]);
    assert!(!ok && out.contains("unknown node id 9"), "{out}");
}

/// A follower that was paused while the log grew far past one message
/// catches up in messages of `peer.max_append_bytes`: before the budget, the
/// leader offered every missing entry in one AppendEntries over the
/// message cap, and the follower never caught up.
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_far_behind_catches_up_in_messages_within_the_append_budget() {
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        env: vec![
            (
                "OTELRAFT_INGEST__MAX_REQUEST_BYTES".into(),
                (1 << 20).to_string(),
            ),
            (
                "OTELRAFT_PEER__MAX_APPEND_BYTES".into(),
                (1 << 20).to_string(),
            ),
            (
                "OTELRAFT_PEER__MAX_MESSAGE_BYTES".into(),
                (2 << 20).to_string(),
            ),
        ],
        ..Default::default()
    })
    .await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let follower = cluster.a_follower().await;
    cluster.node(follower).pause();
    let client = http();
    // 30 entries of about 500 kB: 15 MB of log the follower lacks, over
    // seven times the 2 MiB message cap.
    for batch in 0..30 {
        let bodies: Vec<String> = (0..10)
            .map(|i| format!("{batch:02}-{i:02}-{}", "x".repeat(50_000)))
            .collect();
        let node = &cluster.nodes[(leader - 1) as usize];
        assert_eq!(post_logs(&client, node, &bodies).await, Some(200));
    }
    let want = cluster.nodes[(leader - 1) as usize]
        .status()
        .await
        .and_then(|s| s["applied_index"].as_u64())
        .expect("leader status");
    cluster.node(follower).resume();
    let node = &cluster.nodes[(follower - 1) as usize];
    let caught_up = wait_until(Duration::from_secs(60), || async {
        node.status()
            .await
            .and_then(|s| s["applied_index"].as_u64())
            .filter(|applied| *applied >= want)
    })
    .await;
    assert!(
        caught_up.is_some(),
        "follower {follower} did not reach index {want}:\n{}",
        node.log_tail()
    );
}
