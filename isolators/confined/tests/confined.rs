//! The confined helpers against a hostile tree: symlinks out and in, FIFOs,
//! devices, growing files, deep and unwritable trees, mounts.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, FileExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_confined::{remove_tree, ConfinedError, Dir, Kind};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A tree a container could have made: files, a subdir, symlinks inside,
/// out, to /dev/zero, up, a FIFO.
fn hostile() -> (tempfile::TempDir, tempfile::TempDir) {
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("secret"), "host secret").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir(root.join("sub")).unwrap();
    fs::write(root.join("sub/file"), "content").unwrap();
    fs::write(root.join("top"), "t").unwrap();
    symlink("sub/file", root.join("inside")).unwrap();
    symlink(host.path().join("secret"), root.join("out")).unwrap();
    symlink(host.path(), root.join("outdir")).unwrap();
    symlink("/dev/zero", root.join("zero")).unwrap();
    symlink("../../../../../../etc/passwd", root.join("sub/up")).unwrap();
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    (dir, host)
}

fn read(dir: &Dir, path: &str) -> Result<String, ConfinedError> {
    let mut text = String::new();
    dir.open_file(path)?.read_to_string(&mut text).unwrap();
    Ok(text)
}

#[test]
fn no_symlink_is_followed_and_nothing_leaves_the_dir() {
    let (tmp, _host) = hostile();
    let dir = Dir::open(tmp.path()).unwrap();
    for path in [
        "/etc/passwd",
        "..",
        "../x",
        "sub/../../etc",
        "out",
        "outdir/secret",
        "inside",
        "zero",
        "sub/up",
    ] {
        assert!(
            matches!(read(&dir, path), Err(ConfinedError::Escapes { .. })),
            "{path}: {:?}",
            read(&dir, path)
        );
    }
    assert!(matches!(
        dir.open_dir("outdir"),
        Err(ConfinedError::Escapes { .. })
    ));
    let magic = format!("/proc/{}/root/etc", std::process::id());
    symlink(&magic, tmp.path().join("magic")).unwrap();
    assert!(matches!(
        dir.open_dir("magic"),
        Err(ConfinedError::Escapes { .. })
    ));
    assert_eq!(read(&dir, "sub/file").unwrap(), "content");
    assert_eq!(read(&dir, "sub/../top").unwrap(), "t");
    assert!(read(&dir, "missing").unwrap_err().is_not_found());
    assert!(matches!(
        read(&dir, "sub"),
        Err(ConfinedError::NotAFile { .. })
    ));
    assert!(matches!(
        dir.open_dir("top"),
        Err(ConfinedError::NotADirectory { .. })
    ));
    // The dir itself must not be a symlink either.
    assert!(matches!(
        Dir::open(&tmp.path().join("outdir")),
        Err(ConfinedError::Escapes { .. })
    ));
}

#[test]
fn a_fifo_never_blocks_and_is_refused() {
    let (tmp, _host) = hostile();
    let dir = Dir::open(tmp.path()).unwrap();
    let started = Instant::now();
    assert!(matches!(
        dir.open_file("fifo"),
        Err(ConfinedError::NotAFile { .. })
    ));
    // No reader: a non-blocking open for writing fails (ENXIO) at once.
    assert!(dir.open_writable("fifo", true, None).is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
    if is_root() {
        // A device node in the tree: refused, not read.
        nix::sys::stat::mknod(
            &tmp.path().join("null"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 5),
        )
        .unwrap();
        assert!(matches!(
            dir.open_file("null"),
            Err(ConfinedError::NotAFile { .. })
        ));
    }
}

#[test]
fn reads_stop_at_the_size_seen_at_open_until_refreshed() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("log"), "12345").unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    let mut file = dir.open_file("log").unwrap();
    let mut appender = fs::OpenOptions::new()
        .append(true)
        .open(tmp.path().join("log"))
        .unwrap();
    std::io::Write::write_all(&mut appender, b"6789").unwrap();
    let mut out = Vec::new();
    file.read_to_end(&mut out).unwrap();
    assert_eq!(out, b"12345");
    let mut buf = [0u8; 16];
    assert_eq!(file.read_at(&mut buf, 3).unwrap(), 2);
    assert_eq!(file.refresh().unwrap(), 9);
    file.read_to_end(&mut out).unwrap();
    assert_eq!(out, b"123456789");
}

