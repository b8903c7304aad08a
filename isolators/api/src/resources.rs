use serde::{Deserialize, Serialize};

/// The resources a container asks for. Each field is served by one isolator;
/// a field asked for without its isolator is refused by the agent.
///
/// Unknown fields are refused when deserializing, so a typo is a 400, not a
/// silently unlimited container.
///
/// ```
/// use berth_isolator::Resources;
/// let r: Resources = serde_json::from_str(r#"{"cpus": 0.5, "memory": 67108864}"#).unwrap();
/// assert_eq!(r.cpus, Some(0.5));
/// assert!(serde_json::from_str::<Resources>(r#"{"cpu": 1}"#).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPUs (fractional): cpu shares, and a CFS quota. Isolator `cpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory hard limit in bytes. Isolator `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Memory soft limit in bytes (reclaimed down to this under host
    /// pressure). Isolator `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<u64>,
}

impl Resources {
    /// The isolator that serves each field set here, as `(field, isolator)`.
    pub fn requested_isolators(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if self.cpus.is_some() {
            out.push(("resources.cpus", "cpu"));
        }
        if self.memory.is_some() {
            out.push(("resources.memory", "memory"));
        }
        if self.memory_reservation.is_some() {
            out.push(("resources.memory_reservation", "memory"));
        }
        out
    }
}
