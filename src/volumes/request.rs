//! The `mounts` of a launch request and their checks.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a mount's source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A host path under the agent's allow-list.
    Bind,
    /// A named volume of the agent's volume store.
    Volume,
}

/// One entry of a launch request's `mounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountRequest {
    #[serde(rename = "type")]
    pub kind: MountKind,
    /// The host path (bind) or the volume's name (volume).
    pub source: String,
    /// Where it appears in the container: an absolute path.
    pub target: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub readonly: bool,
}

/// Checks a mount's target: absolute, no `..`, not the root, no NUL.
pub fn check_target(target: &str) -> Result<PathBuf, String> {
    if target.contains('\0') {
        return Err("must not contain NUL".into());
    }
    let path = Path::new(target);
    if !path.is_absolute() {
        return Err(format!("must be an absolute path, got {target:?}"));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("must not contain `..`, got {target:?}"));
    }
    if path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::CurDir))
    {
        return Err("must not be the container's root".into());
    }
    Ok(path.components().collect())
}

/// Parses a `-v` value: `HOST:CONTAINER[:ro|rw]` (HOST absolute) or
/// `NAME:CONTAINER[:ro|rw]` (a volume).
pub fn parse_volume_flag(value: &str) -> Result<MountRequest, String> {
    let parts: Vec<&str> = value.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [s, t] => (*s, *t, None),
        [s, t, m] => (*s, *t, Some(*m)),
        _ => return Err("expected SOURCE:TARGET[:ro|rw]".into()),
    };
    let readonly = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(other) => return Err(format!("unknown mode {other:?}: expected ro or rw")),
    };
    if source.is_empty() || target.is_empty() {
        return Err("expected SOURCE:TARGET[:ro|rw]".into());
    }
    let kind = if source.starts_with('/') {
        MountKind::Bind
    } else {
        MountKind::Volume
    };
    Ok(MountRequest {
        kind,
        source: source.into(),
        target: target.into(),
        readonly,
    })
}

/// Parses a `--mount` value: `type=bind|volume,src=,dst=[,readonly]`
/// (also `source=`, `target=`/`destination=`, `ro`, `readonly=true|false`).
pub fn parse_mount_flag(value: &str) -> Result<MountRequest, String> {
    let mut kind = None;
    let mut source = None;
    let mut target = None;
    let mut readonly = false;
    for part in value.split(',') {
        let (key, val) = match part.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (part, None),
        };
        match (key, val) {
            ("type", Some("bind")) => kind = Some(MountKind::Bind),
            ("type", Some("volume")) => kind = Some(MountKind::Volume),
            ("type", Some(other)) => {
                return Err(format!("unknown type {other:?}: expected bind or volume"))
            }
            ("src" | "source", Some(v)) => source = Some(v.to_string()),
            ("dst" | "destination" | "target", Some(v)) => target = Some(v.to_string()),
            ("readonly" | "ro", None | Some("true" | "1")) => readonly = true,
            ("readonly" | "ro", Some("false" | "0")) => readonly = false,
            _ => return Err(format!("unknown option {part:?}")),
        }
    }
    Ok(MountRequest {
        kind: kind.ok_or("needs type=bind or type=volume")?,
        source: source.ok_or("needs src=")?,
        target: target.ok_or("needs dst=")?,
        readonly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flag_forms() {
        let m = parse_volume_flag("/srv/data:/data:ro").unwrap();
        assert_eq!(m.kind, MountKind::Bind);
        assert!(m.readonly);
        let m = parse_volume_flag("db:/var/lib/db").unwrap();
        assert_eq!(m.kind, MountKind::Volume);
        assert!(!m.readonly);
        assert!(parse_volume_flag("/a").is_err());
        assert!(parse_volume_flag("/a:/b:rx").is_err());
        assert!(parse_volume_flag(":/b").is_err());
    }

    #[test]
    fn mount_flag_forms() {
        let m = parse_mount_flag("type=bind,src=/srv,dst=/data,readonly").unwrap();
        assert_eq!(
            m,
            MountRequest {
                kind: MountKind::Bind,
                source: "/srv".into(),
                target: "/data".into(),
                readonly: true
            }
        );
        assert!(parse_mount_flag("src=/srv,dst=/data").is_err());
        assert!(parse_mount_flag("type=tmpfs,dst=/x").is_err());
        assert!(parse_mount_flag("type=bind,src=/a,dst=/b,bogus=1").is_err());
    }

    #[test]
    fn targets() {
        assert_eq!(check_target("/data/").unwrap(), PathBuf::from("/data"));
        assert!(check_target("data").is_err());
        assert!(check_target("/a/../etc").is_err());
        assert!(check_target("/").is_err());
        assert!(check_target("/./").is_err());
    }
}
