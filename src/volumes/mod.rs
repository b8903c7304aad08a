//! Bind mounts of host paths and named volumes (see decision 0033).
//!
//! A launch request's `mounts` are checked by the agent (host paths against
//! the `[volumes] allowed_host_paths` allow-list, volume names against the
//! volume store) and written into the bundle as ordinary OCI bind mounts,
//! `nosuid,nodev` always, with the [`NO_FOLLOW`] option: the shim then opens
//! the source with `RESOLVE_NO_SYMLINKS`, so a symlink swapped in after the
//! agent's check cannot redirect the mount, and resolves the target inside
//! the container's root (`RESOLVE_IN_ROOT`), in its own writable layer.

pub mod host_path;
pub mod request;
pub mod store;

pub use request::{MountKind, MountRequest};
pub use store::{Volume, VolumeError, VolumeStore};

/// The bundle mount option that makes the shim open the bind source
/// without following any symlink (berth-protocol's).
pub use berth_protocol::bundle::NO_FOLLOW;

/// `[volumes]`: what containers may mount from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeSettings {
    /// Host path prefixes a bind mount's source must lie under (after
    /// resolving symlinks). Empty (the default): no bind mounts.
    pub allowed_host_paths: Vec<std::path::PathBuf>,
}
