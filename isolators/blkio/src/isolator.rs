use berth_isolator::TypedSection;
use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};

use berth_cgroups::{CgroupMode, CgroupRoot, ContainerCgroup, Controller};
use berth_isolator::{
    unknown, ContainerConfig, ContainerId, ContainerStates, Contribution, Isolator, IsolatorError,
    RecoveredContainer, Resources, Usage,
};
use serde_json::{Map, Value};

use crate::limits::BlkioLimits;
use crate::stats;
use crate::throttle::Throttle;
use crate::weight::WeightFile;

const B: Controller = Controller::Blkio;

/// The `blkio` isolator: a proportional I/O weight and per-device bps/iops
/// throttles from `resources`, and I/O accounting per device for every
/// container.
#[derive(Debug)]
pub struct BlkioIsolator {
    root: Arc<CgroupRoot>,
    /// The weight files this host's kernel offers, in order of preference;
    /// empty when it has no group scheduling policy with a weight.
    weight_files: Vec<WeightFile>,
    /// Whether the kernel has the throttle policy.
    throttle: bool,
    containers: ContainerStates<Container>,
    /// v1: whether the kernel has the `_recursive` statistics files (looked
    /// up once here, not on every read of a container's usage).
    recursive_stats: bool,
}

#[derive(Debug)]
struct Container {
    cgroup: ContainerCgroup,
    /// What the kernel has for the container.
    limits: BlkioLimits,
}

impl BlkioIsolator {
    /// A blkio isolator placing cgroups under `root`. Creates the root for
    /// [`BlkioIsolator::CONTROLLERS`] ([`CgroupRoot::ensure`]; on v2 that
    /// enables the io controller), so a host without it fails here, at agent
    /// start. Which weight file to use, if any, is decided here from the
    /// files of the root directory.
    pub fn new(root: Arc<CgroupRoot>) -> Result<Self, IsolatorError> {
        root.ensure(Self::CONTROLLERS)?;
        let dir = root.dir(B)?;
        let weight_files = WeightFile::detect(root.mode(), dir);
        let throttle_file = match root.mode() {
            CgroupMode::V1 => Throttle::WriteBps.v1_file(),
            CgroupMode::V2 => "io.max",
        };
        let throttle = dir.join(throttle_file).exists();
        let recursive_stats = dir.join(stats::RECURSIVE_PROBE).exists();
        Ok(BlkioIsolator {
            root,
            weight_files,
            throttle,
            containers: ContainerStates::new(),
            recursive_stats,
        })
    }

    /// The controllers the isolator uses (`io` on v2).
    pub const CONTROLLERS: &'static [Controller] = &[Controller::Blkio];

    /// The weight files in use (all that the host offers: each weighs I/O
    /// for the devices its scheduler drives).
    pub fn weight_files(&self) -> &[WeightFile] {
        &self.weight_files
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

    /// Checks the request and what this host can do; changes nothing.
    fn limits(&self, resources: &Resources) -> Result<BlkioLimits, IsolatorError> {
        let limits = BlkioLimits::from_resources(resources)?;
        if limits.weight.is_some() && self.weight_files.is_empty() {
            let names: Vec<&str> = WeightFile::candidates(self.root.mode())
                .iter()
                .map(|f| f.name())
                .collect();
            return Err(IsolatorError::Unsupported {
                message: format!(
                    "resources.blkio_weight: no I/O weight file ({}) in {}: the kernel has no \
                     group scheduling policy with a weight (CFQ, BFQ or iocost); leave the weight out",
                    names.join(" or "),
                    self.root_dir_display()
                ),
            });
        }
        if !limits.throttles.is_empty() && !self.throttle {
            let field = Throttle::ALL
                .into_iter()
                .find(|t| {
                    crate::BlkioResources::of(resources)
                        .is_ok_and(|section| !t.limits(&section).is_empty())
                })
                .map_or("throttles", Throttle::field);
            return Err(IsolatorError::Unsupported {
                message: format!(
                    "{field}: the kernel has no block I/O throttling (no {} in {})",
                    match self.root.mode() {
                        CgroupMode::V1 => Throttle::WriteBps.v1_file(),
                        CgroupMode::V2 => "io.max",
                    },
                    self.root_dir_display()
                ),
            });
        }
        Ok(limits)
    }

    fn root_dir_display(&self) -> String {
        self.root.dir(B).map_or_else(
            |_| "the cgroup root".to_string(),
            |d| d.display().to_string(),
        )
    }

    /// The block devices whose scheduler is BFQ (what a BFQ weight file
    /// applies to).
    fn bfq_devices() -> Vec<String> {
        let Ok(entries) = fs::read_dir("/sys/block") else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| {
                fs::read_to_string(e.path().join("queue/scheduler"))
                    .is_ok_and(|s| s.contains("[bfq]"))
            })
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }
}

