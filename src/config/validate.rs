//! The checks between fields that types alone cannot express. Pure: no
//! file is read here (see `material`).

use super::{ConfigError, NodeConfig};

impl NodeConfig {
    /// Checks relations between fields that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::field("node_id", "must be a positive integer"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::field("data_dir", "must not be empty"));
        }
        for (field, addr) in [
            ("advertise.peer", &self.advertise.peer),
            ("advertise.admin", &self.advertise.admin),
        ] {
            validate_host_port(field, addr)?;
        }
        let r = &self.raft;
        if r.heartbeat_interval_ms == 0 {
            return Err(ConfigError::field(
                "raft.heartbeat_interval_ms",
                "must be positive",
            ));
        }
        if r.election_timeout_min_ms <= r.heartbeat_interval_ms {
            return Err(ConfigError::field(
                "raft.election_timeout_min_ms",
                "must be greater than raft.heartbeat_interval_ms",
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return Err(ConfigError::field(
                "raft.election_timeout_max_ms",
                "must be greater than raft.election_timeout_min_ms",
            ));
        }
        if r.snapshot_every_entries == 0 {
            return Err(ConfigError::field(
                "raft.snapshot_every_entries",
                "must be positive",
            ));
        }
        if r.max_entries_per_append == 0 {
            return Err(ConfigError::field(
                "raft.max_entries_per_append",
                "must be positive",
            ));
        }
        let i = &self.ingest;
        if i.max_request_bytes == 0 {
            return Err(ConfigError::field(
                "ingest.max_request_bytes",
                "must be positive",
            ));
        }
        if i.max_inflight_bytes < i.max_request_bytes {
            return Err(ConfigError::field(
                "ingest.max_inflight_bytes",
                "must be at least ingest.max_request_bytes, or the largest request could never be accepted",
            ));
        }
        if i.decode_memory_bytes < 2 * i.max_request_bytes {
            return Err(ConfigError::field(
                "ingest.decode_memory_bytes",
                "must be at least twice ingest.max_request_bytes, or the largest request could never be decoded",
            ));
        }
        if i.decode_concurrency == 0 {
            return Err(ConfigError::field(
                "ingest.decode_concurrency",
                "must be positive",
            ));
        }
        if i.decode_wait_ms == 0 {
            return Err(ConfigError::field(
                "ingest.decode_wait_ms",
                "must be positive",
            ));
        }
        if i.node_label_key.is_empty() {
            return Err(ConfigError::field(
                "ingest.node_label_key",
                "must not be empty",
            ));
        }
        if i.commit_timeout_ms == 0 {
            return Err(ConfigError::field(
                "ingest.commit_timeout_ms",
                "must be positive",
            ));
        }
        let p = &self.peer;
        if p.connect_timeout_ms == 0 || p.rpc_timeout_ms == 0 {
            return Err(ConfigError::field(
                "peer.rpc_timeout_ms",
                "timeouts must be positive",
            ));
        }
        if p.max_message_bytes < i.max_request_bytes + (1 << 20) {
            return Err(ConfigError::field(
                "peer.max_message_bytes",
                "must exceed ingest.max_request_bytes by at least 1 MiB of framing",
            ));
        }
        if p.max_append_bytes == 0 || p.max_message_bytes < p.max_append_bytes + (1 << 20) {
            return Err(ConfigError::field(
                "peer.max_append_bytes",
                "must be positive, and peer.max_message_bytes must exceed it by at least 1 MiB of framing",
            ));
        }
        if p.max_snapshot_bytes == 0 {
            return Err(ConfigError::field(
                "peer.max_snapshot_bytes",
                "must be positive",
            ));
        }
        if self.cluster.bootstrap {
            if self.cluster.initial_members.is_empty() {
                return Err(ConfigError::field(
                    "cluster.initial_members",
                    "must list the voters when cluster.bootstrap is true",
                ));
            }
            if !self
                .cluster
                .initial_members
                .iter()
                .any(|m| m.id == self.node_id)
            {
                return Err(ConfigError::field(
                    "cluster.initial_members",
                    "must include this node's node_id",
                ));
            }
        }
        for (n, addr) in self.cluster.join.iter().enumerate() {
            validate_host_port(&format!("cluster.join[{n}]"), addr)?;
        }
        if self.drain.timeout_ms < self.ingest.commit_timeout_ms {
            return Err(ConfigError::field(
                "drain.timeout_ms",
                "must be at least ingest.commit_timeout_ms, or a drain could cut off requests still waiting for their commit",
            ));
        }
        // Members authenticate each other by their TLS certificates. With
        // tokens on the front doors but no TLS, the peer port would take
        // forwarded writes, votes and snapshots from anyone who reaches it,
        // and the tokens would cross the network in plaintext.
        let l = &self.ingest.limits;
        for (field, value) in [
            ("ingest.limits.max_name_bytes", l.max_name_bytes),
            (
                "ingest.limits.max_attribute_key_bytes",
                l.max_attribute_key_bytes,
            ),
            (
                "ingest.limits.max_attribute_value_bytes",
                l.max_attribute_value_bytes,
            ),
            ("ingest.limits.max_attributes", l.max_attributes),
            ("ingest.limits.max_buckets", l.max_buckets),
            ("ingest.limits.max_records", l.max_records),
            ("ingest.limits.max_value_depth", l.max_value_depth as usize),
        ] {
            if value == 0 {
                return Err(ConfigError::field(field, "must be positive"));
            }
        }
        let c = &self.connections;
        if c.max_per_listener <= c.member_reserve {
            return Err(ConfigError::field(
                "connections.member_reserve",
                "must be below connections.max_per_listener, or no client could ever connect",
            ));
        }
        for (field, value) in [
            ("connections.max_per_client", c.max_per_client as u64),
            (
                "connections.header_read_timeout_ms",
                c.header_read_timeout_ms,
            ),
            ("connections.body_timeout_ms", c.body_timeout_ms),
            ("connections.request_timeout_ms", c.request_timeout_ms),
            (
                "connections.max_streams_per_connection",
                u64::from(c.max_streams_per_connection),
            ),
            ("connections.keepalive_interval_ms", c.keepalive_interval_ms),
            (
                "connections.decodes_per_connection",
                c.decodes_per_connection as u64,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::field(field, "must be positive"));
            }
        }
        if self.auth.enabled && !self.tls.enabled {
            return Err(ConfigError::field(
                "auth.enabled",
                "needs tls.enabled = true: without TLS the peer port cannot tell members from strangers (anyone reaching it could commit writes or take over the cluster) and tokens travel in plaintext",
            ));
        }
        if self.tls.enabled && self.tls.handshake_timeout_ms == 0 {
            return Err(ConfigError::field(
                "tls.handshake_timeout_ms",
                "must be positive",
            ));
        }
        self.archive.validate()?;
        for (name, sink) in &self.sinks {
            sink.validate(name)?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (n, m) in self.cluster.initial_members.iter().enumerate() {
            let field = format!("cluster.initial_members[{n}]");
            if m.id == 0 || !seen.insert(m.id) {
                return Err(ConfigError::field(
                    &format!("{field}.id"),
                    "must be positive and unique",
                ));
            }
            validate_host_port(&format!("{field}.peer_addr"), &m.peer_addr)?;
            validate_host_port(&format!("{field}.admin_addr"), &m.admin_addr)?;
            if m.id == self.node_id && m.role != self.role {
                return Err(ConfigError::field(
                    &format!("{field}.role"),
                    format!("is `{}` but this node's `role` is `{}`", m.role, self.role),
                ));
            }
        }
        let members = &self.cluster.initial_members;
        let witnesses = members
            .iter()
            .filter(|m| m.role == crate::raft::Role::Witness)
            .count();
        let data = members.len() - witnesses;
        if !members.is_empty() && data == 0 {
            return Err(ConfigError::field(
                "cluster.initial_members",
                "needs at least one data member: a witness never leads",
            ));
        }
        if witnesses > data {
            return Err(ConfigError::field(
                "cluster.initial_members",
                format!("has {witnesses} witnesses for {data} data members: witnesses may not outnumber data members"),
            ));
        }
        Ok(())
    }
}

/// The host of a `host:port` address, without IPv6 brackets.
pub(super) fn host_of(addr: &str) -> Option<&str> {
    let (host, _) = addr.rsplit_once(':')?;
    Some(host.trim_start_matches('[').trim_end_matches(']'))
}

pub(super) fn validate_host_port(field: &str, addr: &str) -> Result<(), ConfigError> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(ConfigError::field(
            field,
            format!("`{addr}` is not host:port"),
        ));
    };
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(ConfigError::field(
            field,
            format!("`{addr}` is not host:port with a non-zero port"),
        ));
    }
    if host == "0.0.0.0" || host == "[::]" {
        return Err(ConfigError::field(
            field,
            format!(
                "`{addr}` is a wildcard; other members cannot dial it (set advertise addresses)"
            ),
        ));
    }
    Ok(())
}
