//! The TLS client side of `tls://` upstreams (DNS over TLS, RFC 7858), from `tls CERT KEY CA`.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::setup::TlsFiles;

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("unable to read {what} file {}: {e}", path.display()))
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path, what)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("unable to parse {what} file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "unable to parse {what} file {}: no certificates found",
            path.display()
        ));
    }
    Ok(certs)
}

/// The client configuration for `files`: the CA file (or the system's CAs) verifies the
/// upstream; CERT and KEY, when given, authenticate ferrodns to it. `alpn` is left empty: DoT
/// does not negotiate one.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca {
        Some(ca) => {
            for c in certs(ca, "CA")? {
                roots
                    .add(c)
                    .map_err(|e| format!("unable to use CA file {}: {e}", ca.display()))?;
            }
        }
        None => {
            // No CA named: the system's trust store, as Go's crypto/tls uses by default.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots);
    let config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert, "certificate")?;
            let pem = read(key, "key")?;
            let key = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| format!("unable to parse key file {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
