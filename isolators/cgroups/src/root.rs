use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::controller::OnV2;
use crate::{cgroupfs, CgroupError, CgroupMode, ContainerCgroup, Controller, Hierarchies};

/// The default `--cgroup-root`: `/berth` below the root of each hierarchy.
pub const DEFAULT_CGROUP_ROOT: &str = "/berth";

/// The leaf cgroup v2 the agent moves itself into, below its own (delegated)
/// cgroup, so that the delegated cgroup has no processes of its own and can
/// enable controllers for its children (the "no internal processes" rule).
/// A process found already in a cgroup of this name takes the parent as its
/// delegation point (threads of one agent, and the processes it spawns).
pub const AGENT_LEAF: &str = "berth-agent";

/// Where berth's container cgroups live, from the `--cgroup-root` value.
///
/// - A value starting with `/` is a path below the root of each hierarchy
///   (below the mount point: in a cgroup namespace or a bind-mounted
///   subtree, that is the visible root).
/// - Any other value is relative to the agent's *own* cgroup in each
///   hierarchy: what systemd `Delegate=yes` calls for, and what tests use so
///   that nothing leaves the cgroup the machine put them in.
///
/// ```
/// use berth_cgroups::{CgroupRoot, Controller, Hierarchies};
///
/// let h = Hierarchies::from_texts(
///     "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
///     "4:memory:/agent\n",
/// )
/// .unwrap();
/// let relative = CgroupRoot::new(h.clone(), "berth").unwrap();
/// assert_eq!(relative.dir(Controller::Memory).unwrap().to_str(), Some("/sys/fs/cgroup/memory/agent/berth"));
/// let absolute = CgroupRoot::new(h.clone(), "/berth").unwrap();
/// assert_eq!(absolute.dir(Controller::Memory).unwrap().to_str(), Some("/sys/fs/cgroup/memory/berth"));
/// assert_eq!(absolute.oci_cgroups_path("web-1"), "/berth/web-1");
/// assert!(CgroupRoot::new(h, "a/../b").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRoot {
    hierarchies: Hierarchies,
    value: String,
    /// The path components of the value.
    components: Vec<String>,
    /// For each usable controller: the delegation point (the hierarchy's
    /// visible root, or the agent's own cgroup) and the root directory.
    dirs: BTreeMap<Controller, (PathBuf, PathBuf)>,
}

impl CgroupRoot {
    /// A root for `value` in the given layout.
    pub fn new(hierarchies: Hierarchies, value: &str) -> Result<Self, CgroupError> {
        let components = validate(value)?;
        let relative = !value.starts_with('/');
        if relative && hierarchies.mode() == CgroupMode::V2 && components[0] == AGENT_LEAF {
            return Err(CgroupError::InvalidRoot {
                value: value.to_string(),
                reason:
                    "must not start with \"berth-agent\", the agent's own leaf cgroup on cgroup v2",
            });
        }
        let mut dirs = BTreeMap::new();
        for controller in hierarchies.controllers() {
            let hierarchy = hierarchies.hierarchy(controller)?;
            let base = if relative {
                let own = hierarchy.own_dir()?;
                match own.parent() {
                    Some(parent)
                        if hierarchies.mode() == CgroupMode::V2
                            && own.file_name().is_some_and(|n| n == AGENT_LEAF)
                            && parent.starts_with(&hierarchy.mount_point) =>
                    {
                        parent.to_path_buf()
                    }
                    _ => own,
                }
            } else {
                hierarchy.mount_point.clone()
            };
            let dir = components.iter().fold(base.clone(), |d, c| d.join(c));
            dirs.insert(controller, (base, dir));
        }
        Ok(CgroupRoot {
            hierarchies,
            value: value.to_string(),
            components,
            dirs,
        })
    }

    /// A root for `value` in this host's layout, as seen by this process.
    pub fn detect(value: &str) -> Result<Self, CgroupError> {
        Self::new(Hierarchies::detect()?, value)
    }

    /// The cgroup version in use.
    pub fn mode(&self) -> CgroupMode {
        self.hierarchies.mode()
    }

    /// The `--cgroup-root` value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the root is relative to the agent's own cgroup.
    pub fn is_relative(&self) -> bool {
        !self.value.starts_with('/')
    }

    /// The host's layout.
    pub fn hierarchies(&self) -> &Hierarchies {
        &self.hierarchies
    }

    /// Whether `controller` can be used on this host.
    pub fn has(&self, controller: Controller) -> bool {
        self.dirs.contains_key(&controller)
    }

    /// The root directory for `controller`.
    pub fn dir(&self, controller: Controller) -> Result<&Path, CgroupError> {
        self.entry(controller).map(|(_, dir)| dir.as_path())
    }

    fn entry(&self, controller: Controller) -> Result<&(PathBuf, PathBuf), CgroupError> {
        self.dirs
            .get(&controller)
            .ok_or_else(|| controller.missing(self.mode()))
    }

