//! User namespaces (`userns: auto`): each container's ids 0..65536 mapped
//! to a block of unprivileged host ids of its own, carved from the agent's
//! subordinate ranges.
//!
//! A block is held from launch until the container is removed (not only
//! while it runs): the files it left in its sandbox are owned by the
//! block's ids until then. The record (`Container::userns`, saved
//! crash-safe) is what a restarted agent rebuilds the pool from; see
//! docs/decisions/0011-user-namespaces.md.

mod pool;
mod subordinate;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub use subordinate::SubordinateRange;

use pool::Pool;

/// Ids per container: 0..65535 inside, as Docker's and Podman's defaults.
pub const BLOCK: u32 = 65536;

/// Where the kernel says whether unprivileged user namespaces may exist.
const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";

/// Errors of user namespace settings and allocation.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("invalid {setting} {value:?}: {reason}")]
    Settings {
        setting: String,
        value: String,
        reason: String,
    },
    #[error("read {}: {source}", path.display())]
    SubidFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("this agent has no subordinate id range for user namespaces ({0})")]
    NotConfigured(String),
    #[error("the kernel does not allow user namespaces: {0}")]
    Kernel(String),
    #[error("all {count} user namespace ranges of {}:{} are in use by other containers", uids.start, uids.count)]
    Exhausted { count: u32, uids: SubordinateRange },
    #[error("expected host or auto, got {0:?}")]
    Mode(String),
}

/// The `[userns]` settings: `START:COUNT` ranges, or a user whose ranges
/// `/etc/subuid` and `/etc/subgid` list. Explicit ranges win.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsernsSettings {
    pub subordinate_uids: Option<String>,
    /// Default: the same as `subordinate_uids`.
    pub subordinate_gids: Option<String>,
    pub subuid_user: Option<String>,
}

impl UsernsSettings {
    /// Checks the explicit ranges' syntax (the subid files are read when
    /// the agent starts).
    pub fn validate(&self) -> Result<(), UsernsError> {
        self.explicit().map(|_| ())
    }

    fn explicit(&self) -> Result<Option<(SubordinateRange, SubordinateRange)>, UsernsError> {
        let Some(uids) = &self.subordinate_uids else {
            if self.subordinate_gids.is_some() {
                return Err(UsernsError::Settings {
                    setting: "userns.subordinate_gids".into(),
                    value: self.subordinate_gids.clone().unwrap_or_default(),
                    reason: "needs userns.subordinate_uids too".into(),
                });
            }
            return Ok(None);
        };
        let uids = SubordinateRange::parse(uids, "userns.subordinate_uids")?;
        let gids = match &self.subordinate_gids {
            Some(gids) => SubordinateRange::parse(gids, "userns.subordinate_gids")?,
            None => uids,
        };
        Ok(Some((uids, gids)))
    }

    /// The uid and gid ranges, or `None` when nothing is configured.
    fn ranges(&self) -> Result<Option<(SubordinateRange, SubordinateRange)>, UsernsError> {
        if let Some(ranges) = self.explicit()? {
            return Ok(Some(ranges));
        }
        let Some(user) = &self.subuid_user else {
            return Ok(None);
        };
        Ok(Some((
            SubordinateRange::lookup(Path::new("/etc/subuid"), user)?,
            SubordinateRange::lookup(Path::new("/etc/subgid"), user)?,
        )))
    }
}

/// A container's `userns` request: `host` (none) or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsernsMode {
    Host,
    Auto,
}

impl UsernsMode {
    pub fn parse(value: Option<&str>) -> Result<Self, UsernsError> {
        match value {
            None | Some("host") => Ok(UsernsMode::Host),
            Some("auto") => Ok(UsernsMode::Auto),
            Some(other) => Err(UsernsError::Mode(other.to_string())),
        }
    }
}

/// A container's id mapping: container ids `0..size` are host uids
/// `uid..uid + size` and host gids `gid..gid + size`. Part of the
/// container record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsernsMapping {
    pub uid: u32,
    pub gid: u32,
    pub size: u32,
}

impl UsernsMapping {
    /// The host uid and gid of container ids `uid` and `gid`, if mapped.
    pub fn host_ids(&self, uid: u32, gid: u32) -> Option<(u32, u32)> {
        (uid < self.size && gid < self.size).then(|| (self.uid + uid, self.gid + gid))
    }
}

/// The agent's user namespace ranges.
pub struct Userns {
    /// The pool, or why there is none.
    pool: Result<Mutex<Pool>, String>,
}

