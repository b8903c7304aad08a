//! Block devices: naming them by path or by number, and checking that they
//! are whole disks the kernel can throttle.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

/// Where the kernel lists block devices by number (`/sys/dev/block/254:0`).
pub const SYS_DEV_BLOCK: &str = "/sys/dev/block";

/// A block device number, written `MAJOR:MINOR` as in every blkio file.
///
/// ```
/// use berth_isolator_blkio::DeviceNumber;
/// let vda: DeviceNumber = "254:0".parse().unwrap();
/// assert_eq!((vda.major, vda.minor), (254, 0));
/// assert_eq!(vda.to_string(), "254:0");
/// assert!("254".parse::<DeviceNumber>().is_err());
/// assert!("254:+1".parse::<DeviceNumber>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceNumber {
    /// The major number (the driver).
    pub major: u32,
    /// The minor number (the device of that driver).
    pub minor: u32,
}

impl DeviceNumber {
    /// The number of a device special file's `st_rdev`.
    pub fn from_rdev(rdev: u64) -> Self {
        // Both halves fit in 32 bits by the kernel's dev_t layout.
        DeviceNumber {
            major: nix::sys::stat::major(rdev) as u32,
            minor: nix::sys::stat::minor(rdev) as u32,
        }
    }

    /// The device's directory in sysfs (a symlink into `/sys/devices`).
    pub fn sysfs_dir(&self) -> PathBuf {
        Path::new(SYS_DEV_BLOCK).join(self.to_string())
    }

    /// The kernel's name for the device (`vda`, `dm-0`), from the `DEVNAME`
    /// of its `uevent`; `None` when sysfs does not say.
    ///
    /// A name found is remembered for the agent's life (a metrics scrape
    /// names every device of every container): the kernel gives a number
    /// the same name whenever it exists (`8:0` is `sda`, `7:0` `loop0`).
    pub fn name(&self) -> Option<String> {
        static NAMES: Mutex<BTreeMap<DeviceNumber, String>> = Mutex::new(BTreeMap::new());
        let names = || NAMES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(name) = names().get(self) {
            return Some(name.clone());
        }
        let uevent = fs::read_to_string(self.sysfs_dir().join("uevent")).ok()?;
        let name = uevent
            .lines()
            .find_map(|l| l.strip_prefix("DEVNAME="))
            .map(str::to_string)?;
        names().insert(*self, name.clone());
        Some(name)
    }

    /// The whole disk this device is, or the disk it is a partition of;
    /// `None` when sysfs has no entry for it.
    pub fn whole_disk(&self) -> Option<DeviceNumber> {
        let dir = self.sysfs_dir();
        if !dir.exists() {
            return None;
        }
        if !dir.join("partition").exists() {
            return Some(*self);
        }
        // The sysfs entry of a partition sits in its disk's directory; `..`
        // is resolved after the symlink, so this is the disk's `dev`.
        fs::read_to_string(dir.join("../dev"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The whole disk holding the filesystem of `path`; `None` when that
    /// filesystem is on no block device (tmpfs, overlayfs).
    pub fn backing(path: &Path) -> Option<DeviceNumber> {
        DeviceNumber::from_rdev(fs::metadata(path).ok()?.dev()).whole_disk()
    }

    /// The device's `/dev` path, when it has a name and the node exists.
    pub fn dev_path(&self) -> Option<String> {
        self.name()
            .map(|n| format!("/dev/{n}"))
            .filter(|p| Path::new(p).exists())
    }

    /// The name and number for messages: `vda (254:0)`, or just the number.
    pub fn describe(&self) -> String {
        match self.name() {
            Some(name) => format!("{name} ({self})"),
            None => self.to_string(),
        }
    }
}

impl fmt::Display for DeviceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// The error for text that is not `MAJOR:MINOR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed device number {0:?}: expected MAJOR:MINOR")]
pub struct MalformedDeviceNumber(pub String);

impl FromStr for DeviceNumber {
    type Err = MalformedDeviceNumber;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MalformedDeviceNumber(s.to_string());
        // u32::from_str takes a leading '+': allow digits only.
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse::<u32>().map_err(|_| bad())
        };
        let (major, minor) = s.split_once(':').ok_or_else(bad)?;
        Ok(DeviceNumber {
            major: number(major)?,
            minor: number(minor)?,
        })
    }
}

/// Why a device named in a request cannot be throttled.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Neither an absolute path nor `MAJOR:MINOR`.
    #[error(
        "malformed device {value:?}: expected a block device path such as /dev/vda, or MAJOR:MINOR"
    )]
    Malformed {
        /// The value given.
        value: String,
    },
    /// The path cannot be looked at (it does not exist, ...).
    #[error("{}: {source}", path.display())]
    Stat {
        /// The path given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The path is something other than a block device.
    #[error("{} is not a block device (it is {kind})", path.display())]
    NotBlock {
        /// The path given.
        path: PathBuf,
        /// What it is instead (`a character device`, `a directory`, ...).
        kind: &'static str,
    },
    /// No block device has this number.
    #[error("no block device {number} (nothing at {})", path.display())]
    NoSuchNumber {
        /// The number given.
        number: DeviceNumber,
        /// The sysfs entry that is missing.
        path: PathBuf,
    },
    /// The device is a partition, which the kernel does not throttle.
    #[error("{device} ({number}) is a partition: the kernel throttles and weighs whole disks only, use the disk {disk}")]
    Partition {
        /// The value given.
        device: String,
        /// The partition's number.
        number: DeviceNumber,
        /// The disk it is a partition of, as `vda (254:0)`.
        disk: String,
    },
}

