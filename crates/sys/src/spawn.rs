//! Starting a program with chosen descriptors at chosen numbers, without
//! copying the caller's address space: `posix_spawn(3)` (glibc clones with
//! `CLONE_VM | CLONE_VFORK`), where `std::process::Command` with a
//! `pre_exec` closure forks. A fork of a large multi-threaded process (the
//! agent) copies its page tables and then makes every page it writes take
//! a copy-on-write fault and a TLB shootdown on all CPUs (decision 0043).

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Descriptors are copied above this number before they are placed, so
/// that no placement overwrites a descriptor still to be placed.
const PARK_ABOVE: RawFd = 256;

extern "C" {
    static environ: *const *const libc::c_char;
}

/// Starts `program` with `args` (after the program name) and this
/// process's environment; stdin, stdout and stderr `/dev/null`, and
/// `fds[i].0` at number `fds[i].1` (inheritable there); every other
/// descriptor above 2 is closed in the child (targets must leave no gap
/// that matters: numbers between 3 and the highest target that are not
/// targets are closed only if close-on-exec). The child's signal mask is empty and SIGPIPE has
/// its default action. Returns the child's pid; the caller reaps it.
pub fn spawn(
    program: &Path,
    args: &[&OsStr],
    fds: &[(BorrowedFd<'_>, RawFd)],
) -> io::Result<libc::pid_t> {
    let c = |s: &OsStr| {
        CString::new(s.as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in an argument"))
    };
    let program_c = c(program.as_os_str())?;
    let mut argv_owned = vec![program_c.clone()];
    for arg in args {
        argv_owned.push(c(arg)?);
    }
    let mut argv: Vec<*mut libc::c_char> =
        argv_owned.iter().map(|a| a.as_ptr() as *mut _).collect();
    argv.push(std::ptr::null_mut());
    if fds
        .iter()
        .any(|&(_, target)| !(3..PARK_ABOVE).contains(&target))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor targets must lie in 3..{PARK_ABOVE}"),
        ));
    }
    // Close-on-exec copies above every target: the originals may sit on a
    // target number, the copies cannot, and vanish at exec.
    let mut parked: Vec<OwnedFd> = Vec::with_capacity(fds.len());
    for (fd, _) in fds {
        // SAFETY: F_DUPFD_CLOEXEC returns a fresh descriptor, owned below.
        let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, PARK_ABOVE) };
        if copy < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `copy` is ours alone.
        parked.push(unsafe { OwnedFd::from_raw_fd(copy) });
    }

    let mut actions = Initialized::new(
        libc::posix_spawn_file_actions_init,
        libc::posix_spawn_file_actions_destroy,
    )?;
    let null = CString::new("/dev/null").expect("no NUL in a literal");
    check(
        // SAFETY: `actions` is initialized; `null` outlives the spawn.
        unsafe {
            libc::posix_spawn_file_actions_addopen(
                actions.as_mut(),
                0,
                null.as_ptr(),
                libc::O_RDONLY,
                0,
            )
        },
    )?;
    for target in [1, 2] {
        check(
            // SAFETY: as above.
            unsafe {
                libc::posix_spawn_file_actions_addopen(
                    actions.as_mut(),
                    target,
                    null.as_ptr(),
                    libc::O_WRONLY,
                    0,
                )
            },
        )?;
    }
    for (copy, (_, target)) in parked.iter().zip(fds) {
        // dup2 onto another number clears FD_CLOEXEC there.
        check(
            // SAFETY: `actions` is initialized; both numbers are valid.
            unsafe {
                libc::posix_spawn_file_actions_adddup2(actions.as_mut(), copy.as_raw_fd(), *target)
            },
        )?;
    }

    // Nothing else: whatever this process holds without close-on-exec (an
    // inherited jobserver pipe, a stray log file) stays here.
    let first_free = fds
        .iter()
        .map(|&(_, target)| target + 1)
        .max()
        .unwrap_or(3)
        .max(3);
    close_from(&mut actions, first_free)?;

    let mut attr = Initialized::new(libc::posix_spawnattr_init, libc::posix_spawnattr_destroy)?;
    // SAFETY: the sigset_t values are initialized by sigemptyset and
    // sigaddset before use; `attr` is initialized.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        let mut default: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut default);
        libc::sigaddset(&mut default, libc::SIGPIPE);
        check(libc::posix_spawnattr_setsigmask(attr.as_mut(), &empty))?;
        check(libc::posix_spawnattr_setsigdefault(attr.as_mut(), &default))?;
        check(libc::posix_spawnattr_setflags(
            attr.as_mut(),
            (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as _,
        ))?;
    }

    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call: the program path and
    // argv (NULL-terminated) live in `argv_owned`/`argv`, `environ` is the
    // process's environment, `actions` and `attr` are initialized.
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            program_c.as_ptr(),
            actions.as_mut(),
            attr.as_mut(),
            argv.as_mut_ptr(),
            environ as *const *mut libc::c_char,
        )
    };
    drop(parked);
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(pid)
}

