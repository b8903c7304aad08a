//! The devices isolator's section of a container's resources.

use berth_isolator::TypedSection;
use serde::{Deserialize, Serialize};

/// `{"devices": {"devices": [{"host": "/dev/null"}]}}`, or flat in a `/v1` request:
/// `{"devices": [{"host": "/dev/null"}]}`.
///
/// ```
/// use berth_isolator::TypedSection;
/// use berth_isolator_devices::DevicesResources;
/// let r: berth_isolator::Resources = serde_json::from_str(r#"{"devices": {"devices": [{"host": "/dev/null"}]}}"#).unwrap();
/// assert!(DevicesResources::of(&r).is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesResources {
    /// Host device nodes passed through to the container (allowed in its
    /// devices cgroup and created in its `/dev`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceMapping>,
}

impl TypedSection for DevicesResources {
    const SECTION: &'static str = "devices";
    const FLAT_KEYS: &'static [&'static str] = &["devices"];
}

/// A host device node passed through to a container, as Docker's
/// `--device HOST[:CONTAINER][:rwm]`.
///
/// ```
/// use berth_isolator_devices::DeviceMapping;
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
