use berth_isolator::TypedSection;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use berth_cgroups::{CgroupMode, CgroupRoot, ContainerCgroup, Controller};
use berth_isolator::{
    unknown, ContainerConfig, ContainerId, ContainerStates, Contribution, Isolator, IsolatorError,
    Limitation, LimitationReporter, RecoveredContainer, Resources, Usage,
};
use serde_json::{Map, Value};

use crate::apply::{self, MEMSW};
use crate::limits::{format_bytes, MemoryLimits};
use crate::oom::{self, Watcher};
use crate::stats;

const M: Controller = Controller::Memory;

/// Options of the memory isolator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryOptions {
    /// How often a cgroup v2 watcher reads `memory.events` for OOM kills
    /// (v1 is told by the kernel through an eventfd).
    pub oom_poll_interval: Duration,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            oom_poll_interval: Duration::from_millis(100),
        }
    }
}

/// The `memory` isolator: a hard limit (with swap closed off) and a soft
/// limit from `resources.memory` and `resources.memory_reservation`, OOM
/// kills reported as the `memory` limitation.
#[derive(Debug)]
pub struct MemoryIsolator {
    root: Arc<CgroupRoot>,
    options: MemoryOptions,
    containers: ContainerStates<Container>,
}

#[derive(Debug)]
struct Container {
    cgroup: ContainerCgroup,
    limits: MemoryLimits,
    watcher: Option<Watcher>,
    /// The reporter of a container without a limit, which no cgroup OOM
    /// can hit: kept until an update sets a limit, which starts the
    /// watcher (no thread per unlimited container).
    parked: Option<LimitationReporter>,
}

impl Container {
    fn unwatched(cgroup: ContainerCgroup, limits: MemoryLimits) -> Self {
        Container {
            cgroup,
            limits,
            watcher: None,
            parked: None,
        }
    }
}

impl MemoryIsolator {
    /// A memory isolator placing cgroups under `root`. Creates the root for
    /// [`MemoryIsolator::CONTROLLERS`] ([`CgroupRoot::ensure`]; on v2 that
    /// enables the memory controller), so a host without it fails here, at
    /// agent start.
    pub fn new(root: Arc<CgroupRoot>, options: MemoryOptions) -> Result<Self, IsolatorError> {
        root.ensure(Self::CONTROLLERS)?;
        Ok(MemoryIsolator {
            root,
            options,
            containers: ContainerStates::new(),
        })
    }

    /// The controllers the isolator uses.
    pub const CONTROLLERS: &'static [Controller] = &[Controller::Memory];

    fn containers(&self) -> MutexGuard<'_, HashMap<ContainerId, Container>> {
        self.containers.lock()
    }

    fn known(&self, id: &ContainerId) -> Result<(ContainerCgroup, MemoryLimits), IsolatorError> {
        self.containers()
            .get(id)
            .map(|c| (c.cgroup.clone(), c.limits))
            .ok_or_else(|| unknown(id))
    }

    /// Drops what is known about container `id` and stops its watcher.
    fn forget(&self, id: &ContainerId) {
        // Not under the lock: stopping waits for the watcher thread.
        let known = self.containers().remove(id);
        if let Some(watcher) = known.and_then(|c| c.watcher) {
            watcher.stop();
        }
    }

    fn swap_limited(&self) -> bool {
        let file = match self.root.mode() {
            CgroupMode::V1 => MEMSW,
            CgroupMode::V2 => "memory.swap.max",
        };
        self.root.dir(M).is_ok_and(|d| d.join(file).exists())
    }
}

fn apply_limits(cgroup: &ContainerCgroup, limits: &MemoryLimits) -> Result<(), IsolatorError> {
    if let Some(limit) = limits.limit {
        apply::set_limit(cgroup, limit)?;
    }
    if let Some(reservation) = limits.reservation {
        apply::set_reservation(cgroup, reservation)?;
    }
    Ok(())
}

