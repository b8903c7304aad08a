//! A fake cgroupfs for the tests of cgroup-based isolators (feature `fake`).
//!
//! A [`FakeCgroupfs`] is a temporary directory of plain directories and
//! files standing in for the kernel's, with the mountinfo and
//! `/proc/self/cgroup` texts that make a [`CgroupRoot`] use it. The kernel's
//! part is played by the test: it writes the control files a `mkdir` would
//! bring ([`write_files`]) and deletes them before an `rmdir`
//! ([`forget_files`]), since a plain directory with files cannot be removed.
//!
//! ```
//! use berth_cgroups::fake::{self, FakeCgroupfs};
//! use berth_cgroups::Controller;
//!
//! let mut host = FakeCgroupfs::new();
//! let mount = host.mount_v1("memory", "/agent");
//! let root = host.root("berth"); // below the agent's own cgroup
//! root.ensure(&[Controller::Memory])?;
//!
//! // What mkdir of the container's cgroup would create in the kernel.
//! let dir = mount.join("agent/berth/web-1");
//! fake::write_files(&dir, &[("cgroup.procs", ""), ("memory.limit_in_bytes", "max")]);
//! let cgroup = root.container("web-1")?;
//! cgroup.write(Controller::Memory, "memory.limit_in_bytes", "67108864")?;
//! assert_eq!(fake::read(dir.join("memory.limit_in_bytes")), "67108864");
//!
//! fake::forget_files(&dir);
//! cgroup.remove(Controller::Memory)?;
//! assert!(!dir.exists());
//! # Ok::<(), berth_cgroups::CgroupError>(())
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_isolator::ContainerId;

use crate::{CgroupRoot, Hierarchies};

/// What the root of a fake v2 hierarchy offers, as a host's would.
const V2_ROOT_CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids";

/// A fake cgroup host in a temporary directory (removed on drop): the
/// mounted hierarchies and the test process' own cgroup in each.
#[derive(Debug)]
pub struct FakeCgroupfs {
    dir: tempfile::TempDir,
    mountinfo: String,
    proc_cgroup: String,
    /// The id of the next mount (and v1 hierarchy).
    next_id: u32,
}

impl FakeCgroupfs {
    /// A host with nothing mounted yet; see [`FakeCgroupfs::mount_v1`].
    ///
    /// # Panics
    ///
    /// If the temporary directory cannot be created.
    pub fn new() -> Self {
        FakeCgroupfs {
            dir: tempfile::tempdir().expect("create a temporary directory for a fake cgroupfs"),
            mountinfo: String::new(),
            proc_cgroup: String::new(),
            next_id: 32,
        }
    }

    /// A cgroup v2 host: the unified hierarchy mounted at [`FakeCgroupfs::path`],
    /// whose root offers the usual controllers, and the process in cgroup
    /// `own` (`"/agent"`), which offers `offered` (`"cpu memory"`) to its
    /// children. Both have an empty `cgroup.subtree_control`.
    ///
    /// # Panics
    ///
    /// If the files cannot be written.
    pub fn v2(own: &str, offered: &str) -> Self {
        let mut host = FakeCgroupfs::new();
        let root = host.path().to_path_buf();
        write_files(
            &root,
            &[
                ("cgroup.controllers", V2_ROOT_CONTROLLERS),
                ("cgroup.subtree_control", ""),
            ],
        );
        write_files(
            &host.own_dir(&root, own),
            &[
                ("cgroup.controllers", offered),
                ("cgroup.subtree_control", ""),
            ],
        );
        host.add_mount(&root, "cgroup2", "rw,nsdelegate");
        host.proc_cgroup += &format!("0::{own}\n");
        host
    }

    /// Mounts a v1 hierarchy of `controllers` (comma-separated as in the
    /// mount's options: `"cpu,cpuacct"`) at `<path>/<controllers>`, with the
    /// process in its cgroup `own` (`"/"`, `"/agent"`). Creates the mount
    /// point and the own cgroup; returns the mount point.
    ///
    /// # Panics
    ///
    /// If the directories cannot be created.
    pub fn mount_v1(&mut self, controllers: &str, own: &str) -> PathBuf {
        let mount = self.path().join(controllers);
        fs::create_dir_all(self.own_dir(&mount, own))
            .unwrap_or_else(|e| panic!("create {}: {e}", mount.display()));
        self.add_mount(&mount, "cgroup", &format!("rw,{controllers}"));
        self.proc_cgroup += &format!("{}:{controllers}:{own}\n", self.next_id);
        mount
    }

