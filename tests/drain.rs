//! Graceful stop on real processes: SIGTERM the leader under load and no
//! request the cluster accepted fails; a new leader takes over within one
//! election timeout; the stopped node's database closes cleanly.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use testkit::cluster::{admin_cli, post_logs, Options, TestCluster};

/// `election_timeout_max_ms` of the test cluster's config.
const ELECTION_TIMEOUT: Duration = Duration::from_millis(1200);
const CLIENTS: usize = 8;
const RECORDS: usize = 10;

/// What the clients saw. A refusal is a retryable 429/503, a connection
/// that was never made, or one that closed before any answer: nothing was
/// accepted, and the client sent the same records to another member. A
/// failure is anything else that is not a 200.
#[derive(Default)]
struct Outcomes {
    acked: Vec<String>,
    acked_after_term: usize,
    refused: usize,
    closed_unanswered: usize,
    failures: Vec<String>,
}

/// The connection closed before any answer came. That happens when a client
/// writes on a pooled connection just as the stopping server closes it: the
/// server closes only connections with no request in progress, so it never
/// read this one. (A request it did read is answered before the process
/// exits: the server waits for every open request, and logs "server still
/// busy" if it gives up, which the test rules out.)
fn closed_unanswered(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message())
            || s.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                )
            })
        {
            return true;
        }
        source = s.source();
    }
    false
}

struct Clients {
    stop: Arc<AtomicBool>,
    /// Set to the stopped node's URL: clients stop sending to it after its
    /// first refusal, as a load balancer would once its readiness fails.
    draining: Arc<Mutex<Option<String>>>,
    termed: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Outcomes>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn start_clients(targets: Vec<String>) -> Clients {
    let stop = Arc::new(AtomicBool::new(false));
    let draining = Arc::new(Mutex::new(None::<String>));
    let termed = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let tasks = (0..CLIENTS)
        .map(|c| {
            let (stop, draining, termed, outcomes) = (
                stop.clone(),
                draining.clone(),
                termed.clone(),
                outcomes.clone(),
            );
            let mut targets = targets.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("client");
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let bodies: Vec<String> = (0..RECORDS)
                        .map(|i| format!("drain-c{c}-{n:06}-{i:02}"))
                        .collect();
                    let body = otelraft::cli::bench::logs_request(&bodies).encode_to_vec();
                    // Offer the same records to members in turn until one
                    // answers, as an OTLP exporter retries a refusal.
                    let mut attempt = 0usize;
                    loop {
                        let target = targets[(n + c + attempt) % targets.len()].clone();
                        attempt += 1;
                        let sent = client
                            .post(format!("{target}/v1/logs"))
                            .header("content-type", "application/x-protobuf")
                            .body(body.clone())
                            .send()
                            .await;
                        let refused = match sent {
                            Ok(r) if r.status().as_u16() == 200 => {
                                let mut o = outcomes.lock().unwrap();
                                o.acked.extend(bodies.iter().cloned());
                                if termed.load(Ordering::SeqCst) {
                                    o.acked_after_term += 1;
                                }
                                break;
                            }
                            Ok(r) if matches!(r.status().as_u16(), 429 | 503) => true,
                            Err(e) if e.is_connect() => true,
                            Err(e) if closed_unanswered(&e) => {
                                outcomes.lock().unwrap().closed_unanswered += 1;
                                true
                            }
                            Ok(r) => {
                                let status = r.status();
                                let text = r.text().await.unwrap_or_default();
                                outcomes
                                    .lock()
                                    .unwrap()
                                    .failures
                                    .push(format!("{target}: HTTP {status}: {text}"));
                                break;
                            }
                            Err(e) => {
                                outcomes
                                    .lock()
                                    .unwrap()
                                    .failures
                                    .push(format!("{target}: {e:?}"));
                                break;
                            }
                        };
                        if refused {
                            outcomes.lock().unwrap().refused += 1;
                            let gone = draining.lock().unwrap().clone();
                            if gone.as_deref() == Some(target.as_str()) {
                                targets.retain(|t| *t != target);
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        if stop.load(Ordering::SeqCst) && attempt > 3 * targets.len() {
                            break;
                        }
                    }
                    n += 1;
                }
            })
        })
        .collect();
    Clients {
        stop,
        draining,
        termed,
        outcomes,
        tasks,
    }
}

impl Clients {
    fn acked(&self) -> usize {
        self.outcomes.lock().unwrap().acked.len()
    }

