//! The container's user namespace: created by cloning the container child
//! into it (together with its pid namespace, so that the pid namespace is
//! owned by it and procfs can be mounted inside), its id maps written by the
//! monitor, which stays root in the host's user namespace.
//!
//! Order: the monitor clones the child with `CLONE_NEWUSER | CLONE_NEWPID`;
//! the child waits on the go pipe; the monitor writes `uid_map` and
//! `gid_map` (`setgroups` stays allowed: a privileged writer needs no
//! `deny`, and the container's root must be able to drop groups); the child
//! hears so, becomes uid/gid 0 of its namespace and creates the other
//! namespaces, which its user namespace then owns.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::{setresgid, setresuid, Gid, Pid, Uid};
use oci_spec::runtime::LinuxIdMapping;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum UsernsError {
    #[error("a new user namespace needs linux.uidMappings and linux.gidMappings")]
    NoMappings,
    #[error("clone into a new user namespace: {0}")]
    Clone(Errno),
    #[error("write {path} ({content:?}): {source}")]
    WriteMap {
        path: PathBuf,
        content: String,
        source: std::io::Error,
    },
    #[error("become root of the user namespace: {0}")]
    Root(Errno),
}

/// One line of an id map: `inside outside count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The container's uid and gid maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMappings {
    pub uid: Vec<IdMap>,
    pub gid: Vec<IdMap>,
}

impl IdMappings {
    pub fn from_spec(
        uid: Option<&Vec<LinuxIdMapping>>,
        gid: Option<&Vec<LinuxIdMapping>>,
    ) -> Result<Self, UsernsError> {
        let convert = |list: Option<&Vec<LinuxIdMapping>>| -> Result<Vec<IdMap>, UsernsError> {
            let list: Vec<IdMap> = list
                .into_iter()
                .flatten()
                .map(|m| IdMap {
                    inside: m.container_id(),
                    outside: m.host_id(),
                    count: m.size(),
                })
                .collect();
            if list.is_empty() {
                return Err(UsernsError::NoMappings);
            }
            Ok(list)
        };
        Ok(IdMappings {
            uid: convert(uid)?,
            gid: convert(gid)?,
        })
    }

    /// Writes the child's maps (from the monitor, root in the parent user
    /// namespace). The kernel takes each map in a single write.
    pub fn write(&self, child: Pid) -> Result<(), UsernsError> {
        for (name, map) in [("uid_map", &self.uid), ("gid_map", &self.gid)] {
            let path = PathBuf::from(format!("/proc/{child}/{name}"));
            let content: String = map
                .iter()
                .map(|m| format!("{} {} {}\n", m.inside, m.outside, m.count))
                .collect();
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut f| f.write_all(content.as_bytes()))
                .map_err(|source| UsernsError::WriteMap {
                    path,
                    content,
                    source,
                })?;
        }
        Ok(())
    }
}

/// Forks the container child into a new user namespace (and a new pid
/// namespace with `new_pid`, which the user namespace then owns). Like
/// `fork`: `Ok(None)` in the child, `Ok(Some(pid))` in the monitor.
///
/// # Safety
/// As for `fork`: the caller must be single-threaded.
pub unsafe fn clone_child(new_pid: bool) -> Result<Option<Pid>, UsernsError> {
    let mut flags = CloneFlags::CLONE_NEWUSER;
    if new_pid {
        flags |= CloneFlags::CLONE_NEWPID;
    }
    // SAFETY: the caller guarantees there are no other threads.
    unsafe { super::namespaces::clone_into(flags) }.map_err(UsernsError::Clone)
}

/// In the child, once its maps are written: uid and gid 0 of its
/// namespace. Until then it runs as the overflow ids, with which it could
/// not create a file or mount anything owned by anyone.
pub fn become_root() -> Result<(), UsernsError> {
    let (root_gid, root_uid) = (Gid::from_raw(0), Uid::from_raw(0));
    setresgid(root_gid, root_gid, root_gid).map_err(UsernsError::Root)?;
    setresuid(root_uid, root_uid, root_uid).map_err(UsernsError::Root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_from_spec_need_both() {
        let m: Vec<LinuxIdMapping> = serde_json::from_value(serde_json::json!([
            {"containerID": 0, "hostID": 100000, "size": 65536}
        ]))
        .unwrap();
        let maps = IdMappings::from_spec(Some(&m), Some(&m)).unwrap();
        assert_eq!(
            maps.uid,
            [IdMap {
                inside: 0,
                outside: 100000,
                count: 65536
            }]
        );
        assert!(matches!(
            IdMappings::from_spec(Some(&m), None),
            Err(UsernsError::NoMappings)
        ));
        assert!(IdMappings::from_spec(Some(&vec![]), Some(&m)).is_err());
    }
}
