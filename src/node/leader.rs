//! What a leader-only duty (the exporters, the archiver) needs from the
//! node, as a trait: leadership and its lease, the applied state, log
//! reads and proposals. [`Node`] implements it; a test implements it over
//! an in-memory log, so a duty's loop runs without Raft or disks.
//!
//! Ordering contract, which every implementation keeps:
//! - `propose` returns after the entry is committed and applied here, so
//!   `read_state` then shows its effect;
//! - `barrier` returns after everything committed before the call is
//!   applied here;
//! - `leads_with_lease(term)` is true only while this node leads `term`
//!   and no other node can have become leader since.

use std::future::Future;
use std::time::Duration;

use openraft::type_config::async_runtime::WatchReceiver;
use openraft::ServerState;

use super::{Node, ProposeError};
use crate::metrics::Metrics;
use crate::pb::log::Command;
use crate::raft::Entry;
use crate::state::SmState;
use crate::store::StoreError;

/// The node as a leader-only duty sees it.
pub trait LeaderHandle: Send + Sync + 'static {
    /// Wakes [`LeaderHandle::changed`] when leadership or the applied
    /// state moves.
    type Watch: Send;

    /// Resolves with the term once this node leads; `None` once it stops.
    fn wait_for_leadership(&self) -> impl Future<Output = Option<u64>> + Send;

    /// Waits until everything committed before the call is applied here.
    fn barrier(&self) -> impl Future<Output = Result<(), ProposeError>> + Send;

    /// This node leads `term` (lease or not).
    fn leads(&self, term: u64) -> bool;

    /// This node leads `term` and no other node can have become leader
    /// since: the check before every send to the outside.
    fn leads_with_lease(&self, term: u64) -> bool;

    /// A watch to wait on with [`LeaderHandle::changed`]; changes after
    /// this call wake it.
    fn watch(&self) -> Self::Watch;

    /// Waits until leadership or the applied state changed since the last
    /// wait on `watch`, or `within` passed.
    fn changed(&self, watch: &mut Self::Watch, within: Duration)
        -> impl Future<Output = ()> + Send;

    /// `f` of the applied state, copying only what `f` returns.
    fn read_state<R>(&self, f: impl FnOnce(&SmState) -> R) -> R;

    /// Log entries from `from`, before `to`, up to about `max_bytes` (at
    /// least one entry); a `Hole` error when `from` is gone.
    fn read_batch(
        &self,
        from: u64,
        to: u64,
        max_bytes: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send;

    /// Every log entry from `from`, before `to`.
    fn read_range(
        &self,
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send;

    /// Proposes `command`; returns its index once committed and applied.
    fn propose(&self, command: Command) -> impl Future<Output = Result<u64, ProposeError>> + Send;

    /// The node's metrics.
    fn metrics(&self) -> &Metrics;
}

impl LeaderHandle for Node {
    type Watch = openraft::type_config::alias::WatchReceiverOf<
        crate::raft::TypeConfig,
        openraft::RaftMetrics<crate::raft::TypeConfig>,
    >;

    async fn wait_for_leadership(&self) -> Option<u64> {
        Node::wait_for_leadership(self).await
    }

    async fn barrier(&self) -> Result<(), ProposeError> {
        Node::barrier(self).await
    }

    fn leads(&self, term: u64) -> bool {
        let m = self.raft_metrics();
        m.state == ServerState::Leader && m.current_term == term
    }

    fn leads_with_lease(&self, term: u64) -> bool {
        Node::leads_with_lease(self, term)
    }

    fn watch(&self) -> Self::Watch {
        self.raft().metrics()
    }

    async fn changed(&self, watch: &mut Self::Watch, within: Duration) {
        let _ = tokio::time::timeout(within, watch.changed()).await;
    }

    fn read_state<R>(&self, f: impl FnOnce(&SmState) -> R) -> R {
        Node::read_state(self, f)
    }

    async fn read_batch(
        &self,
        from: u64,
        to: u64,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.log_store().read_batch(from, to, max_bytes).await
    }

    async fn read_range(&self, from: u64, to: u64) -> Result<Vec<Entry>, StoreError> {
        self.log_store().read_range(from, to).await
    }

    async fn propose(&self, command: Command) -> Result<u64, ProposeError> {
        Node::propose(self, command).await
    }

    fn metrics(&self) -> &Metrics {
        Node::metrics(self)
    }
}
