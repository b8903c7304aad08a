//! The xfs backend: XFS project quotas. The sandbox dir gets a project id
//! (with PROJINHERIT, so everything made below it inherits it) and the
//! project a block hard limit; writes past it fail with EDQUOT.
//!
//! The kernel calls go through [`QuotaSys`], so the logic is tested without
//! an XFS filesystem ([`KernelQuota`] is the real one).

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::ops::RangeInclusive;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::DiskError;
use crate::mountinfo::{self, MountEntry};

/// `_IOR('X', 31, struct fsxattr)`.
pub const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
/// `_IOW('X', 32, struct fsxattr)`.
pub const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;
/// New files and dirs inherit the dir's project id.
pub const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;
/// `XQM_CMD(3)`: read a quota.
pub const Q_XGETQUOTA: i32 = (b'X' as i32) << 8 | 3;
/// `XQM_CMD(4)`: set a quota's limits.
pub const Q_XSETQLIM: i32 = (b'X' as i32) << 8 | 4;
/// The project quota type.
pub const PRJQUOTA: i32 = 2;
/// `FS_DQUOT_VERSION`.
pub const FS_DQUOT_VERSION: i8 = 1;
/// `FS_PROJ_QUOTA`, in `d_flags`.
pub const FS_PROJ_QUOTA: i8 = 2;
/// `FS_DQ_BSOFT`, in `d_fieldmask`.
pub const FS_DQ_BSOFT: u16 = 1 << 2;
/// `FS_DQ_BHARD`, in `d_fieldmask`.
pub const FS_DQ_BHARD: u16 = 1 << 3;
/// Quota block counts are in 512-byte "basic blocks".
pub const BASIC_BLOCK: u64 = 512;

/// `QCMD(cmd, type)`.
pub const fn qcmd(cmd: i32, kind: i32) -> i32 {
    (cmd << 8) | (kind & 0xff)
}

/// `struct fsxattr`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsxAttr {
    /// `FS_XFLAG_*`.
    pub fsx_xflags: u32,
    /// Extent size hint.
    pub fsx_extsize: u32,
    /// Extents (read only).
    pub fsx_nextents: u32,
    /// The project id.
    pub fsx_projid: u32,
    /// CoW extent size hint.
    pub fsx_cowextsize: u32,
    /// Padding.
    pub fsx_pad: [u8; 8],
}

impl FsxAttr {
    /// `self` with project `project` and project inheritance set (or, for
    /// project 0, cleared): other flags are kept.
    pub fn with_project(mut self, project: u32) -> FsxAttr {
        self.fsx_projid = project;
        if project == 0 {
            self.fsx_xflags &= !FS_XFLAG_PROJINHERIT;
        } else {
            self.fsx_xflags |= FS_XFLAG_PROJINHERIT;
        }
        self
    }
}

/// `struct fs_disk_quota` (`<linux/dqblk_xfs.h>`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct FsDiskQuota {
    pub d_version: i8,
    pub d_flags: i8,
    pub d_fieldmask: u16,
    pub d_id: u32,
    pub d_blk_hardlimit: u64,
    pub d_blk_softlimit: u64,
    pub d_ino_hardlimit: u64,
    pub d_ino_softlimit: u64,
    pub d_bcount: u64,
    pub d_icount: u64,
    pub d_itimer: i32,
    pub d_btimer: i32,
    pub d_iwarns: u16,
    pub d_bwarns: u16,
    pub d_itimer_hi: i8,
    pub d_btimer_hi: i8,
    pub d_rtbtimer_hi: i8,
    pub d_padding2: i8,
    pub d_rtb_hardlimit: u64,
    pub d_rtb_softlimit: u64,
    pub d_rtbcount: u64,
    pub d_rtbtimer: i32,
    pub d_rtbwarns: u16,
    pub d_padding3: i16,
    pub d_padding4: [u8; 8],
}