impl Userns {
    /// Builds the pool from the settings. A bad or missing subid entry does
    /// not stop the agent: launches asking for a user namespace get a 400
    /// saying why.
    pub fn new(settings: &UsernsSettings) -> Userns {
        let pool = match settings.ranges() {
            Ok(Some((uids, gids))) => Pool::new(uids, gids)
                .map(Mutex::new)
                .map_err(|e| e.to_string()),
            Ok(None) => Err("set userns.subordinate_uids or userns.subuid_user".into()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = &pool {
            if settings != &UsernsSettings::default() {
                tracing::error!("user namespaces unavailable: {why}");
            }
        }
        Userns { pool }
    }

    fn pool(&self) -> Result<std::sync::MutexGuard<'_, Pool>, UsernsError> {
        match &self.pool {
            Ok(pool) => Ok(pool.lock().unwrap()),
            Err(why) => Err(UsernsError::NotConfigured(why.clone())),
        }
    }

    /// Checks that a container could get a user namespace: the agent has
    /// ranges and the kernel allows user namespaces.
    pub fn check_available(&self) -> Result<(), UsernsError> {
        drop(self.pool()?);
        kernel_allows(Path::new(MAX_USER_NAMESPACES))
    }

    /// Reserves a block for container `id`.
    pub fn reserve(&self, id: &str) -> Result<UsernsMapping, UsernsError> {
        self.pool()?.reserve(id)
    }

    /// Frees container `id`'s block, if it holds one.
    pub fn free(&self, id: &str) {
        if let Ok(mut pool) = self.pool() {
            pool.free(id);
        }
    }

    /// Marks recorded mappings as held (agent start). `owners` are the
    /// owners of sandboxes that no readable record explains: a block one of
    /// them is in stays held too, so an unreadable record of a live
    /// container never lets its ids go to another one.
    pub fn recover<'a>(
        &self,
        recorded: impl IntoIterator<Item = (&'a str, &'a UsernsMapping)>,
        owners: impl IntoIterator<Item = (String, u32)>,
    ) {
        let Ok(mut pool) = self.pool() else {
            for (id, _) in recorded {
                tracing::error!(%id, "container has a user namespace range but the agent has no userns settings now");
            }
            return;
        };
        for (id, mapping) in recorded {
            if !pool.take(mapping, id) {
                tracing::error!(%id, ?mapping, "recorded user namespace range is not in the configured ranges; not reserved");
            }
        }
        for (sandbox, uid) in owners {
            if pool.take_uid(uid, &format!("sandbox {sandbox}")) {
                tracing::warn!(%sandbox, uid, "keeping the user namespace range of a sandbox with no readable record");
            }
        }
    }

    /// For `berth info`.
    pub fn describe(&self) -> serde_json::Value {
        match self.pool() {
            Ok(pool) => serde_json::json!({
                "subordinate_uids": format!("{}:{}", pool.uids().start, pool.uids().count),
                "subordinate_gids": format!("{}:{}", pool.gids().start, pool.gids().count),
                "capacity": pool.capacity(),
                "free": pool.free_count(),
            }),
            Err(e) => serde_json::json!({ "unavailable": e.to_string() }),
        }
    }
}

/// Checks that an unprivileged host user (the container's root) can reach
/// `path`: every directory from `/` down to it, itself included, must be
/// searchable by others. The container's root is neither owner nor group of
/// host dirs, and its capabilities count nowhere outside its namespace.
pub fn check_reachable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for dir in path.ancestors() {
        let mode = std::fs::metadata(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            return Err(format!(
                "{} (mode {:o}) is not searchable by others, so the container's root, an unprivileged host user, cannot reach {}",
                dir.display(),
                mode & 0o7777,
                path.display()
            ));
        }
    }
    Ok(())
}

/// Whether this kernel lets us create user namespaces at all (`max` is
/// `/proc/sys/user/max_user_namespaces`).
fn kernel_allows(max: &Path) -> Result<(), UsernsError> {
    if !Path::new("/proc/self/ns/user").exists() {
        return Err(UsernsError::Kernel("built without CONFIG_USER_NS".into()));
    }
    match std::fs::read_to_string(max) {
        Ok(text) if text.trim() == "0" => {
            Err(UsernsError::Kernel(format!("{} is 0", max.display())))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(UsernsMode::parse(None).unwrap(), UsernsMode::Host);
        assert_eq!(UsernsMode::parse(Some("host")).unwrap(), UsernsMode::Host);
        assert_eq!(UsernsMode::parse(Some("auto")).unwrap(), UsernsMode::Auto);
        assert!(UsernsMode::parse(Some("keep-id")).is_err());
    }

    #[test]
    fn settings_default_gids_to_uids_and_refuse_gids_alone() {
        let s = UsernsSettings {
            subordinate_uids: Some("100000:131072".into()),
            ..Default::default()
        };
        let (u, g) = s.ranges().unwrap().unwrap();
        assert_eq!(u, g);
        let s = UsernsSettings {
            subordinate_gids: Some("100000:131072".into()),
            ..Default::default()
        };
        assert!(s.validate().is_err());
        assert!(UsernsSettings::default().ranges().unwrap().is_none());
    }

    #[test]
    fn unconfigured_agent_says_so() {
        let u = Userns::new(&UsernsSettings::default());
        let err = u.reserve("a").unwrap_err();
        assert!(matches!(err, UsernsError::NotConfigured(_)), "{err}");
        assert!(err.to_string().contains("subordinate"), "{err}");
    }

    #[test]
    fn reachable_needs_search_for_others_all_the_way() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check_reachable(&inner), Ok(()));
        std::fs::set_permissions(dir.path().join("a"), std::fs::Permissions::from_mode(0o750))
            .unwrap();
        let err = check_reachable(&inner).unwrap_err();
        assert!(err.contains("/a (mode 750)"), "{err}");
    }

    #[test]
    fn zero_max_user_namespaces_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let max = dir.path().join("max_user_namespaces");
        std::fs::write(&max, "0\n").unwrap();
        let err = kernel_allows(&max).unwrap_err();
        assert!(err.to_string().contains("is 0"), "{err}");
        std::fs::write(&max, "63000\n").unwrap();
        assert!(kernel_allows(&max).is_ok());
    }

    #[test]
    fn host_ids_stay_in_the_block() {
        let m = UsernsMapping {
            uid: 100_000,
            gid: 200_000,
            size: BLOCK,
        };
        assert_eq!(m.host_ids(0, 0), Some((100_000, 200_000)));
        assert_eq!(m.host_ids(1000, 5), Some((101_000, 200_005)));
        assert_eq!(m.host_ids(BLOCK, 0), None);
    }
}
