//! The memory isolator's section of a container's resources.

use berth_isolator::TypedSection;
use serde::{Deserialize, Serialize};

/// `{"memory": {"memory": 67108864, "memory_reservation": 33554432}}`, or
/// flat in a `/v1` request: `{"memory": 67108864, "memory_reservation": ...}`.
///
/// ```
/// use berth_isolator::TypedSection;
/// use berth_isolator_memory::MemoryResources;
/// let r = MemoryResources { memory: Some(64 << 20), ..Default::default() }.into_resources();
/// assert_eq!(MemoryResources::of(&r).unwrap().memory, Some(64 << 20));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryResources {
    /// Memory hard limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Memory soft limit in bytes (reclaimed down to this under host
    /// pressure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<u64>,
}

impl TypedSection for MemoryResources {
    const SECTION: &'static str = "memory";
    const FLAT_KEYS: &'static [&'static str] = &["memory", "memory_reservation"];
}
