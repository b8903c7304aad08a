//! A tmpfs that is attached nowhere on the host: created with `fsopen` /
//! `fsmount`, filled by the agent through its root descriptor, and handed
//! to the shim as a read-only copy (`open_tree(OPEN_TREE_CLONE)` +
//! `mount_setattr(MOUNT_ATTR_RDONLY)`) that the container child attaches in
//! the container's mount namespace. The superblock lives while the agent's
//! descriptor or the container's mount namespace holds it: nothing is ever
//! mounted on the host, so nothing is left to unmount when the container
//! ends, and its content never reaches a disk (`noswap` where the kernel
//! has it: not even swap).
//!
//! Every write goes through [`openat2`] beneath the root descriptor with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV`, and names are single components: even if a container
//! could write to its copy (it cannot: read-only), no link it planted
//! would be followed.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use thiserror::Error;

use berth_sys::fs_context::{
    FsContext, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
};

const OPEN_TREE_CLONE: libc::c_uint = 1;

#[derive(Debug, Error)]
pub enum TmpfsError {
    #[error("{what} of the files tmpfs: {errno}")]
    Mount { what: &'static str, errno: Errno },
    #[error("tmpfs option {option}: {errno}")]
    Option { option: String, errno: Errno },
    #[error("{what} {name} in the files tmpfs: {errno}")]
    File {
        what: &'static str,
        name: String,
        errno: Errno,
    },
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached tmpfs and the agent's read-write handle on its root.
#[derive(Debug)]
pub struct FilesTmpfs {
    root: OwnedFd,
    /// Whether the kernel took `noswap`.
    pub noswap: bool,
}

fn fd_result(rc: libc::c_long, what: &'static str) -> Result<OwnedFd, TmpfsError> {
    if rc < 0 {
        return Err(TmpfsError::Mount {
            what,
            errno: Errno::last(),
        });
    }
    // SAFETY: a fresh descriptor from the kernel that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

fn errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

impl FilesTmpfs {
    /// A new tmpfs of at most `size` bytes whose root has `mode` and is
    /// owned by `uid:gid` (host ids), mounted `nosuid,nodev,noexec`.
    pub fn create(size: usize, mode: u32, uid: u32, gid: u32) -> Result<Self, TmpfsError> {
        let fs = FsContext::open("tmpfs").map_err(|e| TmpfsError::Mount {
            what: "fsopen",
            errno: errno(e),
        })?;
        let options = [
            ("size", size.to_string()),
            ("mode", format!("{mode:o}")),
            ("uid", uid.to_string()),
            ("gid", gid.to_string()),
            ("nr_inodes", "1024".to_string()),
        ];
        for (key, value) in &options {
            fs.set_string(key, value).map_err(|e| TmpfsError::Option {
                option: format!("{key}={value}"),
                errno: errno(e),
            })?;
        }
        // Linux 6.4+: the pages are never swapped out. Older kernels refuse
        // the option; the tmpfs is still never written to a filesystem.
        let noswap = fs.set_flag("noswap").is_ok();
        let root = fs
            .mount(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)
            .map_err(|(what, e)| TmpfsError::Mount {
                what,
                errno: errno(e),
            })?;
        Ok(FilesTmpfs { root, noswap })
    }

    /// A read-only copy of the mount for the container (the agent keeps
    /// writing through its own, read-write one).
    pub fn readonly_copy(&self) -> Result<OwnedFd, TmpfsError> {
        // SAFETY: valid fd, empty nul-terminated path; owned by fd_result.
        let copy = fd_result(
            unsafe {
                libc::syscall(
                    libc::SYS_open_tree,
                    self.root.as_raw_fd(),
                    c"".as_ptr(),
                    OPEN_TREE_CLONE | (libc::O_CLOEXEC | libc::AT_EMPTY_PATH) as libc::c_uint,
                )
            },
            "open_tree",
        )?;
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: valid fd, empty nul-terminated path, a correctly sized attr.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                copy.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if rc < 0 {
            return Err(TmpfsError::Mount {
                what: "make read-only",
                errno: Errno::last(),
            });
        }
        Ok(copy)
    }

    fn open(&self, dir: &str, name: &str, flags: i32, mode: u32) -> Result<OwnedFd, TmpfsError> {
        let path = if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        };
        openat2(&self.root, &path, flags, mode).map_err(|errno| TmpfsError::File {
            what: "open",
            name: path,
            errno,
        })
    }

    /// Writes `NAME` in `dir` (`""`: the root) anew: a temporary file
    /// beside it, then a rename over it, so a reader sees the old or the
    /// new value, never a part.
    pub fn write_file(
        &self,
        dir: &str,
        name: &str,
        bytes: &[u8],
        mode: u32,
        owner: (u32, u32),
    ) -> Result<(), TmpfsError> {
        let tmp = format!("..{name}.tmp");
        let dir_fd = self.open(
            "",
            if dir.is_empty() { "." } else { dir },
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )?;
        let _ = unlinkat(&dir_fd, &tmp, 0);
        let fd = openat2(
            &dir_fd,
            &tmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
        .map_err(|errno| TmpfsError::File {
            what: "create",
            name: tmp.clone(),
            errno,
        })?;
        let err = |what, errno| TmpfsError::File {
            what,
            name: tmp.clone(),
            errno,
        };
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes).map_err(|e| {
            err(
                "write",
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?;
        nix::unistd::fchown(&file, Some(owner.0.into()), Some(owner.1.into()))
            .map_err(|e| err("chown", e))?;
        nix::sys::stat::fchmod(&file, nix::sys::stat::Mode::from_bits_truncate(mode))
            .map_err(|e| err("chmod", e))?;
        drop(file);
        renameat(&dir_fd, &tmp, name).map_err(|e| err("rename", e))
    }

    /// Creates the dir `name` at the root, `mode`, owned by `owner`.
    pub fn mkdir(&self, name: &str, mode: u32, owner: (u32, u32)) -> Result<(), TmpfsError> {
        let err = |what, errno| TmpfsError::File {
            what,
            name: name.to_string(),
            errno,
        };
        let c = CString::new(name).map_err(|_| err("mkdir", Errno::EINVAL))?;
        // SAFETY: valid dir fd and nul-terminated single-component name.
        if unsafe { libc::mkdirat(self.root.as_raw_fd(), c.as_ptr(), 0o700) } < 0 {
            return Err(err("mkdir", Errno::last()));
        }
        let fd = self.open("", name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        nix::unistd::fchown(&fd, Some(owner.0.into()), Some(owner.1.into()))
            .map_err(|e| err("chown", e))?;
        nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_truncate(mode))
            .map_err(|e| err("chmod", e))
    }

    /// Points the symlink `name` at the root to `target`, replacing it
    /// atomically (a temporary link renamed over it).
    pub fn link(&self, target: &str, name: &str) -> Result<(), TmpfsError> {
        let tmp = format!("{name}.tmp");
        let err = |what, errno| TmpfsError::File {
            what,
            name: name.to_string(),
            errno,
        };
        let _ = unlinkat(&self.root, &tmp, 0);
        let t = CString::new(target).map_err(|_| err("symlink", Errno::EINVAL))?;
        let n = CString::new(tmp.as_str()).map_err(|_| err("symlink", Errno::EINVAL))?;
        // SAFETY: nul-terminated strings, valid dir fd.
        if unsafe { libc::symlinkat(t.as_ptr(), self.root.as_raw_fd(), n.as_ptr()) } < 0 {
            return Err(err("symlink", Errno::last()));
        }
        renameat(&self.root, &tmp, name).map_err(|e| err("rename", e))
    }

    /// Removes the dir `name` at the root and the plain files in it.
    pub fn remove_dir(&self, name: &str) -> Result<(), TmpfsError> {
        let err = |errno| TmpfsError::File {
            what: "remove",
            name: name.to_string(),
            errno,
        };
        let fd = self.open("", name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(err)?;
        let names: Vec<String> = dir
            .iter()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "." && n != "..")
            .collect();
        let dir_fd = self.open("", name, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        for n in names {
            unlinkat(&dir_fd, &n, 0).map_err(err)?;
        }
        unlinkat(&self.root, name, libc::AT_REMOVEDIR).map_err(err)
    }

    /// The names at the root.
    pub fn names(&self) -> Result<Vec<String>, TmpfsError> {
        let fd = self.open("", ".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(|errno| TmpfsError::File {
            what: "list",
            name: ".".into(),
            errno,
        })?;
        Ok(dir
            .iter()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "." && n != "..")
            .collect())
    }
}

/// `openat2` beneath `dir`, following no symlink, crossing no mount.
fn openat2(dir: &OwnedFd, path: &str, flags: i32, mode: u32) -> Result<OwnedFd, Errno> {
    // openat2 refuses O_PATH with any flag but these.
    let extra = if flags & libc::O_PATH != 0 {
        libc::O_CLOEXEC | libc::O_NOFOLLOW
    } else {
        libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK
    };
    let resolve = libc::RESOLVE_BENEATH
        | libc::RESOLVE_NO_SYMLINKS
        | libc::RESOLVE_NO_MAGICLINKS
        | libc::RESOLVE_NO_XDEV;
    berth_sys::openat2::openat2(
        Some(std::os::fd::AsFd::as_fd(dir)),
        std::path::Path::new(path),
        flags | extra,
        mode,
        resolve,
    )
    .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

fn unlinkat(dir: &OwnedFd, name: &str, flags: i32) -> Result<(), Errno> {
    let c = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: valid dir fd and a nul-terminated single-component name.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

fn renameat(dir: &OwnedFd, from: &str, to: &str) -> Result<(), Errno> {
    let f = CString::new(from).map_err(|_| Errno::EINVAL)?;
    let t = CString::new(to).map_err(|_| Errno::EINVAL)?;
    // SAFETY: valid dir fd and nul-terminated single-component names; a
    // rename replaces the entry `to` itself, never what a link there names.
    if unsafe { libc::renameat(dir.as_raw_fd(), f.as_ptr(), dir.as_raw_fd(), t.as_ptr()) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}
