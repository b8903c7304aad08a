//! Named volumes on disk: `<work_dir>/volumes/NAME/` holds `volume.json`
//! (the record), `_data/` (what containers see) and, for a volume with a
//! size, `volume.img`, an ext4 image loop-mounted on `_data/` (the disk
//! isolator's loop backend): writes past the size fail with ENOSPC. With
//! the agent's disk backend `xfs`, a sized volume is instead a plain
//! `_data/` with an XFS project quota of its size, its project id taken
//! from the disk isolator's allocator (`berth_isolator_disk::xfs::shared`),
//! so volumes and sandboxes never share one; writes past it fail with
//! ENOSPC too (see decision 0033).
//!
//! Creation is crash-safe: everything is made in `.new-NAME/` and renamed
//! into place, record included, so a crash leaves either no volume or a
//! whole one; leftovers are removed by [`VolumeStore::recover`], which also
//! mounts every sized volume's image again (after a reboot).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_isolator_disk::loop_fs::{self, LoopPaths};
use berth_isolator_disk::mountinfo;
use berth_isolator_disk::xfs::XfsQuota;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::store::{write_atomic, Durability};

const RECORD: &str = "volume.json";
const DATA: &str = "_data";
const IMAGE: &str = "volume.img";
const NEW_PREFIX: &str = ".new-";
const REMOVING_PREFIX: &str = ".removing-";

/// Smallest `size` accepted (ext4 needs room for its metadata).
pub const MIN_SIZE: u64 = berth_isolator_disk::MIN_QUOTA;

#[derive(Debug, Error)]
pub enum VolumeError {
    #[error("invalid volume name {0:?}: 1-64 of [A-Za-z0-9_.-], starting with a letter or digit")]
    Name(String),
    #[error("no volume named {0}")]
    NotFound(String),
    #[error("volume {0} exists")]
    Exists(String),
    #[error("volume {name} is in use by container(s) {users}")]
    InUse { name: String, users: String },
    #[error("invalid size {0}: must be at least {MIN_SIZE} bytes")]
    Size(u64),
    #[error("volume {name}: {op} {path}: {source}")]
    Io {
        name: String,
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("volume {name}: {source}")]
    Disk {
        name: String,
        source: berth_isolator_disk::DiskError,
    },
    #[error("volume {name}: record {path}: {message}")]
    Record {
        name: String,
        path: PathBuf,
        message: String,
    },
}

/// A named volume: its record on disk, and what `inspect` and `ls` add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    /// The size limit in bytes (a loop filesystem of that usable size);
    /// `None`: unlimited, a plain directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// May be mounted by several containers at once.
    #[serde(default)]
    pub shared: bool,
    pub created_at: String,
    /// Where the data lives on the host (filled in on reading).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<PathBuf>,
    /// Bytes in use (filled in by `inspect` and `ls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    /// The containers whose request mounts it (filled in by the manager).
    #[serde(default)]
    pub used_by: Vec<String>,
    /// The XFS project whose quota holds `size` (disk backend `xfs`);
    /// `None` with a size: a loop filesystem image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfs_project: Option<u32>,
}

/// Checks a volume name: it becomes a directory name.
pub fn check_name(name: &str) -> Result<(), VolumeError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(VolumeError::Name(name.into()))
    }
}

/// The volumes of one agent.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    dir: PathBuf,
    /// Sized volumes get an XFS project quota (disk backend `xfs`).
    xfs: Option<Arc<XfsQuota>>,
}

impl VolumeStore {
    pub fn new(work_dir: &Path) -> Self {
        VolumeStore {
            dir: work_dir.join("volumes"),
            xfs: None,
        }
    }

    /// Sized volumes made from now on get a project quota from `xfs`.
    pub fn with_xfs(mut self, xfs: Arc<XfsQuota>) -> Self {
        self.xfs = Some(xfs);
        self
    }

    fn io(name: &str, op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
        let (name, path) = (name.to_string(), path.to_path_buf());
        move |source| VolumeError::Io {
            name,
            op,
            path,
            source,
        }
    }

    fn disk(name: &str) -> impl FnOnce(berth_isolator_disk::DiskError) -> VolumeError {
        let name = name.to_string();
        move |source| VolumeError::Disk { name, source }
    }

