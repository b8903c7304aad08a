//! `[api] socket_group` (flag `--socket-group`): the group that owns the
//! unix socket, which is mode 0660, so its members may use the API. Given
//! by name (looked up in the host's group database) or number; a group
//! that does not exist stops the agent's start.

use std::path::{Path, PathBuf};

/// What goes wrong resolving or applying the socket's group.
#[derive(Debug, thiserror::Error)]
pub enum SocketGroupError {
    #[error("api.socket_group {value:?}: no such group")]
    Unknown { value: String },
    #[error("api.socket_group {value:?}: look up the group: {source}")]
    Lookup {
        value: String,
        source: nix::errno::Errno,
    },
    #[error("chown {} to group {gid}: {source}", path.display())]
    Chown {
        path: PathBuf,
        gid: u32,
        source: nix::errno::Errno,
    },
}

/// The gid `value` names: a group name, else a number. A number need not
/// be in the group database (as `chgrp 1234` accepts it).
pub fn resolve(value: &str) -> Result<u32, SocketGroupError> {
    match nix::unistd::Group::from_name(value) {
        Ok(Some(group)) => return Ok(group.gid.as_raw()),
        Ok(None) => {}
        Err(source) => {
            return Err(SocketGroupError::Lookup {
                value: value.to_string(),
                source,
            })
        }
    }
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(gid) = value.parse::<u32>() {
            return Ok(gid);
        }
    }
    Err(SocketGroupError::Unknown {
        value: value.to_string(),
    })
}

/// Gives the socket at `path` to group `gid` (the owner stays).
pub fn apply(path: &Path, gid: u32) -> Result<(), SocketGroupError> {
    nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid))).map_err(|source| {
        SocketGroupError::Chown {
            path: path.to_path_buf(),
            gid,
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(resolve("root").unwrap(), 0);
        assert_eq!(resolve("4321").unwrap(), 4321);
        for bad in ["", "no-such-group-berth-test", "-1", "12x"] {
            let e = resolve(bad).unwrap_err();
            assert!(e.to_string().starts_with("api.socket_group"), "{bad}: {e}");
        }
    }
}
