//! The answers of `POST /v1/containers/{id}/exec`.

use serde::{Deserialize, Serialize};

/// How an exec ended, as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecResult {
    /// The exec's id, naming its directory in the container's state dir.
    pub id: String,
    /// The command's code, or 128 + n when signal n ended it; 127 when it
    /// was not found, 126 when it could not be started.
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Why the command could not be started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: String,
}

/// The answer to an attached exec's `POST .../exec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecCreated {
    pub id: String,
    /// Where to attach (a WebSocket, `v5.channel.k8s.io`); the exec starts
    /// then.
    pub attach: String,
}