    /// The host dir a container mounts.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join(DATA)
    }

    /// Creates a volume; on error nothing is left.
    pub fn create(
        &self,
        name: &str,
        size: Option<u64>,
        shared: bool,
        created_at: String,
    ) -> Result<Volume, VolumeError> {
        check_name(name)?;
        if let Some(size) = size.filter(|&s| s < MIN_SIZE) {
            return Err(VolumeError::Size(size));
        }
        let final_dir = self.dir.join(name);
        if final_dir.symlink_metadata().is_ok() {
            return Err(VolumeError::Exists(name.into()));
        }
        std::fs::create_dir_all(&self.dir).map_err(Self::io(name, "create", &self.dir))?;
        // Per attempt: two racing creates of one name never share it.
        let new_dir = self.dir.join(format!("{NEW_PREFIX}{name}-{}", unique()));
        let made = self.make(name, &new_dir, size, shared, created_at);
        let volume = match made {
            Ok(volume) => volume,
            Err(e) => {
                if new_dir.exists() {
                    remove_leftover(&new_dir);
                }
                return Err(e);
            }
        };
        // rename(2) refuses to replace a non-empty dir: a racing create of
        // the same name loses here.
        if let Err(e) = std::fs::rename(&new_dir, &final_dir) {
            remove_leftover(&new_dir);
            return Err(match e.raw_os_error() {
                Some(libc::ENOTEMPTY | libc::EEXIST) => VolumeError::Exists(name.into()),
                _ => Self::io(name, "rename", &final_dir)(e),
            });
        }
        sync_dir(&self.dir);
        if let Err(e) = self.ensure_mounted(&volume) {
            if let Ok(gone) = self.take_out(name) {
                delete(&gone);
            }
            return Err(e);
        }
        self.get(name)
    }

    fn make(
        &self,
        name: &str,
        dir: &Path,
        size: Option<u64>,
        shared: bool,
        created_at: String,
    ) -> Result<Volume, VolumeError> {
        std::fs::create_dir(dir).map_err(Self::io(name, "create", dir))?;
        let data = dir.join(DATA);
        std::fs::create_dir(&data).map_err(Self::io(name, "create", &data))?;
        let mut xfs_project = None;
        if let (Some(size), Some(xfs)) = (size, &self.xfs) {
            // Inherited by all made below, across the rename of the dir.
            xfs_project = Some(xfs.assign(&data, Some(size)).map_err(Self::disk(name))?);
        } else if let Some(size) = size {
            let paths = LoopPaths {
                sandbox: data.clone(),
                image: dir.join(IMAGE),
                staging: dir.join(".staging"),
            };
            loop_fs::set_up(&paths, size).map_err(Self::disk(name))?;
            // Mounted again once in place (a mount would not follow the
            // rename of its parent in every mount namespace).
            loop_fs::unmount_image(&paths.image, &data).map_err(Self::disk(name))?;
        }
        let volume = Volume {
            name: name.into(),
            size,
            shared,
            created_at,
            mountpoint: None,
            used_bytes: None,
            used_by: Vec::new(),
            xfs_project,
        };
        let record = dir.join(RECORD);
        let bytes = serde_json::to_vec_pretty(&volume).expect("volume serializes");
        let written =
            write_atomic(&record, &bytes, Durability::Durable).map_err(|e| VolumeError::Record {
                name: name.into(),
                path: record.clone(),
                message: e.to_string(),
            });
        if let Err(e) = written {
            if let (Some(project), Some(xfs)) = (xfs_project, &self.xfs) {
                let _ = xfs.release(&data, project);
            }
            return Err(e);
        }
        Ok(volume)
    }

    /// Mounts a sized volume's image on its data dir unless it is mounted.
    pub fn ensure_mounted(&self, volume: &Volume) -> Result<(), VolumeError> {
        if volume.size.is_none() || volume.xfs_project.is_some() {
            return Ok(());
        }
        let data = self.data_dir(&volume.name);
        let mounts = mountinfo::read().map_err(Self::disk(&volume.name))?;
        if mountinfo::is_mount_point(&mounts, &data) {
            return Ok(());
        }
        let image = self.dir.join(&volume.name).join(IMAGE);
        loop_fs::mount_image(&image, &data).map_err(Self::disk(&volume.name))
    }

    /// Reads a volume's record, with its mountpoint and usage.
    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        let mut volume = self.record(name)?;
        let data = self.data_dir(name);
        volume.used_bytes = match (volume.size, volume.xfs_project, &self.xfs) {
            (_, Some(project), Some(xfs)) => xfs.used(project).ok(),
            (Some(_), None, _) => loop_fs::used_bytes(&data).ok(),
            _ => {
                let cancel = std::sync::atomic::AtomicBool::new(false);
                berth_isolator_disk::du::measure(&data, None, &cancel)
                    .ok()
                    .map(|m| m.bytes)
            }
        };
        Ok(volume)
    }

    /// Reads a volume's record, with its mountpoint (cheap: no usage).
    pub fn record(&self, name: &str) -> Result<Volume, VolumeError> {
        check_name(name)?;
        let path = self.dir.join(name).join(RECORD);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(VolumeError::NotFound(name.into()))
            }
            Err(e) => return Err(Self::io(name, "read", &path)(e)),
        };
        let mut volume: Volume =
            serde_json::from_slice(&bytes).map_err(|e| VolumeError::Record {
                name: name.into(),
                path: path.clone(),
                message: e.to_string(),
            })?;
        volume.mountpoint = Some(self.data_dir(name));
        Ok(volume)
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>, VolumeError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io("*", "read", &self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_name(&name).is_err() {
                continue;
            }
            match self.get(&name) {
                Ok(volume) => out.push(volume),
                Err(e) => tracing::warn!("volumes: {e}"),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Takes a volume out of the store (unmounted, renamed away: no longer
    /// listed) and returns the dir holding its data, for [`delete`]. The
    /// caller has checked no container uses it.
    pub fn take_out(&self, name: &str) -> Result<PathBuf, VolumeError> {
        let volume = self.record(name)?;
        let dir = self.dir.join(name);
        let data = self.data_dir(name);
        if volume.size.is_some() && volume.xfs_project.is_none() {
            let mounts = mountinfo::read().map_err(Self::disk(name))?;
            if mountinfo::is_mount_point(&mounts, &data) {
                loop_fs::unmount_image(&dir.join(IMAGE), &data).map_err(Self::disk(name))?;
            }
        }
        // Gone from every listing at once; then deleted.
        let gone = self
            .dir
            .join(format!("{REMOVING_PREFIX}{name}-{}", unique()));
        std::fs::rename(&dir, &gone).map_err(Self::io(name, "rename", &dir))?;
        sync_dir(&self.dir);
        if let (Some(project), Some(xfs)) = (volume.xfs_project, &self.xfs) {
            // The limit lifted, the id off every file, then free again (on
            // error it stays taken until the agent restarts, when the
            // leftover is deleted).
            if let Err(e) = xfs.release(&gone.join(DATA), project) {
                tracing::error!(volume = name, project, "volumes: release xfs project: {e}");
            }
        }
        Ok(gone)
    }

    /// Removes a volume and its data.
    pub fn remove(&self, name: &str) -> Result<(), VolumeError> {
        let gone = self.take_out(name)?;
        delete(&gone);
        Ok(())
    }

    /// After an agent start: removes half-made and half-removed volumes,
    /// mounts every sized volume's image again. Returns the volumes.
    pub fn recover(&self) -> Vec<Volume> {
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(NEW_PREFIX) || name.starts_with(REMOVING_PREFIX) {
                    remove_leftover(&entry.path());
                }
            }
        }
        let volumes = self.list().unwrap_or_default();
        for volume in &volumes {
            // The project id, read back from the data dir, is taken again
            // before any container or volume gets a new one.
            if let (Some(project), Some(xfs)) = (volume.xfs_project, &self.xfs) {
                let found = xfs.recover(&self.data_dir(&volume.name));
                if found != Some(project) {
                    tracing::error!(
                        volume = %volume.name,
                        project,
                        ?found,
                        "volumes: the data dir does not carry the recorded xfs project"
                    );
                }
            }
            if let Err(e) = self.ensure_mounted(volume) {
                tracing::error!("volumes: mount after restart: {e}");
            }
        }
        volumes
    }
}

