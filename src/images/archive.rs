//! `berth load` of archives: an OCI image layout as a tar, and a
//! `docker save` tarball (`manifest.json` + config JSON + layer tars).
//!
//! The archive is untrusted. It is read once, as a stream; no name in it is
//! ever used as a path on disk: every regular file is hashed into the
//! store's `ingest/` and renamed to the digest of its content (an OCI
//! `blobs/sha256/<hex>` entry whose content has another digest is refused),
//! `index.json` / `manifest.json` are kept in memory (bounded), and
//! symlinks and hard links are only recorded as aliases between names in
//! the archive. Names that are absolute or climb with `..` are refused. The
//! images are then checked as a pull checks them (config, layer count,
//! every layer's diff_id) before they are named in the store.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Deserialize;

use super::digest::Digest;
use super::load::{load_index, load_oci_layout, LoadError};
use super::manifest::{
    Compression, ImageConfigFile, Platform, MAX_DOCUMENT, OCI_CONFIG, OCI_MANIFEST,
};
use super::pull::{diff_id_of, Pins};
use super::reference::Reference;
use super::store::{ImageStore, StoredImage};

/// Archive members kept in memory rather than stored as blobs.
const DOCUMENTS: &[&str] = &["index.json", "manifest.json", "oci-layout", "repositories"];

/// Loads `path`: an OCI layout directory, or an OCI layout or `docker
/// save` archive (plain or gzip-compressed tar).
pub fn load_path(
    store: &ImageStore,
    path: &Path,
    platform: Option<&Platform>,
) -> Result<Vec<StoredImage>, LoadError> {
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
        op: "stat",
        path: path.to_owned(),
        source,
    })?;
    if meta.is_dir() {
        load_oci_layout(store, path, platform)
    } else {
        load_archive(store, path, platform)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

struct Members {
    origin: std::path::PathBuf,
    docs: HashMap<String, Vec<u8>>,
    files: HashMap<String, (Digest, u64)>,
    links: HashMap<String, String>,
    /// Blobs this archive brought into the store (not there before).
    fresh: HashSet<Digest>,
}

impl Members {
    fn content(&self, what: &'static str, digest: impl ToString, why: String) -> LoadError {
        LoadError::Content {
            layout: self.origin.clone(),
            what,
            digest: digest.to_string(),
            why,
        }
    }

    /// The blob stored for the member `name` (following links).
    fn lookup(&self, name: &str) -> Result<(Digest, u64), LoadError> {
        let mut name =
            normalize(name.as_bytes()).map_err(|why| self.content("archive member", name, why))?;
        for _ in 0..16 {
            if let Some(found) = self.files.get(&name) {
                return Ok(found.clone());
            }
            match self.links.get(&name) {
                Some(target) => name = target.clone(),
                None => break,
            }
        }
        Err(self.content("archive member", &name, "not in the archive".into()))
    }
}

/// `a/./b/` -> `a/b`; absolute names, `..` and non-UTF-8 are refused.
fn normalize(raw: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "name is not UTF-8".to_owned())?;
    if text.starts_with('/') {
        return Err("absolute name".into());
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("name climbs out with ..".into()),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> LoadError + 'a {
    move |source| LoadError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Loads an OCI layout tar or a `docker save` tar.
pub fn load_archive(
    store: &ImageStore,
    path: &Path,
    platform: Option<&Platform>,
) -> Result<Vec<StoredImage>, LoadError> {
    let file = File::open(path).map_err(io(path, "open"))?;
    let mut buffered = BufReader::new(file);
    let gzip = buffered
        .fill_buf()
        .map_err(io(path, "read"))?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let mut pins = Pins::default();
    let mut m = Members {
        origin: path.to_owned(),
        docs: HashMap::new(),
        files: HashMap::new(),
        links: HashMap::new(),
        fresh: HashSet::new(),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(io(path, "read"))? {
        let mut entry = entry.map_err(io(path, "read"))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let name = normalize(&raw).map_err(|why| m.content("archive member", &shown, why))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() {
            continue;
        }
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            let target_text = String::from_utf8_lossy(&target).into_owned();
            // A symlink's target is relative to its directory, a hard
            // link's to the archive's root; either must stay inside.
            let joined = if kind.is_symlink() {
                match name.rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/{target_text}"),
                    None => target_text.clone(),
                }
            } else {
                target_text.clone()
            };
            let resolved = resolve_dots(&joined).ok_or_else(|| {
                m.content(
                    "archive member",
                    &shown,
                    format!("link to {target_text:?} leaves the archive"),
                )
            })?;
            m.links.insert(name, resolved);
            continue;
        }
        if !kind.is_file() && kind != tar::EntryType::Continuous {
            return Err(m.content(
                "archive member",
                &shown,
                format!("entry type {kind:?} is not expected in an image archive"),
            ));
        }
        if DOCUMENTS.contains(&name.as_str()) {
            let mut data = Vec::new();
            (&mut entry)
                .take(MAX_DOCUMENT + 1)
                .read_to_end(&mut data)
                .map_err(io(path, "read"))?;
            if data.len() as u64 > MAX_DOCUMENT {
                return Err(m.content("archive member", &shown, "larger than 8 MiB".into()));
            }
            m.docs.insert(name, data);
            continue;
        }
        let mut existed = false;
        let (digest, size) = store
            .put_content(&mut entry, &mut |d| {
                pins.pin(d);
                existed = store.has_blob(d);
            })
            .map_err(|source| LoadError::Store {
                layout: path.to_owned(),
                source,
            })?;
        if !existed {
            m.fresh.insert(digest.clone());
        }
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            if hex != digest.hex() {
                return Err(m.content(
                    "blob",
                    format!("sha256:{hex}"),
                    format!("archive member {shown} has content digest {digest}"),
                ));
            }
        }
        m.files.insert(name, (digest, size));
    }
    if let Some(manifest) = m.docs.get("manifest.json") {
        let entries: Vec<DockerEntry> = serde_json::from_slice(manifest)
            .map_err(|e| m.content("manifest.json", "", e.to_string()))?;
        let mut loaded = Vec::new();
        for entry in entries {
            loaded.extend(load_docker_image(store, &m, &entry, &mut pins)?);
        }
        return Ok(loaded);
    }
    if let Some(index) = m.docs.get("index.json") {
        let fresh = &m.fresh;
        let origin = m.origin.clone();
        return load_index(store, path, index, platform, &mut |desc| {
            if store.has_blob(&desc.digest) {
                Ok(fresh.contains(&desc.digest))
            } else {
                Err(LoadError::Content {
                    layout: origin.clone(),
                    what: "blob",
                    digest: desc.digest.to_string(),
                    why: "not in the archive".into(),
                })
            }
        });
    }
    Err(m.content(
        "archive",
        "",
        "neither manifest.json (docker save) nor index.json (OCI layout) in it".into(),
    ))
}

