//! How one applied log entry changes the state.

use openraft::EntryPayload;

use super::SmState;
use crate::pb::log::command::Kind;
use crate::pb::log::{Command, Signal};
use crate::raft::{Entry, StoredMembership};

/// Applies one entry. Must stay deterministic: restart recovery re-applies
/// entries on top of an older persisted state and must reach the same state,
/// and `otelraft restore` rebuilds the state from archived entries with it.
pub fn apply_entry(state: &mut SmState, entry: &Entry) {
    match &entry.payload {
        EntryPayload::Blank => {}
        EntryPayload::Membership(m) => {
            let gone: Vec<u64> = state
                .membership
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .filter(|id| m.get_node(id).is_none())
                .collect();
            state.retired_ids.extend(gone);
            state.membership = StoredMembership::new(Some(entry.log_id), m.clone());
            state.last_content_index = entry.log_id.index;
        }
        EntryPayload::Normal(cmd) => {
            if matches!(cmd.kind, Some(Kind::Ingest(_))) {
                state.last_ingest_index = entry.log_id.index;
            }
            if !matches!(cmd.kind, Some(Kind::Seal(_) | Kind::Archived(_))) {
                state.last_content_index = entry.log_id.index;
            }
            apply_command(state, cmd)
        }
    }
    state.last_applied = Some(entry.log_id);
}

/// A cluster id as `ClusterIdentity` defines it: 32 lower-case hex digits.
pub fn is_cluster_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn apply_command(state: &mut SmState, cmd: &Command) {
    match &cmd.kind {
        Some(Kind::Ingest(req)) => {
            let name = Signal::try_from(req.signal)
                .unwrap_or(Signal::Unspecified)
                .name();
            let totals = state.signals.entry(name.to_string()).or_default();
            totals.requests = totals.requests.saturating_add(1);
            totals.records = totals.records.saturating_add(req.records);
            totals.payload_bytes = totals
                .payload_bytes
                .saturating_add(req.payload.len() as u64);
        }
        Some(Kind::Cursor(c)) => {
            state
                .sinks
                .entry(c.sink.clone())
                .or_default()
                .apply_advance(c);
        }
        Some(Kind::Seal(seal)) => state.archive.apply_seal(seal),
        Some(Kind::Archived(a)) => state.archive.apply_archived(a),
        // The newest identity wins, so members converge on it even if some
        // applied an earlier one as an empty command (a version without
        // identities, during a rolling upgrade). A malformed one changes
        // nothing.
        Some(Kind::Identity(identity)) if is_cluster_id(&identity.id) => {
            state.cluster_id.clone_from(&identity.id);
        }
        Some(Kind::Identity(_)) => {}
        // An empty command changes nothing; it still counts as applied.
        None => {}
    }
}
