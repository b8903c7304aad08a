//! Browsing a container's sandbox: `GET /v1/containers/{id}/files?path=DIR`
//! lists a directory, `GET /v1/containers/{id}/files/content?path=FILE
//! [&offset=N][&length=N]` streams a regular file.
//!
//! Paths are relative to the sandbox (a leading `/` is its root) and
//! resolved by the kernel beneath it
//! through `berth_confined` (`openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS` on a descriptor of the
//! sandbox): `..` above the sandbox and every symlink are
//! refused with 403, whatever the container did to the tree meanwhile; a
//! FIFO or device is refused (400) without blocking; a file is served up to
//! the size it had when opened. No string checks: the container owns the
//! tree and may change it between a check and a use.

use std::io;
use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_confined::{ConfinedError, Dir, Kind, ReadFile};

use super::query::ApiQuery;
use super::{ApiError, Shared};
use crate::wire::query::{FilesQuery, Window};

const CHUNK: u64 = 128 * 1024;

/// Errors resolving and reading sandbox paths.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("path {path:?} leads outside the sandbox")]
    Escapes { path: String },
    #[error("no such file or directory in the sandbox: {path:?}")]
    NotFound { path: String },
    #[error("{path:?} is not a directory")]
    NotADirectory { path: String },
    #[error("{path:?} is not a regular file")]
    NotAFile { path: String },
    #[error("{op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

