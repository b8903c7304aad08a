//! The spec's `mounts`: turning option strings into `mount(2)` flags and data
//! (the same table as runc), and performing one mount under the new root.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use thiserror::Error;

use super::resolve::{self, ResolveError};

/// `struct mount_attr` for `mount_setattr(2)` (not in the libc crate's stable
/// linux module).
#[repr(C)]
pub struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

impl MountAttr {
    /// Sets `attrs`, clears nothing.
    pub fn set(attrs: u64) -> Self {
        MountAttr {
            attr_set: attrs,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        }
    }
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;

/// `open_tree(2)` and `move_mount(2)` flags (not in the libc crate).
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

#[derive(Debug, Error)]
pub enum MountError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("mount {source_desc} on {target} (type {fstype}): {errno}")]
    Mount {
        source_desc: String,
        target: PathBuf,
        fstype: String,
        errno: Errno,
    },
    #[error("remount {target} with flags {flags:#x}: {errno}")]
    Remount {
        target: PathBuf,
        flags: libc::c_ulong,
        errno: Errno,
    },
    #[error("set propagation {flags:#x} on {target}: {errno}")]
    Propagation {
        target: PathBuf,
        flags: libc::c_ulong,
        errno: Errno,
    },
    #[error("mount_setattr on {target}: {errno}")]
    SetAttr { target: PathBuf, errno: Errno },
    #[error("stat bind source {path}: {source}")]
    Source {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mount on {0} needs a source")]
    NoSource(PathBuf),
    #[error("open bind source {path}: {errno}")]
    OpenSource { path: PathBuf, errno: Errno },
}

/// Parsed `options` of one mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// `MS_*` flags for the `mount(2)` call.
    pub flags: libc::c_ulong,
    /// Propagation changes, applied one by one after the mount.
    pub propagation: Vec<libc::c_ulong>,
    /// Filesystem-specific options, comma-joined.
    pub data: String,
    /// Recursive attributes (`rro`, `rnosuid`, ...) set with `mount_setattr`.
    pub attr_set: u64,
    pub attr_clr: u64,
    /// [`berth_protocol::bundle::NO_FOLLOW`]: open the bind source without
    /// following any symlink (a container's bind mount or volume).
    pub no_follow: bool,
}

impl MountOptions {
    pub fn parse<S: AsRef<str>>(options: &[S]) -> Self {
        let mut out = MountOptions::default();
        let mut data: Vec<&str> = Vec::new();
        for opt in options {
            let opt = opt.as_ref();
            if opt == berth_protocol::bundle::NO_FOLLOW {
                out.no_follow = true;
            } else if let Some((clear, flag)) = flag_option(opt) {
                if clear {
                    out.flags &= !flag;
                } else {
                    out.flags |= flag;
                }
            } else if let Some(prop) = propagation_option(opt) {
                out.propagation.push(prop);
            } else if let Some((clear, attr)) = recursive_option(opt) {
                if clear {
                    out.attr_clr |= attr;
                    out.attr_set &= !attr;
                } else {
                    out.attr_set |= attr;
                    out.attr_clr &= !attr;
                }
            } else {
                data.push(opt);
            }
        }
        out.data = data.join(",");
        out
    }

    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }
}

