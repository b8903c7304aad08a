//! The container child: from `fork()` in the monitor to `execve`.
//!
//! Running Rust code here is fine because the shim is single-threaded: no
//! lock can be held by a thread that does not exist in the child.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use berth_protocol::FailureKind;
use nix::errno::Errno;
use nix::sys::prctl;
use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::{chdir, dup2_stderr, dup2_stdin, dup2_stdout, sethostname, setsid};
use thiserror::Error;

use super::capabilities::CapabilityError;
use super::cgroup_move::{CgroupMove, CgroupMoveError};
use super::device_nodes::{self, DeviceNodeError};
use super::devices::{self, DeviceError};
use super::exec;
use super::keyring::{self, KeyringError};
use super::masks::{self, MaskError};
use super::mounts::{self, MountError};
use super::namespaces::{self, NamespaceError};
use super::rootfs::{self, RootfsError};
use super::spec::{ContainerConfig, ProcessConfig};
use super::sync;
use super::user::UserError;
use super::userns;
use berth_seccomp::{SeccompError, SeccompProgram};

#[derive(Debug, Error)]
pub enum SetupError {
    #[error("reset signal mask: {0}")]
    Signals(Errno),
    #[error("setsid: {0}")]
    Setsid(Errno),
    #[error("open /dev/null: {0}")]
    DevNull(std::io::Error),
    #[error("set up stdio: {0}")]
    Stdio(Errno),
    #[error("mark inherited fds close-on-exec: {0}")]
    CloseRange(std::io::Error),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    DeviceNode(#[from] DeviceNodeError),
    #[error(transparent)]
    Mask(#[from] MaskError),
    #[error("set hostname {hostname}: {errno}")]
    Hostname { hostname: String, errno: Errno },
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("set keepcaps: {0}")]
    KeepCaps(Errno),
    #[error("set no_new_privs: {0}")]
    NoNewPrivs(Errno),
    #[error("chdir to {path}: {errno}")]
    Cwd { path: PathBuf, errno: Errno },
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error("set up the pty: {0}")]
    Pty(Errno),
    #[error(transparent)]
    CgroupMove(#[from] CgroupMoveError),
    #[error(transparent)]
    RootMount(#[from] berth_protocol::root_mount::RootMountError),
}

impl SetupError {
    /// Whose fault it is, for the agent's answer: a working directory that
    /// is not there, or a mount target an image's symlink leads out of the
    /// root, is the caller's; the rest is berth's.
    pub fn kind(&self) -> FailureKind {
        let resolve = match self {
            SetupError::Cwd { .. } => return FailureKind::Workdir,
            SetupError::Mount(MountError::Resolve(e))
            | SetupError::Mask(MaskError::Resolve(e))
            | SetupError::Device(DeviceError::Resolve(e))
            | SetupError::DeviceNode(DeviceNodeError::Resolve(e)) => e,
            _ => return FailureKind::Setup,
        };
        if resolve.is_escape() {
            FailureKind::MountEscape
        } else {
            FailureKind::Setup
        }
    }
}

/// The child's ends of the pipes.
pub struct ChildFds {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub go: OwnedFd,
    pub report: OwnedFd,
    /// With `-i`, the read end of the shim's stdin pipe.
    pub stdin: Option<OwnedFd>,
    /// With `-t`, the socket the pty's master goes to the shim on.
    pub pty: Option<OwnedFd>,
}

/// The syscalls the container's process makes between an early filter
/// and its exec, besides those the exec itself needs (which any filter
/// must allow): the report (`write`), the wait for the go (`read`) and
/// the go pipe's close.
const AFTER_EARLY_FILTER: &[&str] = &["read", "write", "close"];

/// Sets the container up, reports, waits for the release and execs. Never
/// returns: the process becomes the command or exits.
pub fn run(config: &ContainerConfig, fds: ChildFds) -> ! {
    berth_sys::launch_marks::mark("child: started");
    let ChildFds {
        stdout,
        stderr,
        go,
        report,
        stdin,
        pty,
    } = fds;
    if config.id_mappings.is_some() {
        // Nothing can be created or mounted before the maps exist.
        if !sync::wait_maps(&go) {
            exit(1);
        }
        if let Err(e) = userns::become_root() {
            sync::report_error(&report, FailureKind::Setup, &e.to_string());
            exit(1);
        }
    }
    let mut seccomp = match setup(config, stdout, stderr, stdin, pty) {
        Ok(seccomp) => seccomp,
        Err(e) => {
            sync::report_error(&report, e.kind(), &e.to_string());
            exit(1);
        }
    };
    // A filter that lets the report, the wait for the go and its close
    // through goes on now, while the agent isolates the process: its load
    // (the kernel checks and compiles it) is then off the launch's
    // critical path (decision 0044). Any other goes on last, below.
    let early = config
        .process
        .seccomp
        .as_ref()
        .is_some_and(|f| f.allows_unconditionally(AFTER_EARLY_FILTER));
    berth_sys::launch_marks::mark("child: confined");
    if early {
        if let Some(filter) = seccomp.take() {
            if let Err(e) = filter.install() {
                sync::report_error(&report, FailureKind::Setup, &e.to_string());
                exit(1);
            }
        }
    }
    berth_sys::launch_marks::mark("child: ready");
    if sync::report_ready(&report).is_err() {
        exit(1);
    }
    if !sync::wait_release(&go) {
        // The monitor is gone: nobody would collect the output or the exit.
        exit(1);
    }
    let p = &config.process;
    // The filter goes on last, so that none of the setup above needs a
    // syscall the profile forbids; with no_new_privs set, no capability is
    // needed for it.
    if let Some(filter) = seccomp {
        if let Err(e) = filter.install() {
            sync::report_error(&report, FailureKind::Setup, &e.to_string());
            exit(1);
        }
    }
    drop(go);
    let report = if p.init {
        match super::init::fork_reaper(report) {
            Ok(report) => report,
            Err((e, report)) => {
                sync::report_error(
                    &report,
                    FailureKind::Setup,
                    &format!("fork the init process: {e}"),
                );
                exit(1);
            }
        }
    } else {
        report
    };
    berth_sys::launch_marks::mark("child: execs");
    let message = exec::exec(&p.args, &p.env, p.path_var.as_deref());
    sync::report_error(&report, FailureKind::Exec, &message);
    exit(127);
}

/// `_exit`: no atexit handlers or stdio flushing of state copied from the
/// monitor (a fork's child of any shim process uses it).
pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(code) }
}

