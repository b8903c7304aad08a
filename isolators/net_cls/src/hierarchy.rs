//! Finding the net_cls hierarchy, and mounting it where the host has not.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use berth_cgroups::{CgroupError, CgroupMode, CgroupRoot, Controller, Hierarchies};
use nix::fcntl::{Flock, FlockArg};
use nix::mount::MsFlags;

use crate::NetClsError;

/// Where the hierarchy is mounted when the host has not mounted it.
pub const DEFAULT_MOUNT_POINT: &str = "/sys/fs/cgroup/net_cls";

/// What the isolator needs from the host to find or mount the hierarchy;
/// unit tests play it with a fake tree.
pub(crate) trait Host {
    /// The current cgroup layout.
    fn detect(&self) -> Result<Hierarchies, CgroupError>;
    /// The text of `/proc/cgroups`.
    fn proc_cgroups(&self) -> io::Result<String>;
    /// `mount -t cgroup -o <options> cgroup <target>`.
    fn mount_cgroup(&self, target: &Path, options: &str) -> io::Result<()>;
}

/// The host this process runs on.
pub(crate) struct RealHost;

const PROC_CGROUPS: &str = "/proc/cgroups";

impl Host for RealHost {
    fn detect(&self) -> Result<Hierarchies, CgroupError> {
        Hierarchies::detect()
    }

    fn proc_cgroups(&self) -> io::Result<String> {
        fs::read_to_string(PROC_CGROUPS)
    }

    fn mount_cgroup(&self, target: &Path, options: &str) -> io::Result<()> {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        nix::mount::mount(Some("cgroup"), target, Some("cgroup"), flags, Some(options))
            .map_err(io::Error::from)
    }
}

/// A cgroup root that includes net_cls, and how it came to be.
#[derive(Debug)]
pub(crate) struct Found {
    /// The agent's root value, in a layout that has net_cls.
    pub root: CgroupRoot,
    /// The mount point of the net_cls hierarchy.
    pub mount_point: PathBuf,
    /// Whether this call mounted it.
    pub mounted: bool,
}

/// Returns a root for `root`'s value that includes net_cls, mounting the
/// hierarchy at `mount_point` if no hierarchy has it.
///
/// The mount is never undone, not even when the agent stops: other agents,
/// tc filters and people may rely on it, and nothing knows when the last of
/// them is done.
pub(crate) fn find_or_mount(
    root: &CgroupRoot,
    mount_point: &Path,
    host: &dyn Host,
) -> Result<Found, NetClsError> {
    if root.mode() == CgroupMode::V2 {
        return Err(NetClsError::CgroupV2);
    }
    if let Ok(mounted_at) = root.hierarchies().mount_point(Controller::NetCls) {
        return Ok(Found {
            mount_point: mounted_at.to_path_buf(),
            root: root.clone(),
            mounted: false,
        });
    }
    // Agents starting together (tests do) would stack one mount per agent:
    // check and mount under a lock on the mount point's parent.
    let _lock = lock(mount_point.parent().unwrap_or(Path::new("/")))?;
    // It may have been mounted since the agent read the layout (by another
    // agent, or co-mounted with net_prio by someone else).
    let hierarchies = host.detect()?;
    if hierarchies.mode() == CgroupMode::V2 {
        return Err(NetClsError::CgroupV2);
    }
    if let Ok(mounted_at) = hierarchies.mount_point(Controller::NetCls) {
        return Ok(Found {
            mount_point: mounted_at.to_path_buf(),
            root: CgroupRoot::new(hierarchies, root.value())?,
            mounted: false,
        });
    }
    check_kernel(host)?;
    prepare_mount_point(mount_point)?;
    let mount = |options: &str| {
        host.mount_cgroup(mount_point, options)
            .map_err(|source| NetClsError::Mount {
                path: mount_point.to_path_buf(),
                options: options.to_string(),
                source,
            })
    };
    match mount("net_cls") {
        // The kernel refuses to mount net_cls alone while a hierarchy that
        // binds it with other controllers lives on (it keeps living, unmounted,
        // while it has cgroups): net_prio is the one it is co-mounted with.
        Err(NetClsError::Mount { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
            mount("net_cls,net_prio")?
        }
        other => other?,
    }
    tracing::info!(path = %mount_point.display(), "mounted the net_cls cgroup hierarchy");
    let hierarchies = host.detect()?;
    if !hierarchies.has(Controller::NetCls) {
        return Err(NetClsError::NotDetected {
            path: mount_point.to_path_buf(),
        });
    }
    Ok(Found {
        root: CgroupRoot::new(hierarchies, root.value())?,
        mount_point: mount_point.to_path_buf(),
        mounted: true,
    })
}

/// Fails unless `/proc/cgroups` lists net_cls as enabled, so a kernel
/// without it gets a message that says so rather than a bare mount error.
fn check_kernel(host: &dyn Host) -> Result<(), NetClsError> {
    let missing = || NetClsError::NotInKernel {
        path: PathBuf::from(PROC_CGROUPS),
    };
    let text = host.proc_cgroups().map_err(|_| missing())?;
    // "#subsys_name hierarchy num_cgroups enabled"
    let enabled = text.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.first() == Some(&"net_cls") && fields.get(3) == Some(&"1")
    });
    if enabled {
        Ok(())
    } else {
        Err(missing())
    }
}

