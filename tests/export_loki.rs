//! Export of logs to Loki, push API and OTLP endpoint, each against the
//! strict receiver (Loki itself cannot be installed here; see
//! docs/export.md). Across a leader kill and a sink outage every acked log
//! record is stored exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::cluster;

use testkit::cluster::{post_logs, Options, TestCluster};
use testkit::loki::LokiReceiver;

fn sink_env(name: &str, kind: &str, url: &str) -> Vec<(String, String)> {
    let upper = name.to_ascii_uppercase();
    vec![
        (format!("OTELRAFT_SINKS__{upper}__KIND"), kind.to_string()),
        (
            format!("OTELRAFT_SINKS__{upper}__ENDPOINT"),
            url.to_string(),
        ),
        (
            format!("OTELRAFT_SINKS__{upper}__RETRY_MAX_MS"),
            "1000".to_string(),
        ),
        (
            format!("OTELRAFT_SINKS__{upper}__MAX_BATCH_ENTRIES"),
            "16".to_string(),
        ),
    ]
}

fn check_exactly_once(
    what: &str,
    receiver: &LokiReceiver,
    acked: &[String],
    sent: &BTreeSet<String>,
) {
    let stats = receiver.stats();
    assert_eq!(stats.requests_rejected, 0, "{what}: {:?}", stats.rejections);
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for line in receiver.stored() {
        assert!(
            sent.contains(&line.line),
            "{what}: stored a line nobody sent: {:?}",
            line.line
        );
        assert!(
            line.labels.contains("service_name=\"otelraft-bench\""),
            "{what}: {}",
            line.labels
        );
        *stored.entry(line.line).or_default() += 1;
    }
    for body in acked {
        assert_eq!(
            stored.get(body),
            Some(&1),
            "{what}: acked record {body} is not stored exactly once"
        );
    }
    let dup: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "{what}: duplicates stored: {dup:?}");
    // A killed leader sends nothing late, and its successor reads the
    // uncertain batch back instead of resending it: not even Loki's head
    // block had a repeat to drop.
    assert_eq!(
        stats.duplicates_dropped, 0,
        "{what}: resent lines: {stats:?}"
    );
    eprintln!(
        "{what}: {} acked, {} stored, {} requests ok, {} entries received, {} queries",
        acked.len(),
        stored.len(),
        stats.requests_ok,
        stats.entries_received,
        stats.queries
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acked_log_record_reaches_loki_once_across_a_leader_kill_and_an_outage() {
    let push = LokiReceiver::start().await;
    let otlp = LokiReceiver::start().await;
    let mut env = sink_env("loki", "loki", &push.push_url());
    env.extend(sink_env("lokiotlp", "loki_otlp", &otlp.otlp_url()));
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        env,
        ..Default::default()
    })
    .await;

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let targets: Vec<String> = cluster.nodes.iter().map(|n| n.http_url()).collect();
    let stop_at = Instant::now() + Duration::from_secs(10);
    let mut workers = Vec::new();
    for w in 0..4usize {
        let (acked, sent, targets) = (acked.clone(), sent.clone(), targets.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("client");
            let mut seq = 0usize;
            while Instant::now() < stop_at {
                seq += 1;
                let bodies: Vec<String> = (0..10).map(|i| format!("w{w}-{seq:05}-{i}")).collect();
                sent.lock().unwrap().extend(bodies.iter().cloned());
                let node_url = &targets[(seq + w) % targets.len()];
                let body = prost::Message::encode_to_vec(&cluster::logs_request(&bodies));
                let status = client
                    .post(format!("{node_url}/v1/logs"))
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .ok();
                if status == Some(200) {
                    acked.lock().unwrap().extend(bodies);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster.node(leader).kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    push.set_unavailable(true);
    otlp.set_unavailable(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    push.set_unavailable(false);
    otlp.set_unavailable(false);
    for w in workers {
        w.await.expect("worker");
    }
    cluster.wait_exported("loki", Duration::from_secs(90)).await;
    cluster
        .wait_exported("lokiotlp", Duration::from_secs(90))
        .await;

    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    assert!(acked.len() > 500, "too few acked records: {}", acked.len());
    check_exactly_once("loki push", &push, &acked, &sent);
    check_exactly_once("loki otlp", &otlp, &acked, &sent);
    assert!(push.stats().requests_unavailable > 0, "the outage was seen");

    // A member that was down catches up, and its state agrees.
    cluster.node(leader).start();
    let client = reqwest::Client::new();
    let follower = cluster.a_follower().await;
    assert_eq!(
        post_logs(
            &client,
            &cluster.nodes[(follower - 1) as usize],
            &["after-restart".to_string()]
        )
        .await,
        Some(200)
    );
    let st = cluster.wait_exported("loki", Duration::from_secs(60)).await;
    assert_eq!(
        st["dead_letters"].as_object().map(|o| o.len()),
        Some(0),
        "{st}"
    );
    assert!(push.stored().iter().any(|l| l.line == "after-restart"));
}

/// Loki stores a push and answers after the exporter's timeout. Before,
/// the exporter sent the batch again, and only Loki's head block stood
/// between that and a second copy. Now it reads the batch back first,
/// finds every line, and sends none of them twice, over both endpoints.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_answered_after_the_timeout_is_read_back_and_never_sent_twice() {
    let push = LokiReceiver::start().await;
    let otlp = LokiReceiver::start().await;
    let mut env = sink_env("loki", "loki", &push.push_url());
    env.extend(sink_env("lokiotlp", "loki_otlp", &otlp.otlp_url()));
    env.push(("OTELRAFT_SINKS__LOKI__TIMEOUT_MS".into(), "500".into()));
    env.push(("OTELRAFT_SINKS__LOKIOTLP__TIMEOUT_MS".into(), "500".into()));
    let cluster = TestCluster::start(Options {
        nodes: 3,
        env,
        ..Default::default()
    })
    .await;
    push.set_answer_delay(Duration::from_millis(1500));
    otlp.set_answer_delay(Duration::from_millis(1500));
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    for seq in 0..20 {
        let bodies: Vec<String> = (0..5).map(|i| format!("slow-{seq:03}-{i}")).collect();
        let node = &cluster.nodes[seq % cluster.nodes.len()];
        assert_eq!(post_logs(&client, node, &bodies).await, Some(200));
        acked.extend(bodies);
    }
    let every_line_stored = |rx: &LokiReceiver| {
        let rx = rx.clone();
        let n = acked.len();
        async move { (rx.stored().len() >= n).then_some(()) }
    };
    for rx in [&push, &otlp] {
        cluster::wait_until(Duration::from_secs(60), || every_line_stored(rx))
            .await
            .expect("every acked line reached the receiver");
    }
    // Answering on time again, the exporters record their batches.
    push.set_answer_delay(Duration::ZERO);
    otlp.set_answer_delay(Duration::ZERO);
    cluster.wait_exported("loki", Duration::from_secs(90)).await;
    cluster
        .wait_exported("lokiotlp", Duration::from_secs(90))
        .await;
    let sent: BTreeSet<String> = acked.iter().cloned().collect();
    check_exactly_once("loki push", &push, &acked, &sent);
    check_exactly_once("loki otlp", &otlp, &acked, &sent);
    for (sink, rx) in [("loki", &push), ("lokiotlp", &otlp)] {
        assert!(rx.stats().queries > 0, "{sink}: nothing was read back");
        let found = cluster
            .metric_sum(
                "otelraft_export_readbacks_total",
                &format!("sink=\"{sink}\",outcome=\"all\""),
            )
            .await;
        assert!(
            found >= 1.0,
            "{sink}: no read-back found its batch held ({found})"
        );
    }
}

/// A credential that may push but not query: the read-back after a
/// timeout is refused with 403. Before, the exporter retried the read-back
/// forever and the sink stalled; now it sends the batch as it is (counted
/// as a resend), and Loki's head block drops the repeat.
#[tokio::test(flavor = "multi_thread")]
async fn a_loki_that_refuses_the_read_back_gets_the_batch_resent_rather_than_stalling() {
    let push = LokiReceiver::start().await;
    let mut env = sink_env("loki", "loki", &push.push_url());
    env.push(("OTELRAFT_SINKS__LOKI__TIMEOUT_MS".into(), "500".into()));
    let cluster = TestCluster::start(Options {
        nodes: 3,
        env,
        ..Default::default()
    })
    .await;
    push.set_queries_refused(true);
    push.set_answer_delay(Duration::from_millis(1500));
    let client = reqwest::Client::new();
    let bodies: Vec<String> = (0..5).map(|i| format!("noread-{i}")).collect();
    assert_eq!(
        post_logs(&client, &cluster.nodes[0], &bodies).await,
        Some(200)
    );
    cluster::wait_until(Duration::from_secs(60), || {
        let push = push.clone();
        async move { (push.stats().duplicates_dropped > 0).then_some(()) }
    })
    .await
    .expect("the batch was sent again after the refused read-back");
    push.set_answer_delay(Duration::ZERO);
    cluster.wait_exported("loki", Duration::from_secs(90)).await;
    let stored: Vec<String> = push.stored().into_iter().map(|l| l.line).collect();
    assert_eq!(stored.len(), bodies.len(), "{stored:?}");
    assert_eq!(push.stats().duplicates_stored, 0);
    let resent = cluster
        .metric_sum("otelraft_export_resent_requests_total", "sink=\"loki\"")
        .await;
    assert!(resent >= 1.0, "{resent}");
}