/// Returns the seccomp filter still to install before exec.
fn setup(
    config: &ContainerConfig,
    stdout: OwnedFd,
    stderr: OwnedFd,
    stdin: Option<OwnedFd>,
    pty: Option<OwnedFd>,
) -> Result<Option<SeccompProgram>, SetupError> {
    reset_signals()?;
    setsid().map_err(SetupError::Setsid)?;
    // Its cgroups' parents, opened before any mount below (decision 0047).
    let cgroups = CgroupMove::open(&config.cgroups, config.cgroups_ready)?;

    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(SetupError::DevNull)?;
    match &stdin {
        Some(pipe) => dup2_stdin(pipe),
        None => dup2_stdin(&null),
    }
    .map_err(SetupError::Stdio)?;
    dup2_stdout(&stdout).map_err(SetupError::Stdio)?;
    dup2_stderr(&stderr).map_err(SetupError::Stdio)?;
    drop((null, stdout, stderr, stdin));
    // Whatever else the agent let us inherit must not reach the command; the
    // pipes to the monitor are close-on-exec already.
    close_range(3, libc::CLOSE_RANGE_CLOEXEC as libc::c_uint).map_err(SetupError::CloseRange)?;

    let new_net = config.namespaces.enter_others()?;
    berth_sys::launch_marks::mark("child: namespaces made");
    if new_net {
        namespaces::loopback_up()?;
    }

    // The agent's root mount, built while this process started (decision
    // 0047); `None`: the overlay is mounted here.
    let root_mount = match config.root_mount {
        Some(socket) => {
            // SAFETY: the monitor keeps the socket open for the child's life.
            let socket = unsafe { BorrowedFd::borrow_raw(socket) };
            berth_protocol::root_mount::receive(socket)?
        }
        None => None,
    };
    let root = rootfs::prepare(
        &config.rootfs,
        config.rootfs_readonly,
        config.overlay.as_ref(),
        root_mount.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
    )?;
    drop(root_mount);
    berth_sys::launch_marks::mark("child: root mounted");
    for m in &config.mounts {
        mounts::mount_one(&root, m)?;
    }
    if config.mounts.iter().any(|m| m.is_dev_tmpfs()) {
        devices::create_defaults(&root)?;
    }
    device_nodes::create(&root, &config.devices)?;
    if let Some(hostname) = &config.hostname {
        sethostname(hostname).map_err(|errno| SetupError::Hostname {
            hostname: hostname.clone(),
            errno,
        })?;
    }
    berth_sys::launch_marks::mark("child: mounts made");
    masks::readonly_paths(&root, &config.readonly_paths)?;
    masks::mask_paths(&root, &config.masked_paths)?;
    if let Some(overlay) = &config.overlay {
        if overlay.make_workdir {
            // As Docker does for an image, a missing working directory is
            // created, in the container's own layer.
            super::resolve::dir(&root, &config.process.cwd).map_err(MountError::from)?;
        }
        if config.rootfs_readonly {
            rootfs::seal_readonly(&root)?;
        }
    }
    berth_sys::launch_marks::mark("child: paths masked");
    rootfs::pivot(&root)?;
    berth_sys::launch_marks::mark("child: pivoted");
    drop(root);
    if let Some(socket) = pty {
        // The container's own devpts, after the pivot: its slave becomes
        // the controlling terminal and stdio, the master goes to the shim.
        let (master, slave) = super::pty::open().map_err(SetupError::Pty)?;
        super::pty::make_controlling(slave.as_fd())
            .and_then(|()| dup2_stdin(&slave))
            .and_then(|()| dup2_stdout(&slave))
            .and_then(|()| dup2_stderr(&slave))
            .and_then(|()| super::pty::send_fd(socket.as_fd(), master.as_fd()))
            .map_err(SetupError::Pty)?;
        drop((master, slave, socket));
    }
    // Still root with every capability: the new keyring is owned by root
    // and possessed by the process, whatever user it becomes below.
    keyring::join_new_session()?;
    // Into its cgroups once the agent has made them (it has prepared them
    // meanwhile), while it still has every capability; before its command.
    if let Some(cgroups) = cgroups {
        cgroups.join()?;
    }
    berth_sys::launch_marks::mark("child: in its cgroups");
    confine(&config.process)
}