/// Writes the weight to every weight file the host has.
fn apply_weight(
    cgroup: &ContainerCgroup,
    files: &[WeightFile],
    weight: u16,
) -> Result<(), IsolatorError> {
    for file in files {
        cgroup.write(B, file.name(), &file.value(weight))?;
    }
    Ok(())
}

/// Moves the kernel from `old` to `new`.
fn apply(
    cgroup: &ContainerCgroup,
    files: &[WeightFile],
    old: &BlkioLimits,
    new: &BlkioLimits,
) -> Result<(), IsolatorError> {
    if let Some(weight) = new.weight.filter(|w| Some(*w) != old.weight) {
        apply_weight(cgroup, files, weight)?;
    }
    new.throttles.apply(cgroup, &old.throttles)?;
    Ok(())
}

fn contribution(limits: &BlkioLimits) -> Contribution {
    let mut contribution = Contribution::default();
    if let Some(block_io) = limits.block_io() {
        contribution
            .linux_resources
            .insert("blockIO".into(), block_io);
    }
    contribution
}

impl Isolator for BlkioIsolator {
    fn name(&self) -> &str {
        "blkio"
    }

    fn describe(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("mode".into(), self.root.mode().to_string().into());
        out.insert("weight".into(), (!self.weight_files.is_empty()).into());
        out.insert(
            "weight_file".into(),
            self.weight_files
                .first()
                .map_or(Value::Null, |f| f.name().into()),
        );
        out.insert(
            "weight_files".into(),
            self.weight_files
                .iter()
                .map(|f| Value::from(f.name()))
                .collect(),
        );
        if self.weight_files.iter().any(|f| f.is_bfq()) {
            // A BFQ weight only weighs I/O to devices BFQ schedules: say
            // which, so an empty list explains a weight without effect.
            out.insert(
                "bfq_devices".into(),
                Self::bfq_devices().into_iter().map(Value::from).collect(),
            );
        }
        out.insert("throttle".into(), self.throttle.into());
        out
    }

    fn recover(
        &self,
        containers: &[RecoveredContainer],
        orphans: &[ContainerId],
    ) -> Result<(), IsolatorError> {
        self.containers.recover(containers, orphans, |recovered| {
            let cgroup = self.root.container(recovered.config.id.as_str())?;
            // Validated at launch; a device gone since is recovered without
            // its limits known.
            let limits =
                BlkioLimits::from_resources(&recovered.config.resources).unwrap_or_default();
            Ok(Container { cgroup, limits })
        })?;
        self.root
            .remove_containers(orphans.iter().map(ContainerId::as_str), Self::CONTROLLERS)
            .map_err(|e| IsolatorError::Other(format!("blkio: remove orphan cgroups: {e}")))
    }

    fn validate(&self, config: &ContainerConfig) -> Result<(), IsolatorError> {
        self.limits(&config.resources).map(|_| ())
    }

    fn resource_section(&self) -> Option<berth_isolator::ResourceSection> {
        Some(crate::BlkioResources::section())
    }

    /// A weight given replaces the current one; a device listed replaces
    /// that device's entry, the others stay.
    fn merge_resources(
        &self,
        current: &berth_isolator::Section,
        update: &berth_isolator::Section,
    ) -> Result<berth_isolator::Section, IsolatorError> {
        let current = crate::BlkioResources::from_section(current)?;
        let update = crate::BlkioResources::from_section(update)?;
        Ok(current.merged_with(&update).to_section())
    }

    fn oci_resources(
        &self,
        _id: &ContainerId,
        resources: &Resources,
    ) -> Result<Option<Map<String, Value>>, IsolatorError> {
        let limits = BlkioLimits::from_resources(resources)?;
        let mut out = Map::new();
        // No throttle or weight any more still rewrites the key (empty).
        out.insert(
            "blockIO".into(),
            limits
                .block_io()
                .unwrap_or_else(|| Value::Object(Map::new())),
        );
        Ok(Some(out))
    }

