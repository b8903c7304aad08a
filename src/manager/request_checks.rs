//! Checks of a launch request beyond its JSON shape: sizes, id ranges, and
//! the host paths it names (a rootfs that is the host's root, a network
//! namespace file that is none). Each refusal is a 400 naming the field.

use std::os::fd::AsRawFd;
use std::path::Path;

use super::ManagerError;
use crate::bundle::NetworkMode;
use crate::container::LaunchRequest;

/// The most bytes of one argument or `K=V` variable: the kernel's
/// `MAX_ARG_STRLEN` (32 pages) less its NUL.
pub const MAX_STRING_BYTES: usize = 32 * 4096 - 1;
/// The most bytes of the command's arguments, and of the variables, each.
pub const MAX_TOTAL_BYTES: usize = 512 * 1024;
/// The most arguments in a command.
pub const MAX_ARGS: usize = 8192;
/// The most environment variables.
pub const MAX_ENV: usize = 4096;
/// The most bytes of a path (`PATH_MAX` less its NUL).
pub const MAX_PATH_BYTES: usize = 4095;
/// The largest uid or gid, as Docker and runc take it (`2^31 - 1`): larger
/// ones include `(uid_t)-1`, which `setresuid` reads as "unchanged".
pub const MAX_ID: u32 = i32::MAX as u32;

/// `NSFS_MAGIC` from `<linux/magic.h>`: the filesystem of namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// `NS_GET_NSTYPE` from `<linux/nsfs.h>`: `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Checks what a launch request asks for; see the module's doc.
pub fn check(request: &LaunchRequest) -> Result<(), ManagerError> {
    check_strings("command", &request.command, MAX_ARGS, "arguments")?;
    let env: Vec<String> = request
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    check_strings("env", &env, MAX_ENV, "variables")?;
    for (field, value) in [
        ("workdir", request.workdir.as_deref()),
        ("network", request.network.as_deref()),
    ] {
        if value.is_some_and(|v| v.len() > MAX_PATH_BYTES) {
            return Err(ManagerError::invalid(
                field,
                format!("longer than {MAX_PATH_BYTES} bytes"),
            ));
        }
    }
    if let Some(user) = request.user {
        for (field, id) in [("user.uid", user.uid), ("user.gid", user.gid())] {
            if id > MAX_ID {
                return Err(ManagerError::invalid(
                    field,
                    format!("{id} is out of range 0..={MAX_ID}"),
                ));
            }
        }
    }
    if let Some(rootfs) = &request.rootfs {
        check_rootfs(rootfs)?;
    }
    Ok(())
}

/// The request's network, parsed once for the whole launch: `host` when
/// absent; a namespace to join must be a network namespace file.
pub fn network(request: &LaunchRequest) -> Result<NetworkMode, ManagerError> {
    let Some(text) = request.network.as_deref() else {
        return Ok(NetworkMode::Host);
    };
    let network = NetworkMode::parse(text).map_err(|e| ManagerError::invalid("network", e))?;
    if let NetworkMode::Join(path) = &network {
        check_network_namespace(path)
            .map_err(|message| ManagerError::invalid("network", message))?;
    }
    Ok(network)
}

/// At most `max_count` strings, each and all together of a size `execve`
/// takes.
fn check_strings(
    field: &str,
    values: &[String],
    max_count: usize,
    what: &str,
) -> Result<(), ManagerError> {
    if values.len() > max_count {
        return Err(ManagerError::invalid(
            field,
            format!("{} {what}, more than {max_count}", values.len()),
        ));
    }
    if let Some(long) = values.iter().find(|v| v.len() > MAX_STRING_BYTES) {
        return Err(ManagerError::invalid(
            field,
            format!(
                "an entry of {} bytes, more than {MAX_STRING_BYTES}",
                long.len()
            ),
        ));
    }
    let total: usize = values.iter().map(|v| v.len() + 1).sum();
    if total > MAX_TOTAL_BYTES {
        return Err(ManagerError::invalid(
            field,
            format!("{total} bytes in all, more than {MAX_TOTAL_BYTES}"),
        ));
    }
    Ok(())
}

/// A rootfs must not be the host's own root: that is host-root mode, which
/// mounts it read-only and hides the agent's dirs.
fn check_rootfs(rootfs: &Path) -> Result<(), ManagerError> {
    if !rootfs.is_absolute() {
        // The plan says so, naming the field.
        return Ok(());
    }
    match std::fs::canonicalize(rootfs) {
        Ok(resolved) if resolved == Path::new("/") => Err(ManagerError::invalid(
            "rootfs",
            format!(
                "{} is the host's root; leave rootfs out to run on the host's root (read-only)",
                rootfs.display()
            ),
        )),
        // A missing path is reported by the plan.
        _ => Ok(()),
    }
}

