//! The remote API: the same router as the unix socket, served on TCP over
//! rustls (ring), with client certificates verified against
//! `[api.tcp] client_ca`. The connection's identity is its certificate's
//! subject CN (else its first DNS name); [`super::roles`] decides what it
//! may do. A non-loopback address without a client CA is refused at start.
//! SIGHUP reloads the server certificate and key: new handshakes use the
//! new pair, open connections keep going.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use serde::Deserialize;
use tokio::net::TcpListener;

use super::roles::{authorize, Access, Peer, RoleSettings};
use super::tokens::Tokens;

/// `[api.tcp]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSettings {
    /// `address:port` to listen on.
    pub listen: String,
    /// The server certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to.
    /// Required unless `listen` is a loopback address.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// What goes wrong setting up the TCP listener.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("api.tcp.listen {value:?}: not an address:port")]
    Address { value: String },
    #[error("api.tcp.listen {value}: refusing a non-loopback address without client certificate verification (set api.tcp.client_ca)")]
    Unverified { value: String },
    #[error("read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("api.tcp: {0}")]
    Rustls(String),
    #[error("bind {value}: {source}")]
    Bind {
        value: String,
        source: std::io::Error,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            message: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// Reads the certificate chain and key into a signing pair.
fn certified_key(settings: &TcpSettings) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certs(&settings.cert)?;
    let pem = read(&settings.key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: settings.key.clone(),
        message: e.to_string(),
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Pem {
            path: settings.key.clone(),
            message: e.to_string(),
        })?;
    let pair = CertifiedKey::new(chain, signing);
    // A rotation caught between renaming the certificate and the key.
    match pair.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(TlsError::Pem {
                path: settings.key.clone(),
                message: format!(
                    "does not match the certificate {}: {e}",
                    settings.cert.display()
                ),
            })
        }
    }
    Ok(Arc::new(pair))
}

/// The server certificate, swapped whole on reload.
#[derive(Debug)]
struct Reloadable {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// A bound TCP listener with its TLS configuration, ready to serve.
pub struct TcpApi {
    listener: TcpListener,
    settings: TcpSettings,
    acceptor: tokio_rustls::TlsAcceptor,
    certificate: Arc<Reloadable>,
    verifies_clients: bool,
    tokens: Tokens,
}

impl TcpApi {
    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Checks `[api.tcp]` without touching files: the address parses, and a
/// non-loopback one comes with client certificate verification.
pub fn check(settings: &TcpSettings) -> Result<SocketAddr, TlsError> {
    let address: SocketAddr = settings.listen.parse().map_err(|_| TlsError::Address {
        value: settings.listen.clone(),
    })?;
    if settings.client_ca.is_none() && !address.ip().is_loopback() {
        return Err(TlsError::Unverified {
            value: settings.listen.clone(),
        });
    }
    Ok(address)
}

/// Checks `[api.tcp]`, loads its files and binds the listener.
pub async fn bind(settings: &TcpSettings) -> Result<TcpApi, TlsError> {
    bind_with_tokens(settings, Tokens::default()).await
}

/// [`bind`], also accepting the bearer `tokens`: with any configured, a
/// client certificate becomes optional (one presented is still verified),
/// and a request without one needs a token.
pub async fn bind_with_tokens(settings: &TcpSettings, tokens: Tokens) -> Result<TcpApi, TlsError> {
    let address = check(settings)?;
    let certificate = Arc::new(Reloadable {
        current: RwLock::new(certified_key(settings)?),
    });
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &settings.client_ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(path)? {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = match tokens.is_empty() {
                true => verifier,
                false => verifier.allow_unauthenticated(),
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_cert_resolver(certificate.clone());
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| TlsError::Bind {
            value: settings.listen.clone(),
            source,
        })?;
    Ok(TcpApi {
        listener,
        settings: settings.clone(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        certificate,
        verifies_clients: settings.client_ca.is_some(),
        tokens,
    })
}

/// The identity a client certificate names: its subject CN, else its
/// first DNS subject alternative name.
fn identity(cert: &[u8]) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    if let Some(cn) = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
    {
        return Some(cn.to_string());
    }
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
        _ => None,
    })
}

/// Serves `router` on the TCP listener, with roles from `roles`, until
/// `shutdown` completes.
pub async fn serve_tcp(
    api: TcpApi,
    router: Router,
    roles: RoleSettings,
    header_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let router = router.layer(axum::middleware::from_fn_with_state(
        Arc::new(Access {
            roles,
            tokens: api.tokens.clone(),
        }),
        authorize,
    ));
    // Outermost: refused requests are counted too.
    let router = router.layer(axum::middleware::from_fn(crate::metrics::count_requests));
    let connections = super::server::Connections::new();
    let watcher = tokio::spawn(watch_certificate(
        api.settings.clone(),
        api.certificate.clone(),
    ));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!("no SIGHUP certificate reload: {e}");
            None
        }
    };
    loop {
        let (stream, address) = tokio::select! {
            accepted = api.listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::error!("accept on the API TCP listener: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                reload(&api.settings, &api.certificate, "SIGHUP");
                continue;
            }
            () = &mut shutdown => break,
        };
        let acceptor = api.acceptor.clone();
        let router = router.clone();
        let verifies_clients = api.verifies_clients;
        let connection = connections.handle();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::warn!(target: "berth::audit", peer = %address, why = %e, "API TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::warn!(target: "berth::audit", peer = %address, why = "timeout", "API TLS handshake refused");
                    return;
                }
            };
            let identity = if verifies_clients {
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|cert| identity(cert))
            } else {
                None
            };
            let peer = Peer { identity, address };
            let inner = TowerToHyperService::new(router);
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(peer.clone());
                    hyper::service::Service::call(&inner, request)
                },
            );
            connection
                .serve(TokioIo::new(tls), service, header_timeout)
                .await;
        });
    }
    watcher.abort();
    connections.close("API TCP").await;
}

