//! The `[sinks.<name>]` sections of the node config.
//!
//! Sinks are a cluster-wide setting: every member should carry the same
//! sections, because whichever member leads runs the exporters, and the batch
//! limits decide where batches end. The sink name is the key of its cursor
//! in the replicated state: renaming a sink starts it again from index 0.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Which protocol a sink speaks.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// Prometheus remote write 1.0 (metrics).
    PrometheusRemoteWrite,
    /// Loki push API, protobuf with block snappy (logs).
    Loki,
    /// Loki 3's OTLP/HTTP logs endpoint, `/otlp/v1/logs` (logs).
    LokiOtlp,
}

impl SinkKind {
    /// The name used in config, metrics and status.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::PrometheusRemoteWrite => "prometheus_remote_write",
            SinkKind::Loki => "loki",
            SinkKind::LokiOtlp => "loki_otlp",
        }
    }
}

/// One sink.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// The protocol.
    pub kind: SinkKind,
    /// Full URL requests are posted to, for example
    /// `http://prometheus:9090/api/v1/write` or
    /// `http://loki:3100/loki/api/v1/push`.
    pub endpoint: String,
    /// Prometheus only: base URL of the HTTP query API, used after a
    /// failover to read back the export-cursor marker series. Default: the
    /// endpoint's scheme, host and port.
    #[serde(default)]
    pub query_endpoint: String,
    /// Extra request headers (for example `X-Scope-OrgID`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Timeout of one request.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Most log entries in one batch.
    #[serde(default = "defaults::max_batch_entries")]
    pub max_batch_entries: u64,
    /// Most OTLP payload bytes read into one batch. A single larger entry
    /// still goes out alone: entries are never split across batches.
    #[serde(default = "defaults::max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// First retry delay after a retryable failure.
    #[serde(default = "defaults::retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Cap of the exponential retry delay.
    #[serde(default = "defaults::retry_max_ms")]
    pub retry_max_ms: u64,
    /// For an https endpoint: trust only the CA certificates in this PEM
    /// file instead of the system's roots.
    #[serde(default)]
    pub ca_file: PathBuf,
    /// Send `Authorization: Bearer <token>` with the first token in this
    /// file (the format of `auth.*_tokens_file`).
    #[serde(default)]
    pub bearer_token_file: PathBuf,
    /// Send HTTP basic authentication as this user, with the password read
    /// from `basic_auth_password_file`.
    #[serde(default)]
    pub basic_auth_username: String,
    /// The basic-authentication password (first line of the file).
    #[serde(default)]
    pub basic_auth_password_file: PathBuf,
}

/// The `Authorization` header value a sink sends, from its secret files.
/// `field_prefix` is `sinks.<name>`, for errors that name the field.
pub(crate) fn sink_authorization(
    config: &SinkConfig,
    field_prefix: &str,
) -> Result<Option<String>, ConfigError> {
    let first_line = |field: &str, path: &Path| -> Result<String, ConfigError> {
        crate::auth::first_token_in(path)
            .map_err(|e| ConfigError::field(&format!("{field_prefix}.{field}"), e))
    };
    let bearer = !config.bearer_token_file.as_os_str().is_empty();
    let basic = !config.basic_auth_username.is_empty();
    if bearer && basic {
        return Err(ConfigError::field(
            &format!("{field_prefix}.bearer_token_file"),
            "set either a bearer token or basic authentication, not both",
        ));
    }
    if config
        .headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("authorization"))
        && (bearer || basic)
    {
        return Err(ConfigError::field(
            &format!("{field_prefix}.headers.authorization"),
            "conflicts with bearer_token_file / basic_auth_username",
        ));
    }
    if bearer {
        let token = first_line("bearer_token_file", &config.bearer_token_file)?;
        return Ok(Some(format!("Bearer {token}")));
    }
    if basic {
        if config.basic_auth_password_file.as_os_str().is_empty() {
            return Err(ConfigError::field(
                &format!("{field_prefix}.basic_auth_password_file"),
                "required with basic_auth_username",
            ));
        }
        let password = first_line("basic_auth_password_file", &config.basic_auth_password_file)?;
        use base64::Engine;
        let pair = format!("{}:{password}", config.basic_auth_username);
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair.as_bytes());
        return Ok(Some(format!("Basic {encoded}")));
    }
    Ok(None)
}

