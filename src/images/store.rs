//! The content store: an OCI image layout at `<work_dir>/images/`.
//!
//! ```text
//! <work_dir>/images/oci-layout          {"imageLayoutVersion":"1.0.0"}
//! <work_dir>/images/index.json          one entry per stored image: the
//!                                       platform manifest's descriptor,
//!                                       annotated with the normalized ref
//! <work_dir>/images/blobs/sha256/<hex>  verified blobs, read-only 0444
//! <work_dir>/images/ingest/             temp files of blobs being written;
//!                                       emptied at open (a kill -9 mid-pull
//!                                       leaves only these)
//! <work_dir>/images/lock                flock'd around index.json updates
//! ```
//!
//! A blob file exists only once its content has been hashed and matched
//! its digest and size while it streamed into `ingest/`; it is renamed into
//! place then. So any `blobs/sha256/<hex>` can be used without re-hashing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::digest::{Digest, Hasher};
use super::manifest::{
    Compression, Descriptor, ImageConfig, ImageConfigFile, Manifest, MAX_DOCUMENT, OCI_MANIFEST,
    REF_NAME,
};
use super::reference::Reference;

/// Errors of the store; each names the path or digest it is about.
#[derive(Debug, thiserror::Error)]
pub enum ImageStoreError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {digest}: content has digest {actual}, size {actual_size} (expected size {expected_size:?}); discarded")]
    Mismatch {
        digest: Digest,
        actual: Digest,
        actual_size: u64,
        expected_size: Option<u64>,
    },
    #[error("blob {digest}: larger than its declared size {size}; discarded")]
    TooLarge { digest: Digest, size: u64 },
    #[error("blob {digest}: not in the store")]
    Missing { digest: Digest },
    #[error("{what} {digest}: {source}")]
    Json {
        what: &'static str,
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} is not valid JSON: {source}", path.display())]
    IndexJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest {digest}: layer {layer} has media type {media_type:?}, not a tar, tar+gzip or tar+zstd layer")]
    LayerType {
        digest: Digest,
        layer: Digest,
        media_type: String,
    },
    #[error("manifest {digest}: {layers} layers but the config lists {diff_ids} diff_ids")]
    LayerCount {
        digest: Digest,
        layers: usize,
        diff_ids: usize,
    },
    #[error("image {0}: not in the store")]
    NotFound(String),
}

type Result<T, E = ImageStoreError> = std::result::Result<T, E>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ImageStoreError + 'a {
    move |source| ImageStoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// One layer of a stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// The blob's digest (compressed content).
    pub digest: Digest,
    pub media_type: Compression,
    /// Size of the blob.
    pub size: u64,
    /// Digest of the uncompressed tar, from the image config.
    pub diff_id: Digest,
}

/// An image found in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredImage {
    /// The normalized reference it was stored under.
    pub reference: String,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub config: ImageConfig,
    pub os: String,
    pub architecture: String,
    pub created: Option<String>,
    /// Lowest layer first.
    pub layers: Vec<Layer>,
}

