//! `linux.namespaces`: which to create, which to join by path.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NamespaceError {
    #[error("{0} namespaces are not supported by berth-shim")]
    Unsupported(String),
    #[error("namespace {0} listed twice")]
    Duplicate(String),
    #[error("a new mount namespace is required")]
    NoMountNamespace,
    #[error("hostname needs a new uts namespace")]
    HostnameWithoutUts,
    #[error("a user namespace is created, not joined by path ({0})")]
    JoinUser(PathBuf),
    #[error("a new user namespace needs a new pid namespace and cannot be combined with joining the {0} namespace by path (only network)")]
    UserWithJoin(&'static str),
    #[error("open {kind} namespace {path}: {source}")]
    Open {
        kind: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("join {kind} namespace {path}: {errno}")]
    Join {
        kind: &'static str,
        path: PathBuf,
        errno: Errno,
    },
    #[error("create namespaces {flags:?}: {errno}")]
    Create { flags: CloneFlags, errno: Errno },
    #[error("bring up loopback: {0}")]
    Loopback(io::Error),
}

/// What to do about one kind of namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NsAction {
    /// Stay in the shim's namespace.
    #[default]
    Inherit,
    /// Create a new one.
    Create,
    /// Join the one at this path (`/proc/PID/ns/...`).
    Join(PathBuf),
}

/// The namespace plan of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    pub pid: NsAction,
    pub mount: NsAction,
    pub ipc: NsAction,
    pub uts: NsAction,
    pub net: NsAction,
    /// `Create` or `Inherit` (joining one by path is refused).
    pub user: NsAction,
}

impl Namespaces {
    pub fn from_spec(list: &[LinuxNamespace]) -> Result<Self, NamespaceError> {
        let mut ns = Namespaces::default();
        for entry in list {
            let slot = match entry.typ() {
                LinuxNamespaceType::Pid => &mut ns.pid,
                LinuxNamespaceType::Mount => &mut ns.mount,
                LinuxNamespaceType::Ipc => &mut ns.ipc,
                LinuxNamespaceType::Uts => &mut ns.uts,
                LinuxNamespaceType::Network => &mut ns.net,
                LinuxNamespaceType::User => &mut ns.user,
                other @ (LinuxNamespaceType::Cgroup | LinuxNamespaceType::Time) => {
                    return Err(NamespaceError::Unsupported(other.to_string()))
                }
            };
            if *slot != NsAction::Inherit {
                return Err(NamespaceError::Duplicate(entry.typ().to_string()));
            }
            *slot = match entry.path() {
                Some(path) => NsAction::Join(path.clone()),
                None => NsAction::Create,
            };
        }
        // pivot_root in the shim's own mount namespace would pull the host's
        // root from under everything else.
        if ns.mount == NsAction::Inherit {
            return Err(NamespaceError::NoMountNamespace);
        }
        if let NsAction::Join(path) = &ns.user {
            return Err(NamespaceError::JoinUser(path.clone()));
        }
        if ns.user == NsAction::Create {
            // The container child is cloned into the user namespace: from
            // inside it, namespaces of the host's user namespace cannot be
            // joined (a network namespace is joined by the monitor before
            // the clone), and its pid namespace is created by the same clone.
            for (action, kind) in [
                (&ns.pid, "pid"),
                (&ns.ipc, "ipc"),
                (&ns.uts, "uts"),
                (&ns.mount, "mount"),
            ] {
                let pid_inherited = kind == "pid" && *action == NsAction::Inherit;
                if matches!(action, NsAction::Join(_)) || pid_inherited {
                    return Err(NamespaceError::UserWithJoin(kind));
                }
            }
        }
        Ok(ns)
    }

    /// In the monitor, before forking the container: makes its next child
    /// pid 1 of the container's pid namespace. The monitor itself stays where
    /// it is (that is how `unshare`/`setns` work for pid namespaces).
    pub fn enter_pid(&self) -> Result<(), NamespaceError> {
        match &self.pid {
            NsAction::Inherit => Ok(()),
            NsAction::Create => create(CloneFlags::CLONE_NEWPID),
            NsAction::Join(path) => join("pid", path, CloneFlags::CLONE_NEWPID),
        }
    }

