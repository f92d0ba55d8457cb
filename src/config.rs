//! Per-node configuration: one TOML file, overridable by `OTELRAFT_*`
//! environment variables, validated before anything starts.
//!
//! Override names are the TOML path in upper case, with `__` between table
//! levels: `OTELRAFT_NODE_ID=2`, `OTELRAFT_LISTEN__OTLP_GRPC=127.0.0.2:4317`,
//! `OTELRAFT_INGEST__MAX_REQUEST_BYTES=1048576`. Values are parsed as TOML
//! scalars when they look like one (numbers, booleans) and as strings
//! otherwise. Every error names the field at fault.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::archive::config::ArchiveConfig;
use crate::export::config::SinkConfig;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "OTELRAFT_";

/// Why a configuration was refused. Never retryable: the operator must fix
/// the file or the environment.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A field has the wrong type, is unknown, or is missing.
    #[error("config field `{field}`: {message}")]
    Field {
        /// Dotted path of the field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// Configuration errors are never retryable.
    pub fn retryable(&self) -> bool {
        false
    }

    pub(crate) fn field(field: &str, message: impl Into<String>) -> Self {
        ConfigError::Field {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Everything one node needs to run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This member's id: positive, unique in the cluster, never reused.
    pub node_id: u64,
    /// Human-readable name, added to every resource as the node label.
    /// Defaults to `node-<id>`.
    #[serde(default)]
    pub name: String,
    /// `data` (default) or `witness`: a voter that only keeps the log (see
    /// `docs/operations.md`). A witness ignores `sinks` and `archive`.
    #[serde(default)]
    pub role: crate::raft::Role,
    /// Where the redb database lives.
    pub data_dir: PathBuf,
    /// Local addresses to bind.
    #[serde(default)]
    pub listen: Listen,
    /// Addresses other members and the admin CLI use to reach this node.
    /// Default: the listen addresses (which must then not be wildcards).
    #[serde(default)]
    pub advertise: Advertise,
    /// Cluster formation.
    #[serde(default)]
    pub cluster: ClusterSection,
    /// Raft timing and log retention.
    #[serde(default)]
    pub raft: RaftSection,
    /// OTLP receiver limits.
    #[serde(default)]
    pub ingest: IngestSection,
    /// Member-to-member RPC settings.
    #[serde(default)]
    pub peer: PeerSection,
    /// How a stopping node hands over (SIGTERM, `admin drain`).
    #[serde(default)]
    pub drain: DrainSection,
    /// Export destinations, by sink name. None: the node runs and retains
    /// the data in its log.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Where committed entries are archived (a local directory unless S3
    /// is configured).
    #[serde(default)]
    pub archive: ArchiveConfig,
    /// TLS on every listener and mutual TLS between members.
    #[serde(default)]
    pub tls: crate::tls::TlsSection,
    /// Bearer tokens for the OTLP ports and the admin API.
    #[serde(default)]
    pub auth: crate::auth::AuthSection,
}

/// Bind addresses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// OTLP gRPC.
    pub otlp_grpc: SocketAddr,
    /// OTLP HTTP.
    pub otlp_http: SocketAddr,
    /// Peer gRPC (Raft and forwarded writes).
    pub peer: SocketAddr,
    /// Admin HTTP (status, membership, health, metrics).
    pub admin: SocketAddr,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            otlp_grpc: SocketAddr::from(([0, 0, 0, 0], 4317)),
            otlp_http: SocketAddr::from(([0, 0, 0, 0], 4318)),
            peer: SocketAddr::from(([0, 0, 0, 0], 4400)),
            admin: SocketAddr::from(([0, 0, 0, 0], 4480)),
        }
    }
}

/// Advertised `host:port` strings; empty means "same as listen".
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Advertise {
    /// Peer address other members dial.
    pub peer: String,
    /// Admin address other members and tools call.
    pub admin: String,
}

/// How the cluster is formed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// When true and this node's storage is empty, it initialises the cluster
    /// with `initial_members` on first start. Set it on exactly one node.
    pub bootstrap: bool,
    /// Voters of a freshly bootstrapped cluster (must include this node).
    pub initial_members: Vec<InitialMember>,
    /// Admin `host:port` of members to ask for a place in the cluster. A
    /// node with empty storage asks them to add it as a learner and
    /// promote it; a node with storage never asks (it rejoins as it was).
    /// With `bootstrap` as well, the node initialises a new cluster only if
    /// every listed member answers and none holds a cluster yet.
    pub join: Vec<String>,
}

/// One voter of the initial membership.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InitialMember {
    /// Its node id.
    pub id: u64,
    /// Its peer `host:port`.
    pub peer_addr: String,
    /// Its admin `host:port`.
    pub admin_addr: String,
    /// `data` (default) or `witness`; must match that node's own `role`.
    #[serde(default)]
    pub role: crate::raft::Role,
}