/// runc's flag table: option name → (clears the flag?, flag).
fn flag_option(opt: &str) -> Option<(bool, libc::c_ulong)> {
    Some(match opt {
        "acl" => (false, libc::MS_POSIXACL),
        "async" => (true, libc::MS_SYNCHRONOUS),
        "atime" => (true, libc::MS_NOATIME),
        "bind" => (false, libc::MS_BIND),
        "defaults" => (false, 0),
        "dev" => (true, libc::MS_NODEV),
        "diratime" => (true, libc::MS_NODIRATIME),
        "dirsync" => (false, libc::MS_DIRSYNC),
        "exec" => (true, libc::MS_NOEXEC),
        "iversion" => (false, libc::MS_I_VERSION),
        "lazytime" => (false, libc::MS_LAZYTIME),
        "loud" => (true, libc::MS_SILENT),
        "mand" => (false, libc::MS_MANDLOCK),
        "noacl" => (true, libc::MS_POSIXACL),
        "noatime" => (false, libc::MS_NOATIME),
        "nodev" => (false, libc::MS_NODEV),
        "nodiratime" => (false, libc::MS_NODIRATIME),
        "noexec" => (false, libc::MS_NOEXEC),
        "noiversion" => (true, libc::MS_I_VERSION),
        "nolazytime" => (true, libc::MS_LAZYTIME),
        "nomand" => (true, libc::MS_MANDLOCK),
        "norelatime" => (true, libc::MS_RELATIME),
        "nostrictatime" => (true, libc::MS_STRICTATIME),
        "nosuid" => (false, libc::MS_NOSUID),
        "nosymfollow" => (false, libc::MS_NOSYMFOLLOW),
        "rbind" => (false, libc::MS_BIND | libc::MS_REC),
        "relatime" => (false, libc::MS_RELATIME),
        "remount" => (false, libc::MS_REMOUNT),
        "ro" => (false, libc::MS_RDONLY),
        "rw" => (true, libc::MS_RDONLY),
        "silent" => (false, libc::MS_SILENT),
        "strictatime" => (false, libc::MS_STRICTATIME),
        "suid" => (true, libc::MS_NOSUID),
        "sync" => (false, libc::MS_SYNCHRONOUS),
        _ => return None,
    })
}

