//! What a container on the host's root (no `--rootfs`) must not see of the
//! host: the agent's `[container] hidden_paths`, expanded at launch into
//! the paths that exist on this host, and hidden behind empty read-only
//! mounts; and a private `/run` in place of the host's.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{Mount, MountBuilder};

use super::BundleError;

/// The default `[container] hidden_paths`. `*` and `?` may appear in the
/// last component; they are expanded when a container launches.
pub const DEFAULT_HIDDEN_PATHS: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/ssh/*_key",
    "/root",
    "/home",
];

/// The empty, read-only file (in the bundle dir) bound over hidden files.
pub const EMPTY_FILE: &str = "empty";

/// Whether a hidden path is a directory (hidden by an empty tmpfs) or
/// anything else (hidden by an empty file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenKind {
    File,
    Directory,
}

/// One existing host path to hide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenPath {
    pub path: PathBuf,
    pub kind: HiddenKind,
}

/// A `hidden_paths` entry berth cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hidden_paths entry {pattern:?}: {reason}")]
pub struct InvalidHiddenPath {
    pub pattern: String,
    pub reason: &'static str,
}

/// Checks a `hidden_paths` entry: absolute, not `/`, no `.` or `..`, and
/// wildcards only in the last component.
pub fn check_pattern(pattern: &str) -> Result<(), InvalidHiddenPath> {
    let invalid = |reason| InvalidHiddenPath {
        pattern: pattern.to_string(),
        reason,
    };
    let path = Path::new(pattern);
    if !path.is_absolute() || path.parent().is_none() {
        return Err(invalid("must be an absolute path other than /"));
    }
    if pattern.contains('\0') {
        return Err(invalid("must not contain NUL"));
    }
    if pattern.split('/').any(|c| c == "." || c == "..") {
        return Err(invalid("must not contain . or .."));
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    if parent.to_string_lossy().contains(['*', '?']) {
        return Err(invalid("wildcards are allowed only in the last component"));
    }
    Ok(())
}

/// The host paths the patterns name now: wildcards expanded, paths that do
/// not exist on this host left out, sorted and without duplicates.
/// Patterns are checked by [`check_pattern`] when the agent's config is.
pub fn expand(patterns: &[String]) -> Vec<HiddenPath> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for pattern in patterns {
        let path = Path::new(pattern);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let name = name.to_string_lossy();
        if !name.contains(['*', '?']) {
            paths.push(path.to_path_buf());
            continue;
        }
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            if wildcard_match(&name, &entry.file_name().to_string_lossy()) {
                paths.push(entry.path());
            }
        }
    }
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|path| {
            // Follows a symlink: the container's lookup of the path does
            // too, and the mount lands on what it resolves to.
            let meta = std::fs::metadata(&path).ok()?;
            let kind = if meta.is_dir() {
                HiddenKind::Directory
            } else {
                HiddenKind::File
            };
            Some(HiddenPath { path, kind })
        })
        .collect()
}

/// Shell-style matching of one name: `*` any run of characters, `?` one.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((star_p, star_n)) = star {
            pi = star_p + 1;
            ni = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The private `/run`: an empty tmpfs of `size` bytes (its pages are
/// charged to the container's memory cgroup).
pub fn run_mount(size: u64) -> Result<Mount, BundleError> {
    Ok(MountBuilder::default()
        .destination("/run")
        .typ("tmpfs")
        .source("tmpfs")
        .options(vec![
            "nosuid".into(),
            "nodev".into(),
            "mode=755".into(),
            format!("size={size}"),
        ])
        .build()?)
}

/// The host files below `/run` a host-root container keeps in its private
/// `/run`: what `/etc/resolv.conf` leads to when it is a link into `/run`
/// (systemd-resolved's stub), so that name resolution still works.
pub fn run_files() -> Vec<PathBuf> {
    std::fs::canonicalize("/etc/resolv.conf")
        .ok()
        .filter(|target| below(target, Path::new("/run")) && target.is_file())
        .into_iter()
        .collect()
}

/// Read-only binds of `files` (host paths below `/run`) onto the same paths
/// in the container's `/run`.
pub fn run_file_mounts(files: &[PathBuf]) -> Result<Vec<Mount>, BundleError> {
    files
        .iter()
        .map(|file| {
            Ok(MountBuilder::default()
                .destination(file)
                .typ("bind")
                .source(file)
                .options(vec![
                    "bind".into(),
                    "ro".into(),
                    "nosuid".into(),
                    "nodev".into(),
                    "noexec".into(),
                ])
                .build()?)
        })
        .collect()
}

/// The mounts hiding `paths`: an empty read-only file over files, an empty
/// read-only tmpfs over directories. A directory below which berth mounts
/// something later (`later`, e.g. the sandbox under a hidden `/home`) gets a
/// small writable tmpfs instead, since the mountpoint must be created in it.
pub fn hiding_mounts(
    paths: &[HiddenPath],
    bundle_dir: &Path,
    later: &[&Path],
) -> Result<Vec<Mount>, BundleError> {
    let mut mounts = Vec::new();
    for hidden in paths {
        // Below the container's own fresh /run and /tmp the host's files are
        // not there to hide.
        if ["/run", "/tmp"]
            .iter()
            .any(|fresh| hidden.path.starts_with(fresh))
        {
            continue;
        }
        let mount = match hidden.kind {
            HiddenKind::File => MountBuilder::default()
                .destination(&hidden.path)
                .typ("bind")
                .source(bundle_dir.join(EMPTY_FILE))
                .options(vec![
                    "bind".into(),
                    "ro".into(),
                    "nosuid".into(),
                    "nodev".into(),
                    "noexec".into(),
                ])
                .build()?,
            HiddenKind::Directory => {
                let covers_later = later
                    .iter()
                    .any(|l| below(l, &hidden.path) || *l == hidden.path);
                let mut options = vec![
                    if covers_later { "rw" } else { "ro" }.to_string(),
                    "nosuid".into(),
                    "nodev".into(),
                    "noexec".into(),
                    "mode=755".into(),
                ];
                if covers_later {
                    options.push("size=64k".into());
                }
                MountBuilder::default()
                    .destination(&hidden.path)
                    .typ("tmpfs")
                    .source("tmpfs")
                    .options(options)
                    .build()?
            }
        };
        mounts.push(mount);
    }
    Ok(mounts)
}

/// Whether `path` lies strictly below `dir`, by components.
fn below(path: &Path, dir: &Path) -> bool {
    path != dir
        && path.starts_with(dir)
        && !path.components().any(|c| matches!(c, Component::ParentDir))
}

/// Writes the empty read-only file hidden files are bound from.
pub fn write_empty_file(bundle_dir: &Path) -> Result<(), BundleError> {
    use std::os::unix::fs::PermissionsExt;
    let path = bundle_dir.join(EMPTY_FILE);
    let create = || -> std::io::Result<()> {
        std::fs::write(&path, b"")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444))
    };
    create().map_err(|source| BundleError::CreateFile { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_checked() {
        for good in DEFAULT_HIDDEN_PATHS {
            check_pattern(good).unwrap();
        }
        for bad in ["relative", "/", "/etc/../root", "/etc/*/key", "/a/./b"] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wildcards_match_one_component() {
        assert!(wildcard_match("*_key", "ssh_host_rsa_key"));
        assert!(!wildcard_match("*_key", "ssh_host_rsa_key.pub"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("x*y*z", "x12y34z"));
        assert!(!wildcard_match("x*y*z", "x12y34"));
    }

    #[test]
    fn expansion_keeps_what_exists_and_knows_dirs_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("ssh_host_rsa_key"), "k").unwrap();
        std::fs::write(d.join("ssh_host_rsa_key.pub"), "p").unwrap();
        std::fs::write(d.join("ssh_host_ed25519_key"), "k").unwrap();
        std::fs::create_dir(d.join("private")).unwrap();
        let patterns = vec![
            format!("{}/*_key", d.display()),
            format!("{}/private", d.display()),
            format!("{}/missing", d.display()),
            format!("{}/nothing*", d.display()),
        ];
        let found = expand(&patterns);
        assert_eq!(
            found,
            vec![
                HiddenPath {
                    path: d.join("private"),
                    kind: HiddenKind::Directory
                },
                HiddenPath {
                    path: d.join("ssh_host_ed25519_key"),
                    kind: HiddenKind::File
                },
                HiddenPath {
                    path: d.join("ssh_host_rsa_key"),
                    kind: HiddenKind::File
                },
            ]
        );
    }

    #[test]
    fn files_get_the_empty_file_and_dirs_a_read_only_tmpfs() {
        let paths = [
            HiddenPath {
                path: "/etc/shadow".into(),
                kind: HiddenKind::File,
            },
            HiddenPath {
                path: "/root".into(),
                kind: HiddenKind::Directory,
            },
            HiddenPath {
                path: "/home".into(),
                kind: HiddenKind::Directory,
            },
            HiddenPath {
                path: "/run/secrets".into(),
                kind: HiddenKind::Directory,
            },
        ];
        let sandbox = Path::new("/home/berth/containers/x");
        let mounts = hiding_mounts(&paths, Path::new("/run/b/bundle"), &[sandbox]).unwrap();
        let json = serde_json::to_value(&mounts).unwrap();
        assert_eq!(json[0]["source"], "/run/b/bundle/empty");
        assert_eq!(
            json[0]["options"],
            serde_json::json!(["bind", "ro", "nosuid", "nodev", "noexec"])
        );
        assert_eq!(json[1]["type"], "tmpfs");
        assert_eq!(json[1]["options"][0], "ro");
        // The sandbox is created below /home later: that tmpfs stays writable.
        assert_eq!(json[2]["options"][0], "rw");
        // /run is the container's own already.
        assert_eq!(mounts.len(), 3);
    }
}
