//! Per-device throttles: bytes and operations per second, read and write.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use berth_cgroups::{CgroupError, CgroupMode, ContainerCgroup, Controller};
use berth_isolator::IsolatorError;

use crate::{BlkioResources, DeviceLimit};

use crate::device::{self, DeviceNumber};

/// One of the four per-device throttles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Throttle {
    /// Read bytes per second (`resources.device_read_bps`).
    ReadBps,
    /// Written bytes per second (`resources.device_write_bps`).
    WriteBps,
    /// Read operations per second (`resources.device_read_iops`).
    ReadIops,
    /// Write operations per second (`resources.device_write_iops`).
    WriteIops,
}

impl Throttle {
    /// All four, in the order of the v2 `io.max` keys.
    pub const ALL: [Throttle; 4] = [
        Throttle::ReadBps,
        Throttle::WriteBps,
        Throttle::ReadIops,
        Throttle::WriteIops,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The request field (`resources.device_write_bps`).
    pub fn field(self) -> &'static str {
        match self {
            Throttle::ReadBps => "resources.device_read_bps",
            Throttle::WriteBps => "resources.device_write_bps",
            Throttle::ReadIops => "resources.device_read_iops",
            Throttle::WriteIops => "resources.device_write_iops",
        }
    }

    /// The short name used in usage reports (`write_bps`).
    pub fn key(self) -> &'static str {
        match self {
            Throttle::ReadBps => "read_bps",
            Throttle::WriteBps => "write_bps",
            Throttle::ReadIops => "read_iops",
            Throttle::WriteIops => "write_iops",
        }
    }

    /// The cgroup v1 file (`blkio.throttle.write_bps_device`).
    pub fn v1_file(self) -> &'static str {
        match self {
            Throttle::ReadBps => "blkio.throttle.read_bps_device",
            Throttle::WriteBps => "blkio.throttle.write_bps_device",
            Throttle::ReadIops => "blkio.throttle.read_iops_device",
            Throttle::WriteIops => "blkio.throttle.write_iops_device",
        }
    }

    /// The key in the cgroup v2 `io.max` line (`wbps`).
    pub fn v2_key(self) -> &'static str {
        match self {
            Throttle::ReadBps => "rbps",
            Throttle::WriteBps => "wbps",
            Throttle::ReadIops => "riops",
            Throttle::WriteIops => "wiops",
        }
    }

    /// The runtime-spec `linux.resources.blockIO` member
    /// (`throttleWriteBpsDevice`).
    pub fn spec_name(self) -> &'static str {
        match self {
            Throttle::ReadBps => "throttleReadBpsDevice",
            Throttle::WriteBps => "throttleWriteBpsDevice",
            Throttle::ReadIops => "throttleReadIOPSDevice",
            Throttle::WriteIops => "throttleWriteIOPSDevice",
        }
    }

    /// The request's list for this throttle.
    pub fn limits(self, resources: &BlkioResources) -> &[DeviceLimit] {
        match self {
            Throttle::ReadBps => &resources.device_read_bps,
            Throttle::WriteBps => &resources.device_write_bps,
            Throttle::ReadIops => &resources.device_read_iops,
            Throttle::WriteIops => &resources.device_write_iops,
        }
    }
}

/// The throttles of a container, by device number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Throttles {
    rates: BTreeMap<DeviceNumber, [Option<u64>; 4]>,
}

