//! The blkio isolator's section of a container's resources.

use berth_isolator::TypedSection;
use serde::{Deserialize, Serialize};

/// `{"blkio": {"blkio_weight": 500, "device_write_bps": [...]}}`, or flat
/// in a `/v1` request: `{"blkio_weight": 500, "device_write_bps": [...]}`.
///
/// ```
/// use berth_isolator::TypedSection;
/// use berth_isolator_blkio::{BlkioResources, DeviceLimit};
/// let current = BlkioResources { blkio_weight: Some(100), ..Default::default() };
/// let update = BlkioResources {
///     device_write_bps: vec![DeviceLimit { device: "8:0".into(), rate: 1 << 20 }],
///     ..Default::default()
/// };
/// let merged = current.merged_with(&update);
/// assert_eq!(merged.blkio_weight, Some(100));
/// assert_eq!(merged.device_write_bps.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlkioResources {
    /// Block I/O weight, 10 to 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blkio_weight: Option<u16>,
    /// Per-device read throttle in bytes per second.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_bps: Vec<DeviceLimit>,
    /// Per-device write throttle in bytes per second.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_bps: Vec<DeviceLimit>,
    /// Per-device read throttle in operations per second.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_iops: Vec<DeviceLimit>,
    /// Per-device write throttle in operations per second.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_iops: Vec<DeviceLimit>,
}

/// A limit on one block device.
///
/// ```
/// use berth_isolator_blkio::DeviceLimit;
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

impl TypedSection for BlkioResources {
    const SECTION: &'static str = "blkio";
    const FLAT_KEYS: &'static [&'static str] = &[
        "blkio_weight",
        "device_read_bps",
        "device_write_bps",
        "device_read_iops",
        "device_write_iops",
    ];
}

impl BlkioResources {
    /// Applies a live update: a weight given replaces the current one; a
    /// device listed replaces that device's entry (keyed by the words
    /// given), others stay.
    pub fn merged_with(&self, update: &BlkioResources) -> BlkioResources {
        fn pick_list(new: &[DeviceLimit], old: &[DeviceLimit]) -> Vec<DeviceLimit> {
            let mut merged: Vec<DeviceLimit> = old
                .iter()
                .filter(|o| !new.iter().any(|n| n.device == o.device))
                .cloned()
                .collect();
            merged.extend(new.iter().cloned());
            merged
        }
        BlkioResources {
            blkio_weight: update.blkio_weight.or(self.blkio_weight),
            device_read_bps: pick_list(&update.device_read_bps, &self.device_read_bps),
            device_write_bps: pick_list(&update.device_write_bps, &self.device_write_bps),
            device_read_iops: pick_list(&update.device_read_iops, &self.device_read_iops),
            device_write_iops: pick_list(&update.device_write_iops, &self.device_write_iops),
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
        let current = BlkioResources {
            blkio_weight: Some(200),
            device_write_bps: vec![limit("8:0", 1), limit("8:16", 2)],
            ..Default::default()
        };
        let update = BlkioResources {
            device_write_bps: vec![limit("8:0", 5)],
            ..Default::default()
        };
        let merged = current.merged_with(&update);
        assert_eq!(merged.blkio_weight, Some(200));
        assert_eq!(
            merged.device_write_bps,
            vec![limit("8:16", 2), limit("8:0", 5)]
        );
    }
}