/// Checks that `path` is a network namespace file (`/proc/PID/ns/net`, or
/// a bind mount of one such as `/run/netns/NAME`).
pub fn check_network_namespace(path: &Path) -> Result<(), String> {
    // O_PATH: nothing is opened for I/O until the file is known to be a
    // namespace (not a FIFO that would block, nor a device).
    let file = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|errno| format!("no namespace at {}: {errno}", path.display()))?;
    // fstatfs(2): which filesystem the file lives on.
    let fs = nix::sys::statfs::fstatfs(&file)
        .map_err(|errno| format!("statfs {}: {errno}", path.display()))?;
    if fs.filesystem_type().0 as i64 != NSFS_MAGIC {
        return Err(format!("{} is not a namespace file", path.display()));
    }
    // ioctl needs a real open: reopen the namespace file itself, read-only.
    let ns = nix::fcntl::open(
        format!("/proc/self/fd/{}", file.as_raw_fd()).as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|errno| format!("open {}: {errno}", path.display()))?;
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns a value; the
    // fd is an open nsfs file owned by `ns`.
    let kind = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_NSTYPE as _) };
    if kind < 0 {
        return Err(format!(
            "{}: NS_GET_NSTYPE: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    if kind != libc::CLONE_NEWNET {
        return Err(format!(
            "{} is a namespace, but not a network namespace",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> LaunchRequest {
        serde_json::from_value(json).unwrap()
    }

    fn field_of(result: Result<(), ManagerError>) -> String {
        match result {
            Err(ManagerError::Invalid { field, .. }) => field,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn a_network_namespace_is_told_from_other_files() {
        check_network_namespace(Path::new("/proc/self/ns/net")).unwrap();
        let err = check_network_namespace(Path::new("/proc/self/ns/mnt")).unwrap_err();
        assert!(err.contains("not a network namespace"), "{err}");
        let err = check_network_namespace(Path::new("/etc/hostname")).unwrap_err();
        assert!(err.contains("not a namespace file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = check_network_namespace(&fifo).unwrap_err();
        assert!(err.contains("not a namespace file"), "{err}");
        let err = check_network_namespace(&dir.path().join("none")).unwrap_err();
        assert!(err.contains("no namespace at"), "{err}");
    }

    #[test]
    fn out_of_range_ids_and_the_host_root_are_refused() {
        let base = serde_json::json!({"command": ["true"]});
        let with = |key: &str, value: serde_json::Value| {
            let mut json = base.clone();
            json[key] = value;
            request(json)
        };
        check(&with("user", serde_json::json!({"uid": MAX_ID}))).unwrap();
        assert_eq!(
            field_of(check(&with(
                "user",
                serde_json::json!({"uid": 4294967295u32})
            ))),
            "user.uid"
        );
        assert_eq!(
            field_of(check(&with(
                "user",
                serde_json::json!({"uid": 1, "gid": 2147483648u32})
            ))),
            "user.gid"
        );
        assert_eq!(field_of(check(&with("rootfs", "/".into()))), "rootfs");
        assert_eq!(field_of(check(&with("rootfs", "/etc/..".into()))), "rootfs");
        assert_eq!(
            field_of(network(&with("network", "ns:/etc/hostname".into())).map(drop)),
            "network"
        );
    }

    #[test]
    fn oversized_commands_and_environments_are_refused() {
        let long = "x".repeat(MAX_STRING_BYTES + 1);
        let r = request(serde_json::json!({"command": ["echo", long]}));
        assert_eq!(field_of(check(&r)), "command");
        let many: serde_json::Map<String, serde_json::Value> = (0..=MAX_ENV)
            .map(|i| (format!("V{i}"), "1".into()))
            .collect();
        let r = request(serde_json::json!({"command": ["true"], "env": many}));
        assert_eq!(field_of(check(&r)), "env");
        let big: serde_json::Map<String, serde_json::Value> = (0..8)
            .map(|i| (format!("V{i}"), "y".repeat(100_000).into()))
            .collect();
        let r = request(serde_json::json!({"command": ["true"], "env": big}));
        assert_eq!(field_of(check(&r)), "env");
    }
}