    fn own_dir(&self, mount: &Path, own: &str) -> PathBuf {
        mount.join(own.trim_start_matches('/'))
    }

    fn add_mount(&mut self, mount_point: &Path, fstype: &str, options: &str) {
        self.next_id += 1;
        self.mountinfo += &mountinfo_line(self.next_id, mount_point, fstype, options);
    }

    /// The temporary directory holding the tree.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The host's `/proc/self/mountinfo` text (its cgroup mounts).
    pub fn mountinfo(&self) -> &str {
        &self.mountinfo
    }

    /// The host's `/proc/self/cgroup` text.
    pub fn proc_cgroup(&self) -> &str {
        &self.proc_cgroup
    }

    /// The host's layout.
    ///
    /// # Panics
    ///
    /// If nothing is mounted.
    pub fn hierarchies(&self) -> Hierarchies {
        Hierarchies::from_texts(&self.mountinfo, &self.proc_cgroup)
            .unwrap_or_else(|e| panic!("fake cgroupfs layout: {e}"))
    }

    /// The `--cgroup-root` `value` on this host (not created yet), shared
    /// the way isolators take it.
    ///
    /// # Panics
    ///
    /// If `value` is not a valid root, or the host has no own cgroup for a
    /// relative one.
    pub fn root(&self, value: &str) -> Arc<CgroupRoot> {
        let root = CgroupRoot::new(self.hierarchies(), value)
            .unwrap_or_else(|e| panic!("fake cgroup root {value:?}: {e}"));
        Arc::new(root)
    }
}

impl Default for FakeCgroupfs {
    fn default() -> Self {
        Self::new()
    }
}

/// One line of `/proc/self/mountinfo` for a filesystem of type `fstype`
/// (`cgroup`, `cgroup2`) mounted at `mount_point` with super options
/// `options` (`rw,cpu,cpuacct`); `id` numbers the mount and its device.
pub fn mountinfo_line(id: u32, mount_point: &Path, fstype: &str, options: &str) -> String {
    format!(
        "{id} 31 0:{id} / {} rw,relatime - {fstype} {fstype} {options}\n",
        mount_point.display()
    )
}

/// Creates `dir` (and its parents) with `files`, as `(name, content)`:
/// what the kernel's `mkdir` of a cgroup would bring.
///
/// # Panics
///
/// If a directory or file cannot be written.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    for (name, content) in files {
        let path = dir.join(name);
        fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// The content of a file.
///
/// # Panics
///
/// If it cannot be read; the message names the file.
pub fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Plays the kernel's part in `rmdir`: the pseudo files of cgroup `dir` go
/// with the directory, so they are deleted first. A missing `dir` is fine.
///
/// # Panics
///
/// If a file cannot be deleted.
pub fn forget_files(dir: &Path) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let path = entry.path();
            fs::remove_file(&path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
        }
    }
}

/// Asserts that the dirs `isolator.joinable_cgroups(id)` names are the
/// ones whose `cgroup.procs` its `isolate` wrote `pid` to: where the
/// process moves itself (decision 0047), it lands where `isolate` would
/// have put it.
pub fn assert_joinable_where_isolated(
    isolator: &dyn berth_isolator::Isolator,
    id: &ContainerId,
    pid: u32,
) {
    let joinable = isolator.joinable_cgroups(id).unwrap();
    assert!(
        !joinable.is_empty(),
        "{}: no joinable cgroup",
        isolator.name()
    );
    for dir in joinable {
        assert_eq!(
            read(dir.join("cgroup.procs")),
            pid.to_string(),
            "{}",
            dir.display()
        );
    }
}

/// A container id.
///
/// # Panics
///
/// If `s` is not a valid id.
pub fn id(s: &str) -> ContainerId {
    ContainerId::new(s).unwrap_or_else(|e| panic!("{e}"))
}
