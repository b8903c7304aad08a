//! Bodies of the control requests: kill, stop and restart.

use serde::{Deserialize, Serialize};

/// `POST /v1/containers/{id}/kill` (an empty body: the default signal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillRequest {
    /// A name (`TERM`, `SIGTERM`) or a number; default `KILL`.
    #[serde(default = "default_signal")]
    pub signal: String,
}

impl Default for KillRequest {
    fn default() -> Self {
        KillRequest {
            signal: default_signal(),
        }
    }
}

fn default_signal() -> String {
    "KILL".into()
}

/// `POST /v1/containers/{id}/stop` and `.../restart` (an empty body: the
/// default grace period).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    /// Seconds between SIGTERM and SIGKILL.
    #[serde(default = "default_stop_timeout")]
    pub timeout: f64,
}

impl Default for StopRequest {
    fn default() -> Self {
        StopRequest {
            timeout: default_stop_timeout(),
        }
    }
}

fn default_stop_timeout() -> f64 {
    10.0
}

/// The longest grace period a stop accepts: a day.
pub const MAX_STOP_TIMEOUT: f64 = 86_400.0;