/// Raft timing and retention.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSection {
    /// Leader heartbeat period.
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomised election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomised election timeout.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many applied entries.
    pub snapshot_every_entries: u64,
    /// Most entries in one AppendEntries RPC.
    pub max_entries_per_append: u64,
    /// With no consumer configured (no sink, archive disabled), keep every
    /// entry. False lets such a node drop entries right behind snapshots.
    /// With consumers, entries are always kept until all of them are done.
    pub retain_unconsumed: bool,
    /// Entries Raft keeps behind a snapshot, so that a follower that lags a
    /// little catches up from the log rather than from a snapshot.
    pub log_keep_entries: u64,
    /// Disk budget of the retained log. At or above it the leader refuses
    /// new writes (429 / UNAVAILABLE with a retry hint) until the sinks and
    /// the archive catch up and trimming frees space.
    pub max_log_bytes: u64,
    /// Page cache of the node's database. Unset: 1 GiB on a data node
    /// (recent entries are read back by the exporters and the archiver),
    /// 64 MiB on a witness (it only writes).
    pub db_cache_bytes: Option<usize>,
}

impl NodeConfig {
    /// The database page cache this node uses (see `raft.db_cache_bytes`).
    pub fn db_cache_bytes(&self) -> usize {
        self.raft.db_cache_bytes.unwrap_or(match self.role {
            crate::raft::Role::Data => 1 << 30,
            crate::raft::Role::Witness => 64 << 20,
        })
    }
}

impl Default for RaftSection {
    fn default() -> Self {
        RaftSection {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_every_entries: 20_000,
            max_entries_per_append: 64,
            retain_unconsumed: true,
            log_keep_entries: 10_000,
            max_log_bytes: 16 << 30,
            db_cache_bytes: None,
        }
    }
}

/// OTLP receiver settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    /// Largest request accepted, measured after decompression.
    pub max_request_bytes: usize,
    /// Bytes of requests that may wait for commit on this node at once.
    /// Above it, requests get 429 / UNAVAILABLE with a retry hint.
    pub max_inflight_bytes: usize,
    /// Resource attribute that carries the receiving node's name.
    pub node_label_key: String,
    /// How long a request may wait for its commit before the client is told
    /// to retry.
    pub commit_timeout_ms: u64,
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            max_request_bytes: 64 << 20,
            max_inflight_bytes: 256 << 20,
            node_label_key: "otelraft.node".to_string(),
            commit_timeout_ms: 10_000,
        }
    }
}

/// Member-to-member RPC settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PeerSection {
    /// TCP connect timeout.
    pub connect_timeout_ms: u64,
    /// Timeout of one Raft RPC (AppendEntries, Vote).
    pub rpc_timeout_ms: u64,
    /// Largest peer message; must exceed the largest request plus framing.
    pub max_message_bytes: usize,
}

impl Default for PeerSection {
    fn default() -> Self {
        PeerSection {
            connect_timeout_ms: 1_000,
            rpc_timeout_ms: 2_000,
            max_message_bytes: 1 << 30,
        }
    }
}

/// Graceful stop settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DrainSection {
    /// Longest a drain waits for in-flight requests and the leadership
    /// hand-off before the node stops anyway. Keep the service manager's
    /// stop timeout above it.
    pub timeout_ms: u64,
}

impl Default for DrainSection {
    fn default() -> Self {
        DrainSection { timeout_ms: 30_000 }
    }
}

