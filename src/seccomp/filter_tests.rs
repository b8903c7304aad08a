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

/// The default profile as a binary tree (what berth loads, decision 0046)
/// and as libseccomp's linear list decide every syscall of every
/// architecture the same way, for arguments around each value the
/// profile's conditions compare with; the tree decides in far fewer steps.
#[test]
fn the_default_profiles_tree_decides_as_its_linear_list_does() {
    use berth_seccomp::Layout;
    let caps: HashSet<_> = crate::bundle::DEFAULT_CAPABILITIES
        .iter()
        .copied()
        .collect();
    let spec = docker_default().resolve(&caps, &Host::current()).unwrap();
    let filter = SeccompFilter::check(&spec).unwrap();
    let tree = Bpf::of(&filter.compile_as(Layout::BinaryTree).unwrap());
    let list = Bpf::of(&filter.compile_as(Layout::Linear).unwrap());
    assert_ne!(tree.0, list.0, "the two layouts compiled alike");

    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let mut values: Vec<u64> = vec![
        0,
        1,
        40,
        41,
        u64::MAX,
        1 << 31,
        1 << 32,
        libc::SIGCHLD as u64,
    ];
    for v in [0x8, 0x20000, 0x20008, 0xffff_ffff, 0x7e02_0000, 0x401c_5820] {
        values.extend([v, v + 1, v - 1, v | 1 << 32, v | libc::SIGCHLD as u64]);
    }
    let (mut tree_most, mut list_most, mut decided) = (0, 0, 0);
    for (arch, numbers) in [
        (AUDIT_ARCH_X86_64, (0..600).collect::<Vec<u32>>()),
        (
            AUDIT_ARCH_X86_64,
            (0..600).map(|n| n | X32_SYSCALL_BIT).collect(),
        ),
        (AUDIT_ARCH_I386, (0..600).collect()),
        (0xdead_beef, vec![0, 1, 59]),
    ] {
        for nr in numbers {
            let mut calls = vec![[0u64; 6]];
            for index in 0..3 {
                for &v in &values {
                    let mut args = [0u64; 6];
                    args[index] = v;
                    calls.push(args);
                }
            }
            for args in calls {
                let data = seccomp_data(nr, arch, &args);
                let (by_tree, tree_steps) = tree.run(&data);
                let (by_list, list_steps) = list.run(&data);
                assert_eq!(
                    by_tree, by_list,
                    "arch {arch:#x} nr {nr:#x} args {args:x?}: tree {by_tree:#x}, list {by_list:#x}"
                );
                tree_most = tree_most.max(tree_steps);
                list_most = list_most.max(list_steps);
                decided += 1;
            }
        }
    }
    assert!(decided > 100_000, "{decided}");
    assert!(
        tree_most * 4 < list_most,
        "longest path: tree {tree_most} steps, list {list_most}"
    );
}

/// `struct seccomp_data` as the kernel lays it out for a filter.
fn seccomp_data(nr: u32, arch: u32, args: &[u64; 6]) -> Vec<u8> {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&nr.to_ne_bytes());
    data.extend_from_slice(&arch.to_ne_bytes());
    data.extend_from_slice(&0u64.to_ne_bytes());
    for a in args {
        data.extend_from_slice(&a.to_ne_bytes());
    }
    data
}

/// A classic BPF program and an interpreter for what seccomp allows of it.
struct Bpf(Vec<(u16, u8, u8, u32)>);

impl Bpf {
    fn of(program: &SeccompProgram) -> Bpf {
        let bytes = program.to_bytes();
        Bpf(bytes
            .chunks_exact(8)
            .map(|c| {
                (
                    u16::from_ne_bytes([c[0], c[1]]),
                    c[2],
                    c[3],
                    u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect())
    }

    /// The action the program returns for `data`, and how many
    /// instructions it ran.
    fn run(&self, data: &[u8]) -> (u32, usize) {
        let (mut a, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
        for steps in 1.. {
            let (code, jt, jf, k) = self.0[pc];
            pc += 1;
            let jump = |taken: bool| if taken { jt as usize } else { jf as usize };
            match code {
                0x20 => {
                    let k = k as usize;
                    a = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                }
                0x00 => a = k,
                0x01 => x = k,
                0x60 => a = mem[k as usize],
                0x61 => x = mem[k as usize],
                0x02 => mem[k as usize] = a,
                0x03 => mem[k as usize] = x,
                0x07 => x = a,
                0x87 => a = x,
                0x04 => a = a.wrapping_add(k),
                0x14 => a = a.wrapping_sub(k),
                0x44 => a |= k,
                0x54 => a &= k,
                0x74 => a >>= k,
                0x64 => a <<= k,
                0x05 => pc += k as usize,
                0x15 => pc += jump(a == k),
                0x25 => pc += jump(a > k),
                0x35 => pc += jump(a >= k),
                0x45 => pc += jump(a & k != 0),
                0x1d => pc += jump(a == x),
                0x2d => pc += jump(a > x),
                0x3d => pc += jump(a >= x),
                0x4d => pc += jump(a & x != 0),
                0x06 => return (k, steps),
                0x16 => return (a, steps),
                other => panic!("BPF opcode {other:#x} at {}", pc - 1),
            }
        }
        unreachable!()
    }
}