/// Deletes what [`VolumeStore::take_out`] left (what it leaves at a crash,
/// [`VolumeStore::recover`] deletes).
pub fn delete(dir: &Path) {
    remove_leftover(dir)
}

/// Removes a half-made or removed volume dir: its image unmounted first if
/// mounted (a crash mid-way), then the tree, without following the
/// containers' symlinks.
fn remove_leftover(dir: &Path) {
    let data = dir.join(DATA);
    if let Ok(mounts) = mountinfo::read() {
        if mountinfo::is_mount_point(&mounts, &data) {
            if let Err(e) = loop_fs::unmount_image(&dir.join(IMAGE), &data) {
                tracing::error!(dir = %dir.display(), "volumes: unmount leftover: {e}");
                return;
            }
        }
    }
    if let Err(e) = berth_confined::remove_tree(dir) {
        tracing::error!(dir = %dir.display(), "volumes: remove leftover: {e}");
    }
}

/// A suffix no other attempt of this host uses: pid, clock and a count.
fn unique() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{nanos}-{n}", std::process::id())
}

fn sync_dir(dir: &Path) {
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["db", "a.b-c_d", "0"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".x", "-x", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn racing_creates_of_one_name_make_one_volume() {
        let work = tempfile::tempdir().unwrap();
        let store = VolumeStore::new(work.path());
        let results: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || store.create("race", None, false, "now".into()))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, VolumeError::Exists(_))));
        let names: Vec<_> = std::fs::read_dir(work.path().join("volumes"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["race"]);
    }

    #[test]
    fn plain_volume_life() {
        let work = tempfile::tempdir().unwrap();
        let store = VolumeStore::new(work.path());
        let v = store.create("v1", None, false, "now".into()).unwrap();
        assert_eq!(v.mountpoint, Some(store.data_dir("v1")));
        assert!(matches!(
            store.create("v1", None, false, "now".into()),
            Err(VolumeError::Exists(_))
        ));
        std::fs::write(store.data_dir("v1").join("f"), b"x").unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        std::fs::create_dir_all(work.path().join("volumes/.new-v2-1-2/_data")).unwrap();
        store.recover();
        assert!(!work.path().join("volumes/.new-v2-1-2").exists());
        store.remove("v1").unwrap();
        assert!(matches!(store.get("v1"), Err(VolumeError::NotFound(_))));
        assert!(store.list().unwrap().is_empty());
    }
}
