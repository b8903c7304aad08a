//! Secrets and live config files (decision 0034).
//!
//! A secret is a value placed at `/run/secrets/NAME` in a container; a
//! config file is a value placed at `DIR/NAME` (`..data` layout, swapped
//! atomically on update). Both live on tmpfs mounts the agent creates
//! detached (`fsopen`/`fsmount`: attached nowhere on the host), fills, and
//! hands to the shim as file descriptors; the shim attaches a read-only
//! copy in the container's mount namespace. The values are never written to
//! disk: they stay in the agent's memory (for restarts and updates, see
//! [`live`]) and on those tmpfs mounts, and they are stripped from the
//! launch request before it is recorded.
//!
//! This module holds the request types and their checks ([`request`]), the
//! tmpfs mounts ([`tmpfs`]) and the agent's in-memory values ([`live`]).

pub mod live;
pub mod request;
pub mod tmpfs;

pub use request::{ConfigChange, ConfigFileSource, SecretSource, SecretText, UpdateFileRequest};

/// Where the secrets tmpfs is mounted in a container.
pub const SECRETS_DIR: &str = "/run/secrets";

/// The source the bundle names the tmpfs at [`SECRETS_DIR`] and at each
/// config dir with, so that the shim attaches the prepared tmpfs.
pub use berth_protocol::bundle::FILES_TMPFS_SOURCE as TMPFS_SOURCE;

/// The largest value of one secret or config file.
pub const MAX_VALUE: usize = 1024 * 1024;

/// The largest total of a container's secrets, or of one config dir's
/// files. The tmpfs is twice that plus slack, so that an update (the new
/// value beside the old one until the rename) always fits.
pub const MAX_TOTAL: usize = 2 * MAX_VALUE;

/// The size cap of each tmpfs.
pub const TMPFS_SIZE: usize = 2 * MAX_TOTAL + 256 * 1024;