/// Creates the mount point; an existing one must be an empty directory, so
/// that the mount hides nothing.
fn prepare_mount_point(path: &Path) -> Result<(), NetClsError> {
    let bad = |reason: String| NetClsError::MountPoint {
        path: path.to_path_buf(),
        reason,
    };
    fs::create_dir_all(path).map_err(|e| bad(format!("create: {e}")))?;
    let mut entries = fs::read_dir(path).map_err(|e| bad(format!("read: {e}")))?;
    if entries.next().is_some() {
        return Err(bad(
            "not empty, and no cgroup hierarchy is mounted there".into()
        ));
    }
    Ok(())
}

fn lock(dir: &Path) -> Result<Flock<File>, NetClsError> {
    let err = |source| NetClsError::Lock {
        path: dir.to_path_buf(),
        source,
    };
    let file = File::open(dir).map_err(err)?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| err(errno.into()))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::RefCell;

    use super::*;

    /// A v1 host in a temp dir: memory is mounted; net_cls is mounted once
    /// `mount_cgroup` is called (optionally refusing net_cls alone).
    pub(crate) struct FakeHost {
        pub dir: PathBuf,
        pub proc_cgroups: &'static str,
        pub busy_alone: bool,
        pub v2: bool,
        pub mounts: RefCell<Vec<(PathBuf, String)>>,
    }

    pub(crate) const PROC_CGROUPS_ENABLED: &str = "\
#subsys_name\thierarchy\tnum_cgroups\tenabled
memory\t4\t44\t1
net_cls\t0\t4\t1
net_prio\t0\t4\t1
";

    impl FakeHost {
        pub fn new(dir: &Path) -> Self {
            fs::create_dir_all(dir.join("memory/agent")).unwrap();
            FakeHost {
                dir: dir.to_path_buf(),
                proc_cgroups: PROC_CGROUPS_ENABLED,
                busy_alone: false,
                v2: false,
                mounts: RefCell::new(Vec::new()),
            }
        }

        pub fn mount_point(&self) -> PathBuf {
            self.dir.join("net_cls")
        }

        fn texts(&self) -> (String, String) {
            if self.v2 {
                return (
                    format!(
                        "30 23 0:26 / {} rw - cgroup2 cgroup2 rw\n",
                        self.dir.display()
                    ),
                    "0::/agent\n".into(),
                );
            }
            let mut mountinfo = format!(
                "35 31 0:32 / {} rw - cgroup cgroup rw,memory\n",
                self.dir.join("memory").display()
            );
            let mut cgroup = "4:memory:/agent\n".to_string();
            if let Some((path, options)) = self.mounts.borrow().first() {
                mountinfo += &format!(
                    "43 31 0:39 / {} rw - cgroup cgroup rw,{options}\n",
                    path.display()
                );
                cgroup += &format!("10:{options}:/agent\n");
            }
            (mountinfo, cgroup)
        }

        pub fn root(&self) -> CgroupRoot {
            let (mountinfo, cgroup) = self.texts();
            CgroupRoot::new(
                Hierarchies::from_texts(&mountinfo, &cgroup).unwrap(),
                "berth",
            )
            .unwrap()
        }
    }

    impl Host for FakeHost {
        fn detect(&self) -> Result<Hierarchies, CgroupError> {
            let (mountinfo, cgroup) = self.texts();
            Hierarchies::from_texts(&mountinfo, &cgroup)
        }

        fn proc_cgroups(&self) -> io::Result<String> {
            Ok(self.proc_cgroups.to_string())
        }

        fn mount_cgroup(&self, target: &Path, options: &str) -> io::Result<()> {
            if self.busy_alone && options == "net_cls" {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            // The kernel shows the new hierarchy's root cgroup there.
            fs::create_dir_all(target.join("agent")).unwrap();
            self.mounts
                .borrow_mut()
                .push((target.to_path_buf(), options.to_string()));
            Ok(())
        }
    }

    #[test]
    fn mounts_when_absent_and_finds_it_next_time() {
        let tmp = tempfile::tempdir().unwrap();
        let host = FakeHost::new(tmp.path());
        let root = host.root();
        assert!(!root.has(Controller::NetCls));
        let found = find_or_mount(&root, &host.mount_point(), &host).unwrap();
        assert!(found.mounted);
        assert_eq!(found.mount_point, host.mount_point());
        assert_eq!(
            found.root.dir(Controller::NetCls).unwrap(),
            host.mount_point().join("agent/berth")
        );
        assert_eq!(found.root.value(), "berth");
        assert_eq!(host.mounts.borrow()[0].1, "net_cls");

        // A root detected after the mount, or a second agent: no new mount.
        let again = find_or_mount(&root, &host.mount_point(), &host).unwrap();
        assert!(!again.mounted);
        let fresh = find_or_mount(&host.root(), &host.mount_point(), &host).unwrap();
        assert!(!fresh.mounted);
        assert_eq!(host.mounts.borrow().len(), 1);
    }

    #[test]
    fn falls_back_to_co_mounting_net_prio_when_busy() {
        let tmp = tempfile::tempdir().unwrap();
        let host = FakeHost {
            busy_alone: true,
            ..FakeHost::new(tmp.path())
        };
        let found = find_or_mount(&host.root(), &host.mount_point(), &host).unwrap();
        assert!(found.mounted);
        assert_eq!(host.mounts.borrow()[0].1, "net_cls,net_prio");
        assert!(found.root.has(Controller::NetPrio));
    }

    #[test]
    fn a_kernel_without_net_cls_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let host = FakeHost {
            proc_cgroups: "#subsys_name\thierarchy\tnum_cgroups\tenabled\nnet_cls\t0\t1\t0\n",
            ..FakeHost::new(tmp.path())
        };
        let err = find_or_mount(&host.root(), &host.mount_point(), &host).unwrap_err();
        assert!(matches!(err, NetClsError::NotInKernel { .. }), "{err}");
        assert!(err.to_string().contains("/proc/cgroups"), "{err}");
        assert!(host.mounts.borrow().is_empty());
    }

    #[test]
    fn a_non_empty_mount_point_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let host = FakeHost::new(tmp.path());
        fs::create_dir_all(host.mount_point()).unwrap();
        fs::write(host.mount_point().join("data"), "x").unwrap();
        let err = find_or_mount(&host.root(), &host.mount_point(), &host).unwrap_err();
        assert!(matches!(err, NetClsError::MountPoint { .. }), "{err}");
        assert!(host.mounts.borrow().is_empty());
    }

    #[test]
    fn v2_is_refused_without_mounting() {
        let tmp = tempfile::tempdir().unwrap();
        let host = FakeHost {
            v2: true,
            ..FakeHost::new(tmp.path())
        };
        let err = find_or_mount(&host.root(), &host.mount_point(), &host).unwrap_err();
        assert!(matches!(err, NetClsError::CgroupV2), "{err}");
        assert!(host.mounts.borrow().is_empty());
        assert!(!host.mount_point().exists());
    }
}
