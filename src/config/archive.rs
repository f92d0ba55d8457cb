//! The `[archive]` section of the node config.
//!
//! Like sinks, the archive is a cluster-wide setting: every member should
//! carry the same section, because whichever member leads runs the archiver,
//! and every member trims its log behind the archive cursor.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Where and how committed entries are archived.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Archive committed entries at all. When false nothing is archived and
    /// the log is trimmed behind the sink cursors alone.
    pub enabled: bool,
    /// Key prefix of every object, so several clusters can share a bucket.
    pub prefix: String,
    /// Local directory of the embedded archive, used when `s3` is absent.
    /// Default: `<data_dir>/archive`.
    pub dir: PathBuf,
    /// S3-compatible object storage (MinIO, AWS, any S3 server).
    pub s3: Option<S3Config>,
    /// A block is sealed once the encoded entries it holds reach this size.
    pub block_max_bytes: usize,
    /// A block is sealed once its oldest entry was proposed this long ago,
    /// however small it is.
    pub block_max_age_ms: u64,
    /// Blocks uploaded longer ago than this are deleted (whole blocks, and
    /// only blocks the cluster recorded as archived); 0 keeps every block
    /// forever. Fractions are allowed (`0.5` is twelve hours).
    pub retention_days: f64,
    /// Timeout of one object-store request.
    pub request_timeout_ms: u64,
    /// First retry delay after a failed upload.
    pub retry_initial_ms: u64,
    /// Cap of the exponential retry delay.
    pub retry_max_ms: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            enabled: true,
            prefix: "otelraft".to_string(),
            dir: PathBuf::new(),
            s3: None,
            block_max_bytes: 8 << 20,
            block_max_age_ms: 60_000,
            retention_days: 0.0,
            request_timeout_ms: 30_000,
            retry_initial_ms: 200,
            retry_max_ms: 10_000,
        }
    }
}

/// An S3-compatible bucket. Credentials have no defaults: they come from
/// this section (usually through `OTELRAFT_ARCHIVE__S3__*` variables), from
/// `credentials_file`, or from the standard `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY` variables, in that order.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Base URL of the S3 API, for example `http://minio:9000`. Required:
    /// without it the client would fall back to AWS's metadata service.
    pub endpoint: String,
    /// The bucket; it must exist.
    pub bucket: String,
    /// Signing region.
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key id.
    #[serde(default)]
    pub access_key_id: String,
    /// Secret access key.
    #[serde(default)]
    pub secret_access_key: String,
    /// A file holding the credentials, either AWS's shared-credentials format
    /// (`aws_access_key_id = …` under `[default]`) or `KEY=value` lines.
    #[serde(default)]
    pub credentials_file: PathBuf,
    /// Allow a plain-HTTP endpoint (test servers and private networks).
    #[serde(default)]
    pub allow_http: bool,
    /// Path-style requests (`endpoint/bucket/key`), which MinIO and most
    /// self-hosted servers need. False uses virtual-hosted style.
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// For an https endpoint: trust only the CA certificates in this PEM
    /// file instead of the system's roots.
    #[serde(default)]
    pub ca_file: PathBuf,
}

// The secret never reaches a log line or an error message.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("credentials_file", &self.credentials_file)
            .field("allow_http", &self.allow_http)
            .field("path_style", &self.path_style)
            .finish()
    }
}

fn default_region() -> String {
    "us-east-1".to_string()
}

fn default_true() -> bool {
    true
}

/// Resolved S3 credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl ArchiveConfig {
    /// Fills the defaults that depend on other fields.
    pub(crate) fn resolve(&mut self, data_dir: &Path) {
        if self.dir.as_os_str().is_empty() {
            self.dir = data_dir.join("archive");
        }
    }

    /// Checks the section; errors name the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if self.prefix.is_empty()
            || self.prefix.starts_with('/')
            || self.prefix.ends_with('/')
            || self
                .prefix
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(ConfigError::field(
                "archive.prefix",
                "must be a non-empty relative key prefix without empty, `.` or `..` segments",
            ));
        }
        if self.block_max_bytes < 4096 {
            return Err(ConfigError::field(
                "archive.block_max_bytes",
                "must be at least 4096",
            ));
        }
        if self.block_max_age_ms == 0 {
            return Err(ConfigError::field(
                "archive.block_max_age_ms",
                "must be positive",
            ));
        }
        if !(self.retention_days >= 0.0 && self.retention_days.is_finite()) {
            return Err(ConfigError::field(
                "archive.retention_days",
                "must be 0 (keep forever) or a positive number of days",
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err(ConfigError::field(
                "archive.request_timeout_ms",
                "must be positive",
            ));
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return Err(ConfigError::field(
                "archive.retry_max_ms",
                "retry delays must be positive and retry_max_ms >= retry_initial_ms",
            ));
        }
        if let Some(s3) = &self.s3 {
            s3.validate()?;
        }
        Ok(())
    }
}

impl S3Config {
    fn validate(&self) -> Result<(), ConfigError> {
        let endpoint = self.endpoint.as_str();
        let scheme_ok = endpoint.starts_with("https://")
            || (endpoint.starts_with("http://") && self.allow_http);
        if !scheme_ok {
            return Err(ConfigError::field(
                "archive.s3.endpoint",
                "must be an https:// URL, or http:// with archive.s3.allow_http = true",
            ));
        }
        if self.bucket.is_empty() {
            return Err(ConfigError::field("archive.s3.bucket", "must not be empty"));
        }
        if self.region.is_empty() {
            return Err(ConfigError::field("archive.s3.region", "must not be empty"));
        }
        Ok(())
    }