/// Waits for child `pid` to end; its wait status.
pub fn wait(pid: libc::pid_t) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes only `status`.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Adds "close every descriptor from `first` up" to `actions` (glibc 2.34+).
#[cfg(target_env = "gnu")]
fn close_from(
    actions: &mut Initialized<libc::posix_spawn_file_actions_t>,
    first: RawFd,
) -> io::Result<()> {
    // SAFETY: `actions` is initialized.
    check(unsafe { libc::posix_spawn_file_actions_addclosefrom_np(actions.as_mut(), first) })
}

/// musl has no `addclosefrom`; nothing built for musl (the CLI, decision
/// 0055) spawns through here: only the agent, which is built against
/// glibc, does.
#[cfg(not(target_env = "gnu"))]
fn close_from(
    _actions: &mut Initialized<libc::posix_spawn_file_actions_t>,
    _first: RawFd,
) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "spawn with closed descriptors needs glibc",
    ))
}

/// A posix_spawn family return code as a result.
fn check(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        rc => Err(io::Error::from_raw_os_error(rc)),
    }
}

/// A posix_spawn object (file actions or attributes): initialized by
/// `init`, destroyed by `destroy` when dropped.
struct Initialized<T> {
    value: T,
    destroy: unsafe extern "C" fn(*mut T) -> libc::c_int,
}

impl<T> Initialized<T> {
    fn new(
        init: unsafe extern "C" fn(*mut T) -> libc::c_int,
        destroy: unsafe extern "C" fn(*mut T) -> libc::c_int,
    ) -> io::Result<Self> {
        // SAFETY: both types are plain C structs for which all-zero is a
        // valid (uninitialized-but-harmless) value; `init` fills it in before
        // any other use.
        let mut value: T = unsafe { std::mem::zeroed() };
        // SAFETY: `value` is a live, writable object of the type `init` takes.
        check(unsafe { init(&mut value) })?;
        Ok(Initialized { value, destroy })
    }

    fn as_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T> Drop for Initialized<T> {
    fn drop(&mut self) {
        // SAFETY: initialized in `new` (a failed init returned before this
        // value existed), destroyed once.
        unsafe { (self.destroy)(&mut self.value) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    fn sh(script: &str, fds: &[(BorrowedFd<'_>, RawFd)]) -> (libc::pid_t, i32) {
        let pid = spawn(
            Path::new("/bin/sh"),
            &[OsStr::new("-c"), OsStr::new(script)],
            fds,
        )
        .unwrap();
        (pid, wait(pid).unwrap())
    }

    #[test]
    fn descriptors_arrive_at_their_numbers_and_nothing_else_is_inherited() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        // Neither `ours` (close-on-exec like every descriptor Rust opens)
        // nor whatever this test process inherited without close-on-exec
        // (cargo's jobserver pipe) reaches the child. `ls` (exec'd by the
        // shell with its stdout on fd 3) lists 0-2, 3, and the directory it
        // opened to list, at the lowest free number: 4.
        let (_, status) = sh("exec ls /proc/self/fd >&3", &[(theirs.as_fd(), 3)]);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status}"
        );
        drop(theirs);
        let mut out = String::new();
        (&ours).read_to_string(&mut out).unwrap();
        assert_eq!(out, "0\n1\n2\n3\n4\n");
    }

    #[test]
    fn a_descriptor_already_at_its_target_number_is_made_inheritable() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        // The child finds its socket at the number the parent holds it at.
        let target = theirs.as_raw_fd();
        let (_, status) = sh(
            &format!("echo same >&{target}"),
            &[(theirs.as_fd(), target)],
        );
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status}"
        );
        drop(theirs);
        let mut out = String::new();
        (&ours).read_to_string(&mut out).unwrap();
        assert_eq!(out, "same\n");
    }

    #[test]
    fn stdio_is_dev_null_and_sigpipe_is_default() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (_, status) = sh(
            "s=$(readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2; grep SigIgn /proc/$$/status); echo \"$s\" >&3",
            &[(theirs.as_fd(), 3)],
        );
        assert_eq!(status, 0);
        drop(theirs);
        let mut out = String::new();
        (&ours).read_to_string(&mut out).unwrap();
        let mut lines = out.lines();
        for _ in 0..3 {
            assert_eq!(lines.next(), Some("/dev/null"), "{out}");
        }
        let ignored =
            u64::from_str_radix(lines.next().unwrap().split_whitespace().nth(1).unwrap(), 16)
                .unwrap();
        assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "{out}");
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_child() {
        let e = spawn(Path::new("/nonexistent/berth-shim"), &[], &[]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_target_below_three_is_refused() {
        let (_ours, theirs) = UnixStream::pair().unwrap();
        let e = spawn(Path::new("/bin/true"), &[], &[(theirs.as_fd(), 1)]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
