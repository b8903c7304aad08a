use serde::{Deserialize, Serialize};

/// The resources a container asks for. Each field is served by one isolator;
/// a field asked for without its isolator is refused by the agent.
///
/// Unknown fields are refused when deserializing, so a typo is a 400, not a
/// silently unlimited container.
///
/// ```
/// use berth_isolator::Resources;
/// let r: Resources = serde_json::from_str(r#"{"cpus": 0.5, "memory": 67108864}"#).unwrap();
/// assert_eq!(r.cpus, Some(0.5));
/// assert!(serde_json::from_str::<Resources>(r#"{"cpu": 1}"#).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPUs (fractional): cpu shares, and a CFS quota. Isolator `cpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory hard limit in bytes. Isolator `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Memory soft limit in bytes (reclaimed down to this under host
    /// pressure). Isolator `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<u64>,
    /// Block I/O weight, 10 to 1000. Isolator `blkio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blkio_weight: Option<u16>,
    /// Per-device read throttle in bytes per second. Isolator `blkio`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_bps: Vec<DeviceLimit>,
    /// Per-device write throttle in bytes per second. Isolator `blkio`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_bps: Vec<DeviceLimit>,
    /// Per-device read throttle in operations per second. Isolator `blkio`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_iops: Vec<DeviceLimit>,
    /// Per-device write throttle in operations per second. Isolator `blkio`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_iops: Vec<DeviceLimit>,
    /// Bytes the container may keep in its sandbox. Isolator `disk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u64>,
    /// A specific net_cls secondary handle (default: any free one).
    /// Isolator `net_cls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_cls_handle: Option<u32>,
    /// Host device nodes passed through to the container (allowed in its
    /// devices cgroup and created in its `/dev`). Isolator `devices`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceMapping>,
    /// The most tasks (processes and threads) the container may have at
    /// once (`pids.max`); `0` asks for no limit, which the agent allows only
    /// when configured to. Default: the agent's `[pids] default_limit`.
    /// Isolator `pids`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
}

/// A host device node passed through to a container, as Docker's
/// `--device HOST[:CONTAINER][:rwm]`.
///
/// ```
/// use berth_isolator::DeviceMapping;
/// let d: DeviceMapping = serde_json::from_str(r#"{"host": "/dev/kvm", "access": "rw"}"#).unwrap();
/// assert_eq!(d.container_path(), "/dev/kvm");
/// assert_eq!(d.access(), "rw");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceMapping {
    /// The device node on the host (`/dev/kvm`).
    pub host: String,
    /// Where it appears in the container; default: the host path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// What the container may do with it, a subset of `rwm` (read, write,
    /// mknod); default `rwm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
}

impl DeviceMapping {
    /// Where the device appears in the container.
    pub fn container_path(&self) -> &str {
        self.container.as_deref().unwrap_or(&self.host)
    }

    /// The access granted (`rwm` unless given).
    pub fn access(&self) -> &str {
        self.access.as_deref().unwrap_or("rwm")
    }
}

/// A limit on one block device.
///
/// ```
/// use berth_isolator::DeviceLimit;
/// let limit: DeviceLimit = serde_json::from_str(r#"{"device": "/dev/vda", "rate": 5242880}"#).unwrap();
/// assert_eq!(limit.rate, 5 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceLimit {
    /// A block device path (`/dev/vda`) or `MAJOR:MINOR`.
    pub device: String,
    /// Bytes or operations per second.
    pub rate: u64,
}

impl Resources {
    /// The isolator that serves each field set here, as `(field, isolator)`.
    pub fn requested_isolators(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        let mut want = |set: bool, field: &'static str, isolator: &'static str| {
            if set {
                out.push((field, isolator));
            }
        };
        want(self.cpus.is_some(), "resources.cpus", "cpu");
        want(self.memory.is_some(), "resources.memory", "memory");
        want(
            self.memory_reservation.is_some(),
            "resources.memory_reservation",
            "memory",
        );
        want(
            self.blkio_weight.is_some(),
            "resources.blkio_weight",
            "blkio",
        );
        want(
            !self.device_read_bps.is_empty(),
            "resources.device_read_bps",
            "blkio",
        );
        want(
            !self.device_write_bps.is_empty(),
            "resources.device_write_bps",
            "blkio",
        );
        want(
            !self.device_read_iops.is_empty(),
            "resources.device_read_iops",
            "blkio",
        );
        want(
            !self.device_write_iops.is_empty(),
            "resources.device_write_iops",
            "blkio",
        );
        want(self.disk.is_some(), "resources.disk", "disk");
        want(
            self.net_cls_handle.is_some(),
            "resources.net_cls_handle",
            "net_cls",
        );
        want(!self.devices.is_empty(), "resources.devices", "devices");
        want(self.pids_limit.is_some(), "resources.pids_limit", "pids");
        out
    }

    /// Applies a live update: every field set in `update` replaces the
    /// current one; fields left unset keep their value.
    pub fn merged_with(&self, update: &Resources) -> Resources {
        fn pick<T: Clone>(new: &Option<T>, old: &Option<T>) -> Option<T> {
            new.clone().or_else(|| old.clone())
        }
        fn pick_list(new: &[DeviceLimit], old: &[DeviceLimit]) -> Vec<DeviceLimit> {
            let mut merged: Vec<DeviceLimit> = old
                .iter()
                .filter(|o| !new.iter().any(|n| n.device == o.device))
                .cloned()
                .collect();
            merged.extend(new.iter().cloned());
            merged
        }
        Resources {
            cpus: pick(&update.cpus, &self.cpus),
            memory: pick(&update.memory, &self.memory),
            memory_reservation: pick(&update.memory_reservation, &self.memory_reservation),
            blkio_weight: pick(&update.blkio_weight, &self.blkio_weight),
            device_read_bps: pick_list(&update.device_read_bps, &self.device_read_bps),
            device_write_bps: pick_list(&update.device_write_bps, &self.device_write_bps),
            device_read_iops: pick_list(&update.device_read_iops, &self.device_read_iops),
            device_write_iops: pick_list(&update.device_write_iops, &self.device_write_iops),
            disk: pick(&update.disk, &self.disk),
            net_cls_handle: pick(&update.net_cls_handle, &self.net_cls_handle),
            devices: if update.devices.is_empty() {
                self.devices.clone()
            } else {
                update.devices.clone()
            },
            pids_limit: pick(&update.pids_limit, &self.pids_limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_replaces_set_fields_and_per_device_entries() {
        let limit = |device: &str, rate| DeviceLimit {
            device: device.into(),
            rate,
        };
        let current = Resources {
            cpus: Some(0.2),
            memory: Some(64 << 20),
            device_write_bps: vec![limit("8:0", 1), limit("8:16", 2)],
            ..Default::default()
        };
        let update = Resources {
            cpus: Some(0.8),
            device_write_bps: vec![limit("8:0", 5)],
            ..Default::default()
        };
        let merged = current.merged_with(&update);
        assert_eq!(merged.cpus, Some(0.8));
        assert_eq!(merged.memory, Some(64 << 20));
        assert_eq!(
            merged.device_write_bps,
            vec![limit("8:16", 2), limit("8:0", 5)]
        );
    }
}
