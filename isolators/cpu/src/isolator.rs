use berth_isolator::TypedSection;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};

use berth_cgroups::{CgroupMode, CgroupRoot, ContainerCgroup, Controller};
use berth_isolator::{
    unknown, ContainerConfig, ContainerId, ContainerStates, Contribution, Isolator, IsolatorError,
    RecoveredContainer, Resources, Usage,
};
use serde_json::{json, Map, Value};

use crate::limits::{validate_cpus, CpuLimits};
use crate::stats;
use crate::CpuResources;

/// Options of the cpu isolator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuOptions {
    /// Cap containers at their CPUs with a CFS quota (Mesos'
    /// `--cgroups_enable_cfs`). Off: only shares (weights) apply, and a
    /// container may use idle CPUs beyond what it asked for.
    pub cfs_quota: bool,
}

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions { cfs_quota: true }
    }
}

/// The `cpu` isolator: cpu shares (v2 weight) and a CFS quota from
/// `resources.cpus`, and cpu accounting for every container.
#[derive(Debug)]
pub struct CpuIsolator {
    root: Arc<CgroupRoot>,
    options: CpuOptions,
    containers: ContainerStates<Container>,
}

#[derive(Debug)]
struct Container {
    cgroup: ContainerCgroup,
    limits: Option<CpuLimits>,
}

impl CpuIsolator {
    /// A cpu isolator placing cgroups under `root`. Creates the root for
    /// [`CpuIsolator::CONTROLLERS`] ([`CgroupRoot::ensure`]; on v2 that
    /// enables the cpu controller), so a host without them fails here, at
    /// agent start.
    pub fn new(root: Arc<CgroupRoot>, options: CpuOptions) -> Result<Self, IsolatorError> {
        root.ensure(Self::CONTROLLERS)?;
        Ok(CpuIsolator {
            root,
            options,
            containers: ContainerStates::new(),
        })
    }

    /// The controllers the isolator uses (on v2 both are the `cpu` controller).
    pub const CONTROLLERS: &'static [Controller] = &[Controller::Cpu, Controller::Cpuacct];

    fn containers(&self) -> MutexGuard<'_, HashMap<ContainerId, Container>> {
        self.containers.lock()
    }

    fn limits(&self, resources: &Resources) -> Result<Option<CpuLimits>, IsolatorError> {
        CpuResources::of(resources)?
            .cpus
            .map(|cpus| CpuLimits::new(cpus, self.options.cfs_quota))
            .transpose()
    }

    fn cfs_supported(&self) -> bool {
        let file = match self.root.mode() {
            CgroupMode::V1 => "cpu.cfs_quota_us",
            CgroupMode::V2 => "cpu.max",
        };
        self.root
            .dir(Controller::Cpu)
            .is_ok_and(|d| d.join(file).exists())
    }
}

/// The controllers whose cgroups the isolator creates.
fn controllers(mode: CgroupMode) -> &'static [Controller] {
    match mode {
        CgroupMode::V1 => &[Controller::Cpu, Controller::Cpuacct],
        CgroupMode::V2 => &[Controller::Cpu],
    }
}

/// Writes `limits` to the cgroup; `None` writes the kernel's defaults (no
/// limit), which is how a failed update restores a container that had none.
fn apply(cgroup: &ContainerCgroup, limits: Option<&CpuLimits>) -> Result<(), IsolatorError> {
    let shares = limits.map_or(1024, |l| l.shares);
    let quota = limits.and_then(|l| l.quota_us);
    match cgroup.mode() {
        CgroupMode::V1 => {
            cgroup.write(Controller::Cpu, "cpu.shares", &shares.to_string())?;
            if quota.is_some() && !cgroup.has_file(Controller::Cpu, "cpu.cfs_quota_us") {
                return Err(IsolatorError::Unsupported {
                    message: "cpu: the kernel has no CFS bandwidth control (cpu.cfs_quota_us); \
                              turn the cfs_quota option off"
                        .into(),
                });
            }
            if let Some(quota) = quota {
                cgroup.write(
                    Controller::Cpu,
                    "cpu.cfs_period_us",
                    &crate::CFS_PERIOD_US.to_string(),
                )?;
                cgroup.write(Controller::Cpu, "cpu.cfs_quota_us", &quota.to_string())?;
            } else if cgroup.has_file(Controller::Cpu, "cpu.cfs_quota_us") {
                cgroup.write(Controller::Cpu, "cpu.cfs_quota_us", "-1")?;
            }
        }
        CgroupMode::V2 => {
            let weight = crate::shares_to_weight(shares);
            cgroup.write(Controller::Cpu, "cpu.weight", &weight.to_string())?;
            let max = match quota {
                Some(quota) => format!("{quota} {}", crate::CFS_PERIOD_US),
                None => format!("max {}", crate::CFS_PERIOD_US),
            };
            cgroup.write(Controller::Cpu, "cpu.max", &max)?;
        }
    }
    Ok(())
}

fn contribution(limits: Option<&CpuLimits>) -> Contribution {
    let mut contribution = Contribution::default();
    if let Some(limits) = limits {
        let mut cpu = Map::new();
        cpu.insert("shares".into(), limits.shares.into());
        if let Some(quota) = limits.quota_us {
            cpu.insert("quota".into(), quota.into());
            cpu.insert("period".into(), limits.period_us.into());
        }
        contribution
            .linux_resources
            .insert("cpu".into(), Value::Object(cpu));
    }
    contribution
}

