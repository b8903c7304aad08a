//! The agent's side of the shim protocol (see `berth_protocol::messages`).

use std::io::{self, BufReader, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_protocol::messages::{GO, SYNC_FD};
pub use berth_protocol::shim_args::FILES_FD_BASE;
use berth_protocol::{LogSettings, ShimArgs as WireArgs, ShimMessage};

use super::shim_pool::IdleShim;

/// How long a shim may take to set a container up before the launch fails.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors talking to a shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("start shim {}: {source}", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("shim {} exited with {status} before starting the container", path.display())]
    EarlyExit {
        path: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error("shim protocol: {0}")]
    Protocol(String),
    #[error("talk to shim: {0}")]
    Io(#[from] io::Error),
}

/// What the agent passes to a shim.
pub struct ShimArgs<'a> {
    pub shim: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub state_dir: &'a Path,
    pub log_dir: &'a Path,
    /// Rotation and backpressure, passed on the command line so that nothing
    /// the container can write decides them.
    pub log: &'a LogSettings,
    /// Prepared mounts (secrets, config files) the container child attaches
    /// at these destinations: passed as descriptors from
    /// [`FILES_FD_BASE`] on, named by `--files-fd DEST=FD`.
    pub files: &'a [(PathBuf, OwnedFd)],
    /// The root overlay built as a detached mount (decision 0046), passed
    /// after the prepared mounts and named by `--root-fd`.
    pub root_mount: Option<&'a OwnedFd>,
    /// The cgroup directories the container's process moves itself into
    /// (decision 0047) and the read end of the pipe on which the launch
    /// says they exist; passed last, named by `--cgroups-ready-fd`.
    pub cgroups: Option<(&'a [PathBuf], &'a OwnedFd)>,
}

impl ShimArgs<'_> {
    /// The descriptors the shim gets, in the order they are numbered from
    /// [`FILES_FD_BASE`]: the prepared mounts', then the root mount's,
    /// then the cgroups-ready pipe's.
    fn descriptors(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        (self.files.iter().map(|(_, fd)| fd.as_fd()))
            .chain(self.root_mount.map(|fd| fd.as_fd()))
            .chain(self.cgroups.map(|(_, ready)| ready.as_fd()))
    }
}

/// At most this many prepared mounts (two descriptors of a handover are
/// kept: the root mount, the cgroups-ready pipe).
const MAX_FILES: usize = berth_sys::fd_passing::MAX_FDS - 2;

/// An open conversation with a shim that is launching a container.
pub struct ShimConnection {
    reader: MessageReader,
    writer: UnixStream,
}

/// The shim's lines, read with `recvmsg` so that the descriptors a message
/// carries (the container's mount namespace, with `Running`) are kept, not
/// closed by the kernel as a plain `read` would. Blocking during a launch;
/// after it, non-blocking under the runtime (`end_notice`).
pub(super) struct MessageReader {
    socket: UnixStream,
    /// Bytes received and not yet returned as a line.
    buf: Vec<u8>,
    /// Descriptors received with them, in order.
    fds: Vec<OwnedFd>,
}

impl MessageReader {
    /// Takes over a reader that may hold bytes already (an idle shim's).
    fn of(reader: BufReader<UnixStream>) -> MessageReader {
        let buf = reader.buffer().to_vec();
        MessageReader::new(reader.into_inner(), buf)
    }

    /// Reads `socket`, `buf` received from it already.
    pub(super) fn new(socket: UnixStream, buf: Vec<u8>) -> MessageReader {
        MessageReader {
            socket,
            buf,
            fds: Vec::new(),
        }
    }

    /// How many bytes wait for the end of their line.
    pub(super) fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Makes reads return `WouldBlock` instead of waiting.
    pub(super) fn set_nonblocking(&self) -> io::Result<()> {
        self.socket.set_nonblocking(true)
    }

