use berth_isolator::TypedSection;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};

use berth_cgroups::{CgroupRoot, ContainerCgroup, Controller};
use berth_isolator::{
    unknown, ContainerConfig, ContainerId, ContainerStates, Contribution, Isolator, IsolatorError,
    RecoveredContainer, Resources, Usage,
};
use serde_json::{json, Map, Value};

use crate::limit::{pids_max, PidsOptions};

/// The controllers the isolator uses: `pids` on v1 and v2 alike.
const CONTROLLERS: &[Controller] = &[Controller::Pids];

/// The `pids` isolator: `pids.max` from `resources.pids_limit` or the
/// agent's default, and the task count in usage.
#[derive(Debug)]
pub struct PidsIsolator {
    root: Arc<CgroupRoot>,
    options: PidsOptions,
    containers: ContainerStates<Container>,
}

#[derive(Debug)]
struct Container {
    cgroup: ContainerCgroup,
    /// The limit in force; `None` is `max`.
    limit: Option<u64>,
}

impl PidsIsolator {
    /// A pids isolator placing cgroups under `root`. Creates the root for
    /// the pids controller (on v2 that enables `+pids` from the delegation
    /// point down), so a host without it fails here, at agent start.
    pub fn new(root: Arc<CgroupRoot>, options: PidsOptions) -> Result<Self, IsolatorError> {
        root.ensure(CONTROLLERS)?;
        Ok(PidsIsolator {
            root,
            options,
            containers: ContainerStates::new(),
        })
    }

    fn containers(&self) -> MutexGuard<'_, HashMap<ContainerId, Container>> {
        self.containers.lock()
    }

    fn cgroup(&self, id: &ContainerId) -> Result<ContainerCgroup, IsolatorError> {
        self.containers()
            .get(id)
            .map(|c| c.cgroup.clone())
            .ok_or_else(|| unknown(id))
    }
}

fn contribution(limit: Option<u64>) -> Contribution {
    let mut contribution = Contribution::default();
    // The runtime spec's "no limit" is -1 (runc writes "max" for it).
    let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    contribution
        .linux_resources
        .insert("pids".into(), json!({ "limit": limit }));
    contribution
}

impl Isolator for PidsIsolator {
    fn name(&self) -> &str {
        "pids"
    }

    fn describe(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("mode".into(), self.root.mode().to_string().into());
        out.insert("default_limit".into(), self.options.default_limit.into());
        out.insert(
            "allow_unlimited".into(),
            self.options.allow_unlimited.into(),
        );
        out
    }

    fn recover(
        &self,
        containers: &[RecoveredContainer],
        orphans: &[ContainerId],
    ) -> Result<(), IsolatorError> {
        self.containers.recover(containers, orphans, |recovered| {
            let cgroup = self.root.container(recovered.config.id.as_str())?;
            // The kernel's file is the truth after a restart (the options
            // may have changed since the launch).
            let limit = cgroup
                .read(Controller::Pids, "pids.max")
                .ok()
                .and_then(|text| text.trim().parse().ok());
            Ok(Container { cgroup, limit })
        })?;
        self.root
            .remove_containers(orphans.iter().map(ContainerId::as_str), CONTROLLERS)
            .map_err(|e| IsolatorError::Other(format!("pids: remove orphan cgroups: {e}")))
    }

    fn validate(&self, config: &ContainerConfig) -> Result<(), IsolatorError> {
        self.options
            .limit_for(crate::PidsResources::of(&config.resources)?.pids_limit)?;
        Ok(())
    }

    fn resource_section(&self) -> Option<berth_isolator::ResourceSection> {
        Some(crate::PidsResources::section())
    }

    fn oci_resources(
        &self,
        _id: &ContainerId,
        resources: &Resources,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, IsolatorError> {
        let limit = self
            .options
            .limit_for(crate::PidsResources::of(resources)?.pids_limit)?;
        Ok(Some(contribution(limit).linux_resources))
    }

    fn early_contribution(
        &self,
        _id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Option<Contribution>, IsolatorError> {
        let limit = self
            .options
            .limit_for(crate::PidsResources::of(&config.resources)?.pids_limit)?;
        Ok(Some(contribution(limit)))
    }

    fn prepare(
        &self,
        id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Contribution, IsolatorError> {
        let limit = self
            .options
            .limit_for(crate::PidsResources::of(&config.resources)?.pids_limit)?;
        let cgroup = self.root.container(id.as_str())?;
        cgroup.create_all_with(CONTROLLERS, |cgroup| {
            cgroup.write(Controller::Pids, "pids.max", &pids_max(limit))
        })?;
        self.containers()
            .insert(id.clone(), Container { cgroup, limit });
        Ok(contribution(limit))
    }

    fn isolate(&self, id: &ContainerId, pid: u32) -> Result<(), IsolatorError> {
        self.cgroup(id)?.add_process(Controller::Pids, pid)?;
        Ok(())
    }

    /// `isolate` only moves the process: where it can, it moves itself.
    fn joinable_cgroups(&self, id: &ContainerId) -> Result<Vec<PathBuf>, IsolatorError> {
        Ok(self.root.container_dirs(id.as_str(), CONTROLLERS)?)
    }

    /// Applies a new `resources.pids_limit`; an absent value leaves the
    /// current one. A limit below the current count is accepted: running
    /// tasks stay, new forks fail until the count drops below it.
    fn update(&self, id: &ContainerId, resources: &Resources) -> Result<(), IsolatorError> {
        let mut state = self.containers();
        let container = state.get_mut(id).ok_or_else(|| unknown(id))?;
        let asked = crate::PidsResources::of(resources)?.pids_limit;
        if asked.is_none() {
            return Ok(());
        }
        let new = self.options.limit_for(asked)?;
        container
            .cgroup
            .write(Controller::Pids, "pids.max", &pids_max(new))
            .map_err(|e| IsolatorError::Refused {
                message: e.to_string(),
            })?;
        container.limit = new;
        Ok(())
    }

    fn usage(&self, id: &ContainerId) -> Result<Usage, IsolatorError> {
        let (cgroup, limit) = {
            let state = self.containers();
            let container = state.get(id).ok_or_else(|| unknown(id))?;
            (container.cgroup.clone(), container.limit)
        };
        let mut usage = Usage::new();
        let current = cgroup.read_u64(Controller::Pids, "pids.current")?;
        usage.insert("current".into(), current.into());
        usage.insert(
            "limit".into(),
            limit.map_or_else(|| Value::from("max"), Value::from),
        );
        // How many forks the limit refused (`max N`; absent on old kernels).
        if let Ok(events) = cgroup.read_keyed(Controller::Pids, "pids.events") {
            if let Some(max) = events.get("max") {
                usage.insert("limit_hits".into(), (*max).into());
            }
        }
        Ok(usage)
    }

    /// The process count only (one file): no metric shows the limit's hits.
    fn scrape(&self, id: &ContainerId) -> Result<Usage, IsolatorError> {
        let cgroup = {
            let state = self.containers();
            state.get(id).ok_or_else(|| unknown(id))?.cgroup.clone()
        };
        let mut usage = Usage::new();
        let current = cgroup.read_u64(Controller::Pids, "pids.current")?;
        usage.insert("current".into(), current.into());
        Ok(usage)
    }

    fn cleanup(&self, id: &ContainerId) -> Result<(), IsolatorError> {
        self.containers().remove(id);
        // Unknown ids are tolerated, but a cgroup left by an earlier run of
        // the agent under the same name is still removed.
        self.root.remove_container(id.as_str(), CONTROLLERS)?;
        Ok(())
    }
}
