//! `otelraft certs`: a development CA and member certificates.
//!
//! For test clusters and first deployments. Production clusters may use any
//! CA, as long as each member's certificate carries the URI
//! `otelraft://node/<id>`, the hosts other members dial, and both the
//! server and client extended key usages (members are both).

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::tls::identity;

/// The CA's subject; a reused CA key is paired with the same subject, and
/// every certificate issued is checked against `ca.pem`.
const CA_COMMON_NAME: &str = "otelraft development CA";

/// Why certificates could not be made. Never retryable.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Key or certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Refused(String),
}

impl CertsError {
    /// Never retryable: the arguments or files must change.
    pub fn retryable(&self) -> bool {
        false
    }
}

/// What to make.
#[derive(Debug, Clone)]
pub struct CertsRequest {
    /// Where the files go (created if missing).
    pub dir: PathBuf,
    /// The node ids to issue certificates for.
    pub nodes: Vec<u64>,
    /// Extra host names or IP addresses every node certificate covers.
    pub hosts: Vec<String>,
    /// Validity in days.
    pub days: u32,
    /// Replace existing node certificates.
    pub force: bool,
}

/// The files `generate` wrote or reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertsReport {
    /// The CA certificate (reused if it existed).
    pub ca: PathBuf,
    /// Whether the CA was created now.
    pub ca_created: bool,
    /// `(certificate, key)` per node, in request order.
    pub nodes: Vec<(PathBuf, PathBuf)>,
}

/// The certificate and key paths of node `id` in `dir`.
pub fn node_files(dir: &Path, id: u64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("node-{id}.pem")),
        dir.join(format!("node-{id}-key.pem")),
    )
}

/// The hosts a certificate for node `id` covers by default: what
/// `local-cluster` and the tests dial.
fn default_hosts(id: u64) -> Vec<String> {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if (2..=254).contains(&id) {
        hosts.push(format!("127.0.0.{id}"));
    }
    hosts
}

fn ca_params(days: u32) -> Result<CertificateParams, CertsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, days);
    Ok(params)
}

fn set_validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // A day of slack for clocks that lag.
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