#[test]
fn writes_never_go_through_a_link() {
    let (tmp, host) = hostile();
    let dir = Dir::open(tmp.path()).unwrap();
    let secret = host.path().join("secret");
    assert!(dir.create_new("out", 0o640).is_err());
    assert!(matches!(
        dir.open_writable("out", true, Some(0o640)),
        Err(ConfinedError::Escapes { .. })
    ));
    assert!(dir.open_writable("out", false, None).is_err());
    // Replacing unlinks the link and makes a file in its place.
    std::io::Write::write_all(&mut dir.create_replacing("out", 0o640).unwrap(), b"mine").unwrap();
    assert_eq!(fs::read_to_string(&secret).unwrap(), "host secret");
    assert_eq!(fs::read_to_string(tmp.path().join("out")).unwrap(), "mine");
    // So does the read-write replace, over a link to the secret and over a
    // dangling one; an existing file is replaced by a new one.
    symlink(&secret, tmp.path().join("rw")).unwrap();
    symlink(host.path().join("absent"), tmp.path().join("dangling")).unwrap();
    for name in ["rw", "dangling", "out"] {
        let file = dir.create_replacing_read_write(name, 0o640).unwrap();
        file.write_all_at(b"rw", 0).unwrap();
        let mut back = [0u8; 2];
        file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(&back, b"rw", "{name}");
        let after = fs::symlink_metadata(tmp.path().join(name)).unwrap();
        assert!(after.is_file(), "{name}");
        // A new file: nothing of "mine" is left in "out".
        assert_eq!(after.len(), 2, "{name}");
    }
    assert_eq!(fs::read_to_string(&secret).unwrap(), "host secret");
    assert!(!host.path().join("absent").exists());
    // A symlink renamed over, never through.
    dir.symlink(&secret, "link").unwrap();
    fs::write(tmp.path().join("new"), "new").unwrap();
    dir.rename("new", "link").unwrap();
    assert_eq!(fs::read_to_string(&secret).unwrap(), "host secret");
    assert!(matches!(
        dir.rename("top", "../x"),
        Err(ConfinedError::Escapes { .. })
    ));
    assert!(matches!(
        dir.remove_file("sub/file"),
        Err(ConfinedError::Escapes { .. })
    ));
}

#[test]
fn listing_goes_through_the_descriptor_and_stats_without_following() {
    let (tmp, _host) = hostile();
    let dir = Dir::open(tmp.path()).unwrap();
    let mut entries: Vec<(String, Kind)> = dir
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| (e.name.into_string().unwrap(), e.stat.kind()))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        entries,
        [
            ("fifo".to_string(), Kind::Other),
            ("inside".to_string(), Kind::Symlink),
            ("out".to_string(), Kind::Symlink),
            ("outdir".to_string(), Kind::Symlink),
            ("sub".to_string(), Kind::Dir),
            ("top".to_string(), Kind::File),
            ("zero".to_string(), Kind::Symlink),
        ]
    );
    assert_eq!(dir.read_link("inside").unwrap(), Path::new("sub/file"));
}

/// A listing reads the whole directory from its start, however many
/// reads of the kernel's records it takes, and again the same the next
/// time; names are bytes, not text.
#[test]
fn a_listing_spans_many_reads_and_repeats_from_the_start() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    // 700 names of ~60 bytes: about 56 kB of records, several buffers.
    let mut expected: Vec<Vec<u8>> = (0..700)
        .map(|i| format!("entry-{i:04}-{}", "x".repeat(48)).into_bytes())
        .collect();
    expected.push(b"not-utf8-\xff\xfe".to_vec());
    expected.push(b"a".to_vec());
    for name in &expected {
        fs::write(tmp.path().join(OsStr::from_bytes(name)), b"").unwrap();
    }
    fs::create_dir(tmp.path().join("sub")).unwrap();
    expected.push(b"sub".to_vec());
    expected.sort();
    let dir = Dir::open(tmp.path()).unwrap();
    for _ in 0..2 {
        let mut names: Vec<Vec<u8>> = dir
            .names()
            .unwrap()
            .into_iter()
            .map(|n| n.as_bytes().to_vec())
            .collect();
        names.sort();
        assert_eq!(names.len(), expected.len());
        assert!(names == expected, "the listing differs from what was made");
    }
    let empty = tempfile::tempdir().unwrap();
    assert!(Dir::open(empty.path()).unwrap().names().unwrap().is_empty());
}

