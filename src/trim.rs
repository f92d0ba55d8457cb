//! Log retention: every member trims its own log behind every consumer.
//!
//! The trim point is the lowest of the configured sinks' cursors and the
//! archive cursor, read from this member's applied state. Rows are deleted
//! only at or below both the trim point and Raft's purge point (see
//! `store::tables::LOG`), so an entry leaves the disk only after every sink
//! and the archive hold it and Raft no longer needs it for replication.
//! A member whose state lags trims later, never earlier.
//!
//! A witness consumes nothing and trims by a different rule, behind the data
//! voters (see `witness`); here it only publishes the archive gauges.

use std::sync::Arc;
use std::time::Duration;

use crate::node::Node;

/// How often the trim point and the archive gauges are refreshed.
const INTERVAL: Duration = Duration::from_millis(500);

/// Runs until Raft stops.
pub async fn run(node: Arc<Node>) {
    let config = node.config().clone();
    let sinks: Vec<String> = config.sinks.keys().cloned().collect();
    let mut sent = 0u64;
    loop {
        if node.raft_metrics().running_state.is_err() {
            return;
        }
        let (retain_from, archive, lag) = node.read_state(|state| {
            let retain_from =
                state.retain_from(sinks.iter().map(String::as_str), config.archive.enabled);
            (retain_from, state.archive.clone(), archive_lag(state))
        });
        let below = match retain_from {
            Some(index) => index,
            // Nothing consumes the data: keep it, unless told otherwise.
            None if config.raft.retain_unconsumed => 0,
            None => u64::MAX,
        };
        let m = node.metrics();
        let witness = node.is_witness();
        if !witness {
            // The highest index no consumer needs; -1 while they need them all.
            m.log_trim_index
                .set(i64::try_from(below).unwrap_or(i64::MAX) - 1);
        }
        m.archive_cursor
            .set(i64::try_from(archive.cursor).unwrap_or(i64::MAX));
        m.archive_lag_entries
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
        m.archive_blocks
            .set(i64::try_from(archive.blocks).unwrap_or(i64::MAX));
        m.archive_bytes
            .set(i64::try_from(archive.bytes).unwrap_or(i64::MAX));
        if below > sent && !witness {
            match node.log_store().trim(below).await {
                Ok(()) => sent = below,
                Err(e) => {
                    tracing::warn!(error = %e, below, "log trim could not be queued");
                }
            }
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Content entries applied but not yet archived.
pub fn archive_lag(state: &crate::state::SmState) -> u64 {
    (state.last_content_index + 1).saturating_sub(state.archive.next_index())
}
