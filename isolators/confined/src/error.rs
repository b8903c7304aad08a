//! What can go wrong in a confined operation, always with the path.

use std::io;
use std::path::PathBuf;

/// Errors of confined operations. Each converts to an [`io::Error`] of a
/// fitting kind, so callers that retry on `NotFound` keep doing so.
#[derive(Debug, thiserror::Error)]
pub enum ConfinedError {
    /// The path would leave the directory or pass through a symlink: an
    /// absolute path, `..` above it, any symlink, a magic link.
    #[error("{} leads outside its directory or through a symlink", path.display())]
    Escapes { path: PathBuf },
    /// Not a regular file where one was needed (a FIFO, a device, a dir...).
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    /// Not a directory where one was needed.
    #[error("{} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    /// Removal met another filesystem or a mount point, and left it alone.
    #[error("{} is a mount point; not removed", path.display())]
    CrossesMount { path: PathBuf },
    /// A directory changed under a removal in a way that makes going on
    /// unsafe (its parent is not the one it was entered from).
    #[error("{} moved during removal", path.display())]
    Moved { path: PathBuf },
    /// Any other failure of a system call.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ConfinedError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ConfinedError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The `io::ErrorKind` this error corresponds to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            ConfinedError::Escapes { .. } | ConfinedError::CrossesMount { .. } => {
                io::ErrorKind::PermissionDenied
            }
            ConfinedError::NotAFile { .. }
            | ConfinedError::NotADirectory { .. }
            | ConfinedError::Moved { .. } => io::ErrorKind::InvalidInput,
            ConfinedError::Io { source, .. } => source.kind(),
        }
    }

    /// Whether the file or a directory on the way does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind() == io::ErrorKind::NotFound
    }
}

impl From<ConfinedError> for io::Error {
    fn from(e: ConfinedError) -> io::Error {
        match e {
            ConfinedError::Io { op, path, source } => {
                io::Error::new(source.kind(), format!("{op} {}: {source}", path.display()))
            }
            other => io::Error::new(other.kind(), other),
        }
    }
}
