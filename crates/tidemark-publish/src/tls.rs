//! TLS to the target, as libpq's `sslmode` and `sslrootcert` URL parameters ask for
//! it, over rustls with the ring provider.
//!
//! tokio-postgres knows only `disable`, `prefer` and `require`, and no CA file: it
//! refuses the URL if either parameter is left in. So [`take_tls_params`] takes them
//! out, tokio-postgres is told only whether TLS is tried (`prefer`) or demanded
//! (`require` and stricter), and what libpq's mode checks about the server's
//! certificate is decided by the rustls certificate verifier built here:
//!
//! | mode | TLS | the certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` | if the server offers it | not verified (chain verified if `sslrootcert` is a file) |
//! | `require` | demanded | not verified (chain verified if `sslrootcert` is a file) |
//! | `verify-ca` | demanded | chain to a trusted CA, any host name |
//! | `verify-full` | demanded | chain to a trusted CA, and valid for the host connected to |
//!
//! "Chain verified if `sslrootcert` is a file" is libpq's own rule (kept "for
//! backwards compatibility" in its documentation): a URL copied from `psql` means
//! here what it meant there. The trusted CAs are the `sslrootcert` file's when it is
//! given, else the system store (rustls-native-certs); libpq reads
//! `~/.postgresql/root.crt` instead of the system store, which on a server running
//! tidemark is rarely where a CA bundle lives, while Redshift's certificates
//! (ACM) chain to public CAs the system store holds. `sslrootcert=system` (libpq 16)
//! names the system store explicitly and, as in libpq, makes `verify-full` the
//! default and anything weaker an error.
//!
//! The crypto provider is ring, passed to every config explicitly: the dependency
//! tree builds rustls with both ring and aws-lc-rs, and then rustls cannot choose a
//! process-wide default on its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::warn;

/// libpq's `sslmode`, the five values tidemark takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, plaintext otherwise; the certificate is not
    /// verified (an attacker who can intercept can also refuse TLS, so verifying
    /// here would add no protection).
    Prefer,
    /// TLS or no connection; encrypted, but the certificate is not verified.
    Require,
    /// TLS, certificate chain verified, host name not checked.
    VerifyCa,
    /// TLS, certificate chain and host name verified.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // libpq's `allow` tries plaintext first and TLS only if refused: a
            // connection that is never encrypted against any server that would
            // accept both, which is what prefer exists to avoid.
            other => {
                return Err(format!(
                    "sslmode={other} is not one tidemark takes; write disable, prefer, require, verify-ca or verify-full"
                ))
            }
        })
    }

    /// The value as the URL spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: whether TLS is tried or demanded. What is
    /// checked about the certificate is the verifier's business.
    pub fn client_mode(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

/// Which CA certificates a verifying mode trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// The operating system's store (rustls-native-certs).
    System,
    /// A PEM file of CA certificates (`sslrootcert=PATH`), trusted alone.
    File(PathBuf),
}

/// The TLS a target URL asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsParams {
    /// `sslmode`, or the default the caller gave.
    pub mode: SslMode,
    /// `sslrootcert`, if given.
    pub root_cert: Option<RootCert>,
}

