//! Removing unpacked layers no stored image uses (for `rmi` and image GC).

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::Path;

use berth_confined::{Dir, Kind, Step};
use nix::fcntl::{Flock, FlockArg};

use super::chain::chain_ids;
use super::layers::{layers_root, lock_file, temp_dir};
use super::UnpackError;
use crate::images::digest::Digest;
use crate::images::reference::Reference;
use crate::images::store::ImageStore;

/// Removes every unpacked layer that no image in the store's index uses,
/// and temp dirs left by killed extractions; returns the bytes freed
/// (allocated blocks). A layer being extracted or used by a running
/// [`super::unpacked_layers`] (its lock is held) is left alone.
pub fn prune_layers(store: &ImageStore) -> Result<u64, UnpackError> {
    let root = layers_root(store);
    if !root.is_dir() {
        return Ok(0);
    }
    let mut in_use = BTreeSet::new();
    for summary in store.list()? {
        // A reference the store wrote always parses; if one does not, keep
        // everything rather than guess.
        let reference = Reference::parse(&summary.reference).map_err(|e| UnpackError::Io {
            op: "parse stored reference",
            path: store.root().join("index.json"),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
        if let Some(image) = store.resolve(&reference)? {
            in_use.extend(chain_ids(&image.layers));
        }
    }
    let mut freed = 0;
    for entry in fs::read_dir(&root).map_err(io_err("list", &root))? {
        let entry = entry.map_err(io_err("list", &root))?;
        let name = entry.file_name();
        let Some(chain_id) = name.to_str().and_then(|n| Digest::from_hex(n).ok()) else {
            continue;
        };
        if in_use.contains(&chain_id) {
            continue;
        }
        freed += remove_unlocked(store, &chain_id, &entry.path())?;
    }
    let temp = temp_dir(store);
    if let Ok(entries) = fs::read_dir(&temp) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(chain_id) = name
                .to_str()
                .and_then(|n| n.split('.').next())
                .and_then(|hex| Digest::from_hex(hex).ok())
            else {
                continue;
            };
            // An extraction holds its layer's lock exclusively for as long
            // as its temp dir exists.
            freed += remove_unlocked(store, &chain_id, &entry.path())?;
        }
    }
    Ok(freed)
}

/// Removes `path` if the lock of `chain_id` is free (taking it meanwhile);
/// returns the bytes freed.
fn remove_unlocked(store: &ImageStore, chain_id: &Digest, path: &Path) -> Result<u64, UnpackError> {
    let Ok(_lock) = Flock::lock(lock_file(store, chain_id)?, FlockArg::LockExclusiveNonblock)
    else {
        return Ok(0);
    };
    let size = allocated(path);
    berth_confined::remove_tree(path).map_err(|e| UnpackError::Io {
        op: "remove",
        path: path.to_owned(),
        source: e.into(),
    })?;
    Ok(size)
}

/// Allocated bytes below `path`, each inode counted once.
fn allocated(path: &Path) -> u64 {
    let Ok(dir) = Dir::open(path) else {
        return 0;
    };
    let mut total = dir.stat_self().map(|s| s.allocated()).unwrap_or(0);
    let mut seen = HashSet::new();
    let _ = dir.walk(|_, _, entry| {
        if entry.stat.nlink() < 2 || entry.stat.kind() == Kind::Dir || seen.insert(entry.stat.ino())
        {
            total += entry.stat.allocated();
        }
        Ok(Step::Descend)
    });
    total
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> UnpackError + 'a {
    move |source| UnpackError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}
