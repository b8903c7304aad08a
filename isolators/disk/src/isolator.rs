//! The `disk` isolator: the [`Isolator`] lifecycle over the three backends.

use berth_isolator::TypedSection;
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use berth_isolator::{
    unknown, ContainerConfig, ContainerId, ContainerStates, Contribution, Isolator, IsolatorError,
    Limitation, LimitationReporter, RecoveredContainer, Resources, Status, Usage,
};
use serde_json::{Map, Value};

use crate::du;
use crate::loop_device::LOOP_CONTROL;
use crate::loop_fs::{self, LoopPaths};
use crate::mountinfo;
use crate::quota::{format_bytes, quota_from, FIELD, MAX_LOOP_QUOTA};
use crate::watcher::{Watched, Watcher};
use crate::xfs::{self, XfsQuota};

/// How the disk isolator enforces `resources.disk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBackend {
    /// Periodic accounting of the sandbox; a container over its quota is
    /// ended with reason `disk-limit`.
    Du,
    /// A per-sandbox ext4 image of the quota's size mounted on the sandbox:
    /// writes past the quota fail with ENOSPC and the container goes on.
    /// Needs loop devices and `mkfs.ext4` (e2fsprogs).
    Loop,
    /// XFS project quotas: the work dir must be on XFS mounted with
    /// `prjquota`; writes past the quota fail with EDQUOT.
    Xfs,
}

impl DiskBackend {
    /// The backend's name in the config and in reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            DiskBackend::Du => "du",
            DiskBackend::Loop => "loop",
            DiskBackend::Xfs => "xfs",
        }
    }
}

/// Options of the disk isolator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskOptions {
    /// How quotas are enforced.
    pub backend: DiskBackend,
    /// Time between two measurements of a sandbox (du backend).
    pub interval: Duration,
    /// The agent's work dir: sandboxes are `<work_dir>/containers/<id>`,
    /// loop images `<work_dir>/disk-images/<id>.img`.
    pub work_dir: PathBuf,
    /// The XFS project ids the isolator may hand out (xfs backend).
    pub xfs_projects: RangeInclusive<u32>,
}

/// The `disk` isolator: a limit on the bytes a container keeps in its
/// sandbox (`resources.disk`), by periodic accounting, a loop-mounted
/// filesystem image or XFS project quotas (see [`DiskBackend`]). Without a
/// quota, usage is still reported.
///
/// No state is persisted: after a restart it is rebuilt from the
/// containers' configs, the mounts, the images and the sandboxes' project ids.
#[derive(Debug)]
pub struct DiskIsolator {
    options: DiskOptions,
    xfs: Option<Arc<XfsQuota>>,
    xfs_supported: bool,
    containers: ContainerStates<Container>,
}

#[derive(Debug)]
struct Container {
    watched: Arc<Watched>,
    enforcement: Enforcement,
    watcher: Option<Watcher>,
    /// The du backend's reporter for a container without a quota: kept
    /// until an update sets one, which starts the watcher (no thread
    /// measures a sandbox that has nothing to be measured against).
    parked: Option<LimitationReporter>,
}

#[derive(Debug, Clone)]
enum Enforcement {
    /// du backend, or no quota with the loop backend: accounting only.
    Accounting,
    /// The sandbox is a loop-mounted image.
    Loop(LoopPaths),
    /// The sandbox has an XFS project.
    Xfs { project: u32 },
}

