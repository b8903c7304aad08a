use berth_isolator::TypedSection;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use berth_cgroups::{CgroupRoot, ContainerCgroup, Controller};
use berth_isolator::{
    ContainerConfig, ContainerId, Contribution, Isolator, IsolatorError, RecoveredContainer,
    Resources, Status, Usage,
};
use serde_json::{json, Map, Value};

use crate::error::HANDLE_FIELD;
use crate::handles::Handles;
use crate::hierarchy::{self, Host, RealHost, DEFAULT_MOUNT_POINT};
use crate::{persist, ClassId, NetClsError};

const NC: Controller = Controller::NetCls;
const CLASSID_FILE: &str = "net_cls.classid";

/// Options of the net_cls isolator (the agent's `[net_cls]` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetClsOptions {
    /// The primary handle, the upper 16 bits of every class id (tc's major
    /// number). Must not be 0.
    pub primary: u16,
    /// The smallest secondary handle given to a container (at least 1).
    pub secondary_min: u16,
    /// The largest secondary handle given to a container.
    pub secondary_max: u16,
    /// Where to mount the net_cls hierarchy if the host has not mounted it.
    pub mount_point: PathBuf,
}

impl Default for NetClsOptions {
    fn default() -> Self {
        NetClsOptions {
            primary: 0xAAAA,
            secondary_min: 1,
            secondary_max: 0xFFFF,
            mount_point: PathBuf::from(DEFAULT_MOUNT_POINT),
        }
    }
}

/// The `net_cls` isolator: gives each container a class id
/// `primary << 16 | secondary` from the agent's handle range, so that tc
/// filters (`cgroup` classifier) and netfilter rules (`meta cgroup`) can
/// tell its traffic apart. Handles are freed at cleanup and reserved again
/// when a restarted agent recovers.
#[derive(Debug)]
pub struct NetClsIsolator {
    root: Arc<CgroupRoot>,
    mount_point: PathBuf,
    mounted: bool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    handles: Handles,
    containers: HashMap<ContainerId, Container>,
}

#[derive(Debug, Clone)]
struct Container {
    cgroup: ContainerCgroup,
    classid: ClassId,
    /// Where the handle is persisted (empty: not persisted).
    runtime_dir: PathBuf,
    /// Whether the handle is counted in the pool: a recovered class id from
    /// another primary or outside the (since changed) range is kept for the
    /// container but belongs to no pool.
    pooled: bool,
}

fn holder(id: &ContainerId) -> String {
    format!("container {id}")
}

impl NetClsIsolator {
    /// A net_cls isolator placing cgroups under `root`'s value.
    ///
    /// On cgroup v2 it fails: v2 has no net_cls, and silently ignoring a
    /// class id would leave traffic unclassified (see
    /// `docs/decisions/0005-net-cls-on-cgroup-v2.md`). On v1 it mounts the
    /// net_cls hierarchy at `options.mount_point` if no hierarchy has it (and
    /// never unmounts it), then creates the root for net_cls.
    pub fn new(root: Arc<CgroupRoot>, options: NetClsOptions) -> Result<Self, IsolatorError> {
        Self::with_host(root, options, &RealHost).map_err(IsolatorError::from)
    }

    pub(crate) fn with_host(
        root: Arc<CgroupRoot>,
        options: NetClsOptions,
        host: &dyn Host,
    ) -> Result<Self, NetClsError> {
        let handles = Handles::new(
            options.primary,
            options.secondary_min,
            options.secondary_max,
        )?;
        let found = hierarchy::find_or_mount(&root, &options.mount_point, host)?;
        let root = if found.mounted || !root.has(NC) {
            Arc::new(found.root)
        } else {
            root
        };
        root.ensure(Self::CONTROLLERS)?;
        Ok(NetClsIsolator {
            root,
            mount_point: found.mount_point,
            mounted: found.mounted,
            state: Mutex::new(State {
                handles,
                containers: HashMap::new(),
            }),
        })
    }

    /// The controllers the isolator uses.
    pub const CONTROLLERS: &'static [Controller] = &[Controller::NetCls];

