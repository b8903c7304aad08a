//! Tar members with their metadata members applied, read with bounded
//! memory. The `tar` crate's own iteration reads a GNU long name or link
//! and a PAX header into memory whatever their size (a hostile layer could
//! make the agent allocate gigabytes); here the archive is iterated raw and
//! those members are read up to a limit, then applied to the member they
//! describe.

use std::io::{self, Read};

use super::EntryError;

/// Longest GNU long name or link accepted (Linux's PATH_MAX is 4 KiB).
const MAX_NAME: u64 = 64 << 10;
/// Largest PAX header accepted (names, times, xattrs such as file
/// capabilities are a few hundred bytes).
const MAX_PAX: u64 = 1 << 20;

/// A file-system member: its name and what metadata members and PAX
/// records said about it.
#[derive(Debug, Default)]
pub(crate) struct Member {
    pub(crate) path: Vec<u8>,
    pub(crate) link: Option<Vec<u8>>,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: i64,
    /// Kept xattrs (see [`keep_xattr`]).
    pub(crate) xattrs: Vec<(String, Vec<u8>)>,
}

/// Metadata members seen since the last file-system member.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

fn read_bounded<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>, EntryError> {
    let size = entry.header().size().map_err(io_op("read size of"))?;
    if size > limit {
        return Err(EntryError::TooLarge { what, size, limit });
    }
    let mut data = Vec::with_capacity(size as usize);
    entry
        .take(limit)
        .read_to_end(&mut data)
        .map_err(io_op("read"))?;
    Ok(data)
}

fn io_op(op: &'static str) -> impl FnOnce(io::Error) -> EntryError {
    move |source| EntryError::Io { op, source }
}

/// PAX `SCHILY.xattr.NAME` records kept: `user.*` and
/// `security.capability` (file capabilities, as Docker keeps them).
/// `trusted.*` would let a layer forge overlay metadata
/// (`trusted.overlay.redirect`, `.origin`, `.opaque`); `security.selinux`
/// and the rest are the host's business.
fn keep_xattr(name: &str) -> bool {
    name.starts_with("user.") || name == "security.capability"
}

impl Pending {
    /// Takes the next raw entry: a metadata member is remembered and
    /// `None` returned; any other member is returned with the remembered
    /// metadata applied (and forgotten).
    pub(crate) fn take<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<Option<Member>, EntryError> {
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::GNULongName => {
                let mut name = read_bounded(entry, MAX_NAME, "GNU long name")?;
                trim_nul(&mut name);
                self.long_name = Some(name);
                return Ok(None);
            }
            tar::EntryType::GNULongLink => {
                let mut link = read_bounded(entry, MAX_NAME, "GNU long link name")?;
                trim_nul(&mut link);
                self.long_link = Some(link);
                return Ok(None);
            }
            tar::EntryType::XHeader => {
                self.pax = Some(read_bounded(entry, MAX_PAX, "PAX header")?);
                return Ok(None);
            }
            tar::EntryType::XGlobalHeader => {
                // Global records (comments, charset) change nothing here;
                // skipped without keeping them.
                io::copy(entry, &mut io::sink()).map_err(io_op("read"))?;
                return Ok(None);
            }
            _ => {}
        }
        let pending = std::mem::take(self);
        let header = entry.header();
        // An empty uid, gid or mtime field (some writers leave them blank)
        // is 0, as GNU tar reads it.
        let mut member = Member {
            path: pending
                .long_name
                .unwrap_or_else(|| header.path_bytes().into_owned()),
            link: pending
                .long_link
                .or_else(|| header.link_name_bytes().map(|l| l.into_owned())),
            uid: header.uid().unwrap_or(0) as u32,
            gid: header.gid().unwrap_or(0) as u32,
            mtime: header.mtime().unwrap_or(0) as i64,
            xattrs: Vec::new(),
        };
        let Some(pax) = pending.pax else {
            return Ok(Some(member));
        };
        let header_size = header.size().map_err(io_op("read size of"))?;
        for record in tar::PaxExtensions::new(&pax) {
            let record = record.map_err(io_op("read PAX header of"))?;
            let Ok(key) = record.key() else { continue };
            let value = record.value_bytes();
            let number = || -> Option<u64> {
                let text = std::str::from_utf8(value).ok()?;
                text.split('.').next()?.parse().ok()
            };
            match key {
                "path" => member.path = value.to_vec(),
                "linkpath" => member.link = Some(value.to_vec()),
                "uid" => member.uid = number().unwrap_or(0) as u32,
                "gid" => member.gid = number().unwrap_or(0) as u32,
                "mtime" => member.mtime = number().unwrap_or(0) as i64,
                // The raw iteration frames members by their header's size;
                // a PAX size saying otherwise (files over 8 GiB) is not
                // supported rather than misread.
                "size" if number() != Some(header_size) => {
                    return Err(EntryError::Unsupported(
                        "PAX size record (a file over 8 GiB)",
                    ))
                }
                key if key.starts_with("GNU.sparse.") => {
                    return Err(EntryError::Unsupported("PAX sparse file"))
                }
                key => {
                    if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                        if keep_xattr(name) {
                            member.xattrs.push((name.to_owned(), value.to_vec()));
                        }
                    }
                }
            }
        }
        Ok(Some(member))
    }
}

fn trim_nul(bytes: &mut Vec<u8>) {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
}