/// Loads the certificate and key again and, when they load and differ from
/// the ones in use, makes new handshakes take them; a broken pair keeps the
/// old one and logs the error. Open connections keep theirs either way.
fn reload(settings: &TcpSettings, certificate: &Reloadable, why: &str) {
    match certified_key(settings) {
        Ok(key) => {
            let mut current = certificate
                .current
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if current.cert == key.cert && why != "SIGHUP" {
                return;
            }
            *current = key;
            tracing::info!(cert = %settings.cert.display(), why, "API TLS certificate reloaded");
        }
        Err(e) => {
            tracing::error!(
                why,
                "reload the API TLS certificate (keeping the old one): {e}"
            )
        }
    }
}

/// How long the certificate files must be quiet after a change before they
/// are read again: a rewrite in place is then complete.
const SETTLE: Duration = Duration::from_millis(200);

/// Reloads the certificate when its or its key's directory changes: a
/// file renamed into place (certbot, cert-manager, a Kubernetes secret's
/// symlink swap) or rewritten in place.
async fn watch_certificate(settings: TcpSettings, certificate: Arc<Reloadable>) {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for file in [&settings.cert, &settings.key] {
        let dir = match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    let mut watches = Vec::new();
    for dir in &dirs {
        match crate::logs::wake::DirWatch::new(dir) {
            Ok(watch) => watches.push(watch),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "no reload of the API TLS certificate on file change (SIGHUP still reloads): {e}");
                return;
            }
        }
    }
    loop {
        if let Err(e) = any_changed(&mut watches).await {
            tracing::warn!(
                "the API TLS certificate's file watch failed (SIGHUP still reloads): {e}"
            );
            return;
        }
        // Until the files are quiet.
        while let Ok(changed) = tokio::time::timeout(SETTLE, any_changed(&mut watches)).await {
            if let Err(e) = changed {
                tracing::warn!(
                    "the API TLS certificate's file watch failed (SIGHUP still reloads): {e}"
                );
                return;
            }
        }
        reload(&settings, &certificate, "file change");
    }
}

async fn any_changed(watches: &mut [crate::logs::wake::DirWatch]) -> std::io::Result<()> {
    let changes = watches.iter_mut().map(|w| Box::pin(w.changed()));
    futures_util::future::select_all(changes).await.0
}
