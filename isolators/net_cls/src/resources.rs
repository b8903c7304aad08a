//! The net_cls isolator's section of a container's resources.

use berth_isolator::{IsolatorError, ResourceSection, Resources};
use serde::{Deserialize, Serialize};

/// `{"net_cls": {"net_cls_handle": 66}}`, or flat in a `/v1` request:
/// `{"net_cls_handle": 66}`.
///
/// ```
/// use berth_isolator_net_cls::NetClsResources;
/// let r: berth_isolator::Resources = serde_json::from_str(r#"{"net_cls": {"net_cls_handle": 66}}"#).unwrap();
/// assert!(NetClsResources::of(&r).is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetClsResources {
    /// A specific net_cls secondary handle (default: any free one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_cls_handle: Option<u32>,
}

impl NetClsResources {
    /// The section's name.
    pub const SECTION: &'static str = "net_cls";

    /// The section as the isolator declares it.
    pub fn section() -> ResourceSection {
        ResourceSection::new(Self::SECTION).with_flat_keys(&["net_cls_handle"])
    }

    /// The net_cls section of `resources`.
    pub fn of(resources: &Resources) -> Result<Self, IsolatorError> {
        resources.section(Self::SECTION)
    }

    /// Resources with only this section.
    pub fn into_resources(self) -> Resources {
        Resources::with_section(Self::SECTION, &self)
    }
}
