//! The disk isolator's section of a container's resources.

use berth_isolator::TypedSection;
use serde::{Deserialize, Serialize};

/// `{"disk": {"disk": 1073741824}}`, or flat in a `/v1` request:
/// `{"disk": 1073741824}`.
///
/// ```
/// use berth_isolator::TypedSection;
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

impl TypedSection for DiskResources {
    const SECTION: &'static str = "disk";
    const FLAT_KEYS: &'static [&'static str] = &["disk"];
}
