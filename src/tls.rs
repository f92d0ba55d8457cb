//! TLS on every listener and mutual TLS between members.
//!
//! # Layout
//!
//! - `config`: the `[tls]` section of a node's configuration.
//! - `material`: reads and checks the PEM files (the key matches the
//!   certificate, the certificate chains to the cluster CA and names this
//!   node) and builds the rustls and client configurations from them.
//! - `listener`: the four listeners and the protocols each offers.
//! - `incoming`: the accept loop all four listeners share: TLS handshake,
//!   a clear log line for plaintext clients, and the peer's node identity.
//! - `connections`: the `[connections]` caps and timeouts, and the table of
//!   established connections each accept loop keeps.
//! - `serve`: how the HTTP listeners serve connections (timeouts, HTTP/2
//!   limits, graceful stop).
//! - `identity`: the node id a certificate names (`otelraft://node/<id>`).
//!
//! Trust model: one cluster CA signs every member's certificate. A member
//! accepts peer connections only with a certificate from that CA, and the
//! peer service then checks the node id it names against the membership
//! (`peer::PeerService`). The OTLP listeners ask for no client certificate;
//! writers authenticate with bearer tokens.

pub mod config;
pub mod connections;
pub mod identity;
pub mod incoming;
mod listener;
pub mod material;
mod serve;

pub use config::TlsSection;
pub use connections::{ConnLimits, ConnectionsSection, MemberAddrs};
pub use incoming::{ConnInfo, Incoming, WorkSlots};
pub use listener::Listener;
pub use material::{ClientTls, ServerTls};
pub use serve::serve_http;

/// Why TLS material could not be used. Never retryable: the files must be
/// fixed. `field` names the configuration field at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("config field `{field}`: cannot read {path}: {message}")]
    File {
        /// The field naming the file.
        field: String,
        /// The path.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// A file was read but its content is unusable.
    #[error("config field `{field}`: {message}")]
    Invalid {
        /// The field naming the file.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl TlsError {
    /// TLS material errors are never retryable.
    pub fn retryable(&self) -> bool {
        false
    }

    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        TlsError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// The process-wide rustls crypto provider (aws-lc-rs, the one object_store
/// and tonic already use). Installing it as the default keeps every rustls
/// user in the process on one provider.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