    /// The cgroup root the isolator uses (it includes net_cls, even when the
    /// root it was given did not because the hierarchy was not mounted yet).
    pub fn root(&self) -> &Arc<CgroupRoot> {
        &self.root
    }

    /// The class id held by container `id`, if any.
    pub fn classid(&self, id: &ContainerId) -> Option<ClassId> {
        self.state().containers.get(id).map(|c| c.classid)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn known(&self, id: &ContainerId) -> Result<ClassId, IsolatorError> {
        self.classid(id)
            .ok_or_else(|| IsolatorError::UnknownContainer { id: id.to_string() })
    }

    /// Creates the cgroup with its class id and persists the handle.
    fn set_up(
        &self,
        cgroup: &ContainerCgroup,
        classid: ClassId,
        runtime_dir: &Path,
    ) -> Result<(), NetClsError> {
        cgroup.create(NC)?;
        cgroup.write(NC, CLASSID_FILE, &classid.value().to_string())?;
        if !runtime_dir.as_os_str().is_empty() {
            persist::save(runtime_dir, classid)?;
        }
        Ok(())
    }

    /// The class id a recovered container holds: the persisted one, else the
    /// one its cgroup carries (a crash between writing the cgroup and the
    /// file), else none (it does not use net_cls).
    fn recovered_classid(
        &self,
        config: &ContainerConfig,
        cgroup: &ContainerCgroup,
    ) -> Option<ClassId> {
        if !config.runtime_dir.as_os_str().is_empty() {
            match persist::load(&config.runtime_dir) {
                Ok(Some(classid)) => return Some(classid),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(id = %config.id, "net_cls: {e}; reading the cgroup instead")
                }
            }
        }
        read_classid(cgroup)
    }

    /// Removes cgroups below the root that belong to no known container.
    /// One that cannot be removed still has processes tagged with its class
    /// id: its handle stays reserved so no new container shares it.
    fn remove_strays(&self, known: &BTreeSet<&str>) -> Vec<String> {
        let mut failures = Vec::new();
        let children = match self.root.children(NC) {
            Ok(children) => children,
            Err(e) => return vec![e.to_string()],
        };
        for name in children.iter().filter(|n| !known.contains(n.as_str())) {
            let Ok(cgroup) = self.root.container(name) else {
                continue;
            };
            let Ok(dir) = cgroup.path(NC) else { continue };
            // No retrying: a busy stray keeps its handle instead.
            match std::fs::remove_dir(dir) {
                Ok(()) => {
                    tracing::info!(cgroup = %dir.display(), "net_cls: removed a leftover cgroup")
                }
                Err(e) => {
                    let mut state = self.state();
                    if let Some(classid) =
                        read_classid(&cgroup).filter(|c| c.primary == state.handles.primary())
                    {
                        let _ = state.handles.reserve(
                            Some(classid.secondary.into()),
                            &format!("leftover cgroup {}", dir.display()),
                        );
                    }
                    failures.push(format!("remove leftover cgroup {}: {e}", dir.display()));
                }
            }
        }
        failures
    }
}

fn read_classid(cgroup: &ContainerCgroup) -> Option<ClassId> {
    if !cgroup.exists(NC) {
        return None;
    }
    match cgroup.read_u64(NC, CLASSID_FILE) {
        Ok(0) => None,
        Ok(value) => u32::try_from(value).ok().map(ClassId::from_value),
        Err(e) => {
            tracing::warn!(cgroup = cgroup.id(), "net_cls: {e}");
            None
        }
    }
}

fn contribution(classid: ClassId) -> Contribution {
    let mut contribution = Contribution::default();
    contribution
        .linux_resources
        .insert("network".into(), json!({"classID": classid.value()}));
    contribution
}

impl Isolator for NetClsIsolator {
    fn name(&self) -> &str {
        "net_cls"
    }

    fn describe(&self) -> Map<String, Value> {
        let state = self.state();
        let (min, max) = state.handles.range();
        let primary = state.handles.primary();
        let mut out = Map::new();
        out.insert("mode".into(), self.root.mode().to_string().into());
        out.insert(
            "mount_point".into(),
            self.mount_point.display().to_string().into(),
        );
        out.insert("mounted_by_agent".into(), self.mounted.into());
        out.insert("primary".into(), format!("{primary:#06X}").into());
        out.insert("secondary_min".into(), min.into());
        out.insert("secondary_max".into(), max.into());
        out.insert(
            "classid_range".into(),
            format!(
                "{}-{}",
                ClassId::new(primary, min),
                ClassId::new(primary, max)
            )
            .into(),
        );
        out.insert("handles_free".into(), state.handles.free_count().into());
        out
    }