fn contribution(limits: &MemoryLimits) -> Contribution {
    let mut memory = Map::new();
    if let Some(limit) = limits.limit {
        memory.insert("limit".into(), limit.into());
    }
    if let Some(reservation) = limits.reservation {
        memory.insert("reservation".into(), reservation.into());
    }
    let mut contribution = Contribution::default();
    if !memory.is_empty() {
        contribution
            .linux_resources
            .insert("memory".into(), Value::Object(memory));
    }
    contribution
}

impl Isolator for MemoryIsolator {
    fn name(&self) -> &str {
        "memory"
    }

    fn describe(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("mode".into(), self.root.mode().to_string().into());
        out.insert("swap_limited".into(), self.swap_limited().into());
        let oom_events = match self.root.mode() {
            CgroupMode::V1 => "eventfd",
            CgroupMode::V2 => "memory.events",
        };
        out.insert("oom_events".into(), oom_events.into());
        out
    }

    fn recover(
        &self,
        containers: &[RecoveredContainer],
        orphans: &[ContainerId],
    ) -> Result<(), IsolatorError> {
        for recovered in containers {
            let id = &recovered.config.id;
            let cgroup = self.root.container(id.as_str())?;
            let limits =
                MemoryLimits::from_resources(&recovered.config.resources).unwrap_or_default();
            // Watchers are not restarted here: the agent calls watch() for
            // the containers it reattaches to.
            self.containers()
                .insert(id.clone(), Container::unwatched(cgroup, limits));
        }
        for id in orphans {
            self.forget(id);
        }
        self.root
            .remove_containers(orphans.iter().map(ContainerId::as_str), Self::CONTROLLERS)
            .map_err(|e| IsolatorError::Other(format!("memory: remove orphan cgroups: {e}")))
    }

    fn validate(&self, config: &ContainerConfig) -> Result<(), IsolatorError> {
        MemoryLimits::from_resources(&config.resources).map(|_| ())
    }

    fn resource_section(&self) -> Option<berth_isolator::ResourceSection> {
        Some(crate::MemoryResources::section())
    }

    fn oci_resources(
        &self,
        _id: &ContainerId,
        resources: &Resources,
    ) -> Result<Option<Map<String, Value>>, IsolatorError> {
        let limits = MemoryLimits::from_resources(resources)?;
        Ok(Some(contribution(&limits).linux_resources))
    }

