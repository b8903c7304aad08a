//! The memory values a container asks for, and how they are checked.

pub use berth_cgroups::format_bytes;
use berth_isolator::TypedSection;
use berth_isolator::{IsolatorError, Resources};

/// The smallest hard limit: below this a container cannot even start.
pub const MIN_LIMIT: u64 = 4 << 20;
/// The largest limit or reservation (1 PiB): more is a typo, not a machine.
pub const MAX_LIMIT: u64 = 1 << 50;

const LIMIT_FIELD: &str = "resources.memory";
const RESERVATION_FIELD: &str = "resources.memory_reservation";

/// A container's memory hard limit and soft limit, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryLimits {
    /// The hard limit (`resources.memory`).
    pub limit: Option<u64>,
    /// The soft limit (`resources.memory_reservation`).
    pub reservation: Option<u64>,
}

impl MemoryLimits {
    /// Checks the memory fields of `resources`; on success they are the limits.
    pub fn from_resources(resources: &Resources) -> Result<Self, IsolatorError> {
        let section = crate::MemoryResources::of(resources)?;
        let limits = MemoryLimits {
            limit: section.memory,
            reservation: section.memory_reservation,
        };
        limits.validate()?;
        Ok(limits)
    }

    /// `self` with the fields `update` sets replaced: a field an update
    /// leaves out keeps its value.
    pub fn updated(&self, update: &MemoryLimits) -> MemoryLimits {
        MemoryLimits {
            limit: update.limit.or(self.limit),
            reservation: update.reservation.or(self.reservation),
        }
    }

    /// Checks the ranges, and that the soft limit is not above the hard one.
    pub fn validate(&self) -> Result<(), IsolatorError> {
        if let Some(limit) = self.limit {
            if limit < MIN_LIMIT {
                return Err(IsolatorError::invalid(
                    LIMIT_FIELD,
                    format!("must be at least {MIN_LIMIT} bytes (4 MiB), got {limit}"),
                ));
            }
            if limit > MAX_LIMIT {
                return Err(IsolatorError::invalid(
                    LIMIT_FIELD,
                    format!("must be at most {MAX_LIMIT} bytes (1 PiB), got {limit}"),
                ));
            }
        }
        if let Some(reservation) = self.reservation {
            if reservation > MAX_LIMIT {
                return Err(IsolatorError::invalid(
                    RESERVATION_FIELD,
                    format!("must be at most {MAX_LIMIT} bytes (1 PiB), got {reservation}"),
                ));
            }
            if let Some(limit) = self.limit.filter(|l| reservation > *l) {
                return Err(IsolatorError::invalid(
                    RESERVATION_FIELD,
                    format!("must not exceed resources.memory ({limit}), got {reservation}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(limit: Option<u64>, reservation: Option<u64>) -> Result<MemoryLimits, IsolatorError> {
        MemoryLimits::from_resources(
            &crate::MemoryResources {
                memory: limit,
                memory_reservation: reservation,
            }
            .into_resources(),
        )
    }

    fn field(e: IsolatorError) -> String {
        match e {
            IsolatorError::InvalidConfig { field, .. } => field,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn ranges_and_ordering_are_checked() {
        assert!(limits(Some(MIN_LIMIT), Some(MIN_LIMIT)).is_ok());
        assert!(limits(None, Some(1 << 30)).is_ok());
        assert_eq!(
            field(limits(Some(MIN_LIMIT - 1), None).unwrap_err()),
            "resources.memory"
        );
        assert_eq!(
            field(limits(Some(MAX_LIMIT + 1), None).unwrap_err()),
            "resources.memory"
        );
        assert_eq!(
            field(limits(Some(64 << 20), Some(65 << 20)).unwrap_err()),
            "resources.memory_reservation"
        );
        assert_eq!(
            field(limits(None, Some(MAX_LIMIT + 1)).unwrap_err()),
            "resources.memory_reservation"
        );
    }

    #[test]
    fn updates_keep_fields_left_out() {
        let old = MemoryLimits {
            limit: Some(64 << 20),
            reservation: Some(32 << 20),
        };
        let new = old.updated(&MemoryLimits {
            limit: Some(128 << 20),
            reservation: None,
        });
        assert_eq!(new.reservation, Some(32 << 20));
        assert_eq!(new.limit, Some(128 << 20));
    }
}
