//! Extracting one layer tar into an empty directory, streamed: the blob is
//! decompressed, hashed (the diff_id) and unpacked in one pass.
//!
//! Every write is relative to a descriptor of the entry's parent directory,
//! opened beneath the layer root by `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` (berth-confined): a
//! symlink made earlier in the same layer is never followed, whatever the
//! tar says. The entry itself is created with `O_CREAT|O_EXCL`, `mkdirat`,
//! `mknodat`, `symlinkat` or `linkat` after whatever had its name was
//! removed, and its owner, mode, xattrs and times are set through its
//! descriptor or with `AT_SYMLINK_NOFOLLOW`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_confined::{ConfinedError, Dir, Kind};

use super::name::{self, EntryPath, Leaf};
use super::node;
use super::pipe::HashedStream;
use super::{EntryError, UnpackError};
use crate::images::digest::Digest;
use crate::images::manifest::Compression;

/// The overlayfs xattr that makes a directory opaque.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// The decompressed stream of the blob at `path`.
pub(crate) fn decompressed(
    path: &Path,
    compression: Compression,
) -> io::Result<Box<dyn Read + Send>> {
    let file = File::open(path)?;
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            256 * 1024,
            file,
        ))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file)?),
        Compression::Plain => Box::new(BufReader::with_capacity(256 * 1024, file)),
    })
}

/// What one extraction did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Extracted {
    /// Bytes of uncompressed tar.
    pub(crate) tar_bytes: u64,
    pub(crate) entries: u64,
}

/// Unpacks the tar stream `input` into `root` (an empty directory), then
/// checks the stream's sha256 against `diff_id`. `layer` names the blob in
/// errors. On error `root` holds a partial tree the caller removes.
pub(crate) fn extract(
    input: Box<dyn Read + Send>,
    root: &Dir,
    layer: &Digest,
    diff_id: &Digest,
) -> Result<Extracted, UnpackError> {
    let tar_err = |source: io::Error| UnpackError::Tar {
        layer: layer.clone(),
        source,
    };
    let mut archive = tar::Archive::new(HashedStream::start(input).map_err(tar_err)?);
    let mut state = State {
        root,
        dir_times: BTreeMap::new(),
        buf: vec![0u8; 256 * 1024],
    };
    let mut entries = 0;
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let raw = entry.path_bytes().into_owned();
        state
            .entry(&mut entry)
            .map_err(|source| UnpackError::Entry {
                layer: layer.clone(),
                entry: String::from_utf8_lossy(&raw).into_owned(),
                source,
            })?;
        entries += 1;
    }
    // The tar ends at its first zero block; the diff_id covers the whole
    // stream, padding and anything after it included.
    let (actual, tar_bytes) = archive.into_inner().finish().map_err(tar_err)?;
    if &actual != diff_id {
        return Err(UnpackError::DiffId {
            layer: layer.clone(),
            diff_id: diff_id.clone(),
            actual,
        });
    }
    state.set_dir_times()?;
    Ok(Extracted { tar_bytes, entries })
}

struct State<'a> {
    root: &'a Dir,
    /// Directory mtimes, set once every entry is in place (an entry made in
    /// a directory changes its mtime).
    dir_times: BTreeMap<Vec<OsString>, i64>,
    buf: Vec<u8>,
}

/// Ownership, mode and time of an entry, from its header.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
}

fn io_op(op: &'static str) -> impl FnOnce(io::Error) -> EntryError {
    move |source| EntryError::Io { op, source }
}

