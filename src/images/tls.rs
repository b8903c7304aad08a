//! TLS to registries: rustls with the bundled Mozilla roots, the system's
//! CA bundle (when there is one) and a registry's extra CA certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// The system CA bundles looked for (Debian's, then Fedora's).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// A connector trusting the default roots plus the certificates in the
/// PEM files `extra`. A file that cannot be read or holds no certificate
/// is an error naming it.
pub fn connector(extra: &[PathBuf]) -> Result<TlsConnector, (PathBuf, String)> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(bundle) = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
        if let Ok(certs) = read_pem(bundle) {
            roots.add_parsable_certificates(certs);
        }
    }
    for path in extra {
        let certs = read_pem(path).map_err(|why| (path.clone(), why))?;
        if certs.is_empty() {
            return Err((path.clone(), "no certificate in the file".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| (path.clone(), format!("bad certificate: {e}")))?;
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| (PathBuf::new(), e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))
}
