//! Where unpacked layers live, and making sure each is extracted exactly
//! once: under an exclusive flock on its lock file, into a temp dir that is
//! renamed into place only when the whole layer matched its diff_id.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_confined::Dir;
use nix::fcntl::{Flock, FlockArg};

use super::chain::chain_ids;
use super::extract::{decompressed, extract};
use super::UnpackError;
use crate::images::digest::Digest;
use crate::images::store::{ImageStore, ImageStoreError, Layer, StoredImage};

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);
static EXTRACTIONS: AtomicU64 = AtomicU64::new(0);

/// How many layers this process has extracted (not found already
/// unpacked): for tests and metrics.
pub fn extractions() -> u64 {
    EXTRACTIONS.load(Ordering::Relaxed)
}

/// `<work_dir>/images/layers`.
pub fn layers_root(store: &ImageStore) -> PathBuf {
    store.root().join("layers")
}

/// The directory of the layer with chain ID `chain_id` (whether or not it
/// is unpacked).
pub fn layer_dir(store: &ImageStore, chain_id: &Digest) -> PathBuf {
    layers_root(store).join(chain_id.hex())
}

pub(crate) fn locks_dir(store: &ImageStore) -> PathBuf {
    layers_root(store).join(".locks")
}

pub(crate) fn temp_dir(store: &ImageStore) -> PathBuf {
    layers_root(store).join(".tmp")
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> UnpackError + 'a {
    move |source| UnpackError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn make_dirs(store: &ImageStore) -> Result<(), UnpackError> {
    for dir in [layers_root(store), locks_dir(store), temp_dir(store)] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("create", &dir))?;
    }
    Ok(())
}

/// Opens (creating) the lock file of `chain_id`. Lock files are never
/// removed: removing one while a process waits on it would let two
/// extractions of the same layer run at once.
pub(crate) fn lock_file(store: &ImageStore, chain_id: &Digest) -> Result<File, UnpackError> {
    let path = locks_dir(store).join(chain_id.hex());
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("open", &path))
}

fn flock(file: File, arg: FlockArg, path: &Path) -> Result<Flock<File>, UnpackError> {
    Flock::lock(file, arg).map_err(|(_, e)| UnpackError::Io {
        op: "lock",
        path: path.to_owned(),
        source: e.into(),
    })
}

/// The unpacked directories of `image`'s layers, **lowest layer first**
/// (overlayfs wants them the other way round in `lowerdir=`: reverse the
/// list). Layers not unpacked yet are extracted now, each at most once
/// however many threads or processes ask at the same time; a layer is
/// never half there: on any error its temp dir is removed and nothing is
/// left. While this runs, [`super::prune_layers`] leaves the image's layers
/// alone.
pub fn unpacked_layers(
    store: &ImageStore,
    image: &StoredImage,
) -> Result<Vec<PathBuf>, UnpackError> {
    make_dirs(store)?;
    let chain = chain_ids(&image.layers);
    // Shared locks on the layers done so far, held until all are there.
    let mut held = Vec::with_capacity(chain.len());
    let mut dirs = Vec::with_capacity(chain.len());
    for (layer, chain_id) in image.layers.iter().zip(&chain) {
        let (dir, lock) = ensure_layer(store, layer, chain_id)?;
        held.push(lock);
        dirs.push(dir);
    }
    Ok(dirs)
}

/// Makes sure the layer with `chain_id` is unpacked; returns its dir and a
/// shared lock on it.
fn ensure_layer(
    store: &ImageStore,
    layer: &Layer,
    chain_id: &Digest,
) -> Result<(PathBuf, Flock<File>), UnpackError> {
    let dir = layer_dir(store, chain_id);
    let lock_path = locks_dir(store).join(chain_id.hex());
    let lock = flock(
        lock_file(store, chain_id)?,
        FlockArg::LockShared,
        &lock_path,
    )?;
    if is_dir(&dir) {
        return Ok((dir, lock));
    }
    // Not there: take the lock exclusively (whoever held it first may be
    // extracting it right now) and look again.
    lock.relock(FlockArg::LockExclusive)
        .map_err(|e| UnpackError::Io {
            op: "lock",
            path: lock_path.clone(),
            source: e.into(),
        })?;
    if !is_dir(&dir) {
        extract_into_place(store, layer, chain_id, &dir)?;
    }
    lock.relock(FlockArg::LockShared)
        .map_err(|e| UnpackError::Io {
            op: "lock",
            path: lock_path,
            source: e.into(),
        })?;
    Ok((dir, lock))
}

fn is_dir(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.is_dir())
}

/// Extracts `layer` into a fresh temp dir and renames it to `dest`. The
/// caller holds the layer's exclusive lock.
fn extract_into_place(
    store: &ImageStore,
    layer: &Layer,
    chain_id: &Digest,
    dest: &Path,
) -> Result<(), UnpackError> {
    let blob = store.blob_path(&layer.digest);
    if !store.has_blob(&layer.digest) {
        return Err(ImageStoreError::Missing {
            digest: layer.digest.clone(),
        }
        .into());
    }
    let temp = temp_dir(store).join(format!(
        "{}.{}.{}",
        chain_id.hex(),
        std::process::id(),
        TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&temp)
        .map_err(io_err("create", &temp))?;
    let result = (|| {
        // The mode the root gets when the tar has no `./` entry.
        fs::set_permissions(&temp, fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &temp))?;
        let root = Dir::open(&temp).map_err(|e| UnpackError::Io {
            op: "open",
            path: temp.clone(),
            source: e.into(),
        })?;
        let input = decompressed(&blob, layer.media_type).map_err(|source| UnpackError::Tar {
            layer: layer.digest.clone(),
            source,
        })?;
        let done = extract(input, &root, &layer.digest, &layer.diff_id)?;
        tracing::debug!(
            layer = %layer.digest,
            chain_id = %chain_id,
            entries = done.entries,
            bytes = done.tar_bytes,
            "layer unpacked"
        );
        fs::rename(&temp, dest).map_err(io_err("rename into place", dest))
    })();
    if let Err(e) = result {
        if let Err(cleanup) = berth_confined::remove_tree(&temp) {
            tracing::warn!(path = %temp.display(), error = %cleanup, "cannot remove a failed layer extraction");
        }
        return Err(e);
    }
    EXTRACTIONS.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
