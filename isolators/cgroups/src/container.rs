use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::kept_files::{KeptFiles, KEPT};
use crate::{cgroupfs, CgroupError, CgroupMode, Controller};

/// One container's cgroup: a directory named after the container under the
/// [`crate::CgroupRoot`] of each controller (on v2, one directory for all).
///
/// Creating it does not touch control files; the isolators write what they
/// need, choosing the v1 or v2 file names by [`ContainerCgroup::mode`].
///
/// Its statistics files are kept open between reads (see `kept_files`).
/// Clones share one handle (cloning is a reference count), and the kept
/// files close with the last clone.
#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    inner: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    id: String,
    mode: CgroupMode,
    dirs: BTreeMap<Controller, PathBuf>,
    kept: KeptFiles,
}

/// Two handles are equal when they name the same directories.
impl PartialEq for ContainerCgroup {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&self.inner, &other.inner);
        (&a.id, a.mode, &a.dirs) == (&b.id, b.mode, &b.dirs)
    }
}

impl Eq for ContainerCgroup {}

impl ContainerCgroup {
    pub(crate) fn new(id: String, mode: CgroupMode, dirs: BTreeMap<Controller, PathBuf>) -> Self {
        ContainerCgroup {
            inner: Arc::new(Handle {
                id,
                mode,
                dirs,
                kept: KeptFiles::default(),
            }),
        }
    }

    /// The container id (the cgroup's directory name).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The cgroup version in use.
    pub fn mode(&self) -> CgroupMode {
        self.inner.mode
    }

    /// The cgroup directory for `controller`.
    pub fn path(&self, controller: Controller) -> Result<&Path, CgroupError> {
        self.inner
            .dirs
            .get(&controller)
            .map(PathBuf::as_path)
            .ok_or_else(|| controller.missing(self.inner.mode))
    }

    /// The distinct directories of `controllers`: co-mounted v1 controllers,
    /// and all controllers on v2, share one.
    pub fn paths(&self, controllers: &[Controller]) -> Result<Vec<&Path>, CgroupError> {
        let mut out: Vec<&Path> = Vec::new();
        for controller in controllers {
            let path = self.path(*controller)?;
            if !out.contains(&path) {
                out.push(path);
            }
        }
        Ok(out)
    }

    /// The path of a control file of `controller`.
    pub fn file_path(&self, controller: Controller, file: &str) -> Result<PathBuf, CgroupError> {
        Ok(self.path(controller)?.join(file))
    }

    /// Creates the cgroup directory for `controller` (an existing one is fine).
    pub fn create(&self, controller: Controller) -> Result<(), CgroupError> {
        cgroupfs::create_dir(self.path(controller)?)
    }

