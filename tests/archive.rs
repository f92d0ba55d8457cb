//! Archive to a real S3-compatible server (s3s-fs, signatures checked):
//! blocks cover the log without gaps or overlaps, a leader kill during
//! uploads leaves each range stored once, an S3 outage holds trimming back
//! (and the disk budget then holds ingest back) until the archive catches
//! up, and bad credentials or a missing bucket show in `/health/ready`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testkit::cluster;

use serde_json::Value;
use testkit::cluster::{
    admin_cli, node_cli, post_logs, wait_until, Options, TestCluster, TestNode,
};
use testkit::s3::S3Server;

/// The `(first, last)` ranges of the block objects under `prefix`, sorted.
fn block_ranges(s3: &S3Server, prefix: &str) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = s3
        .objects()
        .into_iter()
        .filter_map(|(key, _)| {
            let name = key.strip_prefix(&format!("{prefix}/blocks/"))?;
            let (first, last) = name.strip_suffix(".otrb")?.split_once('-')?;
            Some((first.parse().ok()?, last.parse().ok()?))
        })
        .collect();
    ranges.sort();
    ranges
}

/// Asserts the ranges tile `0..=through` exactly: no gap, no overlap.
fn assert_tiles(ranges: &[(u64, u64)], through: u64) {
    assert!(!ranges.is_empty(), "no blocks");
    assert_eq!(ranges[0].0, 0, "the archive starts at index 0: {ranges:?}");
    for pair in ranges.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].1 + 1,
            "blocks must be contiguous without overlap: {ranges:?}"
        );
    }
    assert!(ranges.iter().all(|(f, l)| f <= l), "{ranges:?}");
    assert_eq!(ranges.last().map(|r| r.1), Some(through), "{ranges:?}");
}

/// Runs `otelraft archive <args>` with `node`'s config and environment.
fn archive_cli(node: &TestNode, args: &[&str]) -> (bool, String) {
    let mut all = vec!["archive"];
    all.extend_from_slice(args);
    node_cli(node, &all)
}

async fn leader_status(cluster: &TestCluster) -> Value {
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster.nodes[(leader - 1) as usize]
        .status()
        .await
        .expect("leader status")
}

