//! The agent's in-memory secret and config values, per container, and the
//! tmpfs mounts of the running incarnation.
//!
//! Values are kept only here (never in a record): a restart by policy or by
//! `berth restart` fills new tmpfs mounts from them. After an agent restart
//! they are gone; a later restart of such a container fails with a message
//! saying so (launch it again, see decision 0034).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Mutex;

use thiserror::Error;

use super::request::{config_dirs, TakenValues, Value};
use super::tmpfs::{FilesTmpfs, TmpfsError};
use super::{SECRETS_DIR, TMPFS_SIZE};
use crate::container::LaunchRequest;

#[derive(Debug, Error)]
pub enum FilesError {
    #[error("the values of container {id}'s secrets and config files are not in this agent's memory (they never touch disk and were lost with an agent restart): launch it again")]
    Lost { id: String },
    #[error("container {id} has no {kind} {name:?}")]
    Unknown {
        id: String,
        kind: &'static str,
        name: String,
    },
    #[error(transparent)]
    Tmpfs(#[from] TmpfsError),
}

#[derive(Debug, Default)]
struct Entry {
    secrets: BTreeMap<String, Value>,
    configs: BTreeMap<String, Value>,
    mounted: Option<Mounted>,
}

#[derive(Debug)]
struct Mounted {
    owner: (u32, u32),
    secrets: Option<FilesTmpfs>,
    /// Each config dir: its files' names and its tmpfs.
    configs: Vec<(PathBuf, Vec<String>, FilesTmpfs)>,
}

/// The values and mounts of every container that has any.
#[derive(Debug, Default)]
pub struct LiveFiles {
    entries: Mutex<HashMap<String, Entry>>,
}

/// A container's files, ready for the shim: each tmpfs's destination in
/// the container and the read-only mount to attach there.
pub type ShimMounts = Vec<(PathBuf, OwnedFd)>;

impl LiveFiles {
    /// Keeps a new container's values.
    pub fn insert(&self, id: &str, taken: TakenValues) {
        if taken.secrets.is_empty() && taken.configs.is_empty() {
            return;
        }
        let entry = Entry {
            secrets: taken.secrets.into_iter().collect(),
            configs: taken.configs.into_iter().collect(),
            mounted: None,
        };
        self.entries.lock().unwrap().insert(id.to_string(), entry);
    }

    /// Forgets a container's values and mounts (it is removed).
    pub fn remove(&self, id: &str) {
        self.entries.lock().unwrap().remove(id);
    }

    /// Lets go of the running incarnation's mounts (it has ended): the
    /// tmpfs goes with the container's mount namespace.
    pub fn unmount(&self, id: &str) {
        if let Some(entry) = self.entries.lock().unwrap().get_mut(id) {
            entry.mounted = None;
        }
    }

    /// The `--secret-env` variables of a launch.
    pub fn env(
        &self,
        id: &str,
        request: &LaunchRequest,
    ) -> Result<Vec<(String, String)>, FilesError> {
        let wanted: Vec<_> = request
            .secrets
            .iter()
            .filter_map(|s| s.env.as_ref().map(|var| (s.name.as_str(), var)))
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let entries = self.entries.lock().unwrap();
        let entry = entries
            .get(id)
            .ok_or_else(|| FilesError::Lost { id: id.to_string() })?;
        wanted
            .into_iter()
            .map(|(name, var)| {
                let value = entry
                    .secrets
                    .get(name)
                    .ok_or_else(|| FilesError::Lost { id: id.to_string() })?;
                Ok((
                    var.clone(),
                    String::from_utf8_lossy(value.bytes()).into_owned(),
                ))
            })
            .collect()
    }

