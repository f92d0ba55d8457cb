//! The `status` document: what one node knows about itself and the cluster.
//! Its field names are a stable interface (tools and dashboards read them; `docs/operations.md`).

use crate::export::progress::ExportPhase;
use std::collections::BTreeMap;

use openraft::ServerState;
use serde::{Deserialize, Serialize};

use crate::node::Node;
use crate::raft::NodeId;
use crate::state::{ArchivedBlock, PendingSeal, SignalTotals, SmState};

/// One member as status reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberStatus {
    /// Node id.
    pub id: NodeId,
    /// `voter` or `learner`.
    pub role: String,
    /// `data` or `witness`.
    pub kind: String,
    /// Peer address.
    pub peer_addr: String,
    /// Admin address.
    pub admin_addr: String,
}

/// A follower's replication progress, as seen by the leader.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReplicationStatus {
    /// Highest index known to be on the follower.
    pub matched_index: Option<u64>,
    /// Entries it is behind the leader's last index.
    pub lag_entries: u64,
}

/// How many voters the cluster has, needs, and can lose.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct QuorumStatus {
    /// Voters in the membership.
    pub voters: usize,
    /// Voters a commit needs: a majority.
    pub quorum: usize,
    /// Voters that may fail, by design, with writes still committing.
    pub failures_tolerated_by_design: usize,
    /// Voters the leader heard from within the election timeout, itself
    /// included. Only the leader knows; `None` elsewhere.
    pub voters_reachable: Option<usize>,
    /// How many more voters may fail right now before writes stop: the
    /// reachable voters beyond the quorum. Leader only.
    pub failures_tolerated_now: Option<usize>,
}

impl QuorumStatus {
    /// From the voter count and, on the leader, the reachable voters.
    pub fn new(voters: usize, voters_reachable: Option<usize>) -> Self {
        let quorum = voters / 2 + 1;
        QuorumStatus {
            voters,
            quorum,
            failures_tolerated_by_design: voters.saturating_sub(quorum),
            voters_reachable,
            failures_tolerated_now: voters_reachable.map(|r| r.saturating_sub(quorum)),
        }
    }
}

/// Everything `admin status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    pub node_id: NodeId,
    /// The cluster's identity (`ClusterIdentity`), empty until the first
    /// leader that exports proposed it.
    #[serde(default)]
    pub cluster_id: String,
    /// Its configured name.
    pub name: String,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    /// `data` or `witness`, from this node's config.
    pub node_role: String,
    /// Why `/health/ready` is false, when it is.
    pub not_ready: Option<String>,
    /// On a witness: the data voters' durable progress it trims behind.
    pub witness: Option<crate::witness::WitnessStatus>,
    /// The leader this node knows, if any.
    pub leader_id: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Highest committed index known here.
    pub commit_index: u64,
    /// Highest applied index.
    pub applied_index: u64,
    /// Last index in the local log.
    pub last_log_index: u64,
    /// Index covered by the latest snapshot.
    pub snapshot_index: Option<u64>,
    /// Highest purged index.
    pub purged_index: Option<u64>,
    /// Whether `/health/ready` is true.
    pub ready: bool,
    /// Current membership.
    pub members: Vec<MemberStatus>,
    /// Voters, quorum and the fault-tolerance margin.
    pub quorum: QuorumStatus,
    /// Committed totals per signal (from the applied state machine).
    pub signals: BTreeMap<String, SignalTotals>,
    /// Each sink's cursor (last delivered index) and lag in entries.
    pub sinks: BTreeMap<String, SinkStatus>,
    /// Last archived index, when an archive is configured.
    pub archive_cursor: Option<u64>,
    /// The archive's replicated position and this node's archiver.
    pub archive: ArchiveStatus,
    /// The local log: bytes and entries retained, and the trim point.
    pub retained_log: RetainedLog,
    /// Records diverted to the dead-letter record, per sink.
    pub dead_letters: BTreeMap<String, u64>,
    /// Per-follower progress (leader only).
    pub replication: BTreeMap<NodeId, ReplicationStatus>,
}

/// Where the archive stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArchiveStatus {
    /// Whether archiving is configured on.
    pub enabled: bool,
    /// Where blocks go.
    pub location: String,
    /// Last archived index.
    pub cursor: u64,
    /// The sealed range awaiting upload, if any.
    pub pending: Option<PendingSeal>,
    /// Content entries applied past the cursor.
    pub lag_entries: u64,
    /// Blocks recorded.
    pub blocks: u64,
    /// Bytes of block objects recorded.
    pub bytes: u64,
    /// Entries' bytes before compression.
    pub uncompressed_bytes: u64,
    /// The newest recorded block.
    pub last_block: Option<ArchivedBlock>,
    /// Entries never archived because the log was trimmed before the
    /// archive was enabled, or while it was off.
    #[serde(default)]
    pub skipped_entries: u64,
    /// This node's archiver phase (see `archive::progress`).
    pub phase: String,
    /// The last error on this node, until the next success.
    pub last_error: Option<String>,
    /// Set when the store refuses us for a reason retrying cannot fix.
    pub misconfigured: Option<String>,
}

