//! The cpu isolator's section of a container's resources.

use berth_isolator::TypedSection;
use serde::{Deserialize, Serialize};

/// `{"cpu": {"cpus": 0.5}}`, or flat in a `/v1` request: `{"cpus": 0.5}`.
///
/// ```
/// use berth_isolator::TypedSection;
/// use berth_isolator_cpu::CpuResources;
/// let r = CpuResources { cpus: Some(0.5) }.into_resources();
/// assert_eq!(CpuResources::of(&r).unwrap().cpus, Some(0.5));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuResources {
    /// CPUs (fractional): cpu shares, and a CFS quota.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "null_is_not_a_number"
    )]
    pub cpus: Option<f64>,
}

/// A typed section keeps a non-finite `cpus` (which JSON writes as
/// `null`; a request's `null` never gets here) so that validation refuses
/// it instead of reading "no limit".
fn null_is_not_a_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(Some(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN)))
}

impl TypedSection for CpuResources {
    const SECTION: &'static str = "cpu";
    const FLAT_KEYS: &'static [&'static str] = &["cpus"];
}
