//! Pulling an image from a registry (distribution API v2) into the store.
//!
//! Manifests: OCI index and manifest, Docker manifest list and v2 schema 2;
//! an index is resolved to this host's platform. Every document is checked
//! against its digest, every blob streams through the store's verified
//! writer, every layer's uncompressed digest is checked against the
//! config's diff_ids. Blobs already in the store are not fetched again.
//!
//! Transport: TLS (rustls; bundled Mozilla roots, the system's CA bundle
//! and the registry's configured extra CA certificates), plain HTTP only to
//! registries named insecure. Mirrors of a registry are tried in order
//! before it.

use std::collections::HashMap;
use std::io::Read;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::digest::{Digest, Hasher};
use super::manifest::{
    Compression, Descriptor, ImageConfigFile, Index, Manifest, Platform, DOCKER_CONFIG,
    DOCKER_LIST, DOCKER_MANIFEST, MAX_DOCUMENT, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
};
use super::reference::{Reference, DOCKER_HUB, DOCKER_HUB_API};
use super::store::{ImageStore, ImageStoreError, StoredImage};

/// Why a pull failed; names the registry, and the blob when one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("registry {registry}: refusing to follow {url} to plain HTTP from a TLS registry")]
    TlsDowngrade { registry: String, url: String },
    #[error("registry {registry}: CA certificates {}: {why}", path.display())]
    CaCerts {
        registry: String,
        path: std::path::PathBuf,
        why: String,
    },
    #[error("registry {registry}: {what}: {source}")]
    Connect {
        registry: String,
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("registry {registry}: GET {path}: HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        registry: String,
        path: String,
        status: u16,
        body: String,
    },
    #[error("registry {registry}: authentication: {why}")]
    Auth { registry: String, why: String },
    #[error("registry {registry}: {what} {digest}: {why}")]
    Content {
        registry: String,
        what: &'static str,
        digest: String,
        why: String,
    },
    #[error("registry {registry}: no manifest for platform {os}/{architecture} in index {digest}")]
    NoPlatform {
        registry: String,
        digest: Digest,
        os: String,
        architecture: String,
    },
    #[error("registry {registry}: {source}")]
    Store {
        registry: String,
        #[source]
        source: ImageStoreError,
    },
}

/// Credentials for one registry (never logged, never stored in records).
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `HOST:PORT` of registries spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Credentials by registry `HOST[:PORT]`.
    pub credentials: HashMap<String, Credentials>,
    /// Platform to select from an index; the host's when None.
    pub platform: Option<Platform>,
    /// The registry of names without one (Docker Hub when None).
    pub default_registry: Option<String>,
    /// Mirrors (`HOST[:PORT]`) by registry, tried in order before it.
    pub mirrors: HashMap<String, Vec<String>>,
    /// Extra CA certificate PEM files by registry or mirror `HOST[:PORT]`.
    pub ca_certs: HashMap<String, Vec<std::path::PathBuf>>,
    /// A docker-style `config.json` to read credentials from.
    pub docker_config: Option<std::path::PathBuf>,
}

impl PullOptions {
    /// Parses an image reference with the configured default registry.
    pub fn parse_reference(
        &self,
        text: &str,
    ) -> std::result::Result<Reference, super::reference::ReferenceError> {
        Reference::parse_with_default(text, self.default_registry.as_deref().unwrap_or(DOCKER_HUB))
    }

    /// The credentials for `host`: the agent config's, else the docker
    /// `config.json`'s.
    fn credentials_for(&self, host: &str) -> Option<Credentials> {
        if let Some(c) = self.credentials.get(host) {
            return Some(c.clone());
        }
        let path = self.docker_config.as_ref()?;
        super::docker_config::lookup(path, host)
    }
}

