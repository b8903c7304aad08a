//! What a tar entry's name means inside a layer: a path of plain
//! components below the layer root, and, for its last component, whether it
//! is a whiteout. These checks refuse what no kernel walk should ever be
//! asked to resolve (`..`, absolute names, whiteouts that name no entry of
//! their own directory); the writes themselves are still confined by the
//! kernel (`openat2`), so a symlink on the way is refused there.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use super::EntryError;

/// The whiteout prefix (`.wh.NAME` hides `NAME` of lower layers).
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The opaque-directory marker (`DIR/.wh..wh..opq`).
pub(crate) const OPAQUE: &[u8] = b".wh..wh..opq";
/// Prefix of AUFS metadata entries (`.wh..wh.plnk`, ...), skipped as Docker
/// does.
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";

/// A checked entry name: the components from the layer root, none of them
/// empty, `.` or `..`. Empty is the root itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryPath(pub(crate) Vec<OsString>);

impl EntryPath {
    /// The components of the parent directory and the last name, or `None`
    /// for the root.
    pub(crate) fn split(&self) -> Option<(&[OsString], &OsStr)> {
        let (last, parents) = self.0.split_last()?;
        Some((parents, last.as_os_str()))
    }
}

/// Parses a tar name (or hard link target) as a path below the layer root.
/// A leading `./` and `.` components are dropped, repeated `/` are one;
/// absolute names and any `..` component are refused (not cleaned: a layer
/// built by a real tool never has them), as is a directory component that
/// starts with `.wh.` (a whiteout is a leaf, never a directory on the way).
pub(crate) fn parse(raw: &[u8]) -> Result<EntryPath, EntryError> {
    if raw.first() == Some(&b'/') {
        return Err(EntryError::Absolute);
    }
    if raw.contains(&0) {
        return Err(EntryError::Nul);
    }
    let mut components = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(EntryError::ParentDir),
            _ => components.push(OsStr::from_bytes(part).to_os_string()),
        }
    }
    if let Some((_, parents)) = components.split_last() {
        if parents
            .iter()
            .any(|c| c.as_bytes().starts_with(WHITEOUT_PREFIX))
        {
            return Err(EntryError::WhiteoutDirectory);
        }
    }
    Ok(EntryPath(components))
}

/// What the last component of an entry's name asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leaf<'a> {
    /// An ordinary entry with this name.
    Plain(&'a OsStr),
    /// `.wh.NAME`: hide `NAME` of the lower layers (the entry named by the
    /// rest is a single, ordinary name of the same directory).
    Whiteout(&'a OsStr),
    /// `.wh..wh..opq`: the directory hides everything below it in lower
    /// layers.
    Opaque,
    /// Another `.wh..wh.` name: AUFS bookkeeping, ignored.
    AufsMeta,
}

/// Classifies the last component `name` (from [`EntryPath::split`]).
pub(crate) fn leaf(name: &OsStr) -> Result<Leaf<'_>, EntryError> {
    let bytes = name.as_bytes();
    if bytes == OPAQUE {
        return Ok(Leaf::Opaque);
    }
    if bytes.starts_with(AUFS_META_PREFIX) {
        return Ok(Leaf::AufsMeta);
    }
    let Some(rest) = bytes.strip_prefix(WHITEOUT_PREFIX) else {
        return Ok(Leaf::Plain(name));
    };
    // `parse` split on `/`, so `rest` has none; it must name one ordinary
    // entry of the same directory.
    if rest.is_empty() || rest == b"." || rest == b".." || rest.starts_with(WHITEOUT_PREFIX) {
        return Err(EntryError::BadWhiteout);
    }
    Ok(Leaf::Whiteout(OsStr::from_bytes(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &str) -> Vec<String> {
        parse(raw.as_bytes())
            .unwrap()
            .0
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn plain_names_are_their_components() {
        assert_eq!(names("usr/bin/env"), ["usr", "bin", "env"]);
        assert_eq!(names("./usr//bin/./env"), ["usr", "bin", "env"]);
        assert_eq!(names("etc/"), ["etc"]);
        assert!(names("./").is_empty());
        assert!(names(".").is_empty());
        assert!(names("").is_empty());
        // Dots inside names are names.
        assert_eq!(names("a/...b/..c/c.."), ["a", "...b", "..c", "c.."]);
    }

    #[test]
    fn escaping_names_are_refused() {
        for (raw, want) in [
            ("../escape", "ParentDir"),
            ("a/../../b", "ParentDir"),
            ("a/..", "ParentDir"),
            ("..", "ParentDir"),
            ("./../x", "ParentDir"),
            ("/abs/file", "Absolute"),
            ("//abs", "Absolute"),
            ("/", "Absolute"),
            (".wh.../x", "WhiteoutDirectory"),
            ("a/.wh.b/c", "WhiteoutDirectory"),
        ] {
            let got = format!("{:?}", parse(raw.as_bytes()).unwrap_err());
            assert_eq!(got, want, "{raw}");
        }
        assert!(matches!(parse(b"a\0b"), Err(EntryError::Nul)));
    }

    #[test]
    fn whiteouts_name_one_entry_of_their_directory() {
        let leaf_of = |raw: &str| {
            let path = parse(raw.as_bytes()).unwrap();
            let (_, last) = path.split().unwrap();
            format!("{:?}", leaf(last).map(|l| format!("{l:?}")))
        };
        assert_eq!(leaf_of("a/b"), r#"Ok("Plain(\"b\")")"#);
        assert_eq!(leaf_of("a/.wh.b"), r#"Ok("Whiteout(\"b\")")"#);
        assert_eq!(leaf_of(".wh..hidden"), r#"Ok("Whiteout(\".hidden\")")"#);
        assert_eq!(leaf_of("a/.wh..wh..opq"), r#"Ok("Opaque")"#);
        assert_eq!(leaf_of(".wh..wh.plnk"), r#"Ok("AufsMeta")"#);
        for raw in ["a/.wh..", "a/.wh...", ".wh.", ".wh..wh."] {
            let path = parse(raw.as_bytes()).unwrap();
            let (_, last) = path.split().unwrap();
            let got = leaf(last);
            // `.wh..wh.` is the AUFS prefix itself: ignored, harmless.
            if raw == ".wh..wh." {
                assert_eq!(got.unwrap(), Leaf::AufsMeta);
            } else {
                assert!(matches!(got, Err(EntryError::BadWhiteout)), "{raw}");
            }
        }
    }

    #[test]
    fn the_root_has_no_leaf() {
        assert!(parse(b"./").unwrap().split().is_none());
        let path = parse(b"a/b").unwrap();
        let (parents, last) = path.split().unwrap();
        assert_eq!((parents.len(), last), (1, std::ffi::OsStr::new("b")));
    }
}
