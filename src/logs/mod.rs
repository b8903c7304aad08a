//! Reading container logs as the shim writes them (see `docs/log-format.md`):
//! numbered segments per stream addressed by logical offsets, a sparse
//! timestamp index, and counters in the state dir.
//!
//! Everything here is blocking file IO except the driver in [`follow`],
//! which runs the blocking steps on tokio's blocking pool.

/// The shim's per-stream counters, `<state-dir>/logs.json`.
pub use berth_protocol::logs::counters;
pub mod follow;
pub mod frames;
pub mod index;
pub mod jsonl;
pub mod merge;
pub mod meta;
pub mod segments;
pub mod skip;
pub mod tail;
pub mod timestamps;
pub mod wake;

use std::io;
use std::path::PathBuf;

/// One of a container's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// Both streams, stdout first.
    pub const ALL: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

    /// The stream's name, which is also its files' prefix in the sandbox.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    pub fn parse(name: &str) -> Option<Stream> {
        match name {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors reading logs.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("list log segments in {}: {source}", dir.display())]
    List {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read log {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A segment kept vanishing between listing and opening: the writer
    /// rotates faster than the reader can follow.
    #[error("log segment {} keeps vanishing under the reader", path.display())]
    Unstable { path: PathBuf },
}

impl LogError {
    fn read(path: &std::path::Path) -> impl FnOnce(io::Error) -> LogError + '_ {
        move |source| LogError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Opens a log file for reading through `berth_confined`: relative to its
/// directory's descriptor, never through a symlink, only a regular file
/// (a FIFO or device is refused without blocking), reads bounded by its
/// size at open. A log dir of a container from an older agent is its
/// sandbox, which the container writes.
pub(crate) fn open_file(path: &std::path::Path) -> io::Result<berth_confined::ReadFile> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let name = path.file_name().unwrap_or_default();
    Ok(berth_confined::Dir::open(dir)?.open_file(name)?)
}

/// How often the readers retry after a segment vanished between listing and
/// opening (rotated away, or compressed and removed).
const RETRIES: usize = 8;

#[cfg(test)]
pub(crate) mod testing {
    //! Segment sets in temp dirs, as the shim would leave them.

    use std::io::Write;
    use std::path::Path;

    use super::Stream;

    /// The file name of a segment.
    pub fn segment_name(stream: Stream, start: u64) -> String {
        berth_protocol::logs::segment::plain_name(stream.name(), start)
    }

    /// Writes `data` as consecutive segments of `size` bytes starting at
    /// `first`; the ones listed in `compress` (by index) are gzipped.
    /// Returns the logical end.
    pub fn write_segments(
        dir: &Path,
        stream: Stream,
        first: u64,
        data: &[u8],
        size: usize,
        compress: &[usize],
    ) -> u64 {
        let mut start = first;
        for (i, piece) in data.chunks(size).enumerate() {
            let name = segment_name(stream, start);
            if compress.contains(&i) {
                let gz_name = berth_protocol::logs::segment::compressed_name(stream.name(), start);
                let file = std::fs::File::create(dir.join(gz_name)).unwrap();
                let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
                gz.write_all(piece).unwrap();
                gz.finish().unwrap();
            } else {
                std::fs::write(dir.join(name), piece).unwrap();
            }
            start += piece.len() as u64;
        }
        start
    }
}
