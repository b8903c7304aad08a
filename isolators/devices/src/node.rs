//! Host device nodes passed through to a container (`resources.devices`).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path};

use berth_isolator::{DeviceNode, IsolatorError};

use crate::DeviceMapping;

use crate::rule::{Access, DeviceKind, DeviceRule};

/// What every container's `/dev` has already: the default nodes and
/// links, and the pts, shm and mqueue mounts.
const RESERVED: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/console",
    "/dev/ptmx",
    "/dev/fd",
    "/dev/stdin",
    "/dev/stdout",
    "/dev/stderr",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
];

/// A validated `resources.devices` entry: the node to create in the
/// container and the rule that lets the container use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedDevice {
    /// The node, with the host node's numbers, mode and owner.
    pub node: DeviceNode,
    /// The access granted to it.
    pub rule: DeviceRule,
}

/// Checks `resources.devices[index]` and reads the host node's type and
/// numbers (following symlinks, as `/dev/disk/by-id/...` are). Errors name
/// the field at fault.
pub fn host_node(index: usize, mapping: &DeviceMapping) -> Result<PassedDevice, IsolatorError> {
    let field = |name: &str| format!("resources.devices[{index}].{name}");
    let host = Path::new(&mapping.host);
    if !host.is_absolute() {
        return Err(IsolatorError::invalid(
            field("host"),
            format!("must be an absolute path, got {:?}", mapping.host),
        ));
    }
    let meta = std::fs::metadata(host)
        .map_err(|e| IsolatorError::invalid(field("host"), format!("{}: {e}", mapping.host)))?;
    let kind = if meta.file_type().is_char_device() {
        DeviceKind::Char
    } else if meta.file_type().is_block_device() {
        DeviceKind::Block
    } else {
        return Err(IsolatorError::invalid(
            field("host"),
            format!("{} is not a device node", mapping.host),
        ));
    };
    let inside = mapping.container_path();
    let inside_path = Path::new(inside);
    let clean = inside_path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !inside_path.starts_with("/dev") || inside_path == Path::new("/dev") || !clean {
        return Err(IsolatorError::invalid(
            field("container"),
            format!("must be a path below /dev without . or .., got {inside:?}"),
        ));
    }
    if let Some(taken) = RESERVED.iter().find(|r| inside_path.starts_with(r)) {
        return Err(IsolatorError::invalid(
            field("container"),
            format!("{inside} is taken: every container has {taken}"),
        ));
    }
    let access = Access::parse(mapping.access()).ok_or_else(|| {
        IsolatorError::invalid(
            field("access"),
            format!(
                "must be a subset of rwm, got {:?}",
                mapping.access.as_deref().unwrap_or_default()
            ),
        )
    })?;
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    Ok(PassedDevice {
        node: DeviceNode {
            path: inside.to_string(),
            kind: kind.letter().to_string(),
            major: major.into(),
            minor: minor.into(),
            file_mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        },
        rule: DeviceRule {
            kind,
            major: Some(major),
            minor: Some(minor),
            access,
        },
    })
}

/// Checks every `resources.devices` entry; two entries for one container
/// path are refused.
pub(crate) fn passed_devices(list: &[DeviceMapping]) -> Result<Vec<PassedDevice>, IsolatorError> {
    let mut out: Vec<PassedDevice> = Vec::with_capacity(list.len());
    for (index, mapping) in list.iter().enumerate() {
        let passed = host_node(index, mapping)?;
        if out.iter().any(|p| p.node.path == passed.node.path) {
            return Err(IsolatorError::invalid(
                format!("resources.devices[{index}].container"),
                format!("{} is given twice", passed.node.path),
            ));
        }
        out.push(passed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host: &str, container: Option<&str>, access: Option<&str>) -> DeviceMapping {
        DeviceMapping {
            host: host.into(),
            container: container.map(Into::into),
            access: access.map(Into::into),
        }
    }

    #[test]
    fn a_host_char_device_becomes_a_node_and_a_rule() {
        let passed = host_node(0, &mapping("/dev/null", Some("/dev/mynull"), Some("rw"))).unwrap();
        assert_eq!(passed.node.path, "/dev/mynull");
        assert_eq!(
            (
                passed.node.kind.as_str(),
                passed.node.major,
                passed.node.minor
            ),
            ("c", 1, 3)
        );
        assert_eq!(passed.node.file_mode, 0o666);
        assert_eq!(passed.rule.v1_line(), "c 1:3 rw");
    }

    #[test]
    fn bad_entries_name_their_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let file = file.to_str().unwrap();
        for (m, field) in [
            (mapping("dev/null", None, None), "resources.devices[0].host"),
            (
                mapping("/nonexistent/dev", Some("/dev/x"), None),
                "resources.devices[0].host",
            ),
            (
                mapping(file, Some("/dev/x"), None),
                "resources.devices[0].host",
            ),
            (
                mapping("/dev/null", Some("/dev/x"), Some("rwx")),
                "resources.devices[0].access",
            ),
            (
                mapping("/dev/null", Some("/etc/x"), None),
                "resources.devices[0].container",
            ),
            (
                mapping("/dev/null", Some("/dev/../etc/x"), None),
                "resources.devices[0].container",
            ),
            (
                mapping("/dev/null", None, None),
                "resources.devices[0].container",
            ),
            (
                mapping("/dev/zero", Some("/dev/pts/9"), None),
                "resources.devices[0].container",
            ),
            (
                mapping("/dev/null", Some("/dev"), None),
                "resources.devices[0].container",
            ),
        ] {
            match host_node(0, &m) {
                Err(IsolatorError::InvalidConfig { field: f, .. }) => assert_eq!(f, field, "{m:?}"),
                other => panic!("{m:?}: {other:?}"),
            }
        }
        let twice = [
            mapping("/dev/null", Some("/dev/a"), None),
            mapping("/dev/zero", Some("/dev/a"), None),
        ];
        match passed_devices(&twice) {
            Err(IsolatorError::InvalidConfig { field, .. }) => {
                assert_eq!(field, "resources.devices[1].container")
            }
            other => panic!("{other:?}"),
        }
    }
}