/// The CA bundle of an https sink, if `ca_file` is set.
pub(crate) fn sink_roots(
    config: &SinkConfig,
    field_prefix: &str,
) -> Result<Option<Vec<reqwest::Certificate>>, ConfigError> {
    if config.ca_file.as_os_str().is_empty() {
        return Ok(None);
    }
    let field = format!("{field_prefix}.ca_file");
    let pem = std::fs::read(&config.ca_file).map_err(|e| {
        ConfigError::field(
            &field,
            format!("cannot read {}: {e}", config.ca_file.display()),
        )
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| ConfigError::field(&field, format!("{}: {e}", config.ca_file.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::field(
            &field,
            format!("{} holds no PEM certificate", config.ca_file.display()),
        ));
    }
    Ok(Some(certs))
}

mod defaults {
    pub fn timeout_ms() -> u64 {
        10_000
    }
    pub fn max_batch_entries() -> u64 {
        256
    }
    pub fn max_batch_bytes() -> usize {
        4 << 20
    }
    pub fn retry_initial_ms() -> u64 {
        100
    }
    pub fn retry_max_ms() -> u64 {
        10_000
    }
}

impl SinkConfig {
    /// The query API base URL (explicit, or derived from the endpoint).
    pub fn query_base(&self) -> String {
        if !self.query_endpoint.is_empty() {
            return self.query_endpoint.trim_end_matches('/').to_string();
        }
        match reqwest::Url::parse(&self.endpoint) {
            Ok(url) => url.origin().ascii_serialization(),
            Err(_) => self.endpoint.clone(),
        }
    }

    /// Checks one sink; `field` is `sinks.<name>`.
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let field = |f: &str| format!("sinks.{name}.{f}");
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(ConfigError::field(
                &format!("sinks.{name}"),
                "sink names use only a-z, 0-9 and _ (the name keys the sink's replicated cursor and its env overrides)",
            ));
        }
        validate_url(&field("endpoint"), &self.endpoint)?;
        if !self.query_endpoint.is_empty() {
            validate_url(&field("query_endpoint"), &self.query_endpoint)?;
        }
        for (key, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(key.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(value).is_err()
            {
                return Err(ConfigError::field(
                    &field(&format!("headers.{key}")),
                    "is not a valid HTTP header",
                ));
            }
        }
        for (f, v) in [
            ("timeout_ms", self.timeout_ms),
            ("max_batch_entries", self.max_batch_entries),
            ("max_batch_bytes", self.max_batch_bytes as u64),
            ("retry_initial_ms", self.retry_initial_ms),
        ] {
            if v == 0 {
                return Err(ConfigError::field(&field(f), "must be positive"));
            }
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return Err(ConfigError::field(
                &field("retry_max_ms"),
                "must be at least retry_initial_ms",
            ));
        }
        Ok(())
    }
}

impl SinkConfig {
    /// Reads the secret and CA files sink `name` names: `Material` checks
    /// them once at start-up; the sink reads them again each time an
    /// exporter starts, so a rotated token takes effect at the next leader.
    pub fn check_files(&self, name: &str) -> Result<(), ConfigError> {
        sink_authorization(self, &format!("sinks.{name}"))?;
        sink_roots(self, &format!("sinks.{name}"))?;
        Ok(())
    }
}

fn validate_url(field: &str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(ConfigError::field(
            field,
            format!("`{url}` is not an http(s) URL"),
        )),
        Err(e) => Err(ConfigError::field(field, format!("`{url}`: {e}"))),
    }
}
