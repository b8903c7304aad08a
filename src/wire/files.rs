//! The answer of `GET /v1/containers/{id}/files`.

use serde::{Deserialize, Serialize};

/// A directory entry as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    #[serde(rename = "type")]
    pub kind: String,
    pub size: u64,
    /// Permission bits in octal, e.g. `0644`.
    pub mode: String,
    /// RFC 3339, UTC.
    pub mtime: String,
}
