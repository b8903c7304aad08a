use berth_isolator::TypedSection;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};

use berth_cgroups::{CgroupMode, CgroupRoot, ContainerCgroup, Controller};
use berth_isolator::{
    unknown, ContainerConfig, ContainerId, ContainerStates, Contribution, Isolator, IsolatorError,
    RecoveredContainer, Resources, Status,
};
use serde_json::{json, Map, Value};

use crate::node::passed_devices;
use crate::rule::{default_rules, DeviceRule};
use crate::{ebpf, v1, DeviceMapping};

/// The controllers the isolator uses (on v2: the container's one cgroup).
const CONTROLLERS: &[Controller] = &[Controller::Devices];

/// The `devices` isolator: Docker's default allow list plus the devices
/// passed through with `resources.devices`; everything else is denied.
#[derive(Debug)]
pub struct DevicesIsolator {
    root: Arc<CgroupRoot>,
    containers: ContainerStates<Container>,
}

#[derive(Debug)]
struct Container {
    cgroup: ContainerCgroup,
    /// The devices asked for at launch.
    devices: Vec<DeviceMapping>,
    rules: Vec<DeviceRule>,
    /// The attached v2 program, while this agent has its fd (not after a
    /// restart: the cgroup keeps the program attached, and its removal
    /// releases it).
    program: Option<OwnedFd>,
}

impl DevicesIsolator {
    /// A devices isolator placing cgroups under `root`. Creates the root of
    /// the devices hierarchy on v1 (on v2 the filter is an eBPF program and
    /// there is nothing to enable), so a host without it fails here.
    pub fn new(root: Arc<CgroupRoot>) -> Result<Self, IsolatorError> {
        root.ensure(CONTROLLERS)?;
        Ok(DevicesIsolator {
            root,
            containers: ContainerStates::new(),
        })
    }

    fn containers(&self) -> MutexGuard<'_, HashMap<ContainerId, Container>> {
        self.containers.lock()
    }

    /// The rules for a container: the default list, then its own devices.
    fn rules(config: &ContainerConfig) -> Result<(Vec<DeviceRule>, Contribution), IsolatorError> {
        let passed = passed_devices(&crate::DevicesResources::of(&config.resources)?.devices)?;
        let mut rules = default_rules();
        rules.extend(passed.iter().map(|p| p.rule));
        let mut contribution = Contribution::default();
        let mut entries = vec![json!({"allow": false, "access": "rwm"})];
        entries.extend(rules.iter().map(DeviceRule::oci));
        contribution
            .linux_resources
            .insert("devices".into(), Value::Array(entries));
        contribution.devices = passed.into_iter().map(|p| p.node).collect();
        Ok((rules, contribution))
    }
}

/// Installs the filter on a created cgroup; on v2 returns the program.
fn install(
    cgroup: &ContainerCgroup,
    rules: &[DeviceRule],
) -> Result<Option<OwnedFd>, IsolatorError> {
    match cgroup.mode() {
        CgroupMode::V1 => {
            v1::apply(cgroup, rules)?;
            Ok(None)
        }
        CgroupMode::V2 => {
            let program = ebpf::syscall::load(&ebpf::program(rules))?;
            ebpf::syscall::attach(cgroup.path(Controller::Devices)?, &program)?;
            Ok(Some(program))
        }
    }
}

impl Isolator for DevicesIsolator {
    fn name(&self) -> &str {
        "devices"
    }

    fn describe(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("mode".into(), self.root.mode().to_string().into());
        let filter = match self.root.mode() {
            CgroupMode::V1 => "devices.allow",
            CgroupMode::V2 => "ebpf",
        };
        out.insert("filter".into(), filter.into());
        out.insert(
            "default_allow".into(),
            default_rules()
                .iter()
                .map(DeviceRule::v1_line)
                .collect::<Vec<_>>()
                .into(),
        );
        out.insert("passthrough".into(), true.into());
        out
    }

