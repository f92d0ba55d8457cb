//! The exporter's loop against an in-memory node and sink: settle after a
//! takeover, the first batch after an unsettled one, the lease fence, a
//! deposed leader's return, and a trimmed range. No Raft, no disk, no
//! network: each test runs in milliseconds.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::*;
use crate::metrics::Metrics;
use crate::node::ProposeError;
use crate::pb::log::IngestRequest;
use crate::raft::Entry;
use crate::state::tests::normal;
use crate::state::{apply_entry, SmState};

/// The node: a log, its applied state, and leadership set by the test.
struct FakeNode {
    inner: Mutex<FakeState>,
    version: watch::Sender<u64>,
    metrics: Metrics,
}

struct FakeState {
    log: BTreeMap<u64, Entry>,
    state: SmState,
    term: u64,
    leader: bool,
    lease: bool,
}

impl FakeNode {
    fn new() -> Arc<FakeNode> {
        Arc::new(FakeNode {
            inner: Mutex::new(FakeState {
                log: BTreeMap::new(),
                // Named, as every cluster is once it exported (see
                // `a_cluster_without_a_name_is_named_before_anything_is_settled`).
                state: SmState {
                    cluster_id: "0123456789abcdef0123456789abcdef".into(),
                    ..SmState::default()
                },
                term: 1,
                leader: false,
                lease: true,
            }),
            version: watch::channel(0).0,
            metrics: Metrics::new(),
        })
    }

    /// Changes the node and wakes its watchers.
    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        let r = f(&mut self.inner.lock().expect("fake node lock"));
        self.version.send_modify(|v| *v += 1);
        r
    }

    /// Appends and applies `kind` as the next entry, as a commit would.
    fn append(&self, kind: Kind) -> u64 {
        self.with(|s| {
            let index = s.log.keys().next_back().map_or(1, |i| i + 1);
            let entry = normal(s.term, index, kind);
            apply_entry(&mut s.state, &entry);
            s.log.insert(index, entry);
            index
        })
    }

    fn ingest(&self) -> u64 {
        self.append(Kind::Ingest(IngestRequest {
            payload: Bytes::from_static(b"records"),
            records: 1,
            ..Default::default()
        }))
    }

    fn lead(&self, term: u64) {
        self.with(|s| {
            s.term = term;
            s.leader = true;
        });
    }

    fn step_down(&self) {
        self.with(|s| s.leader = false);
    }

    fn cursor(&self) -> u64 {
        self.read_state(|s| s.sink("fake").cursor)
    }

    fn takeovers(&self, outcome: &str) -> u64 {
        self.metrics
            .export_takeovers
            .get_or_create(&metrics::sink_outcome("fake", outcome))
            .get()
    }

    fn readbacks(&self, outcome: &str) -> u64 {
        self.metrics
            .export_readbacks
            .get_or_create(&metrics::sink_outcome("fake", outcome))
            .get()
    }

    fn resent(&self) -> u64 {
        self.metrics
            .export_resent_requests
            .get_or_create(&metrics::sink("fake"))
            .get()
    }
}

impl LeaderHandle for FakeNode {
    type Watch = watch::Receiver<u64>;

    async fn wait_for_leadership(&self) -> Option<u64> {
        let mut rx = self.version.subscribe();
        loop {
            let term = {
                let s = self.inner.lock().expect("fake node lock");
                s.leader.then_some(s.term)
            };
            if term.is_some() {
                return term;
            }
            rx.changed().await.ok()?;
        }
    }

    async fn barrier(&self) -> Result<(), ProposeError> {
        Ok(())
    }

    fn leads(&self, term: u64) -> bool {
        let s = self.inner.lock().expect("fake node lock");
        s.leader && s.term == term
    }

    fn leads_with_lease(&self, term: u64) -> bool {
        let s = self.inner.lock().expect("fake node lock");
        s.leader && s.term == term && s.lease
    }

    fn watch(&self) -> Self::Watch {
        self.version.subscribe()
    }

    async fn changed(&self, watch: &mut Self::Watch, within: Duration) {
        let _ = tokio::time::timeout(within, watch.changed()).await;
    }

    fn read_state<R>(&self, f: impl FnOnce(&SmState) -> R) -> R {
        f(&self.inner.lock().expect("fake node lock").state)
    }

    /// As the store reads: a `Hole` when `from` is trimmed and later
    /// entries remain, inside the window or past it.
    async fn read_batch(&self, from: u64, to: u64, _max: usize) -> Result<Vec<Entry>, StoreError> {
        let s = self.inner.lock().expect("fake node lock");
        match s.log.range(from..).next() {
            Some((&found, _)) if found > from => Err(StoreError::Hole {
                expected: from,
                found,
            }),
            _ => Ok(s.log.range(from..to).map(|(_, e)| e.clone()).collect()),
        }
    }

