//! The manager's side of bind mounts and named volumes (see
//! `crate::volumes` and decision 0033): checking a request's `mounts`,
//! turning them into bundle mounts, who uses a volume, and the volume
//! operations of the API.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use berth_isolator::{ContainerId, Contribution, Mount};

use super::locked::locked;
use super::{now, Manager, ManagerError, Slot};
use crate::container::{Container, LaunchRequest, State};
use crate::volumes::request::check_target;
use crate::volumes::{host_path, MountKind, MountRequest, Volume, VolumeError, VolumeStore};

/// The volumes a container's request mounts.
fn volumes_of(container: &Container) -> impl Iterator<Item = &str> {
    container
        .request
        .iter()
        .flat_map(|r| r.mounts.iter())
        .filter(|m| m.kind == MountKind::Volume)
        .map(|m| m.source.as_str())
}

impl Manager {
    /// The volume store; with the disk backend `xfs`, sized volumes get
    /// project quotas from the disk isolator's allocator (the loop image
    /// when the work dir turns out not to be XFS with `prjquota`: the disk
    /// isolator is then not offered either, and says why).
    pub(super) fn volume_store(&self) -> VolumeStore {
        let store = VolumeStore::new(&self.config.work_dir);
        let disk = &self.config.disk;
        if disk.backend != crate::config::DiskBackend::Xfs {
            return store;
        }
        let range = disk.xfs_project_min..=disk.xfs_project_max;
        match berth_isolator_disk::xfs::shared(&self.config.work_dir, range) {
            Ok(xfs) => store.with_xfs(xfs),
            Err(e) => {
                tracing::debug!("volumes: sized volumes use loop images: {e}");
                store
            }
        }
    }

    /// At agent start, before any container is relaunched.
    pub(super) fn recover_volumes(&self) {
        let volumes = self.volume_store().recover();
        if !volumes.is_empty() {
            tracing::info!(count = volumes.len(), "volumes recovered");
        }
    }

    /// Checks a request's `mounts` and returns them as bundle mounts:
    /// binds of resolved host paths (allow-listed) and of volumes' data
    /// dirs, `nosuid,nodev` always, opened without following symlinks.
    /// `own_layer`: the root has its own writable layer, where the targets
    /// are made.
    pub(super) fn resolve_mounts(
        &self,
        mounts: &[MountRequest],
        own_layer: bool,
    ) -> Result<Vec<Mount>, ManagerError> {
        if mounts.is_empty() {
            return Ok(Vec::new());
        }
        if !own_layer {
            return Err(ManagerError::invalid(
                "mounts",
                "need a root with its own writable layer for their targets: an image, or \
                 --rootfs without --userns auto (the host's root and a user's dir are never \
                 written)",
            ));
        }
        let store = self.volume_store();
        let mut targets = BTreeSet::new();
        let mut out = Vec::with_capacity(mounts.len());
        for (i, m) in mounts.iter().enumerate() {
            let target = check_target(&m.target)
                .map_err(|e| ManagerError::invalid(format!("mounts[{i}].target"), e))?;
            if !targets.insert(target.clone()) {
                return Err(ManagerError::invalid(
                    format!("mounts[{i}].target"),
                    format!("{} is mounted twice", target.display()),
                ));
            }
            let field = format!("mounts[{i}].source");
            let source = match m.kind {
                MountKind::Bind => {
                    host_path::resolve_allowed(&m.source, &self.config.volumes.allowed_host_paths)
                        .map_err(|e| ManagerError::invalid(&field, e))?
                }
                MountKind::Volume => {
                    let volume = store.record(&m.source).map_err(|e| match e {
                        VolumeError::Name(_) | VolumeError::NotFound(_) => {
                            ManagerError::invalid(&field, e.to_string())
                        }
                        other => ManagerError::Internal(other.to_string()),
                    })?;
                    store
                        .ensure_mounted(&volume)
                        .map_err(|e| ManagerError::Internal(e.to_string()))?;
                    store.data_dir(&volume.name)
                }
            };
            let mut options: Vec<String> = ["bind", "nosuid", "nodev", crate::volumes::NO_FOLLOW]
                .map(String::from)
                .to_vec();
            if m.readonly {
                options.push("ro".into());
            }
            out.push(Mount {
                destination: target.display().to_string(),
                source: source.display().to_string(),
                kind: "bind".into(),
                options,
            });
        }
        Ok(out)
    }

