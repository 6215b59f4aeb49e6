//! TLS with rustls. Built at startup: a certificate or key that cannot be used stops
//! the server (never a silent fallback to plaintext, which is what datafusion-postgres
//! does).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use crate::{Error, Result};

/// A TLS acceptor for a PEM certificate chain and private key (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<pgwire::tokio::TlsAcceptor> {
    // PostgreSQL 17 clients may skip SSLRequest and start TLS directly; pgwire accepts
    // that only when ALPN says "postgresql".
    let config = server_config(cert, key, vec![b"postgresql".to_vec()])?;
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}

/// The rustls settings of the endpoint for a PEM certificate chain and private key,
/// offering `alpn`: also what the daemon's HTTP API serves TLS with, so one
/// certificate and one set of protocol versions cover both.
pub fn server_config(cert: &Path, key: &Path, alpn: Vec<Vec<u8>>) -> Result<ServerConfig> {
    let bad = |path: &Path, message: String| Error::Tls {
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| bad(cert, format!("cannot read the certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(bad(cert, "no PEM certificate in the file".into()));
    }
    // The error names the file and the problem; never the key's bytes.
    let private_key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad(key, format!("cannot read a private key: {e}")))?;
    // Explicitly ring: the dependency tree builds rustls with both ring and aws-lc-rs,
    // and then `ServerConfig::builder()` cannot pick a default provider and panics.
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(cert, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, private_key)
            .map_err(|e| bad(key, format!("the key does not fit the certificate: {e}")))?;
    config.alpn_protocols = alpn;
    Ok(config)
}