/// A progress event of a pull.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    Resolved {
        reference: String,
        manifest: String,
        layers: usize,
        /// The layers' digests, lowest first.
        #[serde(default)]
        layer_digests: Vec<String>,
    },
    LayerExists {
        digest: String,
        size: u64,
    },
    LayerDone {
        digest: String,
        size: u64,
    },
    Done {
        reference: String,
        manifest: String,
    },
    /// Bytes of a layer downloaded so far.
    Downloading {
        digest: String,
        done: u64,
        size: u64,
    },
    /// The pull failed (the last line of a streamed pull).
    Error {
        message: String,
    },
    /// The image's layers are unpacked, ready to launch.
    Unpacked {
        reference: String,
        layers: usize,
    },
}

struct Session {
    registry: String,
    host: String,
    repository: String,
    creds: Option<Credentials>,
    auth: Option<String>,
    /// None: plain HTTP.
    tls: Option<tokio_rustls::TlsConnector>,
}

type Result<T, E = PullError> = std::result::Result<T, E>;

/// Blobs being downloaded in this process: a second pull of the same blob
/// waits for the first and then finds it in the store.
static IN_FLIGHT: std::sync::Mutex<
    Option<HashMap<Digest, std::sync::Weak<tokio::sync::Mutex<()>>>>,
> = std::sync::Mutex::new(None);
/// Blobs a pull in progress needs (pinned from when its manifest is read
/// until its image is in the index): image GC must keep them.
static PINNED: std::sync::Mutex<Option<HashMap<Digest, usize>>> = std::sync::Mutex::new(None);

/// The blobs pulls in progress need; pass to `ImageStore::sweep_except`.
pub fn pinned_blobs() -> std::collections::BTreeSet<Digest> {
    let pinned = PINNED.lock().unwrap_or_else(|e| e.into_inner());
    pinned.iter().flat_map(|m| m.keys().cloned()).collect()
}

/// Blobs pinned against GC until dropped.
#[derive(Default)]
pub struct Pins(Vec<Digest>);

impl Pins {
    pub fn pin(&mut self, digest: &Digest) {
        let mut pinned = PINNED.lock().unwrap_or_else(|e| e.into_inner());
        *pinned
            .get_or_insert_with(HashMap::new)
            .entry(digest.clone())
            .or_default() += 1;
        self.0.push(digest.clone());
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let mut pinned = PINNED.lock().unwrap_or_else(|e| e.into_inner());
        let map = pinned.get_or_insert_with(HashMap::new);
        for d in &self.0 {
            if let Some(n) = map.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    map.remove(d);
                }
            }
        }
    }
}

fn flight_lock(digest: &Digest) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    let mut map = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    let map = map.get_or_insert_with(HashMap::new);
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(lock) = map.get(digest).and_then(|w| w.upgrade()) {
        return lock;
    }
    let lock = std::sync::Arc::new(tokio::sync::Mutex::new(()));
    map.insert(digest.clone(), std::sync::Arc::downgrade(&lock));
    lock
}

/// Pulls `reference` into `store`; returns the stored image. The
/// registry's mirrors are tried first, in order; the registry itself last.
pub async fn pull(
    store: &ImageStore,
    reference: &Reference,
    options: &PullOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<StoredImage> {
    let registry = reference.registry.clone();
    let mirrors = options.mirrors.get(&registry).cloned().unwrap_or_default();
    for mirror in mirrors {
        let name = format!("{mirror} (mirror of {registry})");
        let session = match session(options, reference, name, &mirror) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("image {reference}: {e}; trying the next source");
                continue;
            }
        };
        match pull_from(store, reference, options, progress, session).await {
            Ok(image) => return Ok(image),
            Err(e @ PullError::Store { .. }) => return Err(e),
            Err(e) => tracing::warn!("image {reference}: {e}; trying the next source"),
        }
    }
    let host = if registry == DOCKER_HUB {
        DOCKER_HUB_API.to_owned()
    } else {
        registry.clone()
    };
    let s = session(options, reference, registry, &host)?;
    pull_from(store, reference, options, progress, s).await
}

