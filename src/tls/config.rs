//! The `[tls]` section.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// TLS for this node's listeners and its calls to other members. Every
/// member of a cluster must agree on `enabled`: a TLS member refuses
/// plaintext peers and a plaintext member cannot read TLS.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// TLS on the OTLP, admin and peer listeners, and mutual TLS between
    /// members.
    pub enabled: bool,
    /// This node's certificate chain (PEM, leaf first). The leaf names the
    /// node as the URI `otelraft://node/<node_id>` and carries the hosts of
    /// `advertise.peer` and `advertise.admin` (`otelraft certs` makes one).
    pub cert_file: PathBuf,
    /// The private key of `cert_file` (PEM: PKCS#8, SEC1 or PKCS#1).
    pub key_file: PathBuf,
    /// The cluster CA (PEM). Members verify each other against it, both
    /// ways; admin clients may present a certificate from it.
    pub ca_file: PathBuf,
    /// Longest TLS handshake a listener waits for.
    pub handshake_timeout_ms: u64,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            enabled: false,
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            ca_file: PathBuf::new(),
            handshake_timeout_ms: 10_000,
        }
    }
}