impl StoredImage {
    /// Total size of the layer blobs.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// A line of `berth images`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSummary {
    pub reference: String,
    pub manifest_digest: Digest,
    pub size: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutIndex {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// The image store at `<work_dir>/images`.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl ImageStore {
    /// Opens (creating if needed) the store under `work_dir`, discarding
    /// temp files a killed writer left behind. Call once per agent start,
    /// before any pull: an `ingest/` file of a live writer would be removed
    /// too.
    pub fn open(work_dir: &Path) -> Result<Self> {
        let store = Self::open_existing(work_dir)?;
        let ingest = store.ingest_dir();
        if let Ok(entries) = fs::read_dir(&ingest) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(store)
    }

    /// Opens the store without discarding temp files (for readers such as
    /// the CLI, which run beside a live agent).
    pub fn open_existing(work_dir: &Path) -> Result<Self> {
        let root = work_dir.join("images");
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;
        let _ = fs::set_permissions(&root, fs::Permissions::from_mode(0o700));
        let ingest = root.join("ingest");
        fs::create_dir_all(&ingest).map_err(io_err("create", &ingest))?;
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            write_atomic(&index, br#"{"schemaVersion":2,"manifests":[]}"#)?;
        }
        Ok(Self { root })
    }

    /// `<work_dir>/images`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// Where the blob with `digest` is (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    /// Whether the blob is in the store (and so verified).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Reads a JSON document blob, bounded by [`MAX_DOCUMENT`].
    pub fn read_document(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageStoreError::Missing {
                digest: digest.clone(),
            },
            _ => ImageStoreError::Io {
                op: "open",
                path: path.clone(),
                source: e,
            },
        })?;
        let mut data = Vec::new();
        file.take(MAX_DOCUMENT)
            .read_to_end(&mut data)
            .map_err(io_err("read", &path))?;
        Ok(data)
    }

    /// Starts writing a blob: content written to the returned writer is
    /// hashed and counted; [`BlobWriter::commit`] renames it into place
    /// only if digest and size match.
    pub fn blob_writer(&self, digest: &Digest, size: Option<u64>) -> Result<BlobWriter> {
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let temp =
            self.ingest_dir()
                .join(format!("{}.{}.{}", digest.hex(), std::process::id(), seq));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(io_err("create", &temp))?;
        Ok(BlobWriter {
            file: Some(file),
            temp,
            dest: self.blob_path(digest),
            digest: digest.clone(),
            size,
            written: 0,
            hasher: Hasher::new(),
        })
    }

    /// Copies `reader` into the store as blob `digest`, verified.
    pub fn put_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
        reader: &mut dyn Read,
    ) -> Result<PathBuf> {
        if self.has_blob(digest) {
            return Ok(self.blob_path(digest));
        }
        let mut writer = self.blob_writer(digest, size)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(io_err("read content of", &writer.dest))?;
            if n == 0 {
                break;
            }
            writer.write_chunk(&buf[..n])?;
        }
        writer.commit()
    }

    /// Stores a JSON document computed here (its digest is its content's).
    pub fn put_document(&self, data: &[u8]) -> Result<Digest> {
        let digest = Digest::of(data);
        self.put_blob(&digest, Some(data.len() as u64), &mut &data[..])?;
        Ok(digest)
    }

    fn lock(&self) -> Result<Flock<File>> {
        let path = self.root.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| ImageStoreError::Io {
            op: "lock",
            path,
            source: e.into(),
        })
    }

    fn read_index(&self) -> Result<LayoutIndex> {
        let path = self.root.join("index.json");
        let data = fs::read(&path).map_err(io_err("read", &path))?;
        serde_json::from_slice(&data).map_err(|source| ImageStoreError::IndexJson { path, source })
    }

    fn write_index(&self, index: &LayoutIndex) -> Result<()> {
        let data = serde_json::to_vec_pretty(index).expect("index serializes");
        write_atomic(&self.root.join("index.json"), &data)
    }

    /// Names the (already stored, verified) manifest `manifest` as
    /// `reference`, replacing what that reference named before. Checks the
    /// manifest parses as an image whose blobs are all present.
    pub fn tag(&self, reference: &Reference, manifest: &Descriptor) -> Result<StoredImage> {
        let name = reference.to_string();
        let image = self.load_image(&name, &manifest.digest)?;
        for layer in &image.layers {
            if !self.has_blob(&layer.digest) {
                return Err(ImageStoreError::Missing {
                    digest: layer.digest.clone(),
                });
            }
        }
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        index.schema_version = 2;
        // An image the name leaves stays, untagged, as
        // `registry/repository@digest`: a container may run on it (a
        // restart asks for it by digest), and GC removes it once none does.
        let mut untagged = Vec::new();
        index.manifests.retain(|d| {
            if d.annotations.get(REF_NAME) != Some(&name) {
                return true;
            }
            if d.digest != manifest.digest {
                untagged.push(d.clone());
            }
            false
        });
        for mut old in untagged {
            if index.manifests.iter().any(|d| d.digest == old.digest) {
                continue;
            }
            old.annotations.insert(
                REF_NAME.to_owned(),
                format!(
                    "{}/{}@{}",
                    reference.registry, reference.repository, old.digest
                ),
            );
            index.manifests.push(old);
        }
        let mut entry = manifest.clone();
        entry.platform = None;
        if entry.media_type.is_empty() {
            entry.media_type = OCI_MANIFEST.to_owned();
        }
        entry.annotations = BTreeMap::from([
            (REF_NAME.to_owned(), name),
            (LAST_USED.to_owned(), now_stamp()),
        ]);
        index.manifests.push(entry);
        self.write_index(&index)?;
        Ok(image)
    }

    fn load_image(&self, name: &str, manifest_digest: &Digest) -> Result<StoredImage> {
        let data = self.read_document(manifest_digest)?;
        let manifest: Manifest =
            serde_json::from_slice(&data).map_err(|source| ImageStoreError::Json {
                what: "manifest",
                digest: manifest_digest.clone(),
                source,
            })?;
        let config_data = self.read_document(&manifest.config.digest)?;
        let config: ImageConfigFile =
            serde_json::from_slice(&config_data).map_err(|source| ImageStoreError::Json {
                what: "image config",
                digest: manifest.config.digest.clone(),
                source,
            })?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageStoreError::LayerCount {
                digest: manifest_digest.clone(),
                layers: manifest.layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for (d, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            let media_type = Compression::of_media_type(&d.media_type).ok_or_else(|| {
                ImageStoreError::LayerType {
                    digest: manifest_digest.clone(),
                    layer: d.digest.clone(),
                    media_type: d.media_type.clone(),
                }
            })?;
            layers.push(Layer {
                digest: d.digest.clone(),
                media_type,
                size: d.size,
                diff_id: diff_id.clone(),
            });
        }
        Ok(StoredImage {
            reference: name.to_owned(),
            manifest_digest: manifest_digest.clone(),
            config_digest: manifest.config.digest.clone(),
            config: config.config,
            os: config.os,
            architecture: config.architecture,
            created: config.created,
            layers,
        })
    }

    /// The stored image `reference` names: the entry stored under exactly
    /// that normalized reference, or, for a reference with a digest, any
    /// entry with that manifest digest.
    pub fn resolve(&self, reference: &Reference) -> Result<Option<StoredImage>> {
        let name = reference.to_string();
        let index = self.read_index()?;
        let found = index
            .manifests
            .iter()
            .find(|d| d.annotations.get(REF_NAME) == Some(&name))
            .or_else(|| {
                let digest = reference.digest.as_ref()?;
                index.manifests.iter().find(|d| &d.digest == digest)
            });
        match found {
            Some(d) => self.load_image(&name, &d.digest).map(Some),
            None => Ok(None),
        }
    }

    /// Every stored image, in index order.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let index = self.read_index()?;
        let mut out = Vec::new();
        for d in &index.manifests {
            let Some(name) = d.annotations.get(REF_NAME) else {
                continue;
            };
            let size = self
                .load_image(name, &d.digest)
                .map(|i| i.size())
                .unwrap_or(0);
            out.push(ImageSummary {
                reference: name.clone(),
                manifest_digest: d.digest.clone(),
                size,
            });
        }
        Ok(out)
    }

    /// Removes the entry `reference` names (exact name, or every entry with
    /// its digest), then the blobs no remaining image uses. Returns the
    /// removed references. Whether a container still uses the image is the
    /// caller's check.
    pub fn remove(&self, reference: &Reference) -> Result<Vec<String>> {
        let name = reference.to_string();
        let removed = {
            let _lock = self.lock()?;
            let mut index = self.read_index()?;
            let exact = index
                .manifests
                .iter()
                .any(|d| d.annotations.get(REF_NAME) == Some(&name));
            let mut removed = Vec::new();
            index.manifests.retain(|d| {
                let hit = if exact {
                    d.annotations.get(REF_NAME) == Some(&name)
                } else {
                    reference.digest.as_ref() == Some(&d.digest)
                };
                if hit {
                    removed.push(d.annotations.get(REF_NAME).cloned().unwrap_or_default());
                }
                !hit
            });
            if removed.is_empty() {
                return Err(ImageStoreError::NotFound(name));
            }
            self.write_index(&index)?;
            removed
        };
        self.sweep()?;
        Ok(removed)
    }

    /// Digests of every blob a stored image uses (manifest, config, layers).
    pub fn referenced_blobs(&self) -> Result<BTreeSet<Digest>> {
        let index = self.read_index()?;
        let mut used = BTreeSet::new();
        for d in &index.manifests {
            used.insert(d.digest.clone());
            let Ok(data) = self.read_document(&d.digest) else {
                continue;
            };
            if let Ok(m) = serde_json::from_slice::<Manifest>(&data) {
                used.insert(m.config.digest);
                used.extend(m.layers.into_iter().map(|l| l.digest));
            }
        }
        Ok(used)
    }

    /// Removes blobs no stored image uses, except those a writer is
    /// bringing in now (a pull's blobs are renamed into place before its
    /// index entry is written; `keep` holds the digests of pulls in flight).
    /// Returns the bytes freed.
    pub fn sweep_except(&self, keep: &BTreeSet<Digest>) -> Result<u64> {
        let _lock = self.lock()?;
        let used = self.referenced_blobs()?;
        let dir = self.root.join("blobs").join("sha256");
        let mut freed = 0;
        for entry in fs::read_dir(&dir).map_err(io_err("read", &dir))?.flatten() {
            let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            else {
                continue;
            };
            if used.contains(&digest) || keep.contains(&digest) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if fs::remove_file(entry.path()).is_ok() {
                freed += size;
            }
        }
        Ok(freed)
    }

    /// Sweeps, keeping the blobs pulls and loads in flight have pinned.
    fn sweep(&self) -> Result<u64> {
        self.sweep_except(&super::pull::pinned_blobs())
    }
}