impl NodeConfig {
    /// Reads `path`, applies `OTELRAFT_*` overrides from the process
    /// environment and validates the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_and_env(&text, &path.display().to_string(), std::env::vars())
    }

    /// Parses TOML text, applies the given overrides and validates. Split
    /// from `load` so tests need not touch the process environment.
    pub fn from_toml_and_env(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut value: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: origin.to_string(),
                    message: e.to_string(),
                })?;
        for (key, raw) in env {
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if rest == "CONFIG" || rest == "LOG" || rest == "ADMIN_TOKEN" {
                continue; // consumed by the command line, not config fields
            }
            apply_override(&mut value, rest, &raw)?;
        }
        let de = toml::Value::Table(value);
        let mut config: NodeConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::field(
                if path == "." { "(root)" } else { &path },
                e.into_inner().to_string(),
            )
        })?;
        if config.name.is_empty() {
            config.name = format!("node-{}", config.node_id);
        }
        if config.advertise.peer.is_empty() {
            config.advertise.peer = config.listen.peer.to_string();
        }
        if config.advertise.admin.is_empty() {
            config.advertise.admin = config.listen.admin.to_string();
        }
        let data_dir = config.data_dir.clone();
        config.archive.resolve(&data_dir);
        config.validate()?;
        Ok(config)
    }

    /// With `tls.enabled`: the files exist and parse, the key goes with the
    /// certificate, and the certificate chains to the CA, names this node
    /// and covers the hosts other members dial. Errors name the field.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        if !self.tls.enabled {
            return Ok(());
        }
        if self.tls.handshake_timeout_ms == 0 {
            return Err(ConfigError::field(
                "tls.handshake_timeout_ms",
                "must be positive",
            ));
        }
        let files = crate::tls::material::TlsFiles::load(&self.tls)?;
        files.check_node(self.node_id, &self.advertised_hosts())?;
        Ok(())
    }

    /// The hosts other members dial this node at (`advertise.peer` and
    /// `advertise.admin`), which its certificate must cover.
    pub fn advertised_hosts(&self) -> Vec<&str> {
        [&self.advertise.peer, &self.advertise.admin]
            .into_iter()
            .filter_map(|addr| host_of(addr))
            .collect()
    }

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
        self.validate_tls()?;
        crate::auth::Tokens::load(&self.auth)?;
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
        if !members.is_empty() && members.iter().all(|m| m.role == crate::raft::Role::Witness) {
            return Err(ConfigError::field(
                "cluster.initial_members",
                "needs at least one data member: a witness never leads",
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML with every secret replaced by
    /// `<redacted>`, for `check-config`.
    pub fn to_redacted_toml(&self) -> String {
        let mut value = match toml::Value::try_from(self) {
            Ok(v) => v,
            Err(e) => return format!("# cannot render: {e}"),
        };
        redact(&mut value, "");
        toml::to_string_pretty(&value).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

/// Marks values whose key names a credential. Header values are redacted
/// when the header name does (`Authorization`, `X-Api-Key`, ...).
fn redact(value: &mut toml::Value, path: &str) {
    let toml::Value::Table(table) = value else {
        return;
    };
    for (key, v) in table.iter_mut() {
        let child = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if let toml::Value::Table(_) = v {
            redact(v, &child);
            continue;
        }
        let in_headers = path.ends_with(".headers");
        let secret = is_secret_name(key) || (in_headers && is_secret_header(key));
        if secret && v.as_str().is_some_and(|s| !s.is_empty()) {
            *v = toml::Value::String("<redacted>".to_string());
        }
    }
}

fn is_secret_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "password", "token"]
        .iter()
        .any(|w| k.contains(w))
        && !k.ends_with("_file")
}

fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "cookie"
        || ["token", "key", "secret", "password", "auth"]
            .iter()
            .any(|w| n.contains(w))
}

/// The host of a `host:port` address, without IPv6 brackets.
fn host_of(addr: &str) -> Option<&str> {
    let (host, _) = addr.rsplit_once(':')?;
    Some(host.trim_start_matches('[').trim_end_matches(']'))
}

fn validate_host_port(field: &str, addr: &str) -> Result<(), ConfigError> {
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

/// Sets `path` (an env suffix such as `LISTEN__OTLP_GRPC`) in the table.
fn apply_override(table: &mut toml::Table, path: &str, raw: &str) -> Result<(), ConfigError> {
    let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
    let field = parts.join(".");
    let (last, parents) = match parts.split_last() {
        Some(split) if !split.0.is_empty() => split,
        _ => return Err(ConfigError::field(&field, "empty override name")),
    };
    let mut cursor = table;
    for p in parents {
        let entry = cursor
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(ConfigError::field(&field, format!("`{p}` is not a table"))),
        };
    }
    // Secrets and header values stay strings: an all-digit token must not
    // turn into a number, fail to deserialize and be echoed in the error.
    let value = if is_secret_name(last) || parents.iter().any(|p| p == "headers") {
        toml::Value::String(raw.to_string())
    } else {
        parse_scalar(raw)
    };
    cursor.insert(last.clone(), value);
    Ok(())
}

fn parse_scalar(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(f) = raw.parse::<f64>() {
        return toml::Value::Float(f);
    }
    toml::Value::String(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
node_id = 1
data_dir = "/tmp/x"
[listen]
otlp_grpc = "127.0.0.1:4317"
otlp_http = "127.0.0.1:4318"
peer = "127.0.0.1:4400"
admin = "127.0.0.1:4480"
"#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c = NodeConfig::from_toml_and_env(MINIMAL, "t", env(&[])).expect("valid");
        assert_eq!(c.name, "node-1");
        assert_eq!(c.advertise.peer, "127.0.0.1:4400");
        assert_eq!(c.ingest.max_request_bytes, 64 << 20);
    }

    #[test]
    fn env_overrides_nested_fields() {
        let c = NodeConfig::from_toml_and_env(
            MINIMAL,
            "t",
            env(&[
                ("OTELRAFT_NODE_ID", "7"),
                ("OTELRAFT_INGEST__MAX_REQUEST_BYTES", "1048576"),
                ("OTELRAFT_NAME", "edge"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.node_id, 7);
        assert_eq!(c.ingest.max_request_bytes, 1 << 20);
        assert_eq!(c.name, "edge");
    }

    #[test]
    fn secret_overrides_stay_strings_and_the_admin_token_is_not_a_field() {
        let c = NodeConfig::from_toml_and_env(
            MINIMAL,
            "t",
            env(&[
                ("OTELRAFT_AUTH__ENABLED", "true"),
                ("OTELRAFT_AUTH__INGEST_TOKENS", "1234567890123456"),
                ("OTELRAFT_AUTH__ADMIN_TOKENS", "99999999999999999999"),
                ("OTELRAFT_ADMIN_TOKEN", "for-the-cli-not-serve"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.auth.ingest_tokens, "1234567890123456");
        assert_eq!(c.auth.admin_tokens, "99999999999999999999");
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("1234567890123456"), "{shown}");
    }

    #[test]
    fn example_configs_in_cluster_dir_are_valid() {
        for (name, text) in [
            ("node1", include_str!("../cluster/node1.toml")),
            ("node2", include_str!("../cluster/node2.toml")),
            ("node3", include_str!("../cluster/node3.toml")),
        ] {
            let c = NodeConfig::from_toml_and_env(text, name, env(&[]))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(c.name, name.replace("node", "node-"));
        }
    }

    #[test]
    fn errors_name_the_field() {
        let err = NodeConfig::from_toml_and_env(
            MINIMAL,
            "t",
            env(&[("OTELRAFT_RAFT__HEARTBEAT_INTERVAL_MS", "abc")]),
        )
        .expect_err("bad type");
        assert!(
            err.to_string().contains("raft.heartbeat_interval_ms"),
            "{err}"
        );
        let err = NodeConfig::from_toml_and_env(&format!("{MINIMAL}\nbogus = 1\n"), "t", env(&[]))
            .expect_err("unknown");
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = NodeConfig::from_toml_and_env(MINIMAL, "t", env(&[("OTELRAFT_NODE_ID", "0")]))
            .expect_err("zero id");
        assert!(err.to_string().contains("node_id"), "{err}");
        let err = NodeConfig::from_toml_and_env(
            MINIMAL,
            "t",
            env(&[("OTELRAFT_CLUSTER__BOOTSTRAP", "true")]),
        )
        .expect_err("bootstrap without members");
        assert!(err.to_string().contains("cluster.initial_members"), "{err}");
        let wildcard = MINIMAL.replace("127.0.0.1:4400", "0.0.0.0:4400");
        let err = NodeConfig::from_toml_and_env(&wildcard, "t", env(&[]))
            .expect_err("wildcard advertise");
        assert!(err.to_string().contains("advertise.peer"), "{err}");
        let err = NodeConfig::from_toml_and_env(
            &format!("{MINIMAL}\n[cluster]\njoin = [\"otelraft-0\"]\n"),
            "t",
            env(&[]),
        )
        .expect_err("join without a port");
        assert!(err.to_string().contains("cluster.join[0]"), "{err}");
    }

    #[test]
    fn printed_config_hides_secrets_but_keeps_the_rest() {
        let text = format!(
            "{MINIMAL}\n[sinks.loki]\nkind = \"loki\"\nendpoint = \"http://127.0.0.1:3100/loki/api/v1/push\"\n\
             [sinks.loki.headers]\nAuthorization = \"Bearer hunter2-token\"\nX-Scope-OrgID = \"tenant-a\"\n\
             [archive.s3]\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"b\"\nallow_http = true\n\
             access_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"s3cr3t-value\"\n"
        );
        let c = NodeConfig::from_toml_and_env(&text, "t", env(&[])).expect("valid");
        let printed = c.to_redacted_toml();
        for secret in ["hunter2-token", "s3cr3t-value"] {
            assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
        }
        for kept in [
            "AKIDEXAMPLE",
            "tenant-a",
            "http://127.0.0.1:9000",
            "<redacted>",
        ] {
            assert!(printed.contains(kept), "{kept} missing:\n{printed}");
        }
        // What is printed is itself a valid config once the secret is set.
        let reparsed = NodeConfig::from_toml_and_env(&printed, "printed", env(&[]))
            .expect("printed config parses");
        assert_eq!(reparsed.node_id, c.node_id);
    }
}
