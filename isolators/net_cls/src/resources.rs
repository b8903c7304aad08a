//! The net_cls isolator's section of a container's resources.

use berth_isolator::TypedSection;
use serde::{Deserialize, Serialize};

/// `{"net_cls": {"net_cls_handle": 66}}`, or flat in a `/v1` request:
/// `{"net_cls_handle": 66}`.
///
/// ```
/// use berth_isolator::TypedSection;
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

impl TypedSection for NetClsResources {
    const SECTION: &'static str = "net_cls";
    const FLAT_KEYS: &'static [&'static str] = &["net_cls_handle"];
}