impl FsDiskQuota {
    /// The `Q_XSETQLIM` argument setting project `project`'s block hard
    /// and soft limits to `bytes` (rounded up to basic blocks); 0 removes
    /// the limit.
    pub fn block_limit(project: u32, bytes: u64) -> FsDiskQuota {
        let blocks = bytes.div_ceil(BASIC_BLOCK);
        FsDiskQuota {
            d_version: FS_DQUOT_VERSION,
            d_flags: FS_PROJ_QUOTA,
            d_fieldmask: FS_DQ_BHARD | FS_DQ_BSOFT,
            d_id: project,
            d_blk_hardlimit: blocks,
            d_blk_softlimit: blocks,
            ..Default::default()
        }
    }

    /// Bytes in use.
    pub fn used_bytes(&self) -> u64 {
        self.d_bcount.saturating_mul(BASIC_BLOCK)
    }
}

/// The kernel calls of the xfs backend.
pub trait QuotaSys: Send + Sync + Debug {
    /// `FS_IOC_FSGETXATTR` on `path` (a dir or regular file).
    fn get_attr(&self, path: &Path) -> io::Result<FsxAttr>;
    /// `FS_IOC_FSSETXATTR` on `path`.
    fn set_attr(&self, path: &Path, attr: &FsxAttr) -> io::Result<()>;
    /// `quotactl(QCMD(Q_XSETQLIM, PRJQUOTA), device, quota.d_id, quota)`.
    fn set_limit(&self, device: &Path, quota: &FsDiskQuota) -> io::Result<()>;
    /// `quotactl(QCMD(Q_XGETQUOTA, PRJQUOTA), device, project, ..)`.
    fn get_quota(&self, device: &Path, project: u32) -> io::Result<FsDiskQuota>;
}

/// The real [`QuotaSys`].
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelQuota;

