//! Decompression and hashing on a thread of their own, so they overlap
//! with the extraction's system calls (as `tar -xz` runs `gzip` beside it):
//! the thread reads the blob, hashes the uncompressed bytes (the diff_id)
//! and hands them over in chunks through a small bounded channel.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use crate::images::digest::{Digest, Hasher};

const CHUNK: usize = 256 * 1024;
/// Chunks in flight: memory stays bounded (about 1 MiB) whatever the layer.
const DEPTH: usize = 4;

/// The reading end; [`HashedStream::finish`] gives the digest and size of
/// everything the thread read.
pub(crate) struct HashedStream {
    rx: Option<Receiver<io::Result<Vec<u8>>>>,
    chunk: Vec<u8>,
    pos: usize,
    thread: Option<JoinHandle<(Digest, u64)>>,
}

impl HashedStream {
    /// Starts reading `input` on a new thread.
    pub(crate) fn start(mut input: Box<dyn Read + Send>) -> io::Result<Self> {
        let (tx, rx) = sync_channel(DEPTH);
        let thread = std::thread::Builder::new()
            .name("layer-read".into())
            .spawn(move || {
                let mut hasher = Hasher::new();
                let mut bytes = 0u64;
                loop {
                    let mut chunk = vec![0u8; CHUNK];
                    match input.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => {
                            chunk.truncate(n);
                            hasher.update(&chunk);
                            bytes += n as u64;
                            // The reader is gone: the extraction failed.
                            if tx.send(Ok(chunk)).is_err() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            break;
                        }
                    }
                }
                (hasher.finish(), bytes)
            })?;
        Ok(Self {
            rx: Some(rx),
            chunk: Vec::new(),
            pos: 0,
            thread: Some(thread),
        })
    }

    /// Reads what is left, then returns the sha256 and size of the whole
    /// stream.
    pub(crate) fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        self.rx = None;
        let thread = self.thread.take().expect("finish runs once");
        thread
            .join()
            .map_err(|_| io::Error::other("the layer reading thread panicked"))
    }
}

impl Read for HashedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.chunk.len() {
            let Some(rx) = &self.rx else { return Ok(0) };
            match rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The thread ended: end of stream.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for HashedStream {
    fn drop(&mut self) {
        // Closing the channel makes the thread stop at its next send.
        self.rx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_passes_through_and_is_hashed() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut stream = HashedStream::start(Box::new(io::Cursor::new(data.clone()))).unwrap();
        let mut head = vec![0u8; 1000];
        stream.read_exact(&mut head).unwrap();
        assert_eq!(head, data[..1000]);
        let (digest, size) = stream.finish().unwrap();
        assert_eq!((digest, size), (Digest::of(&data), data.len() as u64));
        // Dropped early: the thread ends too.
        let stream = HashedStream::start(Box::new(io::repeat(7))).unwrap();
        drop(stream);
    }
}