    /// Creates and fills the tmpfs mounts of a (re)launch, owned by
    /// `owner` (host ids); returns what the shim attaches.
    pub fn mount(
        &self,
        id: &str,
        request: &LaunchRequest,
        owner: (u32, u32),
    ) -> Result<ShimMounts, FilesError> {
        if request.secrets.is_empty() && request.config_files.is_empty() {
            return Ok(Vec::new());
        }
        let mut entries = self.entries.lock().unwrap();
        let entry = entries
            .get_mut(id)
            .ok_or_else(|| FilesError::Lost { id: id.to_string() })?;
        let mut shim = Vec::new();
        let mut mounted = Mounted {
            owner,
            secrets: None,
            configs: Vec::new(),
        };
        if !request.secrets.is_empty() {
            let tmpfs = FilesTmpfs::create(TMPFS_SIZE, 0o500, owner.0, owner.1)?;
            for s in &request.secrets {
                let value = entry
                    .secrets
                    .get(&s.name)
                    .ok_or_else(|| FilesError::Lost { id: id.to_string() })?;
                tmpfs.write_file("", &s.name, value.bytes(), 0o400, owner)?;
            }
            shim.push((PathBuf::from(SECRETS_DIR), tmpfs.readonly_copy()?));
            mounted.secrets = Some(tmpfs);
        }
        for (dir, names) in config_dirs(request) {
            let tmpfs = FilesTmpfs::create(TMPFS_SIZE, 0o555, owner.0, owner.1)?;
            write_generation(&tmpfs, &names, &entry.configs, owner, id)?;
            shim.push((dir.clone(), tmpfs.readonly_copy()?));
            mounted.configs.push((dir, names, tmpfs));
        }
        entry.mounted = Some(mounted);
        Ok(shim)
    }

    /// Replaces a secret's value, in memory and (when it runs) in the
    /// container, atomically.
    pub fn update_secret(&self, id: &str, name: &str, value: Value) -> Result<(), FilesError> {
        let mut entries = self.entries.lock().unwrap();
        let entry = entries
            .get_mut(id)
            .ok_or_else(|| FilesError::Lost { id: id.to_string() })?;
        if !entry.secrets.contains_key(name) {
            return Err(FilesError::Unknown {
                id: id.into(),
                kind: "secret",
                name: name.into(),
            });
        }
        if let Some(Mounted {
            owner,
            secrets: Some(tmpfs),
            ..
        }) = &entry.mounted
        {
            tmpfs.write_file("", name, value.bytes(), 0o400, *owner)?;
        }
        entry.secrets.insert(name.to_string(), value);
        Ok(())
    }

    /// Replaces a config file's value, in memory and (when it runs) in the
    /// container: a new generation dir and the `..data` swap. Returns
    /// whether the container's files were changed (it runs).
    pub fn update_config(&self, id: &str, name: &str, value: Value) -> Result<bool, FilesError> {
        let mut entries = self.entries.lock().unwrap();
        let entry = entries
            .get_mut(id)
            .ok_or_else(|| FilesError::Lost { id: id.to_string() })?;
        if !entry.configs.contains_key(name) {
            return Err(FilesError::Unknown {
                id: id.into(),
                kind: "config file",
                name: name.into(),
            });
        }
        entry.configs.insert(name.to_string(), value);
        let Some(mounted) = &entry.mounted else {
            return Ok(false);
        };
        for (_, names, tmpfs) in &mounted.configs {
            if names.iter().any(|n| n == name) {
                write_generation(tmpfs, names, &entry.configs, mounted.owner, id)?;
            }
        }
        Ok(true)
    }
}

/// Writes a config dir's files as Kubernetes does: a new timestamped dir
/// `..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN` holding them all, `..data` swapped to
/// it with a rename (one atomic step for every file; inotify on the dir
/// sees it), `NAME -> ..data/NAME` links, the old generation removed.
fn write_generation(
    tmpfs: &FilesTmpfs,
    names: &[String],
    values: &BTreeMap<String, Value>,
    owner: (u32, u32),
    id: &str,
) -> Result<(), FilesError> {
    let old: Vec<String> = tmpfs
        .names()?
        .into_iter()
        .filter(|n| n.starts_with("..20"))
        .collect();
    let mut generation = chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.%9f")
        .to_string();
    while old.contains(&generation) {
        generation.push('_');
    }
    tmpfs.mkdir(&generation, 0o555, owner)?;
    for name in names {
        let value = values
            .get(name)
            .ok_or_else(|| FilesError::Lost { id: id.to_string() })?;
        tmpfs.write_file(&generation, name, value.bytes(), 0o444, owner)?;
    }
    tmpfs.link(&generation, "..data")?;
    let present = tmpfs.names()?;
    for name in names {
        if !present.contains(name) {
            tmpfs.link(&format!("..data/{name}"), name)?;
        }
    }
    for dir in old {
        if let Err(e) = tmpfs.remove_dir(&dir) {
            tracing::warn!(%id, "remove the old config generation: {e}");
        }
    }
    Ok(())
}
