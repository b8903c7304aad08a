//! The container's user, groups and rlimits.

use nix::errno::Errno;
use nix::sys::resource::{setrlimit, Resource};
use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
use oci_spec::runtime::PosixRlimit;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum UserError {
    #[error("unknown rlimit {0}")]
    UnknownRlimit(String),
    #[error("set rlimit {name} to {soft}/{hard}: {errno}")]
    Rlimit {
        name: String,
        soft: u64,
        hard: u64,
        errno: Errno,
    },
    #[error("set additional groups {gids:?}: {errno}")]
    Groups { gids: Vec<u32>, errno: Errno },
    #[error("set gid {gid}: {errno}")]
    Gid { gid: u32, errno: Errno },
    #[error("set uid {uid}: {errno}")]
    Uid { uid: u32, errno: Errno },
}

/// One `process.rlimits` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    pub name: String,
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

impl Rlimit {
    pub fn from_spec(r: &PosixRlimit) -> Result<Self, UserError> {
        // oci-spec displays e.g. "RLIMIT_NOFILE".
        let name = r.typ().to_string();
        let resource = match name.as_str() {
            "RLIMIT_AS" => Resource::RLIMIT_AS,
            "RLIMIT_CORE" => Resource::RLIMIT_CORE,
            "RLIMIT_CPU" => Resource::RLIMIT_CPU,
            "RLIMIT_DATA" => Resource::RLIMIT_DATA,
            "RLIMIT_FSIZE" => Resource::RLIMIT_FSIZE,
            "RLIMIT_LOCKS" => Resource::RLIMIT_LOCKS,
            "RLIMIT_MEMLOCK" => Resource::RLIMIT_MEMLOCK,
            "RLIMIT_MSGQUEUE" => Resource::RLIMIT_MSGQUEUE,
            "RLIMIT_NICE" => Resource::RLIMIT_NICE,
            "RLIMIT_NOFILE" => Resource::RLIMIT_NOFILE,
            "RLIMIT_NPROC" => Resource::RLIMIT_NPROC,
            "RLIMIT_RSS" => Resource::RLIMIT_RSS,
            "RLIMIT_RTPRIO" => Resource::RLIMIT_RTPRIO,
            "RLIMIT_RTTIME" => Resource::RLIMIT_RTTIME,
            "RLIMIT_SIGPENDING" => Resource::RLIMIT_SIGPENDING,
            "RLIMIT_STACK" => Resource::RLIMIT_STACK,
            _ => return Err(UserError::UnknownRlimit(name)),
        };
        Ok(Rlimit {
            name,
            resource,
            soft: r.soft(),
            hard: r.hard(),
        })
    }

    pub fn apply(&self) -> Result<(), UserError> {
        setrlimit(self.resource, self.soft, self.hard).map_err(|errno| UserError::Rlimit {
            name: self.name.clone(),
            soft: self.soft,
            hard: self.hard,
            errno,
        })
    }
}

/// The container's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
}

impl User {
    /// Groups first, then gid, then uid: each step needs the privilege the
    /// next one gives up.
    pub fn switch(&self) -> Result<(), UserError> {
        let gids: Vec<Gid> = self
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        setgroups(&gids).map_err(|errno| UserError::Groups {
            gids: self.additional_gids.clone(),
            errno,
        })?;
        setgid(Gid::from_raw(self.gid)).map_err(|errno| UserError::Gid {
            gid: self.gid,
            errno,
        })?;
        setuid(Uid::from_raw(self.uid)).map_err(|errno| UserError::Uid {
            uid: self.uid,
            errno,
        })?;
        if let Some(mask) = self.umask {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rlimit_names() {
        let r: PosixRlimit = serde_json::from_value(serde_json::json!({
            "type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096
        }))
        .unwrap();
        let r = Rlimit::from_spec(&r).unwrap();
        assert_eq!(r.resource, Resource::RLIMIT_NOFILE);
        assert_eq!((r.soft, r.hard), (1024, 4096));
    }
}
