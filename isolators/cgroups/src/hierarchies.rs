//! Which cgroup hierarchies are mounted where, and the process' own cgroup
//! in each of them.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::{mountinfo, proc_cgroup, CgroupError, Controller};

/// Which cgroup version the controllers are used through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupMode {
    /// Legacy or hybrid: one hierarchy per controller (or per co-mounted
    /// group of controllers). A hybrid host's empty unified hierarchy is
    /// ignored.
    V1,
    /// Unified: one hierarchy with every controller.
    V2,
}

impl fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupMode::V1 => "v1",
            CgroupMode::V2 => "v2",
        })
    }
}

/// One mounted hierarchy and the process' place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    /// A name for messages: the controller list, or `unified`.
    pub label: String,
    pub mount_point: PathBuf,
    /// The cgroup of the hierarchy shown at `mount_point`.
    pub mount_root: String,
    /// The process' own cgroup, relative to the hierarchy root.
    pub own: Option<String>,
}

impl Hierarchy {
    /// The directory of the process' own cgroup.
    pub fn own_dir(&self) -> Result<PathBuf, CgroupError> {
        let own = self
            .own
            .as_deref()
            .ok_or_else(|| CgroupError::OwnCgroupUnknown {
                hierarchy: self.label.clone(),
            })?;
        // /proc/self/cgroup paths are relative to the hierarchy's root, but
        // the mount may show only a subtree (a bind-mounted container
        // cgroup): strip the mount's root to get the path below the mount.
        let below = if self.mount_root == "/" {
            Some(own.trim_start_matches('/'))
        } else {
            own.strip_prefix(self.mount_root.as_str())
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                .map(|rest| rest.trim_start_matches('/'))
        };
        match below {
            Some(rest) if !rest.split('/').any(|c| c == "..") => Ok(self.mount_point.join(rest)),
            _ => Err(CgroupError::OutsideMount {
                hierarchy: self.label.clone(),
                own: own.to_string(),
                mount_root: self.mount_root.clone(),
            }),
        }
    }
}

/// The cgroup layout of a host as seen by this process: the mode, the
/// mounted hierarchies and the process' own cgroup in each.
///
/// ```
/// use berth_cgroups::{CgroupMode, Controller, Hierarchies};
///
/// let mountinfo = "\
/// 32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
/// 33 31 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
/// 41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
/// ";
/// let cgroup = "2:cpu,cpuacct:/\n1:memory:/agent\n0::/\n";
/// let h = Hierarchies::from_texts(mountinfo, cgroup).unwrap();
/// assert_eq!(h.mode(), CgroupMode::V1);
/// assert_eq!(h.own_dir(Controller::Memory).unwrap().to_str(), Some("/sys/fs/cgroup/memory/agent"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchies {
    mode: CgroupMode,
    /// v1: the hierarchy of each mounted controller (co-mounted controllers
    /// share one).
    v1: BTreeMap<Controller, Hierarchy>,
    /// v2: the unified hierarchy.
    unified: Option<Hierarchy>,
}