fn propagation_option(opt: &str) -> Option<libc::c_ulong> {
    Some(match opt {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

/// Recursive mount attributes (runc ≥ 1.1): option → (clears?, attribute).
fn recursive_option(opt: &str) -> Option<(bool, u64)> {
    Some(match opt {
        "rro" => (false, MOUNT_ATTR_RDONLY),
        "rrw" => (true, MOUNT_ATTR_RDONLY),
        "rnosuid" => (false, MOUNT_ATTR_NOSUID),
        "rsuid" => (true, MOUNT_ATTR_NOSUID),
        "rnodev" => (false, MOUNT_ATTR_NODEV),
        "rdev" => (true, MOUNT_ATTR_NODEV),
        "rnoexec" => (false, MOUNT_ATTR_NOEXEC),
        "rexec" => (true, MOUNT_ATTR_NOEXEC),
        _ => return None,
    })
}

/// One entry of the spec's `mounts`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub destination: PathBuf,
    pub fstype: String,
    pub source: Option<PathBuf>,
    pub options: MountOptions,
    /// A detached copy of a bind mount's source, made by the monitor (see
    /// [`detach_bind_sources`]); the monitor owns the fd.
    pub source_tree: Option<RawFd>,
}

impl MountSpec {
    pub fn from_oci(m: &oci_spec::runtime::Mount) -> Self {
        let options = MountOptions::parse(m.options().as_deref().unwrap_or(&[]));
        let mut spec = MountSpec {
            destination: m.destination().clone(),
            fstype: m.typ().clone().unwrap_or_default(),
            source: m.source().clone(),
            options,
            source_tree: None,
        };
        // A mount of type "bind" without a bind option is a bind anyway
        // (runc does the same).
        if spec.fstype == "bind" && !spec.options.is_bind() {
            spec.options.flags |= libc::MS_BIND;
        }
        spec
    }

    /// Whether this is the `/dev` tmpfs that wants the default device nodes.
    pub fn is_dev_tmpfs(&self) -> bool {
        self.destination == Path::new("/dev") && !self.options.is_bind()
    }
}

/// `mount(2)` with nix's flag type; errors carry the target.
fn raw_mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), Errno> {
    mount(
        source,
        target,
        fstype,
        MsFlags::from_bits_retain(flags),
        data.filter(|d| !d.is_empty()),
    )
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, attr)`: applies to the
/// whole mount tree under `fd`, unlike a `MS_REMOUNT`, which changes a single
/// mount and leaves submounts writable.
pub fn set_attr_recursive(fd: &OwnedFd, set: u64, clr: u64, what: &Path) -> Result<(), MountError> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: valid fd, empty nul-terminated path and a correctly sized attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(MountError::SetAttr {
            target: what.into(),
            errno: Errno::last(),
        });
    }
    Ok(())
}

/// In the monitor, before the container child is cloned into a new user
/// namespace: makes a detached copy of each bind mount's source
/// (`open_tree(OPEN_TREE_CLONE)`), which the child attaches in place of
/// mounting the source by path. The container's root is an unprivileged
/// host user there and may not be able to reach the source's host path
/// (the agent's dirs are root's alone). Returns the fds, which the monitor
/// keeps until the child is cloned.
///
/// Not `all`: only the mounts marked [`MountOptions::no_follow`].
pub fn detach_bind_sources(
    mounts: &mut [MountSpec],
    all: bool,
) -> Result<Vec<OwnedFd>, MountError> {
    let mut trees = Vec::new();
    for m in mounts.iter_mut() {
        // cgroup mounts are binds of the host's tree made in mount_one.
        if !m.options.is_bind() || m.fstype.starts_with("cgroup") {
            continue;
        }
        if !all && !m.options.no_follow {
            continue;
        }
        let Some(source) = &m.source else {
            return Err(MountError::NoSource(m.destination.clone()));
        };
        let open_err = |errno| MountError::OpenSource {
            path: source.clone(),
            errno,
        };
        let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
        if m.options.flags & libc::MS_REC != 0 {
            flags |= libc::AT_RECURSIVE as libc::c_uint;
        }
        // A container's own bind (decision 0033): the agent checked this
        // exact path; opened with no symlink followed, then cloned from
        // the fd, so nothing swapped in since can redirect it.
        let (dirfd, path, _held) = if m.options.no_follow {
            let held = berth_sys::openat2::open_no_follow(source)
                .map_err(|e| open_err(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL))))?;
            flags |= libc::AT_EMPTY_PATH as libc::c_uint;
            (held.as_raw_fd(), c"".to_owned(), Some(held))
        } else {
            let path = std::ffi::CString::new(source.as_os_str().as_encoded_bytes())
                .map_err(|_| open_err(Errno::EINVAL))?;
            (libc::AT_FDCWD, path, None)
        };
        // SAFETY: a valid dirfd (held above) and a nul-terminated path;
        // the returned fd is owned below.
        let fd = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
        if fd < 0 {
            return Err(open_err(Errno::last()));
        }
        // SAFETY: fresh fd from the kernel.
        let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        m.source_tree = Some(tree.as_raw_fd());
        trees.push(tree);
    }
    Ok(trees)
}

/// Whether a detached tree's root is a directory.
fn tree_is_dir(tree: RawFd) -> Result<bool, Errno> {
    // SAFETY: the monitor keeps the fd open for the child's whole setup.
    let tree = unsafe { std::os::fd::BorrowedFd::borrow_raw(tree) };
    let stat = nix::sys::stat::fstat(tree)?;
    Ok(stat.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// `move_mount` of a detached tree onto `target`.
pub(crate) fn attach_tree(tree: RawFd, target: &OwnedFd) -> Result<(), Errno> {
    // SAFETY: both fds are open; the empty paths are nul-terminated.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Changes the flags of a bind mount. In a user namespace, the flags a
/// mount of the host's came with (`nosuid`, `nodev`, `noexec`, `ro`) are
/// locked: a remount must keep them or gets EPERM. Then, as runc does, the
/// remount is tried again with them added. (Binds from detached copies made
/// by [`detach_bind_sources`] are not locked; the host's cgroup tree, bound
/// by path, is.)
fn remount_bind(path: &Path, flags: libc::c_ulong) -> Result<(), Errno> {
    let remount = |flags| {
        raw_mount(
            None,
            path,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | flags,
            None,
        )
    };
    match remount(flags) {
        Err(Errno::EPERM) => {
            let current = nix::sys::statvfs::statvfs(path)?.flags();
            use nix::sys::statvfs::FsFlags;
            // statfs(2)'s ST_RELATIME, which nix names for glibc only.
            const ST_RELATIME: FsFlags = FsFlags::from_bits_retain(0x1000);
            let mut locked = flags;
            for (st, ms) in [
                (FsFlags::ST_NOSUID, libc::MS_NOSUID),
                (FsFlags::ST_NODEV, libc::MS_NODEV),
                (FsFlags::ST_NOEXEC, libc::MS_NOEXEC),
                (FsFlags::ST_RDONLY, libc::MS_RDONLY),
            ] {
                if current.contains(st) {
                    locked |= ms;
                }
            }
            // Asked-for atime flags give way to the current ones (locked
            // too); none asked means the kernel keeps them.
            let atime =
                libc::MS_NOATIME | libc::MS_NODIRATIME | libc::MS_RELATIME | libc::MS_STRICTATIME;
            if locked & atime != 0 {
                locked &= !atime;
                for (st, ms) in [
                    (FsFlags::ST_NOATIME, libc::MS_NOATIME),
                    (FsFlags::ST_NODIRATIME, libc::MS_NODIRATIME),
                    (ST_RELATIME, libc::MS_RELATIME),
                ] {
                    if current.contains(st) {
                        locked |= ms;
                    }
                }
            }
            if locked == flags {
                return Err(Errno::EPERM);
            }
            remount(locked)
        }
        other => other,
    }
}

/// Performs `spec` under `root` (a dirfd of the new root, before pivot).
pub fn mount_one(root: &OwnedFd, spec: &MountSpec) -> Result<(), MountError> {
    let dest = &spec.destination;
    let opts = &spec.options;
    if opts.no_follow {
        resolve::refuse_escape(root, dest)?;
    }

    // cgroups are the agent's isolators' business; on cgroup v1 a fresh
    // "cgroup" mount without controller options would try to mount a new
    // hierarchy, so expose the host's tree (read-only if asked) instead.
    let (source, fstype, mut flags) = if spec.fstype == "cgroup" || spec.fstype == "cgroup2" {
        (
            Some(PathBuf::from("/sys/fs/cgroup")),
            String::new(),
            opts.flags | libc::MS_BIND | libc::MS_REC,
        )
    } else {
        (spec.source.clone(), spec.fstype.clone(), opts.flags)
    };
    let bind = flags & libc::MS_BIND != 0;
    let mut attr_set = opts.attr_set;
    if spec.fstype.starts_with("cgroup") && flags & libc::MS_RDONLY != 0 {
        // The host tree has a mount per hierarchy; all of them must be ro.
        attr_set |= MOUNT_ATTR_RDONLY;
    }

    // The mount point, made if missing: mounted on through this handle,
    // the very object resolved in the root.
    let target_fd = if bind {
        let src = source
            .as_ref()
            .ok_or_else(|| MountError::NoSource(dest.clone()))?;
        let is_dir = match spec.source_tree {
            Some(tree) => tree_is_dir(tree).map_err(|errno| MountError::Source {
                path: src.clone(),
                source: errno.into(),
            })?,
            None => fs::metadata(src)
                .map_err(|e| MountError::Source {
                    path: src.clone(),
                    source: e,
                })?
                .is_dir(),
        };
        if is_dir {
            resolve::dir(root, dest)?
        } else {
            resolve::create_file(root, dest)?;
            resolve::open(root, dest, libc::O_PATH, 0)?
        }
    } else {
        resolve::dir(root, dest)?
    };
    let target = resolve::proc_fd_path(&target_fd);
    let mount_err = |errno| MountError::Mount {
        source_desc: source
            .as_ref()
            .map(|s| s.display().to_string())
            .unwrap_or_else(|| fstype.clone()),
        target: dest.clone(),
        fstype: if bind { "bind".into() } else { fstype.clone() },
        errno,
    };

    if bind {
        // The kernel ignores every flag but MS_REC on the initial bind; the
        // rest needs a remount of the new mount.
        match spec.source_tree {
            Some(tree) => attach_tree(tree, &target_fd).map_err(mount_err)?,
            None => raw_mount(
                source.as_deref(),
                &target,
                None,
                flags & (libc::MS_BIND | libc::MS_REC),
                None,
            )
            .map_err(mount_err)?,
        }
        flags &= !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    } else {
        let src = source
            .clone()
            .unwrap_or_else(|| PathBuf::from(if fstype.is_empty() { "none" } else { &fstype }));
        // MS_RDONLY on a new mount also asks for a read-only superblock,
        // which fails with EBUSY for filesystems whose superblock is shared
        // and already read-write (sysfs of the same network namespace,
        // mqueue). Read-only is applied to the mount alone, below.
        let new_flags = flags & !(libc::MS_REMOUNT | libc::MS_RDONLY);
        match raw_mount(
            Some(&src),
            &target,
            Some(&fstype),
            new_flags,
            Some(&opts.data),
        ) {
            // The kernel refuses to mount a superblock on the root of a mount
            // of that same superblock. That happens when the rootfs is the
            // host's / and the destination is the host's copy of, say, sysfs
            // (shared per network namespace): the spec asks for a fresh mount
            // there, so the inherited copy (and what was mounted below it)
            // goes away first.
            Err(Errno::EBUSY) => {
                umount2(&target, MntFlags::MNT_DETACH).map_err(mount_err)?;
                drop(target_fd);
                let under = resolve::open(root, dest, libc::O_PATH, 0)?;
                raw_mount(
                    Some(&src),
                    &resolve::proc_fd_path(&under),
                    Some(&fstype),
                    new_flags,
                    Some(&opts.data),
                )
                .map_err(mount_err)?;
            }
            other => other.map_err(mount_err)?,
        }
        flags &= !libc::MS_REMOUNT;
    }

    let remount_flags = flags
        & (libc::MS_RDONLY
            | libc::MS_NOSUID
            | libc::MS_NODEV
            | libc::MS_NOEXEC
            | libc::MS_NOATIME
            | libc::MS_NODIRATIME
            | libc::MS_RELATIME
            | libc::MS_STRICTATIME
            | libc::MS_NOSYMFOLLOW);
    // Non-bind mounts got every flag but MS_RDONLY already.
    let remount_needed = if bind {
        remount_flags != 0
    } else {
        remount_flags & libc::MS_RDONLY != 0
    };
    if !remount_needed && opts.propagation.is_empty() && attr_set == 0 && opts.attr_clr == 0 {
        return Ok(());
    }
    // The O_PATH handle still names the mountpoint under the new mount;
    // reopen to get the mount itself for the follow-up changes.
    let mounted = resolve::open(root, dest, libc::O_PATH, 0)?;
    let mounted_path = resolve::proc_fd_path(&mounted);
    if remount_needed {
        remount_bind(&mounted_path, remount_flags).map_err(|errno| MountError::Remount {
            target: dest.clone(),
            flags: remount_flags,
            errno,
        })?;
    }

    for &prop in &opts.propagation {
        raw_mount(None, &mounted_path, None, prop, None).map_err(|errno| {
            MountError::Propagation {
                target: dest.clone(),
                flags: prop,
                errno,
            }
        })?;
    }

    if attr_set != 0 || opts.attr_clr != 0 {
        set_attr_recursive(&mounted, attr_set, opts.attr_clr, dest)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_data_are_split() {
        let o = MountOptions::parse(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(o.propagation.is_empty());
        assert!(!o.is_bind());
    }

    #[test]
    fn later_options_win() {
        let o = MountOptions::parse(&["ro", "rw", "nodev", "dev", "noexec"]);
        assert_eq!(o.flags, libc::MS_NOEXEC);
        let o = MountOptions::parse(&["rw", "ro"]);
        assert_eq!(o.flags, libc::MS_RDONLY);
    }

    #[test]
    fn bind_rbind_and_propagation() {
        let o = MountOptions::parse(&["rbind", "ro", "rprivate"]);
        assert_eq!(o.flags, libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY);
        assert_eq!(o.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
        assert!(o.is_bind());
        let o = MountOptions::parse(&["bind", "slave", "unbindable"]);
        assert_eq!(o.flags, libc::MS_BIND);
        assert_eq!(o.propagation, vec![libc::MS_SLAVE, libc::MS_UNBINDABLE]);
    }

    #[test]
    fn recursive_attributes() {
        let o = MountOptions::parse(&["rbind", "rro", "rnosuid", "rsuid"]);
        assert_eq!(o.attr_set, MOUNT_ATTR_RDONLY);
        assert_eq!(o.attr_clr, MOUNT_ATTR_NOSUID);
    }

    #[test]
    fn devpts_options_go_to_data() {
        let o = MountOptions::parse(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]);
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_NOEXEC);
        assert_eq!(o.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
    }

    #[test]
    fn no_follow_is_not_data() {
        let o = MountOptions::parse(&["bind", "nosuid", berth_protocol::bundle::NO_FOLLOW]);
        assert!(o.no_follow);
        assert!(o.data.is_empty());
    }

    #[test]
    fn bind_type_implies_bind() {
        let m: oci_spec::runtime::Mount = serde_json::from_value(serde_json::json!({
            "destination": "/data", "type": "bind", "source": "/srv", "options": ["ro"]
        }))
        .unwrap();
        let spec = MountSpec::from_oci(&m);
        assert!(spec.options.is_bind());
        assert_eq!(spec.options.flags, libc::MS_BIND | libc::MS_RDONLY);
    }
}