    async fn read_range(&self, from: u64, to: u64) -> Result<Vec<Entry>, StoreError> {
        let s = self.inner.lock().expect("fake node lock");
        Ok(s.log.range(from..to).map(|(_, e)| e.clone()).collect())
    }

    async fn propose(&self, command: Command) -> Result<u64, ProposeError> {
        if !self.inner.lock().expect("fake node lock").leader {
            return Err(ProposeError::NotLeader { leader: None });
        }
        let Some(kind) = command.kind else {
            return Err(ProposeError::Unknown("empty command".into()));
        };
        Ok(self.append(kind))
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The sink: what it holds (as a sink that reads back its marker reports
/// it; `blind` sinks cannot tell), every body it was sent, and whether it
/// can read back what it holds of a body (as Loki can; a marker sink
/// cannot). `fail_after_storing` sends are stored and then answered with
/// a retryable error, as a timeout after the sink took the request would.
struct FakeSink {
    held: Mutex<u64>,
    blind: bool,
    readable: bool,
    fail_after_storing: Mutex<u32>,
    /// Refuse with 400 while keeping this many items of each batch.
    refuse_keeping: Mutex<Option<u64>>,
    sent: Mutex<Vec<String>>,
}

impl FakeSink {
    fn new(held: u64, blind: bool, readable: bool) -> Arc<FakeSink> {
        Arc::new(FakeSink {
            held: Mutex::new(held),
            blind,
            readable,
            fail_after_storing: Mutex::new(0),
            refuse_keeping: Mutex::new(None),
            sent: Mutex::new(Vec::new()),
        })
    }

    fn with_marker(held: u64) -> Arc<FakeSink> {
        Self::new(held, false, false)
    }

    fn blind() -> Arc<FakeSink> {
        Self::new(0, true, false)
    }

    /// Cannot settle a takeover by a marker, but reads back a body.
    fn readable(held: u64) -> Arc<FakeSink> {
        Self::new(held, true, true)
    }

    fn hold(&self, to: u64) {
        *self.held.lock().expect("fake sink lock") = to;
    }

    fn sent(&self) -> Vec<String> {
        self.sent.lock().expect("fake sink lock").clone()
    }
}

impl Sink for Arc<FakeSink> {
    fn name(&self) -> &str {
        "fake"
    }

    /// One body per batch naming its range, so a resend is visible.
    fn build(&self, state: &SinkState, entries: &[Entry]) -> Batch {
        let mut batch = Batch::new(state.cursor, state);
        batch.to = entries.last().map_or(state.cursor, |e| e.log_id.index);
        let items = super::super::sink::ingest_views(entries).len() as u64;
        if items > 0 {
            batch.items = items;
            batch.body = Some(Bytes::from(format!("{}-{}", batch.from + 1, batch.to)));
        }
        batch
    }

    async fn send(&self, body: Bytes) -> Result<Answer, ExportError> {
        let range = String::from_utf8_lossy(&body).to_string();
        if let Some(to) = range.rsplit('-').next().and_then(|t| t.parse().ok()) {
            self.hold(to);
        }
        self.sent.lock().expect("fake sink lock").push(range);
        if self
            .refuse_keeping
            .lock()
            .expect("fake sink lock")
            .is_some()
        {
            return Ok(Answer::Refused {
                status: 400,
                message: "entry too far behind".into(),
            });
        }
        let mut failing = self.fail_after_storing.lock().expect("fake sink lock");
        if *failing > 0 {
            *failing -= 1;
            return Err(ExportError::Unavailable {
                sink: "fake".into(),
                message: "timed out after the sink stored it".into(),
                retry_after: None,
            });
        }
        Ok(Answer::Accepted)
    }

    async fn delivered_beyond(&self, _state: &SinkState) -> Result<Option<u64>, ExportError> {
        Ok((!self.blind).then(|| *self.held.lock().expect("fake sink lock")))
    }

    async fn holding(&self, body: &Bytes) -> Result<Holding, ExportError> {
        if !self.readable {
            return Ok(Holding::Unknown);
        }
        if let Some(held) = *self.refuse_keeping.lock().expect("fake sink lock") {
            return Ok(Holding::Part {
                rest: Bytes::new(),
                held,
            });
        }
        let range = String::from_utf8_lossy(body).to_string();
        let to: u64 = range
            .rsplit('-')
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        Ok(if *self.held.lock().expect("fake sink lock") >= to {
            Holding::All
        } else {
            Holding::Nothing
        })
    }
}

fn config() -> SinkConfig {
    toml::from_str(
        "kind = \"loki\"\nendpoint = \"http://127.0.0.1:9\"\nmax_batch_entries = 2\nretry_initial_ms = 1\nretry_max_ms = 5\n",
    )
    .expect("sink config")
}

fn start(node: &Arc<FakeNode>, sink: &Arc<FakeSink>) -> tokio::task::JoinHandle<()> {
    let registry = Registry::default();
    registry.register("fake", config().kind);
    spawn_one(node, &registry, &config(), sink.clone())
}

/// Polls `cond` for up to ten seconds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The previous leader sent `(0, 2]` and died before its advance
/// committed: the new leader finds it in the sink, records it without
/// sending it again, and sends only what follows.
#[tokio::test]
async fn a_new_leader_records_the_previous_leaders_batch_without_resending_it() {
    let node = FakeNode::new();
    for _ in 0..4 {
        node.ingest();
    }
    let sink = FakeSink::with_marker(2);
    node.lead(2);
    let task = start(&node, &sink);
    until("the cursor at 4", || node.cursor() == 4).await;
    task.abort();
    assert_eq!(sink.sent(), vec!["3-4"], "only what follows is sent");
    assert_eq!(node.takeovers("already_delivered"), 1);
    assert_eq!(node.resent(), 0);
    let state = node.read_state(|s| s.sink("fake"));
    assert_eq!((state.batches, state.term), (2, 2), "one advance each");
}

/// A sink that cannot say what it holds: the first batch may repeat the
/// previous leader's last one, and is counted as a resend; the rest are not.
#[tokio::test]
async fn when_the_sink_cannot_settle_only_the_first_batch_counts_as_a_resend() {
    let node = FakeNode::new();
    for _ in 0..4 {
        node.ingest();
    }
    let sink = FakeSink::blind();
    node.lead(1);
    let task = start(&node, &sink);
    until("the cursor at 4", || node.cursor() == 4).await;
    task.abort();
    assert_eq!(
        sink.sent(),
        vec!["1-2", "3-4"],
        "batches of max_batch_entries"
    );
    assert_eq!(node.takeovers("unknown"), 1);
    assert_eq!(node.resent(), 1, "only the first batch may repeat");
}

/// Without the lease nothing is sent, even while the node still believes
/// it leads; with the lease back, export goes on from the cursor.
#[tokio::test]
async fn an_exporter_sends_nothing_without_the_lease() {
    let node = FakeNode::new();
    node.ingest();
    node.with(|s| s.lease = false);
    let sink = FakeSink::with_marker(0);
    node.lead(1);
    let task = start(&node, &sink);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        sink.sent().is_empty(),
        "sent without the lease: {:?}",
        sink.sent()
    );
    assert_eq!(node.cursor(), 0);
    node.with(|s| s.lease = true);
    until("the cursor at 1", || node.cursor() == 1).await;
    task.abort();
    assert_eq!(sink.sent(), vec!["1-1"]);
    assert_eq!(node.takeovers("not_delivered"), 1);
}

/// A leader that lost leadership stops; when it leads again in a later
/// term it settles again against the sink, which another leader filled in
/// the meantime, and sends nothing twice.
#[tokio::test]
async fn a_returning_leader_settles_again_and_sends_nothing_twice() {
    let node = FakeNode::new();
    node.ingest();
    node.ingest();
    let sink = FakeSink::with_marker(0);
    node.lead(1);
    let task = start(&node, &sink);
    until("the cursor at 2", || node.cursor() == 2).await;
    node.step_down();
    // Another leader exported up to `b`, and its advance did not commit.
    node.ingest();
    let b = node.ingest();
    sink.hold(b);
    let c = node.ingest();
    node.lead(3);
    until("the cursor past c", || node.cursor() >= c).await;
    task.abort();
    let sent = sink.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0], "1-2");
    assert!(
        sent[1].starts_with(&format!("{c}-")),
        "resent what the sink held: {sent:?}"
    );
    assert_eq!(node.takeovers("not_delivered"), 1);
    assert_eq!(node.takeovers("already_delivered"), 1);
    assert_eq!(node.read_state(|s| s.sink("fake").term), 3);
}

