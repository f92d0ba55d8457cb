//! Whether this node can do its job now (`/health/ready`).

use std::time::Duration;

use openraft::Instant as _;
use openraft::ServerState;

use super::Node;

impl Node {
    /// `/health/ready`: `Ok` when this node can do its job now, else why not.
    ///
    /// A data node is ready when it can get a request committed: it leads
    /// and a quorum acknowledged it recently, or it heard from a leader
    /// recently. A witness is ready when it is voting and up to date: a
    /// voter, in recent contact with a leader, holding every entry the
    /// leader has reported committed.
    pub fn readiness(&self) -> Result<(), String> {
        if self.gate.is_draining() {
            return Err("draining: this node takes no new requests".into());
        }
        let m = self.raft_metrics();
        if m.running_state.is_err() {
            return Err("raft has stopped".into());
        }
        let Some(leader) = m.current_leader else {
            return Err("no leader known".into());
        };
        let fresh = Duration::from_millis(self.config.raft.election_timeout_max_ms * 2);
        if let Some(recorded) = m.membership_config.membership().get_node(&self.id()) {
            if recorded.role != self.config.role {
                return Err(format!(
                    "the membership records this node as {} but its config says role = \"{}\"",
                    recorded.role, self.config.role
                ));
            }
        }
        if m.state == ServerState::Leader {
            if self.is_witness() {
                return Err("the witness leads only until a data node takes over".into());
            }
            let acked = m
                .last_quorum_acked
                .as_ref()
                .is_some_and(|at| at.elapsed() <= fresh);
            return if acked {
                Ok(())
            } else {
                Err("leader without a recent quorum".into())
            };
        }
        if !self.has_recent_leader_contact() {
            return Err(format!("no recent contact with leader {leader}"));
        }
        if self.is_witness() {
            let voter = m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == self.id());
            if !voter {
                return Err("the witness is not a voter yet".into());
            }
            let last = m.last_log_index.unwrap_or(0);
            let committed = m.cluster_committed.map_or(0, |l| l.index);
            if last < committed {
                return Err(format!(
                    "behind: holds up to index {last}, the leader committed {committed}"
                ));
            }
        }
        Ok(())
    }

    /// Whether `/health/ready` answers 200 (see [`Node::readiness`]).
    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }
}
