//! The answer of `GET /v1/containers/{id}/stats`.

use serde::{Deserialize, Serialize};

/// One container's usage as its isolators (and volumes) report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub id: String,
    /// When it was read, RFC 3339 with nanoseconds.
    pub read_at: String,
    /// Each isolator's usage keys, by isolator name.
    pub isolators: serde_json::Map<String, serde_json::Value>,
    /// Each mounted named volume's usage, when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<serde_json::Value>,
}