/// Entries trimmed before the sink consumed them, a run longer than the
/// batch window, are dead-lettered as one range, and export goes on after
/// them.
#[tokio::test]
async fn entries_trimmed_before_the_sink_read_them_are_dead_lettered_as_a_range() {
    let node = FakeNode::new();
    for _ in 0..5 {
        node.ingest();
    }
    node.with(|s| s.log.retain(|&index, _| index > 4));
    let sink = FakeSink::with_marker(0);
    node.lead(1);
    let task = start(&node, &sink);
    until("the cursor past 5", || node.cursor() >= 5).await;
    task.abort();
    // The range skip's own advance (index 6) rides in the batch after it.
    assert_eq!(sink.sent(), vec!["5-6"]);
    let state = node.read_state(|s| s.sink("fake"));
    assert_eq!(state.dead_letter_counts.get("trimmed"), Some(&1));
    assert_eq!(state.dead_letters[0].subject, "log entries 1..=4");
}

/// A marker beyond anything this cluster applied (a spoofed series, or
/// another cluster writing to the sink) proves nothing: the new leader
/// neither records it nor stalls on it, and exports the log.
#[tokio::test]
async fn a_marker_beyond_the_applied_log_is_ignored_and_export_goes_on() {
    let node = FakeNode::new();
    for _ in 0..4 {
        node.ingest();
    }
    let sink = FakeSink::with_marker(1_000_000);
    node.lead(2);
    let task = start(&node, &sink);
    until("the cursor at 4", || node.cursor() == 4).await;
    task.abort();
    assert_eq!(sink.sent(), vec!["1-2", "3-4"], "everything is sent");
    assert_eq!(node.takeovers("untrusted_marker"), 1);
    assert_eq!(node.takeovers("already_delivered"), 0);
}