    /// Reads the files the section names (credentials, CA): `Material`
    /// checks them once at start-up; the archive reads them again when it
    /// opens the store, so a rotated file takes effect then.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        self.credentials(std::env::vars())?;
        self.roots()?;
        Ok(())
    }

    /// The CA certificates of `ca_file` (PEM), if set.
    pub fn roots(&self) -> Result<Vec<object_store::Certificate>, ConfigError> {
        if self.ca_file.as_os_str().is_empty() {
            return Ok(Vec::new());
        }
        let field = "archive.s3.ca_file";
        let pem = std::fs::read(&self.ca_file).map_err(|e| {
            ConfigError::field(
                field,
                format!("cannot read {}: {e}", self.ca_file.display()),
            )
        })?;
        let certs = object_store::Certificate::from_pem_bundle(&pem)
            .map_err(|e| ConfigError::field(field, format!("{}: {e}", self.ca_file.display())))?;
        if certs.is_empty() {
            return Err(ConfigError::field(
                field,
                format!("{} holds no PEM certificate", self.ca_file.display()),
            ));
        }
        Ok(certs)
    }

    /// The credentials: this section, then `credentials_file`, then the
    /// standard AWS variables in `env`. Errors name the field to set.
    pub fn credentials(
        &self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Credentials, ConfigError> {
        if !self.access_key_id.is_empty() || !self.secret_access_key.is_empty() {
            if self.access_key_id.is_empty() || self.secret_access_key.is_empty() {
                return Err(ConfigError::field(
                    "archive.s3.secret_access_key",
                    "access_key_id and secret_access_key must be set together",
                ));
            }
            return Ok(Credentials {
                access_key_id: self.access_key_id.clone(),
                secret_access_key: self.secret_access_key.clone(),
            });
        }
        if !self.credentials_file.as_os_str().is_empty() {
            let text = std::fs::read_to_string(&self.credentials_file).map_err(|e| {
                ConfigError::field(
                    "archive.s3.credentials_file",
                    format!("cannot read {}: {e}", self.credentials_file.display()),
                )
            })?;
            return parse_credentials_file(&text).ok_or_else(|| {
                ConfigError::field(
                    "archive.s3.credentials_file",
                    "holds no aws_access_key_id and aws_secret_access_key (or ACCESS_KEY_ID and SECRET_ACCESS_KEY) pair",
                )
            });
        }
        let mut id = None;
        let mut secret = None;
        for (k, v) in env {
            match k.as_str() {
                "AWS_ACCESS_KEY_ID" => id = Some(v),
                "AWS_SECRET_ACCESS_KEY" => secret = Some(v),
                _ => {}
            }
        }
        match (id, secret) {
            (Some(access_key_id), Some(secret_access_key))
                if !access_key_id.is_empty() && !secret_access_key.is_empty() =>
            {
                Ok(Credentials {
                    access_key_id,
                    secret_access_key,
                })
            }
            _ => Err(ConfigError::field(
                "archive.s3.access_key_id",
                "no credentials: set access_key_id and secret_access_key (OTELRAFT_ARCHIVE__S3__ACCESS_KEY_ID, …), credentials_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            )),
        }
    }
}

/// Reads the first key pair from AWS's shared-credentials format (the
/// `[default]` profile, or the file's only one) or from `KEY=value` lines.
fn parse_credentials_file(text: &str) -> Option<Credentials> {
    let mut profile = String::new();
    let mut id = None;
    let mut secret = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            profile = name.trim().to_string();
            continue;
        }
        if !profile.is_empty() && profile != "default" && id.is_some() {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" | "access_key_id" => id = Some(v),
            "aws_secret_access_key" | "secret_access_key" => secret = Some(v),
            _ => {}
        }
    }
    Some(Credentials {
        access_key_id: id.filter(|s| !s.is_empty())?,
        secret_access_key: secret.filter(|s| !s.is_empty())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file_formats() {
        let aws = "[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n";
        let c = parse_credentials_file(aws).expect("aws format");
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("AK", "SK")
        );
        let env = "ACCESS_KEY_ID=a\nSECRET_ACCESS_KEY=\"b\"\n";
        let c = parse_credentials_file(env).expect("env format");
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("a", "b")
        );
        assert!(parse_credentials_file("[default]\naws_access_key_id = AK\n").is_none());
    }

    #[test]
    fn credentials_come_from_section_then_aws_env() {
        let mut s3 = S3Config {
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "b".into(),
            region: default_region(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            credentials_file: PathBuf::new(),
            allow_http: true,
            path_style: true,
            ca_file: PathBuf::new(),
        };
        let env = vec![
            ("AWS_ACCESS_KEY_ID".to_string(), "envid".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "envsecret".to_string()),
        ];
        assert_eq!(
            s3.credentials(env.clone()).map(|c| c.access_key_id).ok(),
            Some("envid".into())
        );
        let err = s3
            .credentials(Vec::new())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("archive.s3.access_key_id"), "{err}");
        s3.access_key_id = "id".into();
        let err = s3
            .credentials(env.clone())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("together"), "{err}");
        s3.secret_access_key = "secret".into();
        assert_eq!(
            s3.credentials(env).map(|c| c.access_key_id).ok(),
            Some("id".into())
        );
        assert!(
            !format!("{s3:?}").contains("secret\""),
            "Debug must not print the secret"
        );
    }
}