    /// The next line, `None` at the end of the stream.
    pub(super) fn read_line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            let mut chunk = [0u8; 1024];
            // Retries after a signal itself; the socket's read timeout holds.
            let (n, fds) = berth_sys::fd_passing::recv_with_fds(self.socket.as_fd(), &mut chunk)?;
            self.fds.extend(fds);
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

impl std::os::fd::AsRawFd for MessageReader {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

impl ShimConnection {
    /// Hands the launch to an idle shim from the pool (decision 0043): the
    /// same arguments a started shim reads from its command line, the
    /// prepared mounts' descriptors passed along. An error means this
    /// shim cannot take it (it died idle): the caller starts one instead.
    pub fn hand_over(idle: IdleShim, args: &ShimArgs<'_>) -> Result<ShimConnection, ShimError> {
        let wire = wire_args(args)?;
        let files: Vec<BorrowedFd<'_>> = args.descriptors().collect();
        berth_protocol::handover::send(idle.writer.as_fd(), &wire, &files)
            .map_err(|e| ShimError::Protocol(e.to_string()))?;
        idle.writer.set_read_timeout(Some(SETUP_TIMEOUT))?;
        Ok(ShimConnection {
            reader: MessageReader::of(idle.reader),
            writer: idle.writer,
        })
    }