/// `a/b/../c` -> `a/c`; None if it climbs above the root or is absolute.
fn resolve_dots(path: &str) -> Option<String> {
    if path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// The compression of a stored layer blob, from its first bytes.
fn sniff(store: &ImageStore, digest: &Digest) -> std::io::Result<Compression> {
    let mut head = [0u8; 4];
    let mut file = File::open(store.blob_path(digest))?;
    let n = file.read(&mut head)?;
    Ok(match &head[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::Plain,
    })
}

fn load_docker_image(
    store: &ImageStore,
    m: &Members,
    entry: &DockerEntry,
    pins: &mut Pins,
) -> Result<Vec<StoredImage>, LoadError> {
    let store_err = |source| LoadError::Store {
        layout: m.origin.clone(),
        source,
    };
    let (config_digest, config_size) = m.lookup(&entry.config)?;
    let config_data = store.read_document(&config_digest).map_err(store_err)?;
    let config: ImageConfigFile = serde_json::from_slice(&config_data)
        .map_err(|e| m.content("config", &config_digest, e.to_string()))?;
    if config.rootfs.diff_ids.len() != entry.layers.len() {
        return Err(m.content(
            "config",
            &config_digest,
            format!(
                "{} layers in manifest.json but the config lists {} diff_ids",
                entry.layers.len(),
                config.rootfs.diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (name, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
        let (digest, size) = m.lookup(name)?;
        let compression = if &digest == diff_id {
            Compression::Plain
        } else {
            let compression =
                sniff(store, &digest).map_err(|e| m.content("layer", &digest, e.to_string()))?;
            let actual = diff_id_of(&store.blob_path(&digest), compression)
                .map_err(|e| m.content("layer", &digest, format!("cannot decompress: {e}")))?;
            if &actual != diff_id {
                return Err(m.content(
                    "layer",
                    &digest,
                    format!("uncompressed digest {actual}, the config's diff_id is {diff_id}"),
                ));
            }
            compression
        };
        let media_type = match compression {
            Compression::Plain => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        };
        layers.push(serde_json::json!({
            "mediaType": media_type, "digest": digest.to_string(), "size": size,
        }));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_size},
        "layers": layers,
    });
    let body = serde_json::to_vec(&manifest).expect("manifest serializes");
    pins.pin(&Digest::of(&body));
    let manifest_digest = store.put_document(&body).map_err(store_err)?;
    let desc = super::manifest::Descriptor {
        media_type: OCI_MANIFEST.to_owned(),
        digest: manifest_digest.clone(),
        size: body.len() as u64,
        platform: None,
        annotations: Default::default(),
    };
    let tags = entry.repo_tags.clone().unwrap_or_default();
    if tags.is_empty() {
        return Err(m.content(
            "image",
            &config_digest,
            "has no RepoTags in manifest.json; nothing to name it by".into(),
        ));
    }
    let mut loaded = Vec::new();
    for tag in tags {
        let reference = Reference::parse(&tag).map_err(|source| LoadError::Reference {
            layout: m.origin.clone(),
            source,
        })?;
        loaded.push(store.tag(&reference, &desc).map_err(store_err)?);
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_and_escapes_refused() {
        assert_eq!(normalize(b"./blobs/sha256/ab").unwrap(), "blobs/sha256/ab");
        assert!(normalize(b"../x").is_err());
        assert!(normalize(b"a/../../x").is_err());
        assert!(normalize(b"/etc/passwd").is_err());
        assert_eq!(resolve_dots("a/../b").as_deref(), Some("b"));
        assert_eq!(resolve_dots("a/../../b"), None);
    }
}
