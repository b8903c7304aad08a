//! The answer of `POST /v1/gc`.

use serde::{Deserialize, Serialize};

/// What one collection did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GcReport {
    /// The work dir's disk usage, 0 to 1.
    pub disk_usage: f64,
    /// How long an ended container's sandbox was allowed to stay.
    pub max_age_seconds: f64,
    pub removed: Vec<GcRemoved>,
}

/// A container whose sandbox was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GcRemoved {
    pub id: String,
    pub finished_at: Option<crate::timestamp::Timestamp>,
    pub age_seconds: f64,
}