    /// Creates the root directories of `controllers`. On v2 it also enables
    /// the controllers in `cgroup.subtree_control` from the delegation point
    /// down to the root itself, so that container cgroups get them; a
    /// controller the delegation point is not offered is an error.
    pub fn ensure(&self, controllers: &[Controller]) -> Result<(), CgroupError> {
        match self.mode() {
            CgroupMode::V1 => {
                for controller in controllers {
                    let (base, dir) = self.entry(*controller)?;
                    self.create_chain(base, dir)?;
                }
                Ok(())
            }
            CgroupMode::V2 => self.ensure_v2(controllers),
        }
    }

    fn create_chain(&self, base: &Path, dir: &Path) -> Result<(), CgroupError> {
        let mut path = base.to_path_buf();
        for component in &self.components {
            path.push(component);
            cgroupfs::create_dir(&path)?;
        }
        debug_assert_eq!(path, dir);
        Ok(())
    }

    /// On v2: `pids` is enabled with whatever is asked for when offered, so
    /// that every container gets `pids.max`. With a relative root below a
    /// non-root cgroup, the agent first moves itself into [`AGENT_LEAF`].
    /// On failure, the controllers this call enabled are disabled again.
    fn ensure_v2(&self, controllers: &[Controller]) -> Result<(), CgroupError> {
        let mut needed = BTreeSet::new();
        for controller in controllers {
            self.entry(*controller)?;
            if let OnV2::Enable(name) = controller.on_v2() {
                needed.insert(name);
            }
        }
        // All controllers share the unified directory.
        let Some((base, dir)) = self.dirs.values().next() else {
            return Ok(());
        };
        let offered_path = base.join("cgroup.controllers");
        let offered = cgroupfs::read(&offered_path)?;
        let offered: BTreeSet<&str> = offered.split_whitespace().collect();
        if let Some(missing) = needed.iter().find(|n| !offered.contains(*n)) {
            return Err(CgroupError::Unavailable {
                controller: missing.to_string(),
                path: offered_path,
            });
        }
        if !needed.is_empty() && offered.contains("pids") {
            needed.insert("pids");
        }
        let mount_point = &self.hierarchies.hierarchy(Controller::Memory)?.mount_point;
        if self.is_relative() && base != mount_point {
            self.leave_delegation_point(base)?;
        }
        self.create_chain(base, dir)?;
        let mut enabled = Vec::new();
        let mut path = base.clone();
        let mut result = enable(&path, &needed, &mut enabled);
        for component in &self.components {
            if result.is_err() {
                break;
            }
            path.push(component);
            result = enable(&path, &needed, &mut enabled);
        }
        if result.is_ok() && self.is_relative() {
            result = check_domain(base);
        }
        if result.is_err() {
            // Children first: a parent cannot drop what a child still uses.
            for (path, added) in enabled.iter().rev() {
                let undo: Vec<String> = added.iter().map(|c| format!("-{c}")).collect();
                let _ = cgroupfs::write(path, &undo.join(" "));
            }
        }
        result
    }

