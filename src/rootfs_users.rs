//! User and group names of a container's root filesystem: `/etc/passwd` and
//! `/etc/group` read CONFINED beneath the root (an image's layer dirs or a
//! `--rootfs` dir), so that `-u NAME` or an image's `User` resolve as the
//! container itself would see them.
//!
//! The root is untrusted: the files are opened through `berth-confined`
//! (no symlink, no `..`, regular files only, reads bounded), so a
//! `/etc/passwd` planted as a symlink to a host file is refused, never read.
//!
//! ```text
//! let users = RootUsers::read(&[top_layer, .., bottom_layer])?; // or &[rootfs]
//! let user: User = users.resolve("www-data:adm")?;
//! ```

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use berth_confined::{ConfinedError, Dir, Kind};
use thiserror::Error;

use crate::container::User;

/// The most of `/etc/passwd` or `/etc/group` read.
const MAX_FILE: u64 = 4 << 20;

#[derive(Debug, Error)]
pub enum RootUsersError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: ConfinedError,
    },
    #[error("{path} is larger than {MAX_FILE} bytes")]
    TooLarge { path: PathBuf },
    #[error("user {name:?} is not in the container's /etc/passwd")]
    NoUser { name: String },
    #[error("group {name:?} is not in the container's /etc/group")]
    NoGroup { name: String },
    #[error("bad user {value:?}: expected USER[:GROUP], names or ids")]
    Syntax { value: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
}

/// The users and groups a root filesystem defines.
#[derive(Debug, Clone, Default)]
pub struct RootUsers {
    passwd: Vec<PasswdEntry>,
    group: Vec<GroupEntry>,
}

impl RootUsers {
    /// Reads `/etc/passwd` and `/etc/group` of the root made of `layers`,
    /// the TOPMOST first (a plain root dir is a single layer). A file the
    /// root lacks is empty; overlay whiteouts and opaque dirs in the layers
    /// hide what lies below them, as in the mounted overlay.
    pub fn read<P: AsRef<Path>>(layers: &[P]) -> Result<Self, RootUsersError> {
        let passwd = read_layered(layers, "passwd")?;
        let group = read_layered(layers, "group")?;
        Ok(RootUsers {
            passwd: passwd.as_deref().map(parse_passwd).unwrap_or_default(),
            group: group.as_deref().map(parse_group).unwrap_or_default(),
        })
    }

    /// Resolves `USER[:GROUP]`, each a name or a numeric id. A user named
    /// alone gets its primary group from `/etc/passwd`; a numeric uid that
    /// the file lacks keeps the default (gid = uid).
    pub fn resolve(&self, value: &str) -> Result<User, RootUsersError> {
        let syntax = || RootUsersError::Syntax {
            value: value.to_string(),
        };
        let (user, group) = match value.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (value, None),
        };
        if user.is_empty() || group.is_some_and(str::is_empty) {
            return Err(syntax());
        }
        let (uid, primary) = match user.parse::<u32>() {
            Ok(uid) => (
                uid,
                self.passwd.iter().find(|e| e.uid == uid).map(|e| e.gid),
            ),
            Err(_) => {
                let entry = self.passwd.iter().find(|e| e.name == user).ok_or_else(|| {
                    RootUsersError::NoUser {
                        name: user.to_string(),
                    }
                })?;
                (entry.uid, Some(entry.gid))
            }
        };
        let gid = match group {
            None => primary,
            Some(g) => Some(match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    self.group
                        .iter()
                        .find(|e| e.name == g)
                        .ok_or_else(|| RootUsersError::NoGroup {
                            name: g.to_string(),
                        })?
                        .gid
                }
            }),
        };
        Ok(User { uid, gid })
    }
}

/// Whether `USER[:GROUP]` is all numeric (needs no root filesystem).
pub fn is_numeric(value: &str) -> bool {
    User::parse(value).is_some()
}

/// The content of `etc/NAME` as the overlay of `layers` shows it.
fn read_layered<P: AsRef<Path>>(
    layers: &[P],
    name: &str,
) -> Result<Option<Vec<u8>>, RootUsersError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RootUsersError::Read { path, source }
    };
    for layer in layers {
        let layer = layer.as_ref();
        let root = Dir::open(layer).map_err(read_err(layer))?;
        let etc_path = layer.join("etc");
        let etc = match root.stat("etc") {
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(read_err(&etc_path)(e)),
            Ok(st) if st.kind() == Kind::Dir => {
                root.open_dir("etc").map_err(read_err(&etc_path))?
            }
            // A whiteout (or a file) hides any etc below.
            Ok(st) if is_whiteout(&st) || st.kind() == Kind::File => return Ok(None),
            // A symlinked /etc: refused, never followed.
            Ok(_) => {
                return Err(read_err(&etc_path)(ConfinedError::Escapes {
                    path: etc_path.clone(),
                }))
            }
        };
        let path = etc_path.join(name);
        match etc.stat(name) {
            Err(e) if e.is_not_found() => {
                if is_opaque(&etc) {
                    return Ok(None);
                }
                continue;
            }
            Err(e) => return Err(read_err(&path)(e)),
            Ok(st) if is_whiteout(&st) => return Ok(None),
            Ok(_) => {}
        }
        // Not a regular file (a symlink, a FIFO, a device): an error.
        let file = etc.open_file(name).map_err(read_err(&path))?;
        if file.len() > MAX_FILE {
            return Err(RootUsersError::TooLarge { path });
        }
        let mut bytes = Vec::with_capacity(file.len() as usize);
        let mut file = file;
        file.read_to_end(&mut bytes).map_err(|e| {
            read_err(&path)(ConfinedError::Io {
                op: "read",
                path: path.clone(),
                source: e,
            })
        })?;
        return Ok(Some(bytes));
    }
    Ok(None)
}