/// Annotation of an index entry: when it was last stored or used (seconds
/// since the epoch, zero-padded so it sorts as text).
pub const LAST_USED: &str = "io.berth.image.last-used";

fn now_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs:020}")
}

/// What [`ImageStore::gc`] removed.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct GcReport {
    pub removed: Vec<String>,
    pub freed: u64,
}

impl ImageStore {
    /// Records that the image stored as `reference` was used now (image GC
    /// removes the least recently used first).
    pub fn touch(&self, reference: &Reference) -> Result<()> {
        let name = reference.to_string();
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        for d in &mut index.manifests {
            if d.annotations.get(REF_NAME) == Some(&name) {
                d.annotations.insert(LAST_USED.to_owned(), now_stamp());
            }
        }
        self.write_index(&index)
    }

    /// Bytes of all blobs in the store.
    pub fn size(&self) -> Result<u64> {
        let dir = self.root.join("blobs").join("sha256");
        Ok(fs::read_dir(&dir)
            .map_err(io_err("read", &dir))?
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum())
    }

    /// Removes images, least recently used first, until the store holds at
    /// most `limit` bytes, never one whose manifest digest is in `in_use`
    /// (containers' images) and never a blob in `keep` (pulls in flight,
    /// `pull::pinned_blobs()`). Unreferenced blobs go first.
    pub fn gc(
        &self,
        limit: u64,
        in_use: &BTreeSet<Digest>,
        keep: &BTreeSet<Digest>,
    ) -> Result<GcReport> {
        let mut report = GcReport {
            freed: self.sweep_except(keep)?,
            ..Default::default()
        };
        while self.size()? > limit {
            let victim = {
                let index = self.read_index()?;
                let mut candidates: Vec<&Descriptor> = index
                    .manifests
                    .iter()
                    .filter(|d| !in_use.contains(&d.digest) && !keep.contains(&d.digest))
                    .collect();
                candidates
                    .sort_by_key(|d| d.annotations.get(LAST_USED).cloned().unwrap_or_default());
                match candidates.first() {
                    Some(d) => d.annotations.get(REF_NAME).cloned(),
                    None => None,
                }
            };
            let Some(name) = victim else { break };
            {
                let _lock = self.lock()?;
                let mut index = self.read_index()?;
                index
                    .manifests
                    .retain(|d| d.annotations.get(REF_NAME) != Some(&name));
                self.write_index(&index)?;
            }
            report.freed += self.sweep_except(keep)?;
            report.removed.push(name);
        }
        Ok(report)
    }
}