/// Resolves a device given as an absolute path (`/dev/vda`, symlinks such as
/// `/dev/disk/by-id/...` followed) or as `MAJOR:MINOR` to the number of a
/// whole-disk block device. Reads the filesystem and sysfs; changes nothing.
///
/// Partitions are refused: the kernel's blkio and io controllers key their
/// settings by the disk's request queue, and refuse a partition's number
/// (ENODEV). I/O to a partition is remapped to its disk before it is
/// throttled, so the disk's throttle covers all its partitions.
pub fn resolve(spec: &str) -> Result<DeviceNumber, DeviceError> {
    let number = if spec.starts_with('/') {
        let path = Path::new(spec);
        let meta = fs::metadata(path).map_err(|source| DeviceError::Stat {
            path: path.to_path_buf(),
            source,
        })?;
        let file_type = meta.file_type();
        if !file_type.is_block_device() {
            let kind = if file_type.is_char_device() {
                "a character device"
            } else if file_type.is_dir() {
                "a directory"
            } else if file_type.is_file() {
                "a regular file"
            } else {
                "not a device"
            };
            return Err(DeviceError::NotBlock {
                path: path.to_path_buf(),
                kind,
            });
        }
        DeviceNumber::from_rdev(meta.rdev())
    } else {
        let number: DeviceNumber = spec.parse().map_err(|_| DeviceError::Malformed {
            value: spec.to_string(),
        })?;
        if !number.sysfs_dir().exists() {
            return Err(DeviceError::NoSuchNumber {
                number,
                path: number.sysfs_dir(),
            });
        }
        number
    };
    if number.sysfs_dir().join("partition").exists() {
        let disk = number
            .whole_disk()
            .map_or_else(|| "it belongs to".to_string(), |d| d.describe());
        return Err(DeviceError::Partition {
            device: spec.to_string(),
            number,
            disk,
        });
    }
    Ok(number)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The whole disk holding `/`, if the root filesystem is on one (not in
    /// a container on overlayfs, say).
    pub(crate) fn root_disk() -> Option<DeviceNumber> {
        DeviceNumber::backing(Path::new("/"))
    }

    #[test]
    fn numbers_parse_strictly() {
        assert_eq!(
            "8:16".parse::<DeviceNumber>().unwrap(),
            DeviceNumber {
                major: 8,
                minor: 16
            }
        );
        for bad in [
            "",
            ":",
            "8:",
            ":1",
            "8:1:2",
            "a:b",
            " 8:1",
            "8:1 ",
            "-1:0",
            "8:99999999999",
        ] {
            assert!(bad.parse::<DeviceNumber>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rdev_splits_into_major_and_minor() {
        let n = DeviceNumber::from_rdev(libc::makedev(259, 70000));
        assert_eq!(n.to_string(), "259:70000");
    }

    #[test]
    fn non_block_paths_are_refused_naming_what_they_are() {
        let err = resolve("/dev/null").unwrap_err();
        assert!(matches!(err, DeviceError::NotBlock { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "/dev/null is not a block device (it is a character device)"
        );
        let err = resolve("/").unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
        let err = resolve("/dev/berth-no-such-disk").unwrap_err();
        assert!(matches!(err, DeviceError::Stat { .. }), "{err}");
        assert!(err.to_string().contains("/dev/berth-no-such-disk"), "{err}");
    }

    #[test]
    fn malformed_and_unknown_numbers_are_refused() {
        for bad in ["vda", "dev/vda", "254", "x:y", ""] {
            assert!(
                matches!(resolve(bad), Err(DeviceError::Malformed { .. })),
                "{bad:?}"
            );
        }
        // Major 1 is the mem character devices: never a block device entry.
        let err = resolve("1:3").unwrap_err();
        assert!(matches!(err, DeviceError::NoSuchNumber { .. }), "{err}");
        assert!(err.to_string().contains("/sys/dev/block/1:3"), "{err}");
    }

    #[test]
    fn the_root_disk_resolves_by_number_and_by_path() {
        let Some(disk) = root_disk() else {
            berth_cgroups::testing::skip("blkio device", "/ is not on a block device");
            return;
        };
        assert_eq!(resolve(&disk.to_string()).unwrap(), disk);
        let name = disk.name().expect("a disk has a DEVNAME");
        let path = format!("/dev/{name}");
        if Path::new(&path).exists() {
            assert_eq!(resolve(&path).unwrap(), disk);
        }
        assert_eq!(disk.describe(), format!("{name} ({disk})"));
    }
}
