//! berth's profiles through berth-seccomp's compiler into a real filter:
//! the default profile blocks what it says and lets the rest through.

use super::default::docker_default;
use super::{Host, Profile};
use berth_seccomp::{SeccompFilter, SeccompProgram};
use nix::errno::Errno;
use std::collections::HashSet;

fn default_filter() -> SeccompProgram {
    let caps: HashSet<_> = crate::bundle::DEFAULT_CAPABILITIES
        .iter()
        .copied()
        .collect();
    let spec = docker_default().resolve(&caps, &Host::current()).unwrap();
    SeccompFilter::check(&spec).unwrap().compile().unwrap()
}

/// Runs `probe` in a forked child with `filter` installed (after
/// no_new_privs, as the shim does) and returns the child's exit code.
/// The child makes raw syscalls only: the test process has threads.
fn in_child(filter: &SeccompProgram, probe: fn() -> i32) -> i32 {
    // SAFETY: the child calls only prctl, seccomp, the probe's raw
    // syscalls and _exit, which are async-signal-safe.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: see above.
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    libc::_exit(100);
                }
            }
            if filter.install().is_err() {
                // SAFETY: see above.
                unsafe { libc::_exit(101) }
            }
            let code = probe();
            // SAFETY: see above.
            unsafe { libc::_exit(code) }
        }
        pid if pid > 0 => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(libc::WIFEXITED(status), "child status {status}");
            libc::WEXITSTATUS(status)
        }
        _ => panic!("fork: {}", std::io::Error::last_os_error()),
    }
}

fn errno_of(rc: libc::c_long) -> i32 {
    if rc >= 0 {
        0
    } else {
        Errno::last_raw()
    }
}

#[test]
fn the_default_profile_refuses_setting_xfs_project_ids_only() {
    let filter = default_filter();
    const SET: u64 = super::default::FS_IOC_FSSETXATTR;
    // On fd -1: EBADF when the filter lets it through, EPERM when not.
    fn ioctl(request: u64) -> i32 {
        // SAFETY: ioctl on an invalid fd fails before reading anything.
        errno_of(unsafe { libc::syscall(libc::SYS_ioctl, -1, request, 0) })
    }
    assert_eq!(in_child(&filter, || ioctl(SET)), libc::EPERM);
    // The kernel ignores the high 32 bits: so does the filter.
    assert_eq!(in_child(&filter, || ioctl(SET | 1 << 32)), libc::EPERM);
    assert_eq!(
        in_child(&filter, || ioctl(SET | 0xffff_ffff << 32)),
        libc::EPERM
    );
    // Every other request passes: the get, its neighbours, a tty's.
    assert_eq!(in_child(&filter, || ioctl(0x801c_581f)), libc::EBADF);
    assert_eq!(in_child(&filter, || ioctl(SET + 1)), libc::EBADF);
    assert_eq!(in_child(&filter, || ioctl(SET - 1)), libc::EBADF);
    assert_eq!(in_child(&filter, || ioctl(SET ^ 1 << 31)), libc::EBADF);
    assert_eq!(in_child(&filter, || ioctl(libc::TCGETS)), libc::EBADF);
    assert_eq!(in_child(&filter, || ioctl(0)), libc::EBADF);
}

#[test]
fn the_default_profile_compiles_and_blocks_namespaces_but_not_fork() {
    let filter = default_filter();
    assert!(filter.len() > 100, "{filter:?}");
    // unshare(CLONE_NEWUSER): EPERM.
    let code = in_child(&filter, || {
        // SAFETY: a raw syscall with integer arguments.
        errno_of(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) })
    });
    assert_eq!(code, libc::EPERM);
    // clone3: ENOSYS, whatever its arguments.
    let code = in_child(&filter, || {
        // SAFETY: clone3 with no arguments struct fails before using it.
        errno_of(unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0) })
    });
    assert_eq!(code, libc::ENOSYS);
    // clone with CLONE_NEWNS: EPERM; a plain fork-like clone works.
    let code = in_child(&filter, || {
        // SAFETY: clone with a namespace flag is refused before it forks.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone,
                libc::CLONE_NEWNS | libc::SIGCHLD,
                0,
                0,
                0,
                0,
            )
        };
        errno_of(rc)
    });
    assert_eq!(code, libc::EPERM);
    let code = in_child(&filter, || {
        // SAFETY: a fork-like clone; the grandchild exits at once.
        let rc = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
        if rc == 0 {
            // SAFETY: the grandchild leaves.
            unsafe { libc::_exit(0) }
        }
        errno_of(rc)
    });
    assert_eq!(code, 0);
    // keyctl: EPERM.
    let code = in_child(&filter, || {
        // SAFETY: KEYCTL_GET_KEYRING_ID with integer arguments.
        errno_of(unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 0) })
    });
    assert_eq!(code, libc::EPERM);
}

#[test]
fn an_allow_list_with_a_denied_syscall_compiles_from_oci_json() {
    let profile = Profile::parse(
        br#"{"defaultAction": "SCMP_ACT_ALLOW",
             "syscalls": [{"names": ["getppid", "no_such_call"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                          {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    let spec = profile.resolve(&HashSet::new(), &Host::current()).unwrap();
    let checked = SeccompFilter::check(&spec).unwrap();
    assert_eq!(checked.unknown_syscalls, ["no_such_call"]);
    let filter = checked.compile().unwrap();
    let code = in_child(&filter, || {
        // SAFETY: getppid has no arguments.
        errno_of(unsafe { libc::syscall(libc::SYS_getppid) })
    });
    assert_eq!(code, libc::EACCES);
}
