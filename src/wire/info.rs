//! The answer of `GET /v1/info`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What the agent is and offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    pub version: String,
    /// `v1`, `v2` or `hybrid`.
    pub cgroup_mode: String,
    /// In the order they are applied.
    pub isolators: Vec<IsolatorInfo>,
    pub work_dir: PathBuf,
    pub runtime_dir: PathBuf,
    /// The user namespace ranges, or why there are none (the userns
    /// module's description).
    pub userns: serde_json::Value,
}

/// One isolator: its name and what it says of itself (its own keys, the
/// open resource contract, decision 0037), with the resource section it
/// owns among them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolatorInfo {
    pub name: String,
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}