/// Take `sslmode` and `sslrootcert` out of the URL's query (tokio-postgres would
/// refuse them): the URL left for tokio-postgres, and what they asked for.
/// `default_mode` applies when the URL has no `sslmode`. libpq's parameters that
/// tidemark does not implement (client certificates, CRLs) are refused by name
/// rather than left to tokio-postgres's "unknown option".
pub fn take_tls_params(url: &str, default_mode: SslMode) -> Result<(String, TlsParams), String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut mode = None;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = percent_decode(v).map_err(|e| format!("{k}: {e}"))?;
        match k {
            "sslmode" => mode = Some(SslMode::parse(&v)?),
            "sslrootcert" if v.is_empty() => {
                return Err("sslrootcert is empty; write sslrootcert=/path/to/ca.pem".into())
            }
            "sslrootcert" if v == "system" => root_cert = Some(RootCert::System),
            "sslrootcert" => root_cert = Some(RootCert::File(PathBuf::from(v))),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" | "sslsni"
            | "sslcertmode" | "ssl_min_protocol_version" | "ssl_max_protocol_version"
            | "requiressl" | "sslcompression" => {
                return Err(format!(
                    "{k} is not supported for publish targets (client certificates, CRLs and protocol bounds are not built); the TLS parameters taken are sslmode, sslrootcert and sslnegotiation"
                ))
            }
            _ => kept.push(kv),
        }
    }
    let mode = match (mode, &root_cert) {
        // libpq 16: the system store is only worth trusting with the host name
        // checked (any public CA can sign a certificate for some other name).
        (None, Some(RootCert::System)) => SslMode::VerifyFull,
        (Some(m), Some(RootCert::System)) if m != SslMode::VerifyFull => {
            return Err(format!(
                "sslmode={} cannot be used with sslrootcert=system: trusting every CA of the system store is only safe with the host name checked; use sslmode=verify-full",
                m.as_str()
            ))
        }
        (Some(m), _) => m,
        (None, _) => default_mode,
    };
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, TlsParams { mode, root_cert }))
}

