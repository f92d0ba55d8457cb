//! The memory bound a configuration implies: what a node may hold at once,
//! whatever its clients and peers send, term by term. `check-config` prints
//! it and `serve` logs it at start-up; `docs/architecture.md` derives each
//! term and the hostile-input suite measures them.

use super::sink::SinkKind;
use super::NodeConfig;

/// A node's RSS before any request: the binary, the runtime and its
/// threads, the state machine of an empty cluster. Measured at 66–70 MiB
/// (debug build, `tests/hostile*.rs`), with room to spare.
pub const BASELINE_BYTES: usize = 96 << 20;

/// Bytes one export batch may derive from its entries (labels, names,
/// lines and their bookkeeping), on top of the entries themselves
/// (see `export::budget`).
pub const DERIVED_BYTES_PER_BATCH: usize = 64 << 20;

/// Largest answer a sink's query API may give one read-back
/// (`export::http`); the rest is never read.
pub const MAX_QUERY_RESPONSE_BYTES: usize = 16 << 20;

/// What openraft reads from the log for one AppendEntries: entries until
/// the one that brings the total past this (`store::log`'s
/// `limited_get_log_entries`), so at most this plus one entry. The message
/// sent is cut from what was read, never more.
pub const REPLICATION_READ_BYTES: usize = 4 << 20;

/// Framing and the node label on top of a request: an entry is at most
/// `ingest.max_request_bytes` plus this.
pub const ENTRY_OVERHEAD_BYTES: usize = 1 << 20;

/// One term of the bound: the setting or part it comes from, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub what: String,
    pub bytes: u64,
}

/// The bound, term by term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBound {
    pub terms: Vec<Term>,
}

impl MemoryBound {
    pub fn total(&self) -> u64 {
        self.terms.iter().map(|t| t.bytes).sum()
    }
}

impl std::fmt::Display for MemoryBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} MiB:", self.total() >> 20)?;
        for term in &self.terms {
            write!(f, " {} {} MiB;", term.what, term.bytes >> 20)?;
        }
        Ok(())
    }
}

impl NodeConfig {
    /// The most memory this node holds at once under this configuration,
    /// with `peers` other members. Snapshots are not in it: one being sent
    /// or received is held whole, up to `peer.max_snapshot_bytes`.
    pub fn memory_bound(&self, peers: usize) -> MemoryBound {
        let mut terms = vec![
            term("baseline", BASELINE_BYTES),
            term("raft.db_cache_bytes", self.db_cache_bytes()),
            term(
                "ingest.decode_memory_bytes",
                self.ingest.decode_memory_bytes,
            ),
            term("ingest.max_inflight_bytes", self.ingest.max_inflight_bytes),
        ];
        // Every reader of the log (replication, a sink, the archive) stops
        // after the entry that passes its budget, so it holds its budget
        // plus at most one entry.
        let entry = self.ingest.max_request_bytes + ENTRY_OVERHEAD_BYTES;
        // Per peer being sent to: what openraft read, and the message cut
        // from it (at most `peer.max_append_bytes`, or one entry if larger).
        // The one being received: the message and the entries decoded
        // from it.
        let read = REPLICATION_READ_BYTES + entry;
        let message = self.peer.max_append_bytes.max(entry).min(read);
        terms.push(term(
            &format!(
                "peer appends ({peers} sent: the entries read and the message; 1 received: the message and its entries)"
            ),
            (read + message) * peers + 2 * message,
        ));
        // Applying committed entries reads them the same way
        // (`store::log`'s `entries_stream`).
        terms.push(term("applying (the entries read for one step)", read));
        for (name, sink) in &self.sinks {
            terms.push(term(
                &format!(
                    "sinks.{name} (derived budget, and the entries of max_batch_bytes plus one)"
                ),
                DERIVED_BYTES_PER_BATCH + sink.max_batch_bytes + entry,
            ));
            // A Loki read-back decodes the batch's body again (within the
            // derived budget, after the entries were dropped) and holds
            // one query answer at a time.
            if matches!(sink.kind, SinkKind::Loki | SinkKind::LokiOtlp) {
                terms.push(term(
                    &format!("sinks.{name} read-back (one query answer)"),
                    MAX_QUERY_RESPONSE_BYTES,
                ));
            }
        }
        if self.archive.enabled {
            // The open block's rows (up to the one that fills it) and its
            // compressed copy.
            terms.push(term(
                "archive.block_max_bytes (the rows of a block plus one, and their compressed copy)",
                2 * (self.archive.block_max_bytes + entry),
            ));
        }
        MemoryBound { terms }
    }

    /// The other members this node starts with: the initial members, or
    /// two for a node that joins.
    pub fn peer_count(&self) -> usize {
        match self.cluster.initial_members.len() {
            0 => 2,
            n => n - 1,
        }
    }
}

fn term(what: &str, bytes: usize) -> Term {
    Term {
        what: what.to_string(),
        bytes: bytes as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn with_sinks_and_archive() -> NodeConfig {
        let toml = r#"
node_id = 1
data_dir = "/tmp/x"

[listen]
otlp_grpc = "127.0.0.1:4317"
otlp_http = "127.0.0.1:4318"
peer = "127.0.0.1:4400"
admin = "127.0.0.1:4480"

[sinks.prom]
kind = "prometheus_remote_write"
endpoint = "http://127.0.0.1:9090/api/v1/write"

[sinks.loki]
kind = "loki"
endpoint = "http://127.0.0.1:3100/loki/api/v1/push"

[archive]
enabled = true
dir = "/tmp/archive"
"#;
        NodeConfig::from_toml_and_env(toml, "t", Vec::new()).expect("config")
    }

    #[test]
    fn the_default_configuration_of_a_three_node_member_stays_under_one_gib() {
        let config = with_sinks_and_archive();
        let bound = config.memory_bound(2);
        assert!(bound.total() < 1024 * MIB, "{bound}");
        // Every term a setting pays for is there, named.
        let text = bound.to_string();
        for name in [
            "raft.db_cache_bytes 256 MiB",
            "ingest.decode_memory_bytes 192 MiB",
            "ingest.max_inflight_bytes 96 MiB",
            "sinks.prom",
            "sinks.loki",
            "archive.block_max_bytes",
            "peer appends (2 sent",
        ] {
            assert!(text.contains(name), "{name}: {text}");
        }
    }

    #[test]
    fn an_entry_larger_than_the_append_budget_is_what_an_append_holds() {
        let mut config = with_sinks_and_archive();
        config.ingest.max_request_bytes = 100 << 20;
        let peers = config
            .memory_bound(2)
            .terms
            .into_iter()
            .find(|t| t.what.starts_with("peer appends"))
            .expect("peer term");
        // Each peer sent to: 4 MiB read plus one entry of 101 MiB, and the
        // message of that entry; the one received: twice the message.
        assert_eq!(peers.bytes, 2 * (105 + 101) * MIB + 2 * 101 * MIB);
    }
}