    /// In the monitor, before cloning the child into a new user namespace:
    /// joins the network namespace given by path, which the child could not
    /// join from inside its user namespace. Returns the monitor's own one to
    /// go back to once the child is cloned.
    pub fn enter_net_before_clone(&self) -> Result<Option<File>, NamespaceError> {
        let NsAction::Join(path) = &self.net else {
            return Ok(None);
        };
        if !self.new_user() {
            return Ok(None);
        }
        let own = Path::new("/proc/self/ns/net");
        let own = File::open(own).map_err(|source| NamespaceError::Open {
            kind: "net",
            path: own.into(),
            source,
        })?;
        join("net", path, CloneFlags::CLONE_NEWNET)?;
        Ok(Some(own))
    }

    /// In the container child: joins the namespaces given by path first (as
    /// runc does), then creates the new ones in one `unshare`. Returns
    /// whether a new network namespace was created.
    pub fn enter_others(&self) -> Result<bool, NamespaceError> {
        let kinds: [(&NsAction, &'static str, CloneFlags); 4] = [
            (&self.net, "net", CloneFlags::CLONE_NEWNET),
            (&self.ipc, "ipc", CloneFlags::CLONE_NEWIPC),
            (&self.uts, "uts", CloneFlags::CLONE_NEWUTS),
            (&self.mount, "mnt", CloneFlags::CLONE_NEWNS),
        ];
        let mut new = CloneFlags::empty();
        let at_clone = self.at_clone();
        for (action, kind, flag) in kinds {
            match action {
                NsAction::Inherit => {}
                // Joined by the monitor before the clone.
                NsAction::Join(_) if flag == CloneFlags::CLONE_NEWNET && self.new_user() => {}
                // The process was cloned into it.
                NsAction::Create if at_clone.contains(flag) => {}
                NsAction::Create => new |= flag,
                NsAction::Join(path) => join(kind, path, flag)?,
            }
        }
        // A joined mount namespace is shared with whoever owns it; setting
        // up the rootfs (rprivate, pivot_root) in it would change it for all
        // of them, so the container gets a private copy of it.
        if matches!(self.mount, NsAction::Join(_)) {
            new |= CloneFlags::CLONE_NEWNS;
        }
        if !new.is_empty() {
            create(new)?;
        }
        Ok(new.contains(CloneFlags::CLONE_NEWNET))
    }

    /// The namespaces the container child is cloned into instead of
    /// creating them itself: a new mount namespace, so that the monitor
    /// holds it from the process's first instant and can let it go on to
    /// its exec without waiting to be told it is set up (decision 0058).
    /// Not with a new user namespace, which must be made first and own it.
    pub fn at_clone(&self) -> CloneFlags {
        if self.mount == NsAction::Create && !self.new_user() {
            CloneFlags::CLONE_NEWNS
        } else {
            CloneFlags::empty()
        }
    }

    /// Whether the container child is cloned into a new user namespace.
    pub fn new_user(&self) -> bool {
        self.user == NsAction::Create
    }

    pub fn new_uts(&self) -> bool {
        self.uts == NsAction::Create
    }
}

/// Forks the calling process into the new namespaces `flags` names (the
/// raw `clone` with no new stack: the child continues on a copy of the
/// stack, as after `fork`). `Ok(None)` in the child, `Ok(Some(pid))` in
/// the parent.
///
/// Unlike glibc's `fork` it runs no fork handlers and leaves the thread
/// id glibc keeps for the child stale: the child must only set itself up
/// and exec (glibc's `raise` asks the kernel for the tid).
///
/// # Safety
/// As for `fork`: the caller must be single-threaded.
pub unsafe fn clone_into(flags: CloneFlags) -> Result<Option<Pid>, Errno> {
    // SAFETY: the raw clone syscall with no new stack duplicates the caller
    // like fork does; the caller guarantees there are no other threads.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags.bits() | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match rc {
        -1 => Err(Errno::last()),
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}

fn create(flags: CloneFlags) -> Result<(), NamespaceError> {
    unshare(flags).map_err(|errno| NamespaceError::Create { flags, errno })
}

fn join(kind: &'static str, path: &Path, flag: CloneFlags) -> Result<(), NamespaceError> {
    let file = File::open(path).map_err(|source| NamespaceError::Open {
        kind,
        path: path.into(),
        source,
    })?;
    setns(&file, flag).map_err(|errno| NamespaceError::Join {
        kind,
        path: path.into(),
        errno,
    })
}

/// `struct ifreq` with the flags member of its union (40 bytes on Linux).
#[repr(C)]
struct IfreqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A new network namespace has only `lo`, and down; most programs expect
/// 127.0.0.1 to work.
pub fn loopback_up() -> Result<(), NamespaceError> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(NamespaceError::Loopback(io::Error::last_os_error()));
    }
    // SAFETY: fresh fd.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = IfreqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    for (dst, src) in req.name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: the ioctls read/write a correctly sized ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return Err(NamespaceError::Loopback(io::Error::last_os_error()));
    }
    req.flags |= libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the ifreq filled above, which outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } < 0 {
        return Err(NamespaceError::Loopback(io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(json: serde_json::Value) -> Result<Namespaces, NamespaceError> {
        let list: Vec<LinuxNamespace> = serde_json::from_value(json).unwrap();
        Namespaces::from_spec(&list)
    }

    #[test]
    fn creates_and_joins() {
        let n = ns(serde_json::json!([
            {"type": "pid"}, {"type": "mount"},
            {"type": "network", "path": "/proc/1/ns/net"}
        ]))
        .unwrap();
        assert_eq!(n.pid, NsAction::Create);
        assert_eq!(n.mount, NsAction::Create);
        assert_eq!(n.net, NsAction::Join("/proc/1/ns/net".into()));
        assert_eq!(n.uts, NsAction::Inherit);
    }

    #[test]
    fn only_a_new_mount_namespace_without_a_new_user_one_comes_with_the_clone() {
        let plain = ns(serde_json::json!([{"type": "pid"}, {"type": "mount"}])).unwrap();
        assert_eq!(plain.at_clone(), CloneFlags::CLONE_NEWNS);
        let user =
            ns(serde_json::json!([{"type": "user"}, {"type": "pid"}, {"type": "mount"}])).unwrap();
        assert_eq!(user.at_clone(), CloneFlags::empty());
        let joined = ns(serde_json::json!([{"type": "mount", "path": "/proc/1/ns/mnt"}])).unwrap();
        assert_eq!(joined.at_clone(), CloneFlags::empty());
    }

    #[test]
    fn user_namespace_is_created_with_a_pid_namespace_and_no_joins() {
        let n =
            ns(serde_json::json!([{"type": "user"}, {"type": "pid"}, {"type": "mount"}])).unwrap();
        assert!(n.new_user());
        let err = ns(serde_json::json!([{"type": "mount"}, {"type": "user"}])).unwrap_err();
        assert!(matches!(err, NamespaceError::UserWithJoin("pid")), "{err}");
        let err = ns(serde_json::json!([
            {"type": "user"}, {"type": "pid"}, {"type": "mount"},
            {"type": "ipc", "path": "/proc/1/ns/ipc"}
        ]))
        .unwrap_err();
        assert!(matches!(err, NamespaceError::UserWithJoin("ipc")), "{err}");
        let n = ns(serde_json::json!([
            {"type": "user"}, {"type": "pid"}, {"type": "mount"},
            {"type": "network", "path": "/proc/1/ns/net"}
        ]))
        .unwrap();
        assert_eq!(n.net, NsAction::Join("/proc/1/ns/net".into()));
        let err = ns(serde_json::json!([
            {"type": "user", "path": "/proc/1/ns/user"}, {"type": "pid"}, {"type": "mount"}
        ]))
        .unwrap_err();
        assert!(matches!(err, NamespaceError::JoinUser(_)), "{err}");
    }

    #[test]
    fn refuses_cgroup() {
        let err = ns(serde_json::json!([{"type": "cgroup"}, {"type": "mount"}])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cgroup namespaces are not supported by berth-shim"
        );
    }

    #[test]
    fn requires_mount_namespace() {
        assert!(matches!(
            ns(serde_json::json!([{"type": "pid"}])),
            Err(NamespaceError::NoMountNamespace)
        ));
    }
}
