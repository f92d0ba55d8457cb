//! The memory bound a configuration implies: what a node may hold at once,
//! whatever its clients and peers send, term by term. `check-config` prints
//! it and `serve` logs it at start-up; `docs/architecture.md` derives each
//! term and the hostile-input suite measures them.

use super::NodeConfig;

/// A node's RSS before any request: the binary, the runtime and its
/// threads, the state machine of an empty cluster. Measured at 66–70 MiB
/// (debug build, `tests/hostile*.rs`), with room to spare.
pub const BASELINE_BYTES: usize = 96 << 20;

/// Bytes one export batch may derive from its entries (labels, names,
/// lines and their bookkeeping), on top of the entries themselves
/// (see `export::budget`).
pub const DERIVED_BYTES_PER_BATCH: usize = 64 << 20;

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
        // An append carries at least one entry, and an entry is at most a
        // request of `max_request_bytes` with the node label added.
        let append = self
            .peer
            .max_append_bytes
            .max(self.ingest.max_request_bytes + (1 << 20));
        terms.push(term(
            &format!(
                "peer appends ({peers} sent, 1 received, of max(peer.max_append_bytes, one entry))"
            ),
            append * (peers + 1),
        ));
        for (name, sink) in &self.sinks {
            terms.push(term(
                &format!("sinks.{name} (derived budget and max_batch_bytes)"),
                DERIVED_BYTES_PER_BATCH + sink.max_batch_bytes,
            ));
        }
        if self.archive.enabled {
            // The open block's entries and its compressed copy.
            terms.push(term(
                "archive.block_max_bytes (twice)",
                2 * self.archive.block_max_bytes,
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
            "ingest.max_inflight_bytes 128 MiB",
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
        assert_eq!(peers.bytes, 3 * 101 * MIB);
    }
}
