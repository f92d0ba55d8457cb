//! A steady client for tests that change the cluster under load: one
//! request of 20 log records after another, spread over the nodes it is
//! given, every record with a unique body. It records what was acked and
//! when, so a test can check that nothing acked is lost and measure the
//! longest gap between acks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;

/// Records per request.
const RECORDS: usize = 20;

/// What the load saw.
#[derive(Default, Debug)]
pub struct LoadReport {
    /// Bodies of every acked record.
    pub acked: Vec<String>,
    /// Requests answered with an error or not answered.
    pub failed: usize,
    /// The longest time between two consecutive acks.
    pub max_gap: Duration,
}

#[derive(Default)]
struct Shared {
    acked: Vec<String>,
    failed: usize,
    last_ack: Option<Instant>,
    max_gap: Duration,
}

/// A running load; stop it with [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    targets: Arc<Mutex<Vec<String>>>,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Starts sending to the OTLP HTTP base URLs in `targets`, round robin.
    pub fn start(prefix: &str, targets: Vec<String>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(Mutex::new(targets));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let task = tokio::spawn(run(
            prefix.to_string(),
            stop.clone(),
            targets.clone(),
            shared.clone(),
        ));
        Load {
            stop,
            targets,
            shared,
            task,
        }
    }

    /// Replaces the set of nodes the load sends to.
    pub fn retarget(&self, targets: Vec<String>) {
        *self.targets.lock().unwrap() = targets;
    }

    /// Records acked so far.
    pub fn acked(&self) -> usize {
        self.shared.lock().unwrap().acked.len()
    }

    /// Waits until at least `more` further records are acked (panics after
    /// `timeout`).
    pub async fn wait_for_more(&self, more: usize, timeout: Duration) {
        assert!(
            self.got_more(more, timeout).await,
            "the load got fewer than {more} more acks within {timeout:?}"
        );
    }

    /// Whether at least `more` further records are acked within `timeout`.
    pub async fn got_more(&self, more: usize, timeout: Duration) -> bool {
        let want = self.acked() + more;
        let deadline = Instant::now() + timeout;
        while self.acked() < want {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// Stops after the request in flight and reports.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let s = std::mem::take(&mut *self.shared.lock().unwrap());
        LoadReport {
            acked: s.acked,
            failed: s.failed,
            max_gap: s.max_gap,
        }
    }
}

async fn run(
    prefix: String,
    stop: Arc<AtomicBool>,
    targets: Arc<Mutex<Vec<String>>>,
    shared: Arc<Mutex<Shared>>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let target = {
            let t = targets.lock().unwrap();
            if t.is_empty() {
                None
            } else {
                Some(t[n % t.len()].clone())
            }
        };
        let Some(target) = target else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let bodies: Vec<String> = (0..RECORDS)
            .map(|i| format!("{prefix}-{n:06}-{i:02}"))
            .collect();
        n += 1;
        let body = otelraft::cli::bench::logs_request(&bodies).encode_to_vec();
        let ok = client
            .post(format!("{target}/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200);
        {
            let mut s = shared.lock().unwrap();
            if ok {
                let now = Instant::now();
                if let Some(last) = s.last_ack {
                    s.max_gap = s.max_gap.max(now - last);
                }
                s.last_ack = Some(now);
                s.acked.extend(bodies);
            } else {
                s.failed += 1;
            }
        }
        if !ok {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