impl Throttles {
    /// Checks and resolves the four device lists of `resources`: every
    /// device must be a whole-disk block device and every rate above 0.
    /// Errors name the field and the device.
    ///
    /// A list naming the same device twice in the same words is refused.
    /// Named in different words (`/dev/vda`, `254:0`), the later entry wins:
    /// that is what a live update looks like, as
    /// [`BlkioResources::merged_with`] keys entries by the words and appends
    /// the new ones.
    pub fn from_section(resources: &BlkioResources) -> Result<Self, IsolatorError> {
        let mut throttles = Throttles::default();
        for throttle in Throttle::ALL {
            let field = throttle.field();
            let mut seen: HashMap<DeviceNumber, &str> = HashMap::new();
            for limit in throttle.limits(resources) {
                if limit.rate == 0 {
                    return Err(IsolatorError::invalid(
                        field,
                        format!(
                            "rate for {} must be above 0 (leave the device out for no limit)",
                            limit.device
                        ),
                    ));
                }
                let number = device::resolve(&limit.device)
                    .map_err(|e| IsolatorError::invalid(field, e.to_string()))?;
                if seen.insert(number, &limit.device) == Some(&limit.device) {
                    return Err(IsolatorError::invalid(
                        field,
                        format!("device {} is listed twice", limit.device),
                    ));
                }
                throttles.set(number, throttle, limit.rate);
            }
        }
        Ok(throttles)
    }

    /// Sets one rate.
    pub fn set(&mut self, device: DeviceNumber, throttle: Throttle, rate: u64) {
        self.rates.entry(device).or_default()[throttle.index()] = Some(rate);
    }

    /// One rate, if set.
    pub fn get(&self, device: DeviceNumber, throttle: Throttle) -> Option<u64> {
        self.rates.get(&device)?[throttle.index()]
    }

    /// Whether no throttle is set.
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    /// The devices with at least one throttle.
    pub fn devices(&self) -> impl Iterator<Item = DeviceNumber> + '_ {
        self.rates.keys().copied()
    }

    /// The rates of one throttle, by device.
    pub fn of(&self, throttle: Throttle) -> Vec<(DeviceNumber, u64)> {
        self.rates
            .iter()
            .filter_map(|(d, r)| Some((*d, r[throttle.index()]?)))
            .collect()
    }

    /// Writes what changed from `old` (what the kernel has) to `self`; a
    /// throttle in `old` but not in `self` is reset (v1 `MAJ:MIN 0`, v2
    /// `max`).
    pub(crate) fn apply(
        &self,
        cgroup: &ContainerCgroup,
        old: &Throttles,
    ) -> Result<(), CgroupError> {
        self.write(cgroup, old, false)
    }

    /// Like [`Throttles::apply`], but writes every throttle of either set,
    /// changed or not: for putting `self` back when the kernel may hold
    /// any mix of `self` and `old`.
    pub(crate) fn rewrite(
        &self,
        cgroup: &ContainerCgroup,
        old: &Throttles,
    ) -> Result<(), CgroupError> {
        self.write(cgroup, old, true)
    }

    fn write(
        &self,
        cgroup: &ContainerCgroup,
        old: &Throttles,
        all: bool,
    ) -> Result<(), CgroupError> {
        const B: Controller = Controller::Blkio;
        let devices: BTreeSet<DeviceNumber> = self.devices().chain(old.devices()).collect();
        match cgroup.mode() {
            CgroupMode::V1 => {
                for throttle in Throttle::ALL {
                    for device in &devices {
                        let (new, was) = (self.get(*device, throttle), old.get(*device, throttle));
                        if (new == was && !all) || (new.is_none() && was.is_none()) {
                            continue;
                        }
                        // 0 removes the device's rule.
                        let value = format!("{device} {}", new.unwrap_or(0));
                        cgroup.write(B, throttle.v1_file(), &value)?;
                    }
                }
            }
            CgroupMode::V2 => {
                for device in &devices {
                    let (new, was) = (self.rates.get(device), old.rates.get(device));
                    if new == was && !all {
                        continue;
                    }
                    // All four keys every time: a key left out keeps its old
                    // value in the kernel.
                    let mut line = device.to_string();
                    for throttle in Throttle::ALL {
                        match new.and_then(|r| r[throttle.index()]) {
                            Some(rate) => line.push_str(&format!(" {}={rate}", throttle.v2_key())),
                            None => line.push_str(&format!(" {}=max", throttle.v2_key())),
                        }
                    }
                    cgroup.write(B, "io.max", &line)?;
                }
            }
        }
        Ok(())
    }
}