    fn recover(
        &self,
        containers: &[RecoveredContainer],
        orphans: &[ContainerId],
    ) -> Result<(), IsolatorError> {
        self.containers.recover(containers, orphans, |recovered| {
            let cgroup = self.root.container(recovered.config.id.as_str())?;
            // The filter stays in the kernel; a config that no longer
            // validates (a host node gone) keeps the default list known.
            let rules = Self::rules(&recovered.config)
                .map(|(rules, _)| rules)
                .unwrap_or_else(|_| default_rules());
            Ok(Container {
                cgroup,
                devices: crate::DevicesResources::of(&recovered.config.resources)
                    .map(|r| r.devices)
                    .unwrap_or_default(),
                rules,
                program: None,
            })
        })?;
        self.root
            .remove_containers(orphans.iter().map(ContainerId::as_str), CONTROLLERS)
            .map_err(|e| IsolatorError::Other(format!("devices: remove orphan cgroups: {e}")))
    }

    fn resource_section(&self) -> Option<berth_isolator::ResourceSection> {
        Some(crate::DevicesResources::section())
    }

    /// The devices passed through are fixed at launch: an update giving them is refused.
    fn merge_resources(
        &self,
        current: &berth_isolator::Section,
        update: &berth_isolator::Section,
    ) -> Result<berth_isolator::Section, IsolatorError> {
        berth_isolator::fixed_at_launch("resources.devices", current, update)
    }

    fn validate(&self, config: &ContainerConfig) -> Result<(), IsolatorError> {
        passed_devices(&crate::DevicesResources::of(&config.resources)?.devices).map(drop)
    }

    fn early_contribution(
        &self,
        _id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Option<Contribution>, IsolatorError> {
        Ok(Some(Self::rules(config)?.1))
    }

    fn prepare(
        &self,
        id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Contribution, IsolatorError> {
        let (rules, contribution) = Self::rules(config)?;
        let cgroup = self.root.container(id.as_str())?;
        let program = cgroup.create_all_with(CONTROLLERS, |cgroup| install(cgroup, &rules))?;
        self.containers().insert(
            id.clone(),
            Container {
                cgroup,
                devices: crate::DevicesResources::of(&config.resources)?.devices,
                rules,
                program,
            },
        );
        Ok(contribution)
    }

    fn isolate(&self, id: &ContainerId, pid: u32) -> Result<(), IsolatorError> {
        let cgroup = self
            .containers()
            .get(id)
            .map(|c| c.cgroup.clone())
            .ok_or_else(|| unknown(id))?;
        cgroup.add_process(Controller::Devices, pid)?;
        Ok(())
    }

    /// `isolate` only moves the process: where it can, it moves itself.
    fn joinable_cgroups(&self, id: &ContainerId) -> Result<Vec<PathBuf>, IsolatorError> {
        Ok(self.root.container_dirs(id.as_str(), CONTROLLERS)?)
    }

    /// Devices are fixed at launch: a request to change them is refused.
    fn update(&self, id: &ContainerId, resources: &Resources) -> Result<(), IsolatorError> {
        let state = self.containers();
        let container = state.get(id).ok_or_else(|| unknown(id))?;
        if crate::DevicesResources::of(resources)?.devices != container.devices {
            return Err(IsolatorError::invalid(
                "resources.devices",
                "cannot be changed while the container runs",
            ));
        }
        Ok(())
    }

    fn status(&self, id: &ContainerId) -> Result<Status, IsolatorError> {
        let state = self.containers();
        let container = state.get(id).ok_or_else(|| unknown(id))?;
        let mut status = Status::new();
        status.insert(
            "allow".into(),
            container
                .rules
                .iter()
                .map(DeviceRule::v1_line)
                .collect::<Vec<_>>()
                .into(),
        );
        Ok(status)
    }

    fn cleanup(&self, id: &ContainerId) -> Result<(), IsolatorError> {
        let container = self.containers().remove(id);
        if let Some(Container {
            cgroup,
            program: Some(program),
            ..
        }) = &container
        {
            // Tidy, not needed: removing the cgroup releases the program.
            if let Ok(dir) = cgroup.path(Controller::Devices) {
                let _ = ebpf::syscall::detach(dir, program);
            }
        }
        drop(container);
        // Unknown ids are tolerated, but a cgroup left by an earlier run of
        // the agent under the same name is still removed.
        self.root.remove_container(id.as_str(), CONTROLLERS)?;
        Ok(())
    }
}