impl State<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), EntryError> {
        let path = name::parse(&entry.path_bytes())?;
        let header = entry.header();
        let kind = header.entry_type();
        // An empty uid, gid or mtime field (some writers leave them blank)
        // is 0, as GNU tar reads it; a garbled mode is refused.
        let meta = Meta {
            uid: header.uid().unwrap_or(0) as u32,
            gid: header.gid().unwrap_or(0) as u32,
            mode: header.mode().map_err(io_op("read mode of"))? & 0o7777,
            mtime: header.mtime().unwrap_or(0) as i64,
        };
        let Some((parents, last)) = path.split() else {
            // The root itself: `./`.
            if !kind.is_dir() {
                return Err(EntryError::RootNotDirectory);
            }
            node::fchown(self.root, meta.uid, meta.gid).map_err(io_op("chown"))?;
            node::fchmod(self.root, meta.mode).map_err(io_op("chmod"))?;
            self.dir_times.insert(Vec::new(), meta.mtime);
            return Ok(());
        };
        let leaf = name::leaf(last)?;
        let parent = self.parent(parents)?;
        match leaf {
            Leaf::AufsMeta => Ok(()),
            Leaf::Opaque => {
                node::set_xattr(&parent, OPAQUE_XATTR, b"y").map_err(io_op("set opaque xattr"))
            }
            Leaf::Whiteout(hidden) => {
                remove_existing(&parent, hidden, false)?;
                node::mknod(&parent, hidden, libc::S_IFCHR, 0, 0, 0)
                    .map_err(io_op("make whiteout"))?;
                node::lchown(&parent, hidden, meta.uid, meta.gid).map_err(io_op("chown"))
            }
            Leaf::Plain(name) => {
                let xattrs = xattrs(entry)?;
                self.plain(entry, &path, &parent, name, &meta, &xattrs)
            }
        }
    }

    /// The parent directory of an entry, made (mode 0755, root-owned) where
    /// the tar has no entry for it, as `tar -x` does. Never through a
    /// symlink.
    fn parent(&self, parents: &[OsString]) -> Result<Dir, EntryError> {
        let relative: std::path::PathBuf = parents.iter().collect();
        match self.root.open_dir(&relative) {
            Ok(dir) => return Ok(dir),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let mut dir = self.root.try_clone()?;
        for component in parents {
            dir = match dir.open_dir(component) {
                Ok(next) => next,
                Err(e) if e.is_not_found() => {
                    node::mkdir(&dir, component, 0o755).map_err(io_op("make directory"))?;
                    let next = dir.open_dir(component)?;
                    node::fchmod(&next, 0o755).map_err(io_op("chmod"))?;
                    next
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(dir)
    }

    fn plain<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &EntryPath,
        parent: &Dir,
        name: &OsStr,
        meta: &Meta,
        xattrs: &[(String, Vec<u8>)],
    ) -> Result<(), EntryError> {
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                remove_existing(parent, name, false)?;
                let mut file = parent.create_new(name, 0o600)?;
                loop {
                    let n = entry
                        .read(&mut self.buf)
                        .map_err(io_op("read content of"))?;
                    if n == 0 {
                        break;
                    }
                    file.write_all(&self.buf[..n]).map_err(io_op("write"))?;
                }
                // chown first: it clears setuid/setgid and capabilities.
                node::fchown(&file, meta.uid, meta.gid).map_err(io_op("chown"))?;
                node::fchmod(&file, meta.mode).map_err(io_op("chmod"))?;
                for (key, value) in xattrs {
                    node::set_xattr(&file, key, value).map_err(io_op("set xattr"))?;
                }
                node::set_times(&file, meta.mtime).map_err(io_op("set times of"))
            }
            tar::EntryType::Directory => {
                if remove_existing(parent, name, true)? {
                    node::mkdir(parent, name, 0o700).map_err(io_op("make directory"))?;
                }
                let dir = parent.open_dir(name)?;
                node::fchown(&dir, meta.uid, meta.gid).map_err(io_op("chown"))?;
                node::fchmod(&dir, meta.mode).map_err(io_op("chmod"))?;
                for (key, value) in xattrs {
                    node::set_xattr(&dir, key, value).map_err(io_op("set xattr"))?;
                }
                self.dir_times.insert(path.0.clone(), meta.mtime);
                Ok(())
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or(EntryError::NoLinkTarget)?
                    .into_owned();
                if target.is_empty() || target.contains(&0) {
                    return Err(EntryError::NoLinkTarget);
                }
                remove_existing(parent, name, false)?;
                // The target is data, read inside the container; it is
                // never followed here.
                parent.symlink(Path::new(OsStr::from_bytes(&target)), name)?;
                node::lchown(parent, name, meta.uid, meta.gid).map_err(io_op("chown"))?;
                node::set_times_at(parent, name, meta.mtime).map_err(io_op("set times of"))
            }
            tar::EntryType::Link => {
                let raw = entry
                    .link_name_bytes()
                    .ok_or(EntryError::NoLinkTarget)?
                    .into_owned();
                let bad_target = |reason: EntryError| EntryError::LinkTarget {
                    target: String::from_utf8_lossy(&raw).into_owned(),
                    reason: Box::new(reason),
                };
                let target = name::parse(&raw).map_err(bad_target)?;
                let Some((target_parents, target_name)) = target.split() else {
                    return Err(bad_target(EntryError::RootNotDirectory));
                };
                if !matches!(name::leaf(target_name), Ok(Leaf::Plain(_))) {
                    return Err(bad_target(EntryError::BadWhiteout));
                }
                if &target == path {
                    return Ok(());
                }
                let target_dir = self
                    .root
                    .open_dir(target_parents.iter().collect::<PathBuf>())
                    .map_err(|e| bad_target(e.into()))?;
                remove_existing(parent, name, false)?;
                node::link(&target_dir, target_name, parent, name).map_err(|e| {
                    bad_target(EntryError::Io {
                        op: "link",
                        source: e,
                    })
                })
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let header = entry.header();
                let (major, minor) = if kind == tar::EntryType::Fifo {
                    (0, 0)
                } else {
                    (
                        header
                            .device_major()
                            .map_err(io_op("read device of"))?
                            .unwrap_or(0),
                        header
                            .device_minor()
                            .map_err(io_op("read device of"))?
                            .unwrap_or(0),
                    )
                };
                let file_type = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                remove_existing(parent, name, false)?;
                node::mknod(parent, name, file_type, 0o600, major, minor)
                    .map_err(io_op("make node"))?;
                node::lchown(parent, name, meta.uid, meta.gid).map_err(io_op("chown"))?;
                node::chmod_node(parent, name, meta.mode).map_err(io_op("chmod"))?;
                node::set_times_at(parent, name, meta.mtime).map_err(io_op("set times of"))
            }
            other => Err(EntryError::Type(other.as_byte())),
        }
    }

    fn set_dir_times(&self) -> Result<(), UnpackError> {
        for (components, mtime) in &self.dir_times {
            let relative: std::path::PathBuf = components.iter().collect();
            let dir = self.root.open_dir(&relative).map_err(|e| UnpackError::Io {
                op: "open",
                path: self.root.path().join(&relative),
                source: e.into(),
            })?;
            node::set_times(&dir, *mtime).map_err(|source| UnpackError::Io {
                op: "set times of",
                path: self.root.path().join(&relative),
                source,
            })?;
        }
        Ok(())
    }
}

