//! The read end of a container's output pipe: its size, how much waits in
//! it, and reading from it. In `drop` mode the pipe itself is the bounded
//! buffer between the container and the disk, so the shim needs no memory of
//! its own for it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::unistd::read;

/// The pipe size the shim asks for: a larger pipe means fewer wake-ups per
/// byte and, in drop mode, a buffer that absorbs short stalls of the disk.
pub const CAPACITY: usize = 1 << 20;

/// What a read from the pipe gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Data(usize),
    /// Nothing there now (the pipe is non-blocking).
    Empty,
    /// Every write end is closed.
    Eof,
}

/// Asks for a `bytes` large pipe; returns the size it has.
pub fn set_capacity(pipe: BorrowedFd<'_>, bytes: usize) -> io::Result<usize> {
    // SAFETY: fcntl on an open fd with an int argument.
    let n = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, bytes as libc::c_int) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The pipe's size.
pub fn capacity(pipe: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: fcntl on an open fd.
    let n = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Bytes waiting in the pipe.
pub fn pending(pipe: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the valid pointer.
    if unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut n) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// One read into `buf`.
pub fn read_into(pipe: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Read> {
    loop {
        return match read(pipe, buf) {
            Ok(0) => Ok(Read::Eof),
            Ok(n) => Ok(Read::Data(n)),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => Ok(Read::Empty),
            Err(e) => Err(e.into()),
        };
    }
}

/// Reads and throws away up to `max` bytes, through `scratch`. Returns how
/// many went, and whether the pipe hit end of file.
pub fn discard(pipe: BorrowedFd<'_>, max: usize, scratch: &mut [u8]) -> io::Result<(usize, bool)> {
    let mut gone = 0;
    while gone < max {
        let want = (max - gone).min(scratch.len());
        match read_into(pipe, &mut scratch[..want])? {
            Read::Data(n) => gone += n,
            Read::Empty => break,
            Read::Eof => return Ok((gone, true)),
        }
    }
    Ok((gone, false))
}

/// In drop mode, how much to throw away from a pipe holding `pending` of its
/// `capacity` bytes. A pipe at least three quarters full means the container
/// is about to block on the shim: drop the oldest bytes down to a quarter,
/// so that it can carry on while the shim writes what is left.
pub fn excess(pending: usize, capacity: usize) -> usize {
    if capacity == 0 || pending < capacity / 4 * 3 {
        return 0;
    }
    pending - capacity / 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn excess_only_past_the_high_mark() {
        let cap = 1 << 20;
        assert_eq!(excess(0, cap), 0);
        assert_eq!(excess(cap / 2, cap), 0);
        assert_eq!(excess(cap / 4 * 3 - 1, cap), 0);
        assert_eq!(excess(cap / 4 * 3, cap), cap / 2);
        assert_eq!(excess(cap, cap), cap / 4 * 3);
        assert_eq!(excess(10, 0), 0);
    }

    #[test]
    fn sizes_counts_and_discards() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).unwrap();
        let size = set_capacity(r.as_fd(), 1 << 16).unwrap();
        assert_eq!(capacity(r.as_fd()).unwrap(), size);
        nix::unistd::write(&w, &[7u8; 1000]).unwrap();
        assert_eq!(pending(r.as_fd()).unwrap(), 1000);
        let mut scratch = [0u8; 64];
        assert_eq!(discard(r.as_fd(), 900, &mut scratch).unwrap(), (900, false));
        assert_eq!(pending(r.as_fd()).unwrap(), 100);
        assert_eq!(discard(r.as_fd(), 900, &mut scratch).unwrap(), (100, false));
        drop(w);
        assert_eq!(discard(r.as_fd(), 900, &mut scratch).unwrap(), (0, true));
        assert_eq!(read_into(r.as_fd(), &mut scratch).unwrap(), Read::Eof);
    }
}