    /// Creates the cgroup directories of `controllers` (existing ones are
    /// fine). If one fails, those created before it are removed again (best
    /// effort) and its error is returned.
    pub fn create_all(&self, controllers: &[Controller]) -> Result<(), CgroupError> {
        for (i, controller) in controllers.iter().enumerate() {
            if let Err(e) = self.create(*controller) {
                let _ = self.remove_all(&controllers[..i]);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Creates the cgroup directories of `controllers`, then runs `set_up`
    /// on the cgroup (writing its limits). If either fails, the directories
    /// are removed again (best effort: the original error matters more) and
    /// the error is returned: what an isolator's prepare needs.
    pub fn create_all_with<T, E>(
        &self,
        controllers: &[Controller],
        set_up: impl FnOnce(&Self) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<CgroupError>,
    {
        self.create_all(controllers)?;
        set_up(self).inspect_err(|_| {
            let _ = self.remove_all(controllers);
        })
    }

    /// Whether the cgroup directory for `controller` exists.
    pub fn exists(&self, controller: Controller) -> bool {
        self.path(controller).is_ok_and(Path::is_dir)
    }

    /// Whether the control file exists (optional kernel features such as
    /// `memory.memsw.limit_in_bytes` or `cpu.cfs_quota_us`).
    pub fn has_file(&self, controller: Controller, file: &str) -> bool {
        self.file_path(controller, file).is_ok_and(|p| p.exists())
    }

    /// Writes `value` to a control file; the error names the file and value.
    pub fn write(
        &self,
        controller: Controller,
        file: &str,
        value: &str,
    ) -> Result<(), CgroupError> {
        cgroupfs::write(&self.file_path(controller, file)?, value)
    }

    /// Writes each of `values` to a control file, one `write(2)` per value
    /// through a single open (cgroup v1's `devices.allow` takes one rule
    /// per write); the error names the file and the value that failed.
    pub fn write_each(
        &self,
        controller: Controller,
        file: &str,
        values: &[impl AsRef<str>],
    ) -> Result<(), CgroupError> {
        cgroupfs::write_each(&self.file_path(controller, file)?, values)
    }

    /// Reads a control file (a statistics file through its kept file).
    pub fn read(&self, controller: Controller, file: &str) -> Result<String, CgroupError> {
        self.read_path(file, &self.file_path(controller, file)?)
    }

    fn read_path(&self, file: &str, path: &Path) -> Result<String, CgroupError> {
        if KEPT.contains(&file) {
            self.inner.kept.read(path)
        } else {
            cgroupfs::read(path)
        }
    }

    /// Reads a control file holding one unsigned integer.
    pub fn read_u64(&self, controller: Controller, file: &str) -> Result<u64, CgroupError> {
        let path = self.file_path(controller, file)?;
        cgroupfs::parse_u64(&path, &self.read_path(file, &path)?)
    }

    /// Reads a flat keyed file (`key value` lines, as `cpu.stat`,
    /// `memory.stat`, `memory.events`).
    pub fn read_keyed(
        &self,
        controller: Controller,
        file: &str,
    ) -> Result<BTreeMap<String, u64>, CgroupError> {
        let path = self.file_path(controller, file)?;
        cgroupfs::parse_keyed(&path, &self.read_path(file, &path)?)
    }

    /// Reads the values of `keys` from a flat keyed file, `None` for a key
    /// it lacks (cheaper than [`ContainerCgroup::read_keyed`] when a few of
    /// many keys are wanted).
    pub fn read_keys<const N: usize>(
        &self,
        controller: Controller,
        file: &str,
        keys: [&str; N],
    ) -> Result<[Option<u64>; N], CgroupError> {
        let path = self.file_path(controller, file)?;
        cgroupfs::parse_keys(&path, &self.read_path(file, &path)?, keys)
    }

    /// Moves a process (with all its threads) into the cgroup of `controller`.
    pub fn add_process(&self, controller: Controller, pid: u32) -> Result<(), CgroupError> {
        self.write(controller, "cgroup.procs", &pid.to_string())
    }

    /// Moves a process into the cgroups of all `controllers` (each shared
    /// directory once).
    pub fn add_process_all(&self, controllers: &[Controller], pid: u32) -> Result<(), CgroupError> {
        for path in self.paths(controllers)? {
            cgroupfs::write(&path.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The processes in the cgroup of `controller`.
    pub fn pids(&self, controller: Controller) -> Result<Vec<u32>, CgroupError> {
        let path = self.file_path(controller, "cgroup.procs")?;
        let text = cgroupfs::read(&path)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                cgroupfs::parse_u64(&path, l)
                    .and_then(|pid| u32::try_from(pid).map_err(|_| pid_error(&path, l)))
            })
            .collect()
    }

    /// Removes the cgroup directory of `controller`: a missing one is fine,
    /// a busy one is retried for about 2 s (tasks being torn down), then an
    /// error naming the path.
    pub fn remove(&self, controller: Controller) -> Result<(), CgroupError> {
        cgroupfs::remove_dir(self.path(controller)?)
    }

    /// Removes the directories of all `controllers` (each shared directory
    /// once), trying all of them; returns the first error.
    pub fn remove_all(&self, controllers: &[Controller]) -> Result<(), CgroupError> {
        let mut first = None;
        for path in self.paths(controllers)? {
            if let Err(e) = cgroupfs::remove_dir(path) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

fn pid_error(path: &Path, line: &str) -> CgroupError {
    CgroupError::Parse {
        path: path.to_path_buf(),
        value: line.to_string(),
        reason: "pid out of range".into(),
    }
}
