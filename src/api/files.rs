//! Browsing a container's sandbox: `GET /v1/containers/{id}/files?path=DIR`
//! lists a directory, `GET /v1/containers/{id}/files/content?path=FILE
//! [&offset=N][&length=N]` streams a regular file.
//!
//! Paths are relative to the sandbox and resolved by the kernel beneath it
//! (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` on a descriptor
//! of the sandbox): absolute paths, `..` above the sandbox and symlinks
//! leading out are refused with 403, whatever the container did to the
//! tree meanwhile. No string checks: the container owns the tree and may
//! change it between a check and a use.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::{u64_param, ApiError, Params, Shared};

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

/// A directory entry as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub size: u64,
    /// Permission bits in octal, e.g. `0644`.
    pub mode: String,
    /// RFC 3339, UTC.
    pub mtime: String,
}

/// A sandbox directory, opened once; paths are resolved beneath it.
pub struct Sandbox {
    root: OwnedFd,
}

impl Sandbox {
    pub fn open(dir: &Path) -> Result<Sandbox, FilesError> {
        let root = File::open(dir).map_err(|source| FilesError::Io {
            op: "open sandbox",
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Sandbox { root: root.into() })
    }

    /// Opens `path` beneath the sandbox with `flags`. An empty path is the
    /// sandbox itself.
    fn open_beneath(&self, path: &str, flags: libc::c_int) -> Result<OwnedFd, FilesError> {
        let relative = if path.is_empty() { "." } else { path };
        let c_path = CString::new(relative).map_err(|_| FilesError::NotFound {
            path: path.to_string(),
        })?;
        // SAFETY: open_how is plain integers; all zero is its default.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (flags | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: the path is NUL-terminated, `how` is a valid open_how of
        // the size passed, and the returned descriptor is owned below.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.root.as_raw_fd(),
                c_path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            let source = io::Error::last_os_error();
            let path = path.to_string();
            return Err(match source.raw_os_error() {
                // EXDEV: the walk would leave the sandbox (absolute, `..`
                // above it, a symlink out). ELOOP: a magic link, or a loop.
                Some(libc::EXDEV) | Some(libc::ELOOP) => FilesError::Escapes { path },
                Some(libc::ENOENT) => FilesError::NotFound { path },
                Some(libc::ENOTDIR) if flags & libc::O_DIRECTORY != 0 => {
                    FilesError::NotADirectory { path }
                }
                Some(libc::ENOTDIR) => FilesError::NotFound { path },
                _ => FilesError::Io {
                    op: "open",
                    path,
                    source,
                },
            });
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
    }

    /// Lists a directory, sorted by name.
    pub fn list(&self, path: &str) -> Result<Vec<Entry>, FilesError> {
        let fd = self.open_beneath(path, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let io_error = |op: &'static str| {
            let path = path.to_string();
            move |source: io::Error| FilesError::Io { op, path, source }
        };
        // Through our own descriptor, the very directory resolved above;
        // std then stats each entry relative to it (fstatat), not by path.
        let listing = std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(io_error("read dir"))?;
        let mut entries = Vec::new();
        for entry in listing {
            let entry = entry.map_err(io_error("read dir"))?;
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Removed since it was listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("stat")(e)),
            };
            entries.push(Entry {
                name: entry.file_name().to_string_lossy().into_owned(),
                kind: kind(meta.mode()),
                size: meta.size(),
                mode: format!("{:04o}", meta.mode() & 0o7777),
                mtime: rfc3339(meta.mtime(), meta.mtime_nsec()),
            });
        }
        drop(fd);
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Opens a regular file for reading.
    pub fn open_file(&self, path: &str) -> Result<File, FilesError> {
        // O_PATH first: opening a FIFO or a device for reading could block
        // or have side effects; only a regular file is opened for real.
        let fd = self.open_beneath(path, libc::O_PATH)?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|source| FilesError::Io {
            op: "stat",
            path: path.to_string(),
            source,
        })?;
        if !meta.is_file() {
            return Err(FilesError::NotAFile {
                path: path.to_string(),
            });
        }
        // Reopening the very inode found above through its descriptor is
        // race-free, unlike resolving the path again.
        File::open(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(|source| FilesError::Io {
            op: "open",
            path: path.to_string(),
            source,
        })
    }
}

fn kind(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "file",
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "symlink",
        _ => "other",
    }
}

fn rfc3339(seconds: i64, nanos: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, nanos as u32)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The `path` parameter; absent means the sandbox itself.
fn path_param(params: &HashMap<String, String>) -> String {
    params.get("path").cloned().unwrap_or_default()
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
    Query(params): Params,
) -> Result<Response, ApiError> {
    let dir: PathBuf = manager.get(&id)?.sandbox;
    let path = path_param(&params);
    let entries = blocking(move || Sandbox::open(&dir)?.list(&path)).await?;
    Ok(Json(entries).into_response())
}

pub(super) async fn content(
    State(manager): Shared,
    UrlPath(id): UrlPath<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let dir: PathBuf = manager.get(&id)?.sandbox;
    let path = path_param(&params);
    let offset = u64_param(&params, "offset")?.unwrap_or(0);
    let length = u64_param(&params, "length")?;
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
        assert_eq!(read(&sandbox, "inside").unwrap(), "content");
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
        let names: Vec<(&str, &str)> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
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
