//! `berth load` of an OCI image layout directory: every blob the images
//! need is copied through the store's verified writer (digest and size),
//! every layer's diff_id checked, then each image named in the layout's
//! index.json (`org.opencontainers.image.ref.name`) is stored under its
//! normalized reference. The layout is untrusted like a registry.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::digest::Digest;
use super::manifest::{
    Compression, Descriptor, ImageConfigFile, Index, Manifest, Platform, DOCKER_LIST, MAX_DOCUMENT,
    OCI_INDEX, REF_NAME,
};
use super::pull::diff_id_of;
use super::reference::{Reference, ReferenceError};
use super::store::{ImageStore, ImageStoreError, StoredImage};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {what} {digest}: {why}", layout.display())]
    Content {
        layout: PathBuf,
        what: &'static str,
        digest: String,
        why: String,
    },
    #[error("{}: image name: {source}", layout.display())]
    Reference {
        layout: PathBuf,
        #[source]
        source: ReferenceError,
    },
    #[error("{}: {source}", layout.display())]
    Store {
        layout: PathBuf,
        #[source]
        source: ImageStoreError,
    },
}

struct Layout<'a> {
    dir: &'a Path,
    store: &'a ImageStore,
}

impl Layout<'_> {
    fn open_blob(&self, digest: &Digest) -> Result<File, LoadError> {
        let path = self.dir.join("blobs/sha256").join(digest.hex());
        File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|source| LoadError::Io {
                op: "open",
                path,
                source,
            })
    }

    /// Copies the blob into the store; true if it was not there before.
    fn copy(&self, desc: &Descriptor) -> Result<bool, LoadError> {
        if self.store.has_blob(&desc.digest) {
            return Ok(false);
        }
        let mut file = self.open_blob(&desc.digest)?;
        self.store
            .put_blob(&desc.digest, Some(desc.size), &mut file as &mut dyn Read)
            .map(|_| true)
            .map_err(|source| LoadError::Store {
                layout: self.dir.to_owned(),
                source,
            })
    }
}

/// A stored JSON document, bounded.
fn read_stored(store: &ImageStore, origin: &Path, desc: &Descriptor) -> Result<Vec<u8>, LoadError> {
    if desc.size > MAX_DOCUMENT {
        return Err(LoadError::Content {
            layout: origin.to_owned(),
            what: "document",
            digest: desc.digest.to_string(),
            why: "larger than 8 MiB".into(),
        });
    }
    store
        .read_document(&desc.digest)
        .map_err(|source| LoadError::Store {
            layout: origin.to_owned(),
            source,
        })
}

/// Loads every named image of the OCI layout at `dir`; an index entry is
/// resolved to `platform` (the host's when None).
pub fn load_oci_layout(
    store: &ImageStore,
    dir: &Path,
    platform: Option<&Platform>,
) -> Result<Vec<StoredImage>, LoadError> {
    let l = Layout { dir, store };
    let index_path = dir.join("index.json");
    let mut data = Vec::new();
    File::open(&index_path)
        .and_then(|f| f.take(MAX_DOCUMENT).read_to_end(&mut data))
        .map_err(|source| LoadError::Io {
            op: "read",
            path: index_path.clone(),
            source,
        })?;
    load_index(store, dir, &data, platform, &mut |desc| l.copy(desc))
}

/// The annotation `docker save` (containerd) names an image by.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Loads every named image of an OCI layout's `index.json` (`data`);
/// `copy` brings a blob into the store and says whether it was new (a new
/// layer's diff_id is checked; one already stored was checked before).
pub(crate) fn load_index(
    store: &ImageStore,
    dir: &Path,
    data: &[u8],
    platform: Option<&Platform>,
    copy: &mut dyn FnMut(&Descriptor) -> Result<bool, LoadError>,
) -> Result<Vec<StoredImage>, LoadError> {
    let content = |what: &'static str, digest: &Digest, why: String| LoadError::Content {
        layout: dir.to_owned(),
        what,
        digest: digest.to_string(),
        why,
    };
    let store_err = |source| LoadError::Store {
        layout: dir.to_owned(),
        source,
    };
    fn document(
        store: &ImageStore,
        dir: &Path,
        copy: &mut dyn FnMut(&Descriptor) -> Result<bool, LoadError>,
        desc: &Descriptor,
    ) -> Result<Vec<u8>, LoadError> {
        if desc.size <= MAX_DOCUMENT {
            copy(desc)?;
        }
        read_stored(store, dir, desc)
    }
    let index: Index = serde_json::from_slice(data).map_err(|e| LoadError::Content {
        layout: dir.to_owned(),
        what: "index.json",
        digest: String::new(),
        why: e.to_string(),
    })?;
    let host = Platform::host();
    let platform = platform.unwrap_or(&host);
    let mut loaded = Vec::new();
    for entry in &index.manifests {
        let Some(name) = entry
            .annotations
            .get(CONTAINERD_NAME)
            .or_else(|| entry.annotations.get(REF_NAME))
        else {
            continue;
        };
        let reference = Reference::parse(name).map_err(|source| LoadError::Reference {
            layout: dir.to_owned(),
            source,
        })?;
        let mut desc = entry.clone();
        let body = document(store, dir, copy, &desc)?;
        let kind = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
        let is_index = entry.media_type == OCI_INDEX
            || entry.media_type == DOCKER_LIST
            || kind.get("manifests").is_some();
        if is_index {
            let nested: Index = serde_json::from_slice(&body)
                .map_err(|e| content("index", &desc.digest, e.to_string()))?;
            let Some(chosen) = nested.select(platform) else {
                return Err(content(
                    "index",
                    &desc.digest,
                    format!("no manifest for {}/{}", platform.os, platform.architecture),
                ));
            };
            desc = chosen.clone();
        }
        let body = document(store, dir, copy, &desc)?;
        let manifest: Manifest = serde_json::from_slice(&body)
            .map_err(|e| content("manifest", &desc.digest, e.to_string()))?;
        let config_data = document(store, dir, copy, &manifest.config)?;
        let config: ImageConfigFile = serde_json::from_slice(&config_data)
            .map_err(|e| content("config", &manifest.config.digest, e.to_string()))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(content(
                "manifest",
                &desc.digest,
                "layer count differs from the config's diff_ids".into(),
            ));
        }
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            let Some(compression) = Compression::of_media_type(&layer.media_type) else {
                return Err(content(
                    "layer",
                    &layer.digest,
                    format!("unsupported media type {:?}", layer.media_type),
                ));
            };
            if !copy(layer)? {
                continue;
            }
            let path = store.blob_path(&layer.digest);
            match diff_id_of(&path, compression) {
                Ok(actual) if &actual == diff_id => {}
                Ok(actual) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(content(
                        "layer",
                        &layer.digest,
                        format!("uncompressed digest {actual}, the config's diff_id is {diff_id}; discarded"),
                    ));
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(content(
                        "layer",
                        &layer.digest,
                        format!("cannot decompress: {e}; discarded"),
                    ));
                }
            }
        }
        let image = store.tag(&reference, &desc).map_err(store_err)?;
        loaded.push(image);
    }
    Ok(loaded)
}
