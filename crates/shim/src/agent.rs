//! The shim's end of the agent socket (fd 3): JSON lines out, the `go` line in.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd};
use std::os::unix::net::UnixStream;

use berth_protocol::messages::SYNC_FD;
use berth_protocol::ShimMessage;

/// What one read from the agent gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Line(String),
    /// The agent closed its end (or died).
    Closed,
    /// Bytes arrived but no full line yet.
    Partial,
}

pub struct Agent {
    stream: Option<UnixStream>,
    buf: Vec<u8>,
}

impl Agent {
    /// Takes over [`SYNC_FD`]; a shim started without it (by hand) just has
    /// nobody to talk to, and never gets `go`.
    pub fn from_sync_fd() -> Self {
        // SAFETY: F_GETFD only inspects the fd.
        let open = unsafe { libc::fcntl(SYNC_FD, libc::F_GETFD) } >= 0;
        let stream = open.then(|| {
            // SAFETY: fd 3 is open and, by the protocol, ours alone.
            unsafe {
                libc::fcntl(SYNC_FD, libc::F_SETFD, libc::FD_CLOEXEC);
                UnixStream::from_raw_fd(SYNC_FD)
            }
        });
        Agent {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.stream.as_ref().map(|s| s.as_fd())
    }

    /// Sends `msg` as one line. A failure means the agent is gone, which the
    /// shim survives; it is returned for the diagnostics.
    pub fn send(&mut self, msg: &ShimMessage) -> io::Result<()> {
        self.connected()?.write_all(&msg.to_line())
    }

    /// Sends `msg` as one line with `fds` attached (`SCM_RIGHTS`): the
    /// agent gets its own copies, ours stay open.
    pub fn send_with(&mut self, msg: &ShimMessage, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        if fds.is_empty() {
            return self.send(msg);
        }
        berth_sys::fd_passing::send_with_fds(self.connected()?.as_fd(), &msg.to_line(), fds)
    }

    /// The socket to the agent, or why there is none.
    fn connected(&mut self) -> io::Result<&mut UnixStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no agent socket"))
    }

    /// A complete line already buffered, if any.
    pub fn buffered_line(&mut self) -> Option<String> {
        let pos = self.buf.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.buf.drain(..=pos).collect();
        Some(String::from_utf8_lossy(&line[..pos]).trim().to_string())
    }

    /// One read from the socket (call when poll says it is readable).
    pub fn read(&mut self) -> Incoming {
        if let Some(line) = self.buffered_line() {
            return Incoming::Line(line);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Incoming::Closed;
        };
        let mut chunk = [0u8; 512];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Incoming::Closed,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return match self.buffered_line() {
                        Some(line) => Incoming::Line(line),
                        None => Incoming::Partial,
                    };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Incoming::Closed,
            }
        }
    }

    /// Closes fd 3; the protocol ends after `Exited` or `Failed`.
    pub fn close(&mut self) {
        self.stream = None;
    }
}