    /// Moves this process into `<base>/berth-agent`, so that `base` (the agent's
    /// delegated cgroup) has no processes of its own; any other process
    /// left in `base` is an error, and this process goes back.
    fn leave_delegation_point(&self, base: &Path) -> Result<(), CgroupError> {
        // A thread root or threaded cgroup can host no domain controllers
        // (and its leaf would take no process): say so before touching it.
        check_domain(base)?;
        let procs_path = base.join("cgroup.procs");
        let me = std::process::id().to_string();
        let others = |text: &str| -> Vec<String> {
            text.split_whitespace()
                .filter(|p| *p != me)
                .map(String::from)
                .collect()
        };
        let before = match fs::read_to_string(&procs_path) {
            Ok(text) => text,
            // A fake tree without the file: nothing to move.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(CgroupError::Read {
                    path: procs_path,
                    source,
                })
            }
        };
        if before.split_whitespace().any(|p| p == me) {
            let leaf = base.join(AGENT_LEAF);
            cgroupfs::create_dir(&leaf)?;
            cgroupfs::write(&leaf.join("cgroup.procs"), &me)?;
        }
        let left = others(&cgroupfs::read(&procs_path)?);
        if left.is_empty() {
            return Ok(());
        }
        if before.split_whitespace().any(|p| p == me) {
            let _ = cgroupfs::write(&procs_path, &me);
        }
        Err(CgroupError::OtherProcesses {
            path: base.to_path_buf(),
            pids: left.join(" "),
        })
    }

    /// Removes the root directories with every cgroup below them, and the
    /// intermediate directories of a multi-component value where they are
    /// empty (for test cleanup; the agent leaves its root in place).
    pub fn remove(&self) -> Result<(), CgroupError> {
        let mut done = BTreeSet::new();
        for (base, dir) in self.dirs.values() {
            if !done.insert(dir) {
                continue;
            }
            cgroupfs::remove_tree(dir)?;
            let mut parent = dir.parent();
            while let Some(p) = parent.filter(|p| p.starts_with(base) && *p != base) {
                // Shared with someone else when busy: leave it, no retrying.
                if fs::remove_dir(p).is_err() {
                    break;
                }
                parent = p.parent();
            }
        }
        Ok(())
    }

    /// The distinct directories of container `id`'s cgroups for
    /// `controllers` (what an isolator's `joinable_cgroups` returns): the
    /// paths only, nothing is created.
    pub fn container_dirs(
        &self,
        id: &str,
        controllers: &[Controller],
    ) -> Result<Vec<PathBuf>, CgroupError> {
        let cgroup = self.container(id)?;
        let dirs = cgroup.paths(controllers)?;
        Ok(dirs.into_iter().map(Path::to_path_buf).collect())
    }

    /// The cgroup of container `id` (not created yet). `id` must be a single
    /// path component.
    pub fn container(&self, id: &str) -> Result<ContainerCgroup, CgroupError> {
        let reason = if id.is_empty() {
            Some("must not be empty")
        } else if id == "." || id == ".." {
            Some("must not be . or ..")
        } else if id.contains('/') || id.contains('\0') {
            Some("must be a single path component")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(CgroupError::InvalidName {
                name: id.to_string(),
                reason,
            });
        }
        let dirs = self
            .dirs
            .iter()
            .map(|(c, (_, dir))| (*c, dir.join(id)))
            .collect();
        Ok(ContainerCgroup::new(id.to_string(), self.mode(), dirs))
    }

    /// Removes the cgroup directories of container `id` for `controllers`
    /// ([`ContainerCgroup::remove_all`]): a container never created, or
    /// already removed, is fine.
    pub fn remove_container(
        &self,
        id: &str,
        controllers: &[Controller],
    ) -> Result<(), CgroupError> {
        self.container(id)?.remove_all(controllers)
    }

    /// Removes the cgroups of every container in `ids`, as
    /// [`CgroupRoot::remove_container`] does, trying all of them; the error
    /// ([`CgroupError::RemoveContainers`]) names every failure.
    pub fn remove_containers<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        controllers: &[Controller],
    ) -> Result<(), CgroupError> {
        let failures: Vec<CgroupError> = ids
            .into_iter()
            .filter_map(|id| self.remove_container(id, controllers).err())
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(CgroupError::RemoveContainers { failures })
        }
    }

    /// The names of the cgroups directly below the root of `controller`
    /// (for finding leaked container cgroups). A root not created yet has none.
    pub fn children(&self, controller: Controller) -> Result<Vec<String>, CgroupError> {
        let dir = self.dir(controller)?;
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CgroupError::Read {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The `linux.cgroupsPath` of container `id` in an OCI config: the root
    /// value and the id (relative values stay relative, as runc reads them).
    pub fn oci_cgroups_path(&self, id: &str) -> String {
        format!("{}/{}", self.value, id)
    }
}

/// Enables `needed` v2 controllers for the children of `dir`, recording in
/// `enabled` what it turned on (for undoing).
fn enable<'a>(
    dir: &Path,
    needed: &BTreeSet<&'a str>,
    enabled: &mut Vec<(PathBuf, Vec<&'a str>)>,
) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    let current = cgroupfs::read(&path)?;
    // The kernel lists enabled controllers bare ("cpu memory"); a fake tree
    // holds what was last written ("+cpu"): accept both.
    let current: BTreeSet<&str> = current
        .split_whitespace()
        .map(|c| c.trim_start_matches('+'))
        .collect();
    let missing: Vec<&str> = needed
        .iter()
        .filter(|n| !current.contains(*n))
        .copied()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let value: Vec<String> = missing.iter().map(|n| format!("+{n}")).collect();
    let value = value.join(" ");
    match cgroupfs::write(&path, &value) {
        Ok(()) => {
            enabled.push((path, missing));
            Ok(())
        }
        Err(CgroupError::Write { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
            Err(CgroupError::SubtreeBusy { path })
        }
        Err(CgroupError::Write { source, .. })
            if source.raw_os_error() == Some(libc::EOPNOTSUPP) =>
        {
            Err(CgroupError::SubtreeUnsupported { path, value })
        }
        Err(other) => Err(other),
    }
}

/// Fails unless `dir` (a cgroup v2 directory) is a domain cgroup; a fake
/// tree without `cgroup.type` passes.
fn check_domain(dir: &Path) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.type");
    match fs::read_to_string(&path) {
        Ok(kind) if kind.trim() == "domain" => Ok(()),
        Ok(kind) => Err(CgroupError::NotDomain {
            path: dir.to_path_buf(),
            kind: kind.trim().to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CgroupError::Read { path, source }),
    }
}

fn validate(value: &str) -> Result<Vec<String>, CgroupError> {
    let bad = |reason| CgroupError::InvalidRoot {
        value: value.to_string(),
        reason,
    };
    if value.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let rest = value.strip_prefix('/').unwrap_or(value);
    if rest.is_empty() {
        return Err(bad("must name a cgroup below the root"));
    }
    let components: Vec<&str> = rest.split('/').collect();
    if components.iter().any(|c| c.is_empty()) {
        return Err(bad("has an empty path component"));
    }
    if components.contains(&"..") {
        return Err(bad("must not contain .."));
    }
    if components.contains(&".") {
        return Err(bad("must not contain ."));
    }
    Ok(components.into_iter().map(String::from).collect())
}