    fn early_contribution(
        &self,
        _id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Option<Contribution>, IsolatorError> {
        let limits = self.limits(&config.resources)?;
        Ok(Some(contribution(&limits)))
    }

    fn prepare(
        &self,
        id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Contribution, IsolatorError> {
        let limits = self.limits(&config.resources)?;
        let cgroup = self.root.container(id.as_str())?;
        cgroup.create_all_with(Self::CONTROLLERS, |cgroup| {
            apply(cgroup, &self.weight_files, &BlkioLimits::default(), &limits)
        })?;
        let contribution = contribution(&limits);
        self.containers()
            .insert(id.clone(), Container { cgroup, limits });
        Ok(contribution)
    }

    fn isolate(&self, id: &ContainerId, pid: u32) -> Result<(), IsolatorError> {
        self.cgroup(id)?.add_process(B, pid)?;
        Ok(())
    }

    /// `isolate` only moves the process: where it can, it moves itself.
    fn joinable_cgroups(&self, id: &ContainerId) -> Result<Vec<PathBuf>, IsolatorError> {
        Ok(self.root.container_dirs(id.as_str(), &[B])?)
    }

    /// Applies the container's full resources: weight and throttles are
    /// rewritten, and a throttle no longer listed is reset. An invalid
    /// request is refused before anything is written; a value the kernel
    /// refuses is a refused update, with the old values put back.
    fn update(&self, id: &ContainerId, resources: &Resources) -> Result<(), IsolatorError> {
        let new = self.limits(resources)?;
        let mut state = self.containers();
        let container = state.get_mut(id).ok_or_else(|| unknown(id))?;
        // A weight cannot be taken away, only changed: keep the old one.
        let new = BlkioLimits {
            weight: new.weight.or(container.limits.weight),
            throttles: new.throttles,
        };
        if let Err(e) = apply(
            &container.cgroup,
            &self.weight_files,
            &container.limits,
            &new,
        ) {
            // Best effort: what was written is put back; the kernel may be
            // anywhere between old and new, so rewrite everything old.
            let _ = restore(
                &container.cgroup,
                &self.weight_files,
                &container.limits,
                &new,
            );
            return Err(IsolatorError::Refused {
                message: e.to_string(),
            });
        }
        container.limits = new;
        Ok(())
    }

    fn usage(&self, id: &ContainerId) -> Result<Usage, IsolatorError> {
        let (cgroup, limits) = {
            let state = self.containers();
            let container = state.get(id).ok_or_else(|| unknown(id))?;
            (container.cgroup.clone(), container.limits.clone())
        };
        let mut usage = Usage::new();
        usage.insert(
            "devices".into(),
            stats::devices_json(&stats::read(&cgroup, self.recursive_stats, true)?),
        );
        if let Some(weight) = limits.weight {
            usage.insert("weight".into(), weight.into());
        }
        if !limits.throttles.is_empty() {
            let mut throttles = Map::new();
            for device in limits.throttles.devices() {
                let mut rates = Map::new();
                for throttle in Throttle::ALL {
                    if let Some(rate) = limits.throttles.get(device, throttle) {
                        rates.insert(throttle.key().into(), rate.into());
                    }
                }
                throttles.insert(device.to_string(), Value::Object(rates));
            }
            usage.insert("throttles".into(), Value::Object(throttles));
        }
        Ok(usage)
    }

    /// The bytes per device only (one file on v1): no metric shows the
    /// operations, the weight or the throttles.
    fn scrape(&self, id: &ContainerId) -> Result<Usage, IsolatorError> {
        let cgroup = {
            let state = self.containers();
            state.get(id).ok_or_else(|| unknown(id))?.cgroup.clone()
        };
        let mut usage = Usage::new();
        usage.insert(
            "devices".into(),
            stats::devices_json(&stats::read(&cgroup, self.recursive_stats, false)?),
        );
        Ok(usage)
    }

    fn cleanup(&self, id: &ContainerId) -> Result<(), IsolatorError> {
        self.containers().remove(id);
        // Unknown ids are tolerated, but a cgroup left by an earlier run of
        // the agent under the same name is still removed.
        self.root.remove_container(id.as_str(), Self::CONTROLLERS)?;
        Ok(())
    }
}

/// Puts `old` back after a failed move to `new`: every setting of either
/// is rewritten, as the kernel may hold any mix of the two.
fn restore(
    cgroup: &ContainerCgroup,
    files: &[WeightFile],
    old: &BlkioLimits,
    new: &BlkioLimits,
) -> Result<(), IsolatorError> {
    if let Some(weight) = old.weight {
        apply_weight(cgroup, files, weight)?;
    }
    old.throttles.rewrite(cgroup, &new.throttles)?;
    Ok(())
}
