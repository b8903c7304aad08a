//! Bodies and answers of the volume endpoints (`/v1/volumes/...`).

use serde::{Deserialize, Serialize};

pub use crate::volumes::Volume;

/// `POST /v1/volumes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVolume {
    pub name: String,
    /// Bytes; absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default)]
    pub shared: bool,
}

/// The answer of `POST /v1/volumes/prune`: the volumes removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumesPruned {
    pub removed: Vec<String>,
}
