//! The files a configuration names, read once at start-up: the TLS
//! certificates and keys, and the token lists. `serve` hands the result to
//! the listeners, the peer clients and the node; `check-config` loads it
//! to prove the files are usable. Errors name the field that names the file.
//!
//! Sink and archive secrets are checked here as well, but not kept: each
//! sink and the archive read their own files when they start, so a rotated
//! token takes effect at the next leader without a restart.

use std::sync::Arc;
use std::time::Duration;

use super::{ConfigError, NodeConfig};
use crate::auth::{AuthConfigError, Tokens};
use crate::tls::material::TlsFiles;
use crate::tls::{ClientTls, ServerTls, TlsError};

/// What a running node needs from the files its configuration names.
#[derive(Clone, Default)]
pub struct Material {
    /// The listeners' TLS (`None`: plaintext).
    pub server_tls: Option<Arc<ServerTls>>,
    /// The identity and CA for calls to other members (`None`: plaintext).
    pub client_tls: Option<ClientTls>,
    /// The bearer tokens (`None`: `[auth]` is off).
    pub tokens: Option<Arc<Tokens>>,
}

impl Material {
    /// Reads every file `config` names, once. With `tls.enabled` the files
    /// must exist and parse, the key must go with the certificate, and the
    /// certificate must chain to the CA, name this node and cover the hosts
    /// other members dial.
    pub fn load(config: &NodeConfig) -> Result<Material, ConfigError> {
        let (server_tls, client_tls) = if config.tls.enabled {
            let files = TlsFiles::load(&config.tls)?;
            files.check_node(config.node_id, &config.advertised_hosts())?;
            let timeout = Duration::from_millis(config.tls.handshake_timeout_ms);
            let server = Arc::new(ServerTls::new(&files, timeout)?);
            (Some(server), Some(files.client()))
        } else {
            (None, None)
        };
        let tokens = Tokens::load(&config.auth)?.map(Arc::new);
        for (name, sink) in &config.sinks {
            sink.check_files(name)?;
        }
        if config.archive.enabled {
            if let Some(s3) = &config.archive.s3 {
                s3.check_files()?;
            }
        }
        Ok(Material {
            server_tls,
            client_tls,
            tokens,
        })
    }
}

impl From<TlsError> for ConfigError {
    fn from(e: TlsError) -> Self {
        match e {
            TlsError::File {
                field,
                path,
                message,
            } => ConfigError::field(&field, format!("cannot read {path}: {message}")),
            TlsError::Invalid { field, message } => ConfigError::field(&field, message),
        }
    }
}

impl From<AuthConfigError> for ConfigError {
    fn from(e: AuthConfigError) -> Self {
        ConfigError::field(e.field, e.message)
    }
}