/// The local log's footprint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RetainedLog {
    /// Encoded bytes of the rows on disk.
    pub bytes: u64,
    /// Rows on disk.
    pub entries: u64,
    /// First index on disk.
    pub first_index: u64,
    /// Highest index every consumer is done with.
    pub trim_index: u64,
    /// The disk budget (`raft.max_log_bytes`).
    pub budget_bytes: u64,
}

/// One sink's position and health.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SinkStatus {
    /// Protocol, from this node's config.
    pub kind: String,
    /// Last handled (delivered or dead-lettered) index.
    pub cursor: u64,
    /// Log indexes from the cursor to the newest applied ingest entry.
    pub lag_entries: u64,
    /// Applied OTLP payload bytes past the cursor.
    pub lag_bytes: u64,
    /// Age of the oldest unexported entry; known on the exporting leader.
    pub lag_seconds: Option<f64>,
    /// Samples or lines delivered.
    pub delivered: u64,
    /// Requests the sink accepted (advances applied).
    pub batches: u64,
    /// Dead-lettered items by reason code.
    pub dead_letters: BTreeMap<String, u64>,
    /// This node's exporter phase: `idle` on followers; `settling`,
    /// `exporting`, `caught_up` or `retrying` on the leader.
    pub phase: String,
    /// The exporter's last error, until its next success.
    pub last_error: Option<String>,
}

/// Status of every configured sink, and of any sink the state knows.
fn sink_statuses(
    node: &Node,
    export: &crate::export::Registry,
    state: &crate::state::SmState,
) -> BTreeMap<String, SinkStatus> {
    // Lag counts up to the newest ingest entry: later entries are cursor
    // advances and other bookkeeping, with nothing to export.
    let applied = state.last_ingest_index;
    let total_bytes: u64 = state.signals.values().map(|t| t.payload_bytes).sum();
    let progress = export.snapshot();
    let now_ms = crate::clock::unix_millis();
    let names: std::collections::BTreeSet<&String> = node
        .config()
        .sinks
        .keys()
        .chain(state.sinks.keys())
        .collect();
    names
        .into_iter()
        .map(|name| {
            let s = state.sinks.get(name).cloned().unwrap_or_default();
            let p = progress.get(name).cloned().unwrap_or_default();
            let behind = applied > s.cursor;
            let lag_seconds = match (p.phase, p.oldest_unexported_ms) {
                (ExportPhase::Idle, _) => None,
                (_, Some(t)) if behind => Some((now_ms - t).max(0) as f64 / 1000.0),
                _ => Some(0.0),
            };
            let status = SinkStatus {
                kind: if p.kind.is_empty() {
                    "unconfigured".into()
                } else {
                    p.kind
                },
                cursor: s.cursor,
                lag_entries: applied.saturating_sub(s.cursor),
                lag_bytes: total_bytes.saturating_sub(s.payload_bytes),
                lag_seconds,
                delivered: s.delivered,
                batches: s.batches,
                dead_letters: s.dead_letter_counts,
                phase: p.phase.as_str().to_string(),
                last_error: p.last_error,
            };
            (name.clone(), status)
        })
        .collect()
}

