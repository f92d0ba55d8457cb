//! The four listeners a node has, and what each speaks.

/// Which of a node's listeners a connection arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Raft and forwarded writes (gRPC, mutual TLS).
    Peer,
    /// Admin API, health and metrics (HTTP).
    Admin,
    /// OTLP over gRPC.
    OtlpGrpc,
    /// OTLP over HTTP.
    OtlpHttp,
}

impl Listener {
    /// The name used in logs.
    pub fn label(self) -> &'static str {
        match self {
            Listener::Peer => "peer",
            Listener::Admin => "admin",
            Listener::OtlpGrpc => "OTLP gRPC",
            Listener::OtlpHttp => "OTLP HTTP",
        }
    }

    /// The application protocols offered in the handshake. gRPC clients
    /// insist on `h2` being negotiated.
    pub(crate) fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            Listener::Peer | Listener::OtlpGrpc => vec![b"h2".to_vec()],
            Listener::Admin | Listener::OtlpHttp => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }

    pub(crate) fn speaks_http1(self) -> bool {
        matches!(self, Listener::Admin | Listener::OtlpHttp)
    }
}