fn bodies(prefix: &str, from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| format!("{prefix}-{i:06}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_data_lands_in_contiguous_blocks_and_verify_passes() {
    let s3 = S3Server::start().await;
    let cluster = TestCluster::start(Options {
        nodes: 3,
        env: s3.fast_archive_env("continuity"),
        ..Default::default()
    })
    .await;
    let follower = cluster.a_follower().await;
    let node = &cluster.nodes[(follower - 1) as usize];
    cluster::send_logs_with_sdk(node, "arch", 400).await;
    let client = reqwest::Client::new();
    for i in 0..30 {
        let target = &cluster.nodes[i % 3];
        assert_eq!(
            post_logs(&client, target, &bodies("http", i * 40, 40)).await,
            Some(200)
        );
    }
    cluster
        .wait_for_records("logs", 800 + 1200, Duration::from_secs(60))
        .await;

    let archive = cluster.wait_archived(Duration::from_secs(60)).await;
    let through = archive["cursor"].as_u64().expect("cursor");
    let ranges = block_ranges(&s3, "continuity");
    assert!(ranges.len() >= 3, "expected several blocks: {ranges:?}");
    assert_tiles(&ranges, through);
    assert_eq!(archive["blocks"].as_u64(), Some(ranges.len() as u64));

    let (ok, out) = archive_cli(&cluster.nodes[0], &["verify"]);
    assert!(ok, "archive verify failed:\n{out}");
    let (ok, listing) = archive_cli(&cluster.nodes[0], &["ls"]);
    assert!(ok, "archive ls failed:\n{listing}");
    assert_eq!(
        listing.matches(".otrb").count(),
        ranges.len(),
        "ls lists every block:\n{listing}"
    );

    // Every body the SDK and the HTTP client sent is in the archive.
    let (ok, dump) = archive_cli(&cluster.nodes[0], &["cat", "--all"]);
    assert!(ok, "archive cat failed:\n{dump}");
    for body in ["arch-grpc-000399", "arch-http-000000", "http-001199"] {
        assert!(dump.contains(body), "{body} missing from the archive");
    }

    // Behind the archive cursor the log is trimmed (no sink configured).
    let leader_node = {
        let l = cluster.wait_for_leader(Duration::from_secs(30)).await;
        &cluster.nodes[(l - 1) as usize]
    };
    let (ok, out) = admin_cli(leader_node, &["snapshot"]);
    assert!(ok, "snapshot: {out}");
    let trimmed = wait_until(Duration::from_secs(30), || async {
        let s = leader_node.status().await?;
        let first = s["retained_log"]["first_index"].as_u64()?;
        (first > through / 2).then_some(first)
    })
    .await;
    assert!(
        trimmed.is_some(),
        "log not trimmed behind the archive: {}",
        leader_status(&cluster).await["retained_log"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_kill_during_uploads_leaves_each_range_stored_once() {
    let s3 = S3Server::start().await;
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        env: s3.fast_archive_env("failover"),
        ..Default::default()
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    let http_urls: Vec<(u64, String)> =
        cluster.nodes.iter().map(|n| (n.id, n.http_url())).collect();
    for w in 0..3usize {
        let (stop, acked, urls) = (stop.clone(), acked.clone(), http_urls.clone());
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let (_, url) = &urls[(w + i) % urls.len()];
                let body =
                    otelraft::cli::bench::logs_request(&bodies(&format!("w{w}"), i * 20, 20));
                let sent = client
                    .post(format!("{url}/v1/logs"))
                    .header("content-type", "application/x-protobuf")
                    .body(prost::Message::encode_to_vec(&body))
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status().is_success()) {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    for round in 0..2 {
        // Kill the leader while blocks are being sealed and uploaded.
        wait_until(Duration::from_secs(30), || async {
            let s = leader_status(&cluster).await;
            let blocks = s["archive"]["blocks"].as_u64()?;
            (blocks >= 2 * (round + 1)).then_some(())
        })
        .await
        .expect("blocks are being archived");
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
        cluster.node(leader).kill();
        let new_leader = wait_until(Duration::from_secs(30), || async {
            for n in cluster.nodes.iter().filter(|n| n.is_running()) {
                let s = n.status().await?;
                if s["role"] == "leader" {
                    return s["node_id"].as_u64();
                }
            }
            None
        })
        .await;
        assert!(new_leader.is_some(), "no new leader after the kill");
        cluster.node(leader).start();
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    assert!(acked.load(Ordering::SeqCst) > 20, "too few acked requests");

    let archive = cluster.wait_archived(Duration::from_secs(90)).await;
    let through = archive["cursor"].as_u64().expect("cursor");
    let ranges = block_ranges(&s3, "failover");
    assert_tiles(&ranges, through);
    assert_eq!(
        archive["blocks"].as_u64(),
        Some(ranges.len() as u64),
        "one record per stored block"
    );
    let (ok, out) = archive_cli(&cluster.nodes[0], &["verify"]);
    assert!(ok, "archive verify failed:\n{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_outage_holds_trimming_then_ingest_until_the_archive_catches_up() {
    let mut s3 = S3Server::start().await;
    let mut env = s3.fast_archive_env("outage");
    env.push(("OTELRAFT_RAFT__MAX_LOG_BYTES".into(), "150000".into()));
    let cluster = TestCluster::start(Options {
        nodes: 3,
        env,
        ..Default::default()
    })
    .await;
    let client = reqwest::Client::new();
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let leader_node = &cluster.nodes[(leader - 1) as usize];
    for i in 0..10 {
        assert_eq!(
            post_logs(&client, leader_node, &bodies("before", i * 20, 20)).await,
            Some(200)
        );
    }
    let before = cluster.wait_archived(Duration::from_secs(60)).await;
    let archived_before = before["cursor"].as_u64().expect("cursor");

    s3.kill();
    // Ingest goes on while the log is within its budget; the archive
    // cannot move and nothing past it is trimmed.
    let mut accepted = 0usize;
    let mut refused = None;
    for i in 0..400 {
        let status = post_logs(&client, leader_node, &bodies("during", i * 20, 20)).await;
        match status {
            Some(200) => accepted += 1,
            Some(429) => {
                refused = Some(i);
                break;
            }
            other => panic!("unexpected answer during the outage: {other:?}"),
        }
        if i % 40 == 39 {
            let (ok, out) = admin_cli(leader_node, &["snapshot"]);
            assert!(ok, "snapshot: {out}");
        }
    }
    assert!(
        accepted >= 10,
        "ingest stopped too early: {accepted} accepted"
    );
    assert!(
        refused.is_some(),
        "the disk budget never held ingest back ({accepted} accepted): {}",
        leader_node
            .status()
            .await
            .map(|s| s["retained_log"].clone())
            .unwrap_or_default()
    );
    let s = leader_node.status().await.expect("status");
    assert_eq!(s["archive"]["cursor"].as_u64(), Some(archived_before));
    assert!(s["archive"]["lag_entries"].as_u64().unwrap_or(0) > 0);
    assert!(
        s["retained_log"]["first_index"]
            .as_u64()
            .unwrap_or(u64::MAX)
            <= archived_before + 1,
        "trimmed past the archive: {}",
        s["retained_log"]
    );
    assert!(
        s["archive"]["last_error"].is_string(),
        "the outage shows in status: {}",
        s["archive"]
    );

    s3.restart().await;
    let after = cluster.wait_archived(Duration::from_secs(90)).await;
    let through = after["cursor"].as_u64().expect("cursor");
    assert!(through > archived_before);
    assert_tiles(&block_ranges(&s3, "outage"), through);
    let (ok, out) = admin_cli(leader_node, &["snapshot"]);
    assert!(ok, "snapshot: {out}");
    let trimmed = wait_until(Duration::from_secs(30), || async {
        let s = leader_node.status().await?;
        let first = s["retained_log"]["first_index"].as_u64()?;
        (first > archived_before + 1).then_some(())
    })
    .await;
    assert!(
        trimmed.is_some(),
        "log not trimmed after the archive caught up"
    );
    let accepted_again = wait_until(Duration::from_secs(30), || async {
        let status = post_logs(&client, leader_node, &bodies("after", 0, 20)).await;
        (status == Some(200)).then_some(())
    })
    .await;
    assert!(
        accepted_again.is_some(),
        "ingest not accepted again after trimming"
    );
}

async fn readiness(node: &TestNode) -> Option<(u16, String)> {
    let resp = reqwest::get(format!("{}/health/ready", node.admin_url()))
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.ok()?))
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_or_a_missing_bucket_show_in_readiness() {
    let s3 = S3Server::start().await;
    for (case, key, value) in [
        (
            "wrong secret",
            "OTELRAFT_ARCHIVE__S3__SECRET_ACCESS_KEY",
            "not-the-secret",
        ),
        (
            "missing bucket",
            "OTELRAFT_ARCHIVE__S3__BUCKET",
            "no-such-bucket",
        ),
    ] {
        let mut env = s3.fast_archive_env("badconfig");
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value.to_string()));
        let cluster = TestCluster::start(Options {
            nodes: 1,
            env,
            ..Default::default()
        })
        .await;
        let node = &cluster.nodes[0];
        let answer = wait_until(Duration::from_secs(30), || async {
            let (status, text) = readiness(node).await?;
            (status == 503 && text.contains("archive misconfigured")).then_some(text)
        })
        .await;
        assert!(
            answer.is_some(),
            "{case}: /health/ready does not report the archive: {:?}\n{}",
            readiness(node).await,
            node.log_tail()
        );
        let s = node.status().await.expect("status");
        assert!(
            s["archive"]["misconfigured"].is_string(),
            "{case}: {}",
            s["archive"]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_node_archive_directory_in_a_cluster_makes_every_member_not_ready_saying_why() {
    // An empty `archive.dir` falls back to the default, `<data_dir>/archive`:
    // each node's own directory.
    let cluster = TestCluster::start(Options {
        nodes: 3,
        env: vec![("OTELRAFT_ARCHIVE__DIR".to_string(), String::new())],
        ..Default::default()
    })
    .await;
    for node in &cluster.nodes {
        let answer = wait_until(Duration::from_secs(30), || async {
            let (status, text) = readiness(node).await?;
            (status == 503 && text.contains("inside this node's data_dir")).then_some(text)
        })
        .await;
        assert!(
            answer.is_some(),
            "node {}: /health/ready does not report the split archive: {:?}\n{}",
            node.id,
            readiness(node).await,
            node.log_tail()
        );
        let s = node.status().await.expect("status");
        assert_eq!(s["ready"], false, "{s}");
        assert!(
            s["not_ready"]
                .as_str()
                .is_some_and(|why| why.contains("each leader would archive into its own directory")),
            "{s}"
        );
        let log = std::fs::read_to_string(&node.log_path).unwrap_or_default();
        assert!(
            log.contains("ERROR") && log.contains("the archive is split across the members"),
            "a loud log line: {}",
            node.log_tail()
        );
    }
}

/// `rounds` requests of 40 records `<prefix>-<n>`, to the nodes in turn;
/// each must be acked.
async fn post_rounds(client: &reqwest::Client, cluster: &TestCluster, prefix: &str, rounds: usize) {
    for i in 0..rounds {
        let body = bodies(prefix, i * 40, 40);
        assert_eq!(
            post_logs(client, &cluster.nodes[i % 3], &body).await,
            Some(200)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_deletes_whole_expired_blocks_and_the_rest_stays_contiguous() {
    const RETENTION_S: f64 = 20.0;
    let s3 = S3Server::start().await;
    let mut env = s3.fast_archive_env("retention");
    env.push((
        "OTELRAFT_ARCHIVE__RETENTION_DAYS".to_string(),
        format!("{}", RETENTION_S / 86_400.0),
    ));
    let cluster = TestCluster::start(Options {
        nodes: 3,
        env,
        ..Default::default()
    })
    .await;
    let client = reqwest::Client::new();
    post_rounds(&client, &cluster, "old", 10).await;
    let first = cluster.wait_archived(Duration::from_secs(60)).await;
    let first_cursor = first["cursor"].as_u64().expect("cursor");
    let old = block_ranges(&s3, "retention");
    // Younger than the retention: nothing is gone yet.
    assert_tiles(&old, first_cursor);

    let gone = wait_until(Duration::from_secs(120), || async {
        let now = block_ranges(&s3, "retention");
        old.iter().all(|r| !now.contains(r)).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "blocks older than {RETENTION_S}s were not deleted: {:?}\n{}",
        block_ranges(&s3, "retention"),
        cluster.logs()
    );

    post_rounds(&client, &cluster, "new", 5).await;
    let second = cluster.wait_archived(Duration::from_secs(60)).await;
    let cursor = second["cursor"].as_u64().expect("cursor");
    let now = block_ranges(&s3, "retention");
    assert!(!now.is_empty(), "the new blocks are there");
    assert!(now[0].0 > first_cursor, "only new blocks remain: {now:?}");
    for pair in now.windows(2) {
        assert_eq!(pair[1].0, pair[0].1 + 1, "contiguous: {now:?}");
    }
    assert_eq!(now.last().map(|r| r.1), Some(cursor));
    let (ok, out) = archive_cli(&cluster.nodes[0], &["verify"]);
    assert!(ok, "verify after retention:\n{out}");
    let expired = cluster
        .metric_sum("otelraft_archive_expired_blocks_total", "")
        .await;
    assert!(
        expired >= old.len() as f64,
        "expired {expired} of {}",
        old.len()
    );
}

/// Waits until every member's retained log begins past `past`.
async fn wait_all_trimmed_past(cluster: &TestCluster, past: u64) {
    let trimmed = wait_until(Duration::from_secs(60), || async {
        for n in cluster.nodes.iter() {
            let first = n.status().await?["retained_log"]["first_index"].as_u64()?;
            if first <= past {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert!(
        trimmed.is_some(),
        "the members did not trim past {past}\n{}",
        cluster.logs()
    );
}

/// Restarts every member with `env` on top of `base`.
async fn restart_all_with(cluster: &mut TestCluster, env: &[(String, String)]) {
    for n in cluster.nodes.iter_mut() {
        n.stop();
    }
    for n in cluster.nodes.iter_mut() {
        n.env = env.to_vec();
        n.start();
    }
    cluster.wait_for_leader(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_enabled_after_the_log_was_trimmed_begins_at_the_first_retained_entry() {
    // Issue 21 item 1: with more than 256 entries trimmed before the
    // archive was on, its first block (from index 0) could never be read,
    // its cursor held the trim point, and the log grew until ingest was
    // refused. Now the archive begins where the log does, and a later
    // stretch trimmed while it was off is a gap that verify reports.
    let s3 = S3Server::start().await;
    let off: Vec<(String, String)> = s3
        .fast_archive_env("late")
        .into_iter()
        .chain(
            [
                ("OTELRAFT_ARCHIVE__ENABLED", "false"),
                // No consumer is left: drop entries behind snapshots.
                ("OTELRAFT_RAFT__RETAIN_UNCONSUMED", "false"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .collect();
    let on = s3.fast_archive_env("late");
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        env: off.clone(),
        ..Default::default()
    })
    .await;
    let client = reqwest::Client::new();
    post_rounds(&client, &cluster, "before", 300).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let (ok, out) = admin_cli(&cluster.nodes[(leader - 1) as usize], &["snapshot"]);
    assert!(ok, "snapshot: {out}");
    wait_all_trimmed_past(&cluster, 256).await;

    restart_all_with(&mut cluster, &on).await;
    post_rounds(&client, &cluster, "on", 20).await;
    let archive = cluster.wait_archived(Duration::from_secs(90)).await;
    let through = archive["cursor"].as_u64().expect("cursor");
    let ranges = block_ranges(&s3, "late");
    let first = ranges.first().map(|r| r.0).expect("a block");
    assert!(
        first > 256,
        "the archive begins past the trimmed entries: {ranges:?}"
    );
    assert_eq!(
        archive["skipped_entries"].as_u64(),
        Some(first),
        "{archive}"
    );
    for pair in ranges.windows(2) {
        assert_eq!(pair[1].0, pair[0].1 + 1, "contiguous: {ranges:?}");
    }
    assert_eq!(ranges.last().map(|r| r.1), Some(through));
    let (ok, out) = archive_cli(&cluster.nodes[0], &["verify"]);
    assert!(ok, "an archive that began late verifies:\n{out}");
    let (ok, dump) = archive_cli(&cluster.nodes[0], &["cat", "--all"]);
    assert!(ok && dump.contains("on-000799"), "archive cat:\n{dump}");

    // Off again while 300 more entries are trimmed, then on: the archive
    // goes on past the stretch it never saw, and verify names it.
    restart_all_with(&mut cluster, &off).await;
    post_rounds(&client, &cluster, "while-off", 300).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let (ok, out) = admin_cli(&cluster.nodes[(leader - 1) as usize], &["snapshot"]);
    assert!(ok, "snapshot: {out}");
    wait_all_trimmed_past(&cluster, through + 257).await;
    restart_all_with(&mut cluster, &on).await;
    post_rounds(&client, &cluster, "again", 20).await;
    let again = wait_until(Duration::from_secs(90), || async {
        let a = leader_status(&cluster).await["archive"].clone();
        let caught_up = a["lag_entries"] == 0 && a["pending"].is_null();
        (caught_up && a["cursor"].as_u64()? > through + 257).then_some(a)
    })
    .await
    .unwrap_or_else(|| panic!("the archive did not resume\n{}", cluster.logs()));
    let skipped = again["skipped_entries"].as_u64().expect("skipped");
    assert!(skipped > first + 256, "{again}");
    let (ok, out) = archive_cli(&cluster.nodes[0], &["verify"]);
    assert!(
        !ok,
        "verify must report the stretch trimmed while the archive was off:\n{out}"
    );
    let gap_from = through + 1;
    assert!(
        out.contains(&format!("GAP      {gap_from}..=")),
        "the gap begins right after the last block before it:\n{out}"
    );
}