impl Isolator for CpuIsolator {
    fn name(&self) -> &str {
        "cpu"
    }

    fn describe(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("mode".into(), self.root.mode().to_string().into());
        out.insert("cfs_quota_supported".into(), self.cfs_supported().into());
        out.insert("cfs_quota".into(), self.options.cfs_quota.into());
        out
    }

    fn recover(
        &self,
        containers: &[RecoveredContainer],
        orphans: &[ContainerId],
    ) -> Result<(), IsolatorError> {
        self.containers.recover(containers, orphans, |recovered| {
            let cgroup = self.root.container(recovered.config.id.as_str())?;
            // The values were validated at launch; a config that no longer
            // validates (options changed) is recovered without limits known.
            let limits = self.limits(&recovered.config.resources).ok().flatten();
            Ok(Container { cgroup, limits })
        })?;
        self.root
            .remove_containers(
                orphans.iter().map(ContainerId::as_str),
                controllers(self.root.mode()),
            )
            .map_err(|e| IsolatorError::Other(format!("cpu: remove orphan cgroups: {e}")))
    }

    fn validate(&self, config: &ContainerConfig) -> Result<(), IsolatorError> {
        CpuResources::of(&config.resources)?
            .cpus
            .map_or(Ok(()), validate_cpus)
    }

    fn resource_section(&self) -> Option<berth_isolator::ResourceSection> {
        Some(CpuResources::section())
    }

    fn oci_resources(
        &self,
        _id: &ContainerId,
        resources: &Resources,
    ) -> Result<Option<Map<String, Value>>, IsolatorError> {
        let limits = self.limits(resources)?;
        Ok(Some(contribution(limits.as_ref()).linux_resources))
    }

    fn early_contribution(
        &self,
        _id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Option<Contribution>, IsolatorError> {
        let limits = self.limits(&config.resources)?;
        Ok(Some(contribution(limits.as_ref())))
    }

    fn prepare(
        &self,
        id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Contribution, IsolatorError> {
        let limits = self.limits(&config.resources)?;
        let cgroup = self.root.container(id.as_str())?;
        cgroup.create_all_with(controllers(cgroup.mode()), |cgroup| match &limits {
            Some(limits) => apply(cgroup, Some(limits)),
            // No cpus asked: the cgroup is still there for accounting.
            None => Ok(()),
        })?;
        self.containers()
            .insert(id.clone(), Container { cgroup, limits });
        Ok(contribution(limits.as_ref()))
    }

    fn isolate(&self, id: &ContainerId, pid: u32) -> Result<(), IsolatorError> {
        let cgroup = self.cgroup(id)?;
        // Co-mounted controllers share a directory: it is written once.
        cgroup.add_process_all(controllers(cgroup.mode()), pid)?;
        Ok(())
    }

    /// `isolate` only moves the process: where it can, it moves itself.
    fn joinable_cgroups(&self, id: &ContainerId) -> Result<Vec<PathBuf>, IsolatorError> {
        Ok(self
            .root
            .container_dirs(id.as_str(), controllers(self.root.mode()))?)
    }

    /// Applies a new `resources.cpus`; an absent value leaves the current
    /// limits. An invalid value, or one the kernel refuses, leaves the old
    /// values in place.
    fn update(&self, id: &ContainerId, resources: &Resources) -> Result<(), IsolatorError> {
        let new = self.limits(resources)?;
        let mut state = self.containers();
        let container = state.get_mut(id).ok_or_else(|| unknown(id))?;
        let Some(new) = new else {
            return Ok(());
        };
        if let Err(e) = apply(&container.cgroup, Some(&new)) {
            if matches!(e, IsolatorError::Unsupported { .. }) {
                return Err(e);
            }
            // Best effort: put back what was there before the partial write.
            let _ = apply(&container.cgroup, container.limits.as_ref());
            return Err(IsolatorError::Refused {
                message: e.to_string(),
            });
        }
        container.limits = Some(new);
        Ok(())
    }

    fn usage(&self, id: &ContainerId) -> Result<Usage, IsolatorError> {
        let (cgroup, limits) = {
            let state = self.containers();
            let container = state.get(id).ok_or_else(|| unknown(id))?;
            (container.cgroup.clone(), container.limits)
        };
        let mut usage = Usage::new();
        stats::read_usage(&cgroup, &mut usage)?;
        if let Some(limits) = limits {
            usage.insert("cpus".into(), json!(limits.cpus));
            usage.insert("shares".into(), limits.shares.into());
            if let Some(quota) = limits.quota_us {
                usage.insert("quota_us".into(), quota.into());
                usage.insert("period_us".into(), limits.period_us.into());
            }
        } else {
            // Nothing written: a new cgroup's default (v1 `cpu.shares` 1024,
            // v2 `cpu.weight` 100, the same weight).
            usage.insert("shares".into(), 1024.into());
        }
        Ok(usage)
    }

    fn cleanup(&self, id: &ContainerId) -> Result<(), IsolatorError> {
        self.containers().remove(id);
        // Unknown ids are tolerated, but a cgroup left by an earlier run of
        // the agent under the same name is still removed.
        self.root
            .remove_container(id.as_str(), controllers(self.root.mode()))?;
        Ok(())
    }
}

impl CpuIsolator {
    fn cgroup(&self, id: &ContainerId) -> Result<ContainerCgroup, IsolatorError> {
        self.containers()
            .get(id)
            .map(|c| c.cgroup.clone())
            .ok_or_else(|| unknown(id))
    }
}
