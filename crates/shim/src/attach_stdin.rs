//! `berth run -i` (decision 0026): the container's first process reads a
//! pipe whose write end only the shim holds, so the container keeps its
//! stdin across the agent's restart. The shim listens on `attach.sock` in
//! the container's state dir (mode 0600, the agent's only); an attacher
//! (the agent relaying a client's WebSocket) sends frames of
//! `streams::frames`: channel 0 is written to the pipe, `[255, 0]` closes it
//! (the command sees EOF) once what is queued is written.
//!
//! One writer at a time: a connection arriving while one is attached waits
//! (up to [`MAX_WAITING`] of them, in order; more are closed at once) and
//! takes over when it leaves. An attacher that leaves without `[255, 0]`
//! leaves stdin open for the next one. Nothing here runs unless `-i` was
//! asked for.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

// The socket's name in the container's state dir.
use berth_protocol::bundle::ATTACH_SOCKET as SOCKET;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags};
use nix::unistd::pipe2;

use berth_protocol::streams::{frames, CLOSE, RESIZE, STDIN};

/// How many attachers may wait for the one attached. The agent connects
/// for the next attacher as soon as the last one's client leaves, which
/// can be before the shim has read the last one's end: without waiting,
/// that next attacher's input was dropped.
pub const MAX_WAITING: usize = 8;

/// The shim's side of the container's stdin.
pub struct StdinRelay {
    listener: UnixListener,
    conn: Option<UnixStream>,
    /// Attachers that came while `conn` was attached, oldest first.
    waiting: std::collections::VecDeque<UnixStream>,
    decoder: frames::Decoder,
    pending: Vec<u8>,
    pipe: Option<OwnedFd>,
    close_after_pending: bool,
    /// With `-t`: the master, for resizes.
    master: Option<OwnedFd>,
}

/// Where each of the relay's fds went in the poll set.
#[derive(Default)]
pub struct Slots {
    listener: Option<usize>,
    conn: Option<usize>,
    pipe: Option<usize>,
}

impl StdinRelay {
    /// The relay and the pipe's read end, for the container's fd 0.
    pub fn open(state_dir: &Path) -> io::Result<(StdinRelay, OwnedFd)> {
        let path = state_dir.join(SOCKET);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let flags = OFlag::from_bits_retain(fcntl(&write, FcntlArg::F_GETFL)?);
        fcntl(&write, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok((
            StdinRelay {
                listener,
                conn: None,
                waiting: std::collections::VecDeque::new(),
                decoder: frames::Decoder::default(),
                pending: Vec::new(),
                pipe: Some(write),
                close_after_pending: false,
                master: None,
            },
            read,
        ))
    }

    /// With `-t`: input goes to the pty's master, resizes apply to it.
    pub fn use_tty(&mut self, master: OwnedFd) {
        self.pipe = master.try_clone().ok();
        self.master = Some(master);
    }

    /// Adds the fds to wait for to `fds`.
    pub fn poll_fds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) -> Slots {
        let mut slots = Slots::default();
        fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        slots.listener = Some(fds.len() - 1);
        if let Some(c) = &self.conn {
            // Input waiting for the command is kept here and the socket is
            // not read meanwhile.
            if self.pending.is_empty() {
                fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
                slots.conn = Some(fds.len() - 1);
            }
        }
        if let Some(p) = &self.pipe {
            if !self.pending.is_empty() {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLOUT));
                slots.pipe = Some(fds.len() - 1);
            }
        }
        slots
    }

    /// Which slots poll found ready.
    pub fn ready(slots: &Slots, fds: &[PollFd<'_>]) -> [bool; 3] {
        let r = |slot: Option<usize>| {
            slot.and_then(|i| fds[i].revents())
                .is_some_and(|r| !r.is_empty())
        };
        [r(slots.listener), r(slots.conn), r(slots.pipe)]
    }

    /// Does what poll found ready: accepts, reads frames, writes the pipe.
    pub fn on_ready(&mut self, [listener, conn, _pipe]: [bool; 3]) {
        // The attached one first: its end may be what makes room.
        if conn {
            self.read_conn();
        }
        if listener {
            while let Ok((stream, _)) = self.listener.accept() {
                if self.pipe.is_some() && self.waiting.len() < MAX_WAITING {
                    self.waiting.push_back(stream);
                }
                // Otherwise dropped: stdin is closed, or too many wait.
            }
        }
        self.write_pending();
        self.take_next();
    }

    /// Attaches the longest-waiting attacher once none is attached.
    fn take_next(&mut self) {
        if self.pipe.is_none() {
            self.waiting.clear();
            return;
        }
        if self.conn.is_none() {
            if let Some(stream) = self.waiting.pop_front() {
                let _ = stream.set_nonblocking(true);
                self.conn = Some(stream);
                self.decoder = frames::Decoder::default();
            }
        }
    }

    fn read_conn(&mut self) {
        let Some(c) = &self.conn else { return };
        let mut buf = [0u8; 64 * 1024];
        // SAFETY: recv into a buffer of its length.
        let n = unsafe { libc::recv(c.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n == 0 {
            self.conn = None;
            return;
        }
        if n < 0 {
            let errno = Errno::last();
            if errno != Errno::EAGAIN && errno != Errno::EINTR {
                self.conn = None;
            }
            return;
        }
        self.decoder.push(&buf[..n as usize]);
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => match frame.channel {
                    STDIN => self.pending.extend_from_slice(&frame.payload),
                    RESIZE => {
                        if let (Some(m), Ok(size)) = (
                            &self.master,
                            serde_json::from_slice::<berth_protocol::streams::Resize>(
                                &frame.payload,
                            ),
                        ) {
                            let _ = super::pty::set_size(m.as_fd(), size);
                        }
                    }
                    CLOSE if frame.payload.first() == Some(&STDIN) => {
                        self.close_after_pending = true
                    }
                    _ => {}
                },
                Ok(None) => break,
                Err(_) => {
                    self.conn = None;
                    break;
                }
            }
        }
    }

    fn write_pending(&mut self) {
        if self.pipe.is_some() {
            while !self.pending.is_empty() {
                let p = self.pipe.as_ref().expect("checked");
                match nix::unistd::write(p, &self.pending) {
                    Ok(n) => {
                        self.pending.drain(..n);
                    }
                    Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => break,
                    Err(_) => {
                        // The reader is gone: its input is dropped.
                        self.pending.clear();
                        self.pipe = None;
                        break;
                    }
                }
            }
        } else {
            self.pending.clear();
        }
        if self.close_after_pending && self.pending.is_empty() {
            self.pipe = None;
            self.conn = None;
        }
    }
}