    /// The isolators' contribution plus the container's own mounts.
    pub(super) fn with_request_mounts(
        &self,
        container: &Container,
        contribution: &Contribution,
        own_layer: bool,
    ) -> Result<Contribution, ManagerError> {
        let mut contribution = contribution.clone();
        if let Some(request) = &container.request {
            contribution
                .mounts
                .extend(self.resolve_mounts(&request.mounts, own_layer)?);
        }
        Ok(contribution)
    }

    /// Under the slots lock, before a new container's slot goes in: an
    /// unshared volume is used by one live container at a time.
    pub(super) fn check_volume_users(
        slots: &HashMap<ContainerId, Arc<Slot>>,
        request: &LaunchRequest,
        store: &VolumeStore,
    ) -> Result<(), ManagerError> {
        for m in request
            .mounts
            .iter()
            .filter(|m| m.kind == MountKind::Volume)
        {
            let Ok(volume) = store.record(&m.source) else {
                // Removed since the plan: the launch fails at the mount.
                return Err(ManagerError::invalid(
                    "mounts",
                    format!("no volume named {}", m.source),
                ));
            };
            if volume.shared {
                continue;
            }
            let users: Vec<String> = slots
                .values()
                .map(|slot| slot.record.borrow())
                .filter(|c| matches!(c.state, State::Created | State::Running))
                .filter(|c| volumes_of(c).any(|v| v == volume.name))
                .map(|c| c.id.to_string())
                .collect();
            if !users.is_empty() {
                return Err(ManagerError::Conflict(format!(
                    "volume {} is in use by container(s) {} (create it with --shared to \
                     mount it in several)",
                    volume.name,
                    users.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The containers (any state) whose request mounts `name`.
    fn volume_users(slots: &HashMap<ContainerId, Arc<Slot>>, name: &str) -> Vec<String> {
        let mut users: Vec<String> = slots
            .values()
            .map(|slot| slot.record.borrow())
            .filter(|c| volumes_of(c).any(|v| v == name))
            .map(|c| c.id.to_string())
            .collect();
        users.sort();
        users
    }

    /// The named volumes a container mounts, by name, with their target,
    /// size and usage (for its `stats`); `None` when it mounts none.
    pub fn volume_stats(&self, id: &str) -> Option<serde_json::Value> {
        let container = self.slot(id).ok()?.get();
        let request = container.request.as_ref()?;
        let store = self.volume_store();
        let mut out = serde_json::Map::new();
        for m in request
            .mounts
            .iter()
            .filter(|m| m.kind == MountKind::Volume)
        {
            let volume = store.get(&m.source).ok();
            out.insert(
                m.source.clone(),
                serde_json::json!({
                    "target": m.target,
                    "size": volume.as_ref().and_then(|v| v.size),
                    "used_bytes": volume.as_ref().and_then(|v| v.used_bytes),
                }),
            );
        }
        (!out.is_empty()).then_some(serde_json::Value::Object(out))
    }

    pub fn volume_create(
        &self,
        name: &str,
        size: Option<u64>,
        shared: bool,
    ) -> Result<Volume, VolumeError> {
        self.volume_store().create(name, size, shared, now())
    }

    pub fn volume_get(&self, name: &str) -> Result<Volume, VolumeError> {
        let mut volume = self.volume_store().get(name)?;
        volume.used_by = Self::volume_users(&locked(&self.slots), name);
        Ok(volume)
    }

    pub fn volume_list(&self) -> Result<Vec<Volume>, VolumeError> {
        let mut volumes = self.volume_store().list()?;
        let slots = locked(&self.slots);
        for volume in &mut volumes {
            volume.used_by = Self::volume_users(&slots, &volume.name);
        }
        Ok(volumes)
    }

    /// Removes a volume no container (in any state) mounts; the slots lock
    /// is held until it is out of the store, so no launch takes it
    /// meanwhile; its data is deleted after.
    pub fn volume_remove(&self, name: &str) -> Result<(), VolumeError> {
        let store = self.volume_store();
        let gone = {
            let slots = locked(&self.slots);
            store.record(name)?;
            let users = Self::volume_users(&slots, name);
            if !users.is_empty() {
                return Err(VolumeError::InUse {
                    name: name.into(),
                    users: users.join(", "),
                });
            }
            store.take_out(name)?
        };
        crate::volumes::store::delete(&gone);
        Ok(())
    }

    /// Removes every volume no container mounts; returns their names.
    pub fn volume_prune(&self) -> Result<Vec<String>, VolumeError> {
        let mut removed = Vec::new();
        for volume in self.volume_store().list()? {
            match self.volume_remove(&volume.name) {
                Ok(()) => removed.push(volume.name),
                Err(VolumeError::InUse { .. } | VolumeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }
}