/// A session with `host` (a registry or a mirror), TLS unless named
/// insecure.
fn session(
    options: &PullOptions,
    reference: &Reference,
    registry: String,
    host: &str,
) -> Result<Session> {
    let insecure = options.insecure_registries.iter().any(|r| r == host)
        || options
            .insecure_registries
            .iter()
            .any(|r| r == &reference.registry && host == reference.registry);
    let tls = if insecure {
        None
    } else {
        let extra = options.ca_certs.get(host).cloned().unwrap_or_default();
        Some(
            super::tls::connector(&extra).map_err(|(path, why)| PullError::CaCerts {
                registry: registry.clone(),
                path,
                why,
            })?,
        )
    };
    let creds = options.credentials_for(host).or_else(|| {
        (reference.registry == DOCKER_HUB && host == DOCKER_HUB_API)
            .then(|| options.credentials_for(DOCKER_HUB))
            .flatten()
    });
    Ok(Session {
        creds,
        registry,
        host: host.to_owned(),
        repository: reference.repository.clone(),
        auth: None,
        tls,
    })
}

async fn pull_from(
    store: &ImageStore,
    reference: &Reference,
    options: &PullOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
    mut s: Session,
) -> Result<StoredImage> {
    let store_err = |registry: &str| {
        let registry = registry.to_owned();
        move |source| PullError::Store { registry, source }
    };

    let (body, media_type) = s.manifest(&reference.manifest_reference()).await?;
    let digest = Digest::of(&body);
    if let Some(want) = &reference.digest {
        if &digest != want {
            return Err(s.content(
                "manifest",
                want.to_string(),
                format!("content has digest {digest}"),
            ));
        }
    }
    let (manifest_body, manifest_digest, manifest_type) =
        if media_type == OCI_INDEX || media_type == DOCKER_LIST {
            let index: Index = serde_json::from_slice(&body)
                .map_err(|e| s.content("index", digest.to_string(), e.to_string()))?;
            let platform = options.platform.clone().unwrap_or_else(Platform::host);
            let Some(entry) = index.select(&platform) else {
                return Err(PullError::NoPlatform {
                    registry: s.registry.clone(),
                    digest,
                    os: platform.os,
                    architecture: platform.architecture,
                });
            };
            let (body, media_type) = s.manifest(&entry.digest.to_string()).await?;
            let got = Digest::of(&body);
            if got != entry.digest {
                return Err(s.content(
                    "manifest",
                    entry.digest.to_string(),
                    format!("content has digest {got}"),
                ));
            }
            (body, got, media_type)
        } else {
            (body, digest, media_type)
        };
    if manifest_type != OCI_MANIFEST && manifest_type != DOCKER_MANIFEST {
        return Err(s.content(
            "manifest",
            manifest_digest.to_string(),
            format!("unsupported media type {manifest_type:?}"),
        ));
    }
    let manifest: Manifest = serde_json::from_slice(&manifest_body)
        .map_err(|e| s.content("manifest", manifest_digest.to_string(), e.to_string()))?;
    if manifest.config.media_type != OCI_CONFIG && manifest.config.media_type != DOCKER_CONFIG {
        return Err(s.content(
            "config",
            manifest.config.digest.to_string(),
            format!("unsupported media type {:?}", manifest.config.media_type),
        ));
    }
    if manifest.config.size > MAX_DOCUMENT {
        return Err(s.content(
            "config",
            manifest.config.digest.to_string(),
            "larger than 8 MiB".into(),
        ));
    }
    let mut pins = Pins(Vec::new());
    pins.pin(&manifest_digest);
    pins.pin(&manifest.config.digest);
    for layer in &manifest.layers {
        pins.pin(&layer.digest);
    }
    progress(Progress::Resolved {
        reference: reference.to_string(),
        manifest: manifest_digest.to_string(),
        layers: manifest.layers.len(),
        layer_digests: manifest
            .layers
            .iter()
            .map(|l| l.digest.to_string())
            .collect(),
    });
    s.blob(store, &manifest.config).await?;
    let config_data = store
        .read_document(&manifest.config.digest)
        .map_err(store_err(&s.registry))?;
    let config: ImageConfigFile = serde_json::from_slice(&config_data)
        .map_err(|e| s.content("config", manifest.config.digest.to_string(), e.to_string()))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(s.content(
            "manifest",
            manifest_digest.to_string(),
            format!(
                "{} layers but the config lists {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            ),
        ));
    }
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let Some(compression) = Compression::of_media_type(&layer.media_type) else {
            return Err(s.content(
                "layer",
                layer.digest.to_string(),
                format!("unsupported media type {:?}", layer.media_type),
            ));
        };
        let flight = flight_lock(&layer.digest);
        let _flight = flight.lock().await;
        if store.has_blob(&layer.digest) {
            progress(Progress::LayerExists {
                digest: layer.digest.to_string(),
                size: layer.size,
            });
            continue;
        }
        s.fetch_blob(store, layer, progress).await?;
        let path = store.blob_path(&layer.digest);
        let actual = tokio::task::spawn_blocking(move || diff_id_of(&path, compression))
            .await
            .expect("diff_id task does not panic");
        match actual {
            Ok(actual) if &actual == diff_id => {}
            Ok(actual) => {
                let _ = std::fs::remove_file(store.blob_path(&layer.digest));
                return Err(s.content("layer", layer.digest.to_string(), format!(
                    "uncompressed content has digest {actual}, the config's diff_id is {diff_id}; discarded"
                )));
            }
            Err(e) => {
                let _ = std::fs::remove_file(store.blob_path(&layer.digest));
                return Err(s.content(
                    "layer",
                    layer.digest.to_string(),
                    format!("cannot decompress: {e}; discarded"),
                ));
            }
        }
        progress(Progress::LayerDone {
            digest: layer.digest.to_string(),
            size: layer.size,
        });
    }
    let stored_digest = store
        .put_document(&manifest_body)
        .map_err(store_err(&s.registry))?;
    let desc = Descriptor {
        media_type: manifest_type,
        digest: stored_digest,
        size: manifest_body.len() as u64,
        platform: None,
        annotations: Default::default(),
    };
    let image = store
        .tag(reference, &desc)
        .map_err(store_err(&s.registry))?;
    progress(Progress::Done {
        reference: reference.to_string(),
        manifest: manifest_digest.to_string(),
    });
    Ok(image)
}

