//! The quota a container asks for, how it is checked, and the message when
//! it is exceeded.

pub use berth_cgroups::format_bytes;
use berth_isolator::TypedSection;
use berth_isolator::{IsolatorError, Limitation, Resources};

/// The smallest quota: below this not even the container's logs fit.
pub const MIN_QUOTA: u64 = 1 << 20;
/// The largest quota of the loop backend (1 TiB): the image is a sparse file
/// in the work dir, and a bigger one is a typo rather than a plan.
pub const MAX_LOOP_QUOTA: u64 = 1 << 40;

/// The request field the quota comes from.
pub const FIELD: &str = "resources.disk";

/// Checks `resources.disk`: at least [`MIN_QUOTA`], and at most `max` when
/// the backend has a maximum. `None` means no quota (usage is still reported).
pub fn quota_from(resources: &Resources, max: Option<u64>) -> Result<Option<u64>, IsolatorError> {
    let Some(quota) = crate::DiskResources::of(resources)?.disk else {
        return Ok(None);
    };
    if quota < MIN_QUOTA {
        return Err(IsolatorError::invalid(
            FIELD,
            format!("must be at least {MIN_QUOTA} bytes (1 MiB), got {quota}"),
        ));
    }
    if let Some(max) = max.filter(|max| quota > *max) {
        return Err(IsolatorError::invalid(
            FIELD,
            format!(
                "must be at most {max} bytes ({}) with this disk backend, got {quota}",
                format_bytes(max)
            ),
        ));
    }
    Ok(Some(quota))
}

/// The limitation reported when `used` bytes exceed `quota`.
pub fn over_quota(used: u64, quota: u64) -> Limitation {
    Limitation::new(
        "disk",
        format!(
            "disk usage {} exceeds quota {}",
            format_bytes(used),
            format_bytes(quota)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(disk: Option<u64>, max: Option<u64>) -> Result<Option<u64>, IsolatorError> {
        quota_from(&crate::DiskResources { disk }.into_resources(), max)
    }

    fn field(e: IsolatorError) -> String {
        match e {
            IsolatorError::InvalidConfig { field, .. } => field,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn range_is_checked_and_names_the_field() {
        assert_eq!(quota(None, None).unwrap(), None);
        assert_eq!(quota(Some(MIN_QUOTA), None).unwrap(), Some(MIN_QUOTA));
        assert_eq!(field(quota(Some(0), None).unwrap_err()), FIELD);
        assert_eq!(field(quota(Some(100), None).unwrap_err()), FIELD);
        assert_eq!(quota(Some(2 << 40), None).unwrap(), Some(2 << 40));
        let err = quota(Some(MAX_LOOP_QUOTA + 1), Some(MAX_LOOP_QUOTA)).unwrap_err();
        assert!(err.to_string().contains("1.0 TiB"), "{err}");
    }

    #[test]
    fn the_message_names_usage_and_quota() {
        let limitation = over_quota(50 << 20, 20 << 20);
        assert_eq!(limitation.reason(), "disk-limit");
        assert_eq!(
            limitation.message,
            "disk usage 50.0 MiB exceeds quota 20.0 MiB"
        );
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
    }
}
