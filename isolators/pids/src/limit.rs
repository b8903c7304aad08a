//! Which `pids.max` a container gets, from its request and the agent's
//! options.

use berth_isolator::IsolatorError;

/// The agent's default limit when a container asks for none.
pub const DEFAULT_PIDS_LIMIT: u64 = 4096;

/// The highest limit the kernel can enforce (`PID_MAX_LIMIT` on 64-bit
/// kernels): more is a typo.
pub const MAX_PIDS_LIMIT: u64 = 4 * 1024 * 1024;

/// The field named in validation errors.
pub(crate) const FIELD: &str = "resources.pids_limit";

/// Options of the pids isolator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidsOptions {
    /// The limit of a container that asks for none; `0` means none.
    pub default_limit: u64,
    /// Whether a container may ask for no limit (`pids_limit: 0`).
    pub allow_unlimited: bool,
}

impl Default for PidsOptions {
    fn default() -> Self {
        PidsOptions {
            default_limit: DEFAULT_PIDS_LIMIT,
            allow_unlimited: false,
        }
    }
}

impl PidsOptions {
    /// The limit for a container that asked for `requested`: `Some(n)`, or
    /// `None` for no limit (`max`).
    pub fn limit_for(&self, requested: Option<u64>) -> Result<Option<u64>, IsolatorError> {
        match requested {
            None => Ok((self.default_limit > 0).then_some(self.default_limit)),
            Some(0) if self.allow_unlimited => Ok(None),
            Some(0) => Err(IsolatorError::invalid(
                FIELD,
                "0 (no limit) is not allowed by this agent ([pids] allow_unlimited)",
            )),
            Some(n) if n > MAX_PIDS_LIMIT => Err(IsolatorError::invalid(
                FIELD,
                format!("must be at most {MAX_PIDS_LIMIT}, got {n}"),
            )),
            Some(n) => Ok(Some(n)),
        }
    }
}

/// The text of `pids.max` for a limit.
pub(crate) fn pids_max(limit: Option<u64>) -> String {
    limit.map_or_else(|| "max".to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_applies_and_unlimited_needs_the_option() {
        let strict = PidsOptions::default();
        assert_eq!(strict.limit_for(None).unwrap(), Some(4096));
        assert_eq!(strict.limit_for(Some(10)).unwrap(), Some(10));
        for bad in [0, MAX_PIDS_LIMIT + 1] {
            match strict.limit_for(Some(bad)) {
                Err(IsolatorError::InvalidConfig { field, .. }) => assert_eq!(field, FIELD),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let open = PidsOptions {
            default_limit: 0,
            allow_unlimited: true,
        };
        assert_eq!(open.limit_for(None).unwrap(), None);
        assert_eq!(open.limit_for(Some(0)).unwrap(), None);
        assert_eq!(pids_max(None), "max");
        assert_eq!(pids_max(Some(7)), "7");
    }
}
