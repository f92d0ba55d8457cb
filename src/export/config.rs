//! The `[sinks.<name>]` sections of the node config.
//!
//! Sinks are a cluster-wide setting: every member should carry the same
//! sections, because whichever member leads runs the exporters, and the batch
//! limits decide where batches end. The sink name is the key of its cursor
//! in the replicated state: renaming a sink starts it again from index 0.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

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
