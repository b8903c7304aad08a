//! The cpu values berth writes, from a fractional number of CPUs.

use berth_isolator::IsolatorError;

/// `cpu.shares` per CPU (Mesos' `CPU_SHARES_PER_CPU`).
pub const SHARES_PER_CPU: f64 = 1024.0;
/// The smallest `cpu.shares` the kernel accepts.
pub const MIN_SHARES: u64 = 2;
/// The CFS period, in microseconds (100 ms, as Mesos).
pub const CFS_PERIOD_US: u64 = 100_000;
/// The smallest CFS quota written, in microseconds (1 ms, as Mesos).
pub const MIN_CFS_QUOTA_US: u64 = 1_000;
/// The most CPUs a container may ask for: more is a typo, not a machine.
pub const MAX_CPUS: f64 = 1024.0;

/// The field named in validation errors.
pub(crate) const FIELD: &str = "resources.cpus";

/// The cpu values for one container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuLimits {
    /// The CPUs asked for.
    pub cpus: f64,
    /// v1 `cpu.shares` (v2 `cpu.weight` is derived from it).
    pub shares: u64,
    /// The CFS quota in microseconds per [`CpuLimits::period_us`], or `None`
    /// when CFS quotas are off.
    pub quota_us: Option<u64>,
    /// The CFS period in microseconds.
    pub period_us: u64,
}

impl CpuLimits {
    /// The values for `cpus` (validated first); `cfs_quota` says whether to
    /// cap the container with a CFS quota or only weigh it with shares.
    pub fn new(cpus: f64, cfs_quota: bool) -> Result<Self, IsolatorError> {
        validate_cpus(cpus)?;
        // Rounded rather than truncated: 0.29 × 100000 is 28999.999… in
        // floating point and should still be 29000.
        let shares = ((SHARES_PER_CPU * cpus).round() as u64).max(MIN_SHARES);
        let quota_us =
            cfs_quota.then(|| ((CFS_PERIOD_US as f64 * cpus).round() as u64).max(MIN_CFS_QUOTA_US));
        Ok(CpuLimits {
            cpus,
            shares,
            quota_us,
            period_us: CFS_PERIOD_US,
        })
    }

    /// The v2 `cpu.weight` for these shares.
    pub fn weight(&self) -> u64 {
        shares_to_weight(self.shares)
    }
}

/// The CPUs online on this host (`sysconf(_SC_NPROCESSORS_ONLN)`), at
/// least 1 and at most [`MAX_CPUS`].
pub fn host_cpus() -> f64 {
    // SAFETY: sysconf reads a system value and touches no memory of ours.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (online.max(1) as f64).min(MAX_CPUS)
}

/// Checks a `resources.cpus` value: finite, positive, at most the host's
/// CPU count (as Docker does; more can never be used).
pub fn validate_cpus(cpus: f64) -> Result<(), IsolatorError> {
    if !cpus.is_finite() {
        return Err(IsolatorError::invalid(
            FIELD,
            format!("must be a finite number, got {cpus}"),
        ));
    }
    if cpus <= 0.0 {
        return Err(IsolatorError::invalid(
            FIELD,
            format!("must be greater than 0, got {cpus}"),
        ));
    }
    let available = host_cpus();
    if cpus > available {
        return Err(IsolatorError::invalid(
            FIELD,
            format!(
                "must be greater than 0 and at most {available} (the CPUs available on this host), got {cpus}"
            ),
        ));
    }
    Ok(())
}

/// Converts v1 `cpu.shares` (2..=262144) to v2 `cpu.weight` (1..=10000)
/// with the quadratic formula of runc, crun and youki, which maps the
/// default 1024 to the default 100 (the old linear formula, still in
/// cgroups-rs, maps it to 39):
/// `ceil(10^((l² + 125l) / 612 − 7/34))` with `l = log2(shares)`.
pub fn shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262_144.. => 10_000,
        _ => {
            let l = (shares as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            10f64.powf(exponent).ceil() as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_follows_the_quadratic_formula() {
        for (shares, weight) in [
            (0, 0),
            (1, 1),
            (2, 1),
            (3, 2),
            (100, 17),
            (512, 59),
            (1024, 100),
            (2048, 174),
            (4096, 303),
            (262_143, 10_000),
            (262_144, 10_000),
            (1_000_000, 10_000),
        ] {
            assert_eq!(shares_to_weight(shares), weight, "shares {shares}");
        }
    }

    #[test]
    fn limits_follow_mesos() {
        let half = CpuLimits::new(0.5, true).unwrap();
        assert_eq!(
            (half.shares, half.quota_us, half.period_us),
            (512, Some(50_000), 100_000)
        );
        assert_eq!(half.weight(), 59);
        let tiny = CpuLimits::new(0.001, true).unwrap();
        assert_eq!(
            (tiny.shares, tiny.quota_us),
            (MIN_SHARES, Some(MIN_CFS_QUOTA_US))
        );
        assert_eq!(CpuLimits::new(0.29, true).unwrap().quota_us, Some(29_000));
        assert_eq!(CpuLimits::new(2.0, false).unwrap().quota_us, None);
        assert_eq!(CpuLimits::new(2.0, false).unwrap().shares, 2048);
    }

    #[test]
    fn bad_cpus_name_the_field() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1024.5] {
            match CpuLimits::new(bad, true) {
                Err(IsolatorError::InvalidConfig { field, .. }) => assert_eq!(field, FIELD),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(validate_cpus(host_cpus()).is_ok());
        assert!(validate_cpus(host_cpus() + 1.0).is_err());
    }
}
