//! berth's profiles through berth-seccomp's compiler into a real filter:
//! the default profile blocks what it says and lets the rest through.

use super::default::docker_default;
use super::{Host, Profile};
use berth_seccomp::agreement::{self, Constants, SeccompData};
use berth_seccomp::{SeccompFilter, SeccompProgram};
use nix::errno::Errno;
use std::collections::HashSet;

/// The default profile as a container with the default capabilities
/// gets it, checked.
fn default_profile() -> SeccompFilter {
    let caps: HashSet<_> = crate::bundle::DEFAULT_CAPABILITIES
        .iter()
        .copied()
        .collect();
    let spec = docker_default().resolve(&caps, &Host::current()).unwrap();
    SeccompFilter::check(&spec).unwrap()
}

fn default_filter() -> SeccompProgram {
    default_profile().compile().unwrap()
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

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The default profile's argument values worth trying: around each value
/// its conditions compare with.
fn default_profile_values() -> Vec<u64> {
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
    values
}

/// The syscalls to decide, as (architecture, number): every number below
/// 600 of x86_64, x32 and i386, a few of an unknown architecture, and
/// each of `more` on x86_64, i386 and the unknown one.
fn syscalls(more: &[u32]) -> Vec<(u32, u32)> {
    let mut calls: Vec<(u32, u32)> = (0..600)
        .flat_map(|n| {
            [
                (AUDIT_ARCH_X86_64, n),
                (AUDIT_ARCH_X86_64, n | X32_SYSCALL_BIT),
                (AUDIT_ARCH_I386, n),
            ]
        })
        .chain([0, 1, 59].map(|n| (0xdead_beef, n)))
        .collect();
    for &n in more {
        calls.extend([AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, 0xdead_beef].map(|a| (a, n)));
    }
    calls.sort_unstable();
    calls.dedup();
    calls
}

/// The argument sets to try: all zero, then each of `values` in each
/// argument of `indexes` (the others zero).
fn argument_sets(values: &[u64], indexes: std::ops::Range<usize>) -> Vec<SeccompData> {
    let mut sets = vec![SeccompData::default()];
    for index in indexes {
        for &v in values {
            let mut set = SeccompData::default();
            set.args[index] = v;
            sets.push(set);
        }
    }
    sets
}

/// Asserts that programs `a` and `b` decide every syscall of `syscalls`
/// with every argument set of `args` (their `nr` and `arch` aside)
/// alike; returns the most instructions each ran for one, and how many
/// they decided.
fn assert_alike(
    (a_name, a): (&str, &SeccompProgram),
    (b_name, b): (&str, &SeccompProgram),
    syscalls: &[(u32, u32)],
    args: &[SeccompData],
) -> (usize, usize, usize) {
    let (mut a_most, mut b_most, mut decided) = (0, 0, 0);
    for &(arch, nr) in syscalls {
        for set in args {
            let data = SeccompData { nr, arch, ..*set };
            let (by_a, by_b) = agreement::decide_alike(a, b, &data)
                .unwrap_or_else(|d| panic!("{a_name} (first), {b_name} (second): {d}"));
            a_most = a_most.max(by_a.steps);
            b_most = b_most.max(by_b.steps);
            decided += 1;
        }
    }
    (a_most, b_most, decided)
}

/// The default profile as a binary tree and as libseccomp's linear list
/// decide every syscall of every architecture the same way, for
/// arguments around each value the profile's conditions compare with;
/// the tree decides in far fewer steps.
#[test]
fn the_default_profiles_tree_decides_as_its_linear_list_does() {
    use berth_seccomp::Layout;
    let filter = default_profile();
    let tree = filter.compile_as(Layout::BinaryTree).unwrap();
    let list = filter.compile_as(Layout::Linear).unwrap();
    assert_ne!(tree, list, "the two layouts compiled alike");

    let (tree_most, list_most, decided) = assert_alike(
        ("tree", &tree),
        ("list", &list),
        &syscalls(&[]),
        &argument_sets(&default_profile_values(), 0..3),
    );
    assert!(decided > 100_000, "{decided}");
    assert!(
        tree_most * 4 < list_most,
        "longest path: tree {tree_most} steps, list {list_most}"
    );
}

/// The default profile's tree specialized per architecture and syscall
/// range (what berth loads, decision 0046) decides as the tree does, for
/// every syscall number below 600 of each architecture and at and around
/// each number either program compares with, and arguments around each
/// value the tree compares them with; it is under a third as long, and
/// no path through it is longer than the tree's longest.
#[test]
fn the_default_profiles_specialized_tree_decides_as_the_tree_does() {
    use berth_seccomp::Layout;
    let filter = default_profile();
    let tree = filter.compile_as(Layout::BinaryTree).unwrap();
    let specialized = filter.compile().unwrap();
    assert_eq!(specialized, filter.compile_as(Layout::Specialized).unwrap());

    let mut args = argument_sets(&default_profile_values(), 0..6);
    args.extend(Constants::of(&tree).argument_sets());
    let numbers = [
        Constants::of(&tree).numbers(),
        Constants::of(&specialized).numbers(),
    ];
    let (tree_most, specialized_most, decided) = assert_alike(
        ("tree", &tree),
        ("specialized", &specialized),
        &syscalls(&numbers.concat()),
        &args,
    );
    let (tree_longest, specialized_longest) = (
        agreement::longest_path(&tree),
        agreement::longest_path(&specialized),
    );
    // The check specialize made before giving the program back.
    let started = std::time::Instant::now();
    let checked = agreement::agree(&tree, &specialized).unwrap();
    println!(
        "default profile: tree {} instructions, longest path {tree_longest} \
         ({tree_most} run); specialized {} instructions, longest path \
         {specialized_longest} ({specialized_most} run); {decided} decided; \
         specialize's check: {checked} cases in {:?}",
        tree.len(),
        specialized.len(),
        started.elapsed()
    );
    assert!(decided > 1_000_000, "{decided}");
    assert!(
        specialized.len() * 3 <= tree.len(),
        "specialized {} instructions, tree {}",
        specialized.len(),
        tree.len()
    );
    assert!(
        specialized_longest <= tree_longest,
        "longest path: specialized {specialized_longest}, tree {tree_longest}"
    );
}

/// Hand-written profiles with conditions decide alike as a linear list,
/// a tree and a specialized tree.
#[test]
fn profiles_with_conditions_decide_alike_in_every_layout() {
    use berth_seccomp::Layout;
    let profiles: [&[u8]; 4] = [
        // An allow-list with conditions of each kind, several rules for
        // one syscall, an ERRNO rule with errnoRet among them.
        br#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
             "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
             "syscalls": [
               {"names": ["read", "write", "close", "exit_group", "getpid", "futex"],
                "action": "SCMP_ACT_ALLOW"},
               {"names": ["openat"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 2, "value": 3, "op": "SCMP_CMP_LE"}]},
               {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 2, "value": 4, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"},
                         {"index": 3, "value": 34, "op": "SCMP_CMP_NE"}]},
               {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 100, "op": "SCMP_CMP_GT"},
                         {"index": 1, "value": 9, "op": "SCMP_CMP_NE"}]},
               {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
               {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
                "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_EQ"}]},
               {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_LT"}]},
               {"names": ["prctl"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 68719476736, "op": "SCMP_CMP_GE"}]},
               {"names": ["lseek"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 5, "value": 4294967297, "op": "SCMP_CMP_LT"}]}
             ]}"#,
        // A deny-list: default allow, some denied outright, some on
        // conditions, with other actions.
        br#"{"defaultAction": "SCMP_ACT_ALLOW",
             "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
             "syscalls": [
               {"names": ["ptrace", "mount", "umount2", "kexec_load", "reboot"],
                "action": "SCMP_ACT_ERRNO"},
               {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
                "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_NE"}]},
               {"names": ["ioctl"], "action": "SCMP_ACT_KILL_PROCESS",
                "args": [{"index": 1, "value": 21522, "op": "SCMP_CMP_EQ"}]},
               {"names": ["setsockopt"], "action": "SCMP_ACT_TRAP",
                "args": [{"index": 3, "value": 255, "valueTwo": 128, "op": "SCMP_CMP_MASKED_EQ"}]},
               {"names": ["fchmod"], "action": "SCMP_ACT_LOG",
                "args": [{"index": 1, "value": 2048, "op": "SCMP_CMP_GE"}]},
               {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                "args": [{"index": 0, "value": 268435456, "valueTwo": 268435456,
                          "op": "SCMP_CMP_MASKED_EQ"}]}
             ]}"#,
        // Only x86_64.
        br#"{"defaultAction": "SCMP_ACT_KILL_PROCESS",
             "architectures": ["SCMP_ARCH_X86_64"],
             "syscalls": [
               {"names": ["read", "write", "exit", "exit_group", "brk", "mmap", "munmap"],
                "action": "SCMP_ACT_ALLOW"},
               {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 2114060288, "valueTwo": 0,
                          "op": "SCMP_CMP_MASKED_EQ"}]},
               {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
                "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_GT"},
                         {"index": 2, "value": 4096, "op": "SCMP_CMP_GE"}]}
             ]}"#,
        // The native architecture only, implicitly.
        br#"{"defaultAction": "SCMP_ACT_ERRNO",
             "syscalls": [
               {"names": ["getppid", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
               {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
             ]}"#,
    ];
    for json in profiles {
        let text = String::from_utf8_lossy(json);
        let profile = Profile::parse(json).unwrap();
        let spec = profile.resolve(&HashSet::new(), &Host::current()).unwrap();
        let filter = SeccompFilter::check(&spec).unwrap();
        let list = filter.compile_as(Layout::Linear).unwrap();
        let tree = filter.compile_as(Layout::BinaryTree).unwrap();
        let specialized = filter.compile().unwrap();
        assert!(specialized.len() < tree.len(), "{text}");
        let mut args = argument_sets(&[0, 1, 1 << 32, u64::MAX], 0..6);
        args.extend(Constants::of(&tree).argument_sets());
        let numbers = [
            Constants::of(&tree).numbers(),
            Constants::of(&specialized).numbers(),
        ];
        let syscalls = syscalls(&numbers.concat());
        assert_alike(("list", &list), ("tree", &tree), &syscalls, &args);
        assert_alike(
            ("tree", &tree),
            ("specialized", &specialized),
            &syscalls,
            &args,
        );
        println!(
            "list {}, tree {}, specialized {} instructions; longest path {}, {}, {}",
            list.len(),
            tree.len(),
            specialized.len(),
            agreement::longest_path(&list),
            agreement::longest_path(&tree),
            agreement::longest_path(&specialized)
        );
    }
}