/// A blob being written; see [`ImageStore::blob_writer`]. Dropped without
/// commit, its temp file is removed.
pub struct BlobWriter {
    file: Option<File>,
    temp: PathBuf,
    dest: PathBuf,
    digest: Digest,
    size: Option<u64>,
    written: u64,
    hasher: Hasher,
}

impl BlobWriter {
    /// Appends a chunk; refuses content beyond the declared size at once.
    pub fn write_chunk(&mut self, data: &[u8]) -> Result<()> {
        self.written += data.len() as u64;
        if let Some(size) = self.size {
            if self.written > size {
                return Err(ImageStoreError::TooLarge {
                    digest: self.digest.clone(),
                    size,
                });
            }
        }
        self.hasher.update(data);
        let file = self.file.as_mut().expect("open until commit");
        file.write_all(data).map_err(io_err("write", &self.temp))
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies digest and size, then renames the blob into place.
    pub fn commit(mut self) -> Result<PathBuf> {
        let actual = std::mem::take(&mut self.hasher).finish();
        if actual != self.digest || self.size.is_some_and(|s| s != self.written) {
            return Err(ImageStoreError::Mismatch {
                digest: self.digest.clone(),
                actual,
                actual_size: self.written,
                expected_size: self.size,
            });
        }
        let file = self.file.take().expect("open until commit");
        file.sync_all().map_err(io_err("sync", &self.temp))?;
        drop(file);
        fs::set_permissions(&self.temp, fs::Permissions::from_mode(0o444))
            .map_err(io_err("chmod", &self.temp))?;
        fs::rename(&self.temp, &self.dest).map_err(io_err("rename into", &self.dest))?;
        Ok(self.dest.clone())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Committed writers have renamed the temp file away; this removes
        // it only when the blob was refused or abandoned.
        let _ = fs::remove_file(&self.temp);
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    berth_sys::atomic::write_atomic(path, data, berth_sys::atomic::Durability::Durable).map_err(
        |e| ImageStoreError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        },
    )
}

impl ImageStore {
    /// Copies `reader` into the store under the digest of its content
    /// (content addressed, so verified by construction); `before_visible`
    /// is called with the digest before the blob appears under its name
    /// (to pin it against GC). Returns the digest and size.
    pub fn put_content(
        &self,
        reader: &mut dyn Read,
        before_visible: &mut dyn FnMut(&Digest),
    ) -> Result<(Digest, u64)> {
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .ingest_dir()
            .join(format!("content.{}.{}", std::process::id(), seq));
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(io_err("create", &temp))?;
        // Removes the temp file on every early return.
        struct Temp<'a>(&'a Path);
        impl Drop for Temp<'_> {
            fn drop(&mut self) {
                let _ = fs::remove_file(self.0);
            }
        }
        let _guard = Temp(&temp);
        let mut hasher = Hasher::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader.read(&mut buf).map_err(io_err("read into", &temp))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            file.write_all(&buf[..n]).map_err(io_err("write", &temp))?;
        }
        let digest = hasher.finish();
        before_visible(&digest);
        if self.has_blob(&digest) {
            return Ok((digest, size));
        }
        file.sync_all().map_err(io_err("sync", &temp))?;
        drop(file);
        fs::set_permissions(&temp, fs::Permissions::from_mode(0o444))
            .map_err(io_err("chmod", &temp))?;
        let dest = self.blob_path(&digest);
        fs::rename(&temp, &dest).map_err(io_err("rename into", &dest))?;
        Ok((digest, size))
    }
}