impl Status {
    /// Reads the status of `node` now.
    pub fn of(node: &Node, duties: &super::Duties) -> Status {
        let m = node.raft_metrics();
        let state = node.state();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, member)| MemberStatus {
                id: *id,
                role: if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                }
                .to_string(),
                kind: member.role.to_string(),
                peer_addr: member.peer_addr.clone(),
                admin_addr: member.admin_addr.clone(),
            })
            .collect();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let commit_index = m.local_committed.map_or(0, |l| l.index);
        let last_log_index = m.last_log_index.unwrap_or(0);
        let replication = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, matched)| {
                        let matched_index = matched.as_ref().map(|l| l.index);
                        let lag_entries = last_log_index.saturating_sub(matched_index.unwrap_or(0));
                        (
                            *id,
                            ReplicationStatus {
                                matched_index,
                                lag_entries,
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let voters_reachable = node
            .reachable_members()
            .map(|r| voters.iter().filter(|v| r.contains(v)).count());
        let not_ready = super::not_ready(node, duties);
        Status {
            quorum: QuorumStatus::new(voters.len(), voters_reachable),
            node_id: node.id(),
            cluster_id: state.cluster_id.clone(),
            name: node.config().name.clone(),
            role: role.to_string(),
            node_role: node.config().role.to_string(),
            ready: not_ready.is_none(),
            not_ready,
            witness: node.is_witness().then(|| duties.witness.status()),
            leader_id: m.current_leader,
            term: m.current_term,
            commit_index,
            applied_index: m.last_applied.map_or(0, |l| l.index),
            last_log_index,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            members,
            signals: state.signals.clone(),
            sinks: sink_statuses(node, &duties.export, &state),
            archive_cursor: node
                .config()
                .archive
                .enabled
                .then_some(state.archive.cursor),
            archive: archive_status(node, &duties.archive, &state),
            retained_log: {
                let m = node.metrics();
                let get = |g: &prometheus_client::metrics::gauge::Gauge| {
                    u64::try_from(g.get()).unwrap_or(0)
                };
                RetainedLog {
                    bytes: get(&m.log_bytes),
                    entries: get(&m.log_entries),
                    first_index: get(&m.log_first_index),
                    trim_index: get(&m.log_trim_index),
                    budget_bytes: node.config().raft.max_log_bytes,
                }
            },
            dead_letters: state
                .sinks
                .iter()
                .map(|(name, s)| (name.clone(), s.dead_letter_counts.values().sum()))
                .collect(),
            replication,
        }
    }

    /// A short human-readable rendering for `admin status`.
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "node {} ({}, {}) role={} leader={} term={} commit={} applied={} last_log={} ready={}{}\n",
            self.node_id,
            self.name,
            self.node_role,
            self.role,
            self.leader_id.map_or("none".to_string(), |l| l.to_string()),
            self.term,
            self.commit_index,
            self.applied_index,
            self.last_log_index,
            self.ready,
            self.not_ready
                .as_ref()
                .map_or(String::new(), |why| format!(" ({why})"))
        );
        out.push_str("members:\n");
        for m in &self.members {
            out.push_str(&format!(
                "  {} {} {} peer={} admin={}\n",
                m.id, m.role, m.kind, m.peer_addr, m.admin_addr
            ));
        }
        let q = &self.quorum;
        out.push_str(&format!(
            "quorum: {} of {} voters; tolerates {} failure(s) by design",
            q.quorum, q.voters, q.failures_tolerated_by_design
        ));
        match (q.voters_reachable, q.failures_tolerated_now) {
            (Some(r), Some(now)) => out.push_str(&format!(
                ", {r} reachable now, {now} more failure(s) tolerated\n"
            )),
            _ => out.push('\n'),
        }
        if let Some(w) = &self.witness {
            let voters: Vec<String> = w
                .data_voters
                .iter()
                .map(|(id, at)| format!("{id}@{}", at.map_or("?".into(), |i| i.to_string())))
                .collect();
            out.push_str(&format!(
                "witness: data voters hold {}; log kept above {}\n",
                voters.join(" "),
                w.trim_floor
                    .map_or("nothing yet (keeping everything)".into(), |f| f.to_string())
            ));
        }
        if !self.signals.is_empty() {
            out.push_str("committed:\n");
            for (signal, t) in &self.signals {
                out.push_str(&format!(
                    "  {signal}: {} requests, {} records, {} bytes\n",
                    t.requests, t.records, t.payload_bytes
                ));
            }
        }
        for (name, s) in &self.sinks {
            out.push_str(&format!(
                "sink {name} ({}): cursor={} lag={} entries / {} bytes{} delivered={} dead_letters={} phase={}{}\n",
                s.kind,
                s.cursor,
                s.lag_entries,
                s.lag_bytes,
                s.lag_seconds.map_or(String::new(), |l| format!(" / {l:.1} s")),
                s.delivered,
                s.dead_letters.values().sum::<u64>(),
                s.phase,
                s.last_error.as_ref().map_or(String::new(), |e| format!(" last_error={e}")),
            ));
        }
        for (id, r) in &self.replication {
            out.push_str(&format!(
                "replication to {id}: matched={:?} lag={}\n",
                r.matched_index, r.lag_entries
            ));
        }
        out
    }
}

fn archive_status(
    node: &Node,
    archive: &crate::archive::progress::Progress,
    state: &SmState,
) -> ArchiveStatus {
    let a = &state.archive;
    let progress = archive.snapshot();
    ArchiveStatus {
        enabled: node.config().archive.enabled,
        location: progress.location,
        cursor: a.cursor,
        pending: a.pending,
        lag_entries: crate::trim::archive_lag(state),
        blocks: a.blocks,
        bytes: a.bytes,
        uncompressed_bytes: a.uncompressed_bytes,
        last_block: a.last_block.clone(),
        skipped_entries: a.skipped_entries,
        phase: progress.phase.as_str().to_string(),
        last_error: progress.last_error,
        misconfigured: progress.misconfigured,
    }
}

#[cfg(test)]
mod tests {
    use super::QuorumStatus;

    #[test]
    fn the_margin_is_what_the_reachable_voters_exceed_the_quorum_by() {
        let three = QuorumStatus::new(3, Some(3));
        assert_eq!((three.quorum, three.failures_tolerated_by_design), (2, 1));
        assert_eq!(three.failures_tolerated_now, Some(1));
        assert_eq!(
            QuorumStatus::new(3, Some(2)).failures_tolerated_now,
            Some(0)
        );
        assert_eq!(
            QuorumStatus::new(3, Some(1)).failures_tolerated_now,
            Some(0)
        );
        let one = QuorumStatus::new(1, Some(1));
        assert_eq!((one.quorum, one.failures_tolerated_by_design), (1, 0));
        let five = QuorumStatus::new(5, None);
        assert_eq!((five.quorum, five.failures_tolerated_by_design), (3, 2));
        assert_eq!(five.failures_tolerated_now, None, "only the leader knows");
        let four = QuorumStatus::new(4, Some(4));
        assert_eq!((four.quorum, four.failures_tolerated_now), (3, Some(1)));
    }
}
