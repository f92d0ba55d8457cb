//! The witness's one duty beyond voting: keep every log entry until every
//! data voter has it, and only then let it go.
//!
//! A witness holds no data a user reads; its log exists so that after the
//! leader is lost, a data voter that missed entries committed with the
//! witness can get them back (`admin witness-handover`). It therefore trims
//! behind the *data voters' durable progress*, not behind the sinks and the
//! archive as a data node does.
//!
//! Each data voter reports, over the peer `NodeInfo` RPC, the highest index
//! whose applied state it has made durable (see
//! `store::LogStore::durable_applied`): entries up to it are committed and on
//! its disk. The floor is the lowest report among the current data voters.
//! A voter that has never answered since this process started holds the
//! floor at "unknown", and nothing is trimmed; a voter that stops answering
//! keeps its last report, so the floor cannot pass what it is known to hold.
//!
//! Ordering: Raft's purge (`purge_log`) is asked for first, then the row
//! trim; the store deletes a row only below both (`store::tables::LOG`), and
//! openraft's own purge is off on a witness (`node::raft_config`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::node::Node;
use crate::raft::{NodeId, Role};

/// How often the witness asks the data voters for their progress.
const POLL: Duration = Duration::from_secs(1);

/// What the witness knows of each data voter's durable progress.
#[derive(Default)]
pub struct Floors {
    known: Mutex<BTreeMap<NodeId, Option<u64>>>,
}

/// The witness's retention state, as `admin status` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WitnessStatus {
    /// Last durable index each data voter reported; `null` for one that
    /// has not answered since this witness started.
    pub data_voters: BTreeMap<NodeId, Option<u64>>,
    /// The lowest of them: entries up to it may be trimmed here.
    pub trim_floor: Option<u64>,
}

impl Floors {
    /// Forgets voters that left and records `reports` for those that
    /// answered; the others keep their last report.
    fn update(&self, voters: &[NodeId], reports: &BTreeMap<NodeId, Option<u64>>) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.retain(|id, _| voters.contains(id));
        for id in voters {
            let slot = known.entry(*id).or_insert(None);
            if let Some(report) = reports.get(id) {
                *slot = *report;
            }
        }
    }

    /// The current figures and floor.
    pub fn status(&self) -> WitnessStatus {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let trim_floor = if known.is_empty() {
            None
        } else {
            known
                .values()
                .try_fold(u64::MAX, |low, v| v.map(|v| low.min(v)))
        };
        WitnessStatus {
            data_voters: known.clone(),
            trim_floor,
        }
    }
}

/// The data voters other than this node, with their peer addresses.
fn data_voters(node: &Node) -> Vec<(NodeId, String)> {
    let m = node.raft_metrics();
    let membership = m.membership_config.membership();
    membership
        .voter_ids()
        .filter(|id| *id != node.id())
        .filter_map(|id| {
            let member = membership.get_node(&id)?;
            (member.role == Role::Data).then(|| (id, member.peer_addr.clone()))
        })
        .collect()
}

/// Runs on a witness until Raft stops, keeping `floors` (which admin
/// status shows); returns at once on a data node.
pub async fn run(node: Arc<Node>, floors: Arc<Floors>) {
    if !node.is_witness() {
        return;
    }
    let mut trimmed_below = 0u64;
    loop {
        if node.raft_metrics().running_state.is_err() {
            return;
        }
        let voters = data_voters(&node);
        let mut reports = BTreeMap::new();
        for (id, addr) in &voters {
            match node.peers().node_info(addr).await {
                Ok(info) if info.node_id == *id => {
                    reports.insert(*id, info.durable_applied);
                }
                Ok(info) => tracing::warn!(
                    node = id,
                    answered_as = info.node_id,
                    %addr,
                    "a different node answers at this data voter's address"
                ),
                Err(e) => tracing::debug!(node = id, error = %e, "data voter did not report"),
            }
        }
        let ids: Vec<NodeId> = voters.iter().map(|(id, _)| *id).collect();
        floors.update(&ids, &reports);
        let floor = floors.status().trim_floor;
        node.metrics()
            .log_trim_index
            .set(floor.map_or(-1, |f| i64::try_from(f).unwrap_or(i64::MAX)));
        if let Some(floor) = floor {
            // openraft clamps the purge to its latest snapshot, so ask again
            // while its purge point is below the floor.
            let purged = node.raft_metrics().purged.map(|l| l.index);
            if purged.is_none_or(|p| p < floor) {
                if let Err(e) = node.raft().trigger().purge_log(floor).await {
                    tracing::warn!(error = %e, floor, "witness purge refused");
                }
            }
            let below = floor.saturating_add(1);
            if below > trimmed_below {
                match node.log_store().trim(below).await {
                    Ok(()) => trimmed_below = below,
                    Err(e) => tracing::warn!(error = %e, floor, "witness trim could not be queued"),
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_waits_for_every_data_voter_and_keeps_silent_ones_at_their_last_report() {
        let floors = Floors::default();
        assert_eq!(floors.status().trim_floor, None, "no voters known yet");
        floors.update(&[1, 2], &BTreeMap::from([(1, Some(50))]));
        assert_eq!(floors.status().trim_floor, None, "node 2 never answered");
        floors.update(&[1, 2], &BTreeMap::from([(1, Some(80)), (2, Some(40))]));
        assert_eq!(floors.status().trim_floor, Some(40));
        // Node 2 goes silent: the floor stays at what it is known to hold.
        floors.update(&[1, 2], &BTreeMap::from([(1, Some(120))]));
        assert_eq!(floors.status().trim_floor, Some(40));
        // A voter that reports nothing applied holds the floor back.
        floors.update(&[1, 2], &BTreeMap::from([(2, None)]));
        assert_eq!(floors.status().trim_floor, None);
        // Node 2 leaves the membership: only node 1 counts.
        floors.update(&[1], &BTreeMap::new());
        assert_eq!(floors.status().trim_floor, Some(120));
        assert_eq!(floors.status().data_voters.len(), 1);
    }
}