/// Makes room for a new entry `name` of `parent`: whatever has the name
/// goes (a directory with everything below it, never following a link),
/// except that a directory stays when the new entry is one too (its
/// content merges, as in `tar -x`). Returns whether the name is free.
fn remove_existing(parent: &Dir, name: &OsStr, new_is_dir: bool) -> Result<bool, EntryError> {
    let stat = match parent.stat(name) {
        Ok(stat) => stat,
        Err(e) if e.is_not_found() => return Ok(true),
        Err(e) => return Err(e.into()),
    };
    match stat.kind() {
        Kind::Dir if new_is_dir => Ok(false),
        Kind::Dir => {
            parent.remove_tree(name)?;
            Ok(true)
        }
        _ => {
            parent.remove_file(name)?;
            Ok(true)
        }
    }
}

/// The extended attributes of PAX `SCHILY.xattr.NAME` records that are kept:
/// `user.*` and `security.capability` (file capabilities, as Docker keeps
/// them). Others are dropped: `trusted.*` would let a layer forge overlay
/// metadata (`trusted.overlay.redirect`, `.origin`), `security.selinux`
/// labels are the host's business.
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Vec<(String, Vec<u8>)>, EntryError> {
    let mut out = Vec::new();
    let Some(extensions) = entry
        .pax_extensions()
        .map_err(io_op("read PAX header of"))?
    else {
        return Ok(out);
    };
    for extension in extensions {
        let extension = extension.map_err(io_op("read PAX header of"))?;
        let Ok(key) = extension.key() else { continue };
        let Some(attr) = key.strip_prefix("SCHILY.xattr.") else {
            continue;
        };
        if attr.starts_with("user.") || attr == "security.capability" {
            out.push((attr.to_owned(), extension.value_bytes().to_vec()));
        }
    }
    Ok(out)
}

impl From<ConfinedError> for EntryError {
    fn from(e: ConfinedError) -> Self {
        match e {
            ConfinedError::Escapes { .. } => EntryError::ThroughSymlink,
            e => EntryError::Confined(e),
        }
    }
}