fn open_no_follow(path: &Path) -> io::Result<File> {
    // O_NOFOLLOW: a symlink made by the container must not redirect the
    // ioctl to a file outside the sandbox.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

fn quotactl(cmd: i32, device: &Path, id: u32, data: *mut FsDiskQuota) -> io::Result<()> {
    let device = CString::new(device.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the device name is nul-terminated and data points to a
    // fs_disk_quota that outlives the call.
    let rc =
        unsafe { libc::quotactl(qcmd(cmd, PRJQUOTA), device.as_ptr(), id as i32, data.cast()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl QuotaSys for KernelQuota {
    fn get_attr(&self, path: &Path) -> io::Result<FsxAttr> {
        let file = open_no_follow(path)?;
        let mut attr = FsxAttr::default();
        // SAFETY: attr is a valid fsxattr for the kernel to fill.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FSGETXATTR as _, &mut attr) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(attr)
    }

    fn set_attr(&self, path: &Path, attr: &FsxAttr) -> io::Result<()> {
        let file = open_no_follow(path)?;
        // SAFETY: attr is a valid fsxattr the kernel only reads.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FSSETXATTR as _, attr) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn set_limit(&self, device: &Path, quota: &FsDiskQuota) -> io::Result<()> {
        let mut quota = *quota;
        quotactl(Q_XSETQLIM, device, quota.d_id, &mut quota)
    }

    fn get_quota(&self, device: &Path, project: u32) -> io::Result<FsDiskQuota> {
        let mut quota = FsDiskQuota::default();
        quotactl(Q_XGETQUOTA, device, project, &mut quota)?;
        Ok(quota)
    }
}

/// Finds the filesystem holding `work_dir` (or its nearest existing
/// ancestor) and checks that it is XFS with project quotas enforced.
pub fn check_work_dir(mounts: &[MountEntry], work_dir: &Path) -> Result<MountEntry, DiskError> {
    let refuse = |reason: String| DiskError::NoProjectQuota {
        path: work_dir.to_path_buf(),
        reason,
    };
    let resolved = resolve(work_dir);
    let mount =
        mountinfo::holding(mounts, &resolved).ok_or_else(|| refuse("no mount holds it".into()))?;
    if mount.fs_type != "xfs" {
        return Err(refuse(format!(
            "it is on {} ({}), not xfs",
            mount.fs_type,
            mount.mount_point.display()
        )));
    }
    if !["prjquota", "pquota"].iter().any(|o| mount.has_option(o)) {
        return Err(refuse(format!(
            "{} is not mounted with prjquota",
            mount.mount_point.display()
        )));
    }
    Ok(mount.clone())
}

/// `path` with symlinks resolved as far as it exists: the work dir may not
/// be made yet when the agent starts.
fn resolve(path: &Path) -> PathBuf {
    for existing in path.ancestors() {
        if let Ok(real) = existing.canonicalize() {
            let rest = path.strip_prefix(existing).unwrap_or(Path::new(""));
            return real.join(rest);
        }
    }
    path.to_path_buf()
}

/// The project ids berth hands out, from the configured range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectIds {
    range: RangeInclusive<u32>,
    used: BTreeSet<u32>,
}

impl ProjectIds {
    /// All of `range` free.
    pub fn new(range: RangeInclusive<u32>) -> Self {
        ProjectIds {
            range,
            used: BTreeSet::new(),
        }
    }

    /// Takes the lowest free id.
    pub fn allocate(&mut self) -> Result<u32, DiskError> {
        let free = self
            .range
            .clone()
            .find(|id| !self.used.contains(id))
            .ok_or(DiskError::ProjectsExhausted {
                first: *self.range.start(),
                last: *self.range.end(),
            })?;
        self.used.insert(free);
        Ok(free)
    }

    /// Marks an id found on disk (recovery) as used; false if it is not
    /// berth's (outside the range).
    pub fn mark(&mut self, id: u32) -> bool {
        if !self.range.contains(&id) {
            return false;
        }
        self.used.insert(id);
        true
    }

    /// Gives an id back.
    pub fn release(&mut self, id: u32) {
        self.used.remove(&id);
    }
}

/// Project quotas on one XFS filesystem.
#[derive(Debug)]
pub struct XfsQuota {
    sys: Box<dyn QuotaSys>,
    device: PathBuf,
    projects: Mutex<ProjectIds>,
}

impl XfsQuota {
    /// Quotas on `device` with ids from `range`, through `sys`.
    pub fn new(sys: Box<dyn QuotaSys>, device: PathBuf, range: RangeInclusive<u32>) -> Self {
        XfsQuota {
            sys,
            device,
            projects: Mutex::new(ProjectIds::new(range)),
        }
    }

    /// The filesystem's block device.
    pub fn device(&self) -> &Path {
        &self.device
    }

    fn projects(&self) -> std::sync::MutexGuard<'_, ProjectIds> {
        self.projects.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn quota_err(
        &self,
        op: &'static str,
        project: u32,
    ) -> impl FnOnce(io::Error) -> DiskError + '_ {
        move |source| DiskError::Quota {
            op,
            project,
            device: self.device.clone(),
            source,
        }
    }

    /// Gives `sandbox` a free project id and the project `quota` bytes (or
    /// no limit with `None`: usage is still counted). Undone on error.
    pub fn assign(&self, sandbox: &Path, quota: Option<u64>) -> Result<u32, DiskError> {
        let project = self.projects().allocate()?;
        let result = self
            .sys
            .set_limit(
                &self.device,
                &FsDiskQuota::block_limit(project, quota.unwrap_or(0)),
            )
            .map_err(self.quota_err("Q_XSETQLIM", project))
            .and_then(|()| {
                let attr = self
                    .sys
                    .get_attr(sandbox)
                    .map_err(|e| DiskError::io("FS_IOC_FSGETXATTR", sandbox, e))?;
                self.sys
                    .set_attr(sandbox, &attr.with_project(project))
                    .map_err(|e| DiskError::io("FS_IOC_FSSETXATTR", sandbox, e))
            });
        if let Err(e) = result {
            let _ = self
                .sys
                .set_limit(&self.device, &FsDiskQuota::block_limit(project, 0));
            self.projects().release(project);
            return Err(e);
        }
        Ok(project)
    }

    /// Sets a project's limit (0: none).
    pub fn set_quota(&self, project: u32, bytes: u64) -> Result<(), DiskError> {
        self.sys
            .set_limit(&self.device, &FsDiskQuota::block_limit(project, bytes))
            .map_err(self.quota_err("Q_XSETQLIM", project))
    }

    /// Bytes the project uses.
    pub fn used(&self, project: u32) -> Result<u64, DiskError> {
        self.sys
            .get_quota(&self.device, project)
            .map(|q| q.used_bytes())
            .map_err(self.quota_err("Q_XGETQUOTA", project))
    }

    /// Removes the limit, takes the project id off every dir and regular
    /// file of the sandbox (so a later container with the same id is not
    /// charged for these files, which stay for inspection) and frees the id.
    /// Symlinks and special files cannot be opened for the ioctl and keep
    /// it; they hold no data blocks worth counting.
    pub fn release(&self, sandbox: &Path, project: u32) -> Result<(), DiskError> {
        self.set_quota(project, 0)?;
        // The sandbox itself, then what a confined walk finds below it (no
        // symlinked dir entered, no other mount).
        let mut paths = Vec::new();
        if let Ok(dir) = berth_confined::Dir::open(sandbox) {
            paths.push(sandbox.to_path_buf());
            let _ = dir.walk(|_, relative, entry| {
                use berth_confined::Kind;
                if matches!(entry.stat.kind(), Kind::File | Kind::Dir) {
                    paths.push(sandbox.join(relative).join(&entry.name));
                }
                Ok(berth_confined::Step::Descend)
            });
        }
        let mut first_error = None;
        for path in paths {
            let reset = self
                .sys
                .get_attr(&path)
                .and_then(|attr| self.sys.set_attr(&path, &attr.with_project(0)));
            match reset {
                Ok(()) => {}
                // Gone since the walk: nothing carries the id there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_error.get_or_insert(DiskError::io("FS_IOC_FSSETXATTR", &path, e));
                }
            }
        }
        match first_error {
            // The id stays taken: files still carry it.
            Some(e) => Err(e),
            None => {
                self.projects().release(project);
                Ok(())
            }
        }
    }

    /// The project id a sandbox has, if it is one of berth's; marks it used.
    pub fn recover(&self, sandbox: &Path) -> Option<u32> {
        let project = self.sys.get_attr(sandbox).ok()?.fsx_projid;
        self.projects().mark(project).then_some(project)
    }
}

/// The one [`XfsQuota`] of each XFS filesystem in this process, by device:
/// the disk isolator's sandboxes and the agent's sized volumes take their
/// project ids from the same allocator, so an id is never handed out twice.
static SHARED: Mutex<Vec<(PathBuf, Arc<XfsQuota>)>> = Mutex::new(Vec::new());

/// The shared [`XfsQuota`] of the XFS filesystem (mounted with `prjquota`)
/// holding `dir`, with ids from `range` (the first caller's range wins:
/// one agent has one). Reads the mount table.
pub fn shared(dir: &Path, range: RangeInclusive<u32>) -> Result<Arc<XfsQuota>, DiskError> {
    let mount = check_work_dir(&mountinfo::read()?, dir)?;
    let device = mount.device();
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, quota)) = shared.iter().find(|(d, _)| *d == device) {
        return Ok(quota.clone());
    }
    let quota = Arc::new(XfsQuota::new(Box::new(KernelQuota), device.clone(), range));
    shared.push((device, quota.clone()));
    Ok(quota)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn structs_and_commands_match_the_kernel_headers() {
        assert_eq!(std::mem::size_of::<FsxAttr>(), 28);
        assert_eq!(std::mem::size_of::<FsDiskQuota>(), 112);
        assert_eq!(qcmd(Q_XSETQLIM, PRJQUOTA), 0x0058_0402);
        assert_eq!(qcmd(Q_XGETQUOTA, PRJQUOTA), 0x0058_0302);
        // _IOR/_IOW('X', n, 28 bytes).
        let ioc = |dir: libc::c_ulong, nr: libc::c_ulong| {
            (dir << 30) | (28 << 16) | (libc::c_ulong::from(b'X') << 8) | nr
        };
        assert_eq!(FS_IOC_FSGETXATTR, ioc(2, 31));
        assert_eq!(FS_IOC_FSSETXATTR, ioc(1, 32));
    }

    #[test]
    fn a_block_limit_is_in_basic_blocks_rounded_up() {
        let q = FsDiskQuota::block_limit(5001, (20 << 20) + 1);
        assert_eq!(q.d_version, 1);
        assert_eq!(q.d_flags, FS_PROJ_QUOTA);
        assert_eq!(q.d_fieldmask, FS_DQ_BHARD | FS_DQ_BSOFT);
        assert_eq!(q.d_id, 5001);
        assert_eq!(q.d_blk_hardlimit, (20 << 20) / 512 + 1);
        assert_eq!(q.d_blk_softlimit, q.d_blk_hardlimit);
        assert_eq!(FsDiskQuota::block_limit(1, 0).d_blk_hardlimit, 0);
    }

    #[test]
    fn project_attr_keeps_other_flags() {
        let attr = FsxAttr {
            fsx_xflags: 0x8,
            ..Default::default()
        };
        let set = attr.with_project(7);
        assert_eq!(set.fsx_projid, 7);
        assert_eq!(set.fsx_xflags, 0x8 | FS_XFLAG_PROJINHERIT);
        let cleared = set.with_project(0);
        assert_eq!(cleared.fsx_xflags, 0x8);
        assert_eq!(cleared.fsx_projid, 0);
    }

    #[test]
    fn ids_are_the_lowest_free_in_range() {
        let mut ids = ProjectIds::new(10..=12);
        assert_eq!(ids.allocate().unwrap(), 10);
        assert!(ids.mark(12));
        assert!(!ids.mark(13));
        assert_eq!(ids.allocate().unwrap(), 11);
        let err = ids.allocate().unwrap_err();
        assert_eq!(err.to_string(), "all xfs project ids 10..=12 are in use");
        ids.release(10);
        assert_eq!(ids.allocate().unwrap(), 10);
    }

    #[test]
    fn the_work_dir_must_be_xfs_with_prjquota() {
        let mounts = mountinfo::parse(
            "1 0 253:0 / / rw - ext4 /dev/vda rw\n\
             2 1 253:16 / /xq rw - xfs /dev/vdb rw,attr2,prjquota\n\
             3 1 253:32 / /xn rw - xfs /dev/vdc rw,attr2,noquota\n",
        );
        let ok = check_work_dir(&mounts, Path::new("/xq/berth/not-yet-made")).unwrap();
        assert_eq!(ok.device(), Path::new("/dev/vdb"));
        let err = check_work_dir(&mounts, Path::new("/xn/berth")).unwrap_err();
        assert!(
            err.to_string().contains("not mounted with prjquota"),
            "{err}"
        );
        let err = check_work_dir(&mounts, Path::new("/var/lib/berth")).unwrap_err();
        assert!(err.to_string().contains("ext4"), "{err}");
    }

    /// A filesystem of attributes and quotas in memory, recording calls.
    #[derive(Debug, Default)]
    struct FakeQuota {
        attrs: Mutex<HashMap<PathBuf, FsxAttr>>,
        limits: Mutex<HashMap<u32, FsDiskQuota>>,
        calls: Mutex<Vec<String>>,
        fail_set_attr: bool,
    }

    impl QuotaSys for Arc<FakeQuota> {
        fn get_attr(&self, path: &Path) -> io::Result<FsxAttr> {
            Ok(self
                .attrs
                .lock()
                .unwrap()
                .get(path)
                .copied()
                .unwrap_or_default())
        }
        fn set_attr(&self, path: &Path, attr: &FsxAttr) -> io::Result<()> {
            self.calls.lock().unwrap().push(format!(
                "setattr {} {}",
                path.display(),
                attr.fsx_projid
            ));
            if self.fail_set_attr {
                return Err(io::Error::from_raw_os_error(libc::ENOTTY));
            }
            self.attrs.lock().unwrap().insert(path.to_path_buf(), *attr);
            Ok(())
        }
        fn set_limit(&self, device: &Path, quota: &FsDiskQuota) -> io::Result<()> {
            self.calls.lock().unwrap().push(format!(
                "setqlim {} {} {}",
                device.display(),
                quota.d_id,
                quota.d_blk_hardlimit
            ));
            self.limits.lock().unwrap().insert(quota.d_id, *quota);
            Ok(())
        }
        fn get_quota(&self, _device: &Path, project: u32) -> io::Result<FsDiskQuota> {
            Ok(FsDiskQuota {
                d_id: project,
                d_bcount: 2048,
                ..Default::default()
            })
        }
    }

    fn quota(fake: &Arc<FakeQuota>) -> XfsQuota {
        XfsQuota::new(
            Box::new(fake.clone()),
            PathBuf::from("/dev/vdb"),
            5000..=5001,
        )
    }

    #[test]
    fn assign_sets_the_project_and_the_limit_and_release_undoes_both() {
        let fake = Arc::new(FakeQuota::default());
        let xfs = quota(&fake);
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("sandbox");
        std::fs::create_dir_all(sandbox.join("sub")).unwrap();
        std::fs::write(sandbox.join("sub/file"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", sandbox.join("link")).unwrap();

        let project = xfs.assign(&sandbox, Some(20 << 20)).unwrap();
        assert_eq!(project, 5000);
        let attr = fake.attrs.lock().unwrap()[&sandbox];
        assert_eq!(attr.fsx_projid, 5000);
        assert_ne!(attr.fsx_xflags & FS_XFLAG_PROJINHERIT, 0);
        assert_eq!(fake.limits.lock().unwrap()[&5000].d_blk_hardlimit, 40960);
        assert_eq!(xfs.used(project).unwrap(), 2048 * 512);
        xfs.set_quota(project, 40 << 20).unwrap();
        assert_eq!(fake.limits.lock().unwrap()[&5000].d_blk_hardlimit, 81920);
        assert_eq!(xfs.assign(&sandbox, None).unwrap(), 5001);

        fake.calls.lock().unwrap().clear();
        xfs.release(&sandbox, project).unwrap();
        assert_eq!(fake.limits.lock().unwrap()[&5000].d_blk_hardlimit, 0);
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(calls[0], "setqlim /dev/vdb 5000 0");
        let reset: Vec<&String> = calls.iter().filter(|c| c.starts_with("setattr")).collect();
        // The sandbox, sub and sub/file; not the symlink.
        assert_eq!(reset.len(), 3, "{calls:?}");
        assert!(reset.iter().all(|c| c.ends_with(" 0")));
        assert_eq!(
            fake.attrs.lock().unwrap()[&sandbox].fsx_xflags & FS_XFLAG_PROJINHERIT,
            0
        );
        // The id is free again.
        assert_eq!(xfs.assign(&sandbox, None).unwrap(), 5000);
    }

    #[test]
    fn a_failed_assign_frees_the_id_and_the_limit() {
        let fake = Arc::new(FakeQuota {
            fail_set_attr: true,
            ..Default::default()
        });
        let xfs = quota(&fake);
        let err = xfs
            .assign(Path::new("/w/containers/a"), Some(1 << 20))
            .unwrap_err();
        assert!(err.to_string().contains("/w/containers/a"), "{err}");
        assert_eq!(fake.limits.lock().unwrap()[&5000].d_blk_hardlimit, 0);
        assert_eq!(xfs.projects().allocate().unwrap(), 5000);
    }

    #[test]
    fn recovery_reads_the_id_back_from_the_sandbox() {
        let fake = Arc::new(FakeQuota::default());
        fake.attrs
            .lock()
            .unwrap()
            .insert(PathBuf::from("/w/a"), FsxAttr::default().with_project(5001));
        fake.attrs
            .lock()
            .unwrap()
            .insert(PathBuf::from("/w/b"), FsxAttr::default().with_project(42));
        let xfs = quota(&fake);
        assert_eq!(xfs.recover(Path::new("/w/a")), Some(5001));
        assert_eq!(xfs.recover(Path::new("/w/b")), None);
        assert_eq!(xfs.projects().allocate().unwrap(), 5000);
        assert!(xfs.projects().allocate().is_err());
    }
}
