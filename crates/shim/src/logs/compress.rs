//! Gzip of rotated segments, in a forked child so that the pump loop never
//! stalls on compressing a whole segment. One child per stream at a time;
//! the rest wait in a queue (at most `max_files` long, as deleted segments
//! leave it).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use berth_confined::Dir;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use thiserror::Error;

use super::segment::{compress_temp_name, compressed_name, plain_name};
use crate::note;

#[derive(Debug, Error)]
pub enum CompressError {
    #[error("read segment {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("write compressed segment {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Writes `S.<start>.gz` completely (temp file + rename), then removes
/// `S.<start>`, so that at every instant one of them holds the bytes.
pub fn compress_segment(dir: &Dir, stream: &str, start: u64) -> Result<(), CompressError> {
    let plain = plain_name(stream, start);
    let tmp = compress_temp_name(stream, start);
    let done = compressed_name(stream, start);
    let read_err = |source: berth_confined::ConfinedError| CompressError::Read {
        path: dir.path().join(&plain),
        source: source.into(),
    };
    let write_err = |source: io::Error| CompressError::Write {
        path: dir.path().join(&done),
        source,
    };
    // Bounded by the size at open: a rotated segment never grows.
    let input = dir.open_file(&plain).map_err(read_err)?;
    // A leftover temp file (or anything planted under its name) is
    // unlinked, never written through.
    let output = dir
        .create_replacing(&tmp, 0o640)
        .map_err(|e| write_err(e.into()))?;
    let written = gzip(input, output).and_then(|()| Ok(dir.rename(&tmp, &done)?));
    if let Err(e) = written {
        // A full disk must not leave half a file taking what space is left.
        let _ = dir.remove_file(&tmp);
        return Err(write_err(e));
    }
    dir.remove_file(&plain).map_err(read_err)?;
    Ok(())
}

fn gzip(input: impl Read, output: File) -> io::Result<()> {
    let mut encoder = GzEncoder::new(
        BufWriter::with_capacity(64 * 1024, output),
        Compression::default(),
    );
    // io::copy reports both sides' errors alike; reading a local file that
    // was just opened hardly fails, so they count as write errors.
    io::copy(
        &mut BufReader::with_capacity(64 * 1024, input),
        &mut encoder,
    )?;
    encoder.finish()?.flush()
}

/// The size of a compressed segment's content.
pub fn decompressed_len(dir: &Dir, name: &str) -> io::Result<u64> {
    io::copy(
        &mut MultiGzDecoder::new(BufReader::new(dir.open_file(name)?)),
        &mut io::sink(),
    )
}

/// The compression work of one stream.
pub struct Compressor {
    dir: Dir,
    stream: &'static str,
    running: Option<(u64, Pid)>,
    queue: VecDeque<u64>,
}

impl Compressor {
    pub fn new(dir: Dir, stream: &'static str) -> Compressor {
        Compressor {
            dir,
            stream,
            running: None,
            queue: VecDeque::new(),
        }
    }

    /// Compresses the segment at `start` soon.
    pub fn enqueue(&mut self, start: u64) {
        self.queue.push_back(start);
        self.poll();
    }

    /// Whether a child is running or work is waiting: the caller then polls
    /// again soon.
    pub fn busy(&self) -> bool {
        self.running.is_some() || !self.queue.is_empty()
    }

    /// Reaps a finished child and starts the next one. Never blocks.
    pub fn poll(&mut self) {
        if let Some((start, pid)) = self.running {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => return,
                Ok(WaitStatus::Exited(_, 0)) => {}
                Ok(status) => note(format_args!(
                    "compress {}: child ended with {status:?}",
                    plain_name(self.stream, start)
                )),
                Err(e) => note(format_args!("waitpid compressor {pid}: {e}")),
            }
            self.running = None;
        }
        while let Some(start) = self.queue.pop_front() {
            match self.spawn(start) {
                Ok(pid) => {
                    self.running = Some((start, pid));
                    return;
                }
                Err(e) => note(format_args!(
                    "compress {}: fork: {e}",
                    plain_name(self.stream, start)
                )),
            }
        }
    }

    /// Forgets the segment at `start`, which is about to be deleted; kills
    /// its child if running so that no `.gz` appears after the deletion.
    pub fn cancel(&mut self, start: u64) {
        self.queue.retain(|&s| s != start);
        if let Some((running, pid)) = self.running {
            if running == start {
                let _ = kill(pid, Signal::SIGKILL);
                wait_blocking(pid);
                self.running = None;
                self.poll();
            }
        }
    }

    /// At exit: waits for the running child, then compresses what is queued
    /// in-process (nothing is pumped any more).
    pub fn finish(&mut self) {
        if let Some((_, pid)) = self.running.take() {
            wait_blocking(pid);
        }
        while let Some(start) = self.queue.pop_front() {
            if let Err(e) = compress_segment(&self.dir, self.stream, start) {
                note(format_args!("{e}"));
            }
        }
    }

    fn spawn(&self, start: u64) -> nix::Result<Pid> {
        // SAFETY: the shim is single-threaded, so the child may run Rust
        // code (allocate, use flate2) before it exits.
        match unsafe { fork() }? {
            ForkResult::Parent { child } => Ok(child),
            ForkResult::Child => {
                // Leave the CPU to the pump loop and the container.
                // SAFETY: plain syscalls; _exit skips the parent's atexit
                // handlers and buffered state, which the child must not run.
                unsafe { libc::nice(10) };
                let code = match compress_segment(&self.dir, self.stream, start) {
                    Ok(()) => 0,
                    Err(e) => {
                        note(format_args!("{e}"));
                        1
                    }
                };
                // SAFETY: _exit ends this forked child without running the
                // parent's atexit handlers or flushing its copied buffers.
                unsafe { libc::_exit(code) }
            }
        }
    }
}

fn wait_blocking(pid: Pid) {
    loop {
        match waitpid(pid, None) {
            Err(Errno::EINTR) => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn planted_temp_and_target_links_are_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let host = tempfile::NamedTempFile::new().unwrap();
        fs::write(host.path(), "host").unwrap();
        fs::write(dir.path().join(plain_name("stdout", 0)), "data").unwrap();
        for name in [
            compress_temp_name("stdout", 0),
            compressed_name("stdout", 0),
        ] {
            std::os::unix::fs::symlink(host.path(), dir.path().join(name)).unwrap();
        }
        compress_segment(&Dir::open(dir.path()).unwrap(), "stdout", 0).unwrap();
        assert_eq!(fs::read(host.path()).unwrap(), b"host");
        let gz = dir.path().join(compressed_name("stdout", 0));
        assert!(gz.symlink_metadata().unwrap().is_file());
    }

    #[test]
    fn compresses_completely_then_removes_the_plain_segment() {
        let dir = tempfile::tempdir().unwrap();
        let confined = Dir::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        fs::write(dir.path().join(plain_name("stdout", 4096)), &data).unwrap();
        compress_segment(&confined, "stdout", 4096).unwrap();
        let gz = dir.path().join(compressed_name("stdout", 4096));
        let mut back = Vec::new();
        MultiGzDecoder::new(File::open(&gz).unwrap())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert_eq!(
            decompressed_len(&confined, &compressed_name("stdout", 4096)).unwrap(),
            data.len() as u64
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [compressed_name("stdout", 4096).as_str()]);
    }

    #[test]
    fn missing_segment_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = compress_segment(&Dir::open(dir.path()).unwrap(), "stdout", 0).unwrap_err();
        assert!(err.to_string().starts_with("read segment "), "{err}");
        assert!(err.to_string().contains("stdout.00000000000000000000"));
    }
}
