//! Resolving `-u NAME[:GROUP]` inside a container's root filesystem: its
//! `/etc/passwd` and `/etc/group`, read confined beneath the root (through
//! `berth_confined`: a symlink planted in the root, such as `/etc/passwd ->
//! /host/etc/shadow`, is never followed out of it), bounded in size.
//!
//! API (for merging with the image-root resolver):
//! [`resolve(root, spec)`](resolve) -> [`User`] (uid, gid) or
//! [`UsersError`] naming the file or the name not found.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::container::User;

/// The most of `/etc/passwd` or `/etc/group` read: bigger is not a user
/// database but an attempt to make the agent read without end.
pub const MAX_FILE_SIZE: u64 = 4 << 20;

/// Why a user spec could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("bad user {spec:?}: expected NAME|UID[:GROUP|GID]")]
    BadSpec { spec: String },
    #[error("read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: berth_confined::ConfinedError,
    },
    #[error("read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is larger than {MAX_FILE_SIZE} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("no user {name:?} in {}", path.display())]
    NoUser { name: String, path: PathBuf },
    #[error("no group {name:?} in {}", path.display())]
    NoGroup { name: String, path: PathBuf },
}

/// Resolves `NAME`, `UID`, `NAME:GROUP`, `UID:GID`, `NAME:GID` or
/// `UID:GROUP` against the passwd and group files of `root`. A name's gid
/// is its primary group unless a group is given; a numeric uid without a
/// group takes the gid of its passwd entry, or the uid when it has none.
pub fn resolve(root: &Path, spec: &str) -> Result<User, UsersError> {
    let bad = || UsersError::BadSpec {
        spec: spec.to_string(),
    };
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let valid = |s: &str| !s.is_empty() && !s.contains(['\0', '\n', ':']);
    if !valid(user) || group.is_some_and(|g| !valid(g)) {
        return Err(bad());
    }
    let etc = || {
        berth_confined::Dir::open(root).map_err(|source| UsersError::Read {
            path: root.to_path_buf(),
            source,
        })
    };
    let passwd_path = root.join("etc/passwd");
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => {
            let passwd = read_optional(&etc()?, "etc/passwd", &passwd_path)?;
            let gid = passwd
                .as_deref()
                .and_then(|text| entries(text).find(|e| e.get(2) == Some(&user)))
                .and_then(|e| e.get(3)?.parse().ok());
            (uid, gid)
        }
        Err(_) => {
            let passwd = read_optional(&etc()?, "etc/passwd", &passwd_path)?.ok_or_else(|| {
                UsersError::NoUser {
                    name: user.to_string(),
                    path: passwd_path.clone(),
                }
            })?;
            let entry = entries(&passwd)
                .find(|e| e.first() == Some(&user))
                .ok_or_else(|| UsersError::NoUser {
                    name: user.to_string(),
                    path: passwd_path.clone(),
                })?;
            let number = |i: usize| entry.get(i).and_then(|v| v.parse::<u32>().ok());
            match (number(2), number(3)) {
                (Some(uid), Some(gid)) => (uid, Some(gid)),
                _ => {
                    return Err(UsersError::NoUser {
                        name: user.to_string(),
                        path: passwd_path,
                    })
                }
            }
        }
    };
    let gid = match group {
        None => primary_gid.unwrap_or(uid),
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let group_path = root.join("etc/group");
                let no_group = || UsersError::NoGroup {
                    name: group.to_string(),
                    path: group_path.clone(),
                };
                let text =
                    read_optional(&etc()?, "etc/group", &group_path)?.ok_or_else(no_group)?;
                let gid: Option<u32> = entries(&text)
                    .find(|e| e.first() == Some(&group))
                    .and_then(|e| e.get(2)?.parse().ok());
                gid.ok_or_else(no_group)?
            }
        },
    };
    Ok(User {
        uid,
        gid: Some(gid),
    })
}

/// The colon-separated fields of each entry (comments and blank lines
/// skipped).
fn entries(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

/// The file's text, `None` if it does not exist.
fn read_optional(
    root: &berth_confined::Dir,
    name: &str,
    path: &Path,
) -> Result<Option<String>, UsersError> {
    let mut file = match root.open_file(name) {
        Ok(file) => file,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(source) => {
            return Err(UsersError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if file.len() > MAX_FILE_SIZE {
        return Err(UsersError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|source| UsersError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\nweb:x:1000:1001::/home/web:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nweb:x:1001:\nstaff:x:50:web\n",
        )
        .unwrap();
        dir
    }

    fn user(uid: u32, gid: u32) -> User {
        User {
            uid,
            gid: Some(gid),
        }
    }

    #[test]
    fn names_and_numbers_resolve() {
        let dir = root();
        let root = dir.path();
        assert_eq!(resolve(root, "web").unwrap(), user(1000, 1001));
        assert_eq!(resolve(root, "web:staff").unwrap(), user(1000, 50));
        assert_eq!(resolve(root, "web:7").unwrap(), user(1000, 7));
        assert_eq!(resolve(root, "1000").unwrap(), user(1000, 1001));
        assert_eq!(resolve(root, "1234").unwrap(), user(1234, 1234));
        assert_eq!(resolve(root, "1234:staff").unwrap(), user(1234, 50));
        assert!(matches!(
            resolve(root, "nobody"),
            Err(UsersError::NoUser { .. })
        ));
        assert!(matches!(
            resolve(root, "web:wheel"),
            Err(UsersError::NoGroup { .. })
        ));
        for bad in ["", ":", "web:", ":staff", "a:b:c", "we\nb"] {
            assert!(
                matches!(
                    resolve(root, bad),
                    Err(UsersError::BadSpec { .. }) | Err(UsersError::NoGroup { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_symlinked_passwd_pointing_out_of_the_root_is_not_followed() {
        let dir = root();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(
            outside.path().join("passwd"),
            "evil:x:4242:4242::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("passwd"), dir.path().join("etc/passwd"))
            .unwrap();
        let err = resolve(dir.path(), "evil").unwrap_err();
        assert!(
            matches!(err, UsersError::Read { .. } | UsersError::NoUser { .. }),
            "{err}"
        );
        // Nor through a symlinked /etc.
        std::fs::remove_dir_all(dir.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("etc")).unwrap();
        let err = resolve(dir.path(), "evil").unwrap_err();
        assert!(
            matches!(err, UsersError::Read { .. } | UsersError::NoUser { .. }),
            "{err}"
        );
    }
}
