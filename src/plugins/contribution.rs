//! A plugin's `prepare` reply is input: every contribution is checked before
//! it reaches the bundle (decision 0041).

use std::path::{Component, Path};

use berth_isolator::{Contribution, Mount};

/// At most this many env variables, mounts, options per mount.
const MAX_ENV: usize = 256;
const MAX_MOUNTS: usize = 64;
const MAX_OPTIONS: usize = 16;
/// At most this many bytes in a name, value, path or option.
const MAX_STRING: usize = 4096;

/// Mount options a plugin may ask for. The bundle adds `nosuid` and
/// `nodev` to every bind mount anyway.
const ALLOWED_OPTIONS: &[&str] = &[
    "bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec", "private", "rprivate", "slave",
    "rslave", "noatime", "relatime",
];

/// Container paths no plugin may mount over (or under).
const FORBIDDEN_DESTINATIONS: &[&str] = &["/proc", "/sys", "/dev"];

/// Host paths no plugin may mount into a container.
const FORBIDDEN_SOURCES: &[&str] = &["/proc", "/sys", "/dev", "/etc", "/boot", "/root", "/run"];

/// Why a contribution was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("plugin {plugin} returned a contribution berth refuses: {what}")]
pub struct RefusedContribution {
    pub plugin: String,
    pub what: String,
}

/// The host dirs a plugin's mounts may not reach into: berth's own, other
/// than the plugin's state dir.
pub struct HostDirs<'a> {
    pub berth: &'a [&'a Path],
    pub plugin_state: &'a Path,
}

/// Checks a plugin's contribution; the error names the entry at fault.
pub fn check(plugin: &str, c: &Contribution, dirs: &HostDirs) -> Result<(), RefusedContribution> {
    let refuse = |what: String| RefusedContribution {
        plugin: plugin.to_string(),
        what,
    };
    if !c.devices.is_empty() {
        return Err(refuse(
            "devices: a plugin may not create device nodes".into(),
        ));
    }
    if c.env.len() > MAX_ENV {
        return Err(refuse(format!(
            "env: {} variables, at most {MAX_ENV}",
            c.env.len()
        )));
    }
    for (name, value) in &c.env {
        let valid = !name.is_empty()
            && name.len() <= 256
            && name.starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_')
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !valid {
            return Err(refuse(format!("env {name:?}: not a valid variable name")));
        }
        if value.len() > MAX_STRING || value.contains('\0') {
            return Err(refuse(format!(
                "env {name}: value longer than {MAX_STRING} bytes or with a NUL"
            )));
        }
    }
    if c.mounts.len() > MAX_MOUNTS {
        return Err(refuse(format!(
            "mounts: {}, at most {MAX_MOUNTS}",
            c.mounts.len()
        )));
    }
    for mount in &c.mounts {
        check_mount(mount, dirs)
            .map_err(|why| refuse(format!("mount {:?}: {why}", mount.destination)))?;
    }
    let resources = serde_json::to_vec(&c.linux_resources).unwrap_or_default();
    if resources.len() > 64 * 1024 {
        return Err(refuse("linux_resources: larger than 64 KiB".into()));
    }
    Ok(())
}

fn check_mount(mount: &Mount, dirs: &HostDirs) -> Result<(), String> {
    let destination = clean_absolute(&mount.destination)
        .ok_or("destination must be an absolute path without `.` or `..`")?;
    if destination == Path::new("/") {
        return Err("may not mount over the container's root".into());
    }
    if let Some(f) = FORBIDDEN_DESTINATIONS
        .iter()
        .find(|f| destination.starts_with(f))
    {
        return Err(format!("may not mount over or under {f}"));
    }
    if mount.options.len() > MAX_OPTIONS {
        return Err(format!("more than {MAX_OPTIONS} options"));
    }
    match mount.kind.as_str() {
        "tmpfs" => {
            for option in &mount.options {
                let sized = option
                    .strip_prefix("size=")
                    .or_else(|| option.strip_prefix("mode="))
                    .is_some_and(|v| {
                        !v.is_empty()
                            && v.len() <= 32
                            && v.chars().all(|c| c.is_ascii_alphanumeric())
                    });
                if !sized && !ALLOWED_OPTIONS.contains(&option.as_str()) {
                    return Err(format!("option {option:?} is not allowed"));
                }
            }
            Ok(())
        }
        "bind" => {
            if let Some(o) = mount
                .options
                .iter()
                .find(|o| !ALLOWED_OPTIONS.contains(&o.as_str()))
            {
                return Err(format!("option {o:?} is not allowed"));
            }
            let source = clean_absolute(&mount.source)
                .ok_or("source must be an absolute path without `.` or `..`")?;
            if source == Path::new("/") {
                return Err("may not mount the host's root".into());
            }
            if let Some(f) = FORBIDDEN_SOURCES.iter().find(|f| source.starts_with(f)) {
                return Err(format!("may not mount the host's {f}"));
            }
            // Symlinks resolved: a link to / or /etc is refused as they are.
            let real = std::fs::canonicalize(source)
                .map_err(|e| format!("source {}: {e}", source.display()))?;
            if real == Path::new("/") || FORBIDDEN_SOURCES.iter().any(|f| real.starts_with(f)) {
                return Err(format!("source resolves to {}", real.display()));
            }
            let own = std::fs::canonicalize(dirs.plugin_state).ok();
            for berth in dirs.berth {
                let berth = std::fs::canonicalize(berth).unwrap_or_else(|_| berth.to_path_buf());
                let in_own = own.as_ref().is_some_and(|o| real.starts_with(o));
                if (real.starts_with(&berth) || berth.starts_with(&real)) && !in_own {
                    return Err(format!("may not mount berth's own {}", berth.display()));
                }
            }
            Ok(())
        }
        other => Err(format!("type {other:?}: only bind and tmpfs")),
    }
}

