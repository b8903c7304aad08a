//! Reading `/proc/self/mountinfo`: which mount holds a path, what is
//! mounted where.

use std::path::{Path, PathBuf};

use crate::error::DiskError;

/// The mount table of this process.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of mountinfo (see proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The device's major number.
    pub major: u32,
    /// The device's minor number.
    pub minor: u32,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,relatime`).
    pub mount_options: String,
    /// The filesystem type (`xfs`, `ext4`).
    pub fs_type: String,
    /// The mount source (`/dev/vdb`, `tmpfs`).
    pub source: String,
    /// Per-superblock options (`rw,attr2,inode64,prjquota`).
    pub super_options: String,
}

impl MountEntry {
    /// Whether `option` is among the mount's or the superblock's options.
    pub fn has_option(&self, option: &str) -> bool {
        self.mount_options
            .split(',')
            .chain(self.super_options.split(','))
            .any(|o| o == option)
    }

    /// The block device: the source when it is a path, else the
    /// `/dev/block/MAJ:MIN` link udev keeps for every block device.
    pub fn device(&self) -> PathBuf {
        if self.source.starts_with('/') {
            PathBuf::from(&self.source)
        } else {
            PathBuf::from(format!("/dev/block/{}:{}", self.major, self.minor))
        }
    }
}

/// Parses the text of a mountinfo file; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    let (left, right) = line.split_once(" - ")?;
    let mut left = left.split(' ');
    let _mount_id = left.next()?;
    let _parent_id = left.next()?;
    let (major, minor) = left.next()?.split_once(':')?;
    let _root = left.next()?;
    let mount_point = unescape(left.next()?);
    let mount_options = left.next()?.to_string();
    let mut right = right.split(' ');
    let fs_type = right.next()?.to_string();
    let source = unescape(right.next()?);
    let super_options = right.next().unwrap_or("").to_string();
    Some(MountEntry {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        mount_point: PathBuf::from(mount_point),
        mount_options,
        fs_type,
        source,
        super_options,
    })
}

/// The kernel escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads this process's mount table.
pub fn read() -> Result<Vec<MountEntry>, DiskError> {
    std::fs::read_to_string(MOUNTINFO)
        .map(|text| parse(&text))
        .map_err(|e| DiskError::io("read", MOUNTINFO, e))
}

/// The mount that holds `path` (absolute, symlinks resolved): the one with
/// the longest mount point above it; among equal ones the last, which is
/// mounted on top.
pub fn holding<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .fold(None, |best: Option<&MountEntry>, m| match best {
            Some(b) if b.mount_point.as_os_str().len() > m.mount_point.as_os_str().len() => Some(b),
            _ => Some(m),
        })
}

/// Whether something is mounted exactly at `path`.
pub fn is_mount_point(mounts: &[MountEntry], path: &Path) -> bool {
    mounts.iter().any(|m| m.mount_point == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:25 / /tmp rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=1024k
41 22 253:16 / /var/lib/berth rw,relatime shared:20 - xfs /dev/vdb rw,attr2,inode64,logbufs=8,prjquota
42 41 7:3 / /var/lib/berth/containers/web\\0401 rw,nosuid,nodev shared:21 - ext4 /dev/loop3 rw
43 22 253:32 / /srv rw,relatime shared:22 - xfs /dev/mapper/vg-srv rw,attr2,inode64,noquota
44 22 253:48 / /data rw shared:23 - xfs none rw,pquota
bad line
";

    #[test]
    fn parses_fields_and_unescapes_paths() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts.len(), 6);
        let loop_mount = &mounts[3];
        assert_eq!(
            loop_mount.mount_point,
            Path::new("/var/lib/berth/containers/web 1")
        );
        assert_eq!((loop_mount.major, loop_mount.minor), (7, 3));
        assert_eq!(loop_mount.fs_type, "ext4");
        assert_eq!(loop_mount.source, "/dev/loop3");
        assert!(loop_mount.has_option("nodev"));
    }

    #[test]
    fn finds_the_mount_holding_a_path_and_its_device() {
        let mounts = parse(SAMPLE);
        let work = holding(&mounts, Path::new("/var/lib/berth/containers")).unwrap();
        assert_eq!(work.fs_type, "xfs");
        assert_eq!(work.device(), Path::new("/dev/vdb"));
        assert!(work.has_option("prjquota"));
        // Not fooled by a sibling sharing a name prefix.
        let other = holding(&mounts, Path::new("/var/lib/berthx")).unwrap();
        assert_eq!(other.mount_point, Path::new("/"));
        let data = holding(&mounts, Path::new("/data/x")).unwrap();
        assert_eq!(data.device(), Path::new("/dev/block/253:48"));
        assert!(is_mount_point(
            &mounts,
            Path::new("/var/lib/berth/containers/web 1")
        ));
        assert!(!is_mount_point(
            &mounts,
            Path::new("/var/lib/berth/containers")
        ));
    }

    #[test]
    fn the_topmost_of_stacked_mounts_wins() {
        let text = "1 0 8:1 / /a rw - ext4 /dev/sda1 rw\n2 1 0:5 / /a rw - tmpfs tmpfs rw\n";
        let mounts = parse(text);
        assert_eq!(
            holding(&mounts, Path::new("/a/b")).unwrap().fs_type,
            "tmpfs"
        );
    }

    #[test]
    fn reads_this_process_table() {
        let mounts = read().unwrap();
        assert!(holding(&mounts, Path::new("/")).is_some());
    }
}