    /// Reserves the handles of `containers` again (from the file persisted
    /// in their runtime dir, or their cgroup's `net_cls.classid`), frees and
    /// removes those of `orphans`, and removes cgroups below the root that
    /// belong to neither.
    fn recover(
        &self,
        containers: &[RecoveredContainer],
        orphans: &[ContainerId],
    ) -> Result<(), IsolatorError> {
        for recovered in containers {
            let config = &recovered.config;
            let cgroup = self.root.container(config.id.as_str())?;
            let Some(classid) = self.recovered_classid(config, &cgroup) else {
                continue;
            };
            let mut state = self.state();
            let pooled = if classid.primary != state.handles.primary() {
                tracing::warn!(id = %config.id, %classid, "net_cls: recovered class id is not under the configured primary handle; kept, outside the pool");
                false
            } else {
                match state
                    .handles
                    .reserve(Some(classid.secondary.into()), &holder(&config.id))
                {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(id = %config.id, %classid, "net_cls: recovered handle not reserved: {e}");
                        false
                    }
                }
            };
            state.containers.insert(
                config.id.clone(),
                Container {
                    cgroup,
                    classid,
                    runtime_dir: config.runtime_dir.clone(),
                    pooled,
                },
            );
        }
        let mut failures = Vec::new();
        for id in orphans {
            if let Err(e) = self.cleanup(id) {
                failures.push(e.to_string());
            }
        }
        let known: BTreeSet<&str> = containers
            .iter()
            .map(|c| c.config.id.as_str())
            .chain(orphans.iter().map(ContainerId::as_str))
            .collect();
        failures.extend(self.remove_strays(&known));
        if failures.is_empty() {
            Ok(())
        } else {
            Err(IsolatorError::Other(format!(
                "net_cls: recover: {}",
                failures.join("; ")
            )))
        }
    }

    fn resource_section(&self) -> Option<berth_isolator::ResourceSection> {
        Some(crate::NetClsResources::section())
    }

    /// The net_cls handle is fixed at launch: an update giving it is refused.
    fn merge_resources(
        &self,
        current: &berth_isolator::Section,
        update: &berth_isolator::Section,
    ) -> Result<berth_isolator::Section, IsolatorError> {
        berth_isolator::fixed_at_launch("resources.net_cls_handle", current, update)
    }

    /// Checks `resources.net_cls_handle` against the range, and whether it
    /// (or any handle) is free right now; [`Isolator::prepare`] reserves.
    fn validate(&self, config: &ContainerConfig) -> Result<(), IsolatorError> {
        self.state()
            .handles
            .check(crate::NetClsResources::of(&config.resources)?.net_cls_handle)
            .map_err(IsolatorError::from)
    }

    fn prepare(
        &self,
        id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Contribution, IsolatorError> {
        let cgroup = self.root.container(id.as_str())?;
        let classid = {
            let mut state = self.state();
            if let Some(held) = state.containers.get(id) {
                return Err(NetClsError::AlreadyPrepared {
                    id: id.to_string(),
                    classid: held.classid,
                }
                .into());
            }
            let primary = state.handles.primary();
            let secondary = state.handles.reserve(
                crate::NetClsResources::of(&config.resources)?.net_cls_handle,
                &holder(id),
            )?;
            let classid = ClassId::new(primary, secondary);
            // Recorded before the cgroup exists, so that status and a
            // concurrent prepare see the reservation.
            state.containers.insert(
                id.clone(),
                Container {
                    cgroup: cgroup.clone(),
                    classid,
                    runtime_dir: config.runtime_dir.clone(),
                    pooled: true,
                },
            );
            classid
        };
        if let Err(e) = self.set_up(&cgroup, classid, &config.runtime_dir) {
            // Undo our own partial work; the original error matters more.
            let _ = cgroup.remove(NC);
            if !config.runtime_dir.as_os_str().is_empty() {
                let _ = persist::remove(&config.runtime_dir);
            }
            let mut state = self.state();
            state.containers.remove(id);
            state.handles.free(classid.secondary, &holder(id));
            return Err(e.into());
        }
        tracing::debug!(%id, %classid, "net_cls: class id assigned");
        Ok(contribution(classid))
    }

    fn isolate(&self, id: &ContainerId, pid: u32) -> Result<(), IsolatorError> {
        let cgroup = self
            .state()
            .containers
            .get(id)
            .map(|c| c.cgroup.clone())
            .ok_or_else(|| IsolatorError::UnknownContainer { id: id.to_string() })?;
        cgroup.add_process(NC, pid)?;
        Ok(())
    }

    /// `isolate` only moves the process: where it can, it moves itself.
    fn joinable_cgroups(&self, id: &ContainerId) -> Result<Vec<std::path::PathBuf>, IsolatorError> {
        Ok(self.root.container_dirs(id.as_str(), &[NC])?)
    }

    /// A running container keeps its class id: tc and netfilter rules are
    /// written against it. Asking for the same handle again is accepted.
    fn update(&self, id: &ContainerId, resources: &Resources) -> Result<(), IsolatorError> {
        let classid = self.known(id)?;
        match crate::NetClsResources::of(resources)?.net_cls_handle {
            Some(asked) if asked != u32::from(classid.secondary) => Err(IsolatorError::invalid(
                HANDLE_FIELD,
                format!(
                    "cannot change while the container runs (it holds {}, classid {classid})",
                    classid.secondary
                ),
            )),
            _ => Ok(()),
        }
    }

    fn usage(&self, id: &ContainerId) -> Result<Usage, IsolatorError> {
        let classid = self.known(id)?;
        let mut usage = Usage::new();
        usage.insert("classid".into(), classid.to_string().into());
        Ok(usage)
    }

    fn status(&self, id: &ContainerId) -> Result<Status, IsolatorError> {
        let classid = self.known(id)?;
        let mut status = Status::new();
        status.insert("classid".into(), classid.to_string().into());
        status.insert("primary".into(), classid.primary.into());
        status.insert("secondary".into(), classid.secondary.into());
        status.insert("tc_class".into(), classid.tc_handle().into());
        Ok(status)
    }

    /// Removes the cgroup, then frees the handle. If the cgroup cannot be
    /// removed its processes still carry the class id, so the handle stays
    /// reserved (until a restarted agent finds the cgroup gone).
    fn cleanup(&self, id: &ContainerId) -> Result<(), IsolatorError> {
        let known = self.state().containers.get(id).cloned();
        let Some(container) = known else {
            // Unknown ids are tolerated, but a cgroup left by an earlier run
            // of the agent under the same name is still removed.
            self.root.remove_container(id.as_str(), Self::CONTROLLERS)?;
            return Ok(());
        };
        container.cgroup.remove(NC)?;
        if !container.runtime_dir.as_os_str().is_empty() {
            if let Err(e) = persist::remove(&container.runtime_dir) {
                tracing::warn!(%id, "net_cls: {e}");
            }
        }
        let mut state = self.state();
        state.containers.remove(id);
        if container.pooled {
            state.handles.free(container.classid.secondary, &holder(id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hierarchy::tests::FakeHost;

    #[test]
    fn new_mounts_a_missing_hierarchy_and_creates_the_root_there() {
        let tmp = tempfile::tempdir().unwrap();
        let host = FakeHost::new(tmp.path());
        let given = Arc::new(host.root());
        assert!(!given.has(NC));
        let options = NetClsOptions {
            mount_point: host.mount_point(),
            ..Default::default()
        };
        let isolator = NetClsIsolator::with_host(given, options, &host).unwrap();
        assert!(isolator.root().has(NC));
        assert!(host.mount_point().join("agent/berth").is_dir());
        let describe = isolator.describe();
        assert_eq!(describe["mounted_by_agent"], true);
        assert_eq!(
            describe["mount_point"],
            host.mount_point().display().to_string()
        );
    }
}