#[test]
fn removal_keeps_what_links_point_at_and_handles_deep_unwritable_trees() {
    let (tmp, host) = hostile();
    let root = tmp.path().join("victim");
    fs::create_dir(&root).unwrap();
    symlink(host.path(), root.join("hostdir")).unwrap();
    symlink(host.path().join("secret"), root.join("hostfile")).unwrap();
    // Deeper than PATH_MAX as a path, with unwritable and unreadable dirs
    // on the way (root ignores modes; others cannot make such trees in the
    // tests' temp dirs anyway).
    let mut deep = Dir::open(&root).unwrap();
    for i in 0..300 {
        let name = format!("{i:0>40}");
        nix::sys::stat::mkdirat(
            &deep,
            name.as_str(),
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        )
        .unwrap();
        let next = deep.open_dir(&name).unwrap();
        fs::write(
            format!(
                "/proc/self/fd/{}/f",
                std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&next))
            ),
            "x",
        )
        .unwrap();
        deep = next;
    }
    symlink(
        host.path(),
        format!(
            "/proc/self/fd/{}/deep-link",
            std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&deep))
        ),
    )
    .unwrap();
    drop(deep);
    fs::create_dir(root.join("locked")).unwrap();
    fs::write(root.join("locked/f"), "x").unwrap();
    if is_root() {
        fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    }
    remove_tree(&root).unwrap();
    assert!(!root.exists());
    assert_eq!(
        fs::read_to_string(host.path().join("secret")).unwrap(),
        "host secret"
    );
    // Missing is fine; a single file or symlink goes itself.
    remove_tree(&root).unwrap();
    remove_tree(&tmp.path().join("out")).unwrap();
    assert!(host.path().join("secret").exists());
}

#[test]
fn removal_never_enters_a_mount() {
    if berth_cgroups::testing::skip_unless_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let kept = tempfile::tempdir().unwrap();
    fs::write(kept.path().join("precious"), "p").unwrap();
    let root = tmp.path().join("victim");
    fs::create_dir_all(root.join("a/mnt")).unwrap();
    // A bind mount of a host dir on the same filesystem: same st_dev, still
    // not entered.
    nix::mount::mount(
        Some(kept.path()),
        &root.join("a/mnt"),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let result = remove_tree(&root);
    let precious = kept.path().join("precious").exists();
    nix::mount::umount2(&root.join("a/mnt"), nix::mount::MntFlags::MNT_DETACH).unwrap();
    assert!(
        matches!(result, Err(ConfinedError::CrossesMount { .. })),
        "{result:?}"
    );
    assert!(precious);
    remove_tree(&root).unwrap();
    assert!(!root.exists());
}

#[test]
fn a_walk_stays_in_the_tree_with_a_few_descriptors_whatever_the_depth() {
    let (tmp, host) = hostile();
    let root = tmp.path();
    // 300 levels, far past PATH_MAX as a path.
    let mut made = 0;
    let dir = Dir::open(root).unwrap();
    let mut current = dir.open_dir("sub").unwrap();
    for i in 0..300 {
        let name = format!("{i:0>40}");
        nix::sys::stat::mkdirat(
            &current,
            name.as_str(),
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        )
        .unwrap();
        current = current.open_dir(&name).unwrap();
        made += 1;
    }
    drop(current);
    let fds_before = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let mut seen = Vec::new();
    let mut most_fds = 0;
    let done = dir
        .walk(|_, relative, entry| {
            most_fds = most_fds.max(std::fs::read_dir("/proc/self/fd").unwrap().count());
            seen.push(relative.join(&entry.name));
            Ok(berth_confined::Step::Descend)
        })
        .unwrap();
    assert!(done);
    // Every dir of the chain was entered; nothing of the host dir was seen
    // through `outdir`.
    assert_eq!(
        seen.iter()
            .filter(|p| p.file_name().unwrap().len() == 40)
            .count(),
        made
    );
    assert!(seen
        .iter()
        .all(|p| !p.starts_with("outdir") || p == Path::new("outdir")));
    assert!(!seen.iter().any(|p| p.ends_with("secret")));
    // A few descriptors beyond what was open (the walk's own, the
    // visitor's read_dir of /proc/self/fd, and whatever the other tests of
    // this binary, running in parallel threads, hold at that moment), not
    // one per level of the 300.
    assert!(most_fds <= fds_before + 16, "{fds_before} -> {most_fds}");
    // Stopping ends it.
    let mut calls = 0;
    assert!(!dir
        .walk(|_, _, _| {
            calls += 1;
            Ok(berth_confined::Step::Stop)
        })
        .unwrap());
    assert_eq!(calls, 1);
    drop(host);
}
