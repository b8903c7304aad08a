//! Reading `/proc/self/mountinfo`: which mount holds a path, what is
//! mounted where.

use std::io;
use std::path::{Path, PathBuf};

/// The mount table of this process.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of mountinfo (see proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The device's major number.
    pub major: u32,
    /// The device's minor number.
    pub minor: u32,
    /// Which directory of the filesystem the mount shows (`/` unless a
    /// subtree was bind-mounted).
    pub root: String,
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

/// A mountinfo line that is not what proc(5) describes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mountinfo line {line:?}: {reason}")]
pub struct MountInfoError {
    /// The line.
    pub line: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses the text of a mountinfo file; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(|l| parse_line(l).ok()).collect()
}

/// Parses the text of a mountinfo file; a malformed line is an error
/// (blank lines are skipped).
pub fn parse_strict(text: &str) -> Result<Vec<MountEntry>, MountInfoError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Result<MountEntry, MountInfoError> {
    let bad = |reason| MountInfoError {
        line: line.to_string(),
        reason,
    };
    // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue":
    // the optional fields before " - " vary in number, so split there.
    let (left, right) = line
        .split_once(" - ")
        .ok_or_else(|| bad("no \" - \" separator"))?;
    let left: Vec<&str> = left.split(' ').collect();
    if left.len() < 6 {
        return Err(bad("fewer than 6 fields before the separator"));
    }
    let (major, minor) = left[2]
        .split_once(':')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)))
        .ok_or_else(|| bad("no major:minor device"))?;
    let mut right = right.split(' ');
    let fs_type = right.next().ok_or_else(|| bad("no filesystem type"))?;
    let source = right.next().ok_or_else(|| bad("no mount source"))?;
    let super_options = right.next().ok_or_else(|| bad("no super options"))?;
    Ok(MountEntry {
        major,
        minor,
        root: unescape(left[3]),
        mount_point: unescape_path(left[4]),
        mount_options: left[5].to_string(),
        fs_type: fs_type.to_string(),
        source: unescape(source),
        super_options: super_options.to_string(),
    })
}

/// The kernel escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    String::from_utf8_lossy(&unescape_bytes(field)).into_owned()
}

/// A path field unescaped byte for byte (a mount point need not be UTF-8).
fn unescape_path(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(unescape_bytes(field)))
}

fn unescape_bytes(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// Reads this process's mount table ([`MOUNTINFO`]).
pub fn read() -> io::Result<Vec<MountEntry>> {
    std::fs::read_to_string(MOUNTINFO).map(|text| parse(&text))
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
    fn unescapes_tab_newline_and_backslash_and_keeps_a_short_escape() {
        assert_eq!(unescape("/a\\011b\\012c\\134d"), "/a\tb\nc\\d");
        assert_eq!(unescape("/x\\04"), "/x\\04");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_path("/a\\040b/c"), PathBuf::from("/a b/c"));
        assert_eq!(unescape_path("/plain"), PathBuf::from("/plain"));
        // Not UTF-8: kept byte for byte.
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(unescape_path("/\\377").as_os_str().as_bytes(), b"/\xff");
    }

    #[test]
    fn strict_parsing_refuses_malformed_lines_and_names_them() {
        let err = parse_strict("40 31 0:37 / /cg rw cgroup cgroup rw,cpu").unwrap_err();
        assert!(err.to_string().contains("separator"), "{err}");
        assert!(parse_strict("40 31 / - cgroup cgroup rw").is_err());
        assert_eq!(
            parse_strict("40 31 x / /cg rw - tmpfs tmpfs rw")
                .unwrap_err()
                .reason,
            "no major:minor device"
        );
        let mounts =
            parse_strict("\n40 31 0:37 /docker/a /cg rw - cgroup cgroup rw,cpu\n").unwrap();
        assert_eq!(mounts[0].root, "/docker/a");
        // SAMPLE ends in a bad line: skipped by parse, refused here.
        assert!(parse_strict(SAMPLE).is_err());
    }

    #[test]
    fn reads_this_process_table() {
        let mounts = read().unwrap();
        assert!(holding(&mounts, Path::new("/")).is_some());
    }
}