/// `path` if it is absolute, short, and has no `.`/`..` components.
fn clean_absolute(path: &str) -> Option<&Path> {
    let p = Path::new(path);
    let clean = path.len() <= MAX_STRING
        && !path.contains('\0')
        && p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !path.split('/').any(|s| s == "." || s == "..");
    clean.then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: &str, source: &str, destination: &str, options: &[&str]) -> Contribution {
        Contribution {
            mounts: vec![Mount {
                destination: destination.into(),
                source: source.into(),
                kind: kind.into(),
                options: options.iter().map(|s| s.to_string()).collect(),
            }],
            ..Default::default()
        }
    }

    fn checked(c: &Contribution) -> Result<(), String> {
        let tmp = tempfile::tempdir().unwrap();
        let berth = tmp.path().join("work");
        let state = berth.join("plugins/p");
        std::fs::create_dir_all(state.join("data")).unwrap();
        let c = serde_json::to_string(c)
            .unwrap()
            .replace("STATE", state.to_str().unwrap())
            .replace("BERTH", berth.to_str().unwrap());
        let c: Contribution = serde_json::from_str(&c).unwrap();
        check(
            "p",
            &c,
            &HostDirs {
                berth: &[&berth],
                plugin_state: &state,
            },
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_mount_of_the_plugins_own_dir_passes() {
        checked(&mount("bind", "STATE/data", "/scratch", &["rbind", "rw"])).unwrap();
        checked(&mount("tmpfs", "tmpfs", "/scratch", &["size=1m", "noexec"])).unwrap();
    }

    #[test]
    fn dangerous_mounts_are_refused() {
        for (c, expect) in [
            (mount("bind", "/", "/host", &[]), "host's root"),
            (mount("bind", "/etc", "/x", &[]), "/etc"),
            (mount("bind", "/tmp", "/proc/sys", &[]), "/proc"),
            (mount("bind", "/tmp", "/", &[]), "container's root"),
            (mount("bind", "/tmp", "relative", &[]), "absolute"),
            (mount("bind", "/tmp/../etc", "/x", &[]), "absolute"),
            (mount("bind", "/tmp", "/x", &["suid"]), "suid"),
            (mount("bind", "BERTH", "/x", &[]), "berth's own"),
            (mount("proc", "proc", "/x", &[]), "only bind and tmpfs"),
            (
                mount("tmpfs", "tmpfs", "/x", &["size=1m,exec"]),
                "not allowed",
            ),
        ] {
            let err = checked(&c).unwrap_err();
            assert!(err.contains(expect), "{c:?}: {err}");
        }
    }

    #[test]
    fn bad_env_and_devices_are_refused() {
        let mut c = Contribution::default();
        c.env.insert("A=B".into(), "x".into());
        assert!(checked(&c)
            .unwrap_err()
            .contains("not a valid variable name"));
        let mut c = Contribution::default();
        c.env.insert("A".into(), "x".repeat(MAX_STRING + 1));
        assert!(checked(&c).unwrap_err().contains("env A"));
        let c = Contribution {
            devices: vec![berth_isolator::DeviceNode {
                path: "/dev/sda".into(),
                kind: "b".into(),
                major: 8,
                minor: 0,
                file_mode: 0o666,
                uid: 0,
                gid: 0,
            }],
            ..Default::default()
        };
        assert!(checked(&c).unwrap_err().contains("device"));
    }
}
