//! A container's blkio settings as a whole: checked from a request, and
//! described in the runtime spec's terms.

use berth_isolator::TypedSection;
use berth_isolator::{IsolatorError, Resources};
use serde_json::{json, Map, Value};

use crate::throttle::{Throttle, Throttles};
use crate::weight::validate_weight;

/// The weight and throttles of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioLimits {
    /// The proportional weight, 10..1000 (`resources.blkio_weight`).
    pub weight: Option<u16>,
    /// The per-device throttles.
    pub throttles: Throttles,
}

impl BlkioLimits {
    /// Checks the blkio fields of `resources` (reading the filesystem and
    /// sysfs to resolve devices, changing nothing).
    pub fn from_resources(resources: &Resources) -> Result<Self, IsolatorError> {
        let section = crate::BlkioResources::of(resources)?;
        if let Some(weight) = section.blkio_weight {
            validate_weight(weight)?;
        }
        Ok(BlkioLimits {
            weight: section.blkio_weight,
            throttles: Throttles::from_section(&section)?,
        })
    }

    /// The runtime-spec `linux.resources.blockIO` object, `None` when
    /// nothing is set.
    pub fn block_io(&self) -> Option<Value> {
        let mut block_io = Map::new();
        if let Some(weight) = self.weight {
            block_io.insert("weight".into(), weight.into());
        }
        for throttle in Throttle::ALL {
            let devices: Vec<Value> = self
                .throttles
                .of(throttle)
                .into_iter()
                .map(|(d, rate)| json!({"major": d.major, "minor": d.minor, "rate": rate}))
                .collect();
            if !devices.is_empty() {
                block_io.insert(throttle.spec_name().into(), Value::Array(devices));
            }
        }
        (!block_io.is_empty()).then_some(Value::Object(block_io))
    }
}