impl From<FilesError> for ApiError {
    fn from(e: FilesError) -> Self {
        let (status, code) = match &e {
            FilesError::Escapes { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            FilesError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            FilesError::NotADirectory { .. } | FilesError::NotAFile { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_request")
            }
            FilesError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                (StatusCode::FORBIDDEN, "forbidden")
            }
            FilesError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

pub use crate::wire::files::Entry;

/// A sandbox directory, opened once; paths are resolved beneath it.
pub struct Sandbox {
    root: Dir,
}

impl FilesError {
    fn from_confined(path: &str, e: ConfinedError) -> FilesError {
        let path = path.to_string();
        match e {
            ConfinedError::Escapes { .. } | ConfinedError::CrossesMount { .. } => {
                FilesError::Escapes { path }
            }
            ConfinedError::NotAFile { .. } => FilesError::NotAFile { path },
            ConfinedError::NotADirectory { .. } => FilesError::NotADirectory { path },
            e if e.is_not_found() => FilesError::NotFound { path },
            // ENOTDIR on the way: a file where a directory was named.
            ConfinedError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOTDIR) => {
                FilesError::NotFound { path }
            }
            ConfinedError::Io { op, source, .. } => FilesError::Io { op, path, source },
            ConfinedError::Moved { .. } => FilesError::Io {
                op: "open",
                path,
                source: io::ErrorKind::Other.into(),
            },
        }
    }
}

impl Sandbox {
    pub fn open(dir: &Path) -> Result<Sandbox, FilesError> {
        let root = Dir::open(dir).map_err(|e| match e {
            ConfinedError::Io { source, .. } => FilesError::Io {
                op: "open sandbox",
                path: dir.display().to_string(),
                source,
            },
            other => FilesError::from_confined(&dir.display().to_string(), other),
        })?;
        Ok(Sandbox { root })
    }

    /// Lists a directory, sorted by name.
    pub fn list(&self, path: &str) -> Result<Vec<Entry>, FilesError> {
        let dir = self
            .root
            .open_dir(path)
            .map_err(|e| FilesError::from_confined(path, e))?;
        // Through the directory's own descriptor; each entry is stat'ed
        // relative to it (fstatat, no symlink followed).
        let mut entries: Vec<Entry> = dir
            .entries()
            .map_err(|e| FilesError::from_confined(path, e))?
            .into_iter()
            .map(|entry| {
                let (secs, nanos) = entry.stat.mtime();
                Entry {
                    name: entry.name.to_string_lossy().into_owned(),
                    kind: kind(entry.stat.kind()).into(),
                    size: entry.stat.size(),
                    mode: format!("{:04o}", entry.stat.mode() & 0o7777),
                    mtime: rfc3339(secs, nanos),
                }
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Opens a regular file for reading, bounded by its size now.
    pub fn open_file(&self, path: &str) -> Result<ReadFile, FilesError> {
        if path.is_empty() {
            return Err(FilesError::NotAFile {
                path: path.to_string(),
            });
        }
        self.root
            .open_file(path)
            .map_err(|e| FilesError::from_confined(path, e))
    }
}

fn kind(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::Symlink => "symlink",
        Kind::Other => "other",
    }
}

fn rfc3339(seconds: i64, nanos: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, nanos as u32)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The `path` parameter, relative to the sandbox: absent or `/` means the
/// sandbox itself and a leading `/` names the sandbox's root, not the
/// host's (the kernel still resolves what follows beneath the sandbox).
fn path_param(query: &FilesQuery) -> String {
    let path = query.path.as_deref().unwrap_or_default();
    path.trim_start_matches('/').to_string()
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FilesError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(ApiError::from)
}

pub(super) async fn list(
    State(manager): Shared,
    UrlPath(id): UrlPath<String>,
    ApiQuery(query): ApiQuery<FilesQuery>,
) -> Result<Response, ApiError> {
    let dir: PathBuf = manager.get(&id)?.sandbox.clone();
    let path = path_param(&query);
    let entries = blocking(move || Sandbox::open(&dir)?.list(&path)).await?;
    Ok(Json(entries).into_response())
}

pub(super) async fn content(
    State(manager): Shared,
    UrlPath(id): UrlPath<String>,
    ApiQuery(query): ApiQuery<FilesQuery>,
    ApiQuery(window): ApiQuery<Window>,
) -> Result<Response, ApiError> {
    let dir: PathBuf = manager.get(&id)?.sandbox.clone();
    let path = path_param(&query);
    let offset = window.offset.unwrap_or(0);
    let length = window.length;
    let file = blocking(move || Sandbox::open(&dir)?.open_file(&path)).await?;
    let file = std::sync::Arc::new(file);
    let end = length.map(|l| offset.saturating_add(l));
    let body = futures_util::stream::unfold(Some(offset), move |position| {
        let file = file.clone();
        async move {
            let position = position?;
            let want = end.map_or(CHUNK, |end| CHUNK.min(end.saturating_sub(position)));
            if want == 0 {
                return None;
            }
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; want as usize];
                let n = file.read_at(&mut buf, position)?;
                buf.truncate(n);
                Ok::<_, io::Error>(buf)
            })
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
            match read {
                Ok(buf) if buf.is_empty() => None,
                Ok(buf) => {
                    let next = position + buf.len() as u64;
                    Some((Ok(Bytes::from(buf)), Some(next)))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from_stream(body))
        .expect("a valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn sandbox() -> (tempfile::TempDir, Sandbox) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/file"), "content").unwrap();
        std::fs::write(dir.path().join("top"), "t").unwrap();
        symlink("sub/file", dir.path().join("inside")).unwrap();
        symlink("/etc", dir.path().join("etc")).unwrap();
        symlink("../../../../../../etc/passwd", dir.path().join("sub/up")).unwrap();
        let sandbox = Sandbox::open(dir.path()).unwrap();
        (dir, sandbox)
    }

    fn read(sandbox: &Sandbox, path: &str) -> Result<String, FilesError> {
        let mut text = String::new();
        sandbox.open_file(path)?.read_to_string(&mut text).unwrap();
        Ok(text)
    }

    #[test]
    fn escapes_are_refused_and_inside_links_allowed() {
        let (_dir, sandbox) = sandbox();
        for path in [
            "/etc/passwd",
            "..",
            "../x",
            "sub/../../etc",
            "etc/passwd",
            "etc",
            "sub/up",
            "inside",
        ] {
            assert!(
                matches!(read(&sandbox, path), Err(FilesError::Escapes { .. })),
                "{path}"
            );
        }
        assert!(matches!(
            sandbox.list("etc"),
            Err(FilesError::Escapes { .. })
        ));
        assert!(matches!(sandbox.list("/"), Err(FilesError::Escapes { .. })));
        assert!(matches!(
            sandbox.list("../"),
            Err(FilesError::Escapes { .. })
        ));
        // No symlink is followed, not even one that stays inside.
        assert!(matches!(
            read(&sandbox, "inside"),
            Err(FilesError::Escapes { .. })
        ));
        assert_eq!(read(&sandbox, "sub/../top").unwrap(), "t");
        assert!(matches!(
            read(&sandbox, "missing"),
            Err(FilesError::NotFound { .. })
        ));
        assert!(matches!(
            read(&sandbox, "sub"),
            Err(FilesError::NotAFile { .. })
        ));
        assert!(matches!(
            sandbox.list("top"),
            Err(FilesError::NotADirectory { .. })
        ));
        assert!(matches!(
            sandbox.list("nope"),
            Err(FilesError::NotFound { .. })
        ));
        let magic = format!("/proc/{}/root/etc", std::process::id());
        symlink(&magic, _dir.path().join("magic")).unwrap();
        assert!(matches!(
            sandbox.list("magic"),
            Err(FilesError::Escapes { .. })
        ));
    }

    #[test]
    fn lists_entries_with_type_size_and_mode() {
        let (dir, sandbox) = sandbox();
        std::fs::set_permissions(
            dir.path().join("top"),
            std::os::unix::fs::PermissionsExt::from_mode(0o640),
        )
        .unwrap();
        let entries = sandbox.list("").unwrap();
        let names: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.kind.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("etc", "symlink"),
                ("inside", "symlink"),
                ("sub", "dir"),
                ("top", "file")
            ]
        );
        let top = &entries[3];
        assert_eq!((top.size, top.mode.as_str()), (1, "0640"));
        assert!(top.mtime.ends_with('Z'), "{}", top.mtime);
        let sub = sandbox.list("sub").unwrap();
        assert_eq!(sub.len(), 2);
    }
}