impl Hierarchies {
    /// Reads `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub fn detect() -> Result<Self, CgroupError> {
        Self::from_files(
            Path::new("/proc/self/mountinfo"),
            Path::new("/proc/self/cgroup"),
        )
    }

    /// Reads a mountinfo file and a `/proc/<pid>/cgroup` file.
    pub fn from_files(mountinfo: &Path, cgroup: &Path) -> Result<Self, CgroupError> {
        let read = |path: &Path| {
            fs::read_to_string(path).map_err(|source| CgroupError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        Self::from_texts(&read(mountinfo)?, &read(cgroup)?)
    }

    /// Builds the layout from the texts of a mountinfo file and a
    /// `/proc/<pid>/cgroup` file; the mount points in `mountinfo` may be
    /// anywhere (tests point them into a temporary directory).
    pub fn from_texts(mountinfo: &str, cgroup: &str) -> Result<Self, CgroupError> {
        let mounts = mountinfo::parse(mountinfo)?;
        let own = proc_cgroup::parse(cgroup)?;
        let mut v1 = BTreeMap::new();
        let mut unified = None;
        for mount in mounts {
            if mount.unified {
                if unified.is_none() {
                    unified = Some(Hierarchy {
                        label: "unified".into(),
                        mount_point: mount.mount_point,
                        mount_root: mount.root,
                        own: own
                            .iter()
                            .find(|o| o.unified && o.hierarchy_id == 0)
                            .map(|o| o.path.clone()),
                    });
                }
                continue;
            }
            if mount.controllers.is_empty() {
                continue;
            }
            let label = mount
                .controllers
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(",");
            // A hierarchy's line in /proc/self/cgroup names the same
            // controllers as its mount's super options.
            let hierarchy = Hierarchy {
                label,
                mount_point: mount.mount_point,
                mount_root: mount.root,
                own: own
                    .iter()
                    .find(|o| o.controllers == mount.controllers)
                    .map(|o| o.path.clone()),
            };
            for controller in &mount.controllers {
                // The same hierarchy may be mounted twice: the first wins.
                v1.entry(*controller).or_insert_with(|| hierarchy.clone());
            }
        }
        let mode = if !v1.is_empty() {
            CgroupMode::V1
        } else if unified.is_some() {
            CgroupMode::V2
        } else {
            return Err(CgroupError::NoCgroupMounts);
        };
        if mode == CgroupMode::V1 {
            unified = None;
        }
        Ok(Hierarchies { mode, v1, unified })
    }

    /// The mode the controllers are used through.
    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// Whether `controller` can be used (mounted on v1, existing on v2).
    pub fn has(&self, controller: Controller) -> bool {
        self.hierarchy(controller).is_ok()
    }

    /// The mount point of the hierarchy serving `controller`.
    pub fn mount_point(&self, controller: Controller) -> Result<&Path, CgroupError> {
        self.hierarchy(controller).map(|h| h.mount_point.as_path())
    }

    /// The directory of this process' own cgroup for `controller`.
    pub fn own_dir(&self, controller: Controller) -> Result<PathBuf, CgroupError> {
        self.hierarchy(controller)?.own_dir()
    }

    pub(crate) fn hierarchy(&self, controller: Controller) -> Result<&Hierarchy, CgroupError> {
        let found = match self.mode {
            CgroupMode::V1 => self.v1.get(&controller),
            CgroupMode::V2 => match controller.on_v2() {
                crate::controller::OnV2::Missing => None,
                _ => self.unified.as_ref(),
            },
        };
        found.ok_or_else(|| controller.missing(self.mode))
    }

    /// The controllers that can be used, in a stable order.
    pub fn controllers(&self) -> Vec<Controller> {
        Controller::ALL
            .into_iter()
            .filter(|c| self.has(*c))
            .collect()
    }

    /// The v1 hierarchies by controller (co-mounted ones repeat).
    pub(crate) fn v1_hierarchies(&self) -> impl Iterator<Item = (Controller, &Hierarchy)> {
        self.v1.iter().map(|(c, h)| (*c, h))
    }

    /// The unified hierarchy, when the controllers are used through it.
    pub(crate) fn unified_hierarchy(&self) -> Option<&Hierarchy> {
        self.unified.as_ref()
    }

    /// The process' own cgroup directory in every mounted hierarchy that
    /// serves a known controller, and in the unified one: where a process
    /// must go to be in the same cgroups (one entry per hierarchy).
    pub fn own_dirs(&self) -> Result<Vec<PathBuf>, CgroupError> {
        let mut dirs = Vec::new();
        for hierarchy in self.v1.values().chain(self.unified.as_ref()) {
            let dir = hierarchy.own_dir()?;
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        Ok(dirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_OWN: &str = "\
9:name=systemd:/
4:memory:/process_api/4b2e9178e174a022d66d97fceb57b809
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn hybrid_with_empty_unified_is_v1() {
        let h = Hierarchies::from_texts(HYBRID, HYBRID_OWN).unwrap();
        assert_eq!(h.mode(), CgroupMode::V1);
        assert_eq!(
            h.controllers(),
            vec![Controller::Cpu, Controller::Cpuacct, Controller::Memory]
        );
        assert_eq!(
            h.own_dir(Controller::Cpu).unwrap(),
            PathBuf::from("/sys/fs/cgroup/cpu")
        );
        assert_eq!(
            h.own_dir(Controller::Memory).unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/4b2e9178e174a022d66d97fceb57b809")
        );
        assert!(matches!(
            h.own_dir(Controller::Blkio),
            Err(CgroupError::NotMounted {
                controller: Controller::Blkio
            })
        ));
    }

    #[test]
    fn pure_v2() {
        let mountinfo = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let h = Hierarchies::from_texts(mountinfo, "0::/system.slice/berth.service\n").unwrap();
        assert_eq!(h.mode(), CgroupMode::V2);
        assert_eq!(
            h.own_dir(Controller::Memory).unwrap(),
            PathBuf::from("/sys/fs/cgroup/system.slice/berth.service")
        );
        assert_eq!(
            h.own_dir(Controller::Cpuacct).unwrap(),
            h.own_dir(Controller::Cpu).unwrap()
        );
        assert!(matches!(
            h.own_dir(Controller::NetCls),
            Err(CgroupError::NotOnV2 { .. })
        ));
    }

    #[test]
    fn bind_mounted_subtree_strips_the_mount_root() {
        let mountinfo =
            "39 31 0:36 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let h = Hierarchies::from_texts(mountinfo, "4:memory:/docker/abc/inner\n").unwrap();
        assert_eq!(
            h.own_dir(Controller::Memory).unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory/inner")
        );
        let h = Hierarchies::from_texts(mountinfo, "4:memory:/docker/abcd\n").unwrap();
        assert!(matches!(
            h.own_dir(Controller::Memory),
            Err(CgroupError::OutsideMount { .. })
        ));
        let h = Hierarchies::from_texts(mountinfo, "4:memory:/../x\n").unwrap();
        assert!(h.own_dir(Controller::Memory).is_err());
    }

    #[test]
    fn no_cgroup_mounts_is_an_error() {
        let mountinfo = "22 1 0:21 / /proc rw - proc proc rw\n";
        assert!(matches!(
            Hierarchies::from_texts(mountinfo, ""),
            Err(CgroupError::NoCgroupMounts)
        ));
    }

    #[test]
    fn detects_this_host() {
        // Whatever the host, detection must succeed where cgroups are mounted.
        if Path::new("/sys/fs/cgroup").exists() {
            let h = Hierarchies::detect().unwrap();
            assert!(!h.controllers().is_empty());
        }
    }
}
