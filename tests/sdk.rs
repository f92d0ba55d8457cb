//! The official OpenTelemetry Python SDK, gRPC and HTTP exporters, sends logs
//! and metrics to a follower; every record is committed on all three nodes.

use std::collections::BTreeSet;
use std::time::Duration;
use testkit::cluster;

use testkit::cluster::{Options, TestCluster};

#[tokio::test(flavor = "multi_thread")]
async fn sdk_exporters_to_a_follower_commit_on_every_node() {
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        ..Default::default()
    })
    .await;
    let follower = cluster.a_follower().await;
    let node = &cluster.nodes[(follower - 1) as usize];
    let stdout = cluster::send_logs_with_sdk(node, "sdk", 150).await;
    let report: serde_json::Value =
        serde_json::from_str(stdout.trim()).expect("SDK client prints JSON");
    assert_eq!(report["failures"], 0);

    cluster
        .wait_for_records("logs", 300, Duration::from_secs(30))
        .await;
    cluster
        .wait_for_records("metrics", 1, Duration::from_secs(30))
        .await;
    let mut metric_counts = Vec::new();
    for n in &cluster.nodes {
        metric_counts.push(n.committed_records("metrics").await);
    }
    assert!(
        metric_counts.windows(2).all(|w| w[0] == w[1]),
        "metric points differ: {metric_counts:?}"
    );

    cluster.stop_all();
    let expected: BTreeSet<String> = ["sdk-grpc", "sdk-http"]
        .iter()
        .flat_map(|p| (0..150).map(move |i| format!("{p}-{i:06}")))
        .collect();
    for n in &cluster.nodes {
        let entries = n.inspect();
        let bodies: BTreeSet<String> = n.log_bodies().into_iter().collect();
        assert_eq!(
            bodies, expected,
            "node {} log records differ from what the SDK sent",
            n.id
        );
        let text = serde_json::to_string(&entries).expect("json");
        for name in report["metrics"].as_array().expect("names") {
            let name = name.as_str().expect("name");
            assert!(text.contains(name), "node {} lacks metric {name}", n.id);
        }
        // The resource processor labelled every request with the receiving node.
        let labelled = entries.iter().filter(|e| e["kind"] == "ingest").all(|e| {
            e.to_string().contains("otelraft.node")
                && e.to_string().contains(&format!("node-{follower}"))
        });
        assert!(
            labelled,
            "node {} holds requests without the receiving node's label",
            n.id
        );
    }
}