/// The sha256 of a layer's uncompressed tar.
pub fn diff_id_of(path: &std::path::Path, compression: Compression) -> std::io::Result<Digest> {
    let file = std::fs::File::open(path)?;
    let mut reader: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
            file,
        ))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file)?),
        Compression::Plain => Box::new(file),
    };
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

impl Session {
    fn content(&self, what: &'static str, digest: String, why: String) -> PullError {
        PullError::Content {
            registry: self.registry.clone(),
            what,
            digest,
            why,
        }
    }

    async fn manifest(&mut self, reference: &str) -> Result<(Vec<u8>, String)> {
        let path = format!("/v2/{}/manifests/{}", self.repository, reference);
        let accept = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", ");
        let response = self.get(&path, Some(&accept)).await?;
        let media_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
            .unwrap_or_default();
        let mut body = response.into_body();
        let mut data = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.connect(format!("GET {path}"), e))?;
            if let Some(chunk) = frame.data_ref() {
                data.extend_from_slice(chunk);
                if data.len() as u64 > MAX_DOCUMENT {
                    return Err(self.content(
                        "manifest",
                        reference.to_owned(),
                        "larger than 8 MiB".into(),
                    ));
                }
            }
        }
        // The document's own mediaType wins over a generic Content-Type.
        let declared = serde_json::from_slice::<serde_json::Value>(&data)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned)
            });
        let media_type = match declared {
            Some(m) => m,
            None if media_type.is_empty() || media_type == "application/json" => {
                // An OCI document without mediaType: an index has manifests.
                let v: serde_json::Value = serde_json::from_slice(&data).unwrap_or_default();
                if v.get("manifests").is_some() {
                    OCI_INDEX.to_owned()
                } else {
                    OCI_MANIFEST.to_owned()
                }
            }
            None => media_type,
        };
        Ok((data, media_type))
    }

    async fn blob(&mut self, store: &ImageStore, desc: &Descriptor) -> Result<()> {
        let flight = flight_lock(&desc.digest);
        let _flight = flight.lock().await;
        if store.has_blob(&desc.digest) {
            return Ok(());
        }
        self.fetch_blob(store, desc, &mut |_| {}).await
    }

    /// Downloads a blob; the caller holds its in-flight lock.
    async fn fetch_blob(
        &mut self,
        store: &ImageStore,
        desc: &Descriptor,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<()> {
        progress(Progress::Downloading {
            digest: desc.digest.to_string(),
            done: 0,
            size: desc.size,
        });
        let mut reported = 0u64;
        let path = format!("/v2/{}/blobs/{}", self.repository, desc.digest);
        let response = self.get(&path, None).await?;
        let mut writer = store
            .blob_writer(&desc.digest, Some(desc.size))
            .map_err(|source| PullError::Store {
                registry: self.registry.clone(),
                source,
            })?;
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.connect(format!("GET {path}"), e))?;
            if let Some(chunk) = frame.data_ref() {
                writer
                    .write_chunk(chunk)
                    .map_err(|source| PullError::Store {
                        registry: self.registry.clone(),
                        source,
                    })?;
                if writer.written() - reported >= 1 << 20 {
                    reported = writer.written();
                    progress(Progress::Downloading {
                        digest: desc.digest.to_string(),
                        done: reported,
                        size: desc.size,
                    });
                }
            }
        }
        writer.commit().map_err(|source| PullError::Store {
            registry: self.registry.clone(),
            source,
        })?;
        Ok(())
    }

    /// An HTTP/1 connection over `stream` (TLS or plain) to `addr`, driven
    /// by a task of its own.
    async fn http1<S>(
        &self,
        stream: S,
        addr: &str,
    ) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, PullError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.connect(format!("connect {addr}"), e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    fn connect(
        &self,
        what: String,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> PullError {
        PullError::Connect {
            registry: self.registry.clone(),
            what,
            source: Box::new(e),
        }
    }

    /// GET with auth: on 401, authenticate as the challenge asks, retry once.
    async fn get(&mut self, path: &str, accept: Option<&str>) -> Result<Response<Incoming>> {
        let base = format!("{}://{}", self.scheme(), self.host);
        let mut target = format!("{base}{path}");
        let mut authenticated = false;
        for _ in 0..6 {
            let same_host = target.starts_with(&format!("{base}/"));
            let auth = if same_host {
                self.auth.as_deref()
            } else {
                None
            };
            let response = self.send(&target, accept, auth).await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !authenticated && same_host {
                let challenge = response
                    .headers()
                    .get(hyper::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                self.authenticate(&challenge).await?;
                authenticated = true;
                continue;
            }
            if status.is_redirection() {
                let Some(location) = response
                    .headers()
                    .get(hyper::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                else {
                    break;
                };
                target = if location.starts_with('/') {
                    format!("{base}{location}")
                } else {
                    location.to_owned()
                };
                continue;
            }
            if !status.is_success() {
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let body = String::from_utf8_lossy(&body[..body.len().min(300)])
                    .trim()
                    .to_owned();
                return Err(PullError::Status {
                    registry: self.registry.clone(),
                    path: path.to_owned(),
                    status: status.as_u16(),
                    body,
                });
            }
            return Ok(response);
        }
        Err(PullError::Status {
            registry: self.registry.clone(),
            path: path.to_owned(),
            status: 310,
            body: "too many redirects or auth retries".into(),
        })
    }

    async fn authenticate(&mut self, challenge: &str) -> Result<()> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        let params = parse_challenge(params);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let Some(c) = &self.creds else {
                    return Err(PullError::Auth {
                        registry: self.registry.clone(),
                        why: "the registry asks for Basic credentials and none are configured"
                            .into(),
                    });
                };
                self.auth = Some(basic(c));
                Ok(())
            }
            "bearer" => {
                let Some(realm) = params.get("realm") else {
                    return Err(PullError::Auth {
                        registry: self.registry.clone(),
                        why: "Bearer challenge without realm".into(),
                    });
                };
                let mut url = realm.clone();
                let mut sep = if url.contains('?') { '&' } else { '?' };
                for key in ["service", "scope"] {
                    if let Some(v) = params.get(key) {
                        url.push(sep);
                        url.push_str(key);
                        url.push('=');
                        url.push_str(&urlencode(v));
                        sep = '&';
                    }
                }
                if !params.contains_key("scope") {
                    url.push(sep);
                    url.push_str(&format!(
                        "scope={}",
                        urlencode(&format!("repository:{}:pull", self.repository))
                    ));
                }
                let auth = self.creds.as_ref().map(basic);
                let response = self.send(&url, None, auth.as_deref()).await?;
                if !response.status().is_success() {
                    return Err(PullError::Auth {
                        registry: self.registry.clone(),
                        why: format!(
                            "token endpoint answered HTTP {}",
                            response.status().as_u16()
                        ),
                    });
                }
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| self.connect("read token".into(), e))?
                    .to_bytes();
                let v: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| PullError::Auth {
                        registry: self.registry.clone(),
                        why: format!("token response: {e}"),
                    })?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str());
                let Some(token) = token else {
                    return Err(PullError::Auth {
                        registry: self.registry.clone(),
                        why: "token response has no token".into(),
                    });
                };
                self.auth = Some(format!("Bearer {token}"));
                Ok(())
            }
            _ => Err(PullError::Auth {
                registry: self.registry.clone(),
                why: format!("unsupported challenge {scheme:?}"),
            }),
        }
    }

    async fn send(
        &self,
        url: &str,
        accept: Option<&str>,
        auth: Option<&str>,
    ) -> Result<Response<Incoming>> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| self.connect(format!("URL {url}"), e))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if self.tls.is_none() => false,
            // A TLS registry never sends us (or our credentials) to plain HTTP.
            _ => {
                return Err(PullError::TlsDowngrade {
                    registry: self.registry.clone(),
                    url: url.to_owned(),
                })
            }
        };
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let host = uri.host().unwrap_or_default().to_owned();
        let addr = if uri.port().is_some() {
            authority.clone()
        } else if https {
            format!("{authority}:443")
        } else {
            format!("{authority}:80")
        };
        let stream = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| self.connect(format!("connect {addr}"), e))?;
        let mut sender = if https {
            let connector = match &self.tls {
                Some(c) => c.clone(),
                None => super::tls::connector(&[]).map_err(|(path, why)| PullError::CaCerts {
                    registry: self.registry.clone(),
                    path,
                    why,
                })?,
            };
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| self.connect(format!("TLS server name {host:?}"), e))?;
            let stream = connector
                .connect(name, stream)
                .await
                .map_err(|e| self.connect(format!("TLS handshake with {addr}"), e))?;
            self.http1(stream, &addr).await?
        } else {
            self.http1(stream, &addr).await?
        };
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut request = Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::USER_AGENT, "berth");
        if let Some(a) = accept {
            request = request.header(hyper::header::ACCEPT, a);
        }
        if let Some(a) = auth {
            request = request.header(hyper::header::AUTHORIZATION, a);
        }
        let request = request.body(Empty::<Bytes>::new()).expect("request builds");
        sender
            .send_request(request)
            .await
            .map_err(|e| self.connect(format!("GET {url}"), e))
    }
}

impl Session {
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

fn basic(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `realm="...",service="...",scope="..."` into a map.
fn parse_challenge(params: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_owned(), &q[end + 1..]),
                None => (q.to_owned(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].to_owned(), &after[end..]),
                None => (after.to_owned(), ""),
            }
        };
        out.insert(key, value);
        rest = after.trim_start_matches(',').trim();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_parses() {
        let p = parse_challenge(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull");
    }
}