/// The process's own confinement, after the namespaces and the root are in
/// place: rlimits, bounding set, user, capabilities, no_new_privs, the
/// working directory. Returns the seccomp filter still to install right
/// before exec. Shared by the container's first process and `exec`.
pub fn confine(p: &ProcessConfig) -> Result<Option<SeccompProgram>, SetupError> {
    for r in &p.rlimits {
        r.apply()?;
    }
    if let Some(caps) = &p.capabilities {
        caps.apply_bounding()?;
    }
    // Compiled here: this process's heap goes at execve, the monitor's
    // would stay (see shim::seccomp).
    let mut seccomp = p.seccomp.as_ref().map(|f| f.compile()).transpose()?;
    // Keep the permitted set across setuid to a non-root user, so the spec's
    // sets can be installed afterwards.
    prctl::set_keepcaps(true).map_err(SetupError::KeepCaps)?;
    // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN, which
    // the user switch may take away: install it now, as runc does, and the
    // rest of the setup must get past it.
    if !p.no_new_privileges {
        if let Some(filter) = seccomp.take() {
            filter.install()?;
        }
    }
    p.user.switch()?;
    prctl::set_keepcaps(false).map_err(SetupError::KeepCaps)?;
    if let Some(caps) = &p.capabilities {
        caps.apply()?;
    }
    if p.no_new_privileges {
        prctl::set_no_new_privs().map_err(SetupError::NoNewPrivs)?;
    }
    chdir(&p.cwd).map_err(|errno| SetupError::Cwd {
        path: p.cwd.clone(),
        errno,
    })?;
    Ok(seccomp)
}

/// The monitor ignores SIGPIPE, and an ignored disposition survives exec;
/// the command must start with defaults and an empty mask.
pub fn reset_signals() -> Result<(), SetupError> {
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(SetupError::Signals)?;
    for sig in Signal::iterator() {
        if sig == Signal::SIGKILL || sig == Signal::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL has no handler-safety concerns.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
    Ok(())
}

/// `close_range(first, ~0, flags)`, by its number (musl's libc has no
/// wrapper for it): closes every descriptor from `first` on, or with
/// `CLOSE_RANGE_CLOEXEC` marks them close-on-exec.
pub(crate) fn close_range(first: libc::c_uint, flags: libc::c_uint) -> std::io::Result<()> {
    // SAFETY: plain integer arguments. Closing: the callers keep the
    // descriptors they use below `first`, and no Rust object owns one
    // above it; CLOSE_RANGE_CLOEXEC only changes fd flags.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, flags) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