/// The previous leader sent `(0, 2]` and died before its advance
/// committed, to a sink that cannot settle the cursor but can say what it
/// holds of a body: the new leader reads the batch back, finds it all, and
/// sends only what follows.
#[tokio::test]
async fn after_an_unsettled_takeover_the_first_batch_is_read_back_not_resent() {
    let node = FakeNode::new();
    for _ in 0..4 {
        node.ingest();
    }
    let sink = FakeSink::readable(2);
    node.lead(2);
    let task = start(&node, &sink);
    until("the cursor at 4", || node.cursor() == 4).await;
    task.abort();
    assert_eq!(sink.sent(), vec!["3-4"], "the held batch is not sent again");
    assert_eq!(node.takeovers("unknown"), 1);
    assert_eq!(node.readbacks("all"), 1);
    assert_eq!(node.resent(), 0);
}

/// A send that the sink stored but answered too late (a timeout): before
/// retrying, the exporter reads the batch back and finds it there, so the
/// batch is sent once. A sink that cannot read back is sent it again.
#[tokio::test]
async fn a_send_that_timed_out_after_the_sink_stored_it_is_not_sent_again() {
    for (sink, sends) in [
        (FakeSink::readable(0), vec!["1-2", "3-4"]),
        (FakeSink::blind(), vec!["1-2", "1-2", "3-4"]),
    ] {
        let node = FakeNode::new();
        for _ in 0..4 {
            node.ingest();
        }
        *sink.fail_after_storing.lock().unwrap() = 1;
        node.lead(1);
        let task = start(&node, &sink);
        until("the cursor at 4", || node.cursor() == 4).await;
        task.abort();
        assert_eq!(sink.sent(), sends);
    }
}

/// Loki answers 400 for a request whose valid entries it kept. Before,
/// every item of the batch was dead-lettered; now the read-back finds what
/// Loki kept, which counts as delivered, and only the rest is dead.
#[tokio::test]
async fn a_partial_refusal_dead_letters_only_what_the_sink_did_not_keep() {
    let node = FakeNode::new();
    for _ in 0..2 {
        node.ingest();
    }
    let sink = FakeSink::readable(0);
    *sink.refuse_keeping.lock().unwrap() = Some(1);
    node.lead(1);
    let task = start(&node, &sink);
    until("the cursor at 2", || node.cursor() == 2).await;
    task.abort();
    let state = node.read_state(|s| s.sink("fake"));
    assert_eq!(state.delivered, 1, "the kept item is delivered");
    assert_eq!(state.dead_letter_counts.get("rejected_by_sink"), Some(&1));
    let letter = &state.dead_letters[0];
    assert!(letter.subject.starts_with("1 of 2 items"), "{letter:?}");
    assert_eq!(letter.value, 1.0);
}

/// A cluster bootstrapped before identities existed, or restored from an
/// archive that no longer held its name: the exporter names it before it
/// settles, since markers can be told apart only by that name.
#[tokio::test]
async fn a_cluster_without_a_name_is_named_before_anything_is_settled() {
    let node = FakeNode::new();
    node.with(|s| s.state.cluster_id.clear());
    node.ingest();
    let sink = FakeSink::with_marker(0);
    node.lead(1);
    let task = start(&node, &sink);
    until("the cursor past the ingest", || node.cursor() >= 1).await;
    task.abort();
    let id = node.read_state(|s| s.cluster_id.clone());
    assert!(crate::state::is_cluster_id(&id), "{id:?}");
    assert_eq!(node.takeovers("not_delivered"), 1);
}