/// How long attaching the default profile takes, as a tree and
/// specialized: the medians of 200 forked children each, timing the
/// `seccomp()` call alone. Run with `--ignored --nocapture`.
#[test]
#[ignore]
fn attach_time_of_the_default_profile() {
    use berth_seccomp::Layout;
    let filter = default_profile();
    let tree = filter.compile_as(Layout::BinaryTree).unwrap();
    let started = std::time::Instant::now();
    let specialized = berth_seccomp::specialize(&tree);
    println!("specialized in {:?}", started.elapsed());
    let programs = [
        ("linear", filter.compile_as(Layout::Linear).unwrap()),
        ("tree", tree),
        ("specialized", specialized),
    ];
    let mut times: Vec<Vec<u64>> = vec![Vec::new(); programs.len()];
    for _ in 0..200 {
        for (i, (_, program)) in programs.iter().enumerate() {
            times[i].push(attach_time(program));
        }
    }
    for ((name, program), mut times) in programs.iter().zip(times) {
        times.sort_unstable();
        println!(
            "{name}: {} instructions, attach median {:.1} us (p10 {:.1}, p90 {:.1})",
            program.len(),
            times[100] as f64 / 1000.0,
            times[20] as f64 / 1000.0,
            times[180] as f64 / 1000.0
        );
    }
}

/// Nanoseconds the `seccomp()` call installing `program` takes in a
/// forked child (after no_new_privs).
fn attach_time(program: &SeccompProgram) -> u64 {
    fn now() -> u64 {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    }
    let mut pipe = [0; 2];
    // SAFETY: pipe writes two fds into the array.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    // SAFETY: the child calls only prctl, clock_gettime, seccomp, write
    // and _exit, which are async-signal-safe.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(100);
            }
        }
        let before = now();
        let installed = program.install().is_ok();
        let took = (now() - before).to_ne_bytes();
        // SAFETY: see above; `took` outlives the write.
        unsafe {
            libc::write(pipe[1], took.as_ptr().cast(), took.len());
            libc::_exit(if installed { 0 } else { 101 })
        }
    }
    assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
    let mut took = [0u8; 8];
    // SAFETY: reading into our own buffer; closing our own fds; waiting
    // for our own child.
    unsafe {
        libc::close(pipe[1]);
        assert_eq!(libc::read(pipe[0], took.as_mut_ptr().cast(), 8), 8);
        libc::close(pipe[0]);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
    u64::from_ne_bytes(took)
}