/// `%XX` escapes in a URL parameter's value, as tokio-postgres decodes the others.
fn percent_decode(s: &str) -> Result<String, String> {
    // A `%` must start an escape (the crate would pass a stray one through).
    let bytes = s.as_bytes();
    let stray = bytes.iter().enumerate().any(|(i, b)| {
        *b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if stray {
        return Err(format!("{s:?} has a % not followed by two hex digits"));
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|d| d.into_owned())
        .map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// The TLS connector for `params`, or `None` for `disable`. Reads the CA file (or
/// the system store) now, so a missing or unreadable one is reported before any
/// connection is tried, naming the file.
pub fn connector(
    params: &TlsParams,
    negotiation: tokio_postgres::config::SslNegotiation,
) -> Result<Option<MakeRustlsConnect>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match (params.mode, &params.root_cert) {
        (SslMode::Disable, _) => return Ok(None),
        (SslMode::Prefer | SslMode::Require, None) => Arc::new(Unnamed {
            roots: None,
            provider: provider.clone(),
        }),
        (SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, root) => Arc::new(Unnamed {
            roots: Some(Arc::new(roots(root.as_ref())?)),
            provider: provider.clone(),
        }),
        (SslMode::VerifyFull, root) => rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots(root.as_ref())?),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("sslmode=verify-full: {e}"))?,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // A server (PostgreSQL 17+) accepts TLS without the SSLRequest exchange only when
    // ALPN names its protocol; with the usual negotiation no ALPN is sent, as older
    // servers and poolers have never seen one.
    if negotiation == tokio_postgres::config::SslNegotiation::Direct {
        config.alpn_protocols = vec![b"postgresql".to_vec()];
    }
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// The trusted CAs: the file's, or the system store's.
fn roots(root: Option<&RootCert>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match root {
        Some(RootCert::File(path)) => {
            let certs = read_pem_certs(path)?;
            for (i, c) in certs.into_iter().enumerate() {
                store.add(c).map_err(|e| {
                    format!(
                        "sslrootcert {}: certificate {} cannot be a trusted CA: {e}",
                        path.display(),
                        i + 1
                    )
                })?;
            }
        }
        Some(RootCert::System) | None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(format!(
                    "no CA certificate found in the system store{}; set sslrootcert=/path/to/ca.pem to the CA that signed the target's certificate",
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" ({why})")
                    }
                ));
            }
            // Some unreadable files among many good ones are common (a stray file
            // in /etc/ssl/certs): worth a line in the log, not a refusal.
            for e in &found.errors {
                warn!(error = %e, "skipped part of the system CA store");
            }
        }
    }
    Ok(store)
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    // pem_file_iter's own message for a missing file is the OS error alone.
    let bytes = std::fs::read(path)
        .map_err(|e| format!("sslrootcert {}: cannot read it: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslrootcert {}: not a PEM file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "sslrootcert {}: no certificate in it (expected PEM, -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// Every mode but `verify-full`, as libpq does them.
///
/// `roots: None` is `prefer` and `require` without a CA file: the channel is
/// encrypted, but whose certificate it is goes unchecked, so any certificate is
/// accepted. With roots (`verify-ca`, and libpq's `require` with a CA file) the
/// certificate must chain to a trusted CA and be valid now, for a TLS server; the
/// host name is not checked (a server reached by an address or alias its
/// certificate does not list).
///
/// Either way the handshake's signatures are verified: they prove the server holds
/// the key of the certificate it sent, which keeps the session keys between the two
/// ends of *this* handshake (and the SCRAM channel binding over that certificate
/// meaningful), even where who owns the key is not known.
#[derive(Debug)]
struct Unnamed {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unnamed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What a person reads when TLS could not be set up as `params` asked, or `None`
/// when `e` is not about TLS (a refused connection, a password, a lost server): a
/// TLS failure is not fixed by retrying, so callers report it as configuration.
/// `host` names the server tried (as the URL names it).
pub fn failure(e: &tokio_postgres::Error, params: &TlsParams, host: &str) -> Option<String> {
    let mode = params.mode.as_str();
    // tokio-postgres's own error when the server answers the SSLRequest with "no":
    // it has no type to match, only this text, in the error's cause.
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut no_tls = false;
    while let Some(s) = src {
        no_tls |= s.to_string().contains("server does not support TLS");
        src = s.source();
    }
    if no_tls {
        return Some(format!(
            "the server at {host} does not accept TLS, and sslmode={mode} requires it: turn TLS on at the server (ssl = on in postgresql.conf, with ssl_cert_file and ssl_key_file), or, on a private network, connect with sslmode=prefer"
        ));
    }
    let rustls_err = rustls_error(e)?;
    use rustls::CertificateError as C;
    let ca_hint = match &params.root_cert {
        Some(RootCert::File(p)) => format!("the CA in sslrootcert {}", p.display()),
        Some(RootCert::System) | None => "a CA of the system store".to_string(),
    };
    Some(match rustls_err {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => format!(
            "the certificate of {host} is not signed by {ca_hint} ({rustls_err}), and sslmode={mode} verifies it: set sslrootcert=/path/to/ca.pem to the CA that signed it (Amazon RDS: the region's certificate bundle from AWS), or use sslmode=require to encrypt without verifying the server"
        ),
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            format!(
                "the certificate of {host} is not valid for the host name {host} ({rustls_err}), and sslmode={mode} checks it: connect by a name the certificate lists, or use sslmode=verify-ca to verify the CA but not the name"
            )
        }
        rustls::Error::InvalidCertificate(_) => format!(
            "the certificate of {host} was refused: {rustls_err} (sslmode={mode}); renew it at the server, or use sslmode=require to encrypt without verifying it"
        ),
        other => format!(
            "the TLS handshake with {host} failed: {other} (sslmode={mode})"
        ),
    })
}

/// The rustls error under a client error, if there is one: tokio-postgres wraps the
/// handshake's `io::Error`, which wraps rustls's.
fn rustls_error(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(r) = s.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        src = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(url: &str) -> Result<(String, TlsParams), String> {
        take_tls_params(url, SslMode::Prefer)
    }

    #[test]
    fn modes_and_ca_files_are_taken_out_of_the_url() {
        let (url, p) = take("postgres://u@h:5/db").unwrap();
        assert_eq!(url, "postgres://u@h:5/db");
        assert_eq!(
            p,
            TlsParams {
                mode: SslMode::Prefer,
                root_cert: None
            }
        );
        let (url, p) = take(
            "postgres://u@h:5/db?connect_timeout=3&sslmode=verify-full&sslrootcert=/etc/ca%20bundle.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u@h:5/db?connect_timeout=3&application_name=x"
        );
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(
            p.root_cert,
            Some(RootCert::File("/etc/ca bundle.pem".into()))
        );
        for (v, m) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let (url, p) = take(&format!("postgres://u@h/db?sslmode={v}")).unwrap();
            assert_eq!((url.as_str(), p.mode), ("postgres://u@h/db", m));
            assert_eq!(m.as_str(), v);
        }
        // The caller's default (Redshift's is require) applies only without sslmode.
        let (_, p) = take_tls_params("postgres://u@h/db", SslMode::Require).unwrap();
        assert_eq!(p.mode, SslMode::Require);
        let (_, p) =
            take_tls_params("postgres://u@h/db?sslmode=disable", SslMode::Require).unwrap();
        assert_eq!(p.mode, SslMode::Disable);
    }

    #[test]
    fn system_roots_imply_verify_full_as_in_libpq() {
        let (_, p) = take("postgres://u@h/db?sslrootcert=system").unwrap();
        assert_eq!(
            (p.mode, p.root_cert),
            (SslMode::VerifyFull, Some(RootCert::System))
        );
        let e = take("postgres://u@h/db?sslrootcert=system&sslmode=require").unwrap_err();
        assert!(e.contains("verify-full"), "{e}");
    }

    #[test]
    fn unknown_modes_and_unbuilt_parameters_are_refused_by_name() {
        let e = take("postgres://u@h/db?sslmode=allow").unwrap_err();
        assert!(
            e.contains("sslmode=allow") && e.contains("verify-full"),
            "{e}"
        );
        let e = take("postgres://u@h/db?sslmode=verify_full").unwrap_err();
        assert!(e.contains("verify_full"), "{e}");
        let e = take("postgres://u@h/db?sslcert=/c.pem").unwrap_err();
        assert!(e.contains("sslcert is not supported"), "{e}");
        let e = take("postgres://u@h/db?sslrootcert=").unwrap_err();
        assert!(e.contains("sslrootcert is empty"), "{e}");
        let e = take("postgres://u@h/db?sslrootcert=%zz").unwrap_err();
        assert!(e.contains("sslrootcert") && e.contains("hex"), "{e}");
    }

    #[test]
    fn a_ca_file_that_cannot_be_used_is_named() {
        let neg = tokio_postgres::config::SslNegotiation::Postgres;
        let missing = TlsParams {
            mode: SslMode::VerifyFull,
            root_cert: Some(RootCert::File("/nonexistent/tidemark-ca.pem".into())),
        };
        let e = connector(&missing, neg).err().unwrap();
        assert!(
            e.contains("sslrootcert /nonexistent/tidemark-ca.pem: cannot read it"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let p = TlsParams {
            mode: SslMode::VerifyCa,
            root_cert: Some(RootCert::File(not_pem.clone())),
        };
        let e = connector(&p, neg).err().unwrap();
        assert!(
            e.contains(&format!("sslrootcert {}", not_pem.display()))
                && e.contains("no certificate"),
            "{e}"
        );
        // require with a CA file verifies the chain (libpq's rule), so it reads it too.
        let p = TlsParams {
            mode: SslMode::Require,
            ..missing
        };
        assert!(connector(&p, neg).is_err());
    }

    #[test]
    fn disable_has_no_connector_and_the_others_need_no_file() {
        let neg = tokio_postgres::config::SslNegotiation::Postgres;
        let p = |mode| TlsParams {
            mode,
            root_cert: None,
        };
        assert!(connector(&p(SslMode::Disable), neg).unwrap().is_none());
        assert!(connector(&p(SslMode::Prefer), neg).unwrap().is_some());
        assert!(connector(&p(SslMode::Require), neg).unwrap().is_some());
    }
}