fn read(path: &Path) -> Result<String, CertsError> {
    std::fs::read_to_string(path).map_err(|source| CertsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `text` to `path`; keys are readable by the owner only.
fn write(path: &Path, text: &str, secret: bool) -> Result<(), CertsError> {
    write_file(path, text, secret).map_err(|source| CertsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `text` to `path` durably; a `secret` (a key, a token) is created
/// readable by its owner only.
pub(crate) fn write_file(path: &Path, text: &str, secret: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Creates the CA in `dir` unless it exists, then a certificate per node.
pub fn generate(request: &CertsRequest) -> Result<CertsReport, CertsError> {
    if request.nodes.is_empty() {
        return Err(CertsError::Refused("no node ids given".into()));
    }
    if let Some(zero) = request.nodes.iter().find(|id| **id == 0) {
        return Err(CertsError::Refused(format!(
            "node id {zero} is not positive"
        )));
    }
    std::fs::create_dir_all(&request.dir).map_err(|source| CertsError::Io {
        path: request.dir.clone(),
        source,
    })?;
    let ca_path = request.dir.join("ca.pem");
    let ca_key_path = request.dir.join("ca-key.pem");
    let ca_created = !ca_path.exists();
    let (ca_pem, issuer) = if ca_created {
        let key = KeyPair::generate()?;
        let params = ca_params(request.days.max(1))?;
        let cert = params.self_signed(&key)?;
        write(&ca_key_path, &key.serialize_pem(), true)?;
        write(&ca_path, &cert.pem(), false)?;
        (cert.pem(), Issuer::new(params, key))
    } else {
        let key = KeyPair::from_pem(&read(&ca_key_path)?)?;
        (
            read(&ca_path)?,
            Issuer::new(ca_params(request.days.max(1))?, key),
        )
    };
    let mut nodes = Vec::new();
    for &id in &request.nodes {
        let (cert_path, key_path) = node_files(&request.dir, id);
        if !request.force && (cert_path.exists() || key_path.exists()) {
            return Err(CertsError::Refused(format!(
                "{} exists; pass --force to replace it",
                cert_path.display()
            )));
        }
        let mut hosts = default_hosts(id);
        hosts.extend(request.hosts.iter().cloned());
        hosts.dedup();
        let mut params = CertificateParams::new(hosts)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("otelraft-node-{id}"));
        params
            .subject_alt_names
            .push(SanType::URI(identity::node_uri(id).try_into()?));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Members are servers to each other and clients of each other.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, request.days.max(1));
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        check_issued(&ca_pem, cert.der(), id)?;
        write(&key_path, &key.serialize_pem(), true)?;
        write(&cert_path, &cert.pem(), false)?;
        nodes.push((cert_path, key_path));
    }
    Ok(CertsReport {
        ca: ca_path,
        ca_created,
        nodes,
    })
}

/// Refuses a certificate that does not chain to `ca.pem` (a reused CA key
/// that is not the one `ca.pem` holds) or does not name node `id`.
fn check_issued(ca_pem: &str, der: &[u8], id: u64) -> Result<(), CertsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, UnixTime};

    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| CertsError::Refused(format!("ca.pem: {e}")))?;
        roots
            .add(ca)
            .map_err(|e| CertsError::Refused(format!("ca.pem: {e}")))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .map_err(|e| CertsError::Refused(format!("ca.pem: {e}")))?;
    let leaf = CertificateDer::from(der.to_vec());
    verifier
        .verify_client_cert(&leaf, &[], UnixTime::now())
        .map_err(|e| {
            CertsError::Refused(format!(
                "the certificate issued does not verify against ca.pem ({e}); was ca-key.pem replaced?"
            ))
        })?;
    if identity::node_id(&leaf) != Some(id) {
        return Err(CertsError::Refused(format!(
            "the certificate issued does not name node {id}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(dir: &Path, nodes: Vec<u64>) -> CertsRequest {
        CertsRequest {
            dir: dir.to_path_buf(),
            nodes,
            hosts: vec!["node.example".into()],
            days: 30,
            force: false,
        }
    }

    #[test]
    fn issues_node_certificates_that_pass_the_start_up_checks() {
        let dir = tempfile::tempdir().unwrap();
        let report = generate(&request(dir.path(), vec![1, 2])).unwrap();
        assert!(report.ca_created);
        for (id, (cert, key)) in [(1u64, &report.nodes[0]), (2, &report.nodes[1])] {
            let section = crate::tls::TlsSection {
                enabled: true,
                cert_file: cert.clone(),
                key_file: key.clone(),
                ca_file: report.ca.clone(),
                handshake_timeout_ms: 1000,
            };
            let files = crate::tls::material::TlsFiles::load(&section).unwrap();
            let host = format!("127.0.0.{id}");
            files
                .check_node(id, &["localhost", &host, "node.example"])
                .unwrap();
            let wrong = files.check_node(id + 10, &["localhost"]).unwrap_err();
            assert!(wrong.to_string().contains("but node_id"), "{wrong}");
            let uncovered = files.check_node(id, &["elsewhere.example"]).unwrap_err();
            assert!(
                uncovered.to_string().contains("elsewhere.example"),
                "{uncovered}"
            );
        }
        let mode = std::fs::metadata(&report.nodes[0].1).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
    }

    #[test]
    fn reuses_the_ca_and_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate(&request(dir.path(), vec![1])).unwrap();
        let ca_before = std::fs::read(&first.ca).unwrap();
        let again = generate(&request(dir.path(), vec![1])).unwrap_err();
        assert!(again.to_string().contains("--force"), "{again}");
        let second = generate(&request(dir.path(), vec![3])).unwrap();
        assert!(!second.ca_created);
        assert_eq!(std::fs::read(&second.ca).unwrap(), ca_before);
        let forced = CertsRequest {
            force: true,
            ..request(dir.path(), vec![1])
        };
        generate(&forced).unwrap();
    }

    #[test]
    fn a_key_from_another_node_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let report = generate(&request(dir.path(), vec![1, 2])).unwrap();
        let section = crate::tls::TlsSection {
            enabled: true,
            cert_file: report.nodes[0].0.clone(),
            key_file: report.nodes[1].1.clone(),
            ca_file: report.ca.clone(),
            handshake_timeout_ms: 1000,
        };
        let err = crate::tls::material::TlsFiles::load(&section)
            .err()
            .expect("mismatched key refused");
        assert!(err.to_string().contains("tls.key_file"), "{err}");
        let missing = crate::tls::TlsSection {
            key_file: dir.path().join("absent.pem"),
            ..section
        };
        let err = crate::tls::material::TlsFiles::load(&missing)
            .err()
            .expect("missing key refused");
        let text = err.to_string();
        assert!(
            text.contains("tls.key_file") && text.contains("absent.pem"),
            "{text}"
        );
    }
}
