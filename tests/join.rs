//! `cluster.join` on real processes: the bootstrapping rules the Kubernetes
//! StatefulSet in `cluster/kubernetes/` relies on.

use std::time::Duration;

use serde_json::Value;
use testkit::cluster::{post_logs, wait_until, Options, TestCluster, TestNode};

/// `(voters, learners)` in `node`'s view, as sorted ids.
async fn members(node: &TestNode) -> Option<(Vec<u64>, Vec<u64>)> {
    let status = node.status().await?;
    let of = |role: &str| -> Vec<u64> {
        let mut ids: Vec<u64> = status["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["role"] == role)
            .filter_map(|m| m["id"].as_u64())
            .collect();
        ids.sort();
        ids
    };
    Some((of("voter"), of("learner")))
}

async fn wait_for_voters(cluster: &TestCluster, ids: &[u64], want: &[u64]) {
    let found = wait_until(Duration::from_secs(90), || async {
        for id in ids {
            let (voters, learners) = members(&cluster.nodes[(*id - 1) as usize]).await?;
            if voters != want || !learners.is_empty() {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert!(
        found.is_some(),
        "nodes {ids:?} did not all see voters {want:?}\n{}",
        cluster.logs()
    );
}

fn count(node: &TestNode, needle: &str) -> usize {
    node.log_text().matches(needle).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_join_through_the_bootstrap_node_which_waits_for_every_listed_member() {
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        join: true,
        ..Default::default()
    })
    .await;
    // Alone, node 1 must not create a cluster: nodes 2 and 3 might hold one.
    cluster.node(1).start();
    let waiting = wait_until(Duration::from_secs(30), || async {
        (count(&cluster.nodes[0], "bootstrap waits until every member") > 0).then_some(())
    })
    .await;
    assert!(waiting.is_some(), "{}", cluster.nodes[0].log_tail());
    assert_eq!(
        members(&cluster.nodes[0]).await,
        Some((vec![], vec![])),
        "node 1 bootstrapped while its peers were unreachable"
    );

    cluster.node(2).start();
    cluster.node(3).start();
    wait_for_voters(&cluster, &[1, 2, 3], &[1, 2, 3]).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    let bodies = vec!["joined-1".to_string(), "joined-2".to_string()];
    assert_eq!(
        post_logs(&http, &cluster.nodes[2], &bodies).await,
        Some(200)
    );
    cluster
        .wait_for_records("logs", 2, Duration::from_secs(30))
        .await;
    for id in [2, 3] {
        assert_eq!(
            count(&cluster.nodes[id - 1], "join: added and promoted"),
            1,
            "node {id}:\n{}",
            cluster.nodes[id - 1].log_tail()
        );
    }

    // A restart with its storage changes nothing in the membership.
    let follower = if leader == 2 { 3 } else { 2 };
    cluster.node(follower).stop();
    cluster.node(follower).start();
    wait_for_voters(&cluster, &[1, 2, 3], &[1, 2, 3]).await;
    let rejoined = wait_until(Duration::from_secs(30), || async {
        (count(
            &cluster.nodes[follower as usize - 1],
            "join: this node is a voter",
        ) > 0)
            .then_some(())
    })
    .await;
    assert!(rejoined.is_some(), "{}", cluster.logs());
    assert_eq!(
        count(
            &cluster.nodes[follower as usize - 1],
            "join: added and promoted"
        ),
        1,
        "node {follower} asked to join again after a restart"
    );

    // A voter that lost its storage is refused, takes no part in Raft, and
    // the other two keep committing.
    let lost = (1..=3u64)
        .find(|id| *id != leader && *id != follower)
        .expect("a third node");
    cluster.node(lost).kill();
    std::fs::remove_dir_all(&cluster.node(lost).data_dir).expect("wipe");
    cluster.node(lost).start();
    let refused = wait_until(Duration::from_secs(60), || async {
        (count(&cluster.nodes[lost as usize - 1], "storage is empty") > 0).then_some(())
    })
    .await;
    assert!(refused.is_some(), "{}", cluster.logs());
    let status: Value = cluster.node(lost).status().await.expect("status");
    assert_eq!(
        status["last_log_index"], 0,
        "the wiped node took entries: {status}"
    );
    let others: Vec<u64> = (1..=3).filter(|id| *id != lost).collect();
    let still = wait_until(Duration::from_secs(30), || async {
        let s = cluster.nodes[others[0] as usize - 1].status().await?;
        let l = s["leader_id"].as_u64()?;
        others.contains(&l).then_some(l)
    })
    .await
    .expect("the two remaining nodes elect a leader");
    let more = vec!["after-wipe".to_string()];
    assert_eq!(
        post_logs(&http, &cluster.nodes[still as usize - 1], &more).await,
        Some(200)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_witness_joins_as_a_witness() {
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        join: true,
        witnesses: vec![3],
        ..Default::default()
    })
    .await;
    for id in 1..=3 {
        cluster.node(id).start();
    }
    wait_for_voters(&cluster, &[1, 2, 3], &[1, 2, 3]).await;
    let status = cluster.nodes[0].status().await.expect("status");
    let witness = status["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["id"] == 3)
        .cloned()
        .unwrap_or_default();
    assert_eq!(witness["kind"], "witness", "{status}");
}
