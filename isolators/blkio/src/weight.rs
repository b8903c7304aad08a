//! The proportional I/O weight: its range, the v2 conversion, and which
//! control file the host's I/O schedulers offer.

use std::path::Path;

use berth_cgroups::CgroupMode;
use berth_isolator::IsolatorError;

/// The smallest `resources.blkio_weight` (as for v1 `blkio.weight`).
pub const MIN_WEIGHT: u16 = 10;
/// The largest `resources.blkio_weight`.
pub const MAX_WEIGHT: u16 = 1000;

const FIELD: &str = "resources.blkio_weight";

/// Checks that a weight is in `MIN_WEIGHT..=MAX_WEIGHT`.
pub fn validate_weight(weight: u16) -> Result<(), IsolatorError> {
    if (MIN_WEIGHT..=MAX_WEIGHT).contains(&weight) {
        Ok(())
    } else {
        Err(IsolatorError::invalid(
            FIELD,
            format!("must be between {MIN_WEIGHT} and {MAX_WEIGHT}, got {weight}"),
        ))
    }
}

/// The cgroup v2 `io.weight` (1..10000) for a v1 weight (10..1000), by the
/// linear mapping runc, crun and youki use: `1 + (w − 10) · 9999 / 990`.
///
/// ```
/// use berth_isolator_blkio::io_weight;
/// assert_eq!(io_weight(10), 1);
/// assert_eq!(io_weight(500), 4950);
/// assert_eq!(io_weight(1000), 10000);
/// ```
pub fn io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(MIN_WEIGHT, MAX_WEIGHT));
    1 + (w - u64::from(MIN_WEIGHT)) * 9999 / 990
}

/// A control file that takes the container's weight. Which exist depends on
/// the kernel: the file of a group scheduling policy only appears when that
/// policy is built in or loaded, and only in non-root cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFile {
    /// v1 `blkio.weight`: the CFQ scheduler (kernels before 5.0).
    Blkio,
    /// v1 `blkio.bfq.weight`: the BFQ scheduler (1..1000).
    BlkioBfq,
    /// v2 `io.weight`: the iocost controller (1..10000).
    Io,
    /// v2 `io.bfq.weight`: the BFQ scheduler (1..1000).
    IoBfq,
}

impl WeightFile {
    /// The weight files of `mode`, in order of preference.
    pub fn candidates(mode: CgroupMode) -> &'static [WeightFile] {
        match mode {
            CgroupMode::V1 => &[WeightFile::Blkio, WeightFile::BlkioBfq],
            CgroupMode::V2 => &[WeightFile::Io, WeightFile::IoBfq],
        }
    }

    /// The weight files present in the cgroup directory `dir` (a non-root
    /// cgroup: the kernel hides them in the root).
    pub fn detect(mode: CgroupMode, dir: &Path) -> Vec<WeightFile> {
        Self::candidates(mode)
            .iter()
            .copied()
            .filter(|f| dir.join(f.name()).exists())
            .collect()
    }

    /// The file name.
    pub fn name(self) -> &'static str {
        match self {
            WeightFile::Blkio => "blkio.weight",
            WeightFile::BlkioBfq => "blkio.bfq.weight",
            WeightFile::Io => "io.weight",
            WeightFile::IoBfq => "io.bfq.weight",
        }
    }

    /// What to write to the file for `weight` (10..1000).
    pub fn value(self, weight: u16) -> String {
        match self {
            // The v1 BFQ file takes a bare number only ("default N" is
            // EINVAL); the v2 one takes both, and old kernels a bare number.
            WeightFile::Blkio | WeightFile::BlkioBfq | WeightFile::IoBfq => weight.to_string(),
            WeightFile::Io => format!("default {}", io_weight(weight)),
        }
    }

    /// Whether the file belongs to the BFQ scheduler (and so only weighs
    /// I/O to devices that use BFQ).
    pub fn is_bfq(self) -> bool {
        matches!(self, WeightFile::BlkioBfq | WeightFile::IoBfq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_conversion_maps_the_ends_and_the_middle() {
        assert_eq!(io_weight(10), 1);
        assert_eq!(io_weight(100), 910);
        assert_eq!(io_weight(500), 4950);
        assert_eq!(io_weight(1000), 10000);
        // Out of range never reaches here, but must not underflow.
        assert_eq!(io_weight(0), 1);
    }

    #[test]
    fn range_is_checked_naming_the_field() {
        assert!(validate_weight(10).is_ok() && validate_weight(1000).is_ok());
        for bad in [0, 9, 1001, u16::MAX] {
            let err = validate_weight(bad).unwrap_err();
            assert!(
                matches!(&err, IsolatorError::InvalidConfig { field, .. } if field == FIELD),
                "{err}"
            );
            assert!(err.to_string().contains(&bad.to_string()), "{err}");
        }
    }

    #[test]
    fn values_per_file() {
        assert_eq!(WeightFile::Blkio.value(500), "500");
        assert_eq!(WeightFile::BlkioBfq.value(500), "500");
        assert_eq!(WeightFile::IoBfq.value(500), "500");
        assert_eq!(WeightFile::Io.value(500), "default 4950");
    }

    #[test]
    fn detection_keeps_the_order_of_preference() {
        let dir = tempfile::tempdir().unwrap();
        assert!(WeightFile::detect(CgroupMode::V1, dir.path()).is_empty());
        std::fs::write(dir.path().join("io.bfq.weight"), "default 100\n").unwrap();
        std::fs::write(dir.path().join("io.weight"), "default 100\n").unwrap();
        std::fs::write(dir.path().join("blkio.bfq.weight"), "100\n").unwrap();
        assert_eq!(
            WeightFile::detect(CgroupMode::V2, dir.path()),
            vec![WeightFile::Io, WeightFile::IoBfq]
        );
        assert_eq!(
            WeightFile::detect(CgroupMode::V1, dir.path()),
            vec![WeightFile::BlkioBfq]
        );
    }
}