    fn early_contribution(
        &self,
        _id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Option<Contribution>, IsolatorError> {
        let limits = MemoryLimits::from_resources(&config.resources)?;
        Ok(Some(contribution(&limits)))
    }

    fn prepare(
        &self,
        id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Contribution, IsolatorError> {
        let limits = MemoryLimits::from_resources(&config.resources)?;
        let cgroup = self.root.container(id.as_str())?;
        cgroup.create_all_with(Self::CONTROLLERS, |cgroup| apply_limits(cgroup, &limits))?;
        self.containers()
            .insert(id.clone(), Container::unwatched(cgroup, limits));
        Ok(contribution(&limits))
    }

    fn isolate(&self, id: &ContainerId, pid: u32) -> Result<(), IsolatorError> {
        let (cgroup, _) = self.known(id)?;
        cgroup.add_process(M, pid)?;
        Ok(())
    }

    /// `isolate` only moves the process: where it can, it moves itself.
    fn joinable_cgroups(&self, id: &ContainerId) -> Result<Vec<PathBuf>, IsolatorError> {
        Ok(self.root.container_dirs(id.as_str(), &[M])?)
    }

    fn watch(&self, id: &ContainerId, reporter: LimitationReporter) -> Result<(), IsolatorError> {
        let (cgroup, limits) = {
            // Under the lock `update` sets a limit under: a limit set
            // meanwhile is seen here, or finds the reporter parked.
            let mut state = self.containers();
            let container = state.get_mut(id).ok_or_else(|| unknown(id))?;
            if container.limits.limit.is_none() {
                container.parked = Some(reporter);
                return Ok(());
            }
            (container.cgroup.clone(), container.limits)
        };
        let watcher = Watcher::start(
            cgroup,
            limits.limit,
            reporter,
            self.options.oom_poll_interval,
        )?;
        let old = match self.containers().get_mut(id) {
            Some(container) => container.watcher.replace(watcher),
            // Cleaned up meanwhile: nothing to watch.
            None => Some(watcher),
        };
        if let Some(old) = old {
            old.stop();
        }
        Ok(())
    }

    /// Applies new memory limits; a field left out keeps its value. A hard
    /// limit below the current usage is refused (the kernel would reclaim
    /// and then OOM-kill the container), and the old limits stay.
    fn update(&self, id: &ContainerId, resources: &Resources) -> Result<(), IsolatorError> {
        let section = crate::MemoryResources::of(resources)?;
        let asked = MemoryLimits {
            limit: section.memory,
            reservation: section.memory_reservation,
        };
        let mut state = self.containers();
        let container = state.get_mut(id).ok_or_else(|| unknown(id))?;
        let new = container.limits.updated(&asked);
        new.validate()?;
        let cgroup = &container.cgroup;
        if let Some(limit) = asked.limit {
            let usage = apply::current_usage(cgroup)?;
            if limit < usage {
                return Err(IsolatorError::Refused {
                    message: format!(
                        "memory limit of {} ({limit} bytes) is below the current usage of {} ({usage} bytes)",
                        format_bytes(limit),
                        format_bytes(usage)
                    ),
                });
            }
        }
        let old_kernel_limit = apply::kernel_limit(cgroup)?;
        if let Err(e) = apply_limits(cgroup, &asked) {
            // Best effort: put back the old limit after a partial write.
            if let Some(old) = old_kernel_limit {
                let _ = apply::set_limit(cgroup, old);
            }
            return Err(IsolatorError::Refused {
                message: e.to_string(),
            });
        }
        container.limits = new;
        // A container launched without a limit is watched from now on.
        // The limit is applied either way: a watcher that cannot start is
        // logged, and the exit's counter still tells an OOM kill.
        if let (Some(limit), Some(reporter)) = (new.limit, container.parked.take()) {
            let started = Watcher::start(
                container.cgroup.clone(),
                Some(limit),
                reporter,
                self.options.oom_poll_interval,
            );
            match started {
                Ok(watcher) => container.watcher = Some(watcher),
                Err(e) => tracing::warn!(%id, "memory: watch after an update: {e}"),
            }
        }
        Ok(())
    }

    fn usage(&self, id: &ContainerId) -> Result<Usage, IsolatorError> {
        let (cgroup, _) = self.known(id)?;
        let mut usage = Usage::new();
        stats::read_usage(&cgroup, &mut usage)?;
        Ok(usage)
    }

    /// The scrape's figures, with the limit the isolator set (not read back).
    fn scrape(&self, id: &ContainerId) -> Result<Usage, IsolatorError> {
        let (cgroup, limits) = self.known(id)?;
        let mut usage = Usage::new();
        stats::read_scrape(&cgroup, &mut usage)?;
        if let Some(limit) = limits.limit {
            usage.insert("limit_bytes".into(), limit.into());
        }
        Ok(usage)
    }

    fn exit_limitation(&self, id: &ContainerId) -> Result<Option<Limitation>, IsolatorError> {
        let (cgroup, limits) = self.known(id)?;
        // The counter, not the (possibly undelivered) event, decides.
        match oom::oom_kills(&cgroup)? {
            Some(kills) if kills > 0 => Ok(Some(oom::limitation(&cgroup, limits.limit))),
            _ => Ok(None),
        }
    }

    fn cleanup(&self, id: &ContainerId) -> Result<(), IsolatorError> {
        self.forget(id);
        // Unknown ids are tolerated, but a cgroup left by an earlier run of
        // the agent under the same name is still removed.
        self.root.remove_container(id.as_str(), Self::CONTROLLERS)?;
        Ok(())
    }
}