    async fn wait_for_more(&self, more: usize, timeout: Duration) {
        let want = self.acked() + more;
        let deadline = Instant::now() + timeout;
        while self.acked() < want {
            assert!(
                Instant::now() < deadline,
                "fewer than {more} more acks within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> Outcomes {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        std::mem::take(&mut *self.outcomes.lock().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_on_the_leader_under_load_fails_no_accepted_request() {
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        ..Default::default()
    })
    .await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let targets: Vec<String> = cluster.nodes.iter().map(|n| n.http_url()).collect();
    let clients = start_clients(targets);
    clients.wait_for_more(5_000, Duration::from_secs(120)).await;

    // SIGTERM the leader while every client has a request in flight.
    let stopped = cluster.node(leader).http_url();
    *clients.draining.lock().unwrap() = Some(stopped);
    let termed_at = Instant::now();
    cluster.node(leader).terminate();
    clients.termed.store(true, Ordering::SeqCst);

    // A new leader, seen by one of the others, within an election timeout.
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let mut took_over = None;
    while took_over.is_none() && termed_at.elapsed() < Duration::from_secs(30) {
        for id in &others {
            let status = cluster.node(*id).status().await;
            if status.is_some_and(|s| s["role"] == "leader" && s["node_id"] == *id) {
                took_over = Some((*id, termed_at.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (new_leader, after) = took_over.expect("no other node became leader");
    let exit = cluster
        .node(leader)
        .wait_exit(Duration::from_secs(40))
        .await;
    clients.wait_for_more(5_000, Duration::from_secs(120)).await;
    let outcomes = clients.stop().await;
    let log = cluster.node(leader).log_text();
    eprintln!(
        "drain figures: new leader {new_leader} after {after:?}; {} records acked ({} requests after the SIGTERM), {} refusals retried elsewhere ({} connections closed unanswered)",
        outcomes.acked.len(),
        outcomes.acked_after_term,
        outcomes.refused,
        outcomes.closed_unanswered
    );
    assert!(
        !log.contains("still busy; stopping anyway"),
        "the stopped node gave up on requests it had read, so a connection closed unanswered may have been accepted:\n{log}"
    );

    assert!(
        outcomes.failures.is_empty(),
        "{} accepted requests failed, e.g. {:?}\n{}",
        outcomes.failures.len(),
        &outcomes.failures[..outcomes.failures.len().min(5)],
        cluster.logs()
    );
    assert!(
        after <= ELECTION_TIMEOUT,
        "node {new_leader} led {after:?} after the SIGTERM, more than one election timeout"
    );
    assert!(
        exit.is_some_and(|s| s.success()),
        "node {leader} did not exit cleanly: {exit:?}\n{log}"
    );
    assert!(
        log.contains(&format!("leadership handed to node {new_leader}")),
        "the leader did not hand off:\n{log}"
    );
    assert!(
        log.contains("storage closed cleanly"),
        "storage not closed:\n{log}"
    );
    assert!(outcomes.acked_after_term > 0, "no ack after the SIGTERM");

    // The drained node restarts without a repair; a SIGKILLed one needs
    // one, which shows the check above can fail.
    cluster.node(leader).start();
    cluster
        .node(leader)
        .wait_live(Duration::from_secs(30))
        .await;
    let follower = (1..=3)
        .find(|id| *id != leader && *id != new_leader)
        .expect("a third node");
    cluster.node(follower).kill();
    cluster.node(follower).start();
    cluster
        .node(follower)
        .wait_live(Duration::from_secs(30))
        .await;
    let repaired = |text: &str| text.matches("was not closed cleanly").count();
    assert_eq!(
        repaired(&cluster.node(leader).log_text()),
        0,
        "the drained node needed a repair:\n{}",
        cluster.node(leader).log_tail()
    );
    assert_eq!(
        repaired(&cluster.node(follower).log_text()),
        1,
        "a SIGKILLed node should need a repair:\n{}",
        cluster.node(follower).log_tail()
    );

    // Every acked record is in the committed log.
    let acked: BTreeSet<String> = outcomes.acked.into_iter().collect();
    cluster
        .wait_for_records("logs", acked.len() as u64, Duration::from_secs(60))
        .await;
    cluster.stop_all();
    let bodies: BTreeSet<String> = cluster.node(new_leader).log_bodies().into_iter().collect();
    let missing: Vec<&String> = acked.difference(&bodies).collect();
    assert!(
        missing.is_empty(),
        "{} acked records missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_drain_refuses_new_requests_and_fails_readiness_but_keeps_the_node_up() {
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        ..Default::default()
    })
    .await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let (ok, out) = admin_cli(cluster.node(leader), &["drain"]);
    assert!(ok, "admin drain failed: {out}");
    assert!(out.contains("leadership handed to node"), "{out}");
    let http = reqwest::Client::new();
    let node = cluster.node(leader);
    let ready = http
        .get(format!("{}/health/ready", node.admin_url()))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status().as_u16(), 503);
    assert!(ready.text().await.unwrap_or_default().contains("draining"));
    let refused = post_logs(&http, node, &["after-drain".to_string()]).await;
    assert_eq!(refused, Some(503), "a drained node must refuse with 503");
    // A second drain (SIGTERM after the pre-stop hook) returns at once.
    let again = Instant::now();
    let (ok, out) = admin_cli(cluster.node(leader), &["drain"]);
    assert!(ok && again.elapsed() < Duration::from_secs(2), "{out}");
    // The rest of the cluster still takes writes.
    let new_leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    assert_ne!(new_leader, leader);
    let status = post_logs(&http, cluster.node(new_leader), &["x".to_string()]).await;
    assert_eq!(status, Some(200));
}