/// An overlay whiteout: a character device 0/0.
fn is_whiteout(st: &berth_confined::Stat) -> bool {
    st.mode() & libc::S_IFMT == libc::S_IFCHR && st.rdev() == 0
}

/// Whether a layer's dir is an overlay opaque dir (hides lower layers).
fn is_opaque(dir: &Dir) -> bool {
    let mut value = [0u8; 1];
    for attr in [c"trusted.overlay.opaque", c"user.overlay.opaque"] {
        // SAFETY: valid fd, nul-terminated name, buffer of the given size.
        let n = unsafe {
            libc::fgetxattr(
                dir.as_fd().as_raw_fd(),
                attr.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if n == 1 && value[0] == b'y' {
            return true;
        }
    }
    false
}

fn parse_passwd(bytes: &[u8]) -> Vec<PasswdEntry> {
    lines(bytes)
        .filter_map(|fields| {
            Some(PasswdEntry {
                name: fields.first()?.to_string(),
                uid: fields.get(2)?.parse().ok()?,
                gid: fields.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(bytes: &[u8]) -> Vec<GroupEntry> {
    lines(bytes)
        .filter_map(|fields| {
            Some(GroupEntry {
                name: fields.first()?.to_string(),
                gid: fields.get(2)?.parse().ok()?,
            })
        })
        .collect()
}

fn lines(bytes: &[u8]) -> impl Iterator<Item = Vec<&str>> {
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split(':').collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn root_with(passwd: &str, group: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
        fs::write(dir.path().join("etc/group"), group).unwrap();
        dir
    }

    #[test]
    fn names_and_ids_resolve() {
        let root = root_with(
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n",
            "root:x:0:\nadm:x:4:www\nwww:x:34:\n",
        );
        let users = RootUsers::read(&[root.path()]).unwrap();
        assert_eq!(
            users.resolve("www").unwrap(),
            User {
                uid: 33,
                gid: Some(34)
            }
        );
        assert_eq!(
            users.resolve("www:adm").unwrap(),
            User {
                uid: 33,
                gid: Some(4)
            }
        );
        assert_eq!(
            users.resolve("33:0").unwrap(),
            User {
                uid: 33,
                gid: Some(0)
            }
        );
        assert_eq!(
            users.resolve("33").unwrap(),
            User {
                uid: 33,
                gid: Some(34)
            }
        );
        assert_eq!(
            users.resolve("500").unwrap(),
            User {
                uid: 500,
                gid: None
            }
        );
        assert!(matches!(
            users.resolve("nobody"),
            Err(RootUsersError::NoUser { .. })
        ));
        assert!(matches!(
            users.resolve("www:staff"),
            Err(RootUsersError::NoGroup { .. })
        ));
        assert!(matches!(
            users.resolve("www:"),
            Err(RootUsersError::Syntax { .. })
        ));
    }

    #[test]
    fn a_root_without_etc_knows_only_ids() {
        let root = tempfile::tempdir().unwrap();
        let users = RootUsers::read(&[root.path()]).unwrap();
        assert_eq!(
            users.resolve("7:8").unwrap(),
            User {
                uid: 7,
                gid: Some(8)
            }
        );
        assert!(users.resolve("root").is_err());
    }

    /// The attack: /etc/passwd a symlink to a host file. It is refused,
    /// and nothing of the host file is used.
    #[test]
    fn a_symlinked_passwd_to_a_host_file_is_not_read() {
        let host = tempfile::tempdir().unwrap();
        let secret = host.path().join("passwd");
        fs::write(&secret, "hostonly:x:4242:4242::/:/bin/sh\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(&secret, root.path().join("etc/passwd")).unwrap();
        let err = RootUsers::read(&[root.path()]).unwrap_err();
        assert!(err.to_string().contains("etc/passwd"), "{err}");
        // A symlinked /etc (to the host's /etc) is refused the same way.
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(host.path(), root.path().join("etc")).unwrap();
        assert!(RootUsers::read(&[root.path()]).is_err());
        // A FIFO does not block and is refused.
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        nix::unistd::mkfifo(
            &root.path().join("etc/passwd"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        assert!(RootUsers::read(&[root.path()]).is_err());
    }

    #[test]
    fn layers_stack_like_the_overlay() {
        let bottom = root_with("a:x:1:1::/:/bin/sh\n", "a:x:1:\n");
        let top = tempfile::tempdir().unwrap();
        fs::create_dir(top.path().join("etc")).unwrap();
        // The top layer has no passwd: the bottom one shows through.
        let users = RootUsers::read(&[top.path(), bottom.path()]).unwrap();
        assert_eq!(users.resolve("a").unwrap().uid, 1);
        // A whiteout hides it.
        nix::sys::stat::mknod(
            &top.path().join("etc/passwd"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        let users = RootUsers::read(&[top.path(), bottom.path()]).unwrap();
        assert!(users.resolve("a").is_err());
        // A newer passwd wins.
        fs::remove_file(top.path().join("etc/passwd")).unwrap();
        fs::write(top.path().join("etc/passwd"), "a:x:9:9::/:/bin/sh\n").unwrap();
        let users = RootUsers::read(&[top.path(), bottom.path()]).unwrap();
        assert_eq!(users.resolve("a").unwrap().uid, 9);
    }
}
