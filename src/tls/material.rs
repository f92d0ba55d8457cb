//! The PEM files behind `[tls]`: reading them, checking them against each
//! other and against this node, and the server and client configurations
//! built from them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::identity;
use super::{Listener, TlsError, TlsSection};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(field: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    if path.as_os_str().is_empty() {
        return Err(TlsError::invalid(field, "required when tls.enabled = true"));
    }
    std::fs::read(path).map_err(|e| TlsError::File {
        field: field.to_string(),
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn certificates(
    field: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::invalid(field, format!("{} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError::invalid(
            field,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

/// The node's certificate, key and cluster CA, read and parsed.
pub struct TlsFiles {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
    client: ClientTls,
}

impl TlsFiles {
    /// Reads the three files of `section`; errors name the field and file.
    pub fn load(section: &TlsSection) -> Result<Self, TlsError> {
        let cert_pem = read("tls.cert_file", &section.cert_file)?;
        let key_pem = read("tls.key_file", &section.key_file)?;
        let ca_pem = read("tls.ca_file", &section.ca_file)?;
        let chain = certificates("tls.cert_file", &section.cert_file, &cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            TlsError::invalid(
                "tls.key_file",
                format!(
                    "{} holds no usable private key: {e}",
                    section.key_file.display()
                ),
            )
        })?;
        let mut roots = RootCertStore::empty();
        for ca in certificates("tls.ca_file", &section.ca_file, &ca_pem)? {
            roots.add(ca).map_err(|e| {
                TlsError::invalid(
                    "tls.ca_file",
                    format!(
                        "{} is not a usable CA certificate: {e}",
                        section.ca_file.display()
                    ),
                )
            })?;
        }
        let files = TlsFiles {
            chain,
            key,
            roots: Arc::new(roots),
            client: ClientTls {
                ca_pem,
                identity: Some((cert_pem, key_pem)),
            },
        };
        // Refuses a key that does not belong to the certificate.
        files.server_config(Listener::OtlpHttp)?;
        Ok(files)
    }

    /// Checks that the certificate chains to the CA, is valid now for both
    /// server and client use, names node `node_id`, and covers `hosts` (the
    /// advertised peer and admin hosts, which other members dial).
    pub fn check_node(&self, node_id: u64, hosts: &[&str]) -> Result<(), TlsError> {
        let field = "tls.cert_file";
        let leaf = &self.chain[0];
        let intermediates = &self.chain[1..];
        let now = UnixTime::now();
        let client = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::invalid("tls.ca_file", e.to_string()))?;
        client
            .verify_client_cert(leaf, intermediates, now)
            .map_err(|e| {
                TlsError::invalid(
                    field,
                    format!("not usable as a client certificate under tls.ca_file: {e}"),
                )
            })?;
        let server = WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::invalid("tls.ca_file", e.to_string()))?;
        for host in hosts {
            let name = ServerName::try_from(host.to_string()).map_err(|e| {
                TlsError::invalid(field, format!("`{host}` is not a host name: {e}"))
            })?;
            server
                .verify_server_cert(leaf, intermediates, &name, &[], now)
                .map_err(|e| {
                    TlsError::invalid(
                        field,
                        format!("not valid for `{host}` (advertised) under tls.ca_file: {e}"),
                    )
                })?;
        }
        match identity::node_ids(leaf).as_slice() {
            [id] if *id == node_id => Ok(()),
            [] => Err(TlsError::invalid(
                field,
                format!(
                    "names no node; a member's certificate carries the URI {}",
                    identity::node_uri(node_id)
                ),
            )),
            ids => Err(TlsError::invalid(
                field,
                format!("names node(s) {ids:?} but node_id = {node_id}"),
            )),
        }
    }

    /// The rustls configuration of one listener: members must present a
    /// cluster certificate on the peer port and may on the admin port; the
    /// OTLP ports ask for none.
    fn server_config(&self, listener: Listener) -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::invalid("tls", e.to_string()))?;
        let verifier = |optional: bool| {
            let b = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider());
            let b = if optional {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build()
                .map_err(|e| TlsError::invalid("tls.ca_file", e.to_string()))
        };
        let builder = match listener {
            Listener::Peer => builder.with_client_cert_verifier(verifier(false)?),
            Listener::Admin => builder.with_client_cert_verifier(verifier(true)?),
            Listener::OtlpGrpc | Listener::OtlpHttp => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| {
                TlsError::invalid(
                    "tls.key_file",
                    format!("does not go with the certificate in tls.cert_file: {e}"),
                )
            })?;
        config.alpn_protocols = listener.alpn();
        Ok(Arc::new(config))
    }

    /// What this node uses to call other members.
    pub fn client(&self) -> ClientTls {
        self.client.clone()
    }
}

/// The server side of TLS for the four listeners. The configurations can
/// be replaced while serving (`reload`); a handshake uses the ones current
/// when it starts, and established connections keep theirs.
pub struct ServerTls {
    configs: std::sync::RwLock<ListenerConfigs>,
    /// Longest handshake a listener waits for.
    pub handshake_timeout: Duration,
}

#[derive(Clone)]
struct ListenerConfigs {
    peer: Arc<ServerConfig>,
    admin: Arc<ServerConfig>,
    otlp_grpc: Arc<ServerConfig>,
    otlp_http: Arc<ServerConfig>,
}

impl ListenerConfigs {
    fn build(files: &TlsFiles) -> Result<Self, TlsError> {
        Ok(ListenerConfigs {
            peer: files.server_config(Listener::Peer)?,
            admin: files.server_config(Listener::Admin)?,
            otlp_grpc: files.server_config(Listener::OtlpGrpc)?,
            otlp_http: files.server_config(Listener::OtlpHttp)?,
        })
    }
}

impl ServerTls {
    /// Builds every listener's configuration from `files`.
    pub fn new(files: &TlsFiles, handshake_timeout: Duration) -> Result<Self, TlsError> {
        Ok(ServerTls {
            configs: std::sync::RwLock::new(ListenerConfigs::build(files)?),
            handshake_timeout,
        })
    }

    /// Serves new handshakes with `files` from now on. Nothing changes if
    /// they cannot be used.
    pub fn reload(&self, files: &TlsFiles) -> Result<(), TlsError> {
        let fresh = ListenerConfigs::build(files)?;
        *self
            .configs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// The configuration `listener` serves with.
    pub fn config(&self, listener: Listener) -> Arc<ServerConfig> {
        let configs = self
            .configs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match listener {
            Listener::Peer => configs.peer.clone(),
            Listener::Admin => configs.admin.clone(),
            Listener::OtlpGrpc => configs.otlp_grpc.clone(),
            Listener::OtlpHttp => configs.otlp_http.clone(),
        }
    }
}

/// The client side: the CA to trust and, for members and admin clients
/// with a certificate, the identity to present.
#[derive(Clone)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTls {
    /// For the admin CLI: trust `ca`, and present `cert` + `key` if given.
    pub fn from_files(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Self, TlsError> {
        let ca_pem = read("--ca", ca)?;
        certificates("--ca", ca, &ca_pem)?;
        let identity = match identity {
            Some((cert, key)) => Some((read("--cert", cert)?, read("--key", key)?)),
            None => None,
        };
        Ok(ClientTls { ca_pem, identity })
    }

    /// The tonic channel configuration (peer calls).
    pub fn tonic(&self) -> tonic::transport::ClientTlsConfig {
        let config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem));
        match &self.identity {
            Some((cert, key)) => config.identity(tonic::transport::Identity::from_pem(cert, key)),
            None => config,
        }
    }

    /// `builder` trusting only the cluster CA and presenting the identity.
    pub fn reqwest(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, TlsError> {
        let roots = reqwest::Certificate::from_pem_bundle(&self.ca_pem)
            .map_err(|e| TlsError::invalid("tls.ca_file", e.to_string()))?;
        let builder = builder.tls_certs_only(roots);
        Ok(match &self.identity {
            Some((cert, key)) => {
                let mut pem = cert.clone();
                pem.push(b'\n');
                pem.extend_from_slice(key);
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| TlsError::invalid("tls.key_file", e.to_string()))?;
                builder.identity(identity)
            }
            None => builder,
        })
    }
}

impl std::fmt::Debug for ClientTls {
    // Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}
