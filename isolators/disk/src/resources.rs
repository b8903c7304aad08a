//! The disk isolator's section of a container's resources.

use berth_isolator::{IsolatorError, ResourceSection, Resources};
use serde::{Deserialize, Serialize};

/// `{"disk": {"disk": 1073741824}}`, or flat in a `/v1` request:
/// `{"disk": 1073741824}`.
///
/// ```
/// use berth_isolator_disk::DiskResources;
/// let r: berth_isolator::Resources = serde_json::from_str(r#"{"disk": {"disk": 1073741824}}"#).unwrap();
/// assert!(DiskResources::of(&r).is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskResources {
    /// Bytes the container may keep in its sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u64>,
}

impl DiskResources {
    /// The section's name.
    pub const SECTION: &'static str = "disk";

    /// The section as the isolator declares it.
    pub fn section() -> ResourceSection {
        ResourceSection::new(Self::SECTION).with_flat_keys(&["disk"])
    }

    /// The disk section of `resources`.
    pub fn of(resources: &Resources) -> Result<Self, IsolatorError> {
        resources.section(Self::SECTION)
    }

    /// Resources with only this section.
    pub fn into_resources(self) -> Resources {
        Resources::with_section(Self::SECTION, &self)
    }
}
