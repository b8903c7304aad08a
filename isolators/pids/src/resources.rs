//! The pids isolator's section of a container's resources.

use berth_isolator::TypedSection;
use serde::{Deserialize, Serialize};

/// `{"pids": {"pids_limit": 100}}`, or flat in a `/v1` request:
/// `{"pids_limit": 100}`.
///
/// ```
/// use berth_isolator::TypedSection;
/// use berth_isolator_pids::PidsResources;
/// let r: berth_isolator::Resources = serde_json::from_str(r#"{"pids": {"pids_limit": 100}}"#).unwrap();
/// assert!(PidsResources::of(&r).is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PidsResources {
    /// The most tasks (processes and threads) the container may have at
    /// once (`pids.max`); `0` asks for no limit, which the agent allows only
    /// when configured to. Default: the agent's `[pids] default_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
}

impl TypedSection for PidsResources {
    const SECTION: &'static str = "pids";
    const FLAT_KEYS: &'static [&'static str] = &["pids_limit"];
}
