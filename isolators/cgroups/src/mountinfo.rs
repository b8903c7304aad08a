//! Parsing the cgroup lines of `/proc/self/mountinfo`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use berth_sys::mountinfo;

use crate::{CgroupError, Controller};

/// One mounted cgroup filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Which cgroup of the hierarchy the mount shows at `mount_point` (`/`
    /// unless a subtree was bind-mounted, as container engines do).
    pub root: String,
    /// `true` for cgroup2.
    pub unified: bool,
    /// The known controllers named in the super options (v1 only;
    /// co-mounted controllers such as `cpu,cpuacct` share one mount).
    pub controllers: BTreeSet<Controller>,
}

/// Returns the cgroup and cgroup2 mounts of a mountinfo text, in order
/// (the text is parsed by berth-sys; a malformed line is an error).
pub(crate) fn parse(text: &str) -> Result<Vec<CgroupMount>, CgroupError> {
    let entries = mountinfo::parse_strict(text).map_err(|e| CgroupError::MountInfo {
        line: e.line,
        reason: e.reason,
    })?;
    let mut mounts = Vec::new();
    for entry in entries {
        let unified = match entry.fs_type.as_str() {
            "cgroup" => false,
            "cgroup2" => true,
            _ => continue,
        };
        let controllers = if unified {
            BTreeSet::new()
        } else {
            // Super options mix flags (rw, noprefix, xattr, name=systemd, ...)
            // with controller names; only names of known controllers count.
            entry
                .super_options
                .split(',')
                .filter_map(|o| o.parse::<Controller>().ok())
                .collect()
        };
        mounts.push(CgroupMount {
            mount_point: entry.mount_point,
            root: entry.root,
            unified,
            controllers,
        });
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
31 23 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
37 31 0:34 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,net_cls,net_prio
39 31 0:36 /docker/abc /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids
";

    #[test]
    fn finds_cgroup_mounts_with_their_controllers() {
        let mounts = parse(HYBRID).unwrap();
        assert_eq!(mounts.len(), 6);
        assert!(mounts[0].unified);
        assert_eq!(
            mounts[0].mount_point,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        assert!(
            mounts[1].controllers.is_empty(),
            "name=systemd is no controller"
        );
        assert_eq!(
            mounts[2].controllers,
            BTreeSet::from([Controller::Cpu, Controller::Cpuacct])
        );
        assert_eq!(
            mounts[2].mount_point,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            mounts[4].controllers,
            BTreeSet::from([Controller::NetCls, Controller::NetPrio])
        );
        assert_eq!(mounts[5].root, "/docker/abc");
    }

    #[test]
    fn optional_fields_vary_in_number() {
        let line = "40 31 0:37 / /cg rw,relatime shared:1 master:2 propagate_from:3 - cgroup cgroup rw,freezer\n";
        let mounts = parse(line).unwrap();
        assert_eq!(mounts[0].controllers, BTreeSet::from([Controller::Freezer]));
        let none = "40 31 0:37 / /cg rw,relatime - cgroup cgroup rw,blkio\n";
        assert_eq!(
            parse(none).unwrap()[0].controllers,
            BTreeSet::from([Controller::Blkio])
        );
    }

    #[test]
    fn unescapes_paths() {
        let line = r"40 31 0:37 / /tmp/a\040b\134c rw - cgroup2 cgroup2 rw";
        assert_eq!(
            parse(line).unwrap()[0].mount_point,
            PathBuf::from(r"/tmp/a b\c")
        );
    }

    #[test]
    fn refuses_malformed_lines() {
        let err = parse("40 31 0:37 / /cg rw cgroup cgroup rw,cpu").unwrap_err();
        assert!(err.to_string().contains("separator"), "{err}");
        assert!(parse("40 31 / - cgroup cgroup rw").is_err());
    }
}
