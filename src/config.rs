//! Per-node configuration: one TOML file, overridable by `OTELRAFT_*`
//! environment variables, validated before anything starts.
//!
//! Override names are the TOML path in upper case, with `__` between table
//! levels: `OTELRAFT_NODE_ID=2`, `OTELRAFT_LISTEN__OTLP_GRPC=127.0.0.2:4317`,
//! `OTELRAFT_INGEST__MAX_REQUEST_BYTES=1048576`. Values are parsed as TOML
//! scalars when they look like one (numbers, booleans) and as strings
//! otherwise. Every error names the field at fault.
//!
//! Three steps, in order: parse (TOML, then the overrides), validate (pure:
//! the fields and their relations, no file is read), then load the material
//! the files name, once ([`Material`]: TLS, tokens, and a check of each
//! sink's and the archive's secrets). `serve` and `check-config` take all
//! three; tools that need no TLS stop after the second.
//!
//! # Layout
//!
//! - `sections`: the tables of the node file and their defaults.
//! - `archive`, `sink`: the `[archive]` and `[sinks.<name>]` sections.
//! - `validate`: the checks between fields.
//! - `memory`: the memory bound the configuration implies, term by term.
//! - `env`: `OTELRAFT_*` overrides.
//! - `redact`: the printed configuration, secrets hidden.
//! - `material`: the files the configuration names, loaded once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod archive;
mod env;
pub mod material;
pub mod memory;
mod redact;
mod sections;
pub mod sink;
mod validate;

#[cfg(test)]
mod tests;

use self::env::apply_override;
use self::validate::host_of;

pub use self::archive::ArchiveConfig;
pub use self::material::Material;
pub use self::sections::{
    Advertise, ClusterSection, DrainSection, IngestLimits, IngestSection, InitialMember, Listen,
    PeerSection, RaftSection,
};
pub use self::sink::SinkConfig;

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
    /// Connection caps and timeouts of every listener.
    #[serde(default)]
    pub connections: crate::tls::ConnectionsSection,
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

    /// The hosts other members dial this node at (`advertise.peer` and
    /// `advertise.admin`), which its certificate must cover.
    pub fn advertised_hosts(&self) -> Vec<&str> {
        [&self.advertise.peer, &self.advertise.admin]
            .into_iter()
            .filter_map(|addr| host_of(addr))
            .collect()
    }
}