    /// Starts the shim (`posix_spawn`: the agent's address space is not
    /// copied, see `berth_sys::spawn`), whose first process exits at once (the supervisor
    /// lives on as an orphan, not as our child), and connects to it.
    pub fn spawn(args: &ShimArgs<'_>) -> Result<ShimConnection, ShimError> {
        let wire = wire_args(args)?;
        let argv = wire.to_args();
        let argv: Vec<&std::ffi::OsStr> = argv.iter().map(|a| a.as_os_str()).collect();
        // The prepared mounts from FILES_FD_BASE on, then the root mount.
        let files: Vec<(BorrowedFd<'_>, i32)> = (args.descriptors().enumerate())
            .map(|(i, fd)| (fd, FILES_FD_BASE + i as i32))
            .collect();
        let ours = start_shim(args.shim, &argv, &files)?;
        ours.set_read_timeout(Some(SETUP_TIMEOUT))?;
        Ok(ShimConnection {
            writer: ours.try_clone()?,
            reader: MessageReader::of(BufReader::new(ours)),
        })
    }

    /// Reads the shim's next message.
    pub fn receive(&mut self) -> Result<ShimMessage, ShimError> {
        match self.reader.read_line() {
            Ok(None) => Err(ShimError::Protocol("the shim closed the connection".into())),
            Ok(Some(line)) => ShimMessage::parse_line(&line).map_err(|e| {
                ShimError::Protocol(format!("bad message {:?}: {e}", line.trim_end()))
            }),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(ShimError::Protocol(format!(
                    "no word from the shim within {}s",
                    SETUP_TIMEOUT.as_secs()
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The container's mount namespace, which the shim attaches to
    /// [`ShimMessage::Running`] (call after it): held until the end is told,
    /// so that its teardown is not on the exit's path (decision 0048).
    /// `None` from a shim that sent none.
    pub fn take_mount_namespace(&mut self) -> Option<OwnedFd> {
        let mut fds = std::mem::take(&mut self.reader.fds);
        // Only `Running` carries one; anything else is not ours to keep.
        (fds.len() == 1).then(|| fds.remove(0))
    }

    /// The socket, kept after [`ShimMessage::Running`] for the shim's
    /// [`ShimMessage::Exited`] (decision 0052).
    pub(super) fn into_end_notice(self) -> super::end_notice::EndNotice {
        super::end_notice::EndNotice::new(self.reader)
    }

    /// Lets the container exec its command.
    pub fn go(&mut self) -> Result<(), ShimError> {
        self.writer.write_all(format!("{GO}\n").as_bytes())?;
        Ok(())
    }
}

/// Starts `shim` with `argv`, its socket to the agent at [`SYNC_FD`] and
/// `files` at their numbers (`posix_spawn`, see `berth_sys::spawn`), reaps
/// its first process (which exits at once: the supervisor lives on as an
/// orphan) and returns the agent's end of the socket. Used for a launch's
/// own shim and for the pool's idle ones.
pub(super) fn start_shim(
    shim: &Path,
    argv: &[&std::ffi::OsStr],
    files: &[(BorrowedFd<'_>, i32)],
) -> Result<UnixStream, ShimError> {
    let (ours, theirs) = UnixStream::pair()?;
    let mut fds = vec![(theirs.as_fd(), SYNC_FD)];
    fds.extend_from_slice(files);
    let pid = berth_sys::spawn::spawn(shim, argv, &fds).map_err(|source| ShimError::Spawn {
        path: shim.to_path_buf(),
        source,
    })?;
    drop(theirs);
    let status = berth_sys::spawn::wait(pid)?;
    if status != 0 {
        return Err(ShimError::EarlyExit {
            path: shim.to_path_buf(),
            status: std::process::ExitStatus::from_raw(status),
        });
    }
    Ok(ours)
}

/// What the shim reads: `args`, the prepared mounts named by the numbers
/// they get in the shim ([`FILES_FD_BASE`] on).
fn wire_args(args: &ShimArgs<'_>) -> Result<WireArgs, ShimError> {
    if args.files.len() > MAX_FILES {
        return Err(ShimError::Protocol(format!(
            "{} prepared mounts, at most {MAX_FILES}",
            args.files.len()
        )));
    }
    let after_files = FILES_FD_BASE + args.files.len() as i32;
    let root_mount = (args.root_mount.is_some()).then_some(after_files);
    Ok(WireArgs {
        id: args.id.to_string(),
        bundle: args.bundle.to_path_buf(),
        state_dir: args.state_dir.to_path_buf(),
        log_dir: args.log_dir.to_path_buf(),
        log: args.log.clone(),
        files: (args.files.iter().enumerate())
            .map(|(i, (dest, _))| (dest.clone(), FILES_FD_BASE + i as i32))
            .collect(),
        root_mount,
        cgroups: (args.cgroups.map(|(dirs, _)| dirs.to_vec())).unwrap_or_default(),
        cgroups_ready: (args.cgroups.is_some())
            .then_some(after_files + i32::from(root_mount.is_some())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ready` and `Running` may arrive in one read: the descriptor sent
    /// with `Running` is kept.
    #[test]
    fn a_descriptor_sent_with_a_line_is_kept() {
        let (agent, shim) = UnixStream::pair().unwrap();
        let writer = agent.try_clone().unwrap();
        let mut buffered = BufReader::new(agent);
        let idle = ShimMessage::Idle { shim_pid: 7 }.to_line();
        let ready = ShimMessage::Ready {
            shim_pid: 7,
            pid: 8,
        }
        .to_line();
        let running = ShimMessage::Running.to_line();
        // The pool reads an idle shim's line through a BufReader, before
        // the handover (nothing else is sent until then).
        (&shim).write_all(&idle).unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut buffered, &mut line).unwrap();
        assert_eq!(line.as_bytes(), idle);
        (&shim).write_all(&ready).unwrap();
        let attached = std::fs::File::open("/proc/self/ns/mnt").unwrap();
        berth_sys::fd_passing::send_with_fds(shim.as_fd(), &running, &[attached.as_fd()]).unwrap();
        let mut connection = ShimConnection {
            reader: MessageReader::of(buffered),
            writer,
        };
        assert_eq!(
            connection.receive().unwrap(),
            ShimMessage::Ready {
                shim_pid: 7,
                pid: 8
            }
        );
        assert_eq!(connection.receive().unwrap(), ShimMessage::Running);
        let held = connection
            .take_mount_namespace()
            .expect("the namespace came");
        let (ours, theirs) = (
            std::fs::metadata("/proc/self/ns/mnt").unwrap(),
            std::fs::File::from(held).metadata().unwrap(),
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!((ours.dev(), ours.ino()), (theirs.dev(), theirs.ino()));
        assert!(connection.take_mount_namespace().is_none(), "taken once");
        drop(shim);
        assert!(connection.receive().is_err(), "the end of the stream");
    }
}
