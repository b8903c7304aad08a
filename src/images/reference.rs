//! Image references: `[registry/]name[:tag][@digest]`, normalized with
//! Docker Hub's defaults (`docker.io`, `library/`, `latest`).

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

/// The default registry of a reference with no registry part.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's API really is.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Why a reference was refused; names the bad part and the whole text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference {reference:?}: bad registry {part:?}")]
    Registry { reference: String, part: String },
    #[error("image reference {reference:?}: bad repository name component {part:?} (lowercase letters, digits and separators . _ __ - only)")]
    Name { reference: String, part: String },
    #[error("image reference {reference:?}: bad tag {part:?} (letters, digits, _ . - ; at most 128, not starting with . or -)")]
    Tag { reference: String, part: String },
    #[error("image reference {reference:?}: bad digest: {source}")]
    Digest {
        reference: String,
        #[source]
        source: DigestError,
    },
    #[error("image reference {reference:?}: longer than 255 characters")]
    TooLong { reference: String },
}

/// A normalized image reference.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `127.0.0.1:5000`, `registry.example.com`.
    pub registry: String,
    /// `library/busybox`, `t/busy`.
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest is given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

fn valid_registry(r: &str) -> bool {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || r.starts_with('[') => (h, Some(p)),
        _ => (r, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host[1..host.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl Reference {
    /// Parses and normalizes `text` (no registry means Docker Hub).
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        Self::parse_with_default(text, DOCKER_HUB)
    }

    /// Parses and normalizes `text`; a name without a registry is on
    /// `default_registry` (the agent's `[images] default_registry`).
    pub fn parse_with_default(text: &str, default_registry: &str) -> Result<Self, ReferenceError> {
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let reference = text.to_owned();
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => (
                r,
                Some(Digest::parse(d).map_err(|source| ReferenceError::Digest {
                    reference: reference.clone(),
                    source,
                })?),
            ),
            None => (text, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::Tag {
                    reference,
                    part: t.to_owned(),
                });
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !valid_registry(first) {
                    return Err(ReferenceError::Registry {
                        reference,
                        part: first.to_owned(),
                    });
                }
                (first.to_owned(), path.to_owned())
            }
            _ => (default_registry.to_owned(), name.to_owned()),
        };
        let registry = if registry == "index.docker.io" || registry == DOCKER_HUB_API {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        for part in path.split('/') {
            if !valid_component(part) {
                return Err(ReferenceError::Name {
                    reference,
                    part: part.to_owned(),
                });
            }
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if registry.len() + 1 + repository.len() > 255 {
            return Err(ReferenceError::TooLong { reference });
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What to ask the registry's manifest endpoint for: the digest if
    /// there is one, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_hub_defaults() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("me/app"), "docker.io/me/app:latest");
        assert_eq!(
            norm("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("127.0.0.1:5000/t/busy:v1"), "127.0.0.1:5000/t/busy:v1");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("127.0.0.1:5000/t/busy@{d}")),
            format!("127.0.0.1:5000/t/busy@{d}")
        );
        assert_eq!(
            norm(&format!("busy:v2@{d}")),
            format!("docker.io/library/busy:v2@{d}")
        );
    }

    #[test]
    fn bad_parts_are_named() {
        assert!(matches!(Reference::parse(""), Err(ReferenceError::Empty)));
        match Reference::parse("Busybox") {
            Err(ReferenceError::Name { part, .. }) => assert_eq!(part, "Busybox"),
            other => panic!("{other:?}"),
        }
        match Reference::parse("busybox:-x") {
            Err(ReferenceError::Tag { part, .. }) => assert_eq!(part, "-x"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Reference::parse("bad_host.x:99999999/a"),
            Err(ReferenceError::Registry { .. })
        ));
        assert!(matches!(
            Reference::parse("a@sha256:zz"),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(
            Reference::parse("a/../b"),
            Err(ReferenceError::Name { .. })
        ));
        assert!(matches!(
            Reference::parse("a//b"),
            Err(ReferenceError::Name { .. })
        ));
    }
}
