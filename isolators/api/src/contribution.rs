use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What [`crate::Isolator::prepare`] adds to a container's launch.
///
/// The agent merges the contributions of all isolators into the OCI bundle.
/// Two isolators setting the same thing differently is a
/// [`ContributionConflict`], and the launch fails cleanly.
///
/// ```
/// use berth_isolator::Contribution;
/// use serde_json::json;
///
/// let mut cpu = Contribution::default();
/// cpu.linux_resources.insert("cpu".into(), json!({"shares": 512}));
/// let mut memory = Contribution::default();
/// memory.linux_resources.insert("memory".into(), json!({"limit": 67108864}));
///
/// let mut launch = Contribution::default();
/// launch.merge(cpu, "cpu").unwrap();
/// launch.merge(memory, "memory").unwrap();
/// assert_eq!(launch.linux_resources["cpu"]["shares"], 512);
///
/// let mut rogue = Contribution::default();
/// rogue.linux_resources.insert("cpu".into(), json!({"shares": 2}));
/// assert!(launch.merge(rogue, "rogue").is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contribution {
    /// A fragment of the runtime-spec `linux.resources` object, in its JSON
    /// form (`{"cpu": {"shares": 1024, "quota": 50000, "period": 100000}}`).
    /// berth's own shim does not apply it (the isolators already did); it is
    /// written so the bundle stays complete for any OCI runtime.
    #[serde(default)]
    pub linux_resources: Map<String, Value>,
    /// Extra mounts for the container.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Device nodes to create in the container's `/dev` (the runtime-spec
    /// `linux.devices`).
    #[serde(default)]
    pub devices: Vec<DeviceNode>,
}

/// A device node created in the container, as a runtime-spec
/// `linux.devices` entry (same JSON field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceNode {
    /// The path inside the container (`/dev/kvm`).
    pub path: String,
    /// `c` (character) or `b` (block).
    #[serde(rename = "type")]
    pub kind: String,
    /// The device's major number.
    pub major: i64,
    /// The device's minor number.
    pub minor: i64,
    /// The node's permission bits (`0o666`).
    pub file_mode: u32,
    /// The node's owner.
    pub uid: u32,
    /// The node's group.
    pub gid: u32,
}

/// A mount, as in the runtime spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Where it is mounted inside the container.
    pub destination: String,
    /// The host path or device (ignored for pseudo filesystems).
    pub source: String,
    /// The filesystem type (`bind`, `tmpfs`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Mount options as in the runtime spec (`rbind`, `ro`, `nosuid`, ...).
    #[serde(default)]
    pub options: Vec<String>,
}

/// Two isolators contributed the same thing differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("isolator {isolator} conflicts with an earlier isolator on {what}")]
pub struct ContributionConflict {
    /// The isolator whose contribution was refused.
    pub isolator: String,
    /// What both set: `linux.resources.cpu.shares`, `env FOO`, `mount /data`.
    pub what: String,
}

impl Contribution {
    /// Merges `other`, from isolator `isolator`, into `self`. On conflict
    /// `self` is left unchanged.
    pub fn merge(
        &mut self,
        other: Contribution,
        isolator: &str,
    ) -> Result<(), ContributionConflict> {
        let conflict = |what: String| ContributionConflict {
            isolator: isolator.to_string(),
            what,
        };
        let mut resources = self.linux_resources.clone();
        merge_objects(&mut resources, other.linux_resources, "linux.resources")
            .map_err(conflict)?;
        for (key, value) in &other.env {
            if self.env.get(key).is_some_and(|v| v != value) {
                return Err(conflict(format!("env {key}")));
            }
        }
        for device in &other.devices {
            if self.devices.iter().any(|d| d.path == device.path) {
                return Err(conflict(format!("device {}", device.path)));
            }
        }
        for mount in &other.mounts {
            if self
                .mounts
                .iter()
                .any(|m| m.destination == mount.destination)
            {
                return Err(conflict(format!("mount {}", mount.destination)));
            }
        }
        self.linux_resources = resources;
        self.env.extend(other.env);
        self.mounts.extend(other.mounts);
        self.devices.extend(other.devices);
        Ok(())
    }
}

fn merge_objects(
    into: &mut Map<String, Value>,
    from: Map<String, Value>,
    at: &str,
) -> Result<(), String> {
    for (key, value) in from {
        let here = format!("{at}.{key}");
        match (into.get_mut(&key), value) {
            (None, value) => {
                into.insert(key, value);
            }
            (Some(Value::Object(existing)), Value::Object(more)) => {
                merge_objects(existing, more, &here)?
            }
            (Some(existing), value) if *existing == value => {}
            _ => return Err(here),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_resources(value: Value) -> Contribution {
        Contribution {
            linux_resources: value.as_object().unwrap().clone(),
            ..Default::default()
        }
    }

    #[test]
    fn disjoint_keys_in_one_object_merge() {
        let mut a = with_resources(json!({"cpu": {"shares": 2}}));
        a.merge(with_resources(json!({"cpu": {"cpus": "0-1"}})), "cpuset")
            .unwrap();
        assert_eq!(
            a.linux_resources["cpu"],
            json!({"shares": 2, "cpus": "0-1"})
        );
    }

    #[test]
    fn conflicting_leaf_names_the_path_and_changes_nothing() {
        let mut a = with_resources(json!({"cpu": {"shares": 2}}));
        a.env.insert("A".into(), "1".into());
        let before = a.clone();
        let mut b = with_resources(json!({"cpu": {"shares": 3}}));
        b.env.insert("B".into(), "2".into());
        let err = a.merge(b, "other").unwrap_err();
        assert_eq!(err.what, "linux.resources.cpu.shares");
        assert_eq!(a, before);
    }

    #[test]
    fn env_and_mount_conflicts_are_refused() {
        let mut a = Contribution::default();
        a.env.insert("A".into(), "1".into());
        a.mounts.push(Mount {
            destination: "/data".into(),
            source: "/srv".into(),
            kind: "bind".into(),
            options: vec![],
        });
        let mut same_env = Contribution::default();
        same_env.env.insert("A".into(), "1".into());
        a.merge(same_env, "twin").unwrap();
        let mut other_env = Contribution::default();
        other_env.env.insert("A".into(), "2".into());
        assert_eq!(a.merge(other_env, "x").unwrap_err().what, "env A");
        let mut mount = Contribution::default();
        mount.mounts.push(a.mounts[0].clone());
        assert_eq!(a.merge(mount, "y").unwrap_err().what, "mount /data");
    }
}
