//! Which node a certificate names.
//!
//! A member's certificate carries the URI SAN `otelraft://node/<id>`; the
//! common name `otelraft-node-<id>` is only for people reading it.

use rustls::pki_types::CertificateDer;

/// The URI prefix of a node identity.
pub const NODE_URI_PREFIX: &str = "otelraft://node/";

/// The URI a certificate for node `id` carries.
pub fn node_uri(id: u64) -> String {
    format!("{NODE_URI_PREFIX}{id}")
}

/// The node ids `cert` names (normally one); empty when it names none or
/// does not parse.
pub fn node_ids(cert: &CertificateDer<'_>) -> Vec<u64> {
    let Ok(parsed) = webpki::EndEntityCert::try_from(cert) else {
        return Vec::new();
    };
    parsed
        .valid_uri_names()
        .filter_map(|uri| uri.strip_prefix(NODE_URI_PREFIX)?.parse::<u64>().ok())
        .collect()
}

/// The single node id `cert` names, if it names exactly one.
pub fn node_id(cert: &CertificateDer<'_>) -> Option<u64> {
    match node_ids(cert).as_slice() {
        [id] => Some(*id),
        _ => None,
    }
}