impl DiskIsolator {
    /// A disk isolator. The loop backend checks for `/dev/loop-control` and
    /// `mkfs.ext4`; the xfs backend that the work dir (or its nearest
    /// existing ancestor) is on XFS mounted with `prjquota`. Either failing
    /// is [`IsolatorError::Unsupported`], at agent start.
    pub fn new(options: DiskOptions) -> Result<Self, IsolatorError> {
        if options.interval.is_zero() {
            return Err(IsolatorError::Other(
                "disk: the du interval must be positive".into(),
            ));
        }
        let mounts = mountinfo::read()?;
        let xfs_mount = xfs::check_work_dir(&mounts, &options.work_dir);
        let xfs = match options.backend {
            DiskBackend::Xfs => {
                xfs_mount.as_ref().map_err(|e| IsolatorError::Unsupported {
                    message: e.to_string(),
                })?;
                // Shared with the agent's sized volumes (one allocator).
                Some(
                    xfs::shared(&options.work_dir, options.xfs_projects.clone()).map_err(|e| {
                        IsolatorError::Unsupported {
                            message: e.to_string(),
                        }
                    })?,
                )
            }
            DiskBackend::Loop => {
                check_loop_support()?;
                None
            }
            DiskBackend::Du => None,
        };
        Ok(DiskIsolator {
            xfs_supported: xfs_mount.is_ok(),
            options,
            xfs,
            containers: ContainerStates::new(),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> DiskBackend {
        self.options.backend
    }

    fn containers(&self) -> MutexGuard<'_, HashMap<ContainerId, Container>> {
        self.containers.lock()
    }

    fn known(&self, id: &ContainerId) -> Result<(Arc<Watched>, Enforcement), IsolatorError> {
        self.containers()
            .get(id)
            .map(|c| (c.watched.clone(), c.enforcement.clone()))
            .ok_or_else(|| unknown(id))
    }

    /// Starts the du watcher of `id`, replacing (and stopping) any other.
    fn start_watcher(
        &self,
        id: &ContainerId,
        watched: Arc<Watched>,
        reporter: LimitationReporter,
    ) -> Result<(), IsolatorError> {
        let watcher = Watcher::start(id.as_str(), watched, self.options.interval, reporter)?;
        let old = match self.containers().get_mut(id) {
            Some(container) => container.watcher.replace(watcher),
            // Cleaned up meanwhile: nothing to watch.
            None => Some(watcher),
        };
        if let Some(old) = old {
            old.stop();
        }
        Ok(())
    }

    fn max_quota(&self) -> Option<u64> {
        (self.options.backend == DiskBackend::Loop).then_some(MAX_LOOP_QUOTA)
    }

    fn xfs(&self) -> &XfsQuota {
        self.xfs.as_ref().expect("the xfs backend has its quotas")
    }

    fn sandbox_of(&self, id: &ContainerId) -> PathBuf {
        self.options.work_dir.join("containers").join(id.as_str())
    }

    fn loop_paths(&self, id: &ContainerId, sandbox: &Path) -> LoopPaths {
        LoopPaths::new(&self.options.work_dir, id.as_str(), sandbox)
    }

    /// Bytes used by the sandbox, the way its backend counts them.
    fn used(&self, watched: &Watched, enforcement: &Enforcement) -> Result<u64, IsolatorError> {
        Ok(match enforcement {
            Enforcement::Accounting => {
                du::measure(&watched.sandbox, None, &AtomicBool::new(false))?.bytes
            }
            Enforcement::Loop(paths) => loop_fs::used_bytes(&paths.sandbox)?,
            Enforcement::Xfs { project } => self.xfs().used(*project)?,
        })
    }

    fn release(&self, enforcement: &Enforcement, sandbox: &Path) -> Result<(), IsolatorError> {
        match enforcement {
            Enforcement::Accounting => Ok(()),
            Enforcement::Loop(paths) => Ok(loop_fs::tear_down(paths)?),
            Enforcement::Xfs { project } => Ok(self.xfs().release(sandbox, *project)?),
        }
    }

    /// What is left on the host for a container this isolator does not
    /// track (an orphan, or a cleanup after a restart).
    fn leftover(&self, id: &ContainerId) -> Option<Enforcement> {
        let sandbox = self.sandbox_of(id);
        match self.options.backend {
            DiskBackend::Du => None,
            DiskBackend::Loop => {
                let paths = self.loop_paths(id, &sandbox);
                (paths.image.exists() || paths.staging.exists()).then_some(Enforcement::Loop(paths))
            }
            DiskBackend::Xfs => self
                .xfs()
                .recover(&sandbox)
                .map(|project| Enforcement::Xfs { project }),
        }
    }
}

fn check_loop_support() -> Result<(), IsolatorError> {
    if !Path::new(LOOP_CONTROL).exists() {
        return Err(IsolatorError::Unsupported {
            message: format!("disk loop backend: no {LOOP_CONTROL} (is the loop module loaded?)"),
        });
    }
    let mkfs = std::process::Command::new("mkfs.ext4")
        .arg("-V")
        .stdin(std::process::Stdio::null())
        .output();
    if mkfs.is_err() {
        return Err(IsolatorError::Unsupported {
            message: "disk loop backend: mkfs.ext4 not found (install e2fsprogs)".into(),
        });
    }
    Ok(())
}

impl Isolator for DiskIsolator {
    fn name(&self) -> &str {
        "disk"
    }

    fn describe(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("backend".into(), self.options.backend.as_str().into());
        out.insert(
            "interval_seconds".into(),
            self.options.interval.as_secs_f64().into(),
        );
        out.insert("xfs_project_quota".into(), self.xfs_supported.into());
        if let Some(xfs) = &self.xfs {
            out.insert(
                "xfs_device".into(),
                xfs.device().display().to_string().into(),
            );
            out.insert(
                "xfs_projects".into(),
                format!(
                    "{}-{}",
                    self.options.xfs_projects.start(),
                    self.options.xfs_projects.end()
                )
                .into(),
            );
        }
        out
    }

    fn recover(
        &self,
        containers: &[RecoveredContainer],
        orphans: &[ContainerId],
    ) -> Result<(), IsolatorError> {
        for recovered in containers {
            let config = &recovered.config;
            let quota = quota_from(&config.resources, self.max_quota()).unwrap_or(None);
            let enforcement = match self.options.backend {
                DiskBackend::Du => Enforcement::Accounting,
                DiskBackend::Loop => {
                    let paths = self.loop_paths(&config.id, &config.sandbox);
                    if paths.image.exists() || paths.staging.exists() {
                        Enforcement::Loop(paths)
                    } else {
                        Enforcement::Accounting
                    }
                }
                DiskBackend::Xfs => match self.xfs().recover(&config.sandbox) {
                    Some(project) => Enforcement::Xfs { project },
                    None => Enforcement::Accounting,
                },
            };
            // Watchers are not restarted here: the agent calls watch() for
            // the containers it reattaches to.
            self.containers().insert(
                config.id.clone(),
                Container {
                    watched: Arc::new(Watched::new(config.sandbox.clone(), quota)),
                    enforcement,
                    watcher: None,
                    parked: None,
                },
            );
        }
        let mut failures = Vec::new();
        for id in orphans {
            if let Err(e) = self.cleanup(id) {
                failures.push(e.to_string());
            }
        }
        // Images of containers nobody knows any more.
        if self.options.backend == DiskBackend::Loop {
            let known: Vec<String> = containers.iter().map(|c| c.config.id.to_string()).collect();
            let dir = loop_fs::images_dir(&self.options.work_dir);
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(id) = name
                    .strip_suffix(".img")
                    .or_else(|| name.strip_suffix(".out"))
                else {
                    continue;
                };
                let Ok(id) = ContainerId::new(id) else {
                    continue;
                };
                if !known.contains(&id.to_string()) {
                    if let Err(e) = self.cleanup(&id) {
                        failures.push(e.to_string());
                    }
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(IsolatorError::Other(format!(
                "disk: clean up orphans: {}",
                failures.join("; ")
            )))
        }
    }

    fn validate(&self, config: &ContainerConfig) -> Result<(), IsolatorError> {
        quota_from(&config.resources, self.max_quota()).map(|_| ())
    }

    fn resource_section(&self) -> Option<berth_isolator::ResourceSection> {
        Some(crate::DiskResources::section())
    }

    fn prepare(
        &self,
        id: &ContainerId,
        config: &ContainerConfig,
    ) -> Result<Contribution, IsolatorError> {
        let quota = quota_from(&config.resources, self.max_quota())?;
        let sandbox = config.sandbox.clone();
        // Each step undoes its own partial work on error.
        let enforcement = match (self.options.backend, quota) {
            (DiskBackend::Du, _) | (DiskBackend::Loop, None) => Enforcement::Accounting,
            (DiskBackend::Loop, Some(quota)) => {
                let paths = self.loop_paths(id, &sandbox);
                loop_fs::set_up(&paths, quota)?;
                Enforcement::Loop(paths)
            }
            (DiskBackend::Xfs, quota) => Enforcement::Xfs {
                project: self.xfs().assign(&sandbox, quota)?,
            },
        };
        self.containers().insert(
            id.clone(),
            Container {
                watched: Arc::new(Watched::new(sandbox, quota)),
                enforcement,
                watcher: None,
                parked: None,
            },
        );
        Ok(Contribution::default())
    }

    fn watch(&self, id: &ContainerId, reporter: LimitationReporter) -> Result<(), IsolatorError> {
        let (watched, _) = self.known(id)?;
        // The loop and xfs backends are hard limits: the kernel refuses the
        // write, nothing needs ending.
        if self.options.backend != DiskBackend::Du {
            return Ok(());
        }
        {
            // Under the containers' lock, as `update` sets a quota: a quota
            // set meanwhile is either seen here or finds the reporter parked.
            let mut containers = self.containers();
            if watched.quota().is_none() {
                if let Some(container) = containers.get_mut(id) {
                    container.parked = Some(reporter);
                }
                return Ok(());
            }
        }
        self.start_watcher(id, watched, reporter)
    }

    /// Applies a new quota. A quota below the current usage is refused (the
    /// du backend would end the container at once). The loop backend
    /// refuses any change: its image cannot be resized live.
    fn update(&self, id: &ContainerId, resources: &Resources) -> Result<(), IsolatorError> {
        let Some(quota) = quota_from(resources, self.max_quota())? else {
            return Ok(());
        };
        let (watched, enforcement) = self.known(id)?;
        if watched.quota() == Some(quota) {
            return Ok(());
        }
        if self.options.backend == DiskBackend::Loop {
            let current = match watched.quota() {
                Some(current) => format!("the {} image", format_bytes(current)),
                None => "a container launched without a quota".into(),
            };
            return Err(IsolatorError::Refused {
                message: format!(
                    "{FIELD}: the loop disk backend cannot resize {current} of a running container"
                ),
            });
        }
        let used = match enforcement {
            Enforcement::Accounting => {
                du::measure(&watched.sandbox, Some(quota), &AtomicBool::new(false))?.bytes
            }
            ref other => self.used(&watched, other)?,
        };
        if used > quota {
            return Err(IsolatorError::Refused {
                message: format!(
                    "{FIELD}: quota {} is below the current usage of {}",
                    format_bytes(quota),
                    format_bytes(used)
                ),
            });
        }
        if let Enforcement::Xfs { project } = enforcement {
            self.xfs()
                .set_quota(project, quota)
                .map_err(|e| IsolatorError::Refused {
                    message: e.to_string(),
                })?;
        }
        let parked = {
            let mut containers = self.containers();
            watched.set_quota(Some(quota));
            containers.get_mut(id).and_then(|c| c.parked.take())
        };
        // A container launched without a quota is measured from now on.
        match parked {
            Some(reporter) => self.start_watcher(id, watched, reporter),
            None => Ok(()),
        }
    }

    fn usage(&self, id: &ContainerId) -> Result<Usage, IsolatorError> {
        let (watched, enforcement) = self.known(id)?;
        let mut usage = Usage::new();
        usage.insert(
            "used_bytes".into(),
            self.used(&watched, &enforcement)?.into(),
        );
        if let Some(quota) = watched.quota() {
            usage.insert("limit_bytes".into(), quota.into());
        }
        usage.insert("backend".into(), self.options.backend.as_str().into());
        Ok(usage)
    }

    /// Nothing: no metric shows the disk isolator's figures (the agent's
    /// `container_fs_usage_bytes` has its own cached walk), and with the
    /// `du` backend `usage` walks the whole sandbox.
    fn scrape(&self, id: &ContainerId) -> Result<Usage, IsolatorError> {
        self.known(id)?;
        Ok(Usage::new())
    }

    fn status(&self, id: &ContainerId) -> Result<Status, IsolatorError> {
        let (watched, enforcement) = self.known(id)?;
        let mut status = Status::new();
        status.insert("backend".into(), self.options.backend.as_str().into());
        if let Some(quota) = watched.quota() {
            status.insert("quota_bytes".into(), quota.into());
        }
        match enforcement {
            Enforcement::Accounting => {}
            Enforcement::Loop(paths) => {
                status.insert("image".into(), paths.image.display().to_string().into());
            }
            Enforcement::Xfs { project } => {
                status.insert("xfs_project".into(), project.into());
            }
        }
        Ok(status)
    }

    /// The limitation the watcher reported, or, with the du backend, an
    /// over-quota sandbox found now (the container may have ended between
    /// two measurements).
    fn exit_limitation(&self, id: &ContainerId) -> Result<Option<Limitation>, IsolatorError> {
        let (watched, enforcement) = self.known(id)?;
        if let Some(reported) = watched.reported() {
            return Ok(Some(reported));
        }
        if self.options.backend != DiskBackend::Du
            || !matches!(enforcement, Enforcement::Accounting)
        {
            return Ok(None);
        }
        Ok(watched.check(&AtomicBool::new(false)))
    }

    fn cleanup(&self, id: &ContainerId) -> Result<(), IsolatorError> {
        let known = self.containers().remove(id);
        let (enforcement, sandbox) = match known {
            Some(container) => {
                if let Some(watcher) = container.watcher {
                    watcher.stop();
                }
                (
                    Some(container.enforcement),
                    container.watched.sandbox.clone(),
                )
            }
            // Unknown ids are tolerated, but what an earlier run of the
            // agent left under the id is still released.
            None => (self.leftover(id), self.sandbox_of(id)),
        };
        match enforcement {
            Some(enforcement) => self.release(&enforcement, &sandbox),
            None => Ok(()),
        }
    }
}
